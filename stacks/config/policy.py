"""The checks across fields a valid model may still fail: each node its own name, endpoint and
address; the hub's ports, chart and values file; the registry role and the airgap bundle; what
an airgapped site's NVIDIA and Docker nodes fetch; the Ascend plugin's image; what a fleet of
several reaches; login names; where the share is mounted. Each reads the model's facts."""

from __future__ import annotations

import re

from model.accelerator import accelerator_of
from model.grammar import address_key, is_loopback
from model.site import (
    DEFAULT_HTTP_PORT,
    DEFAULT_HTTPS_PORT,
    DockerSettings,
    GpuSettings,
    Site,
    SshSettings,
)
from stacks.config.keys import ConfigError, key_path

# The host ports k3s's packaged Traefik takes on every node (its ServiceLB service).
TRAEFIK_PORTS = (DEFAULT_HTTP_PORT, DEFAULT_HTTPS_PORT)
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


def check_site(site: Site) -> None:
    """Every check, in the order a user fixes them: the first that fails raises."""
    _check_fleet(site)
    _check_registry(site)
    _check_airgapped_gpu(site)
    _check_ascend(site)
    _check_airgapped_docker(site)
    _check_hub(site)
    _check_cluster_endpoints(site)
    _check_logins(site)
    _check_storage(site)


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
    ssh_port = site.ssh_for(site.first_server).port or 22
    taken = {ssh_port: f"the first server's SSH port (ssh.port {ssh_port})", **CLUSTER_PORTS}
    for key, port in (("httpPort", hub.http_port), ("httpsPort", hub.https_port)):
        if port in taken:
            raise ConfigError(
                key_path(["hub", key]),
                f"{port} is {taken[port]}, which the hub's load balancer would take over on "
                "the node: serve the hub on another port, e.g. 80 and 443 or 9000 and 9443",
            )
    if site.airgap_bundle is not None and hub.chart_file is None:
        raise ConfigError(
            key_path(["hub", "chartFile"]),
            "the site is airgapped (registry.bundleDir) but the JupyterHub chart would come "
            f"from {hub.repository}: `helm pull jupyterhub --repo {hub.repository} --version "
            f"{hub.chart_version}` where there is internet and set chartFile to the .tgz",
        )
    try:
        hub.file_values  # noqa: B018 (read once here, kept for the hub's release)
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
    bundle = site.airgap_bundle
    for index, node in enumerate(site.nodes):
        if "registry" not in node.roles:
            continue
        where = key_path(["nodes", index, "roles"])
        if bundle is None:
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
    if bundle is not None:
        arches = sorted({node.arch for node in site.nodes})
        missing = bundle.missing(arches)
        if missing:
            raise ConfigError(
                key_path(["registry", "bundleDir"]),
                f"{registry.bundle_dir} lacks {', '.join(missing)}: put the k3s "
                f"{site.k3s.version} release files there (see the README, 'Airgapped sites')",
            )


def _check_airgapped_gpu(site: Site) -> None:
    """An airgapped site's NVIDIA nodes must not reach for NVIDIA's servers."""
    if site.airgap_bundle is None:
        return
    if not any(accelerator_of(node).is_nvidia for node in site.nodes):
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
    if site.airgap_bundle is None or not site.docker_nodes:
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
    ascend = [node.name for node in site.nodes if accelerator_of(node).is_ascend]
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
    if not site.servers:
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
