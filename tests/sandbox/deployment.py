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
for the engine's state: a second `up` runs only resources whose inputs changed, resources gone
from the program are deleted, and `destroy` runs every `delete` in reverse dependency order.
Like `pulumi up --target`, a deployment may be limited to some resources (`targets`): the
others are registered by the program but neither run nor kept in the state. A generated
password or id (pulumi-random) is made here, once, and kept.

The state can be kept in a file between processes (`save`, `load`), each resource under its
URN as the engine keeps it, so that one version of the program can bring a site up and
another take it over:

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
from collections.abc import Callable, Iterator
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


def resource_key(urn: str) -> str:
    """`type::name` of a URN: the type is the last of the parent chain."""
    type_chain, name = urn.split("::")[2:4]
    return f"{type_chain.rsplit('$', 1)[-1]}::{name}"


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
    """STAND-IN for the pulumi-command provider plugin (see the module docstring)."""

    def __init__(self, deployment: Deployment):
        self.deployment = deployment

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        key = f"{args.typ}::{args.name}"
        inputs = plain(args.inputs)
        assert isinstance(inputs, dict)
        previous = self.deployment.state.get(key)
        if previous is not None and previous.inputs == inputs:
            return f"{args.name}-id", previous.outputs
        outputs = dict(inputs)
        if not self.deployment.targets(key):
            return f"{args.name}-id", outputs
        if args.typ == RANDOM_PASSWORD_TYPE:
            outputs["result"] = secrets.token_hex(int(inputs.get("length", 32)) // 2)
        if args.typ == RANDOM_ID_TYPE:
            outputs["hex"] = secrets.token_hex(int(inputs.get("byteLength", 8)))
        if args.typ == COPY_TYPE:
            # The engine diffs an archive by its content, not its path.
            inputs["source"]["hash"] = directory_hash(inputs["source"]["archive"])
            if previous is not None and previous.inputs == inputs:
                return f"{args.name}-id", previous.outputs
            outputs = dict(inputs)
            self.deployment.copy(key, "update" if previous is not None else "create", inputs)
        if args.typ == COMMAND_TYPE:
            action = "update" if previous is not None else "create"
            command = inputs.get("update") if previous is not None else None
            command = command or inputs.get("create")
            if command:
                stdout, stderr = self.deployment.execute(key, action, inputs, command)
                outputs.update(stdout=stdout, stderr=stderr)
        self.deployment.record(ResourceState(key, inputs, outputs))
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list]:
        return {}, []


class DependencyRecorder(RecordingMonitor):
    """Also notes, per resource, the resources it waits for (for the order of deletes)."""

    def __init__(self, provider: SshCommandProvider):
        super().__init__(provider)
        self.deployment = provider.deployment

    def RegisterResource(self, request):  # noqa: N802 (the gRPC method's name)
        response = super().RegisterResource(request)
        # Registrations run concurrently: find this one's record by its URN.
        record = next(r for r in reversed(self.recorded) if r["urn"] == response.urn)
        dependencies = [resource_key(urn) for urn in record["dependencies"]]
        self.deployment.set_dependencies(resource_key(response.urn), dependencies, response.urn)
        return response


@dataclass
class Deployment:
    """One stack's state across `up`s and a `destroy`, and a log of every command run."""

    # Which resources (by "type::name") this deployment runs; the others are left alone.
    targets: Callable[[str], bool] = lambda key: True
    state: dict[str, ResourceState] = field(default_factory=dict)
    commands: list[tuple[str, str]] = field(default_factory=list)  # (action, resource key)
    _lock: threading.Condition = field(default_factory=threading.Condition)
    _in_flight: int = 0  # commands running now

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
        registered = {resource_key(r["urn"]) for r in monitor.recorded}
        self._delete(key for key in list(self.state) if key not in registered)
        stack_urn = next(r["urn"] for r in monitor.recorded if r["type"] == "pulumi:pulumi:Stack")
        return monitor.recorded_outputs.get(stack_urn, {})

    def destroy(self) -> None:
        self._delete(list(self.state))

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

    def record(self, resource: ResourceState) -> None:
        with self._lock:
            previous = self.state.get(resource.key)
            if previous is not None:
                resource.dependencies = previous.dependencies
            self.state[resource.key] = resource

    def set_dependencies(self, key: str, dependencies: list[str], urn: str) -> None:
        with self._lock:
            if key in self.state:
                self.state[key].dependencies = dependencies
                self.state[key].urn = urn

    def save(self, path: Path) -> None:
        """The state, as JSON: per resource its URN, inputs, outputs and what it waits for."""
        resources = [
            {
                "urn": resource.urn,
                "key": resource.key,
                "inputs": resource.inputs,
                "outputs": resource.outputs,
                "dependencies": resource.dependencies,
            }
            for resource in self.state.values()
        ]
        path.write_text(json.dumps({"resources": resources}, indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Deployment:
        """A deployment that goes on from the state `save` wrote."""
        deployment = cls()
        for resource in json.loads(path.read_text(encoding="utf-8"))["resources"]:
            deployment.state[resource["key"]] = ResourceState(
                resource["key"],
                resource["inputs"],
                resource["outputs"],
                resource["dependencies"],
                resource["urn"],
            )
        return deployment

    def _delete(self, keys) -> None:
        doomed = set(keys)
        while doomed:
            # A resource goes once nothing left depends on it: dependents first.
            ready = sorted(
                k
                for k in doomed
                if not any(k in self.state[o].dependencies for o in doomed if o != k)
            )
            if not ready:
                raise AssertionError(f"dependency cycle among {sorted(doomed)}")
            for key in ready:
                resource = self.state[key]
                command = resource.inputs.get("delete")
                if key.startswith(COMMAND_TYPE) and command:
                    self.commands.append(("delete", key))
                    ssh_run(
                        resource.inputs["connection"],
                        command,
                        resource.inputs.get("stdin"),
                        _label(key),
                    )
                del self.state[key]
                doomed.discard(key)


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
