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
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, Self

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

from model.airgap import AirgapBundle
from model.defaults import (
    DEVICE_PLUGIN_CHART_VERSION,
    HUB_CHART_VERSION,
    K3S_VERSION,
    NVIDIA_DRIVER_BRANCH,
)
from model.safe_yaml import YamlError, read_text_file
from model.ssh_keys import HostKeyError, parse_host_key
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

# Every grammar below is applied with `fullmatch` (never `match` with `^...$`: Python's `$` also
# matches before a trailing newline, so "value\n" would pass).
_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_RFC1123_LABEL = re.compile(_LABEL)
_HOSTNAME = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(\.{_LABEL})*", re.IGNORECASE | re.ASCII)
_K8S_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_IFACE = re.compile(r"[A-Za-z0-9_.@:-]{1,15}")
# Given to pydantic, whose (Rust) regex ends `$` at the end of the text only.
_K3S_VERSION = re.compile(r"^v[0-9]+\.[0-9]+\.[0-9]+\+k3s[0-9]+$")
_K3S_FLAG = re.compile(r"[a-z][a-z0-9-]*")
# An image reference: [registry[:port]/]path[:tag][@digest].
_IMAGE = re.compile(
    r"([A-Za-z0-9.-]+(:\d{1,5})?/)?[a-z0-9]+([._/-][a-z0-9]+)*(:\w[\w.-]{0,127})?"
    r"(@sha256:[0-9a-f]{64})?",
    re.ASCII,
)
_REGISTRY = re.compile(r"\*|[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?(:\d{1,5})?")
# What a URL's path, query and userinfo may hold: RFC 3986's unreserved and percent-escapes, and
# the sub-delimiters no shell, sed expression or sources.list line reads as syntax.
_URL_TEXT = re.compile(r"[A-Za-z0-9._~%/:@+=,-]*")
_URL_USERINFO = re.compile(r"[A-Za-z0-9._~%:-]+")
# Control characters (C0, DEL, C1) and the Unicode line and paragraph separators.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# A path on a node: absolute, each part plain (no spaces: fstab and daemon.json split on them).
_PATH_PART = re.compile(r"[A-Za-z0-9._+@-]+")
# A login name on a node, or a registry or hub user (POSIX-portable, plus @ for domain users).
_USER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}")
# A Docker daemon.json key: lowercase words and dashes, e.g. log-opts.
_DAEMON_KEY = re.compile(r"[a-z][a-z0-9-]*")
# A Helm chart version (SemVer 2).
_CHART_VERSION = re.compile(r"\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?")
# Largest private key file read (a 16384-bit RSA key is about 12 KiB).
KEY_FILE_MAX_BYTES = 64 * 1024


def _fail(kind: str, message: str) -> PydanticCustomError:
    # The message goes in the context: user input with braces must not be read as a template.
    return PydanticCustomError(kind, "{message}", {"message": message})


def _check_node_name(value: str) -> str:
    if not _RFC1123_LABEL.fullmatch(value):
        raise _fail(
            "node_name",
            f"{value!r} is not a lowercase RFC 1123 label: use 1-63 characters a-z, 0-9 and '-', "
            "starting and ending with a letter or digit (it becomes the hostname and the "
            "Kubernetes node name)",
        )
    return value


def has_control(value: str) -> bool:
    return _CONTROL.search(value) is not None


def check_text(value: str, what: str = "value") -> str:
    """Any string the model keeps: one line, no control characters."""
    if has_control(value):
        raise _fail(
            "control_character",
            f"{value!r} holds a control character (a newline, tab or the like): write the "
            f"{what} on one line, without them",
        )
    return value


def parse_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address `value` writes, None if it is none; an IPv6 scope id is refused."""
    if "%" in value:
        # A zone (fe80::1%eth0) names an interface of the machine that reads the address, so
        # no two machines read it alike; Python accepts any text after the %, and the value
        # reaches /etc/hosts, config.yaml and sed on the nodes. Nothing here needs one.
        raise _fail(
            "address",
            f"{value!r} has an IPv6 scope id (the part from %): a zone names an interface of "
            "the machine that reads the address, so the nodes cannot share it; give a global "
            "or unique-local address (or a DNS name) instead",
        )
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def ip_text(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """The one way to write an IP address: IPv6 compressed and lowercase (an IPv4-mapped one
    with its IPv4 part dotted, as it is usually written)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return f"::ffff:{address.ipv4_mapped}"
    return str(address)


def _check_address(value: str) -> str:
    check_text(value, "address")
    if value.startswith("[") and value.endswith("]"):
        raise _fail(
            "address",
            f"{value!r} is in brackets: write the IPv6 address without them, e.g. fd00::10",
        )
    address = parse_ip(value)
    if address is not None:
        return ip_text(address)
    # A name whose last label is all digits is a malformed IP address, not a hostname.
    if _HOSTNAME.fullmatch(value) and not value.rstrip(".").rsplit(".", 1)[-1].isdigit():
        return value
    raise _fail(
        "address",
        f"{value!r} is neither an IP address nor a DNS hostname: give the address the "
        "provisioner reaches the machine at, e.g. 10.0.0.11 or node1.example.com",
    )


def address_key(value: str) -> str:
    """What two spellings of one address have in common: an IP's compressed form (an IPv4-mapped
    IPv6 address as its IPv4), a DNS name lowercase without its final dot."""
    address = parse_ip(value)
    if address is None:
        return value.rstrip(".").lower()
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def is_loopback(value: str) -> bool:
    """Whether the address (or name) is this machine's own: 127.0.0.0/8, ::1, localhost."""
    address = parse_ip(address_key(value))
    if address is not None:
        return address.is_loopback
    name = address_key(value)
    return name == "localhost" or name.endswith(".localhost")


def url_host(value: str) -> str:
    """An address as a URL's host: an IPv6 address in brackets."""
    address = parse_ip(value)
    return f"[{address}]" if isinstance(address, ipaddress.IPv6Address) else value


def _check_iface(value: str) -> str:
    if not _IFACE.fullmatch(value):
        raise _fail(
            "iface",
            f"{value!r} is not a network interface name: use the name `ip -br addr` shows "
            "on the node, e.g. eth1",
        )
    return value


_HOST_PORT = re.compile(r"(\[(?P<v6>[^\[\]]*)\]|(?P<host>[^:\[\]]+))(:(?P<port>[0-9]{1,5}))?")
_URL_REST = re.compile(r"(/[A-Za-z0-9._~%/:@+=,-]*)?(\?[A-Za-z0-9._~%/:@+=,-]*)?")


def _url_problem(value: str) -> str | None:
    """Why `value` is no http(s) URL this program passes on safely, or None."""
    if has_control(value) or any(char.isspace() for char in value):
        return "it holds a space or a control character"
    if re.search(r"%(?![0-9A-Fa-f]{2})|%[01][0-9A-Fa-f]|%7[Ff]", value):
        return "a % starts no escape, or escapes a control character"
    scheme, sep, rest = value.partition("://")
    if not sep or scheme not in ("http", "https"):
        return ""
    end = min((rest.index(c) for c in "/?#" if c in rest), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    userinfo, at, hostport = authority.rpartition("@")
    if at and not _URL_USERINFO.fullmatch(userinfo):
        return "its user:password part holds characters other than letters, digits and ._~%:-"
    match = _HOST_PORT.fullmatch(hostport)
    if match is None:
        return "it names no host"
    port = match.group("port")
    if port is not None and not 1 <= int(port) <= 65535:
        return f"port {port} is not from 1 to 65535"
    if match.group("v6") is not None:
        try:
            if not isinstance(parse_ip(match.group("v6")), ipaddress.IPv6Address):
                return "the brackets hold no IPv6 address"
        except PydanticCustomError:
            return "an IPv6 scope id (%) has no place in it"
    else:
        try:
            _check_address(match.group("host"))
        except PydanticCustomError:
            return f"{match.group('host')!r} is no IP address or DNS name"
    if not _URL_REST.fullmatch(tail):
        return (
            "its path may hold letters, digits and ._~%/:@+=,- and a ?query of the same, "
            "no #fragment"
        )
    return None


def _check_url(value: str) -> str:
    problem = _url_problem(value)
    if problem is not None:
        why = f" ({problem})" if problem else ""
        raise _fail("url", f"{value!r} is not an http(s) URL{why}: write it as http://host:port")
    return value


def _check_key_file(value: str) -> str:
    check_text(value, "path")
    path = Path(os.path.expanduser(value))

    def refuse(reason: str) -> PydanticCustomError:
        return _fail(
            "key_file",
            f"cannot read {str(path)!r} ({reason}): point it at a readable private "
            "key, or create one with ssh-keygen",
        )

    limit = f"{KEY_FILE_MAX_BYTES // 1024} KiB"
    try:
        read_text_file(path, KEY_FILE_MAX_BYTES)  # regular, bounded, never blocking, UTF-8
    except YamlError as error:
        reasons = {
            "unreadable": error.detail.lower(),
            "directory": "is a directory",
            "special": "not a regular file",
            "too_big": f"{error.detail} bytes: a private key is under {limit}"
            if error.detail
            else f"over {limit}: a private key is smaller",
            "not_utf8": "not text: a private key file is PEM or OpenSSH text",
        }
        raise refuse(reasons.get(error.kind, error.message)) from None
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
    if value and not _K8S_NAME.fullmatch(value):
        raise _fail(
            "label_value",
            f"{value!r} is not a valid Kubernetes label value: at most 63 characters "
            "a-z, A-Z, 0-9, '-', '_' and '.', starting and ending with a letter or digit",
        )
    return value


def check_label_key(key: str) -> str:
    prefix, _, name = key.rpartition("/")
    valid_prefix = not prefix or (len(prefix) <= 253 and _HOSTNAME.fullmatch(prefix))
    if not (valid_prefix and _K8S_NAME.fullmatch(name)):
        raise _fail(
            "label_key",
            f"{key!r} is not a valid Kubernetes label key: an optional DNS prefix and '/', "
            "then at most 63 characters a-z, A-Z, 0-9, '-', '_' and '.'",
        )
    return key


def _check_k3s_flag(value: str) -> str:
    if not _K3S_FLAG.fullmatch(value):
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
    if not _REGISTRY.fullmatch(value):
        raise _fail(
            "registry",
            f"{value!r} is not a registry: write a host with an optional port, e.g. docker.io "
            "or 10.0.0.5:5000 (no scheme, no path), or * for every registry",
        )
    return value


def _check_image(value: str) -> str:
    if not _IMAGE.fullmatch(value):
        raise _fail(
            "image",
            f"{value!r} is not an image reference: write [registry/]name[:tag], e.g. "
            "10.0.0.5:5000/ascend-k8sdeviceplugin:v6.0.0",
        )
    return value


def _check_directory(value: str) -> str:
    path = Path(os.path.expanduser(check_text(value, "path")))
    if not path.is_dir():
        raise _fail(
            "directory",
            f"{str(path)!r} is not a directory on this machine: point it at the airgap "
            "bundle (see the README, 'Airgapped sites')",
        )
    return str(path.resolve())


def _port_number(value: object) -> object:
    if isinstance(value, bool):  # pydantic would read true as 1
        raise _fail(
            "bool_number",
            f"{str(value).lower()} is not a port number: use a whole number from 1 to 65535",
        )
    return value


def _whole_number(value: object) -> object:
    if isinstance(value, bool):  # pydantic would read true as 1
        raise _fail(
            "bool_number",
            f"{str(value).lower()} is true/false, not a number: write a whole number",
        )
    return value


def WholeNumber(ge: int, le: int) -> object:  # noqa: N802 (a type, as it is used)
    """A whole number from `ge` to `le`; true and false are none."""
    return Annotated[int, BeforeValidator(_whole_number), Field(ge=ge, le=le)]


def _check_no_proxy(value: str) -> str:
    """A no_proxy entry: *, a host or domain (.example.com, *.example.com), an IP address or a
    CIDR range, a host or IPv4 address with :port."""
    check_text(value, "no-proxy entry")
    body = value
    if body.startswith("*."):
        body = body[2:]
    elif body.startswith("."):
        body = body[1:]
    port = re.fullmatch(r"(?P<host>[^:\[\]]+|\[[^\[\]]+\]):(?P<port>[0-9]{1,5})", body)
    if port and 1 <= int(port.group("port")) <= 65535:
        body = port.group("host").removeprefix("[").removesuffix("]")
    valid = value == "*"
    if not valid and body and "%" not in body:
        if "/" in body and body == value:
            try:
                ipaddress.ip_network(body, strict=False)
                valid = True
            except ValueError:
                valid = False
        elif "/" not in body:
            try:
                _check_address(body)
                valid = True
            except PydanticCustomError:
                valid = False
    if not valid:
        raise _fail(
            "no_proxy",
            f"{value!r} is not a no-proxy entry: write a host (node1), a domain "
            "(.example.com), an IP address (10.0.0.1), a CIDR range (10.0.0.0/8) or *",
        )
    return value


def _check_user_name(value: str) -> str:
    if not _USER_NAME.fullmatch(value):
        raise _fail(
            "user_name",
            f"{value!r} is not a user name: use up to 64 letters, digits and '_', '.', '@', "
            "'-', not starting with '.', '@' or '-'",
        )
    return value


def _check_daemon_key(value: str) -> str:
    if not _DAEMON_KEY.fullmatch(value):
        raise _fail(
            "daemon_key",
            f"{value!r} is not a daemon.json option: write it as Docker names it, in lowercase "
            "words and dashes, e.g. log-opts",
        )
    if value in DOCKER_MANAGED_KEYS:
        raise _fail("daemon_key", f"{value!r} is set by the program: {DOCKER_MANAGED_KEYS[value]}")
    return value


def _check_chart_version(value: str) -> str:
    if not _CHART_VERSION.fullmatch(value):
        raise _fail(
            "chart_version",
            f"{value!r} is not a chart version: write it as helm does, e.g. 0.17.0",
        )
    return value


def _check_pem(value: str) -> str:
    """A PEM text: printable ASCII lines (newlines are part of it, nothing else is)."""
    if not re.fullmatch(r"[\x20-\x7e\r\n]*", value):
        raise _fail(
            "pem",
            "is not PEM text: give the certificate as the BEGIN/END CERTIFICATE blocks of its "
            ".pem file (printable ASCII lines only)",
        )
    return value


NodeName = Annotated[str, AfterValidator(_check_node_name)]
Address = Annotated[str, AfterValidator(_check_address)]
Port = Annotated[int, BeforeValidator(_port_number), Field(ge=1, le=65535)]
Iface = Annotated[str, AfterValidator(_check_iface)]
Url = Annotated[str, AfterValidator(_check_url)]
KeyFile = Annotated[str, AfterValidator(_check_key_file)]
LabelKey = Annotated[str, AfterValidator(check_label_key)]
LabelValue = Annotated[str, BeforeValidator(_label_value), AfterValidator(_check_label_value)]
K3sFlag = Annotated[str, AfterValidator(_check_k3s_flag)]
K3sValue = str | bool | int | float | list[str]
Registry = Annotated[str, AfterValidator(_check_registry)]
Directory = Annotated[str, AfterValidator(_check_directory)]
NoProxy = Annotated[str, AfterValidator(_check_no_proxy)]
UserName = Annotated[str, AfterValidator(_check_user_name)]
ChartVersion = Annotated[str, AfterValidator(_check_chart_version)]
Image = Annotated[str, AfterValidator(_check_image)]


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


def _check_host_key(value: str) -> str:
    try:
        return parse_host_key(value).text
    except HostKeyError as error:
        raise _fail("host_key", str(error)) from None


# A pinned host key, normalised to `<type> <base64>` (a comment after it is dropped).
HostKeyText = Annotated[str, AfterValidator(_check_host_key)]
HOST_KEY_POLICIES = ("pinned", "accept-new", "insecure")
HostKeyPolicy = Literal["pinned", "accept-new", "insecure"]


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
    type: Annotated[str, AfterValidator(_check_label_value)] | None = Field(
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


def is_plain_absolute_path(value: str) -> bool:
    """Whether `value` is an absolute path whose parts are plain names (`_check_absolute_path`)."""
    try:
        _check_absolute_path(value)
    except PydanticCustomError:
        return False
    return True


def _check_absolute_path(value: str) -> str:
    """A path on a node: absolute, its parts plain names (no `.` or `..`, no spaces or control
    characters); given normalised (no trailing or doubled '/')."""
    parts = value.split("/")
    plain = all(
        _PATH_PART.fullmatch(part) and part not in (".", "..") for part in parts[1:] if part
    )
    if not value.startswith("/"):
        raise _fail("path", f"{value!r} is not an absolute path on the node, e.g. /mnt/docker")
    if not plain:
        raise _fail(
            "path",
            f"{value!r} is not a plain path: write its parts with letters, digits and '._+@-' "
            "only (no '.' or '..', spaces or control characters), e.g. /mnt/docker",
        )
    return "/" + "/".join(part for part in parts if part)


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
    no_proxy: list[NoProxy] = []
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


def _check_chart_file(value: str) -> str:
    path = Path(os.path.expanduser(check_text(value, "path")))
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

    driver_version: Annotated[str, Field(pattern=r"^[0-9]{3}$")] = Field(
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


def _check_values_file(value: str) -> str:
    path = Path(os.path.expanduser(check_text(value, "path")))
    if not path.is_file():
        raise _fail(
            "values_file",
            f"{str(path)!r} is not a file on this machine: point it at the site's JupyterHub "
            "chart values (the seed's jhub_config_path)",
        )
    return str(path.resolve())


class HubTls(Strict):
    """The hub's certificate; unset, a self-signed one is made for the site."""

    certificate: Annotated[str, AfterValidator(_check_pem)] | None = Field(
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
    namespace: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")] = "convecthub"
    timeout_seconds: WholeNumber(60, 7200) = Field(  # type: ignore[valid-type]
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
    admin_users: list[UserName] = Field(default=["admin"])
    values_file: Annotated[str, AfterValidator(_check_values_file)] | None = Field(
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
