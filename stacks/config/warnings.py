"""What a valid site is told on every preview and up: the defaults it relies on that a newer
program moves (each with how to pin it), what it may mean but probably does not, and the
secrets its stack file holds in plain text."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from model.accelerator import accelerator_of
from model.defaults import (
    DEVICE_PLUGIN_CHART_VERSION,
    HUB_CHART_VERSION,
    K3S_VERSION,
    NVIDIA_DRIVER_BRANCH,
)
from model.secrecy import SECRET_MASK, has_credentials_in_url, secret_value_paths
from model.site import Site
from stacks.config.keys import NAMESPACE, key_path, value_at


def version_warnings(values: Mapping[str, object], site: Site) -> Iterable[str]:
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
    accelerators = [accelerator_of(node) for node in site.nodes]
    installs = any(each.is_nvidia and each.install_driver for each in accelerators)
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
    nvidia = any(each.is_nvidia for each in accelerators)
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


def site_warnings(site: Site) -> Iterable[str]:
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


def plain_secret_warnings(values: Mapping[str, object], secret_keys: set[str]) -> Iterable[str]:
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
    # A secret the stack file holds encrypted reads as the mask offline: it is no plain one.
    if tuple(path) in _FREE_FORM_MAPS:
        for inner in secret_value_paths(value):
            if value_at(value, inner) != SECRET_MASK:
                yield [*path, *inner]
    elif isinstance(value, Mapping):
        for key, item in value.items():
            secret = key in _SECRET_FIELDS or (str(path[-1]), key) in _SECRET_PATHS
            if secret and isinstance(item, str) and item != SECRET_MASK:
                yield [*path, key]
            else:
                yield from _secret_leaves(item, [*path, key])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _secret_leaves(item, [*path, index])
    elif isinstance(value, str) and has_credentials_in_url(value):
        yield path
