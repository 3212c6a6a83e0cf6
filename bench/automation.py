"""What `python -m stacks preview|up` adds before and around the Pulumi CLI: run by hand,
results go in docs/benchmarks.md.

    .venv/bin/python -m bench.automation [--sizes 10 100 1000] [--repeat 3]

For each fleet size (one server, the rest agents; bench.graph's fleet) it reports:
  - the check before the CLI runs: the stack file evaluated as the program (the offline render)
    and each node's steps counted (`stacks.automation._check_site`), best of --repeat;
  - the progress display's cost per engine event: the events an `up` of that fleet would
    report (a pre and an outputs event per resource, created), fed through `RunProgress`.
It prints a Markdown table.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import yaml
from pulumi.automation import EngineEvent

from bench.graph import fleet
from components.steps import COMPONENT_PACKAGE, STACK_TYPE
from stacks.automation import _check_site
from stacks.progress import RunProgress, expected_steps
from stacks.render import evaluate
from stacks.stackfile import read_stack_file


def up_events(resources: list[dict]) -> list[EngineEvent]:
    """What the engine reports for an `up` that creates every resource."""
    events = []
    for second, resource in enumerate(resources):
        state = {
            "type": resource["type"],
            "urn": resource["urn"],
            "parent": resource.get("parent") or "",
            "custom": not resource["type"].startswith((COMPONENT_PACKAGE, STACK_TYPE)),
        }
        metadata = {"op": "create", "urn": resource["urn"], "type": resource["type"], "new": state}
        for kind in ("resourcePreEvent", "resOutputsEvent"):
            body = {"sequence": len(events), "timestamp": second, kind: {"metadata": metadata}}
            events.append(EngineEvent.from_json(body))
    return events


def measure(size: int, repeat: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "Pulumi.bench.yaml"
        path.write_text(yaml.safe_dump(fleet(size, servers=1)))
        check = min(_timed(lambda: _check_site(path, lambda _: None)) for _ in range(repeat))
        resources = evaluate(read_stack_file(path)).resources
    events = up_events(resources)
    expected = expected_steps(resources)

    def display() -> None:
        progress = RunProgress(lambda _: None, expected=expected)
        for event in events:
            progress.on_event(event)

    shown = min(_timed(display) for _ in range(repeat))
    return {"check": check, "events": len(events), "per_event_us": shown / len(events) * 1e6}


def _timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    options.add_argument("--repeat", type=int, default=3)
    args = options.parse_args()
    print("| nodes | check before the CLI | engine events of an up | display per event |")
    print("| --- | --- | --- | --- |")
    for size in args.sizes:
        result = measure(size, args.repeat)
        print(
            f"| {size} | {result['check']:.2f} s | {result['events']} "
            f"| {result['per_event_us']:.0f} µs |"
        )


if __name__ == "__main__":
    main()
