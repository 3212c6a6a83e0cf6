"""BareMetalNode: one machine of the fleet, reached over SSH, its OS prepared, once its facts
are in (components/node_facts.py: NodeFacts, the preflight that comes first).

Its steps, each a `remote.Command` running a script of `components/scripts/`:
  facts    node-facts.sh: its NodeFacts's, a resource of the stack's own, reported first here.
  os-prep  os-prep.sh apply; `delete` runs os-prep.sh remove.
  storage  with convecthub:storage.nfs, storage-mount.sh apply (remove on delete): the
           site's NFS export at /data/k8s.
OS prep writes a hosts block naming every node of the fleet, so it needs every node's address,
which may come from that node's facts: the cluster makes every node's NodeFacts first, then each
BareMetalNode with the fleet's hosts list (components/fleet_hosts.py).

A BareMetalNode is the node's one handle for the layers above it (GPU, Docker, k3s, the hub's
certificate): its model node, SSH settings and connection, login user, facts and address, what
its next steps wait for (`ready`), and `run_prepared` to run a step once its OS is prepared.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
from pulumi_command import remote

from components.node_facts import NodeFacts
from components.remote_script import ScriptStep, script_command
from components.steps import Component, StepId, StepKind
from model.secrecy import SecretSections, has_credentials_in_url
from model.site import Node, OsSettings, SshSettings, StorageSettings

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
# section is secret. The node's name stays plain: it names the node's resources. The fleet's
# hosts list is an Output: secret when an address in it is (a configured address of a secret
# nodes section), plain for the names and the addresses the nodes report.
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


@dataclass(frozen=True)
class BareMetalNodeArgs:
    facts: NodeFacts  # the node's preflight: its model node, SSH settings, connection, address
    fleet_hosts: pulumi.Input[str]  # "name=address,..." for every node (components/fleet_hosts.py)
    os: OsSettings
    storage: StorageSettings = field(default_factory=StorageSettings)
    secrets: SecretSections = field(default_factory=SecretSections)  # the secret sections


class BareMetalNode(pulumi.ComponentResource):
    """A fleet machine with its OS prepared (and the site's shared storage mounted), once its
    facts are in."""

    node_facts: NodeFacts
    os_prep_command: remote.Command
    storage_command: remote.Command | None
    ready: pulumi.Resource  # the last of its steps: what the node's k3s waits for

    def __init__(
        self, name: str, args: BareMetalNodeArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__(Component.NODE.type_token, name, None, opts)
        self._name = name
        self.node_facts = args.facts
        node, secrets = self.model, args.secrets
        env = os_prep_env(node, args.os, args.fleet_hosts)
        plain, secret = secrets.split_env(
            env, OS_PREP_SOURCES, default=("os",), secret=url_secrets(env, OS_PREP_URLS)
        )
        step = ScriptStep(OS_PREP_SCRIPT, env=plain, secret_env=secret)
        self.os_prep_command = script_command(
            StepId(StepKind.OS_PREP, name).resource_name,
            step,
            connection=self.connection,
            login_user=self.user,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[args.facts.command]),
        )
        described = [
            args.facts.describe(),
            step.describe().apply(lambda d: {"step": "os-prep", "action": "apply", **d}),
        ]
        self.ready = self.os_prep_command
        self.storage_command = None
        storage = args.storage
        if storage.nfs is not None:
            plain, secret = secrets.split_env(
                storage_env(node, storage), STORAGE_SOURCES, default=("storage",)
            )
            mount = ScriptStep(STORAGE_SCRIPT, env=plain, secret_env=secret)
            self.storage_command = self.run_prepared(
                StepId(StepKind.STORAGE, name).resource_name, mount, parent=self
            )
            self.ready = self.storage_command
            described.append(
                mount.describe().apply(lambda d: {"step": "storage", "action": "apply", **d})
            )
        # The node's steps, its facts step first (a resource of the stack's: NodeFacts).
        self.register_outputs({"facts": self.facts, "address": self.address, "steps": described})

    @property
    def name(self) -> str:
        return self._name

    @property
    def model(self) -> Node:
        """The node as the site model has it."""
        return self.node_facts.model

    @property
    def ssh(self) -> SshSettings:
        """The node's effective SSH settings."""
        return self.node_facts.ssh

    @property
    def connection(self) -> remote.ConnectionArgs:
        return self.node_facts.connection

    @property
    def user(self) -> str:
        """The login user on the node."""
        return self.node_facts.user

    @property
    def facts(self) -> pulumi.Output[dict]:
        return self.node_facts.facts

    @property
    def address(self) -> pulumi.Output[str]:
        """The node's address: the configured one, else the one it reports."""
        return self.node_facts.address

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
            login_user=self.user,
            opts=pulumi.ResourceOptions(parent=parent, depends_on=[self.os_prep_command, *after]),
            **options,
        )
