"""Maps OpenPAI's kubespray quick-start files (seed 002) to a site's config: master.csv and
worker.csv (one `hostname,host-ip` line per machine) and its optional `config` YAML (SSH login,
registry mirrors, insecure registries, proxy, Docker settings).

Masters become servers. Workers become agents with an NVIDIA GPU whose driver is already there
and with Docker, as OpenPAI requires of them. The SSH and registry passwords become
instructions to set secrets, never values. Whatever has no meaning here is a warning.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from model.safe_yaml import YamlError, load_yaml, read_text_file
from stacks.config import ConfigError, key_path
from stacks.importers.result import ImportResult, SecretToSet, in_file_order
from stacks.importers.values import ansible_bool, node_name

# kubespray's image repositories, the registry each stands for, and the values that mean "no
# mirror" (its defaults over the years).
# The most an OpenPAI CSV or config file may hold.
MAX_FILE_BYTES = 4 * 1024 * 1024
IMAGE_REPOSITORIES = {
    "gcr_image_repo": ("gcr.io", {"gcr.io"}),
    "kube_image_repo": (
        "registry.k8s.io",
        {"gcr.io/google-containers", "k8s.gcr.io", "registry.k8s.io"},
    ),
    "quay_image_repo": ("quay.io", {"quay.io"}),
    "docker_image_repo": ("docker.io", {"docker.io", "registry-1.docker.io"}),
}
_OPENPAI_SERVICES = (
    "the OpenPAI release to deploy; this program installs ConvectHub (JupyterHub), not "
    "OpenPAI's services"
)
_PRE_CHECK = "an OpenPAI pre-check; the program's facts step checks each node before changing it"
# Why a setting of OpenPAI's config has no meaning here.
NO_MEANING = {
    "branch_name": _OPENPAI_SERVICES,
    "docker_image_tag": _OPENPAI_SERVICES,
    "docker_registry_namespace": "where OpenPAI's service images are; ConvectHub's come with "
    "the JupyterHub chart",
    "qos-switch": "the QoS class of OpenPAI's daemons, which are not installed here",
    "docker_check": _PRE_CHECK,
    "resource_check": _PRE_CHECK,
    "docker_config_file_path": "Docker's daemon.json is always /etc/docker/daemon.json here; "
    "further daemon settings go in convecthub:os.docker.daemonConfig",
    "kubeadm_download_url": "k3s is one binary, not kubeadm: nodes fetch it through "
    "k3s.installScriptUrl, or from registry.bundleDir on an airgapped site",
    "hyperkube_download_url": "k3s is one binary, not hyperkube: nodes fetch it through "
    "k3s.installScriptUrl, or from registry.bundleDir on an airgapped site",
    "openpai_kube_network_plugin": "k3s uses flannel over each node's iface, not calico or "
    "another plugin",
}
UNKNOWN_REASON = "neither OpenPAI's quick start nor this program uses it"
WORKER_GPU = {"vendor": "nvidia", "installDriver": False}


@dataclass(frozen=True)
class Machine:
    """One line of master.csv or worker.csv."""

    name: str
    address: str
    where: str  # "<file>:<line>"


def read_machines(path: Path) -> list[Machine]:
    """The machines a master.csv or worker.csv lists: `hostname,host-ip` per line; blank
    lines, `#` comments and spaces around the fields are allowed."""
    machines = []
    for number, raw in enumerate(_read_text(path).splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = [field.strip() for field in line.split(",")]
        if len(fields) != 2 or not all(fields) or any(" " in field for field in fields):
            raise ConfigError(
                f"{path}:{number}",
                f"cannot read {line!r}: write one machine per line as hostname,host-ip, e.g. "
                "openpai-001,10.0.0.1",
            )
        machines.append(Machine(fields[0], fields[1], f"{path}:{number}"))
    if not machines:
        raise ConfigError(
            str(path), "lists no machine: write one line per machine as hostname,host-ip"
        )
    return machines


def read_openpai_config(path: Path) -> dict[str, tuple[object, str]]:
    """OpenPAI's `config` YAML: each setting with the `<file>:<line>` it is on."""
    text = _read_text(path)
    try:
        loaded = load_yaml(text)
    except YamlError as problem:
        where = f"{path}:{problem.line}" if problem.line else str(path)
        raise ConfigError(where, problem.message) from None
    tree, data = loaded.root, loaded.data
    if data is None:
        return {}
    if not isinstance(data, dict) or not isinstance(tree, yaml.MappingNode):
        raise ConfigError(str(path), "must be a YAML mapping of settings, e.g. user: ubuntu")
    lines = {str(key.value): key.start_mark.line + 1 for key, _ in tree.value}
    return {str(key): (value, f"{path}:{lines.get(str(key), 1)}") for key, value in data.items()}


def import_openpai(
    master_csv: Path,
    worker_csv: Path | None = None,
    config_file: Path | None = None,
    bundle_dir: Path | None = None,
) -> ImportResult:
    """The site OpenPAI's files describe; `bundle_dir` is an airgap bundle to install from."""
    masters = read_machines(master_csv)
    workers = read_machines(worker_csv) if worker_csv is not None else []
    settings = read_openpai_config(config_file) if config_file is not None else {}
    mapper = _Mapper(settings, config_file)
    config = mapper.map(masters, workers, bundle_dir)
    sources = tuple(path for path in (master_csv, worker_csv, config_file) if path is not None)
    return ImportResult(
        config=config,
        warnings=in_file_order(mapper.warnings, sources),
        secrets=tuple(mapper.secrets),
        sources=sources,
    )


class _Mapper:
    def __init__(self, settings: dict[str, tuple[object, str]], config_file: Path | None):
        self.settings = settings
        self.config_file = config_file
        self.used: set[str] = set()
        self.warnings: list[str] = []
        self.secrets: list[SecretToSet] = []

    def take(self, key: str) -> tuple[object, str] | None:
        """A setting's value and where it is, or None when it is absent or empty."""
        if key not in self.settings:
            return None
        self.used.add(key)
        value, where = self.settings[key]
        if value is None or value == "" or value == []:
            self.warnings.append(f"{where}: {key} is empty, so it is not imported")
            return None
        return value, where

    def map(
        self, masters: list[Machine], workers: list[Machine], bundle_dir: Path | None
    ) -> dict[str, object]:
        nodes = self._nodes(masters, workers)
        config: dict[str, object] = {}
        ssh = self._ssh()
        if ssh:
            config["ssh"] = ssh
        config["nodes"] = nodes
        os_settings = self._os()
        if os_settings:
            config["os"] = os_settings
        registry = self._registry()
        if bundle_dir is not None:
            registry["bundleDir"] = str(bundle_dir)
        if registry:
            config["registry"] = registry
        self._without_meaning()
        return config

    def _nodes(self, masters: list[Machine], workers: list[Machine]) -> list[dict[str, object]]:
        gpu = self._worker_gpu()
        runtime = self.take("worker_default_docker_runtime")
        if runtime is not None and str(runtime[0]).lower() != "nvidia":
            self.warnings.append(
                f"{runtime[1]}: worker_default_docker_runtime={runtime[0]} is not imported: the "
                "program makes nvidia Docker's default runtime on NVIDIA nodes and leaves "
                "Docker's own elsewhere"
            )
        nodes: list[dict[str, object]] = []
        taken: dict[str, str] = {}
        for machine, role in [(m, "server") for m in masters] + [(m, "agent") for m in workers]:
            name, warning = node_name(machine.name, machine.where)
            if warning:
                self.warnings.append(warning)
            if name in taken:
                raise ConfigError(
                    machine.where,
                    f"{machine.name!r} is already listed at {taken[name]}: list each machine "
                    "once, in master.csv or in worker.csv",
                )
            taken[name] = machine.where
            node: dict[str, object] = {"name": name, "host": machine.address, "roles": [role]}
            if role == "agent":
                if gpu:
                    node["gpu"] = dict(gpu)
                node["installDocker"] = True
            nodes.append(node)
        if workers:
            where = workers[0].where.rsplit(":", 1)[0]
            gpu_text = (
                "gpu {vendor: nvidia, installDriver: false} (their driver is kept) and "
                if gpu
                else ""
            )
            self.warnings.append(
                f"{where}: OpenPAI requires every worker to have an NVIDIA GPU with its driver "
                "installed and Docker with nvidia as its default runtime, so the workers are "
                f"imported with {gpu_text}installDocker: true (the program keeps the Docker they "
                "have, or installs it, and makes nvidia its default runtime on NVIDIA nodes)"
            )
        return nodes

    def _worker_gpu(self) -> dict[str, object] | None:
        gpu_type = self.take("gpu_type")
        if gpu_type is None or str(gpu_type[0]).lower() == "nvidia":
            return WORKER_GPU
        self.warnings.append(
            f"{gpu_type[1]}: gpu_type={gpu_type[0]} is not imported and the workers get no gpu: "
            "the program knows NVIDIA GPUs and Ascend NPUs; give each worker its gpu (vendor "
            "nvidia or ascend) in convecthub:nodes"
        )
        return None

    def _ssh(self) -> dict[str, object]:
        ssh: dict[str, object] = {}
        user = self.take("user")
        if user is not None:
            ssh["user"] = str(user[0])
        key_file = self.take("ssh_key_file_path")
        if key_file is not None:
            path = str(key_file[0])
            if not path.startswith(("~", "/")) and self.config_file is not None:
                path = str((self.config_file.parent / path).resolve())
                self.warnings.append(
                    f"{key_file[1]}: ssh_key_file_path is a relative path: it is taken from the "
                    f"config's directory, as {path}"
                )
            ssh["privateKeyFile"] = path
        if self.take("password") is not None:
            self.secrets.append(SecretToSet("ssh.password", "OpenPAI's config: password"))
        return ssh

    def _os(self) -> dict[str, object]:
        os_settings: dict[str, object] = {}
        for key, field in (("http_proxy", "httpProxy"), ("https_proxy", "httpsProxy")):
            proxy = self.take(key)
            if proxy is not None:
                os_settings[field] = str(proxy[0])
        no_proxy = self.take("no_proxy")
        if no_proxy is not None:
            os_settings["noProxy"] = _string_list(*no_proxy, "no_proxy")
        docker: dict[str, object] = {}
        data_root = self.take("docker_data_root")
        if data_root is not None:
            docker["dataRoot"] = str(data_root[0])
        iptables = self.take("docker_iptables_enabled")
        if iptables is not None:
            enabled = ansible_bool(iptables[0], "docker_iptables_enabled", iptables[1])
            docker["daemonConfig"] = {"iptables": enabled}
        if docker:
            os_settings["docker"] = docker
        return os_settings

    def _registry(self) -> dict[str, object]:
        registry: dict[str, object] = {}
        mirrors: dict[str, list[str]] = {}
        hub_mirrors = self.take("openpai_docker_registry_mirrors")
        if hub_mirrors is not None:
            mirrors["docker.io"] = _string_list(*hub_mirrors, "openpai_docker_registry_mirrors")
        for key, (upstream, defaults) in IMAGE_REPOSITORIES.items():
            repository = self.take(key)
            if repository is None or str(repository[0]).rstrip("/") in defaults:
                continue
            endpoint = str(repository[0]).rstrip("/")
            if not endpoint.startswith(("http://", "https://")):
                endpoint = f"https://{endpoint}"
                self.warnings.append(
                    f"{repository[1]}: {key}={repository[0]} becomes a mirror of {upstream} at "
                    f"{endpoint}: the scheme https:// is assumed; write http:// in "
                    f"convecthub:registry.mirrors if it serves plain HTTP"
                )
            endpoints = mirrors.setdefault(upstream, [])
            if endpoint not in endpoints:
                endpoints.append(endpoint)
        if mirrors:
            registry["mirrors"] = mirrors
        insecure = self.take("openpai_docker_insecure_registries")
        if insecure is not None:
            registry["insecure"] = _string_list(*insecure, "openpai_docker_insecure_registries")
        credentials = self._credentials()
        if credentials:
            registry["credentials"] = credentials
        return registry

    def _credentials(self) -> dict[str, object]:
        domain = self.take("docker_registry_domain")
        username = self.take("docker_registry_username")
        password = self.take("docker_registry_password")
        if username is None:
            if domain is not None:
                self.warnings.append(
                    f"{domain[1]}: docker_registry_domain (the registry of OpenPAI's service "
                    "images) has no meaning here without docker_registry_username"
                )
            if password is not None:
                self.warnings.append(
                    f"{password[1]}: docker_registry_password is not imported: there is no "
                    "docker_registry_username to go with it"
                )
            return {}
        registry = "docker.io" if domain is None else str(domain[0])
        if domain is None:
            self.warnings.append(
                f"{username[1]}: docker_registry_username has no docker_registry_domain: it is "
                "taken to be for docker.io, as in OpenPAI"
            )
        if password is not None:
            path = key_path(["registry", "credentials", registry, "password"]).split(":", 1)[1]
            self.secrets.append(SecretToSet(path, "OpenPAI's config: docker_registry_password"))
        else:
            self.warnings.append(
                f"{username[1]}: docker_registry_username has no docker_registry_password: set "
                "the password as a secret too (pulumi config set --secret --path "
                f"'registry.credentials[\"{registry}\"].password')"
            )
        return {registry: {"username": str(username[0])}}

    def _without_meaning(self) -> None:
        for key, (_, where) in self.settings.items():
            if key not in self.used:
                reason = NO_MEANING.get(key, UNKNOWN_REASON)
                self.warnings.append(
                    f"{where}: {key} has no meaning here and is not imported: {reason}"
                )


def _string_list(value: object, where: str, key: str) -> list[str]:
    """A YAML list of strings, or one comma-separated string (kubespray's no_proxy)."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    if isinstance(value, list) and all(isinstance(item, str | int | float) for item in value):
        return [str(item).strip() for item in value]
    raise ConfigError(
        where, f"{key} must be a list of strings or one comma-separated string, e.g. [a, b]"
    )


def _read_text(path: Path) -> str:
    try:
        return read_text_file(path, MAX_FILE_BYTES)
    except YamlError as problem:
        where = f"{path}:{problem.line}" if problem.line else str(path)
        raise ConfigError(where, problem.message) from None
