"""Typed model of a site's `convecthub:*` stack config (DESIGN.md, "Stack config contract").

Every default lives here. Field names are snake_case in Python and camelCase in the stack file
(`privateKeyFile`, `installDriver`, `httpPort`). Unknown keys are rejected everywhere, so a typo
is never silently ignored. Values that are secrets by nature (keys, passwords, the k3s token) are
`SecretStr`, whether or not the stack file marked them `secure:`; components turn them into
secret Outputs.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
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

DEFAULT_K3S_VERSION = "v1.31.4+k3s1"
DEFAULT_K3S_INSTALL_SCRIPT = "https://get.k3s.io"
# k3s's packaged components that `--disable` accepts.
K3S_COMPONENTS = ("coredns", "servicelb", "traefik", "local-storage", "metrics-server", "runtimes")
# config.yaml keys the program writes itself: extra config may not set them.
K3S_MANAGED_KEYS = {
    "node-name": "it is the node's name in convecthub:nodes",
    "node-ip": "it is the node's address (set address or iface on the node)",
    "flannel-iface": "it is the node's iface in convecthub:nodes",
    "server": "servers and agents join the first server, or k3s.apiEndpoint",
    "token": "the token comes from convecthub:k3s.token or is generated",
    "token-file": "the token comes from convecthub:k3s.token or is generated",
    "cluster-init": "the first server initialises the cluster when there are several",
    "node-label": "use labels on the node in convecthub:nodes",
    "node-taint": "use taints on the node in convecthub:nodes",
    "disable": "use convecthub:k3s.disable",
    "embedded-registry": "it follows from a node with the registry role",
}
# config.yaml keys no site may set, and why.
K3S_REFUSED_KEYS = {
    "docker": "k3s keeps its own containerd; convecthub:os.docker installs Docker beside it",
}
NODE_ROLES = ("server", "agent")
EXTRA_ROLES = ("registry",)
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")

_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_RFC1123_LABEL = re.compile(rf"^{_LABEL}$")
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$", re.IGNORECASE)
_K8S_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_IFACE = re.compile(r"^[A-Za-z0-9_.@:-]{1,15}$")
_URL = re.compile(r"^https?://[^\s/]+(/\S*)?$")
_K3S_VERSION = re.compile(r"^v\d+\.\d+\.\d+\+k3s\d+$")
_K3S_FLAG = re.compile(r"^[a-z][a-z0-9-]*$")
# An image reference: [registry[:port]/]path[:tag][@digest].
_IMAGE = re.compile(
    r"^([A-Za-z0-9.-]+(:\d{1,5})?/)?[a-z0-9]+([._/-][a-z0-9]+)*(:[\w][\w.-]{0,127})?"
    r"(@sha256:[0-9a-f]{64})?$"
)
_REGISTRY = re.compile(r"^(\*|[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?(:\d{1,5})?)$")


def _fail(kind: str, message: str) -> PydanticCustomError:
    # The message goes in the context: user input with braces must not be read as a template.
    return PydanticCustomError(kind, "{message}", {"message": message})


def _check_node_name(value: str) -> str:
    if not _RFC1123_LABEL.match(value):
        raise _fail(
            "node_name",
            f"{value!r} is not a lowercase RFC 1123 label: use 1-63 characters a-z, 0-9 and '-', "
            "starting and ending with a letter or digit (it becomes the hostname and the "
            "Kubernetes node name)",
        )
    return value


def _check_address(value: str) -> str:
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    # A name whose last label is all digits is a malformed IP address, not a hostname.
    if _HOSTNAME.match(value) and not value.rstrip(".").rsplit(".", 1)[-1].isdigit():
        return value
    raise _fail(
        "address",
        f"{value!r} is neither an IP address nor a DNS hostname: give the address the "
        "provisioner reaches the machine at, e.g. 10.0.0.11 or node1.example.com",
    )


def _check_iface(value: str) -> str:
    if not _IFACE.match(value):
        raise _fail(
            "iface",
            f"{value!r} is not a network interface name: use the name `ip -br addr` shows "
            "on the node, e.g. eth1",
        )
    return value


def _check_url(value: str) -> str:
    if not _URL.match(value):
        raise _fail("url", f"{value!r} is not an http(s) URL: write it as http://host:port")
    return value


def _check_key_file(value: str) -> str:
    path = Path(os.path.expanduser(value))
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except OSError as error:
        reason = error.strerror or str(error)
        raise _fail(
            "key_file",
            f"cannot read {str(path)!r} ({reason.lower()}): point it at a readable private "
            "key, or create one with ssh-keygen",
        ) from None
    return str(path)


def _label_value(value: object) -> object:
    if isinstance(value, bool):
        raise _fail(
            "label_value",
            'label values are strings: quote it in the stack file, e.g. "true"',
        )
    if isinstance(value, int | float):
        return str(value)
    return value


def _check_label_value(value: str) -> str:
    if value and not _K8S_NAME.match(value):
        raise _fail(
            "label_value",
            f"{value!r} is not a valid Kubernetes label value: at most 63 characters "
            "a-z, A-Z, 0-9, '-', '_' and '.', starting and ending with a letter or digit",
        )
    return value


def check_label_key(key: str) -> str:
    prefix, _, name = key.rpartition("/")
    valid_prefix = not prefix or (len(prefix) <= 253 and _HOSTNAME.match(prefix))
    if not (valid_prefix and _K8S_NAME.match(name)):
        raise _fail(
            "label_key",
            f"{key!r} is not a valid Kubernetes label key: an optional DNS prefix and '/', "
            "then at most 63 characters a-z, A-Z, 0-9, '-', '_' and '.'",
        )
    return key


def _check_k3s_flag(value: str) -> str:
    if not _K3S_FLAG.match(value):
        raise _fail(
            "k3s_flag",
            f"{value!r} is not a k3s option: write the option as in config.yaml, without "
            "dashes in front, e.g. kubelet-arg",
        )
    if value in K3S_MANAGED_KEYS:
        raise _fail("k3s_flag", f"{value!r} is set by the program: {K3S_MANAGED_KEYS[value]}")
    if value in K3S_REFUSED_KEYS:
        raise _fail("k3s_flag", f"{value!r} is not supported: {K3S_REFUSED_KEYS[value]}")
    return value


def _check_registry(value: str) -> str:
    if not _REGISTRY.match(value):
        raise _fail(
            "registry",
            f"{value!r} is not a registry: write a host with an optional port, e.g. docker.io "
            "or 10.0.0.5:5000 (no scheme, no path), or * for every registry",
        )
    return value


def _check_image(value: str) -> str:
    if not _IMAGE.match(value):
        raise _fail(
            "image",
            f"{value!r} is not an image reference: write [registry/]name[:tag], e.g. "
            "10.0.0.5:5000/ascend-k8sdeviceplugin:v6.0.0",
        )
    return value


def _check_directory(value: str) -> str:
    path = Path(os.path.expanduser(value))
    if not path.is_dir():
        raise _fail(
            "directory",
            f"{str(path)!r} is not a directory on this machine: point it at the airgap "
            "bundle (see the README, 'Airgapped sites')",
        )
    return str(path.resolve())


NodeName = Annotated[str, AfterValidator(_check_node_name)]
Address = Annotated[str, AfterValidator(_check_address)]
Port = Annotated[int, Field(ge=1, le=65535)]
Iface = Annotated[str, AfterValidator(_check_iface)]
Url = Annotated[str, AfterValidator(_check_url)]
KeyFile = Annotated[str, AfterValidator(_check_key_file)]
LabelKey = Annotated[str, AfterValidator(check_label_key)]
LabelValue = Annotated[str, BeforeValidator(_label_value), AfterValidator(_check_label_value)]
K3sFlag = Annotated[str, AfterValidator(_check_k3s_flag)]
K3sValue = str | bool | int | float | list[str]
Registry = Annotated[str, AfterValidator(_check_registry)]
Directory = Annotated[str, AfterValidator(_check_directory)]
Image = Annotated[str, AfterValidator(_check_image)]


class Strict(BaseModel):
    """Base of every config section: camelCase keys, unknown keys rejected, immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )


class Bastion(Strict):
    """A jump host the provisioner goes through (Ansible's ProxyJump)."""

    host: Address
    port: Port = 22
    user: str | None = None
    private_key_file: KeyFile | None = None
    private_key: SecretStr | None = None
    password: SecretStr | None = None


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
    host_key: str | None = Field(
        default=None, description="The node's public host key (as in known_hosts) to pin."
    )
    bastion: Bastion | None = None
    dial_attempts: Annotated[int, Field(ge=1, le=100)] | None = None
    dial_timeout_seconds: Annotated[int, Field(ge=1, le=600)] | None = None

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
    type: Annotated[str, AfterValidator(_check_label_value)] | None = Field(
        default=None, description="Model name, e.g. A100; becomes the gpu-type node label."
    )
    install_driver: bool = True
    count: Annotated[int, Field(ge=1, le=64)] | None = None


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
        raise _fail("taint", "write a taint as a string: key=value:Effect or key:Effect")
    body, sep, effect = value.rpartition(":")
    key, _, taint_value = body.partition("=")
    if not sep or effect not in TAINT_EFFECTS:
        raise _fail(
            "taint",
            f"{value!r} is not a taint: write key=value:Effect with Effect one of "
            + ", ".join(TAINT_EFFECTS),
        )
    try:
        check_label_key(key)
        _check_label_value(taint_value)
    except PydanticCustomError as error:
        raise _fail("taint", f"{value!r} is not a valid taint: {error.message()}") from None
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
            raise _fail(
                "roles",
                f"unknown role {unknown[0]!r}: roles are server or agent, plus registry "
                "for the node that serves images",
            )
        kinds = [role for role in roles if role in NODE_ROLES]
        if len(set(kinds)) > 1:
            raise _fail(
                "roles",
                "a node is a server or an agent, not both: keep one of the two "
                "(k3s servers run workloads too unless tainted)",
            )
        if not kinds:
            raise _fail("roles", "give the node the role server or agent")
        if len(set(roles)) != len(roles):
            raise _fail("roles", "a role is listed twice: list each role once")
        return roles

    @property
    def role(self) -> str:
        """server or agent."""
        return next(role for role in self.roles if role in NODE_ROLES)

    @property
    def is_server(self) -> bool:
        return self.role == "server"


# daemon.json keys the program writes itself: daemonConfig may not set them.
DOCKER_MANAGED_KEYS = {
    "registry-mirrors": "they come from convecthub:registry.mirrors (docker.io's, or *'s)",
    "insecure-registries": "they come from convecthub:registry.insecure",
    "default-runtime": "it is nvidia on NVIDIA nodes, Docker's own elsewhere",
    "runtimes": "the nvidia runtime is added on NVIDIA nodes",
    "data-root": "use convecthub:os.docker.dataRoot",
}


def _check_daemon_key(value: str) -> str:
    if value in DOCKER_MANAGED_KEYS:
        raise _fail("daemon_key", f"{value!r} is set by the program: {DOCKER_MANAGED_KEYS[value]}")
    return value


def _check_absolute_path(value: str) -> str:
    if not (value.startswith("/") and "\n" not in value and "/../" not in f"{value}/"):
        raise _fail("path", f"{value!r} is not an absolute path on the node, e.g. /mnt/docker")
    return value


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
    data_root: Annotated[str, AfterValidator(_check_absolute_path)] | None = Field(
        default=None, description="Where Docker keeps images and containers (data-root)."
    )
    daemon_config: dict[Annotated[str, AfterValidator(_check_daemon_key)], JsonValue] = Field(
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
    no_proxy: list[str] = []
    ntp_servers: list[Address] = []
    packages: list[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9+.-]+$")]] = []
    docker: DockerSettings = DockerSettings()


class K3sSettings(Strict):
    version: Annotated[str, Field(pattern=_K3S_VERSION.pattern)] = DEFAULT_K3S_VERSION
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
    ready_timeout_seconds: Annotated[int, Field(ge=30, le=7200)] = Field(
        default=600, description="How long a node may take to become Ready."
    )
    drain_timeout_seconds: Annotated[int, Field(ge=0, le=7200)] = Field(
        default=120, description="How long draining a removed node may take (0: skip draining)."
    )

    def version_tuple(self) -> tuple[int, int, int]:
        major, minor, patch = self.version[1:].split("+", 1)[0].split(".")
        return int(major), int(minor), int(patch)


class RegistryCredential(Strict):
    username: str
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


def _check_chart_file(value: str) -> str:
    path = Path(os.path.expanduser(value))
    if not (path.is_file() and path.name.endswith((".tgz", ".tar.gz"))):
        raise _fail(
            "chart_file",
            f"{str(path)!r} is not a chart archive on this machine: point it at the .tgz that "
            "`helm pull` saves",
        )
    return str(path.resolve())


ChartFile = Annotated[str, AfterValidator(_check_chart_file)]


class DevicePluginSettings(Strict):
    """The NVIDIA device plugin (with GPU feature discovery) released on the cluster."""

    chart_version: str = Field(default="0.17.0", description="Version of the Helm chart.")
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

    driver_version: Annotated[str, Field(pattern=r"^[0-9]{3}$")] = Field(
        default="550",
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
    reboot_timeout_seconds: Annotated[int, Field(ge=60, le=3600)] = Field(
        default=900, description="How long a node may take to come back after a driver reboot."
    )
    device_plugin: DevicePluginSettings = DevicePluginSettings()
    ascend_device_plugin: AscendDevicePluginSettings = AscendDevicePluginSettings()


def _check_values_file(value: str) -> str:
    path = Path(os.path.expanduser(value))
    if not path.is_file():
        raise _fail(
            "values_file",
            f"{str(path)!r} is not a file on this machine: point it at the site's JupyterHub "
            "chart values (the seed's jhub_config_path)",
        )
    return str(path.resolve())


class HubTls(Strict):
    """The hub's certificate; unset, a self-signed one is made for the site."""

    certificate: str | None = Field(
        default=None,
        description="PEM certificate (with its chain) the hub serves over HTTPS; public.",
    )
    key: SecretStr | None = Field(default=None, description="Its PEM private key; secret.")


class HubSettings(Strict):
    """ConvectHub, the JupyterHub chart (zero-to-jupyterhub), on the cluster (`convecthub:hub`)."""

    http_port: Port = Field(default=80, description="HTTP port on the master (seed's http_port).")
    https_port: Port = Field(default=443, description="HTTPS port on the master (https_port).")
    chart_version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$")] = Field(
        default="4.3.3", description="Version of the JupyterHub Helm chart."
    )
    repository: Url = Field(
        default="https://hub.jupyter.org/helm-chart/",
        description="Helm repository of the chart (or the site's mirror).",
    )
    chart_file: ChartFile | None = Field(
        default=None, description="Airgapped: the chart's .tgz on the provisioner, instead."
    )
    namespace: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")] = "convecthub"
    timeout_seconds: Annotated[int, Field(ge=60, le=7200)] = Field(
        default=900, description="How long the release may take to become ready."
    )
    hosts: list[Address] = Field(
        default=[],
        description="Names the hub is reached by besides the master's address (they go into "
        "the self-signed certificate).",
    )
    tls: HubTls = HubTls()
    authenticator_class: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]+$")] = Field(
        default="shared-password",
        description="JupyterHub's authenticator_class; with shared-password (the default) the "
        "admin users log in with a generated password (stack output hubAdminPassword).",
    )
    admin_users: list[Annotated[str, Field(pattern=r"^[^\s]+$")]] = Field(default=["admin"])
    values_file: Annotated[str, AfterValidator(_check_values_file)] | None = Field(
        default=None,
        description="The site's own chart values (the seed's jhub_config_path), merged over the "
        "program's: where both set a key, the site's wins.",
    )
    values: dict[str, JsonValue] = Field(
        default={}, description="Further chart values, merged over the values file's."
    )


Quantity = Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$")]


class NfsExport(Strict):
    """An NFS export every node mounts (cube-studio's /data/k8s; DLWS's mountpoints)."""

    server: Address
    path: Annotated[str, AfterValidator(_check_absolute_path)] = Field(
        description="The exported directory on the server, e.g. /export/k8s."
    )
    options: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.=:/-]+$")]] = Field(
        default=["hard", "_netdev"], description="Mount options."
    )


class StorageSettings(Strict):
    """Shared storage (`convecthub:storage`): an NFS export mounted on every node, on which the
    hub keeps its users' home directories; without one, k3s's local-path volumes."""

    nfs: NfsExport | None = None
    mount_point: Annotated[str, AfterValidator(_check_absolute_path)] = Field(
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
