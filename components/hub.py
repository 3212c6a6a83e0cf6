"""HubPlatform: ConvectHub, the JupyterHub Helm chart (zero-to-jupyterhub), on the cluster,
answering on the master's `hub.httpPort` / `hub.httpsPort`.

  namespace    `hub.namespace` (default convecthub)
  secrets      cookie secret and proxy token (pulumi_random, kept in the state, secret), and
               with the shared-password authenticator the admins' password
  certificate  the site's (`hub.tls`), else a self-signed one made once on the first server
               (hub-certificate.sh) for its address and `hub.hosts`
  release      the chart from its repository or `hub.chartFile`, atomic, with the program's
               values, the site's values file and `hub.values` merged over them (theirs win);
               the Helm release `convecthub`, the resource `hub-release` (it was `convecthub`:
               it keeps an alias)
  entry        a LoadBalancer Service on the proxy's ports: k3s's ServiceLB binds httpPort
               and httpsPort on the nodes labelled for it (the first server); the chart's own
               proxy-public Service stays inside the cluster

Traefik: k3s's packaged Traefik would take 80 and 443 on every node, so it is off by default
(`k3s.disable`); a site that keeps it serves the hub on other ports (stacks/config checks).
Profiles come from the fleet: one per kind of node (CPU, each GPU or NPU type), per resource
group (the nodes' `org` label), each with the node selector and accelerator limits it needs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as kubernetes
import pulumi_random as random
from pulumi_kubernetes.helm import v3 as helm

from components.chart_source import chart_source
from components.node import BareMetalNode
from components.remote_script import ScriptStep
from components.steps import Component, StepKind
from model.accelerator import accelerator_of
from model.grammar import url_host
from model.secrecy import (
    SecretSections,
    has_credentials_in_url,
    secret_value_paths,
    with_secrets_at,
)
from model.site import (
    DEFAULT_HTTP_PORT,
    DEFAULT_HTTPS_PORT,
    HubSettings,
    Node,
    StorageSettings,
)
from model.values_file import merge_values

RELEASE_NAME = "convecthub"
CHART = "jupyterhub"
ENTRY_SERVICE = "convecthub-entry"
CERTIFICATE_SCRIPT = "hub-certificate.sh"  # StepKind.HUB_CERTIFICATE's
SHARED_PASSWORD = "shared-password"
# The chart's proxy pods (its matchLabels), and their named ports.
PROXY_SELECTOR = {"app": "jupyterhub", "component": "proxy", "release": RELEASE_NAME}
# Users' homes on the shared NFS export: one volume, a directory per user.
STORAGE_CLASS = "convecthub-nfs"
HOME_VOLUME = "convecthub-home"
HOME_SUBPATH = "home/{username}"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def profile_list(nodes: Sequence[Node]) -> list[dict[str, object]]:
    """KubeSpawner profiles from the fleet: per resource group (org label; nodes without one
    form the first group) a CPU profile when it has CPU nodes, and one per accelerator type,
    each selecting its nodes by their labels, asking for one accelerator and tolerating the
    taints of those nodes. The first profile is the default."""
    groups: dict[str | None, list[Node]] = {}
    for node in nodes:
        groups.setdefault(node.labels.get("org"), []).append(node)
    profiles: list[dict[str, object]] = []
    for org in sorted(groups, key=lambda o: (o is not None, o or "")):
        # Per kind of node: its accelerator's vendor and model (vendor None: CPU).
        kinds: dict[tuple[str | None, str | None], list[Node]] = {}
        for node in groups[org]:
            accelerator = accelerator_of(node)
            kinds.setdefault((accelerator.vendor, accelerator.type), []).append(node)
        for _, members in sorted(
            kinds.items(),
            key=lambda item: (item[0][0] is not None, item[0][0] or "", item[0][1] or ""),
        ):
            profiles.append(_profile(org, members))
    if profiles:
        profiles[0]["default"] = True
    return profiles


def _profile(org: str | None, members: Sequence[Node]) -> dict[str, object]:
    """The profile of nodes of one kind (one accelerator vendor and model) in one group."""
    accelerator = accelerator_of(members[0])
    selector = dict(accelerator.labels)
    if org is not None:
        selector["org"] = org
    override: dict[str, object] = {"node_selector": selector}
    if accelerator.resource is None:
        title, what = "CPU", "CPU nodes"
    else:
        kind, gpu_type = accelerator.kind, accelerator.type
        title = f"{kind} {gpu_type}" if gpu_type else kind
        what = f"one {accelerator.vendor_name} {gpu_type or kind}"
        override["extra_resource_limits"] = {accelerator.resource: "1"}
        override["extra_resource_guarantees"] = {accelerator.resource: "1"}
    taints = sorted({taint for node in members for taint in node.taints}, key=str)
    if taints:
        override["tolerations"] = [
            {"key": t.key, "operator": "Equal", "value": t.value, "effect": t.effect}
            if t.value
            else {"key": t.key, "operator": "Exists", "effect": t.effect}
            for t in taints
        ]
    # No node names here: adding a node of a kind the hub has already must not touch it.
    return {
        "display_name": f"{title} ({org})" if org else title,
        "slug": _slug(f"{title}-{org}" if org else title),
        "description": f"{what} ({org} nodes)" if org else what,
        "kubespawner_override": override,
    }


@dataclass(frozen=True)
class HubSecrets:
    """The release's secret values: strings in tests, secret Outputs in the program."""

    cookie_secret: object
    proxy_token: object
    tls_certificate: object
    tls_key: object
    admin_password: object | None = None  # with the shared-password authenticator


def hub_values(
    hub: HubSettings, nodes: Sequence[Node], secrets: HubSecrets, storage: StorageSettings
) -> dict[str, object]:
    """The program's chart values (before the site's are merged over them)."""
    authenticator: dict[str, object] = {"admin_users": list(hub.admin_users)}
    config: dict[str, object] = {
        "JupyterHub": {"authenticator_class": hub.authenticator_class},
        "Authenticator": authenticator,
    }
    if hub.authenticator_class == SHARED_PASSWORD:
        config["SharedPasswordAuthenticator"] = {"admin_password": secrets.admin_password}
    https: dict[str, object] = {
        "enabled": True,
        "type": "manual",
        "manual": {"cert": secrets.tls_certificate, "key": secrets.tls_key},
    }
    chp: dict[str, object] = {}
    if hub.https_port != DEFAULT_HTTPS_PORT:
        # The chart's proxy redirects plain HTTP to port 443; the site serves HTTPS elsewhere.
        chp["extraCommandLineFlags"] = [f"--redirect-to={hub.https_port}"]
    return {
        "hub": {"cookieSecret": secrets.cookie_secret, "config": config},
        "proxy": {
            "secretToken": secrets.proxy_token,
            "service": {"type": "ClusterIP"},  # the entry Service takes the master's ports
            "https": https,
            **({"chp": chp} if chp else {}),
        },
        "singleuser": {
            "profileList": profile_list(nodes),
            "storage": user_storage_values(storage),
        },
    }


def profile_names(values: Mapping[str, object]) -> list[str]:
    """The display names of the profiles in the release's values (the site's, if it gave
    its own list)."""
    singleuser = values.get("singleuser")
    profiles = singleuser.get("profileList") if isinstance(singleuser, Mapping) else None
    if not isinstance(profiles, list):
        return []
    return [
        str(p.get("display_name") or p.get("slug") or "?")
        for p in profiles
        if isinstance(p, Mapping)
    ]


def user_storage_values(storage: StorageSettings) -> dict[str, object]:
    """Where users' home directories live: on the shared NFS volume (a directory each), else
    on a local-path volume each."""
    if storage.nfs is None:
        return {
            "type": "dynamic",
            "capacity": storage.user_volume_size,
            "dynamic": {"storageClass": "local-path"},
        }
    return {"type": "static", "static": {"pvcName": HOME_VOLUME, "subPath": HOME_SUBPATH}}


def home_volume_spec(storage: StorageSettings) -> dict[str, object]:
    """The PersistentVolume on the NFS export (the same directory every node has mounted)."""
    assert storage.nfs is not None
    return {
        "capacity": {"storage": storage.capacity},
        "accessModes": ["ReadWriteMany"],
        "persistentVolumeReclaimPolicy": "Retain",
        "storageClassName": STORAGE_CLASS,
        "mountOptions": list(storage.nfs.options),
        "nfs": {"server": storage.nfs.server, "path": storage.nfs.path},
    }


def home_claim_spec(storage: StorageSettings) -> dict[str, object]:
    return {
        "accessModes": ["ReadWriteMany"],
        "storageClassName": STORAGE_CLASS,
        "volumeName": HOME_VOLUME,
        "resources": {"requests": {"storage": storage.capacity}},
    }


def release_values(
    values: Mapping[str, object], site: Mapping[str, object], secrets: SecretSections
) -> pulumi.Input[Mapping[str, object]]:
    """The release's values (`site`'s merged over the program's) with their secrets as secret
    Outputs: all of them when the hub's section is secret (they come from it); else the
    profiles when the nodes' section is, the users' storage when storage's is, and the site's
    values that are secrets by their names or URLs (model/secrecy.py)."""
    if "hub" in secrets:
        return pulumi.Output.secret(values)
    paths: list[tuple[int | str, ...]] = list(secret_value_paths(site))
    if "nodes" in secrets:
        paths.append(("singleuser", "profileList"))
    if "storage" in secrets:
        paths.append(("singleuser", "storage"))
    return with_secrets_at(values, paths)


def entry_service_spec(hub: HubSettings) -> dict[str, object]:
    """The Service that puts the hub's proxy on the master's ports."""
    return {
        "type": "LoadBalancer",
        "selector": dict(PROXY_SELECTOR),
        "ports": [
            {"name": "http", "port": hub.http_port, "targetPort": "http", "protocol": "TCP"},
            {"name": "https", "port": hub.https_port, "targetPort": "https", "protocol": "TCP"},
        ],
    }


def hub_names(address: str, hub: HubSettings) -> list[str]:
    """What the hub is reached by: the master's address first, then `hub.hosts`."""
    return list(dict.fromkeys([address, *hub.hosts]))


def hub_urls(address: str, hub: HubSettings) -> dict[str, str]:
    https = "" if hub.https_port == DEFAULT_HTTPS_PORT else f":{hub.https_port}"
    http = "" if hub.http_port == DEFAULT_HTTP_PORT else f":{hub.http_port}"
    host = url_host(hub.hosts[0] if hub.hosts else address)  # an IPv6 address in brackets
    return {"https": f"https://{host}{https}/", "http": f"http://{host}{http}/"}


@dataclass(frozen=True)
class HubPlatformArgs:
    settings: HubSettings
    storage: StorageSettings  # the shared NFS export users' homes live on, if any
    nodes: Sequence[Node]  # the fleet, as the model has it: the profiles come from it
    first_server: BareMetalNode  # the hub answers on its address; its certificate is made there
    provider: kubernetes.Provider  # the cluster's
    after: Sequence[pulumi.Resource]  # the nodes' memberships, the device plugins' workloads
    secrets: SecretSections = field(default_factory=SecretSections)  # the secret sections


class HubPlatform(pulumi.ComponentResource):
    """The hub's namespace, secrets, certificate, release and entry Service."""

    urls: pulumi.Output[dict]
    admin_password: pulumi.Output[str] | None  # secret; with the shared-password authenticator

    def __init__(
        self, name: str, args: HubPlatformArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__(Component.HUB.type_token, name, None, opts)
        hub = args.settings
        secrets = args.secrets
        k8s = pulumi.ResourceOptions(parent=self, provider=args.provider)

        def hex_secret(suffix: str) -> pulumi.Output[str]:
            secret = random.RandomId(
                f"{name}-{suffix}",
                byte_length=32,
                opts=pulumi.ResourceOptions(
                    parent=self, additional_secret_outputs=["hex", "b64_std", "b64_url", "dec"]
                ),
            )
            return pulumi.Output.secret(secret.hex)

        self.admin_password = None
        if hub.authenticator_class == SHARED_PASSWORD:
            # Secret here too, not only by the provider's schema (which mocks do not know).
            self.admin_password = pulumi.Output.secret(
                random.RandomPassword(
                    f"{name}-admin-password",
                    length=32,
                    special=False,
                    opts=pulumi.ResourceOptions(parent=self),
                ).result
            )
        certificate, key = self._certificate(name, args)
        hub_secrets = HubSecrets(
            cookie_secret=hex_secret("cookie-secret"),
            proxy_token=hex_secret("proxy-token"),
            tls_certificate=certificate,
            tls_key=key,
            admin_password=self.admin_password,
        )
        theirs = hub.site_values  # the values file's, then hub.values: the model's
        values = merge_values(hub_values(hub, args.nodes, hub_secrets, args.storage), theirs)
        namespace = kubernetes.core.v1.Namespace(
            f"{name}-namespace",
            metadata={"name": hub.namespace},
            opts=pulumi.ResourceOptions.merge(k8s, pulumi.ResourceOptions(depends_on=args.after)),
        )
        homes = self._home_volume(name, args, k8s, namespace)
        # A repository URL with credentials in it is a secret of its own.
        repository_secret = has_credentials_in_url(hub.repository) and not hub.chart_file
        source = chart_source(
            CHART,
            secrets.wrap(hub.chart_version, "hub"),
            pulumi.Output.secret(hub.repository)
            if repository_secret
            else secrets.wrap(hub.repository, "hub"),
            hub.chart_file,
        )
        if hub.chart_file:
            source["chart"] = secrets.wrap(source["chart"], "hub")
        self.release = helm.Release(
            f"{name}-release",
            helm.ReleaseArgs(
                name=RELEASE_NAME,
                namespace=hub.namespace,
                atomic=True,
                cleanup_on_fail=True,
                timeout=secrets.wrap(hub.timeout_seconds, "hub"),
                values=release_values(values, theirs, secrets),
                **source,
            ),
            # It was named as the Helm release is.
            opts=pulumi.ResourceOptions.merge(
                k8s,
                pulumi.ResourceOptions(
                    depends_on=[namespace, *homes, *args.after],
                    aliases=[pulumi.Alias(name=RELEASE_NAME)],
                ),
            ),
        )
        self.entry = kubernetes.core.v1.Service(
            f"{name}-entry",
            metadata={"name": ENTRY_SERVICE, "namespace": hub.namespace},
            spec=self._entry_spec(hub, secrets),
            opts=pulumi.ResourceOptions.merge(k8s, pulumi.ResourceOptions(depends_on=[namespace])),
        )
        self.urls = secrets.wrap(
            args.first_server.address.apply(lambda address: hub_urls(address, hub)), "hub"
        )
        chart = hub.chart_file or f"{CHART} {hub.chart_version} from {hub.repository}"
        # The namespace stays plain, as its objects' IDs do in the state.
        self.register_outputs(
            {
                "urls": self.urls,
                "namespace": hub.namespace,
                "chart": pulumi.Output.secret(chart)
                if repository_secret
                else secrets.wrap(chart, "hub"),
                "certificate": secrets.wrap(
                    "the site's (hub.tls)"
                    if hub.tls.certificate is not None
                    else f"self-signed, made on the first server ({CERTIFICATE_SCRIPT})",
                    "hub",
                ),
                "profiles": secrets.wrap(profile_names(values), "hub", "nodes"),
            }
        )

    @staticmethod
    def _entry_spec(hub: HubSettings, secrets: SecretSections) -> dict[str, object]:
        spec = entry_service_spec(hub)
        if "hub" in secrets:
            spec["ports"] = pulumi.Output.secret(spec["ports"])
        return spec

    def _home_volume(
        self,
        name: str,
        args: HubPlatformArgs,
        k8s: pulumi.ResourceOptions,
        namespace: pulumi.Resource,
    ) -> list[pulumi.Resource]:
        """With NFS: its StorageClass, the shared volume and the hub's claim on it."""
        storage = args.storage
        if storage.nfs is None:
            return []
        storage_class = kubernetes.storage.v1.StorageClass(
            f"{name}-storage-class",
            metadata={"name": STORAGE_CLASS},
            provisioner="kubernetes.io/no-provisioner",
            reclaim_policy="Retain",
            volume_binding_mode="Immediate",
            opts=k8s,
        )
        secrets = args.secrets
        volume_spec = home_volume_spec(storage)
        claim_spec = home_claim_spec(storage)
        if "storage" in secrets:  # what comes from the section: the export and the sizes
            for key in ("capacity", "mountOptions", "nfs"):
                volume_spec[key] = pulumi.Output.secret(volume_spec[key])
            claim_spec["resources"] = pulumi.Output.secret(claim_spec["resources"])
        volume = kubernetes.core.v1.PersistentVolume(
            f"{name}-home-volume",
            metadata={"name": HOME_VOLUME},
            spec=volume_spec,
            opts=pulumi.ResourceOptions.merge(
                k8s, pulumi.ResourceOptions(depends_on=[storage_class])
            ),
        )
        claim = kubernetes.core.v1.PersistentVolumeClaim(
            f"{name}-home-claim",
            metadata={"name": HOME_VOLUME, "namespace": args.settings.namespace},
            spec=claim_spec,
            opts=pulumi.ResourceOptions.merge(
                k8s, pulumi.ResourceOptions(depends_on=[namespace, volume])
            ),
        )
        return [claim]

    def _certificate(self, name: str, args: HubPlatformArgs) -> tuple[object, object]:
        """The site's certificate and key, else a self-signed pair from the first server."""
        tls = args.settings.tls
        secrets = args.secrets
        if tls.certificate is not None and tls.key is not None:
            return (
                secrets.wrap(tls.certificate, "hub"),
                pulumi.Output.secret(tls.key.get_secret_value()),
            )
        first_server = args.first_server
        names = first_server.address.apply(
            lambda address: ",".join(hub_names(address, args.settings))
        )
        # hub.hosts are the hub's; the first server's address is secret when it comes from a
        # secret nodes section (Output secrecy carries that).
        plain, secret = secrets.split_env({"CONVECTHUB_HUB_NAMES": names}, {}, default=("hub",))
        step = ScriptStep(CERTIFICATE_SCRIPT, env=plain, secret_env=secret)
        command = first_server.run_prepared(
            f"{name}-{StepKind.HUB_CERTIFICATE.suffix}", step, parent=self, secret_stdout=True
        )
        pair = command.stdout.apply(json.loads)
        return (
            pulumi.Output.unsecret(pair.apply(lambda p: p["certificate"])),
            pulumi.Output.secret(pair.apply(lambda p: p["key"])),
        )
