"""Offline render: evaluate the real program for a stack file under a recording mock monitor.

No Pulumi CLI, provider plugin or machine is involved. Resources echo their inputs back as
their state, and every facts step stands in for the machine it would have asked with
placeholders such as `<master.address>`, so what depends on facts shows where it comes from.
The evaluation runs as a preview (`pulumi preview`), so nothing checks for an SSH agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pulumi
from google.protobuf import struct_pb2
from pulumi.runtime import mocks, rpc, settings
from pulumi.runtime.stack import run_in_stack, wait_for_rpcs

from components.connection import login_user
from components.hub import CERTIFICATE_SCRIPT
from components.node import FACT_FIELDS, FACTS_SCRIPT, reviewing_placeholder_facts
from components.remote_script import SECRET_MASK
from model.site import Node
from stacks import program
from stacks.config import LoadedSite, decode_config, load_site, reviewing_offline
from stacks.engine_urns import AliasResolver, new_urn
from stacks.stackfile import StackFile

COMMAND_TYPE = "command:remote:Command"
RANDOM_PASSWORD_TYPE = "random:index/randomPassword:RandomPassword"
RANDOM_ID_TYPE = "random:index/randomId:RandomId"
COMPONENT_PREFIX = "convecthub:infra:"


def placeholder_facts(node_name: str) -> dict[str, str]:
    """What the render's stand-in for a node answers in place of node-facts.sh."""
    return {name: f"<{node_name}.{name}>" for name in FACT_FIELDS}


class StandInProviders(pulumi.runtime.Mocks):
    """Stand-in for every provider: a resource's state is its inputs; a facts step's stdout
    is `placeholder_facts` of its node, the hub's certificate step a placeholder pair, any other
    command prints `<name.stdout>`, and a generated password or id is `<generated>`."""

    # Its facts are placeholders, which the program then takes as they are (nothing ran).
    answers_facts_with_placeholders = True

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        state = dict(args.inputs)
        create = str(rpc.unwrap_rpc_secret(args.inputs.get("create", "")))
        if args.typ == COMMAND_TYPE:
            if create.endswith(f"# {FACTS_SCRIPT}"):
                stdout = json.dumps(placeholder_facts(args.name.removesuffix("-facts")))
            elif create.endswith(f"# {CERTIFICATE_SCRIPT}"):
                stdout = json.dumps({"certificate": "<certificate>", "key": "<key>"})
            else:
                stdout = f"<{args.name}.stdout>"
            state.update(stdout=stdout, stderr="")
        elif args.typ == RANDOM_PASSWORD_TYPE:
            state["result"] = "<generated>"
        elif args.typ == RANDOM_ID_TYPE:
            state.update({name: "<generated>" for name in ("hex", "b64_std", "b64_url", "dec")})
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list]:
        return {}, []


def deserialize_keeping_nested_secrets(struct: struct_pb2.Struct) -> dict:
    """A registration's properties, each secret kept where it sits. (The SDK's
    deserialize_properties makes a whole property secret when anything inside it is: a chart's
    values would show as one "[secret]" for the one password among them.)"""

    def value_of(value: object) -> object:
        if rpc._is_rpc_struct_secret(value):
            return rpc.wrap_rpc_secret(value_of(value["value"]))  # type: ignore[index]
        if isinstance(value, struct_pb2.Struct):
            if rpc._special_sig_key in value:  # an asset, archive or resource reference
                return rpc.deserialize_property(value)
            return {key: value_of(item) for key, item in value.items()}
        if isinstance(value, struct_pb2.ListValue):
            return [value_of(item) for item in value]
        return rpc.deserialize_property(value)

    properties = {key: value_of(value) for key, value in struct.items()}
    return {key: value for key, value in properties.items() if value is not None}


def map_secrets(value: object, on_secret: Callable[[object], object]) -> object:
    """A deserialized property value with each secret, wherever it sits, replaced by
    `on_secret(the secret's own value)`, and each file asset or archive by its path."""
    if rpc.is_rpc_secret(value):
        return on_secret(rpc.unwrap_rpc_secret(value))
    if isinstance(value, pulumi.FileArchive):
        return {"archive": value.path}
    if isinstance(value, pulumi.FileAsset):
        return {"asset": value.path}
    if isinstance(value, dict):
        return {key: map_secrets(item, on_secret) for key, item in value.items()}
    if isinstance(value, list):
        return [map_secrets(item, on_secret) for item in value]
    return value


def mask_secrets(value: object) -> object:
    """A deserialized property value with every secret as "[secret]"."""
    return map_secrets(value, lambda _: SECRET_MASK)


class RecordingMonitor(mocks.MockMonitor):
    """A mock monitor that also keeps every registration and every outputs registration, and
    makes URNs and resolves aliases as the engine does (stacks/engine_urns.py): `old_urns` are
    the URNs of the state a registration may take over."""

    def __init__(self, providers: pulumi.runtime.Mocks, old_urns: Iterable[str] = ()):
        super().__init__(providers)
        self.recorded: list[dict] = []
        self.recorded_outputs: dict[str, dict] = {}
        self._old_urns = frozenset(old_urns)
        self._resolver: AliasResolver | None = None
        self.aliases: dict[str, list[str]] = {}  # per URN, its alias URNs (none: left out)
        self.taken_over: dict[str, str] = {}  # per URN, the old URN it took over under an alias

    def make_urn(self, parent: str, type_: str, name: str) -> str:
        return new_urn(pulumi.get_stack(), pulumi.get_project(), parent, type_, name)

    def RegisterResource(self, request):  # noqa: N802 (the gRPC method's name)
        self._resolve_aliases(request)
        response = super().RegisterResource(request)
        dependencies = set(request.dependencies)
        for urns in request.propertyDependencies.values():
            dependencies.update(urns.urns)
        resource = {
            "urn": response.urn,
            "type": request.type,
            "name": request.name,
            "parent": request.parent or None,
            "dependencies": sorted(dependencies),
            "inputs": mask_secrets(deserialize_keeping_nested_secrets(request.object)),
        }
        if request.provider:  # an explicit provider, e.g. the cluster's: "<urn>::<id>"
            resource["provider"] = request.provider.rsplit("::", 1)[0]
        self.recorded.append(resource)
        return response

    def _resolve_aliases(self, request) -> None:
        if self._resolver is None:
            self._resolver = AliasResolver(pulumi.get_stack(), pulumi.get_project(), self._old_urns)
        urn = self.make_urn(request.parent, request.type, request.name)
        aliases = self._resolver.aliases(
            urn, request.type, request.name, request.parent, request.aliases
        )
        if aliases:
            self.aliases[urn] = aliases
        old = self._resolver.take_over(urn, aliases)
        if old is not None and old != urn:
            self.taken_over[urn] = old

    def RegisterResourceOutputs(self, request):  # noqa: N802
        outputs = rpc.deserialize_properties(request.outputs)
        self.recorded_outputs[request.urn] = mask_secrets(outputs)
        return super().RegisterResourceOutputs(request)


@dataclass
class Rendering:
    stack: StackFile
    loaded: LoadedSite
    resources: list[dict] = field(default_factory=list)
    outputs: dict[str, dict] = field(default_factory=dict)
    aliases: dict[str, list[str]] = field(default_factory=dict)  # per URN, its alias URNs
    taken_over: dict[str, str] = field(default_factory=dict)  # per URN, the old URN it is

    @property
    def stack_urn(self) -> str:
        return next(r["urn"] for r in self.resources if r["type"] == "pulumi:pulumi:Stack")

    def as_json(self) -> dict:
        return {"resources": self.resources, "outputs": self.outputs.get(self.stack_urn, {})}

    def components(self, type_name: str) -> dict[str, dict]:
        """The components of one type, by name."""
        return {r["name"]: r for r in self.resources if r["type"] == COMPONENT_PREFIX + type_name}


def evaluate(stack: StackFile, old_urns: Iterable[str] = ()) -> Rendering:
    """Run the program with the stack file's config; raises ConfigError on bad config.
    `old_urns`, a state's resources, are what a resource may take over under an alias."""
    monitor = RecordingMonitor(StandInProviders(), old_urns)
    # A host key not pinned yet is a warning here, not a refusal; a secret is a placeholder.
    with reviewing_offline():
        loaded = load_site(decode_config(stack.config), stack.secret_keys)
        run_program(stack, monitor, preview=True)
    return Rendering(
        stack,
        loaded,
        parent_first(monitor.recorded),
        monitor.recorded_outputs,
        monitor.aliases,
        monitor.taken_over,
    )


def run_program(stack: StackFile, monitor: RecordingMonitor, *, preview: bool) -> None:
    """Evaluate the real program against `monitor` with the stack file's config, to the end
    (every registration answered), in an event loop of its own."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    collecting = gc.isenabled()  # the program turns the cyclic collector off for its run
    forget_pending_outputs()
    try:
        mocks.set_mocks(
            monitor.mocks,
            project=stack.project,
            stack=stack.stack,
            preview=preview,
            monitor=monitor,
        )
        # set_mocks finishes a root stack of its own; the program gets a fresh one, as under
        # the CLI, so its exports are registered as the stack's outputs.
        loop.run_until_complete(wait_for_rpcs())
        settings.set_root_resource(None)  # type: ignore[arg-type]
        monitor.recorded.clear()
        pulumi.runtime.set_all_config(dict(stack.config), list(stack.secret_keys))
        placeholders = getattr(monitor.mocks, "answers_facts_with_placeholders", False)
        with reviewing_placeholder_facts() if placeholders else contextlib.nullcontext():
            loop.run_until_complete(run_in_stack(program.run))
    finally:
        forget_pending_outputs()
        asyncio.set_event_loop(None)
        loop.close()
        if collecting:
            gc.enable()


def forget_pending_outputs() -> None:
    """Drops the Output tasks the SDK's settings still hold from a run that ended early.

    `set_mocks` gives each run a new RPC manager but keeps the settings' set of pending Output
    tasks, and every run waits for that set to empty. A run that failed or was cut off leaves
    tasks of its own event loop, now closed, in it: the next run then waits forever, or fails
    with "Event loop is closed"."""
    with settings.SETTINGS.lock:
        settings.SETTINGS.outputs = set()


def parent_first(resources: list[dict]) -> list[dict]:
    """Each resource, then its children in URN order, from the roots down. RPCs complete in
    whatever order the thread pool runs them; this order is the same on every run."""
    children: dict[str | None, list[dict]] = {}
    for resource in resources:
        children.setdefault(resource["parent"], []).append(resource)
    ordered: list[dict] = []
    pending = sorted(children.get(None, []), key=lambda r: r["urn"], reverse=True)
    while pending:
        resource = pending.pop()
        ordered.append(resource)
        pending.extend(
            sorted(children.get(resource["urn"], []), key=lambda r: r["urn"], reverse=True)
        )
    return ordered


def format_text(rendering: Rendering) -> str:
    """Per node, the ordered steps that would run there, with their environment."""
    site = rendering.loaded.site
    custom = [r for r in rendering.resources if r["type"] == COMMAND_TYPE]
    lines = [
        f"{rendering.stack.project} / {rendering.stack.stack}: {len(site.nodes)} node(s), "
        f"{len(custom)} remote command(s), {len(rendering.resources)} resource(s)",
        "  (offline render: nothing ran; facts a node would report show as <node.field>)",
    ]
    for warning in (*rendering.loaded.warnings, *rendering.loaded.version_warnings):
        lines.append(f"  warning: {warning}")
    versions = rendering.as_json()["outputs"].get("versions", {})
    nodes = rendering.components("BareMetalNode")
    gpus = rendering.components("GpuNode")
    dockers = rendering.components("DockerEngine")
    k3s = {**rendering.components("K3sServer"), **rendering.components("K3sAgent")}
    by_name = {r["name"]: r for r in rendering.resources}
    for node in site.nodes:
        lines.append("")
        lines.append(_node_line(rendering.loaded, node))
        lines += _version_lines(versions.get(node.name) if isinstance(versions, dict) else None)
        steps = [
            *_steps_of(rendering, nodes.get(node.name)),
            *_steps_of(rendering, gpus.get(f"{node.name}-gpu")),
            *_steps_of(rendering, dockers.get(f"{node.name}-docker")),
            *_steps_of(rendering, k3s.get(f"{node.name}-k3s")),
        ]
        for number, step in enumerate(steps, start=1):
            action = f" {step['action']}" if step.get("action") else ""
            where = f"  (runs on {step['on']})" if step.get("on") else ""
            lines.append(f"  {number}. {step['step']:<10} {step['script']}{action}{where}")
            if step["step"] == "k3s":
                install = by_name.get(f"{node.name}-k3s-install", {})
                waits = _waits_for_other_nodes(install, node.name)
                lines.append(f"       (waits for {', '.join(waits) if waits else 'no other node'})")
            if step["step"] == "docker":
                lines.append("       (beside k3s: neither waits for the other)")
            for name, value in sorted(step["env"].items()):
                lines.append(f"       {name}={_one_line(value)}")
    lines += _hub_lines(rendering)
    return "\n".join(lines)


def _node_line(loaded: LoadedSite, node: Node) -> str:
    """A node's name, roles, login and arch; what comes from a secret section is masked (the
    name and roles stay: they name and shape the node's resources)."""
    ssh = loaded.site.ssh_for(node)
    secret = loaded.secret_sections
    login = f"{login_user(ssh)}@{node.host}:{ssh.port or 22}"
    arch = node.arch
    if secret.any(("ssh", "nodes")):
        login = f"{SECRET_MASK}@{SECRET_MASK if 'nodes' in secret else node.host}:{SECRET_MASK}"
    if "nodes" in secret:
        arch = SECRET_MASK
    return f"{node.name}  {'+'.join(node.roles)}  {login}  arch {arch}"


def _version_lines(versions: object) -> list[str]:
    """What the node runs (its facts) and what the stack file asks for: k3s, the driver."""
    if not isinstance(versions, dict):
        return [f"  versions {versions}"] if versions else []
    lines = []
    for name, label in (("k3s", "k3s"), ("nvidiaDriver", "nvidia driver")):
        entry = versions.get(name)
        if isinstance(entry, dict):
            target = entry.get("target") or "its own"
            lines.append(f"  {label} {entry.get('runs')} -> {target}")
    return lines


def _hub_lines(rendering: Rendering) -> list[str]:
    """The hub: its chart, where it answers, its certificate and profiles (each "[secret]"
    when it comes from a secret section)."""
    hub = next(iter(rendering.components("HubPlatform").values()), None)
    if hub is None:
        return []
    outputs = rendering.outputs.get(hub["urn"], {})
    urls = outputs.get("urls", {})
    if not isinstance(urls, dict):
        urls = {"https": urls, "http": urls}
    profiles = outputs.get("profiles", [])
    return [
        "",
        f"hub  {outputs.get('chart')}, namespace {outputs.get('namespace')}",
        f"  {urls.get('https')}  (and {urls.get('http')}, which redirects there)",
        f"  certificate: {outputs.get('certificate')}",
        f"  profiles: {', '.join(profiles) if isinstance(profiles, list) else profiles}",
    ]


def _steps_of(rendering: Rendering, component: dict | None) -> list[dict]:
    if component is None:
        return []
    return rendering.outputs.get(component["urn"], {}).get("steps", [])


def _waits_for_other_nodes(resource: dict, node_name: str) -> list[str]:
    """The k3s steps of other nodes that a node's k3s step waits for."""
    names = (urn.rsplit("::", 1)[-1] for urn in resource.get("dependencies", []))
    return sorted(
        name
        for name in names
        if name.endswith("-k3s-install") and not name.startswith(f"{node_name}-k3s")
    )


def _one_line(value: object) -> str:
    """A multi-line value (config.yaml, registries.yaml, label lists) as one readable line."""
    text = str(value)
    return text.replace("\n", " \u23ce ") if "\n" in text else text
