"""K3sServer and K3sAgent: k3s on a prepared node, and that node's membership of the cluster.

Each is a component under the node's BareMetalNode, with these steps (`remote.Command`s of
`components/scripts/`, `remote.CopyToRemote` for the bundle):
  bundle      airgap only: the bundle's `<arch>/` (k3s binary, install script) to the node
  images      airgap only, on image holders: the bundle's `images/<arch>/` tarballs
  install     k3s-install.sh apply: config.yaml, registries.yaml, token file, k3s; `delete`
              runs k3s's uninstall script
  membership  k3s-membership.sh on the first server: wait for Ready, labels and taints;
              `delete` drains the node and deletes its Node object (before the uninstall)
  kubeconfig  first server only: the admin kubeconfig, pointed at the API endpoint (secret)

What each node's k3s reads is composed here by pure functions (`k3s_config`,
`registries_config`) so that tests can pin exact values; the token only ever travels as a
secret, in the script's stdin, and lands in a root-only file on the node.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import yaml
from pulumi_command import remote

from components.node import BareMetalNode, no_proxy, url_secrets
from components.remote_script import ScriptStep, script_command
from components.steps import Component, StepId, StepKind
from model.accelerator import accelerator_of
from model.airgap import REMOTE_DIR, AirgapBundle
from model.secrecy import SecretSections, holds_secret
from model.site import K3sSettings, Node, OsSettings, RegistrySettings

INSTALL_SCRIPT = "k3s-install.sh"
MEMBERSHIP_SCRIPT = "k3s-membership.sh"
KUBECONFIG_SCRIPT = "k3s-kubeconfig.sh"
TOKEN_FILE = "/etc/rancher/k3s/cluster-token"
API_PORT = 6443
# With a registry node, every node mirrors every registry through k3s's embedded mirror.
EVERY_REGISTRY = "*"

# With it on some nodes, k3s's ServiceLB binds LoadBalancer ports (the hub's) on those only.
SERVICE_LB_LABEL = "svccontroller.k3s.cattle.io/enablelb"
# The sections each script variable comes from (model/secrecy.py): a variable of a secret
# section is secret. The node's name stays plain (it names the node's resources), and so does
# where the bundle lands (the login user's home, from the node's facts).
INSTALL_SOURCES: dict[str, tuple[str, ...]] = {
    "CONVECTHUB_NODE_NAME": (),
    "CONVECTHUB_K3S_ROLE": ("nodes",),
    "CONVECTHUB_K3S_CONFIG": ("nodes", "k3s"),
    "CONVECTHUB_BUNDLE_ROOT": (),
    "CONVECTHUB_BUNDLE_DIR": ("nodes",),
    "CONVECTHUB_IMAGES_DIR": ("nodes",),
    "CONVECTHUB_REGISTRIES": ("registry",),
    "CONVECTHUB_NO_PROXY": ("os", "k3s"),
    "CONVECTHUB_HTTP_PROXY": ("os",),
    "CONVECTHUB_HTTPS_PROXY": ("os",),
}
INSTALL_URLS = ("CONVECTHUB_INSTALL_SCRIPT_URL", "CONVECTHUB_HTTP_PROXY", "CONVECTHUB_HTTPS_PROXY")
MEMBERSHIP_SOURCES: dict[str, tuple[str, ...]] = {
    "CONVECTHUB_NODE_NAME": (),
    "CONVECTHUB_LABELS": ("nodes",),
    "CONVECTHUB_TAINTS": ("nodes",),
}


def api_server_url(address: str) -> str:
    """https://address:6443, with an IPv6 address in brackets."""
    try:
        if ipaddress.ip_address(address).version == 6:
            address = f"[{address}]"
    except ValueError:
        pass  # a DNS name
    return f"https://{address}:{API_PORT}"


@dataclass(frozen=True)
class K3sRole:
    """Where a node stands in the cluster."""

    server: bool
    first: bool = False  # the first server starts the cluster; everyone else joins it
    cluster_init: bool = False  # the first of several servers: embedded etcd
    embedded_registry: bool = False  # a registry node serves images to the others


def k3s_config(
    node: Node, settings: K3sSettings, role: K3sRole, *, address: str, join_url: str | None
) -> dict[str, object]:
    """The content of the node's /etc/rancher/k3s/config.yaml, in a fixed key order;
    `join_url` is the server the node joins (None for the first server)."""
    config: dict[str, object] = {"node-name": node.name, "node-ip": address}
    if node.iface:
        config["flannel-iface"] = node.iface
    if join_url:
        config["server"] = join_url
    config["token-file"] = TOKEN_FILE
    extra = dict(settings.server_config if role.server else settings.agent_config)
    if role.server:
        if role.cluster_init:
            config["cluster-init"] = True
        tls_san = [settings.api_endpoint] if settings.api_endpoint else []
        tls_san += [san for san in _as_list(extra.pop("tls-san", [])) if san not in tls_san]
        if tls_san:
            config["tls-san"] = tls_san
        if settings.disable:
            config["disable"] = list(settings.disable)
        if role.embedded_registry:
            config["embedded-registry"] = True
        config["write-kubeconfig-mode"] = extra.pop("write-kubeconfig-mode", "0600")
    if role.embedded_registry:
        # Airgapped: no pull falls through to a registry the site cannot reach.
        config["disable-default-registry-endpoint"] = True
    runtime = accelerator_of(node).default_runtime
    if runtime is not None:
        # The GPU layer installed the NVIDIA container runtime before k3s starts: k3s finds it
        # and, with this, runs every pod on it (no RuntimeClass needed).
        config["default-runtime"] = runtime
    config.update(extra)
    return config


def _as_list(value: object) -> list[str]:
    return [str(item) for item in value] if isinstance(value, list) else [str(value)]


def registries_config(registry: RegistrySettings, *, embedded_mirror: bool) -> dict[str, object]:
    """The content of /etc/rancher/k3s/registries.yaml, with passwords in the clear: callers
    hand it on as a secret when `registry.credentials` is not empty."""
    mirrors: dict[str, dict] = {
        name: {"endpoint": list(endpoints)} for name, endpoints in registry.mirrors.items()
    }
    configs: dict[str, dict] = {}
    for host in registry.insecure:
        # Docker's insecure-registries: HTTPS with any certificate, else plain HTTP.
        mirrors.setdefault(host, {"endpoint": [f"https://{host}", f"http://{host}"]})
        configs.setdefault(host, {})["tls"] = {"insecure_skip_verify": True}
    for host, credential in registry.credentials.items():
        configs.setdefault(host, {})["auth"] = {
            "username": credential.username,
            "password": credential.password.get_secret_value(),
        }
    if embedded_mirror:
        mirrors.setdefault(EVERY_REGISTRY, {})
    content: dict[str, object] = {}
    if mirrors:
        content["mirrors"] = dict(sorted(mirrors.items()))
    if configs:
        content["configs"] = dict(sorted(configs.items()))
    return content


def to_yaml(content: Mapping[str, object]) -> str:
    """YAML text in the given key order (stable across runs)."""
    return yaml.safe_dump(dict(content), sort_keys=False, default_flow_style=False).rstrip("\n")


def proxy_env(settings: OsSettings, extra_no_proxy: Sequence[str] = ()) -> dict[str, str]:
    """The proxy settings k3s and containerd get; none when the site has no proxy."""
    if not (settings.http_proxy or settings.https_proxy):
        return {}
    env = {"CONVECTHUB_NO_PROXY": ",".join(dict.fromkeys([no_proxy(settings), *extra_no_proxy]))}
    if settings.http_proxy:
        env["CONVECTHUB_HTTP_PROXY"] = settings.http_proxy
    if settings.https_proxy:
        env["CONVECTHUB_HTTPS_PROXY"] = settings.https_proxy
    return env


def node_labels(node: Node, binds_service_ports: bool = False) -> dict[str, str]:
    """Every label the node gets: its accelerator's (model/accelerator.py: the hub selects nodes
    by them), then its own (which win); on the node that binds LoadBalancer ports (the first
    server: the hub's), ServiceLB's label."""
    ports = {SERVICE_LB_LABEL: "true"} if binds_service_ports else {}
    return {**ports, **accelerator_of(node).labels, **node.labels}


def membership_env(
    node: Node, settings: K3sSettings, binds_service_ports: bool = False
) -> dict[str, str]:
    labels = node_labels(node, binds_service_ports)
    return {
        "CONVECTHUB_NODE_NAME": node.name,
        "CONVECTHUB_LABELS": "\n".join(f"{key}={value}" for key, value in labels.items()),
        "CONVECTHUB_TAINTS": "\n".join(str(taint) for taint in node.taints),
        "CONVECTHUB_READY_TIMEOUT": str(settings.ready_timeout_seconds),
        "CONVECTHUB_DRAIN_TIMEOUT": str(settings.drain_timeout_seconds),
    }


@dataclass(frozen=True)
class K3sClusterArgs:
    """What every node's k3s shares: the site's k3s and registry settings, its proxy, the join
    token, and the first server, where every node's membership step runs."""

    settings: K3sSettings
    registry: RegistrySettings
    os: OsSettings  # the site's proxy, which k3s and containerd go through
    token: pulumi.Input[str]  # secret
    first_server: BareMetalNode  # k3s's admin kubeconfig is there
    secrets: SecretSections = field(default_factory=SecretSections)  # the secret sections


@dataclass(frozen=True)
class K3sNodeArgs:
    """One node's k3s: the node, where it stands, what it joins and what it waits for."""

    node: BareMetalNode  # the prepared machine: model, connection, address, facts, os-prep
    cluster: K3sClusterArgs
    role: K3sRole
    join_url: pulumi.Input[str] | None = None  # the server to join; None for the first server
    holds_images: bool = False  # airgap: this node imports the image tarballs
    # The node's GPU layer (its last step), which the install waits for besides OS prep.
    gpu_ready: pulumi.Resource | None = None
    after: Sequence[pulumi.Resource] = ()  # other nodes' k3s the install waits for


@dataclass(frozen=True)
class K3sServerArgs(K3sNodeArgs):
    """A server's: the first server alone is given the URL clients use, which the kubeconfig it
    reads names."""

    api_server: pulumi.Input[str] | None = None

    def __post_init__(self) -> None:
        if not self.role.server:
            raise ValueError("K3sServerArgs are a server's")
        if (self.api_server is not None) != self.role.first:
            raise ValueError("the first server, and it alone, is given the API server's URL")


class _K3sNode(pulumi.ComponentResource):
    install: remote.Command
    membership: remote.Command

    def __init__(
        self,
        component: Component,
        name: str,
        args: K3sNodeArgs,
        opts: pulumi.ResourceOptions | None,
    ):
        super().__init__(component.type_token, name, None, opts)
        node, cluster = args.node, args.cluster
        self._node = node.model.name
        bundle_root = None
        copies: list[pulumi.Resource] = []
        bundle = cluster.registry.airgap_bundle
        if bundle is not None:
            bundle_root = node.facts.apply(lambda facts: f"{facts['home']}/{REMOTE_DIR}")
            copies = self._copy_bundle(args, bundle, bundle_root)
        env, secret_env = self._install_env(args, bundle_root)
        install_step = ScriptStep(INSTALL_SCRIPT, env=env, secret_env=secret_env)
        on_node = [node.ready, *([args.gpu_ready] if args.gpu_ready is not None else [])]
        self.install = node.run_prepared(
            self._step(StepKind.K3S_INSTALL),
            install_step,
            parent=self,
            after=[*on_node, *copies, *args.after],
        )
        plain, secret = cluster.secrets.split_env(
            membership_env(node.model, cluster.settings, binds_service_ports=args.role.first),
            MEMBERSHIP_SOURCES,
            default=("k3s",),
        )
        membership_step = ScriptStep(MEMBERSHIP_SCRIPT, env=plain, secret_env=secret)
        first_server = cluster.first_server
        self.membership = script_command(
            self._step(StepKind.MEMBERSHIP),
            membership_step,
            connection=first_server.connection,
            login_user=first_server.user,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.install, *args.after]),
        )
        self._steps = [
            install_step.describe().apply(lambda d: {"step": "k3s", "action": "apply", **d}),
            membership_step.describe().apply(
                lambda d: {"step": "membership", "action": "apply", "on": first_server.name, **d}
            ),
        ]

    def _step(self, kind: StepKind) -> str:
        """The resource name of this node's step of that kind."""
        return StepId(kind, self._node).resource_name

    @staticmethod
    def _install_env(
        args: K3sNodeArgs, bundle_root: pulumi.Output[str] | None
    ) -> tuple[dict[str, pulumi.Input[str]], dict[str, pulumi.Input[str]]]:
        """k3s-install.sh's environment, and the part of it that is secret."""
        role, cluster, model = args.role, args.cluster, args.node.model
        settings = cluster.settings
        config = pulumi.Output.all(args.node.address, args.join_url).apply(
            lambda resolved: to_yaml(
                k3s_config(model, settings, role, address=resolved[0], join_url=resolved[1])
            )
        )
        env: dict[str, pulumi.Input[str]] = {
            "CONVECTHUB_NODE_NAME": model.name,
            "CONVECTHUB_K3S_ROLE": "server" if role.server else "agent",
            "CONVECTHUB_K3S_VERSION": settings.version,
            "CONVECTHUB_K3S_CONFIG": config,
            "CONVECTHUB_READY_TIMEOUT": str(settings.ready_timeout_seconds),
        }
        arch = model.arch
        if bundle_root is not None:
            env["CONVECTHUB_BUNDLE_ROOT"] = bundle_root
            env["CONVECTHUB_BUNDLE_DIR"] = bundle_root.apply(lambda root: f"{root}/{arch}")
            if args.holds_images:
                env["CONVECTHUB_IMAGES_DIR"] = bundle_root.apply(
                    lambda root: f"{root}/images/{arch}"
                )
        else:
            env["CONVECTHUB_INSTALL_SCRIPT_URL"] = settings.install_script_url
        registries = registries_config(cluster.registry, embedded_mirror=role.embedded_registry)
        # Registry passwords, or mirrors' URLs with credentials, make the whole file a secret;
        # so do further config.yaml options named like secrets (agent-token, etcd-s3-secret-key)
        # or with credentials in their URL (a datastore-endpoint's).
        secret = []
        if registries:
            env["CONVECTHUB_REGISTRIES"] = to_yaml(registries)
            if cluster.registry.credentials or holds_secret(registries):
                secret.append("CONVECTHUB_REGISTRIES")
        extra = settings.server_config if role.server else settings.agent_config
        if holds_secret(dict(extra)):
            secret.append("CONVECTHUB_K3S_CONFIG")
        env.update(proxy_env(cluster.os, _cluster_networks(settings)))
        plain, secret_env = cluster.secrets.split_env(
            env,
            INSTALL_SOURCES,
            default=("k3s",),
            secret=[*secret, *url_secrets(env, INSTALL_URLS)],
        )
        secret_env["CONVECTHUB_K3S_TOKEN"] = cluster.token
        return plain, secret_env

    def _copy_bundle(
        self, args: K3sNodeArgs, bundle: AirgapBundle, bundle_root: pulumi.Output[str]
    ) -> list[pulumi.Resource]:
        """The airgap bundle's files for this node's arch, to `bundle_root` on the node."""
        node = args.node
        arch = node.model.arch
        binaries = remote.CopyToRemote(
            self._step(StepKind.K3S_BUNDLE),
            connection=node.connection,
            source=pulumi.FileArchive(str(bundle.binaries(arch))),
            remote_path=bundle_root,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[node.node_facts.command]),
        )
        copies: list[pulumi.Resource] = [binaries]
        if args.holds_images:
            copies.append(
                remote.CopyToRemote(
                    self._step(StepKind.K3S_IMAGES),
                    connection=node.connection,
                    source=pulumi.FileArchive(str(bundle.images(arch))),
                    remote_path=bundle_root.apply(lambda root: f"{root}/images"),
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[binaries]),
                )
            )
        return copies


def _cluster_networks(settings: K3sSettings) -> list[str]:
    """Pod and service networks the site set itself (k3s's defaults are always bypassed)."""
    networks = []
    for key in ("cluster-cidr", "service-cidr"):
        value = settings.server_config.get(key)
        if value is not None:
            networks += _as_list(value)[0].split(",")
    return networks


class K3sServer(_K3sNode):
    """A k3s server: the first starts the cluster (and gives its kubeconfig), the others join
    one at a time."""

    kubeconfig: pulumi.Output[str] | None

    def __init__(self, name: str, args: K3sServerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(Component.K3S_SERVER, name, args, opts)
        self.kubeconfig = None
        outputs: dict[str, object] = {"install": self.install.id, "steps": self._steps}
        if args.api_server is not None:
            # The URL is secret when what it comes from is: Output secrecy carries it here.
            step = ScriptStep(KUBECONFIG_SCRIPT, env={"CONVECTHUB_API_SERVER": args.api_server})
            read = script_command(
                self._step(StepKind.KUBECONFIG),
                step,
                connection=args.node.connection,
                login_user=args.node.user,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.install]),
                reversible=False,
                secret_stdout=True,
            )
            self.kubeconfig = pulumi.Output.secret(read.stdout)
            outputs["kubeconfig"] = self.kubeconfig
        self.register_outputs(outputs)


class K3sAgent(_K3sNode):
    """A k3s agent: joins once the servers are up; agents never wait for each other."""

    def __init__(self, name: str, args: K3sNodeArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(Component.K3S_AGENT, name, args, opts)
        self.register_outputs({"install": self.install.id, "steps": self._steps})
