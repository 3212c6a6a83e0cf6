"""The grammar of a site's config values: what an address, a URL, a node name, a label, a path,
a k3s option... may be, each as the check that refuses any other (with the error message that
says how to write it) and as the `Annotated` type the sections of model/site.py declare.

Every check raises a `PydanticCustomError` (see `fail`), so pydantic reports it as the field's
error. The helpers beside them (`parse_ip`, `ip_text`, `address_key`, `is_loopback`,
`url_host`, `has_control`, `check_text`, `is_plain_absolute_path`) read values the same way
elsewhere.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field
from pydantic_core import PydanticCustomError

from model.safe_yaml import YamlError, read_text_file
from model.ssh_keys import HostKeyError, parse_host_key

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
# daemon.json keys the program writes itself: daemonConfig may not set them.
DOCKER_MANAGED_KEYS = {
    "registry-mirrors": "they come from convecthub:registry.mirrors (docker.io's, or *'s)",
    "insecure-registries": "they come from convecthub:registry.insecure",
    "default-runtime": "it is nvidia on NVIDIA nodes, Docker's own elsewhere",
    "runtimes": "the nvidia runtime is added on NVIDIA nodes",
    "data-root": "use convecthub:os.docker.dataRoot",
}

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
# What a URL's userinfo may hold (its path and query: _URL_REST): RFC 3986's unreserved and
# percent-escapes, and the sub-delimiters no shell, sed expression or sources.list line reads as
# syntax.
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


def fail(kind: str, message: str) -> PydanticCustomError:
    """The error a check raises: pydantic reports `message` as is, under the error type `kind`."""
    # The message goes in the context: user input with braces must not be read as a template.
    return PydanticCustomError(kind, "{message}", {"message": message})


def _check_node_name(value: str) -> str:
    if not _RFC1123_LABEL.fullmatch(value):
        raise fail(
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
        raise fail(
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
        raise fail(
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
        raise fail(
            "address",
            f"{value!r} is in brackets: write the IPv6 address without them, e.g. fd00::10",
        )
    address = parse_ip(value)
    if address is not None:
        return ip_text(address)
    # A name whose last label is all digits is a malformed IP address, not a hostname.
    if _HOSTNAME.fullmatch(value) and not value.rstrip(".").rsplit(".", 1)[-1].isdigit():
        return value
    raise fail(
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
        raise fail(
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
        raise fail("url", f"{value!r} is not an http(s) URL{why}: write it as http://host:port")
    return value


def _check_key_file(value: str) -> str:
    check_text(value, "path")
    path = Path(os.path.expanduser(value))

    def refuse(reason: str) -> PydanticCustomError:
        return fail(
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
        raise fail(
            "label_value",
            'label values are strings: quote it in the stack file, e.g. "true"',
        )
    if isinstance(value, int | float):
        return str(value)
    return value


def _check_label_value(value: str) -> str:
    if value and not _K8S_NAME.fullmatch(value):
        raise fail(
            "label_value",
            f"{value!r} is not a valid Kubernetes label value: at most 63 characters "
            "a-z, A-Z, 0-9, '-', '_' and '.', starting and ending with a letter or digit",
        )
    return value


def check_label_key(key: str) -> str:
    prefix, _, name = key.rpartition("/")
    valid_prefix = not prefix or (len(prefix) <= 253 and _HOSTNAME.fullmatch(prefix))
    if not (valid_prefix and _K8S_NAME.fullmatch(name)):
        raise fail(
            "label_key",
            f"{key!r} is not a valid Kubernetes label key: an optional DNS prefix and '/', "
            "then at most 63 characters a-z, A-Z, 0-9, '-', '_' and '.'",
        )
    return key


def _check_k3s_flag(value: str) -> str:
    if not _K3S_FLAG.fullmatch(value):
        raise fail(
            "k3s_flag",
            f"{value!r} is not a k3s option: write the option as in config.yaml, without "
            "dashes in front, e.g. kubelet-arg",
        )
    if value in K3S_MANAGED_KEYS:
        raise fail("k3s_flag", f"{value!r} is set by the program: {K3S_MANAGED_KEYS[value]}")
    if value in K3S_REFUSED_KEYS:
        raise fail("k3s_flag", f"{value!r} is not supported: {K3S_REFUSED_KEYS[value]}")
    return value


def _check_registry(value: str) -> str:
    if not _REGISTRY.fullmatch(value):
        raise fail(
            "registry",
            f"{value!r} is not a registry: write a host with an optional port, e.g. docker.io "
            "or 10.0.0.5:5000 (no scheme, no path), or * for every registry",
        )
    return value


def _check_image(value: str) -> str:
    if not _IMAGE.fullmatch(value):
        raise fail(
            "image",
            f"{value!r} is not an image reference: write [registry/]name[:tag], e.g. "
            "10.0.0.5:5000/ascend-k8sdeviceplugin:v6.0.0",
        )
    return value


def _check_directory(value: str) -> str:
    path = Path(os.path.expanduser(check_text(value, "path")))
    if not path.is_dir():
        raise fail(
            "directory",
            f"{str(path)!r} is not a directory on this machine: point it at the airgap "
            "bundle (see the README, 'Airgapped sites')",
        )
    return str(path.resolve())


def _port_number(value: object) -> object:
    if isinstance(value, bool):  # pydantic would read true as 1
        raise fail(
            "bool_number",
            f"{str(value).lower()} is not a port number: use a whole number from 1 to 65535",
        )
    return value


def _whole_number(value: object) -> object:
    if isinstance(value, bool):  # pydantic would read true as 1
        raise fail(
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
        raise fail(
            "no_proxy",
            f"{value!r} is not a no-proxy entry: write a host (node1), a domain "
            "(.example.com), an IP address (10.0.0.1), a CIDR range (10.0.0.0/8) or *",
        )
    return value


def _check_user_name(value: str) -> str:
    if not _USER_NAME.fullmatch(value):
        raise fail(
            "user_name",
            f"{value!r} is not a user name: use up to 64 letters, digits and '_', '.', '@', "
            "'-', not starting with '.', '@' or '-'",
        )
    return value


def _check_daemon_key(value: str) -> str:
    if not _DAEMON_KEY.fullmatch(value):
        raise fail(
            "daemon_key",
            f"{value!r} is not a daemon.json option: write it as Docker names it, in lowercase "
            "words and dashes, e.g. log-opts",
        )
    if value in DOCKER_MANAGED_KEYS:
        raise fail("daemon_key", f"{value!r} is set by the program: {DOCKER_MANAGED_KEYS[value]}")
    return value


def _check_chart_version(value: str) -> str:
    if not _CHART_VERSION.fullmatch(value):
        raise fail(
            "chart_version",
            f"{value!r} is not a chart version: write it as helm does, e.g. 0.17.0",
        )
    return value


def _check_pem(value: str) -> str:
    """A PEM text: printable ASCII lines (newlines are part of it, nothing else is)."""
    if not re.fullmatch(r"[\x20-\x7e\r\n]*", value):
        raise fail(
            "pem",
            "is not PEM text: give the certificate as the BEGIN/END CERTIFICATE blocks of its "
            ".pem file (printable ASCII lines only)",
        )
    return value


def _check_host_key(value: str) -> str:
    try:
        return parse_host_key(value).text
    except HostKeyError as error:
        raise fail("host_key", str(error)) from None


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
        raise fail("path", f"{value!r} is not an absolute path on the node, e.g. /mnt/docker")
    if not plain:
        raise fail(
            "path",
            f"{value!r} is not a plain path: write its parts with letters, digits and '._+@-' "
            "only (no '.' or '..', spaces or control characters), e.g. /mnt/docker",
        )
    return "/" + "/".join(part for part in parts if part)


def _check_chart_file(value: str) -> str:
    path = Path(os.path.expanduser(check_text(value, "path")))
    if not (path.is_file() and path.name.endswith((".tgz", ".tar.gz"))):
        raise fail(
            "chart_file",
            f"{str(path)!r} is not a chart archive on this machine: point it at the .tgz that "
            "`helm pull` saves",
        )
    return str(path.resolve())


def _check_values_file(value: str) -> str:
    path = Path(os.path.expanduser(check_text(value, "path")))
    if not path.is_file():
        raise fail(
            "values_file",
            f"{str(path)!r} is not a file on this machine: point it at the site's JupyterHub "
            "chart values (the seed's jhub_config_path)",
        )
    return str(path.resolve())


# The types the sections declare, one per grammar above.
NodeName = Annotated[str, AfterValidator(_check_node_name)]
Address = Annotated[str, AfterValidator(_check_address)]
Port = Annotated[int, BeforeValidator(_port_number), Field(ge=1, le=65535)]
Iface = Annotated[str, AfterValidator(_check_iface)]
Url = Annotated[str, AfterValidator(_check_url)]
KeyFile = Annotated[str, AfterValidator(_check_key_file)]
LabelKey = Annotated[str, AfterValidator(check_label_key)]
LabelValue = Annotated[str, BeforeValidator(_label_value), AfterValidator(_check_label_value)]
# A label value that is text in the stack file already (a number is refused, not read as one).
LabelText = Annotated[str, AfterValidator(_check_label_value)]
K3sFlag = Annotated[str, AfterValidator(_check_k3s_flag)]
K3sValue = str | bool | int | float | list[str]
Registry = Annotated[str, AfterValidator(_check_registry)]
Directory = Annotated[str, AfterValidator(_check_directory)]
NoProxy = Annotated[str, AfterValidator(_check_no_proxy)]
UserName = Annotated[str, AfterValidator(_check_user_name)]
ChartVersion = Annotated[str, AfterValidator(_check_chart_version)]
Image = Annotated[str, AfterValidator(_check_image)]
NodePath = Annotated[str, AfterValidator(_check_absolute_path)]
DaemonKey = Annotated[str, AfterValidator(_check_daemon_key)]
Pem = Annotated[str, AfterValidator(_check_pem)]
ChartFile = Annotated[str, AfterValidator(_check_chart_file)]
ValuesFile = Annotated[str, AfterValidator(_check_values_file)]
# A pinned host key, normalised to `<type> <base64>` (a comment after it is dropped).
HostKeyText = Annotated[str, AfterValidator(_check_host_key)]
HostKeyPolicy = Literal["pinned", "accept-new", "insecure"]

# Grammars pydantic applies itself (`Field(pattern=...)`, in the JSON schema as they are).
K3sVersion = Annotated[str, Field(pattern=_K3S_VERSION.pattern)]
# An APT package name.
PackageName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9+.-]+$")]
# An NVIDIA driver branch, e.g. 580.
DriverBranch = Annotated[str, Field(pattern=r"^[0-9]{3}$")]
# A Kubernetes namespace (an RFC 1123 label).
Namespace = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")]
# A JupyterHub authenticator: an entry-point name or a dotted class path.
AuthenticatorClass = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]+$")]
# A Kubernetes resource quantity, e.g. 10Gi.
Quantity = Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$")]
# One NFS mount option, e.g. hard or vers=4.1.
MountOption = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.=:/-]+$")]
