"""`python -m stacks preview|up|destroy|refresh|outputs --stack SITE`: the site's lifecycle
through Pulumi's Automation API, for CI and for people who would rather not learn the CLI.

Each command works on this project directory (a `LocalWorkspace` over `Pulumi.yaml` and
`Pulumi.<SITE>.yaml`) and drives the `pulumi` executable on PATH, which must be there. Before
the CLI runs, `preview` and `up` check the stack file as the program will (one line on a
mistake, nothing touched) and count each node's steps from the offline render, so progress
reads "master  k3s-install  created in 14s  (3/5)". With `--json`, progress goes to stderr
and stdout gets one JSON document: the changes per operation, per resource type and per node,
the errors, and the outputs with secrets masked.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pulumi.automation import (
    CommandError,
    ConcurrentUpdateError,
    InvalidVersionError,
    LocalWorkspace,
    OutputMap,
    PulumiCommand,
    Stack,
    StackNotFoundError,
)

from components.steps import NODE_COMPONENTS, Component, StepTable, urn_name
from model.defaults import is_k3s_release, upgrade_refusal
from model.secrecy import SECRET_MASK
from stacks.backend import Backend, BackendError, backend_for
from stacks.config import NAMESPACE, ConfigError
from stacks.progress import RunProgress, expected_steps
from stacks.stackfile import (
    PROJECT_DIR,
    STACK_NAME,
    read_stack_file,
    stack_file_path,
    stack_of,
)

COMMANDS = ("preview", "up", "destroy", "refresh", "outputs")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# An output longer than this (the per-node facts of a fleet) is named, not printed, after a run.
LONG_OUTPUT = 160
MISSING_CLI = (
    "the Pulumi CLI (`pulumi`) is not on PATH: install it with "
    "`curl -fsSL https://get.pulumi.com | sh` and add ~/.pulumi/bin to PATH "
    "(https://www.pulumi.com/docs/install/); without it, "
    "`python -m stacks render Pulumi.{stack}.yaml` shows what the site would become"
)


class UsageError(Exception):
    """The command cannot run as asked: one line naming the thing and the fix. Exit 2."""


@dataclass
class RunReport:
    """What one command did, for the closing lines and for `--json`."""

    command: str
    stack: str
    succeeded: bool
    changes: dict[str, int] = field(default_factory=dict)
    outputs: dict[str, object] = field(default_factory=dict)

    def as_json(self, progress: RunProgress | None) -> dict[str, object]:
        document: dict[str, object] = {
            "command": self.command,
            "stack": self.stack,
            "result": "succeeded" if self.succeeded else "failed",
            "changes": dict(sorted(self.changes.items())),
            "outputs": self.outputs,
        }
        if progress is not None:
            document["changesByType"] = {
                kind: dict(sorted(ops.items()))
                for kind, ops in sorted(progress.changes_by_type.items())
            }
            document["nodes"] = {
                node: {"changes": dict(sorted(tally.changes.items())), "failed": tally.failed}
                for node, tally in sorted(progress.nodes.items())
            }
            document["errors"] = progress.errors
            document["durationSeconds"] = progress.duration_seconds
        return document


def register(commands: argparse._SubParsersAction) -> None:
    """Adds the lifecycle commands to `python -m stacks`."""
    helps = {
        "preview": "show what `up` would change on the site (changes nothing)",
        "up": "bring the site to its stack file: prepare nodes, k3s, the hub",
        "destroy": "uninstall everything the program put on the site's machines",
        "refresh": "read the machines' and cluster's state back into the stack's state",
        "outputs": "print the site's stack outputs (secrets masked unless --show-secrets)",
    }
    for name in COMMANDS:
        command = commands.add_parser(name, help=helps[name], description=helps[name])
        command.add_argument("--stack", "-s", required=True, metavar="SITE", help="the site")
        command.add_argument(
            "--project-dir",
            default=str(PROJECT_DIR),
            help="the directory with Pulumi.yaml and the stack files (default: this project)",
        )
        command.add_argument(
            "--json", action="store_true", help="one JSON summary on stdout (progress: stderr)"
        )
        if name != "outputs":
            command.add_argument(
                "--verbose", "-v", action="store_true", help="also show the CLI's own output"
            )
        if name == "destroy":
            command.add_argument("--yes", "-y", action="store_true", help="do not ask first")
        if name == "outputs":
            command.add_argument("name", nargs="?", help="print only this output's value")
            command.add_argument(
                "--show-secrets", action="store_true", help="print secret outputs in clear"
            )
        command.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if not STACK_NAME.match(args.stack):
        raise UsageError(
            f"--stack {args.stack!r} is not a stack name: use letters, digits, '-', '_' and "
            "'.', e.g. --stack prod (the site's stack file is Pulumi.<SITE>.yaml)"
        )
    project_dir = Path(args.project_dir).resolve()
    stack_file = stack_file_path(project_dir, args.stack)
    report_stream = sys.stderr if args.json else sys.stdout

    def say(line: str) -> None:
        print(line, file=report_stream, flush=True)

    command = _pulumi_command(args.stack)
    backend = _backend(project_dir, stack_file)
    for warning in backend.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.command in ("preview", "up"):
        expected, site_name, project, target = _check_site(
            stack_file, say, record_host_keys=args.command == "up"
        )
        resources = _state_resources(backend, project, args.stack)
        _check_k3s_upgrade(args.command, site_name, target, resources, say, nodes=expected)
    else:
        expected = dict.fromkeys(_node_names(stack_file), 0)
    workspace = LocalWorkspace(
        work_dir=str(project_dir), env_vars=backend.environment, pulumi_command=command
    )
    stack = _open_stack(args.stack, workspace, backend, create=args.command in ("preview", "up"))
    if args.command == "outputs":
        return _print_outputs(args, stack.outputs())
    if args.command == "destroy" and not args.yes:
        _confirm_destroy(args.stack, stack)
    progress = RunProgress(say, expected=expected, verbose=args.verbose)
    report = _operate(args, stack, progress, say)
    if args.json:
        print(json.dumps(report.as_json(progress), indent=2))
    else:
        _print_report(report, progress, say)
    return EXIT_OK if report.succeeded else EXIT_FAILED


def _check_site(
    stack_file: Path, say: Callable[[str], None], *, record_host_keys: bool = False
) -> tuple[dict[str, int], str, str, str]:
    """The stack file checked as the program will check it; each node's step count, the
    site's and the project's names, and the k3s release the site asks for.
    A mistake raises `ConfigError` (one line, exit 2) before the CLI is asked anything.
    With `record_host_keys` (up), the keys of hostKeyPolicy accept-new nodes met for the first
    time are collected and written into the stack file first (stacks/host_keys.py)."""
    from stacks.host_keys import check_host_keys, record_first_contact
    from stacks.render import evaluate

    if not stack_file.is_file():
        raise UsageError(
            f"{stack_file} does not exist: write the site's stack file there (see "
            "examples/, or `python -m stacks import-inventory` for an Ansible inventory)"
        )
    if record_host_keys:
        record_first_contact(stack_file, stack_of(stack_file) or stack_file.stem, say)
    with contextlib.chdir(stack_file.parent):  # where the CLI runs it: relative paths agree
        rendering = evaluate(read_stack_file(stack_file))
    loaded = rendering.loaded
    for warning in (*loaded.warnings, *loaded.version_warnings):
        print(f"warning: {warning}", file=sys.stderr)
    for warning in check_host_keys(loaded.site, rendering.stack.stack, refuse=True):
        print(f"warning: {warning}", file=sys.stderr)
    expected = expected_steps(rendering.resources)
    say(f"site {rendering.stack.stack}: {len(expected)} node(s), {sum(expected.values())} steps")
    return expected, rendering.stack.stack, rendering.stack.project, loaded.site.k3s.version


# The components whose registered outputs hold the k3s release each node last got.
K3S_COMPONENTS = (Component.K3S_SERVER.type_token, Component.K3S_AGENT.type_token)
NODE_TYPES = tuple(component.type_token for component in NODE_COMPONENTS)


def _check_k3s_upgrade(
    command: str,
    site_name: str,
    target: str,
    resources: list[dict],
    say: Callable[[str], None],
    *,
    nodes: Iterable[str] = (),
) -> None:
    """What the state says each node's k3s last got, against what the stack file asks for now:
    the move is shown (preview and up), and a move of more than one Kubernetes minor (or back
    one) is a warning in a preview and stops an up before the CLI runs it, in one line. The
    node scripts refuse it too (k3s-install.sh); this says it before anything is touched.
    `nodes` are the site's (the state's own node components count too)."""
    applied = _applied_k3s_versions(resources, nodes)
    moving = {node: version for node, version in applied.items() if version != target}
    if not moving:
        return
    for version in sorted(set(moving.values())):
        nodes = sorted(node for node, was in moving.items() if was == version)
        say(f"site {site_name}: k3s {version} -> {target} on {', '.join(nodes)}")
    node, version = min(moving.items())
    refusal = upgrade_refusal(version, target)
    if refusal is None:
        return
    message = f"node {node} {refusal}"
    if command == "up":
        raise UsageError(message)
    print(f"warning: {message}; up refuses this", file=sys.stderr)


def _applied_k3s_versions(resources: list[dict], nodes: Iterable[str] = ()) -> dict[str, str]:
    """Per node, the k3s release its k3s step last got (from the state's K3sServer and
    K3sAgent outputs; a secret one is not read). A component's node is found by its type and
    name among the steps of `nodes` and of the node components the state holds (a node the
    stack file no longer lists still has its K3s component in the state)."""
    identities = [(r, r.get("type"), r.get("urn")) for r in resources]
    known = [(r, type_, urn_name(urn)) for r, type_, urn in identities if _is_urn(urn)]
    in_state = [name for _, type_, name in known if type_ in NODE_TYPES]
    table = StepTable(dict.fromkeys([*nodes, *in_state]))
    versions = {}
    for resource, type_, name in known:
        node = table.node_of_component(type_, name) if type_ in K3S_COMPONENTS else None
        if node is None:
            continue
        steps = (resource.get("outputs") or {}).get("steps")
        for step in steps if isinstance(steps, list) else []:
            env = step.get("env") if isinstance(step, dict) and step.get("step") == "k3s" else None
            version = env.get("CONVECTHUB_K3S_VERSION") if isinstance(env, dict) else None
            if isinstance(version, str) and is_k3s_release(version):
                versions[node] = version
    return versions


def _is_urn(value: object) -> bool:
    return isinstance(value, str) and value.count("::") >= 3


def _state_resources(backend: Backend, project: str, stack: str) -> list[dict]:
    """The resources of the stack's last deployment, read from a file backend's checkpoint
    (no CLI call); [] when there is none yet, or the state is elsewhere."""
    if not backend.url.startswith("file://"):
        return []
    root = Path(backend.url.removeprefix("file://")) / ".pulumi" / "stacks"
    for path in (root / project / f"{stack}.json", root / f"{stack}.json"):
        for candidate, opener in ((path, open), (path.with_suffix(".json.gz"), gzip.open)):
            try:
                with opener(candidate, "rt", encoding="utf-8") as handle:
                    document = json.load(handle)
            except (OSError, ValueError):
                continue
            checkpoint = document.get("checkpoint") if isinstance(document, dict) else None
            latest = checkpoint.get("latest") if isinstance(checkpoint, dict) else None
            resources = latest.get("resources") if isinstance(latest, dict) else None
            if not isinstance(resources, list):
                return []
            return [resource for resource in resources if isinstance(resource, dict)]
    return []


def _node_names(stack_file: Path) -> list[str]:
    """The nodes the stack file lists, read without checking it (a destroy must not depend on
    the file being right): they name the steps of a destroy, which ends each node's component
    after its steps."""
    try:
        nodes = json.loads(read_stack_file(stack_file).config.get(f"{NAMESPACE}:nodes", "[]"))
    except (ConfigError, ValueError):
        return []
    if not isinstance(nodes, list):
        return []
    return [str(node["name"]) for node in nodes if isinstance(node, dict) and "name" in node]


def _pulumi_command(stack: str) -> PulumiCommand:
    if shutil.which("pulumi") is None:
        raise UsageError(MISSING_CLI.format(stack=stack.rsplit("/", 1)[-1]))
    try:
        return PulumiCommand()
    except InvalidVersionError as error:
        raise UsageError(f"pulumi: {error}") from None
    except OSError as error:
        raise UsageError(f"pulumi: cannot run it ({error.strerror or error})") from None


def _backend(project_dir: Path, stack_file: Path) -> Backend:
    if not (project_dir / "Pulumi.yaml").is_file():
        raise UsageError(
            f"{project_dir} has no Pulumi.yaml: run from this project, or point --project-dir at it"
        )
    try:
        return backend_for(project_dir, stack_file, os.environ)
    except BackendError as error:
        raise UsageError(str(error)) from None


def _open_stack(name: str, workspace: LocalWorkspace, backend: Backend, *, create: bool) -> Stack:
    try:
        if create:
            return Stack.create_or_select(name, workspace)
        return Stack.select(name, workspace)
    except StackNotFoundError:
        raise UsageError(
            f"--stack {name}: no such stack in {backend.url}: `python -m stacks up --stack "
            f"{name}` creates it (or set PULUMI_BACKEND_URL to where its state is)"
        ) from None
    except CommandError as error:
        raise UsageError(f"--stack {name}: {_last_error_line(error)}") from None


def _confirm_destroy(name: str, stack: Stack) -> None:
    if not sys.stdin.isatty():
        raise UsageError(
            f"destroy asks before it uninstalls site {name}, and there is no terminal to ask "
            "on: pass --yes to destroy without asking"
        )
    nodes = stack.outputs().get("nodes")
    names = sorted(nodes.value) if nodes is not None and isinstance(nodes.value, dict) else []
    on = f" from {len(names)} node(s): {', '.join(names)}" if names else ""
    print(
        f"This uninstalls ConvectHub, k3s and everything else this program set up{on}.\n"
        f"Type the site's name ({name}) to go on: ",
        end="",
        file=sys.stderr,
        flush=True,
    )
    try:
        answer = input().strip()
    except EOFError:
        answer = ""
    if answer != name:
        raise UsageError(f"destroy of site {name} not confirmed: nothing was changed")


def _operate(
    args: argparse.Namespace, stack: Stack, progress: RunProgress, say: Callable[[str], None]
) -> RunReport:
    options = {
        "on_event": progress.on_event,
        "on_output": say if args.verbose else None,
        "on_error": lambda line: print(line, file=sys.stderr, flush=True),
        "color": "never",
    }
    report = RunReport(args.command, args.stack, succeeded=False)
    try:
        if args.command == "preview":
            report.changes = _op_counts(stack.preview(**options).change_summary)
        elif args.command == "up":
            result = stack.up(**options)
            report.changes = _op_counts(result.summary.resource_changes)
            report.outputs = _masked(result.outputs, show_secrets=False)
        elif args.command == "refresh":
            report.changes = _op_counts(stack.refresh(**options).summary.resource_changes)
        else:
            report.changes = _op_counts(stack.destroy(**options).summary.resource_changes)
        report.succeeded = True
    except ConcurrentUpdateError as error:
        progress.errors.append(
            f"another update of site {args.stack} holds its lock: wait for it to end "
            f"({_last_error_line(error)})"
        )
    except CommandError as error:
        if not progress.errors:
            progress.errors.append(_last_error_line(error))
    if not report.succeeded:
        report.changes = dict(progress.changes)
    return report


def _print_report(report: RunReport, progress: RunProgress, say: Callable[[str], None]) -> None:
    changes = ", ".join(f"{count} {op}" for op, count in sorted(report.changes.items()))
    took = f" in {progress.duration_seconds}s" if progress.duration_seconds is not None else ""
    outcome = "succeeded" if report.succeeded else "FAILED"
    say(f"{report.command} {outcome} for site {report.stack}{took}: {changes or 'no changes'}")
    for line in progress.node_summary():
        say(line)
    for name, value in report.outputs.items():
        text = json.dumps(value, sort_keys=True)
        if len(text) > LONG_OUTPUT:
            text = f"{len(value)} entries: `python -m stacks outputs --stack {report.stack} {name}`"
        say(f"output {name}: {text}")
    for error in progress.errors:
        print(f"error: {error}", file=sys.stderr)


def _print_outputs(args: argparse.Namespace, outputs: OutputMap) -> int:
    shown = _masked(outputs, show_secrets=args.show_secrets)
    if args.name is not None:
        if args.name not in shown:
            known = ", ".join(sorted(shown)) or "none yet: run up first"
            raise UsageError(f"site {args.stack} has no output {args.name!r} (outputs: {known})")
        value = shown[args.name]
        print(json.dumps(value, indent=2) if args.json or not isinstance(value, str) else value)
    elif args.json:
        print(json.dumps(shown, indent=2, sort_keys=True))
    else:
        for name, value in sorted(shown.items()):
            print(f"{name}: {json.dumps(value, sort_keys=True)}")
    return EXIT_OK


def _masked(outputs: OutputMap, *, show_secrets: bool) -> dict[str, object]:
    return {
        name: output.value if show_secrets or not output.secret else SECRET_MASK
        for name, output in sorted(outputs.items())
    }


def _op_counts(changes: object) -> dict[str, int]:
    counts = {}
    for op, count in dict(changes or {}).items():  # type: ignore[call-overload]
        counts[getattr(op, "value", str(op))] = int(count)
    return counts


def _last_error_line(error: CommandError) -> str:
    # The SDK keeps the CLI's output only in the text: "\n code: N\n stdout: ...\n stderr: ...".
    text = str(error)
    stdout, _, stderr = text.partition("\n stderr: ")
    lines = [line.strip() for line in (stderr or stdout).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    line = (errors or lines or ["the pulumi command failed"])[-1]
    return line.removeprefix("error:").strip()
