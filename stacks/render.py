"""Offline render: evaluate the real program for a stack file under the stand-in engine
(stacks/mock_engine.py), and report what it would do.

No Pulumi CLI, provider plugin or machine is involved. Resources echo their inputs back as
their state, and every facts step stands in for the machine it would have asked with
placeholders such as `<master.address>`, so what depends on facts shows where it comes from.
The evaluation runs as a preview (`pulumi preview`), so nothing checks for an SSH agent.
`format_text` lists each node's steps from its components (components/steps.py names them).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from components.connection import login_user
from components.steps import (
    COMMAND_TYPE,
    COMPONENT_PACKAGE,
    SITE_COMPONENT_NAMES,
    STACK_TYPE,
    Component,
    StepKind,
    StepTable,
    node_step,
    urn_name,
    urn_type,
)
from model.secrecy import SECRET_MASK
from model.site import Node
from stacks.config import LoadedSite, decode_config, load_site, reviewing_offline
from stacks.mock_engine import (
    RecordingMonitor,
    StandInProviders,
    deserialize_keeping_nested_secrets,
    map_secrets,
    mask_secrets,
    placeholder_facts,
    run_program,
)
from stacks.stackfile import StackFile

# The engine's names, importable from here too (the tests and the sandbox use them).
__all__ = [
    "RecordingMonitor",
    "Rendering",
    "StandInProviders",
    "deserialize_keeping_nested_secrets",
    "evaluate",
    "format_text",
    "map_secrets",
    "mask_secrets",
    "placeholder_facts",
    "run_program",
]
# A node's components, in the order the render lists their steps.
NODE_REPORT = (
    Component.NODE,
    Component.GPU,
    Component.DOCKER,
    Component.K3S_SERVER,
    Component.K3S_AGENT,
)


@dataclass
class Rendering:
    stack: StackFile
    loaded: LoadedSite
    resources: list[dict] = field(default_factory=list)
    outputs: dict[str, dict] = field(default_factory=dict)
    aliases: dict[str, list[str]] = field(default_factory=dict)  # per URN, its alias URNs
    taken_over: dict[str, str] = field(default_factory=dict)  # per URN, the old URN it is

    # The site's steps by name (made from its nodes when not given).
    steps: StepTable = field(default=None, repr=False, compare=False)  # type: ignore[assignment]
    _by_identity: dict[tuple[str, str], dict] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.steps is None:
            self.steps = StepTable(node.name for node in self.loaded.site.nodes)
        self._by_identity = {(r["type"], r["name"]): r for r in self.resources}

    @property
    def stack_urn(self) -> str:
        return next(r["urn"] for r in self.resources if r["type"] == STACK_TYPE)

    def as_json(self) -> dict:
        return {"resources": self.resources, "outputs": self.outputs.get(self.stack_urn, {})}

    def components(self, type_name: str) -> dict[str, dict]:
        """The components of one type (its token's name, e.g. "K3sServer"), by name."""
        token = COMPONENT_PACKAGE + type_name
        return {r["name"]: r for r in self.resources if r["type"] == token}

    def component(self, kind: Component, name: str) -> dict | None:
        """The component of that kind and name, if the program made it."""
        return self._by_identity.get((kind.type_token, name))

    def resource(self, type_token: str, name: str) -> dict | None:
        """The resource of that type and name, if the program made it."""
        return self._by_identity.get((type_token, name))


def evaluate(stack: StackFile, old_urns: Iterable[str] = ()) -> Rendering:
    """Run the program with the stack file's config; raises ConfigError on bad config.
    `old_urns`, a state's resources, are what a resource may take over under an alias."""
    # A host key not pinned yet is a warning here, not a refusal; a secret is a placeholder.
    with reviewing_offline():
        loaded = load_site(decode_config(stack.config), stack.secret_keys)
        steps = StepTable(node.name for node in loaded.site.nodes)
        monitor = RecordingMonitor(StandInProviders(steps), old_urns)
        run_program(stack, monitor, preview=True)
    return Rendering(
        stack,
        loaded,
        parent_first(monitor.recorded),
        monitor.recorded_outputs,
        monitor.aliases,
        monitor.taken_over,
        steps,
    )


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
    for node in site.nodes:
        lines.append("")
        lines.append(_node_line(rendering.loaded, node))
        lines += _version_lines(versions.get(node.name) if isinstance(versions, dict) else None)
        steps = [
            step
            for kind in NODE_REPORT
            for step in _steps_of(rendering, rendering.component(kind, kind.name_for(node.name)))
        ]
        for number, step in enumerate(steps, start=1):
            action = f" {step['action']}" if step.get("action") else ""
            where = f"  (runs on {step['on']})" if step.get("on") else ""
            lines.append(f"  {number}. {step['step']:<10} {step['script']}{action}{where}")
            if step["step"] == "k3s":
                waits = _waits_for_other_nodes(rendering, node.name)
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
    hub = rendering.component(Component.HUB, SITE_COMPONENT_NAMES[Component.HUB])
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


def _waits_for_other_nodes(rendering: Rendering, node_name: str) -> list[str]:
    """The k3s install steps of other nodes that a node's k3s install step waits for."""
    own = node_step(node_name, StepKind.K3S_INSTALL)
    install = rendering.resource(own.type_token, own.resource_name) or {}
    waits = []
    for urn in install.get("dependencies", []):
        step = rendering.steps.step(urn_name(urn))
        if step is None or step.type_token != urn_type(urn):
            continue
        if step.kind is StepKind.K3S_INSTALL and step.node != node_name:
            waits.append(step.resource_name)
    return sorted(waits)


def _one_line(value: object) -> str:
    """A multi-line value (config.yaml, registries.yaml, label lists) as one readable line."""
    text = str(value)
    return text.replace("\n", " \u23ce ") if "\n" in text else text
