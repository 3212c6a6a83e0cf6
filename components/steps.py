"""What each step and component of the program is called: the one place that names them.

A step is one resource that does something on a machine (a `remote.Command` running a script
of `components/scripts/`, or a `remote.CopyToRemote`); a component groups a node's steps.
Their Pulumi names are part of every live site's state (a changed name is a new resource
unless it keeps an alias), so they are spelt here once, and the components, the offline
render, the progress lines and the tests all take them from here. Nothing finds a step by
its command text or by taking its name apart: `StepTable` looks a name up whole.

    node step        <node>-<kind>            e.g. gpu1-os-prep, gpu1-k3s-install
    site step        <component>-<kind>       hub-certificate (runs on the first server)
    node component   <node>[-<part>]          gpu1 (BareMetalNode), gpu1-k3s (K3sServer)

URNs are the engine's (as Pulumi v3.274 makes them): the parent's whole type chain before
the resource's own type, the root stack's left out. An alias that names a parent which no
longer exists (a step that moved out of it) gives that parent's URN.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

COMMAND_TYPE = "command:remote:Command"
COPY_TYPE = "command:remote:CopyToRemote"
COMPONENT_PACKAGE = "convecthub:infra:"
STACK_TYPE = "pulumi:pulumi:Stack"


def qualified_type(urn: str) -> str:
    """The type chain of a URN, `urn:pulumi:<stack>::<project>::<types>::<name>`."""
    return urn.split("::", 3)[2]


def urn_name(urn: str) -> str:
    """The name of a URN's resource."""
    return urn.split("::", 3)[3]


def type_chain(urn: str) -> list[str]:
    """The types of a URN's chain, the parents' first and the resource's own last, the root
    stack's left out (the SDK's mock monitor puts it first); the stack's own URN is [STACK_TYPE]."""
    chain = qualified_type(urn).split("$")
    return chain[1:] if len(chain) > 1 and chain[0] == STACK_TYPE else chain


def urn_type(urn: str) -> str:
    """The type of a URN's resource (the last of its chain)."""
    return qualified_type(urn).rsplit("$", 1)[-1]


def new_urn(stack: str, project: str, parent: str, type_: str, name: str) -> str:
    """The URN of a resource of `type_` and `name` under the resource `parent` ("" for none)."""
    if parent and qualified_type(parent) != STACK_TYPE:
        type_ = f"{qualified_type(parent)}${type_}"
    return f"urn:pulumi:{stack}::{project}::{type_}::{name}"


class Component(enum.Enum):
    """A component of the program: its type token's name and its name's suffix after the
    node's name ("" for the node itself; None for a site-wide component, named as it is)."""

    NODE = ("BareMetalNode", "")
    GPU = ("GpuNode", "-gpu")
    DOCKER = ("DockerEngine", "-docker")
    K3S_SERVER = ("K3sServer", "-k3s")
    K3S_AGENT = ("K3sAgent", "-k3s")
    NVIDIA_DEVICE_PLUGIN = ("NvidiaDevicePlugin", None)
    ASCEND_DEVICE_PLUGIN = ("AscendDevicePlugin", None)
    HUB = ("HubPlatform", None)

    def __init__(self, type_name: str, suffix: str | None):
        self.type_name = type_name
        self.suffix = suffix

    @property
    def type_token(self) -> str:
        return COMPONENT_PACKAGE + self.type_name

    def name_for(self, node: str) -> str:
        """The component's name on `node` (a node component only)."""
        if self.suffix is None:
            raise ValueError(f"{self.type_name} is site-wide: it has no node")
        return node + self.suffix


class StepKind(enum.Enum):
    """A kind of step: its name's suffix, the script it runs (None: a copy), and for a site
    step the site-wide component it belongs to (a node step belongs to its node)."""

    FACTS = ("facts", "node-facts.sh", None)
    OS_PREP = ("os-prep", "os-prep.sh", None)
    STORAGE = ("storage", "storage-mount.sh", None)
    GPU_DRIVER = ("gpu-driver", "gpu-driver.sh", None)
    GPU_RUNTIME = ("gpu-runtime", "gpu-runtime.sh", None)
    DOCKER = ("docker-engine", "docker-engine.sh", None)
    K3S_BUNDLE = ("k3s-bundle", None, None)
    K3S_IMAGES = ("k3s-images", None, None)
    K3S_INSTALL = ("k3s-install", "k3s-install.sh", None)
    MEMBERSHIP = ("k3s-membership", "k3s-membership.sh", None)
    KUBECONFIG = ("k3s-kubeconfig", "k3s-kubeconfig.sh", None)
    HUB_CERTIFICATE = ("certificate", "hub-certificate.sh", Component.HUB)

    def __init__(self, suffix: str, script: str | None, site_component: Component | None):
        self.suffix = suffix
        self.script = script
        self.site_component = site_component

    @property
    def type_token(self) -> str:
        return COMMAND_TYPE if self.script is not None else COPY_TYPE

    @property
    def site_wide(self) -> bool:
        return self.site_component is not None


# The components named after the node itself.
NODE_COMPONENTS = (Component.NODE,)
# The site-wide components' names (a site has one of each).
SITE_COMPONENT_NAMES = {
    Component.HUB: "hub",
    Component.NVIDIA_DEVICE_PLUGIN: "nvidia-device-plugin",
    Component.ASCEND_DEVICE_PLUGIN: "ascend-device-plugin",
}
NODE_STEPS = tuple(kind for kind in StepKind if not kind.site_wide)
SITE_STEPS = tuple(kind for kind in StepKind if kind.site_wide)


@dataclass(frozen=True)
class StepId:
    """One step: its kind, and the node it belongs to (None for a site step)."""

    kind: StepKind
    node: str | None = None

    @property
    def resource_name(self) -> str:
        if self.node is None:
            assert self.kind.site_component is not None
            return f"{SITE_COMPONENT_NAMES[self.kind.site_component]}-{self.kind.suffix}"
        return f"{self.node}-{self.kind.suffix}"

    @property
    def script(self) -> str | None:
        return self.kind.script

    @property
    def type_token(self) -> str:
        return self.kind.type_token


def node_step(node: str, kind: StepKind) -> StepId:
    if kind.site_wide:
        raise ValueError(f"{kind.name} is a site step")
    return StepId(kind, node)


def site_step(kind: StepKind) -> StepId:
    if not kind.site_wide:
        raise ValueError(f"{kind.name} is a node step")
    return StepId(kind)


class StepTable:
    """Every step a site of these nodes can have, by resource name: a name is looked up
    whole, so a node called `gpu-2` is never taken for a step of `gpu`."""

    def __init__(self, nodes: Iterable[str]):
        self.nodes = tuple(nodes)
        self._by_name: dict[str, StepId] = {}
        for step in (
            *(StepId(kind, node) for node in self.nodes for kind in NODE_STEPS),
            *(StepId(kind) for kind in SITE_STEPS),
        ):
            self._by_name[step.resource_name] = step
        self._components = {
            (component.type_token, component.name_for(node)): node
            for node in self.nodes
            for component in Component
            if component.suffix is not None
        }

    def step(self, resource_name: str) -> StepId | None:
        """The step of that name, if it is one."""
        return self._by_name.get(resource_name)

    def node_of_component(self, type_token: str, name: str) -> str | None:
        """The node a component of this type and name belongs to (None: site-wide)."""
        return self._components.get((type_token, name))
