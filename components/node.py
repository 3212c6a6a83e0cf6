"""BareMetalNode: one machine of the fleet, reached over SSH, with its facts and its OS prep.

Its steps, each a `remote.Command` running a script of `components/scripts/`:
  facts    node-facts.sh: preflight that prints the machine's facts as JSON, or refuses it.
  os-prep  os-prep.sh apply; `delete` runs os-prep.sh remove.
  storage  with convecthub:storage.nfs, storage-mount.sh apply (remove on delete): the
           site's NFS export at /data/k8s.
OS prep writes a hosts block naming every node of the fleet, so it needs every node's address,
which may come from that node's facts: the cluster creates all nodes (and so all facts steps)
first, then calls `prepare_os` on each with the fleet's hosts list.
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
from pulumi_command import remote

from components.connection import connection_args, login_user
from components.remote_script import ScriptStep, script_command
from model.secrecy import SecretSections, has_credentials_in_url
from model.site import (
    Node,
    OsSettings,
    SshSettings,
    StorageSettings,
    ip_text,
    is_plain_absolute_path,
    parse_ip,
)

FACTS_SCRIPT = "node-facts.sh"
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
OS_PREP_SCRIPT = "os-prep.sh"
STORAGE_SCRIPT = "storage-mount.sh"
# Addresses that must never go through a proxy: loopback, k3s's default pod and service
# networks, and in-cluster names.
CLUSTER_NO_PROXY = (
    "localhost",
    "127.0.0.1",
    "::1",
    "10.42.0.0/16",
    "10.43.0.0/16",
    ".svc",
    ".cluster.local",
)


# The sections each script variable comes from (model/secrecy.py): a variable of a secret
# section is secret. The node's name stays plain: it names the node's resources.
FACTS_SOURCES: dict[str, tuple[str, ...]] = {"CONVECTHUB_NODE_NAME": ()}
# The fleet's hosts list is an Output: secret when an address in it is (a configured address
# of a secret nodes section), plain for the names and the addresses the nodes report.
OS_PREP_SOURCES: dict[str, tuple[str, ...]] = {"CONVECTHUB_NODE_NAME": (), "CONVECTHUB_HOSTS": ()}
STORAGE_SOURCES: dict[str, tuple[str, ...]] = {"CONVECTHUB_NODE_NAME": ()}
# os-prep.sh's variables that are URLs: secret when they carry credentials.
OS_PREP_URLS = (
    "CONVECTHUB_APT_MIRROR",
    "CONVECTHUB_APT_PROXY",
    "CONVECTHUB_HTTP_PROXY",
    "CONVECTHUB_HTTPS_PROXY",
)


def url_secrets(env: Mapping[str, pulumi.Input[str]], names: Sequence[str]) -> list[str]:
    """The variables among `names` whose URL carries credentials (user:password@)."""
    return [
        name
        for name in names
        if isinstance(env.get(name), str) and has_credentials_in_url(str(env[name]))
    ]


def facts_env(node: Node) -> dict[str, str]:
    env = {"CONVECTHUB_NODE_NAME": node.name, "CONVECTHUB_EXPECT_ARCH": node.arch}
    if node.iface:
        env["CONVECTHUB_IFACE"] = node.iface
    return env


def no_proxy(settings: OsSettings) -> str:
    """The site's no-proxy list with the cluster's own networks added, in a stable order."""
    entries = list(dict.fromkeys([*CLUSTER_NO_PROXY, *settings.no_proxy]))
    return ",".join(entries)


def os_prep_env(
    node: Node, settings: OsSettings, fleet_hosts: pulumi.Input[str]
) -> dict[str, pulumi.Input[str]]:
    """The environment of os-prep.sh; unset options are left out, not passed empty."""
    env: dict[str, pulumi.Input[str]] = {
        "CONVECTHUB_NODE_NAME": node.name,
        "CONVECTHUB_SET_HOSTNAME": "true" if settings.set_hostname else "false",
        "CONVECTHUB_HOSTS": fleet_hosts,
    }
    optional = {
        "CONVECTHUB_APT_MIRROR": settings.apt_mirror,
        "CONVECTHUB_APT_PROXY": settings.apt_proxy,
        "CONVECTHUB_HTTP_PROXY": settings.http_proxy,
        "CONVECTHUB_HTTPS_PROXY": settings.https_proxy,
        "CONVECTHUB_NTP_SERVERS": " ".join(settings.ntp_servers),
        "CONVECTHUB_PACKAGES": " ".join(settings.packages),
    }
    if settings.http_proxy or settings.https_proxy:
        optional["CONVECTHUB_NO_PROXY"] = no_proxy(settings)
    env.update({name: value for name, value in optional.items() if value})
    return env


def storage_env(node: Node, storage: StorageSettings) -> dict[str, str]:
    assert storage.nfs is not None
    return {
        "CONVECTHUB_NODE_NAME": node.name,
        "CONVECTHUB_NFS_SOURCE": f"{storage.nfs.server}:{storage.nfs.path}",
        "CONVECTHUB_MOUNT_POINT": storage.mount_point,
        "CONVECTHUB_NFS_OPTIONS": ",".join(storage.nfs.options),
    }


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
class BareMetalNodeArgs:
    node: Node
    ssh: SshSettings  # effective: the node's overrides over the site's defaults
    os: OsSettings
    storage: StorageSettings = field(default_factory=StorageSettings)
    secrets: SecretSections = field(default_factory=SecretSections)  # the secret sections


class BareMetalNode(pulumi.ComponentResource):
    """A fleet machine: SSH connection, facts (outputs) and OS preparation."""

    connection: remote.ConnectionArgs
    facts: pulumi.Output[dict]
    address: pulumi.Output[str]

    def __init__(
        self, name: str, args: BareMetalNodeArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("convecthub:infra:BareMetalNode", name, None, opts)
        self._name = name
        self._args = args
        self._user = login_user(args.ssh)
        self.connection = connection_args(args.node.host, args.ssh)
        env, secret_env = args.secrets.split_env(
            facts_env(args.node), FACTS_SOURCES, default=("nodes",)
        )
        self._facts_step = ScriptStep(FACTS_SCRIPT, env=env, secret_env=secret_env)
        self.facts_command = script_command(
            f"{name}-facts",
            self._facts_step,
            connection=self.connection,
            login_user=self._user,
            opts=pulumi.ResourceOptions(parent=self),
            reversible=False,
            as_root=False,
        )
        self.facts = self.facts_command.stdout.apply(lambda out: parse_facts(name, out))
        self.address = (
            pulumi.Output.from_input(args.secrets.wrap(args.node.address, "nodes"))
            if args.node.address
            else self.facts.apply(lambda facts: facts["address"])
        )

    @property
    def user(self) -> str:
        """The login user on the node."""
        return self._user

    @property
    def name(self) -> str:
        return self._name

    def run_prepared(
        self,
        resource_name: str,
        step: ScriptStep,
        *,
        parent: pulumi.Resource,
        after: Sequence[pulumi.Resource] = (),
        connection: pulumi.Input[remote.ConnectionArgs] | None = None,
        **options: bool,
    ) -> remote.Command:
        """A script step on this node once its OS is prepared (and `after` those resources);
        `options` are script_command's (reversible, secret_stdout, ...)."""
        return script_command(
            resource_name,
            step,
            connection=connection or self.connection,
            login_user=self._user,
            opts=pulumi.ResourceOptions(parent=parent, depends_on=[self.os_prep_command, *after]),
            **options,
        )

    def prepare_os(self, fleet_hosts: pulumi.Input[str]) -> None:
        """Register the OS prep step; `fleet_hosts` is "name=address,..." for every node."""
        env = os_prep_env(self._args.node, self._args.os, fleet_hosts)
        plain, secret = self._args.secrets.split_env(
            env, OS_PREP_SOURCES, default=("os",), secret=url_secrets(env, OS_PREP_URLS)
        )
        step = ScriptStep(OS_PREP_SCRIPT, env=plain, secret_env=secret)
        self.os_prep_command = script_command(
            f"{self._name}-os-prep",
            step,
            connection=self.connection,
            login_user=self._user,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.facts_command]),
        )
        described = [
            self._facts_step.describe().apply(lambda d: {"step": "facts", **d}),
            step.describe().apply(lambda d: {"step": "os-prep", "action": "apply", **d}),
        ]
        self.ready: pulumi.Resource = self.os_prep_command  # what the node's k3s waits for
        storage = self._args.storage
        if storage.nfs is not None:
            plain, secret = self._args.secrets.split_env(
                storage_env(self._args.node, storage), STORAGE_SOURCES, default=("storage",)
            )
            mount = ScriptStep(STORAGE_SCRIPT, env=plain, secret_env=secret)
            self.storage_command = self.run_prepared(f"{self._name}-storage", mount, parent=self)
            self.ready = self.storage_command
            described.append(
                mount.describe().apply(lambda d: {"step": "storage", "action": "apply", **d})
            )
        self.register_outputs({"facts": self.facts, "address": self.address, "steps": described})
