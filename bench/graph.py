"""How the program's graph scales with the fleet: run by hand, results go in docs/benchmarks.md.

    .venv/bin/python -m bench.graph [--sizes 10 100 1000] [--servers 1] [--repeat 3]

For each fleet size (one or three servers, the rest agents) it evaluates the real program
under the render's recording mocks, as `python -m stacks render` does, and reports:
  - evaluation time (best of --repeat), in total and per node;
  - resources per node (custom resources, and with the components);
  - the longest dependency chain (resources, following `dependencies`);
  - the bytes of inputs per node the engine would store.
It prints a Markdown table.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import ipaddress
import json
import tempfile
import time
from functools import cache
from pathlib import Path

import yaml

from components.steps import COMPONENT_PACKAGE
from model.defaults import HUB_CHART_VERSION, K3S_VERSION
from stacks.render import Rendering, evaluate
from stacks.stackfile import read_stack_file


def host_key(index: int) -> str:
    """A well-formed ed25519 public host key, its own per node (sites pin their nodes' keys)."""
    blob = b"".join(
        len(part).to_bytes(4, "big") + part
        for part in (b"ssh-ed25519", hashlib.sha256(index.to_bytes(4, "big")).digest())
    )
    return f"ssh-ed25519 {base64.b64encode(blob).decode()}"


def fleet(size: int, servers: int) -> dict:
    nodes = []
    for index in range(size):
        role = "server" if index < servers else "agent"
        name = f"server{index + 1}" if role == "server" else f"agent{index + 1 - servers}"
        nodes.append(
            {
                "name": name,
                "host": str(ipaddress.ip_address("10.0.0.1") + index),
                "roles": [role],
                "iface": "eth1",
                "ssh": {"hostKey": host_key(index)},
            }
        )
    return {
        "config": {
            "convecthub:nodes": nodes,
            "convecthub:os": {"aptProxy": "http://10.255.0.1:3142"},
            # Pinned, as a site pins them (README, "Default versions").
            "convecthub:k3s": {"version": K3S_VERSION},
            "convecthub:hub": {"chartVersion": HUB_CHART_VERSION},
        }
    }


def longest_chain(rendering: Rendering) -> int:
    """The most resources one after another through `dependencies`."""
    waits = {r["urn"]: r["dependencies"] for r in rendering.resources}

    @cache
    def depth(urn: str) -> int:
        return 1 + max((depth(d) for d in waits.get(urn, [])), default=0)

    return max((depth(urn) for urn in waits), default=0)


def measure(size: int, servers: int, repeat: int) -> dict:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "Pulumi.bench.yaml"
        path.write_text(yaml.safe_dump(fleet(size, servers)))
        stack = read_stack_file(path)
        timings = []
        for _ in range(repeat):
            started = time.perf_counter()
            rendering = evaluate(stack)
            timings.append(time.perf_counter() - started)
    custom = [
        r for r in rendering.resources if not r["type"].startswith(("pulumi:", COMPONENT_PACKAGE))
    ]
    components = [r for r in rendering.resources if r["type"].startswith(COMPONENT_PACKAGE)]
    input_bytes = sum(len(json.dumps(r["inputs"])) for r in rendering.resources)
    best = min(timings)
    return {
        "nodes": size,
        "seconds": best,
        "ms_per_node": 1000 * best / size,
        "custom_per_node": len(custom) / size,
        "all_per_node": (len(custom) + len(components)) / size,
        "longest_chain": longest_chain(rendering),
        "kb_inputs_per_node": input_bytes / size / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.graph", description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--servers", type=int, default=1, choices=(1, 3))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(
        "| nodes | evaluation | per node | resources per node (custom / with components) "
        "| longest chain | inputs per node |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for size in args.sizes:
        row = measure(size, args.servers, args.repeat)
        print(
            f"| {row['nodes']} | {row['seconds']:.2f} s | {row['ms_per_node']:.1f} ms | "
            f"{row['custom_per_node']:.0f} / {row['all_per_node']:.0f} | "
            f"{row['longest_chain']} | {row['kb_inputs_per_node']:.1f} KiB |",
            flush=True,
        )


if __name__ == "__main__":
    main()
