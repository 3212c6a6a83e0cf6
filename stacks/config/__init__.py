"""Reads a site's `convecthub:*` config into the typed `Site` model, or one clear error line.

This is the one place config is read. Every problem a user can cause becomes a `ConfigError`
whose text is `convecthub:<key path>: <what is wrong and how to fix it>`, raised before any
resource is registered.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import difflib
import json
import re
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pulumi
from pydantic import BaseModel, ValidationError

from model.airgap import AirgapBundle
from model.defaults import (
    DEVICE_PLUGIN_CHART_VERSION,
    HUB_CHART_VERSION,
    K3S_VERSION,
    NVIDIA_DRIVER_BRANCH,
)
from model.secrecy import SecretSections, has_credentials_in_url, secret_value_paths
from model.site import (
    DockerSettings,
    GpuSettings,
    Site,
    SshSettings,
    address_key,
    has_control,
    is_loopback,
)
from model.values_file import read_values_file

NAMESPACE = "convecthub"
# The host ports k3s's packaged Traefik takes on every node (its ServiceLB service).
TRAEFIK_PORTS = (80, 443)
# TCP ports k3s itself listens on, on servers or every node: the hub may not take them.
CLUSTER_PORTS = {
    6443: "the Kubernetes API (k3s's supervisor)",
    6444: "k3s's API server behind its supervisor",
    2379: "the embedded etcd's client port",
    2380: "the embedded etcd's peer port",
    2381: "the embedded etcd's metrics port",
    10248: "the kubelet's health port",
    10249: "kube-proxy's metrics port",
    10250: "the kubelet's API",
    10251: "the scheduler's old insecure port",
    10256: "kube-proxy's health port",
    10257: "the controller manager's port",
    10258: "k3s's cloud controller's port",
    10259: "the scheduler's port",
}
SECRET_PLACEHOLDER = "[secret]"


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escape(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape").decode("ascii")


class ConfigError(pulumi.RunError):
    """A bad stack config: `str(error)` is the one line to show the user.

    A `RunError`, so under the Pulumi CLI it ends the program with that line and no traceback.
    """

    def __init__(self, path: str, message: str):
        # One line whatever the user's input held: a control character shows as its escape.
        super().__init__(_CONTROL.sub(_escape, f"{path}: {message}"))
        self.path = path
        self.message = message


@dataclass(frozen=True)
class LoadedSite:
    site: Site
    warnings: tuple[str, ...]
    # The sections Pulumi holds as secret: everything taken from them stays secret.
    secret_sections: SecretSections = field(default_factory=SecretSections)
    # The defaults the site relies on that a newer program moves, each with how to pin it.
    version_warnings: tuple[str, ...] = ()


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


def key_path(loc: Iterable[int | str]) -> str:
    """('nodes', 2, 'host') -> 'convecthub:nodes[2].host'."""
    parts = list(loc)
    top = str(parts[0]) if parts else ""
    top = top if _PLAIN_KEY.fullmatch(top) or not parts else json.dumps(top)
    text = f"{NAMESPACE}:{top}" if parts else NAMESPACE
    for part in parts[1:]:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(part):
            text += f".{part}"
        else:
            text += f"[{json.dumps(part)}]"  # a map key such as "docker.io" or "*"
    return text


def load_site(values: Mapping[str, object], secret_keys: Iterable[str] = ()) -> LoadedSite:
    """Validate the namespace's values (keyed without the `convecthub:` prefix).

    `values` holds decoded values (mappings, lists, scalars), as a stack file or
    `decode_config` gives them. `secret_keys` are the keys Pulumi holds as secrets.
    """
    known = list(_aliases(Site))
    for key in values:
        if key not in known:
            raise ConfigError(key_path([str(key)]), _unknown_key_message(str(key), known))
    _check_one_line_text(values)
    if _REVIEWING_OFFLINE.get():
        values = _with_typed_placeholders(values)
    try:
        site = Site.model_validate(dict(values))
    except ValidationError as error:
        raise _first_error(error) from None
    _check_fleet(site)
    _check_registry(site)
    _check_airgapped_gpu(site)
    _check_ascend(site)
    _check_airgapped_docker(site)
    _check_hub(site)
    _check_cluster_endpoints(site)
    _check_logins(site)
    _check_storage(site)
    secret_keys = set(secret_keys)
    return LoadedSite(
        site,
        (*_plain_secret_warnings(values, secret_keys), *_site_warnings(site)),
        SecretSections.of_keys(secret_keys, NAMESPACE),
        tuple(_version_warnings(values, site)),
    )


# Offline (render, and the check before the CLI) a `secure:` value is the placeholder
# `[secret]`, which no grammar but a secret's admits: where one stands for an address, a URL,
# a path..., the review takes a stand-in of that grammar instead, numbered so that no two
# collide. The section it sits in is secret, so the stand-in is masked wherever it goes.
_REVIEWING_OFFLINE = contextvars.ContextVar("convecthub_offline_review", default=False)
_PLACEHOLDER_STAND_INS: dict[str, Callable[[int], str]] = {
    "url": lambda n: f"https://secret-{n}.invalid/",
    "address": lambda n: f"secret-{n}.invalid",
    "registry": lambda n: f"secret-{n}.invalid",
    "no_proxy": lambda n: f"secret-{n}.invalid",
    "path": lambda n: f"/srv/secret-{n}",
    "image": lambda n: f"secret-{n}.invalid/image",
    "iface": lambda n: f"secret{n}",
    "node_name": lambda n: f"secret-{n}",
    "label_value": lambda n: f"secret-{n}",
    "user_name": lambda n: f"secret{n}",
}


@contextlib.contextmanager
def reviewing_offline() -> Iterator[None]:
    """Within: `load_site` reads `[secret]` placeholders as the stack file's secrets (offline
    there is no passphrase to decrypt them), never as values of their own, and the program's
    host-key check (stacks/host_keys.py) warns where it would refuse."""
    token = _REVIEWING_OFFLINE.set(True)
    try:
        yield
    finally:
        _REVIEWING_OFFLINE.reset(token)


def in_offline_review() -> bool:
    """Whether the program is evaluated offline for review (render, the check before the CLI):
    nothing runs, secrets are placeholders, and host-key refusals are warnings."""
    return _REVIEWING_OFFLINE.get()


def _with_typed_placeholders(values: Mapping[str, object]) -> dict[str, object]:
    """`values` with each placeholder that a grammar refuses replaced by a stand-in of that
    grammar (the model's own error says which), until the model has no more to refuse."""
    values = copy.deepcopy(dict(values))
    taken = 0
    while True:
        try:
            Site.model_validate(values)
            return values
        except ValidationError as error:
            replaced = False
            for problem in error.errors(include_url=False):
                stand_in = _PLACEHOLDER_STAND_INS.get(problem["type"])
                if stand_in is None or problem.get("input") != SECRET_PLACEHOLDER:
                    continue
                loc = [part for part in problem["loc"] if not _is_schema_tag(part)]
                parent = _at(values, loc[:-1])
                if _at(parent, loc[-1:]) == SECRET_PLACEHOLDER:
                    parent[loc[-1]] = stand_in(taken)  # type: ignore[index]
                    taken += 1
                    replaced = True
            if not replaced:
                return values  # what is left is the model's to explain


def decode_config(config: Mapping[str, object]) -> dict[str, object]:
    """Pulumi's flat `namespace:key -> JSON string` config, narrowed to this namespace."""
    decoded: dict[str, object] = {}
    prefix = f"{NAMESPACE}:"
    for full_key, raw in config.items():
        if not full_key.startswith(prefix):
            _check_near_namespace(full_key)
            continue
        value = raw
        if isinstance(raw, str) and raw[:1] in "[{":
            try:
                value = json.loads(raw)
            except ValueError:
                raise ConfigError(
                    full_key, "is not valid JSON: set it again with `pulumi config set --path`"
                ) from None
        decoded[full_key[len(prefix) :]] = value
    return decoded


def load_site_from_pulumi() -> LoadedSite:
    """The site from the config Pulumi hands the running program."""
    config = {**pulumi.runtime.get_config_env(), **pulumi.runtime.config.CONFIG.get()}
    secret_keys = [key for key in config if pulumi.runtime.is_config_secret(key)]
    secret_keys += pulumi.runtime.get_config_secret_keys_env()
    return load_site(decode_config(config), secret_keys)


def _first_error(error: ValidationError) -> ConfigError:
    problems = error.errors(include_url=False)
    first = problems[0]
    loc = [part for part in first["loc"] if not _is_schema_tag(part)]
    # A value that fits no member of a union gets one problem per member: say it once.
    same_place = [p for p in problems if [x for x in p["loc"] if not _is_schema_tag(x)] == loc]
    if "list[str]" in first["loc"] and len(same_place) > 1:
        message = (
            f"{first.get('input')!r} is not a string, a number, true/false or a list of strings"
        )
        problems = [p for p in problems if p not in same_place]
        if problems:
            message += f" (and {len(problems)} more problem(s) after this one)"
        return ConfigError(key_path(loc), message)
    message = _explain(first, loc)
    if len(problems) > 1:
        message += f" (and {len(problems) - 1} more problem(s) after this one)"
    return ConfigError(key_path(loc), message)


def _is_schema_tag(part: int | str) -> bool:
    # pydantic names union members and validator functions inside `loc`; they are no keys.
    return isinstance(part, str) and ("[" in part or part in {"str", "int", "float", "bool"})


_HINTS = {
    "nodes": "list the fleet: one entry per machine with name, host and roles",
    "name": "give the node a name (lowercase, it becomes the hostname)",
    "host": "give the address the provisioner reaches the machine at over SSH",
    "roles": "give the node roles: [server] or roles: [agent]",
    "vendor": "give the vendor: nvidia or ascend",
}


def _explain(problem: Mapping[str, typing.Any], loc: list[int | str]) -> str:
    kind = problem["type"]
    given = problem.get("input")
    ctx = problem.get("ctx") or {}
    field = next((part for part in reversed(loc) if isinstance(part, str)), "")
    if kind == "missing":
        return f"is required: {_HINTS.get(field, 'add this key')}"
    if kind == "extra_forbidden":
        return _unknown_key_message(str(loc[-1]), _aliases_at(loc[:-1]))
    if kind == "literal_error":
        return f"{given!r} is not allowed here: use {ctx.get('expected')}"
    if kind in {
        "greater_than_equal",
        "less_than_equal",
        "int_parsing",
        "int_type",
        "int_from_float",
        "greater_than",
        "less_than",
    }:
        if field.endswith("port") or field.endswith("Port") or field == "port":
            return f"{given!r} is not a port number: use a whole number from 1 to 65535"
        if kind in {"int_parsing", "int_type", "int_from_float"}:
            return f"{given!r} is not a whole number"
        return f"{given!r} is out of range: {problem['msg'].lower()}"
    if kind == "too_short" and field == "nodes":
        return f"is empty: {_HINTS['nodes']}"
    if kind in {"model_type", "model_attributes_type", "dict_type"}:
        return f"must be a mapping of keys to values, not {type(given).__name__}"
    if kind == "list_type":
        return (
            f"must be a list, not {type(given).__name__}: write it as [a, b] or one '- ' line each"
        )
    if kind == "string_type":
        return f"must be a string, not {type(given).__name__}: quote the value"
    if kind == "bool_parsing" or kind == "bool_type":
        return f"{given!r} is not true or false"
    if kind == "string_pattern_mismatch":
        return f"{given!r} does not have the expected form ({ctx.get('pattern')})"
    return problem["msg"][0].lower() + problem["msg"][1:]


def _unknown_key_message(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    guess = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown key {key!r}: {guess}the keys here are {', '.join(known)}"


def _aliases(model: type[BaseModel]) -> Iterable[str]:
    for name, info in model.model_fields.items():
        yield info.alias or name


def _aliases_at(loc: list[int | str]) -> list[str]:
    """The keys the model accepts at `loc` (for the unknown-key message)."""
    annotation: object = Site
    for part in loc:
        model = _model_in(annotation)
        if model is None:
            return []
        if isinstance(part, int):
            annotation = _item_type(annotation)
            continue
        field = next((f for n, f in model.model_fields.items() if (f.alias or n) == part), None)
        if field is None:
            return []
        annotation = field.annotation
    model = _model_in(annotation)
    return list(_aliases(model)) if model else []


def _model_in(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found:
            return found
    return None


def _item_type(annotation: object) -> object:
    origin = typing.get_origin(annotation)
    if origin in (list, tuple):
        return typing.get_args(annotation)[0]
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if arg is not type(None):
                return _item_type(arg)
    return annotation


def _check_hub(site: Site) -> None:
    hub = site.hub
    if hub.http_port == hub.https_port:
        raise ConfigError(
            key_path(["hub", "httpsPort"]),
            f"httpPort and httpsPort are both {hub.https_port}: serve HTTP and HTTPS "
            "on different ports, e.g. 80 and 443",
        )
    if "traefik" not in site.k3s.disable:
        for key, port in (("httpPort", hub.http_port), ("httpsPort", hub.https_port)):
            if port in TRAEFIK_PORTS:
                raise ConfigError(
                    key_path(["hub", key]),
                    f"{port} is taken by k3s's Traefik, which k3s.disable leaves on: add "
                    "traefik to k3s.disable (the hub has its own proxy), or serve the hub on "
                    "other ports, e.g. 9000 and 9443",
                )
    ssh_port = site.ssh_for(site.servers[0]).port or 22
    taken = {ssh_port: f"the first server's SSH port (ssh.port {ssh_port})", **CLUSTER_PORTS}
    for key, port in (("httpPort", hub.http_port), ("httpsPort", hub.https_port)):
        if port in taken:
            raise ConfigError(
                key_path(["hub", key]),
                f"{port} is {taken[port]}, which the hub's load balancer would take over on "
                "the node: serve the hub on another port, e.g. 80 and 443 or 9000 and 9443",
            )
    if site.registry.bundle_dir is not None and hub.chart_file is None:
        raise ConfigError(
            key_path(["hub", "chartFile"]),
            "the site is airgapped (registry.bundleDir) but the JupyterHub chart would come "
            f"from {hub.repository}: `helm pull jupyterhub --repo {hub.repository} --version "
            f"{hub.chart_version}` where there is internet and set chartFile to the .tgz",
        )
    if hub.values_file is not None:
        try:
            read_values_file(hub.values_file)
        except ValueError as problem:
            raise ConfigError(
                key_path(["hub", "valuesFile"]),
                f"{hub.values_file} {problem}: fix the file, or point valuesFile elsewhere",
            ) from None
    if site.storage.nfs is None and "local-storage" in site.k3s.disable:
        raise ConfigError(
            key_path(["storage", "nfs"]),
            "the hub's users need volumes, and k3s.disable turns off local-storage, the only "
            "other place for them: set storage.nfs to the site's NFS export, or keep "
            "local-storage",
        )
    if (hub.tls.certificate is None) != (hub.tls.key is None):
        missing = "key" if hub.tls.key is None else "certificate"
        raise ConfigError(
            key_path(["hub", "tls", missing]),
            "a certificate and its key go together: set both (as secrets), or neither for a "
            "self-signed certificate",
        )


# The first release of each minor where k3s's embedded registry mirror is generally available.
_EMBEDDED_REGISTRY_GA = {29: 12, 30: 8, 31: 4}
_FIRST_GA = f"v1.31.{_EMBEDDED_REGISTRY_GA[31]}+k3s1"  # the first of a minor still supported then


def _check_registry(site: Site) -> None:
    registry = site.registry
    for index, node in enumerate(site.nodes):
        if "registry" not in node.roles:
            continue
        where = key_path(["nodes", index, "roles"])
        if registry.bundle_dir is None:
            raise ConfigError(
                where,
                "the registry role serves the airgap bundle's images to the other nodes: set "
                "convecthub:registry.bundleDir, or drop the role",
            )
        _major, minor, patch = site.k3s.version_tuple()
        if minor < 29 or patch < _EMBEDDED_REGISTRY_GA.get(minor, 0):
            raise ConfigError(
                where,
                f"the registry role needs k3s's embedded registry mirror, which k3s "
                f"{site.k3s.version} lacks: set convecthub:k3s.version to {_FIRST_GA} or newer",
            )
        break
    if registry.bundle_dir is not None:
        arches = sorted({node.arch for node in site.nodes})
        missing = AirgapBundle(Path(registry.bundle_dir)).missing(arches)
        if missing:
            raise ConfigError(
                key_path(["registry", "bundleDir"]),
                f"{registry.bundle_dir} lacks {', '.join(missing)}: put the k3s "
                f"{site.k3s.version} release files there (see the README, 'Airgapped sites')",
            )


def _check_airgapped_gpu(site: Site) -> None:
    """An airgapped site's NVIDIA nodes must not reach for NVIDIA's servers."""
    if site.registry.bundle_dir is None:
        return
    if not any(node.gpu is not None and node.gpu.vendor == "nvidia" for node in site.nodes):
        return
    defaults = GpuSettings()
    for key, value, default in (
        ("toolkitRepository", site.gpu.toolkit_repository, defaults.toolkit_repository),
        ("toolkitKeyUrl", site.gpu.toolkit_key_url, defaults.toolkit_key_url),
    ):
        if value == default:
            raise ConfigError(
                key_path(["gpu", key]),
                f"the site is airgapped (registry.bundleDir) but its NVIDIA nodes would fetch "
                f"the container toolkit from {default}: set toolkitRepository and toolkitKeyUrl "
                "to the site's mirror of it",
            )
    if site.gpu.device_plugin.chart_file is None:
        raise ConfigError(
            key_path(["gpu", "devicePlugin", "chartFile"]),
            "the site is airgapped (registry.bundleDir) but the NVIDIA device plugin chart "
            f"would come from {site.gpu.device_plugin.repository}: `helm pull` it where there "
            "is internet and set chartFile to the .tgz",
        )


def _check_airgapped_docker(site: Site) -> None:
    """An airgapped site's Docker nodes must not reach for Docker's servers."""
    if site.registry.bundle_dir is None or not site.docker_nodes:
        return
    defaults = DockerSettings()
    for key, value, default in (
        ("repository", site.os.docker.repository, defaults.repository),
        ("keyUrl", site.os.docker.key_url, defaults.key_url),
    ):
        if value == default:
            raise ConfigError(
                key_path(["os", "docker", key]),
                f"the site is airgapped (registry.bundleDir) but its Docker nodes would fetch "
                f"Docker from {default}: set repository and keyUrl to the site's mirror of it",
            )


def _check_ascend(site: Site) -> None:
    """Ascend nodes need the device plugin's image, which has no public default."""
    ascend = [
        node.name for node in site.nodes if node.gpu is not None and node.gpu.vendor == "ascend"
    ]
    if ascend and site.gpu.ascend_device_plugin.image is None:
        raise ConfigError(
            key_path(["gpu", "ascendDevicePlugin", "image"]),
            f"the site has Ascend nodes ({', '.join(ascend)}) but no image for their device "
            "plugin: put Huawei's ascend-k8sdeviceplugin in the site's registry (or in the "
            "airgap bundle's images/<arch>/) and set image to its reference",
        )


def _check_fleet(site: Site) -> None:
    nodes = site.nodes
    names: dict[str, int] = {}
    endpoints: dict[tuple[str, int], int] = {}
    addresses: dict[str, int] = {}
    for index, node in enumerate(nodes):
        if node.name in names:
            raise ConfigError(
                key_path(["nodes", index, "name"]),
                f"{node.name!r} is already the name of nodes[{names[node.name]}]: "
                "give every node its own name",
            )
        names[node.name] = index
        endpoint = (address_key(node.host), site.ssh_for(node).port or 22)
        if endpoint in endpoints:
            raise ConfigError(
                key_path(["nodes", index, "host"]),
                f"nodes[{endpoints[endpoint]}] is reached at {node.host} port {endpoint[1]} "
                "too: give each node its own host, or its own ssh.port",
            )
        endpoints[endpoint] = index
        if node.address is not None:
            address = address_key(node.address)
            if address in addresses:
                raise ConfigError(
                    key_path(["nodes", index, "address"]),
                    f"{node.address} is already the address of nodes[{addresses[address]}]:"
                    " give every node its own private address",
                )
            addresses[address] = index
    if not any(node.is_server for node in nodes):
        raise ConfigError(
            key_path(["nodes"]),
            "no node has the role server: give one node (or three, for HA) roles: [server]",
        )


def _check_cluster_endpoints(site: Site) -> None:
    """On a site of several machines, what the others reach must not be a loopback address:
    each would reach itself."""
    if len(site.nodes) < 2:
        return
    endpoint = site.k3s.api_endpoint
    if endpoint is not None and is_loopback(endpoint):
        raise ConfigError(
            key_path(["k3s", "apiEndpoint"]),
            f"{endpoint} is a loopback address, and the site has {len(site.nodes)} nodes: each "
            "would look for the API on itself; give an address every node reaches the servers "
            "at (a load balancer or the first server's private address), or leave it unset",
        )
    for index, node in enumerate(site.nodes):
        if node.address is not None and is_loopback(node.address):
            raise ConfigError(
                key_path(["nodes", index, "address"]),
                f"{node.address} is a loopback address, and the site has {len(site.nodes)} "
                "nodes: the others would reach themselves there; give its private-network "
                "address, or set iface (or nothing) to take the interface's",
            )


# A login name (Ansible's ansible_user): POSIX-portable characters, plus @ for domain users.
_LOGIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}")


def _check_logins(site: Site) -> None:
    """The users the provisioner logs in as: plain names, nothing a shell or sudoers reads."""
    places: list[tuple[list[int | str], SshSettings]] = [(["ssh"], site.ssh)]
    places += [(["nodes", index, "ssh"], node.ssh) for index, node in enumerate(site.nodes)]
    for where, ssh in places:
        for path, user in ((["user"], ssh.user), (["bastion", "user"], _bastion_user(ssh))):
            if user is not None and not _LOGIN.fullmatch(user):
                raise ConfigError(
                    key_path([*where, *path]),
                    f"{user!r} is not a login name: use up to 64 letters, digits and '_', '.', "
                    "'@', '-', not starting with '.', '@' or '-'",
                )


def _bastion_user(ssh: SshSettings) -> str | None:
    return ssh.bastion.user if ssh.bastion is not None else None


# Where a shared mount would hide (or, unmounted lazily on removal, take away) what the node
# runs on: the root, the system's own directories, and what k3s, the kubelet, containerd and
# Docker keep.
_SYSTEM_DIRECTORIES = frozenset(
    [
        "/",
        "/bin",
        "/boot",
        "/dev",
        "/etc",
        "/lib",
        "/lib32",
        "/lib64",
        "/libx32",
        "/proc",
        "/root",
        "/run",
        "/sbin",
        "/sys",
        "/tmp",
        "/usr",
        "/usr/local",
        "/var",
        "/var/lib",
        "/var/log",
        "/snap",
        "/lost+found",
    ]
)
_NO_MOUNTS_UNDER = (
    "/proc",
    "/sys",
    "/dev",
    "/boot",
    "/etc/rancher",
    "/var/lib/rancher",
    "/var/lib/kubelet",
    "/var/lib/containerd",
    "/var/lib/docker",
    "/var/lib/cni",
    "/etc/cni",
    "/opt/cni",
)


def _check_storage(site: Site) -> None:
    mount_point = site.storage.mount_point
    under = next(
        (
            top
            for top in _NO_MOUNTS_UNDER
            if mount_point == top or mount_point.startswith(f"{top}/")
        ),
        None,
    )
    if mount_point in _SYSTEM_DIRECTORIES or under is not None:
        what = f"is under {under}" if under and under != mount_point else "is a system directory"
        raise ConfigError(
            key_path(["storage", "mountPoint"]),
            f"{mount_point} {what}: mounting the share there would hide what the node runs on, "
            "and removing the site unmounts it; mount it at a directory of its own, e.g. "
            "/data/k8s",
        )


def _version_warnings(values: Mapping[str, object], site: Site) -> Iterable[str]:
    """The defaults (model/defaults.py) the site relies on where a newer program would move
    it: the k3s release, and the driver branch when the program installs NVIDIA drivers. One
    line each, naming what it runs and how to pin it. A section held whole as a secret is not
    looked into."""
    k3s = values.get("k3s")
    if k3s is None or (isinstance(k3s, Mapping) and "version" not in k3s):
        yield (
            f"{key_path(['k3s', 'version'])} is not set, so this site runs k3s {K3S_VERSION}, "
            "this program's default, which a newer program moves: pin it with "
            f"{NAMESPACE}:k3s: {{version: {K3S_VERSION}}}"
        )
    installs = any(
        node.gpu is not None and node.gpu.vendor == "nvidia" and node.gpu.install_driver
        for node in site.nodes
    )
    gpu = values.get("gpu")
    if installs and (gpu is None or (isinstance(gpu, Mapping) and "driverVersion" not in gpu)):
        yield (
            f"{key_path(['gpu', 'driverVersion'])} is not set, so the NVIDIA nodes that get "
            f"their driver here (installDriver) install branch {NVIDIA_DRIVER_BRANCH}, this "
            "program's default, which a newer program moves: pin it with "
            f'{NAMESPACE}:gpu: {{driverVersion: "{NVIDIA_DRIVER_BRANCH}"}}'
        )
    # The charts: a site that gives neither a version nor a chart file gets the default's.
    hub = values.get("hub")
    if _leaves_chart_to_default(hub):
        yield (
            f"{key_path(['hub', 'chartVersion'])} is not set, so this site installs the "
            f"JupyterHub chart {HUB_CHART_VERSION}, this program's default, which a newer "
            f"program moves: pin it with {NAMESPACE}:hub: {{chartVersion: {HUB_CHART_VERSION}}}"
        )
    nvidia = any(node.gpu is not None and node.gpu.vendor == "nvidia" for node in site.nodes)
    plugin = gpu.get("devicePlugin") if isinstance(gpu, Mapping) else None
    if nvidia and (gpu is None or isinstance(gpu, Mapping)) and _leaves_chart_to_default(plugin):
        yield (
            f"{key_path(['gpu', 'devicePlugin', 'chartVersion'])} is not set, so this site "
            f"installs the NVIDIA device plugin chart {DEVICE_PLUGIN_CHART_VERSION}, this "
            "program's default, which a newer program moves: pin it with "
            f"{NAMESPACE}:gpu: {{devicePlugin: {{chartVersion: {DEVICE_PLUGIN_CHART_VERSION}}}}}"
        )


def _leaves_chart_to_default(section: object) -> bool:
    """Whether a chart's settings (absent, or a mapping) name neither its version nor a file."""
    if section is None:
        return True
    return isinstance(section, Mapping) and not {"chartVersion", "chartFile"} & set(section)


def _site_warnings(site: Site) -> Iterable[str]:
    """What the site may mean but probably does not."""
    servers = len(site.servers)
    if servers > 1 and servers % 2 == 0:
        yield (
            f"{key_path(['nodes'])} has {servers} servers, an even number: k3s's embedded etcd "
            f"needs a majority of them up, so {servers} servers survive as few failures as "
            f"{servers - 1} ({(servers - 1) // 2}) and a network split in halves stops both; "
            "use an odd number, 3 or 5"
        )
    if site.storage.nfs is not None and site.storage.mount_point == "/home":
        yield (
            f"{key_path(['storage', 'mountPoint'])} is /home: the share hides the nodes' "
            "own home directories, the login user's ~/.ssh/authorized_keys among them; "
            "make sure the share holds it, or mount the share elsewhere, e.g. /data/k8s"
        )


_NEAR_NAMESPACE_CUTOFF = 0.8


def _check_near_namespace(full_key: str) -> None:
    """A key of another namespace that is this one misspelt (convectub:os) is an error: it would
    be ignored without a word."""
    namespace = full_key.split(":", 1)[0]
    if difflib.get_close_matches(namespace, [NAMESPACE], n=1, cutoff=_NEAR_NAMESPACE_CUTOFF):
        raise ConfigError(
            full_key,
            f"unknown namespace {namespace!r}: did you mean {NAMESPACE}? this program reads "
            f"{NAMESPACE}:* keys only, so the value would be ignored",
        )


# Where a string may span lines: PEM text, secrets (set with `pulumi config set --secret`, whose
# text the program never splices anywhere) and the chart's free-form values (sent to the
# cluster as data). The host keys pin is read by components/connection.py as it is.
_MULTILINE_FIELDS = {"certificate", "privateKey", "privateKeyPassword", "password", "token"}
_MULTILINE_PLACES = {("hub", "values"), ("hostKey",), ("tls", "key")}


def _check_one_line_text(values: Mapping[str, object]) -> None:
    """No string of the config, key or value, holds a control character (a newline, a tab, a
    NUL), except where text spans lines by nature; every grammar of the model refuses them too,
    this also covers the free-form maps (k3s serverConfig and agentConfig, daemonConfig)."""
    pending: list[tuple[list[int | str], object]] = [
        ([key], value) for key, value in values.items()
    ]
    while pending:
        path, value = pending.pop()
        last = path[-1]
        if isinstance(last, str) and has_control(last):
            raise ConfigError(
                key_path(path), f"the key {last!r} holds a control character: write it without"
            )
        if isinstance(last, str) and (
            last in _MULTILINE_FIELDS
            or (last,) in _MULTILINE_PLACES
            or tuple(str(p) for p in path[-2:]) in _MULTILINE_PLACES
        ):
            continue
        if isinstance(value, str) and has_control(value):
            raise ConfigError(
                key_path(path),
                f"{value!r} holds a control character (a newline, tab or the like): write the "
                "value on one line, without them",
            )
        if isinstance(value, Mapping):
            pending += [([*path, key], item) for key, item in value.items()]
        elif isinstance(value, list):
            pending += [([*path, index], item) for index, item in enumerate(value)]


_SECRET_FIELDS = {"privateKey", "privateKeyPassword", "password", "token"}
# Secret fields whose name only says so where they sit: the hub's TLS key.
_SECRET_PATHS = {("tls", "key")}
# The free-form maps: their secrets are known by their key names (model/secrecy.py).
_FREE_FORM_MAPS = {
    ("k3s", "serverConfig"),
    ("k3s", "agentConfig"),
    ("os", "docker", "daemonConfig"),
    ("hub", "values"),
}


def _plain_secret_warnings(values: Mapping[str, object], secret_keys: set[str]) -> Iterable[str]:
    """Secret-by-nature values that the stack file holds in plain text: keys, passwords and
    tokens of the model, secrets by name in the free-form maps, URLs with credentials."""
    for key, value in values.items():
        if f"{NAMESPACE}:{key}" in secret_keys or key in secret_keys:
            continue
        for path in _secret_leaves(value, [key]):
            yield (
                f"{key_path(path)} is stored in plain text in the stack file: set it with "
                f"`pulumi config set --secret --path '{key_path(path).split(':', 1)[1]}'`"
            )


def _secret_leaves(value: object, path: list[int | str]) -> Iterable[list[int | str]]:
    if tuple(path) in _FREE_FORM_MAPS:
        for inner in secret_value_paths(value):
            if _at(value, inner) != SECRET_PLACEHOLDER:
                yield [*path, *inner]
    elif isinstance(value, Mapping):
        for key, item in value.items():
            secret = key in _SECRET_FIELDS or (str(path[-1]), key) in _SECRET_PATHS
            if secret and isinstance(item, str) and item != SECRET_PLACEHOLDER:
                yield [*path, key]
            else:
                yield from _secret_leaves(item, [*path, key])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _secret_leaves(item, [*path, index])
    elif isinstance(value, str) and has_credentials_in_url(value):
        yield path


def _at(tree: object, path: Iterable[int | str]) -> object:
    for part in path:
        tree = tree[part]  # type: ignore[index]
    return tree
