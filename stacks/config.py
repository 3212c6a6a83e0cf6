"""Reads a site's `convecthub:*` config into the typed `Site` model, or one clear error line.

This is the one place config is read. Every problem a user can cause becomes a `ConfigError`
whose text is `convecthub:<key path>: <what is wrong and how to fix it>`, raised before any
resource is registered.
"""

from __future__ import annotations

import difflib
import json
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pulumi
from pydantic import BaseModel, ValidationError

from components.airgap import AirgapBundle
from stacks.site_model import DockerSettings, GpuSettings, Site
from stacks.values_file import read_values_file

NAMESPACE = "convecthub"
# The host ports k3s's packaged Traefik takes on every node (its ServiceLB service).
TRAEFIK_PORTS = (80, 443)
SECRET_PLACEHOLDER = "[secret]"


class ConfigError(pulumi.RunError):
    """A bad stack config: `str(error)` is the one line to show the user.

    A `RunError`, so under the Pulumi CLI it ends the program with that line and no traceback.
    """

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True)
class LoadedSite:
    site: Site
    warnings: tuple[str, ...]


_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def key_path(loc: Iterable[int | str]) -> str:
    """('nodes', 2, 'host') -> 'convecthub:nodes[2].host'."""
    parts = list(loc)
    text = f"{NAMESPACE}:{parts[0]}" if parts else NAMESPACE
    for part in parts[1:]:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _PLAIN_KEY.match(part):
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
            raise ConfigError(key_path([key]), _unknown_key_message(key, known))
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
    return LoadedSite(site, tuple(_plain_secret_warnings(values, set(secret_keys))))


def decode_config(config: Mapping[str, object]) -> dict[str, object]:
    """Pulumi's flat `namespace:key -> JSON string` config, narrowed to this namespace."""
    decoded: dict[str, object] = {}
    prefix = f"{NAMESPACE}:"
    for full_key, raw in config.items():
        if not full_key.startswith(prefix):
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
                f"{site.k3s.version} lacks: set convecthub:k3s.version to v1.31.4+k3s1 or newer",
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
        endpoint = (node.host.lower(), site.ssh_for(node).port or 22)
        if endpoint in endpoints:
            raise ConfigError(
                key_path(["nodes", index, "host"]),
                f"nodes[{endpoints[endpoint]}] is reached at {node.host} port {endpoint[1]} "
                "too: give each node its own host, or its own ssh.port",
            )
        endpoints[endpoint] = index
        if node.address is not None:
            if node.address in addresses:
                raise ConfigError(
                    key_path(["nodes", index, "address"]),
                    f"{node.address} is already the address of nodes[{addresses[node.address]}]:"
                    " give every node its own private address",
                )
            addresses[node.address] = index
    if not any(node.is_server for node in nodes):
        raise ConfigError(
            key_path(["nodes"]),
            "no node has the role server: give one node (or three, for HA) roles: [server]",
        )


_SECRET_FIELDS = {"privateKey", "privateKeyPassword", "password", "token"}
# Secret fields whose name only says so where they sit: the hub's TLS key.
_SECRET_PATHS = {("tls", "key")}


def _plain_secret_warnings(values: Mapping[str, object], secret_keys: set[str]) -> Iterable[str]:
    """Secret-by-nature values that the stack file holds in plain text."""
    for key, value in values.items():
        if f"{NAMESPACE}:{key}" in secret_keys or key in secret_keys:
            continue
        for path in _secret_leaves(value, [key]):
            yield (
                f"{key_path(path)} is stored in plain text in the stack file: set it with "
                f"`pulumi config set --secret --path '{key_path(path).split(':', 1)[1]}'`"
            )


def _secret_leaves(value: object, path: list[int | str]) -> Iterable[list[int | str]]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            secret = key in _SECRET_FIELDS or (str(path[-1]), key) in _SECRET_PATHS
            if secret and isinstance(item, str) and item != SECRET_PLACEHOLDER:
                yield [*path, key]
            else:
                yield from _secret_leaves(item, [*path, key])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _secret_leaves(item, [*path, index])
