"""Typed model of a site's `convecthub:*` stack config (DESIGN.md, "Stack config contract").

Every default lives here. Field names are snake_case in Python and camelCase in the stack file
(`privateKeyFile`, `installDriver`, `httpPort`). Unknown keys are rejected everywhere, so a typo
is never silently ignored. Values that are secrets by nature (keys, passwords, the k3s token) are
`SecretStr`, whether or not the stack file marked them `secure:`; components turn them into
secret Outputs. What each value may be (an address, a URL, a path, a label...) is its type's,
from model/grammar.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    SecretStr,
    WithJsonSchema,
    field_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from model.airgap import AirgapBundle
from model.defaults import (
    DEVICE_PLUGIN_CHART_VERSION,
    HUB_CHART_VERSION,
    K3S_VERSION,
    NVIDIA_DRIVER_BRANCH,
)
from model.grammar import (
    Address,
    AuthenticatorClass,
    ChartFile,
    ChartVersion,
    DaemonKey,
    Directory,
    DriverBranch,
    HostKeyPolicy,
    HostKeyText,
    Iface,
    Image,
    K3sFlag,
    K3sValue,
    K3sVersion,
    KeyFile,
    LabelKey,
    LabelText,
    LabelValue,
    MountOption,
    Namespace,
    NodeName,
    NodePath,
    NoProxy,
    PackageName,
    Pem,
    Port,
    Quantity,
    Registry,
    Url,
    UserName,
    ValuesFile,
    WholeNumber,
    _check_label_value,
    check_label_key,
    fail,
)
from model.values_file import merge_values, read_values_file

# The defaults come from the one table of them (model/defaults.py).
DEFAULT_K3S_VERSION = K3S_VERSION
DEFAULT_K3S_INSTALL_SCRIPT = "https://get.k3s.io"
# The hub's default ports: HTTP's and HTTPS's own, which a URL leaves unsaid, the chart's proxy
# redirects plain HTTP to, and k3s's packaged Traefik takes on every node.
DEFAULT_HTTP_PORT = 80
DEFAULT_HTTPS_PORT = 443
# k3s's packaged components that `--disable` accepts.
K3S_COMPONENTS = ("coredns", "servicelb", "traefik", "local-storage", "metrics-server", "runtimes")
NODE_ROLES = ("server", "agent")
EXTRA_ROLES = ("registry",)
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


class Strict(BaseModel):
    """Base of every config section: camelCase keys, unknown keys rejected, immutable.

    A fact derived from a section is a `cached_property`, worked out once per instance (pydantic
    keeps it out of equality, dumps and the schema); `model_copy(update=...)` forgets the copy's,
    which the update may change.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        copied = super().model_copy(update=update, deep=deep)
        if update:
            for name in _cached_properties(type(self)):
                copied.__dict__.pop(name, None)
        return copied


def _cached_properties(model: type) -> list[str]:
    return [
        name
        for klass in model.__mro__
        for name, value in vars(klass).items()
        if isinstance(value, cached_property)
    ]


class Bastion(Strict):
    """A jump host the provisioner goes through (Ansible's ProxyJump)."""

    host: Address
    port: Port = 22
    user: str | None = None
    private_key_file: KeyFile | None = None
    private_key: SecretStr | None = None
    password: SecretStr | None = None
    host_key: HostKeyText | None = Field(
        default=None,
        description="The bastion's public host key (`<type> <base64>`), checked on every "
        "connection through it.",
    )


class SshSettings(Strict):
    """How the provisioner logs in to a node; every field may be overridden per node.

    With no key or password configured, the connection uses the SSH agent (SSH_AUTH_SOCK).
    An unset `user` means the provisioner's own login name, as `ssh` itself does.
    """

    user: str | None = None
    port: Port | None = None
    private_key_file: KeyFile | None = None
    private_key: SecretStr | None = None
    private_key_password: SecretStr | None = None
    password: SecretStr | None = None
    host_key: HostKeyText | None = Field(
        default=None,
        description="The node's public host key (`<type> <base64>`, as in its "
        "/etc/ssh/ssh_host_ed25519_key.pub): the connection is refused if the node shows "
        "another. `python -m stacks known-hosts --stack SITE` collects them.",
    )
    host_key_policy: HostKeyPolicy | None = Field(
        default=None,
        description="What a node (or bastion) without hostKey gets: pinned (the default) "
        "refuses it, accept-new records the key `python -m stacks up` sees first and pins it "
        "from then on, insecure accepts any key (warned on every preview and up).",
    )
    bastion: Bastion | None = None
    dial_attempts: WholeNumber(1, 100) | None = None  # type: ignore[valid-type]
    dial_timeout_seconds: WholeNumber(1, 600) | None = None  # type: ignore[valid-type]

    @property
    def policy(self) -> HostKeyPolicy:
        """The effective hostKeyPolicy: pinned unless the site or the node says otherwise."""
        return self.host_key_policy or "pinned"

    def over(self, defaults: SshSettings) -> SshSettings:
        """These settings with every unset field taken from `defaults`."""
        overrides = {
            field: getattr(self, field)
            for field in self.model_fields_set
            if getattr(self, field) is not None
        }
        return defaults.model_copy(update=overrides)


class Gpu(Strict):
    """An accelerator a node carries (seed's has_gpu / install_nvidia_driver, DLWS's NPUs)."""

    vendor: Literal["nvidia", "ascend"]
    type: LabelText | None = Field(
        default=None, description="Model name, e.g. A100; becomes the gpu-type node label."
    )
    install_driver: bool = True
    count: WholeNumber(1, 64) | None = None  # type: ignore[valid-type]


class Taint(BaseModel):
    model_config = ConfigDict(frozen=True)
    key: str
    value: str
    effect: str

    def __str__(self) -> str:
        value = f"={self.value}" if self.value else ""
        return f"{self.key}{value}:{self.effect}"


def _parse_taint(value: object) -> Taint:
    if not isinstance(value, str):
        raise fail("taint", "write a taint as a string: key=value:Effect or key:Effect")
    body, sep, effect = value.rpartition(":")
    key, _, taint_value = body.partition("=")
    if not sep or effect not in TAINT_EFFECTS:
        raise fail(
            "taint",
            f"{value!r} is not a taint: write key=value:Effect with Effect one of "
            + ", ".join(TAINT_EFFECTS),
        )
    try:
        check_label_key(key)
        _check_label_value(taint_value)
    except PydanticCustomError as error:
        raise fail("taint", f"{value!r} is not a valid taint: {error.message()}") from None
    return Taint(key=key, value=taint_value, effect=effect)


TaintSpec = Annotated[
    Taint,
    BeforeValidator(_parse_taint),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^[^=:\s]+(=[^=:\s]*)?:(NoSchedule|PreferNoSchedule|NoExecute)$",
            "description": "key=value:Effect or key:Effect",
        }
    ),
]


class Node(Strict):
    """One machine of the fleet."""

    name: NodeName
    host: Address = Field(description="Address the provisioner reaches over SSH.")
    roles: list[str] = Field(min_length=1)
    iface: Iface | None = Field(
        default=None,
        description="Private-network interface (seed's my_iface); default: the default route's.",
    )
    address: Address | None = Field(
        default=None,
        description="The node's address on the private network; default: the IPv4 of `iface` "
        "as the node reports it.",
    )
    arch: Literal["amd64", "arm64"] = "amd64"
    ssh: SshSettings = SshSettings()
    gpu: Gpu | None = None
    install_docker: bool | None = Field(
        default=None,
        description="Whether this node gets Docker (the seed's install_docker); "
        "default: convecthub:os.docker.install.",
    )
    labels: dict[LabelKey, LabelValue] = {}
    taints: list[TaintSpec] = []

    @field_validator("roles")
    @classmethod
    def _roles(cls, roles: list[str]) -> list[str]:
        unknown = [role for role in roles if role not in NODE_ROLES + EXTRA_ROLES]
        if unknown:
            raise fail(
                "roles",
                f"unknown role {unknown[0]!r}: roles are server or agent, plus registry "
                "for the node that serves images",
            )
        kinds = [role for role in roles if role in NODE_ROLES]
        if len(set(kinds)) > 1:
            raise fail(
                "roles",
                "a node is a server or an agent, not both: keep one of the two "
                "(k3s servers run workloads too unless tainted)",
            )
        if not kinds:
            raise fail("roles", "give the node the role server or agent")
        if len(set(roles)) != len(roles):
            raise fail("roles", "a role is listed twice: list each role once")
        return roles

    @property
    def role(self) -> str:
        """server or agent."""
        return next(role for role in self.roles if role in NODE_ROLES)

    @property
    def is_server(self) -> bool:
        return self.role == "server"


class DockerSettings(Strict):
    """Docker Engine on the nodes, beside k3s's own containerd (the seeds' install_docker and
    docker_repo; OpenPAI's daemon settings)."""

    install: bool = Field(
        default=False,
        description="Install Docker on every node; a node's installDocker overrides this.",
    )
    repository: Url = Field(
        default="https://download.docker.com/linux/ubuntu",
        description="Docker's APT repository (the seeds' docker_repo), or a site mirror of it.",
    )
    key_url: Url = Field(
        default="https://download.docker.com/linux/ubuntu/gpg",
        description="Signing key of that repository (of the mirror, for a mirror).",
    )
    data_root: NodePath | None = Field(
        default=None, description="Where Docker keeps images and containers (data-root)."
    )
    daemon_config: dict[DaemonKey, JsonValue] = Field(
        default={}, description="Further daemon.json settings, e.g. log-opts."
    )


class OsSettings(Strict):
    """Operating-system preparation shared by every node (`convecthub:os`)."""

    set_hostname: bool = Field(
        default=True,
        description="Rename each machine to its node name (off for the dev stack, "
        "whose only node is the provisioner itself).",
    )
    apt_mirror: Url | None = Field(
        default=None, description="Distribution mirror replacing the node's apt sources."
    )
    apt_proxy: Url | None = Field(
        default=None, description="HTTP proxy for apt only, e.g. an apt-cacher-ng."
    )
    http_proxy: Url | None = None
    https_proxy: Url | None = None
    no_proxy: list[NoProxy] = []
    ntp_servers: list[Address] = []
    packages: list[PackageName] = []
    docker: DockerSettings = DockerSettings()


class K3sSettings(Strict):
    version: K3sVersion = DEFAULT_K3S_VERSION
    api_endpoint: Address | None = Field(
        default=None,
        description="Address clients and agents use for the API (also a tls-san); "
        "default: the first server's private address.",
    )
    token: SecretStr | None = Field(
        default=None, description="Cluster join token (seed's convect_token); generated if unset."
    )
    disable: list[Literal[K3S_COMPONENTS]] = Field(  # type: ignore[valid-type]
        default=["traefik"],
        description="Packaged components the servers do not deploy. Traefik by default: the "
        "hub brings its own proxy and takes the master's HTTP(S) ports.",
    )
    server_config: dict[K3sFlag, K3sValue] = Field(
        default={}, description="Further config.yaml options for servers, e.g. kubelet-arg."
    )
    agent_config: dict[K3sFlag, K3sValue] = Field(
        default={}, description="Further config.yaml options for agents."
    )
    install_script_url: Url = Field(
        default=DEFAULT_K3S_INSTALL_SCRIPT,
        description="Where nodes fetch the k3s install script from (online sites only).",
    )
    ready_timeout_seconds: WholeNumber(30, 7200) = Field(  # type: ignore[valid-type]
        default=600, description="How long a node may take to become Ready."
    )
    drain_timeout_seconds: WholeNumber(0, 7200) = Field(  # type: ignore[valid-type]
        default=120, description="How long draining a removed node may take (0: skip draining)."
    )

    def version_tuple(self) -> tuple[int, int, int]:
        major, minor, patch = self.version[1:].split("+", 1)[0].split(".")
        return int(major), int(minor), int(patch)


class RegistryCredential(Strict):
    username: UserName
    password: SecretStr


class RegistrySettings(Strict):
    """Container registries for containerd on every node, and the airgap bundle
    (`convecthub:registry`)."""

    mirrors: dict[Registry, list[Url]] = Field(
        default={}, description="Mirror endpoints per registry, e.g. docker.io: [https://m:5000]."
    )
    insecure: list[Registry] = Field(
        default=[], description="Registries reached over plain HTTP or with an unverified cert."
    )
    credentials: dict[Registry, RegistryCredential] = {}
    bundle_dir: Directory | None = Field(
        default=None,
        description="Airgap bundle on the provisioner: <arch>/k3s, <arch>/install.sh and "
        "images/<arch>/*.tar*; when set, nothing is downloaded on a node.",
    )

    @cached_property
    def airgap_bundle(self) -> AirgapBundle | None:
        """The airgap bundle at bundleDir; None for a site that downloads."""
        return AirgapBundle(Path(self.bundle_dir)) if self.bundle_dir is not None else None


class DevicePluginSettings(Strict):
    """The NVIDIA device plugin (with GPU feature discovery) released on the cluster."""

    chart_version: ChartVersion = Field(
        default=DEVICE_PLUGIN_CHART_VERSION, description="Version of the Helm chart."
    )
    repository: Url = Field(
        default="https://nvidia.github.io/k8s-device-plugin",
        description="Helm repository of the chart (or the site's mirror).",
    )
    chart_file: ChartFile | None = Field(
        default=None, description="Airgapped: the chart's .tgz on the provisioner, instead."
    )


class AscendDevicePluginSettings(Strict):
    """Huawei's Ascend device plugin, run on the cluster's NPU nodes."""

    image: Image | None = Field(
        default=None,
        description="Its image (Huawei's ascend-k8sdeviceplugin), as the nodes pull it: from "
        "the site's registry, or loaded from the airgap bundle. Required with Ascend nodes: "
        "there is no anonymous public source to default to.",
    )


class GpuSettings(Strict):
    """How GPU nodes get their driver and container runtime (`convecthub:gpu`)."""

    driver_version: DriverBranch = Field(
        default=NVIDIA_DRIVER_BRANCH,
        description="NVIDIA driver branch installed on nodes with installDriver: true "
        "(Ubuntu's nvidia-headless-<branch>-server and nvidia-utils-<branch>-server).",
    )
    toolkit_repository: Url = Field(
        default="https://nvidia.github.io/libnvidia-container/stable/deb",
        description="APT repository of the NVIDIA container toolkit, or a site mirror of it; "
        "the node's arch is appended as the repository's path.",
    )
    toolkit_key_url: Url = Field(
        default="https://nvidia.github.io/libnvidia-container/gpgkey",
        description="Signing key of that repository (of the mirror, for a mirror).",
    )
    reboot_timeout_seconds: WholeNumber(60, 3600) = Field(  # type: ignore[valid-type]
        default=900, description="How long a node may take to come back after a driver reboot."
    )
    device_plugin: DevicePluginSettings = DevicePluginSettings()
    ascend_device_plugin: AscendDevicePluginSettings = AscendDevicePluginSettings()


class HubTls(Strict):
    """The hub's certificate; unset, a self-signed one is made for the site."""

    certificate: Pem | None = Field(
        default=None,
        description="PEM certificate (with its chain) the hub serves over HTTPS; public.",
    )
    key: SecretStr | None = Field(default=None, description="Its PEM private key; secret.")


class HubSettings(Strict):
    """ConvectHub, the JupyterHub chart (zero-to-jupyterhub), on the cluster (`convecthub:hub`)."""

    http_port: Port = Field(
        default=DEFAULT_HTTP_PORT, description="HTTP port on the master (seed's http_port)."
    )
    https_port: Port = Field(
        default=DEFAULT_HTTPS_PORT, description="HTTPS port on the master (https_port)."
    )
    chart_version: ChartVersion = Field(
        default=HUB_CHART_VERSION, description="Version of the JupyterHub Helm chart."
    )
    repository: Url = Field(
        default="https://hub.jupyter.org/helm-chart/",
        description="Helm repository of the chart (or the site's mirror).",
    )
    chart_file: ChartFile | None = Field(
        default=None, description="Airgapped: the chart's .tgz on the provisioner, instead."
    )
    namespace: Namespace = "convecthub"
    timeout_seconds: WholeNumber(60, 7200) = Field(  # type: ignore[valid-type]
        default=900, description="How long the release may take to become ready."
    )
    hosts: list[Address] = Field(
        default=[],
        description="Names the hub is reached by besides the master's address (they go into "
        "the self-signed certificate).",
    )
    tls: HubTls = HubTls()
    authenticator_class: AuthenticatorClass = Field(
        default="shared-password",
        description="JupyterHub's authenticator_class; with shared-password (the default) the "
        "admin users log in with a generated password (stack output hubAdminPassword).",
    )
    admin_users: list[UserName] = Field(default=["admin"])
    values_file: ValuesFile | None = Field(
        default=None,
        description="The site's own chart values (the seed's jhub_config_path), merged over the "
        "program's: where both set a key, the site's wins.",
    )
    values: dict[str, JsonValue] = Field(
        default={}, description="Further chart values, merged over the values file's."
    )

    @cached_property
    def file_values(self) -> dict[str, object]:
        """The values file's mapping ({} without one), read once; ValueError with what is wrong
        when the file is no YAML mapping (stacks/config checks it on load). Not to be changed."""
        return read_values_file(self.values_file) if self.values_file is not None else {}

    @cached_property
    def site_values(self) -> dict[str, object]:
        """The site's own chart values: its values file's, then `values` merged over them.
        Not to be changed."""
        return merge_values(self.file_values, self.values)


class NfsExport(Strict):
    """An NFS export every node mounts (cube-studio's /data/k8s; DLWS's mountpoints)."""

    server: Address
    path: NodePath = Field(description="The exported directory on the server, e.g. /export/k8s.")
    options: list[MountOption] = Field(default=["hard", "_netdev"], description="Mount options.")


class StorageSettings(Strict):
    """Shared storage (`convecthub:storage`): an NFS export mounted on every node, on which the
    hub keeps its users' home directories; without one, k3s's local-path volumes."""

    nfs: NfsExport | None = None
    mount_point: NodePath = Field(
        default="/data/k8s", description="Where every node mounts the export."
    )
    capacity: Quantity = Field(
        default="1Ti", description="What the shared volume declares (NFS does not enforce it)."
    )
    user_volume_size: Quantity = Field(
        default="10Gi", description="Each user's volume without NFS (local-path)."
    )


class Site(Strict):
    """The whole `convecthub` namespace of one stack."""

    ssh: SshSettings = SshSettings()
    nodes: list[Node] = Field(min_length=1)
    os: OsSettings = OsSettings()
    k3s: K3sSettings = Field(default=K3sSettings(), alias="k3s")
    registry: RegistrySettings = RegistrySettings()
    gpu: GpuSettings = GpuSettings()
    hub: HubSettings = HubSettings()
    storage: StorageSettings = StorageSettings()

    @property
    def servers(self) -> list[Node]:
        return [node for node in self.nodes if node.is_server]

    @property
    def first_server(self) -> Node:
        """The first node with the server role: it initialises the cluster, serves the API the
        others join (unless k3s.apiEndpoint) and answers for the hub."""
        return self.servers[0]

    @property
    def airgap_bundle(self) -> AirgapBundle | None:
        """The airgap bundle (registry.bundleDir); None for a site that downloads."""
        return self.registry.airgap_bundle

    @property
    def agents(self) -> list[Node]:
        return [node for node in self.nodes if not node.is_server]

    @property
    def registry_nodes(self) -> list[Node]:
        """Nodes with the registry role: they hold the airgap images for the others."""
        return [node for node in self.nodes if "registry" in node.roles]

    @property
    def docker_nodes(self) -> list[Node]:
        """Nodes that get Docker: their installDocker, else os.docker.install."""
        return [
            node
            for node in self.nodes
            if (self.os.docker.install if node.install_docker is None else node.install_docker)
        ]

    def ssh_for(self, node: Node) -> SshSettings:
        """The node's effective SSH settings: its overrides over the site's defaults."""
        return node.ssh.over(self.ssh)
