"""Executes the real program on real machines, without the Pulumi CLI.

`SshCommandProvider` is a STAND-IN for the pulumi-command provider plugin, which cannot be
installed here: under `pulumi.runtime.set_mocks`, each `command:remote:Command` runs its
`create` (or `update`) over SSH, with its `stdin`, on the node its connection names, and
answers with the real stdout/stderr (dialling again while the node cannot be logged in to, as
the plugin does), so one node's output flows into the next node's input exactly as under
Pulumi; each `command:remote:CopyToRemote` copies its directory there as the
plugin's SFTP copy does (to `<remotePath>/<the directory's name>/`). A connection's `hostKey`
is checked as the plugin checks it (OpenSSH with that key alone in its known_hosts: another
key fails the dial); without one, any key is accepted, as by the plugin. `Deployment` stands in
for the engine and its state: a second `up` runs only resources whose inputs changed, resources
gone from the program are deleted, and `destroy` runs every `delete` in reverse dependency
order. Like `pulumi up --target`, a deployment may be limited to some resources (`targets`):
the others are registered by the program but neither run nor kept in the state. A generated
password or id (pulumi-random) is made here, once, and kept.

The state is kept by URN, the engine's URN (components/steps.py `new_urn`), and a registration
is matched to it as the engine matches it: by its URN first, then by its aliases, resolved with
the engine's rules by the recording monitor against the state's URNs. A resource found under an
alias is compared with that old entry (same when its inputs are equal), and the entry moves to
its new URN; nothing is deleted for it. `preview` says what an `up` would do, per URN, and
runs nothing.

The state can be kept in a file between processes (`save`, `load`), so that one version of the
program can bring a site up and another take it over:

    python -m tests.sandbox.deployment up STACK_FILE STATE_FILE
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pulumi

from stacks.render import RecordingMonitor, map_secrets, run_program
from stacks.stackfile import StackFile
from tests.sandbox.ssh import SSH_OPTIONS

COMMAND_TYPE = "command:remote:Command"
COPY_TYPE = "command:remote:CopyToRemote"
RANDOM_PASSWORD_TYPE = "random:index/randomPassword:RandomPassword"
RANDOM_ID_TYPE = "random:index/randomId:RandomId"
STACK_TYPE = "pulumi:pulumi:Stack"
# pulumi-command's defaults for dialling a node.
DIAL_ERROR_LIMIT = 10
PER_DIAL_TIMEOUT = 15
PINNED_ALIAS = "pinned-node"  # the name a pinned host key goes by in the stand-in's known_hosts
# What OpenSSH says when it never got to run the command.
LOGIN_FAILURES = (
    "Permission denied",
    "connect to host",
    "Connection refused",
    "timed out",
    "No route to host",
    "Could not resolve",
    "Host key verification failed",
    "Connection closed by",
)


class CommandError(Exception):
    """A remote command failed: one line naming the resource (and so the node) and the cause."""


def plain(value: object) -> object:
    """A deserialized property value with every secret unwrapped."""
    return map_secrets(value, plain)


@dataclass
class ResourceState:
    key: str
    inputs: dict
    outputs: dict
    dependencies: list[str] = field(default_factory=list)
    urn: str = ""  # as the program registered it (set once its registration is answered)


@contextlib.contextmanager
def _key_file(private_key: str | None) -> Iterator[str | None]:
    if private_key is None:
        yield None
        return
    with tempfile.NamedTemporaryFile("w", prefix="sandbox-key-", delete=False) as handle:
        handle.write(private_key)
    os.chmod(handle.name, 0o600)
    try:
        yield handle.name
    finally:
        os.unlink(handle.name)


@contextlib.contextmanager
def _host_key_options(connection: dict) -> Iterator[list[str]]:
    """As pulumi-command does: with a `hostKey`, the node must show that key (else the dial
    fails, and is retried like any failed dial); without, any key is accepted."""
    host_key = connection.get("hostKey")
    if not host_key:
        yield []
        return
    with tempfile.TemporaryDirectory(prefix="sandbox-known-hosts-") as directory:
        known = Path(directory) / "known_hosts"
        known.write_text(f"{PINNED_ALIAS} {host_key}\n")
        # Before SSH_OPTIONS: OpenSSH keeps the first value given for an option.
        yield [
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={known}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", f"HostKeyAlias={PINNED_ALIAS}",
        ]  # fmt: skip


def redial_pauses() -> Iterator[float]:
    """pulumi-command's pause before each new dial: 0.1 s, growing by half each time, at most
    5 s (the pulumi SDK's retry.Until defaults)."""
    pause = 0.1
    while True:
        yield pause
        pause = min(pause * 1.5, 5.0)


def ssh_run(connection: dict, command: str, stdin: str | None, label: str) -> tuple[str, str]:
    """Run `command` over SSH as pulumi-command does (through the login shell, stdin piped),
    dialling again as it does while the node cannot be logged in to (the connection's
    dialErrorLimit, default 10 errors; perDialTimeout, default 15 s); stdout and stderr
    without their last newline."""
    user, host = connection.get("user", "root"), connection["host"]
    port = int(connection.get("port", 22))
    error_limit = int(connection.get("dialErrorLimit", DIAL_ERROR_LIMIT))
    dial_timeout = int(connection.get("perDialTimeout", PER_DIAL_TIMEOUT))
    pauses = redial_pauses()
    with _key_file(connection.get("privateKey")) as key, _host_key_options(connection) as pin:
        # OpenSSH keeps the first value given for an option: this ConnectTimeout wins.
        options = ["-p", str(port), "-o", f"ConnectTimeout={dial_timeout}", *pin, *SSH_OPTIONS]
        if key:
            options += ["-i", key, "-o", "IdentitiesOnly=yes"]
        dials = 0
        while True:
            dials += 1
            result = subprocess.run(
                ["ssh", *options, f"{user}@{host}", command],
                input=stdin or "",
                capture_output=True,
                text=True,
                timeout=1800,
            )
            stderr = result.stderr.removesuffix("\n")
            last = stderr.splitlines()[-1] if stderr else ""
            not_in = result.returncode == 255 and any(sign in last for sign in LOGIN_FAILURES)
            if not not_in or (error_limit >= 0 and dials > error_limit):
                break
            time.sleep(next(pauses))
    if not_in:
        raise CommandError(f"{label}: cannot log in to {user}@{host}:{port}: {last}")
    if result.returncode == 255:
        raise CommandError(
            f"{label}: cut off on {host} (connection lost or the command "
            f"killed){': ' + last if last else ''}"
        )
    if result.returncode != 0:
        raise CommandError(f"{label}: exited {result.returncode}: {last or '(no output)'}")
    return result.stdout.removesuffix("\n"), stderr


def directory_hash(path: str) -> str:
    digest = hashlib.sha256()
    for file in sorted(Path(path).rglob("*")):
        if file.is_file():
            digest.update(str(file.relative_to(path)).encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()


def ssh_copy(connection: dict, source: str, remote_path: str, label: str) -> None:
    """Copy the directory `source` to `<remote_path>/<its name>` on the node, over SSH."""
    user, host = connection.get("user", "root"), connection["host"]
    port = int(connection.get("port", 22))
    parent, name = os.path.split(source.rstrip("/"))
    unpack = f"mkdir -p {shlex.quote(remote_path)} && tar -C {shlex.quote(remote_path)} -xf -"
    with _key_file(connection.get("privateKey")) as key, _host_key_options(connection) as pin:
        options = ["-p", str(port), *pin, *SSH_OPTIONS]
        if key:
            options += ["-i", key, "-o", "IdentitiesOnly=yes"]
        with subprocess.Popen(
            ["tar", "-C", parent, "-cf", "-", name], stdout=subprocess.PIPE
        ) as tar:
            result = subprocess.run(
                ["ssh", *options, f"{user}@{host}", unpack],
                stdin=tar.stdout,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
    if result.returncode != 0 or tar.returncode != 0:
        raise CommandError(f"{label}: copy failed: {result.stderr.strip() or 'tar failed'}")


class SshCommandProvider(pulumi.runtime.Mocks):
    """STAND-IN for the pulumi-command provider plugin (see the module docstring). In a
    preview it runs nothing and changes nothing: it notes each resource's operation."""

    def __init__(self, deployment: Deployment, *, preview: bool = False):
        self.deployment = deployment
        self.preview = preview
        self.monitor: DependencyRecorder | None = None  # set by the monitor it answers
        self.operations: dict[str, str] = {}  # per URN: create, update or same

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        assert self.monitor is not None
        # The engine's view of this registration: its URN, and the old entry it is matched to
        # (under its URN, or an alias's).
        urn = self.monitor.registering()
        old_urn = self.monitor.old_urn_of(urn)
        key = f"{args.typ}::{args.name}"
        inputs = plain(args.inputs)
        assert isinstance(inputs, dict)
        if args.typ == COPY_TYPE:
            # The engine diffs an archive by its content, not its path.
            inputs["source"]["hash"] = directory_hash(inputs["source"]["archive"])
        previous = self.deployment.resources.get(old_urn) if old_urn is not None else None
        if previous is not None and previous.inputs == inputs:
            self._note(urn, "same")
            if not self.preview:
                self.deployment.keep(old_urn, urn)
            return f"{args.name}-id", previous.outputs
        action = "update" if previous is not None else "create"
        self._note(urn, action)
        # A preview, or a step left alone: its outputs are its inputs (in a preview, what it
        # would print is not known yet).
        outputs = dict(inputs)
        if self.preview:
            return f"{args.name}-id", outputs
        if not self.deployment.targets(key):
            if previous is not None:
                self.deployment.keep(old_urn, urn)
            return f"{args.name}-id", outputs
        if args.typ == RANDOM_PASSWORD_TYPE:
            outputs["result"] = secrets.token_hex(int(inputs.get("length", 32)) // 2)
        if args.typ == RANDOM_ID_TYPE:
            outputs["hex"] = secrets.token_hex(int(inputs.get("byteLength", 8)))
        if args.typ == COPY_TYPE:
            self.deployment.copy(key, action, inputs)
        if args.typ == COMMAND_TYPE:
            command = inputs.get("update") if previous is not None else None
            command = command or inputs.get("create")
            if command:
                stdout, stderr = self.deployment.execute(key, action, inputs, command)
                outputs.update(stdout=stdout, stderr=stderr)
        self.deployment.record(ResourceState(key, inputs, outputs, urn=urn), old_urn)
        return f"{args.name}-id", outputs

    def _note(self, urn: str, operation: str) -> None:
        with self.deployment._lock:
            self.operations[urn] = operation

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list]:
        return {}, []


class DependencyRecorder(RecordingMonitor):
    """Also notes, per resource, the resources it waits for (for the order of deletes), and
    tells the provider which registration it answers: the mock's `new_resource` hears only a
    type and a name, so the URN is made here, before it runs, on the registration's own
    thread (registrations run concurrently). The monitor resolves aliases against the URNs of
    the deployment's state, as the engine does."""

    def __init__(self, provider: SshCommandProvider):
        self.deployment = provider.deployment
        self._state_urns = frozenset(self.deployment.resources)
        super().__init__(provider, old_urns=self._state_urns)
        self.preview = provider.preview
        self._registration = threading.local()
        provider.monitor = self

    def registering(self) -> str:
        """The URN of the registration this thread is answering."""
        return self._registration.urn

    def old_urn_of(self, urn: str) -> str | None:
        """The state entry a registration is matched to: its own URN first, then the alias
        it took over (the recording monitor resolved it before the provider was asked)."""
        if urn in self._state_urns:
            return urn
        return self.taken_over.get(urn)

    def RegisterResource(self, request):  # noqa: N802 (the gRPC method's name)
        self._registration.urn = self.make_urn(request.parent, request.type, request.name)
        try:
            response = super().RegisterResource(request)
        finally:
            self._registration.urn = None
        if not self.preview:
            # Registrations run concurrently: find this one's record by its URN.
            record = next(r for r in reversed(self.recorded) if r["urn"] == response.urn)
            self.deployment.set_dependencies(response.urn, record["dependencies"])
        return response


@dataclass
class Deployment:
    """One stack's state across `up`s and a `destroy`, and a log of every command run."""

    # Which resources (by "type::name") this deployment runs; the others are left alone.
    targets: Callable[[str], bool] = lambda key: True
    # The state, by URN as the engine keeps it.
    resources: dict[str, ResourceState] = field(default_factory=dict)
    commands: list[tuple[str, str]] = field(default_factory=list)  # (action, resource key)
    _lock: threading.Condition = field(default_factory=threading.Condition)
    _in_flight: int = 0  # commands running now

    @property
    def state(self) -> dict[str, ResourceState]:
        """The state by each resource's `type::name` (unique in this program's sites)."""
        with self._lock:
            return {resource.key: resource for resource in self.resources.values()}

    def up(self, stack: StackFile) -> dict:
        """Converge to the program for `stack`: run what changed, delete what is gone.
        Returns the stack's outputs, secrets masked."""
        monitor = DependencyRecorder(SshCommandProvider(self))
        try:
            run_program(stack, monitor, preview=False)
        finally:
            # Like the engine: when one step fails, the steps already running finish first.
            with self._lock:
                self._lock.wait_for(lambda: self._in_flight == 0)
        self._delete(self._gone(monitor))
        stack_urn = next(r["urn"] for r in monitor.recorded if r["type"] == STACK_TYPE)
        return monitor.recorded_outputs.get(stack_urn, {})

    def preview(self, stack: StackFile) -> dict[str, str]:
        """What `up` would do, per URN: create, update, same or delete. Runs the program as a
        preview: no command runs and the state is left as it is. A resource whose inputs equal
        its state entry's (under its URN or an alias) answers with the stored outputs, so what
        depends on it sees the same values, as under the engine; a resource to create or update
        answers with its inputs, what it would print not known yet. (The root stack, which
        this state does not keep, is left out; `targets` are not looked at.)"""
        provider = SshCommandProvider(self, preview=True)
        monitor = DependencyRecorder(provider)
        run_program(stack, monitor, preview=True)
        operations = dict(provider.operations)
        operations.update((urn, "delete") for urn in self._gone(monitor))
        return operations

    def _gone(self, monitor: DependencyRecorder) -> list[str]:
        """The state's resources the program no longer has, under their URN or an alias."""
        registered = {r["urn"] for r in monitor.recorded}
        registered.update(monitor.taken_over.values())
        with self._lock:
            return [urn for urn in self.resources if urn not in registered]

    def destroy(self) -> None:
        self._delete(list(self.resources))

    def execute(self, key: str, action: str, inputs: dict, command: str) -> tuple[str, str]:
        with self._lock:
            self.commands.append((action, key))
            self._in_flight += 1
        try:
            return ssh_run(inputs["connection"], command, inputs.get("stdin"), _label(key))
        finally:
            with self._lock:
                self._in_flight -= 1
                self._lock.notify_all()

    def copy(self, key: str, action: str, inputs: dict) -> None:
        with self._lock:
            self.commands.append((action, key))
            self._in_flight += 1
        try:
            source = inputs["source"]["archive"]
            ssh_copy(inputs["connection"], source, inputs["remotePath"], _label(key))
        finally:
            with self._lock:
                self._in_flight -= 1
                self._lock.notify_all()

    def record(self, resource: ResourceState, old_urn: str | None = None) -> None:
        """Keep `resource` under its URN, in place of the entry it was matched to."""
        with self._lock:
            previous = self._rename(old_urn, resource.urn) if old_urn else None
            if previous is not None:
                resource.dependencies = previous.dependencies
            self.resources[resource.urn] = resource

    def keep(self, old_urn: str, urn: str) -> None:
        """An unchanged resource: its entry stays, under its new URN if it was found under
        an alias."""
        with self._lock:
            self._rename(old_urn, urn)

    def _rename(self, old_urn: str, urn: str) -> ResourceState | None:
        """Moves the entry of `old_urn` to `urn`, and what waits for it with it, as the
        engine's snapshot does for a resource found under an alias (the lock held)."""
        if old_urn == urn:
            return self.resources.get(urn)
        entry = self.resources.pop(old_urn, None)
        if entry is None:
            return None
        entry.urn = urn
        self.resources[urn] = entry
        for other in self.resources.values():
            if old_urn in other.dependencies:
                other.dependencies = [urn if d == old_urn else d for d in other.dependencies]
        return entry

    def set_dependencies(self, urn: str, dependencies: list[str]) -> None:
        with self._lock:
            if urn in self.resources:
                self.resources[urn].dependencies = list(dependencies)

    def save(self, path: Path) -> None:
        """The state, as JSON: per resource its URN, `type::name`, inputs, outputs and the
        URNs of what it waits for."""
        with self._lock:
            resources = [
                {
                    "urn": resource.urn,
                    "key": resource.key,
                    "inputs": resource.inputs,
                    "outputs": resource.outputs,
                    "dependencies": resource.dependencies,
                }
                for resource in self.resources.values()
            ]
        path.write_text(json.dumps({"resources": resources}, indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Deployment:
        """A deployment that goes on from the state `save` wrote, by this version or an
        earlier one (which kept what a resource waits for by `type::name`: such a dependency
        is taken to the URN of the entry of that key)."""
        entries = json.loads(path.read_text(encoding="utf-8"))["resources"]
        urn_of_key = {entry["key"]: entry["urn"] for entry in entries}
        deployment = cls()
        for entry in entries:
            if not entry.get("urn"):
                raise ValueError(f"{path}: the state entry of {entry['key']} has no URN")
            dependencies = [
                dependency if dependency.startswith("urn:") else urn_of_key[dependency]
                for dependency in entry["dependencies"]
            ]
            deployment.resources[entry["urn"]] = ResourceState(
                entry["key"], entry["inputs"], entry["outputs"], dependencies, entry["urn"]
            )
        return deployment

    def _delete(self, urns: Iterable[str]) -> None:
        doomed = set(urns)
        while doomed:
            # A resource goes once nothing left depends on it: dependents first (and, among
            # those, by `type::name`).
            ready = sorted(
                (
                    urn
                    for urn in doomed
                    if not any(urn in self.resources[o].dependencies for o in doomed if o != urn)
                ),
                key=lambda urn: (self.resources[urn].key, urn),
            )
            if not ready:
                raise AssertionError(f"dependency cycle among {sorted(doomed)}")
            for urn in ready:
                resource = self.resources[urn]
                command = resource.inputs.get("delete")
                if resource.key.startswith(COMMAND_TYPE) and command:
                    self.commands.append(("delete", resource.key))
                    ssh_run(
                        resource.inputs["connection"],
                        command,
                        resource.inputs.get("stdin"),
                        _label(resource.key),
                    )
                with self._lock:
                    del self.resources[urn]
                doomed.discard(urn)


def _label(key: str) -> str:
    type_name, name = key.split("::")
    return f"{type_name} ({name})"


def main(argv: list[str]) -> int:
    """`up STACK_FILE STATE_FILE`: converge the stack file's site from the state in STATE_FILE
    (none yet: a new site), and write the state back; a failed step ends it with its line."""
    from stacks.stackfile import read_stack_file

    if len(argv) != 3 or argv[0] != "up":
        print("usage: python -m tests.sandbox.deployment up STACK_FILE STATE_FILE", file=sys.stderr)
        return 2
    stack_file, state_file = Path(argv[1]), Path(argv[2])
    deployment = Deployment.load(state_file) if state_file.exists() else Deployment()
    try:
        deployment.up(read_stack_file(stack_file))
    except CommandError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        deployment.save(state_file)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
