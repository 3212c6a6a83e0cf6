"""NodeFacts: what one machine of the fleet says of itself, asked before anything is done to it.

Its one step, `<node>-facts`, runs node-facts.sh as the login user: a preflight that prints the
machine's facts as JSON (FACT_FIELDS), or refuses the machine (wrong arch, no passwordless
sudo, ...). The facts are held to the model's grammar here (`parse_facts`); the node's address
is the configured one, else the one it reports. Every node's facts come first: the fleet's
hosts list, which each node's OS prep writes, needs every address (components/node.py).

NodeFacts is no component of its own (a new component would be a new resource on a live
site): its step is a resource of the stack's, with an alias to where it was, under the node's
BareMetalNode of the same name, so a live site takes it over as it is. The BareMetalNode
reports the step first among its own (components/node.py).
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import pulumi
from pulumi_command import remote

from components.connection import connection_args, login_user
from components.remote_script import ScriptStep, script_command
from components.steps import Component, StepId, StepKind, new_urn
from model.grammar import ip_text, is_plain_absolute_path, parse_ip
from model.secrecy import SecretSections
from model.site import Node, SshSettings

FACTS_SCRIPT = StepKind.FACTS.script
assert FACTS_SCRIPT is not None
# The keys of the JSON object node-facts.sh prints.
FACT_FIELDS = (
    "hostname",
    "os",
    "kernel",
    "arch",
    "cpus",
    "memoryMb",
    "diskFreeGb",
    "iface",
    "address",
    "user",
    "home",
    "passwordlessSudo",
    "gpus",
    "k3sVersion",  # the k3s release on the machine, null without one
    "nvidiaDriver",  # the NVIDIA driver version nvidia-smi reports, null without one
)
# What a node says it runs, as far as it is shown (a k3s release, a driver version).
_REPORTED_VERSION = re.compile(r"v?[0-9][0-9A-Za-z.+-]{0,63}")
# The sections each script variable comes from (model/secrecy.py): a variable of a secret
# section is secret. The node's name stays plain: it names the node's resources.
FACTS_SOURCES: dict[str, tuple[str, ...]] = {"CONVECTHUB_NODE_NAME": ()}


def facts_env(node: Node) -> dict[str, str]:
    env = {"CONVECTHUB_NODE_NAME": node.name, "CONVECTHUB_EXPECT_ARCH": node.arch}
    if node.iface:
        env["CONVECTHUB_IFACE"] = node.iface
    return env


# The offline render answers every facts step with placeholders (`<master.address>`): within
# `reviewing_placeholder_facts()` those pass unchecked, as nothing ran.
_PLACEHOLDER_FACTS = contextvars.ContextVar("convecthub_placeholder_facts", default=False)


@contextlib.contextmanager
def reviewing_placeholder_facts() -> Iterator[None]:
    token = _PLACEHOLDER_FACTS.set(True)
    try:
        yield
    finally:
        _PLACEHOLDER_FACTS.reset(token)


def _reported_ip(value: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return parse_ip(value) if isinstance(value, str) else None
    except ValueError:  # a scope id (pydantic's error is a ValueError)
        return None


def parse_facts(node_name: str, stdout: str) -> dict:
    """The facts a node printed. What the rest of the site takes from them (its address goes to
    every node's hosts file and join URL, its home into paths) is held to the model's grammar:
    a node is not trusted to print only what node-facts.sh would."""
    try:
        facts = json.loads(stdout)
    except ValueError:
        facts = None
    if not isinstance(facts, dict):
        raise pulumi.RunError(
            f"node {node_name}: the preflight printed no facts (got {stdout[:80]!r}): "
            "run components/scripts/node-facts.sh on it by hand to see why"
        )
    if _PLACEHOLDER_FACTS.get():
        return facts
    address = _reported_ip(facts.get("address"))
    if address is None:
        raise pulumi.RunError(
            f"node {node_name}: the preflight reported {str(facts.get('address'))[:80]!r} as its "
            "address, which is no IP address: set address (or iface) for it in convecthub:nodes"
        )
    facts["address"] = ip_text(address)
    home = facts.get("home")
    if not (isinstance(home, str) and is_plain_absolute_path(home)):
        raise pulumi.RunError(
            f"node {node_name}: the preflight reported {str(home)[:80]!r} as the login's home, "
            "which is no plain absolute path: give the SSH user a home such as /home/ubuntu"
        )
    # What the node runs already is only shown (the versions output): anything but a version
    # there shows as none.
    for name in ("k3sVersion", "nvidiaDriver"):
        value = facts.get(name)
        if not (isinstance(value, str) and _REPORTED_VERSION.fullmatch(value)):
            facts[name] = None
    return facts


@dataclass(frozen=True)
class NodeFactsArgs:
    node: Node
    ssh: SshSettings  # effective: the node's overrides over the site's defaults
    secrets: SecretSections = field(default_factory=SecretSections)  # the secret sections


class NodeFacts:
    """One machine's preflight: its SSH connection and login, its facts step (`command`), its
    facts and its address. Its step is named after the node: `<node>-facts`."""

    name: str
    model: Node
    ssh: SshSettings
    connection: remote.ConnectionArgs
    user: str  # the login user on the node
    step: ScriptStep  # what the facts step runs
    command: remote.Command  # the facts step
    facts: pulumi.Output[dict]
    address: pulumi.Output[str]  # the configured address, else the one the node reports

    def __init__(self, name: str, args: NodeFactsArgs):
        node, secrets = args.node, args.secrets
        self.name = name
        self.model = node
        self.ssh = args.ssh
        self.user = login_user(args.ssh)
        self.connection = connection_args(node.host, args.ssh)
        env, secret_env = secrets.split_env(facts_env(node), FACTS_SOURCES, default=("nodes",))
        self.step = ScriptStep(FACTS_SCRIPT, env=env, secret_env=secret_env)
        # Where the step was: under the node's BareMetalNode, of the node's name (a component
        # of the stack's own, so its URN has no parent's type before its own).
        node_urn = new_urn(
            pulumi.get_stack(), pulumi.get_project(), "", Component.NODE.type_token, name
        )
        self.command = script_command(
            StepId(StepKind.FACTS, name).resource_name,
            self.step,
            connection=self.connection,
            login_user=self.user,
            opts=pulumi.ResourceOptions(aliases=[pulumi.Alias(parent=node_urn)]),
            reversible=False,
            as_root=False,
        )
        self.facts = self.command.stdout.apply(lambda out: parse_facts(name, out))
        self.address = (
            pulumi.Output.from_input(secrets.wrap(node.address, "nodes"))
            if node.address
            else self.facts.apply(lambda facts: facts["address"])
        )

    def describe(self) -> pulumi.Output[dict]:
        """The facts step as the render lists it (its BareMetalNode reports it first)."""
        return self.step.describe().apply(lambda d: {"step": "facts", **d})
