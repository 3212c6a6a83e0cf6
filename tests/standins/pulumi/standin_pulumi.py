"""STAND-IN for the Pulumi CLI, for tests only: no Pulumi CLI or provider plugin exists here.

It answers the calls the Automation API makes of `pulumi` and nothing more, records each call
(arguments, working directory, PULUMI_* environment) as one JSON line in $STANDIN_PULUMI_LOG, and
keeps each stack's state in the file backend named by PULUMI_BACKEND_URL, as
`<dir>/.pulumi/stacks/<project>/<stack>.json` (the layout of Pulumi's own file backend).

The "engine" is the project's offline render: the program is evaluated under mocks for the
stack file in the working directory, and each resource's inputs, compared with the state, decide
its operation (create, update, same; what the state has and the program not: delete). A resource
is matched to the state as the engine matches it, by its URN first, then by its aliases
(stacks/mock_engine.py): one found under an alias is compared with that old entry, which it
replaces in the state under its new URN (nothing is deleted for it). Steps run in dependency
order, as the engine runs them: a resource after its parent, its provider and what it depends
on (else in the rendering's order, one at a time); deletes come last. Events go
to the caller the way the CLI sends them: over gRPC to `--event-log tcp://...` (CLI versions
after 3.205), or as JSON lines into the `--event-log` file (earlier ones).

Knobs for tests: STANDIN_PULUMI_VERSION (what `pulumi version` prints), STANDIN_PULUMI_FAIL (the
name of a resource whose step fails).
"""

from __future__ import annotations

import json
import os
import queue
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))

PASSPHRASE_ERROR = (
    "error: passphrase must be set with PULUMI_CONFIG_PASSPHRASE or "
    "PULUMI_CONFIG_PASSPHRASE_FILE environment variables"
)
COMPONENT_TYPES = ("convecthub:infra:", "pulumi:pulumi:Stack")
DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


class CliError(Exception):
    """Ends the stand-in with the CLI's exit code and a line on stderr."""

    def __init__(self, message: str, code: int = 255):
        super().__init__(message)
        self.code = code


def main(argv: list[str]) -> int:
    _record(argv)
    args = [arg for arg in argv if arg != "--non-interactive"]
    try:
        return _dispatch(args)
    except CliError as failure:
        print(str(failure), file=sys.stderr)
        return failure.code


def _record(argv: list[str]) -> None:
    log = os.environ.get("STANDIN_PULUMI_LOG")
    if not log:
        return
    entry = {
        "argv": argv,
        "cwd": os.getcwd(),
        "env": {key: value for key, value in os.environ.items() if key.startswith("PULUMI_")},
    }
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry) + "\n")


def _dispatch(args: list[str]) -> int:
    if args == ["version"]:
        print(os.environ.get("STANDIN_PULUMI_VERSION", "v3.272.0"))
        return 0
    words = [arg for arg in args if not arg.startswith("-")]
    options = _options(args)
    if words[:2] == ["stack", "select"]:
        _state_path(options["--stack"], must_exist=True)
        return 0
    if words[:2] == ["stack", "init"]:
        _need_passphrase()
        path = _state_path(words[2], must_exist=False)
        if path.exists():
            raise CliError(f"error: stack '{words[2]}' already exists")
        path.parent.mkdir(parents=True, exist_ok=True)
        _save(path, {"resources": [], "outputs": {}, "history": []})
        return 0
    if words[:2] == ["stack", "output"]:
        return _stack_output(options["--stack"], show_secrets="--show-secrets" in args)
    if words[:2] == ["stack", "history"]:
        history = _load(_state_path(options["--stack"], must_exist=True))["history"]
        print(json.dumps(list(reversed(history))[: int(options.get("--page-size", 10**6))]))
        return 0
    if words[:1] in (["preview"], ["up"], ["refresh"], ["destroy"]):
        _need_passphrase()
        return Engine(words[0], options).run()
    raise CliError(f"stand-in pulumi: unsupported command {' '.join(args)}", code=2)


def _options(args: list[str]) -> dict[str, str]:
    options = {}
    for index, arg in enumerate(args[:-1]):
        if arg.startswith("--") and not args[index + 1].startswith("--"):
            options[arg] = args[index + 1]
    return options


def _need_passphrase() -> None:
    if "PULUMI_CONFIG_PASSPHRASE" in os.environ:
        return
    if os.path.isfile(os.environ.get("PULUMI_CONFIG_PASSPHRASE_FILE", "")):
        return
    raise CliError(PASSPHRASE_ERROR)


def _project() -> str:
    import yaml

    document = yaml.safe_load(Path("Pulumi.yaml").read_text(encoding="utf-8"))
    return str(document["name"])


def _state_path(stack: str, *, must_exist: bool) -> Path:
    url = os.environ.get("PULUMI_BACKEND_URL", "")
    if not url.startswith("file://"):
        raise CliError(f"stand-in pulumi: only file:// backends, not {url!r}", code=2)
    path = Path(url.removeprefix("file://")) / ".pulumi" / "stacks" / _project() / f"{stack}.json"
    if must_exist and not path.exists():
        raise CliError(f"error: no stack named '{stack}' found")
    return path


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _save(path: Path, state: dict) -> None:
    # The resources also where Pulumi's own file backend keeps them (checkpoint.latest), which
    # python -m stacks reads before the CLI runs.
    document = {**state, "checkpoint": {"latest": {"resources": state["resources"]}}}
    path.write_text(json.dumps(document, indent=1, sort_keys=True), encoding="utf-8")


def _stack_output(stack: str, *, show_secrets: bool) -> int:
    outputs = _load(_state_path(stack, must_exist=True))["outputs"]
    shown = {
        name: (f"standin-secret-{name}" if show_secrets else "[secret]")
        if output["secret"]
        else output["value"]
        for name, output in outputs.items()
    }
    print(json.dumps(shown))
    return 0


class EventSink:
    """Where engine events go: the caller's gRPC Events service, or its event log file."""

    def __init__(self, target: str | None):
        self._sequence = 0
        self._file = None
        self._queue: queue.Queue | None = None
        self._call = None
        if target is None:
            return
        if target.startswith("tcp://"):
            import grpc
            from pulumi.runtime.proto import events_pb2, events_pb2_grpc

            self._request = events_pb2.EventRequest
            self._queue = queue.Queue()
            channel = grpc.insecure_channel(target.removeprefix("tcp://"))
            stub = events_pb2_grpc.EventsStub(channel)
            self._call = stub.StreamEvents.future(iter(self._queue.get, None))
        else:
            self._file = open(target, "a", encoding="utf-8")  # noqa: SIM115 closed in close()

    def send(self, timestamp: int, **event: object) -> None:
        self._sequence += 1
        text = json.dumps({"sequence": self._sequence, "timestamp": timestamp, **event})
        if self._queue is not None:
            self._queue.put(self._request(event=text))
        elif self._file is not None:
            self._file.write(text + "\n")
            self._file.flush()

    def close(self, timestamp: int) -> None:
        self.send(timestamp, cancelEvent={})
        if self._queue is not None:
            self._queue.put(None)
            self._call.result(timeout=30)
        elif self._file is not None:
            self._file.close()


class Engine:
    """One preview, up, refresh or destroy of a stack."""

    def __init__(self, kind: str, options: dict[str, str]):
        self.kind = kind
        self.stack = options["--stack"]
        self.path = _state_path(self.stack, must_exist=True)
        self.state = _load(self.path)
        self.events = EventSink(options.get("--event-log"))
        self.clock = int(time.time())
        self.started = datetime.now(UTC)
        self.aliased: dict[str, str] = {}  # new URN -> the old URN it took over under an alias

    def run(self) -> int:
        self.events.send(self.clock, preludeEvent={"config": {}})
        print(
            f"{'Previewing' if self.kind == 'preview' else self.kind.capitalize()} ({self.stack}):"
        )
        steps, outputs = self._plan()
        failed = self._apply(steps)
        changes: dict[str, int] = {}
        for op, _resource in steps[: len(steps) if failed is None else failed + 1]:
            changes[op] = changes.get(op, 0) + 1
        if self.kind in ("up", "destroy") and failed is None:
            self.state["outputs"] = outputs
        self.events.send(
            self.clock,
            summaryEvent={
                "maybeCorrupt": False,
                "durationSeconds": self.clock - int(self.started.timestamp()),
                "resourceChanges": changes,
                "PolicyPacks": {},
            },
        )
        self.events.close(self.clock)
        print("Resources:")
        for op, count in sorted(changes.items()):
            print(f"    {count} {op}")
        if self.kind != "preview":
            self._add_history(changes, failed is None)
            _save(self.path, self.state)
        if failed is not None:
            raise CliError(f"error: {self.kind} failed", code=255)
        return 0

    def _plan(self) -> tuple[list[tuple[str, dict]], dict]:
        known = {resource["urn"]: resource for resource in self.state["resources"]}
        if self.kind == "refresh":
            return [("refresh", resource) for resource in self.state["resources"]], {}
        if self.kind == "destroy":
            return [("delete", resource) for resource in reversed(self.state["resources"])], {}
        from stacks.render import evaluate
        from stacks.stackfile import read_stack_file

        # As the engine: a registration is matched to the state by its URN, then by its aliases.
        rendering = evaluate(read_stack_file(Path(f"Pulumi.{self.stack}.yaml")), old_urns=known)
        steps = []
        for registered in rendering.resources:
            # A component keeps the outputs it registered, as in Pulumi's state.
            outputs = rendering.outputs.get(registered["urn"])
            resource = registered if outputs is None else {**registered, "outputs": outputs}
            old_urn = rendering.taken_over.get(resource["urn"], resource["urn"])
            if old_urn != resource["urn"]:
                self.aliased[resource["urn"]] = old_urn
            before = known.get(old_urn)
            if before is None:
                steps.append(("create", resource))
            elif before["inputs"] == resource["inputs"]:
                steps.append(("same", resource))
            else:
                steps.append(("update", resource))
        steps = _dependency_order(steps)
        # What was taken over under an alias is the new resource now: it is not deleted.
        planned = {resource["urn"] for resource in rendering.resources}
        planned |= set(self.aliased.values())
        for resource in reversed(self.state["resources"]):
            if resource["urn"] not in planned:
                steps.append(("delete", resource))
        outputs = {
            name: {"value": value, "secret": value == "[secret]"}
            for name, value in rendering.as_json()["outputs"].items()
        }
        return steps, outputs

    def _apply(self, steps: list[tuple[str, dict]]) -> int | None:
        """Reports each step; the index of the one that failed, if one did."""
        planning = self.kind == "preview"
        fail = os.environ.get("STANDIN_PULUMI_FAIL")
        done = {resource["urn"]: resource for resource in self.state["resources"]}
        for index, (op, resource) in enumerate(steps):
            metadata = _metadata(op, resource, self.aliased.get(resource["urn"]))
            self.events.send(
                self.clock, resourcePreEvent={"metadata": metadata, "planning": planning}
            )
            if planning:
                if op != "same":
                    print(f"    {op} {resource['type']} {resource['name']}")
                continue
            self.clock += 1
            if resource["name"] == fail and op != "same":
                self.events.send(
                    self.clock,
                    diagnosticEvent={
                        "urn": resource["urn"],
                        "message": f"Process exited with status 1: {resource['name']} failed "
                        "(stand-in)\n  its stderr, second line\n",
                        "color": "never",
                        "severity": "error",
                    },
                )
                self.events.send(
                    self.clock, resOpFailedEvent={"metadata": metadata, "status": 1, "steps": 0}
                )
                self._keep(done)
                return index
            self.events.send(self.clock, resOutputsEvent={"metadata": metadata})
            if op != "same":
                print(f"    {op} {resource['type']} {resource['name']}")
            if op == "delete":
                done.pop(resource["urn"], None)
            elif resource["urn"] in self.aliased:
                # The state keeps the new URN, where the old one was.
                done = _renamed(done, self.aliased[resource["urn"]], resource)
            else:
                done[resource["urn"]] = resource
        if not planning:
            self._keep(done)
        return None

    def _keep(self, done: dict[str, dict]) -> None:
        self.state["resources"] = list(done.values())

    def _add_history(self, changes: dict[str, int], succeeded: bool) -> None:
        self.state["history"].append(
            {
                "version": len(self.state["history"]) + 1,
                "kind": self.kind if self.kind != "up" else "update",
                "startTime": self.started.strftime(DATETIME_FORMAT),
                "endTime": datetime.now(UTC).strftime(DATETIME_FORMAT),
                "message": "",
                "environment": {"exec.kind": "auto.local"},
                "config": {},
                "result": "succeeded" if succeeded else "failed",
                "resourceChanges": changes,
            }
        )


def _dependency_order(steps: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    """The steps as the engine runs them: each once its parent, its provider and what it
    depends on are done; of those ready, the first in the rendering's order."""
    planned = {resource["urn"] for _, resource in steps}
    pending = list(steps)
    done: set[str] = set()
    ordered = []

    def ready(resource: dict) -> bool:
        needs = [resource.get("parent"), resource.get("provider"), *resource["dependencies"]]
        return all(need not in planned or need in done for need in needs if need)

    while pending:
        # None: a cycle, which the engine refuses; the rest is left in the rendering's order.
        index = next((i for i, (_, resource) in enumerate(pending) if ready(resource)), None)
        if index is None:
            ordered.extend(pending)
            break
        step = pending.pop(index)
        ordered.append(step)
        done.add(step[1]["urn"])
    return ordered


def _renamed(done: dict[str, dict], old_urn: str, resource: dict) -> dict[str, dict]:
    """`done` with the entry of `old_urn` replaced, in its place, by `resource`."""
    if old_urn not in done:
        return {**done, resource["urn"]: resource}
    renamed = {}
    for urn, entry in done.items():
        if urn == old_urn:
            renamed[resource["urn"]] = resource
        else:
            renamed[urn] = entry
    return renamed


def _metadata(op: str, resource: dict, old_urn: str | None = None) -> dict:
    state = {
        "type": resource["type"],
        "urn": resource["urn"],
        "id": f"{resource['name']}-id",
        "parent": resource.get("parent") or "",
        "provider": resource.get("provider") or "",
        "custom": not resource["type"].startswith(COMPONENT_TYPES),
        "inputs": resource["inputs"],
    }
    # A resource found under an alias: its old state is the one under the old URN.
    old = {**state, "urn": old_urn} if old_urn else state
    return {
        "op": op,
        "urn": resource["urn"],
        "type": resource["type"],
        "provider": state["provider"],
        "old": old if op in ("update", "delete", "same", "refresh") else None,
        "new": state if op != "delete" else None,
    }


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
