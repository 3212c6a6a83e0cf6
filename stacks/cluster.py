"""Wires the components from the site model.

NodeFacts     per node: its preflight (a step of the stack's own), every node's before any OS prep
BareMetalNode per node: OS prep with the fleet's hosts list, then the shared storage mount
              when the site has NFS; the node's one handle for the layers above
GpuNode       per GPU/NPU node, after its OS prep
DockerEngine  per node that wants Docker, after its OS prep and GPU layer (k3s never waits)
K3sServer     per server, one after another: server n joins once server n-1 is Ready
K3sAgent      per agent, all in parallel once the servers are up
kubernetes    provider from the first server's kubeconfig, for the layers above the cluster:
NvidiaDevicePlugin, AscendDevicePlugin
              once the nodes of their vendor are labelled, and
HubPlatform   ConvectHub (the JupyterHub chart) on the first server's ports, after all of that
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as kubernetes
import pulumi_random as random

from components.ascend_device_plugin import AscendDevicePlugin, AscendDevicePluginArgs
from components.device_plugin import NvidiaDevicePlugin, NvidiaDevicePluginArgs
from components.docker import DockerEngine, DockerEngineArgs
from components.fleet_hosts import fleet_hosts
from components.gpu import GpuNode, GpuNodeArgs
from components.hub import HubPlatform, HubPlatformArgs
from components.k3s import (
    K3sAgent,
    K3sClusterArgs,
    K3sNodeArgs,
    K3sRole,
    K3sServer,
    K3sServerArgs,
    api_server_url,
    node_labels,
)
from components.node import BareMetalNode, BareMetalNodeArgs
from components.node_facts import NodeFacts, NodeFactsArgs
from components.steps import SITE_COMPONENT_NAMES, Component
from model.accelerator import Vendor, accelerator_of
from model.secrecy import SecretSections
from model.site import Node, Site

# What the per-node summary output repeats of each node's facts.
SUMMARY_FACTS = ("arch", "os", "cpus", "memoryMb", "gpus")
TOKEN_LENGTH = 48


@dataclass(frozen=True)
class Cluster:
    site: Site
    nodes: dict[str, BareMetalNode]
    gpus: dict[str, GpuNode]
    docker: dict[str, DockerEngine]  # the nodes that get Docker
    servers: dict[str, K3sServer]
    agents: dict[str, K3sAgent]
    api_server: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]  # secret
    kubernetes: kubernetes.Provider
    nvidia_device_plugin: NvidiaDevicePlugin | None  # when the site has NVIDIA GPUs
    ascend_device_plugin: AscendDevicePlugin | None  # when it has Ascend NPUs
    hub: HubPlatform
    secrets: SecretSections = field(default_factory=SecretSections)  # the secret sections

    def summary(self) -> pulumi.Output[dict]:
        """Per node: role, address, arch and what the preflight found (secret when the nodes'
        section is: it comes from there)."""
        return pulumi.Output.all(
            **{
                node.name: self.secrets.wrap(self._node_summary(node), "nodes")
                for node in self.site.nodes
            }
        )

    def versions(self) -> pulumi.Output[dict]:
        """Per node: the k3s release (and, on NVIDIA nodes, the driver) it ran at its last
        preflight (absent: none) and what the stack file asks for (the driver branch on nodes
        that get their driver here; absent where the node's own driver stays). Secret when a
        section it comes from is."""
        return pulumi.Output.all(
            **{
                node.name: self.secrets.wrap(self._node_versions(node), "nodes", "k3s", "gpu")
                for node in self.site.nodes
            }
        )

    def _node_versions(self, node: Node) -> pulumi.Output[dict]:
        site = self.site
        accelerator = accelerator_of(node)

        def of(facts: dict) -> dict:
            versions = {"k3s": {"runs": facts.get("k3sVersion"), "target": site.k3s.version}}
            if accelerator.is_nvidia:
                driver = {"runs": facts.get("nvidiaDriver")}
                if accelerator.install_driver:  # else the node's own driver stays
                    driver["target"] = site.gpu.driver_version
                versions["nvidiaDriver"] = driver
            return versions

        return self.nodes[node.name].facts.apply(of)

    def _node_summary(self, node: Node) -> pulumi.Output[dict]:
        return pulumi.Output.all(self.nodes[node.name].facts, self.nodes[node.name].address).apply(
            lambda resolved: {
                "role": node.role,
                "host": node.host,
                "address": resolved[1],
                **{key: resolved[0].get(key) for key in SUMMARY_FACTS},
                # What the node carries: the hub's labels too, not just the config's.
                "labels": node_labels(node, node.name == self.site.first_server.name),
            }
        )


def cluster_token(site: Site) -> pulumi.Output[str]:
    """The join token: the configured one (the seed's convect_token), else a generated one
    that Pulumi keeps in the state; secret either way."""
    if site.k3s.token is not None:
        return pulumi.Output.secret(site.k3s.token.get_secret_value())
    return random.RandomPassword("k3s-token", length=TOKEN_LENGTH, special=False).result


def _holds_images(site: Site, node: Node) -> bool:
    """Airgapped, the registry nodes hold the images; without one, every node does."""
    if site.registry.bundle_dir is None:
        return False
    return not site.registry_nodes or node in site.registry_nodes


def build_cluster(site: Site, secrets: SecretSections | None = None) -> Cluster:
    """The cluster's components; `secrets`, the sections Pulumi holds as secret, are passed
    down so that what comes from them stays secret."""
    secrets = secrets or SecretSections()
    facts = {
        node.name: NodeFacts(
            node.name, NodeFactsArgs(node=node, ssh=site.ssh_for(node), secrets=secrets)
        )
        for node in site.nodes
    }
    hosts = fleet_hosts({name: preflight.address for name, preflight in facts.items()})
    nodes = {
        name: BareMetalNode(
            name,
            BareMetalNodeArgs(
                facts=preflight,
                fleet_hosts=hosts,
                os=site.os,
                storage=site.storage,
                secrets=secrets,
            ),
        )
        for name, preflight in facts.items()
    }
    gpus = {
        node.name: GpuNode(
            Component.GPU.name_for(node.name),
            GpuNodeArgs(node=nodes[node.name], settings=site.gpu, secrets=secrets),
            pulumi.ResourceOptions(parent=nodes[node.name]),
        )
        for node in site.nodes
        if not accelerator_of(node).is_cpu
    }
    docker = {
        node.name: DockerEngine(
            Component.DOCKER.name_for(node.name),
            DockerEngineArgs(
                node=nodes[node.name],
                os=site.os,
                registry=site.registry,
                after=[gpus[node.name].ready] if node.name in gpus else [],
                secrets=secrets,
            ),
            pulumi.ResourceOptions(parent=nodes[node.name]),
        )
        for node in site.docker_nodes
    }

    first_server = nodes[site.first_server.name]
    endpoint = site.k3s.api_endpoint
    api_server = (
        pulumi.Output.from_input(secrets.wrap(endpoint, "k3s"))
        if endpoint
        else first_server.address
    ).apply(api_server_url)
    # Servers join through the first server itself: it is Ready by then, while an endpoint
    # in front of the servers (a VIP, a load balancer) may not route yet. Agents use the
    # endpoint, as clients do.
    first_server_url = first_server.address.apply(api_server_url)
    embedded_registry = bool(site.registry_nodes)
    k3s = K3sClusterArgs(
        settings=site.k3s,
        registry=site.registry,
        os=site.os,
        token=cluster_token(site),
        first_server=first_server,
        secrets=secrets,
    )

    def gpu_ready(node: Node) -> pulumi.Resource | None:
        """A node joins once its accelerator (and its shared storage: the node's `ready`) is."""
        return gpus[node.name].ready if node.name in gpus else None

    servers: dict[str, K3sServer] = {}
    previous: list[pulumi.Resource] = []
    for index, node in enumerate(site.servers):
        is_first = index == 0
        role = K3sRole(
            server=True,
            first=is_first,
            cluster_init=is_first and len(site.servers) > 1,
            embedded_registry=embedded_registry,
        )
        server = K3sServer(
            Component.K3S_SERVER.name_for(node.name),
            K3sServerArgs(
                node=nodes[node.name],
                cluster=k3s,
                role=role,
                join_url=None if is_first else first_server_url,
                holds_images=_holds_images(site, node),
                gpu_ready=gpu_ready(node),
                after=previous,
                api_server=api_server if is_first else None,
            ),
            pulumi.ResourceOptions(parent=nodes[node.name]),
        )
        servers[node.name] = server
        previous = [server.install]

    server_installs = [server.install for server in servers.values()]
    agents = {
        node.name: K3sAgent(
            Component.K3S_AGENT.name_for(node.name),
            K3sNodeArgs(
                node=nodes[node.name],
                cluster=k3s,
                role=K3sRole(server=False, embedded_registry=embedded_registry),
                join_url=api_server,
                holds_images=_holds_images(site, node),
                gpu_ready=gpu_ready(node),
                after=server_installs,
            ),
            pulumi.ResourceOptions(parent=nodes[node.name]),
        )
        for node in site.agents
    }

    kubeconfig = servers[first_server.name].kubeconfig
    assert kubeconfig is not None  # the first server reads it
    provider = kubernetes.Provider(
        "cluster",
        kubeconfig=kubeconfig,
        opts=pulumi.ResourceOptions(depends_on=[*server_installs]),
    )
    members = {**servers, **agents}

    def labelled(vendor: Vendor) -> list[pulumi.Resource]:
        """The membership steps that label the nodes of this accelerator vendor."""
        return [
            members[n.name].membership for n in site.nodes if accelerator_of(n).vendor == vendor
        ]

    # The hub waits for each plugin's workload itself (the release, the DaemonSet).
    plugins: list[pulumi.Resource] = []
    nvidia_plugin = None
    if nvidia_members := labelled("nvidia"):
        nvidia_plugin = NvidiaDevicePlugin(
            SITE_COMPONENT_NAMES[Component.NVIDIA_DEVICE_PLUGIN],
            NvidiaDevicePluginArgs(
                settings=site.gpu.device_plugin,
                provider=provider,
                after=nvidia_members,
                secret="gpu" in secrets,
            ),
        )
        plugins.append(nvidia_plugin.release)
    ascend_plugin = None
    if ascend_members := labelled("ascend"):
        image = site.gpu.ascend_device_plugin.image
        assert image is not None  # stacks/config requires it with Ascend nodes
        ascend_plugin = AscendDevicePlugin(
            SITE_COMPONENT_NAMES[Component.ASCEND_DEVICE_PLUGIN],
            AscendDevicePluginArgs(
                image=secrets.wrap(image, "gpu"), provider=provider, after=ascend_members
            ),
        )
        plugins.append(ascend_plugin.daemonset)
    hub = HubPlatform(
        SITE_COMPONENT_NAMES[Component.HUB],
        HubPlatformArgs(
            settings=site.hub,
            storage=site.storage,
            nodes=site.nodes,
            first_server=first_server,
            provider=provider,
            after=[*(member.membership for member in members.values()), *plugins],
            secrets=secrets,
        ),
    )
    return Cluster(
        site=site,
        nodes=nodes,
        gpus=gpus,
        docker=docker,
        servers=servers,
        agents=agents,
        api_server=api_server,
        kubeconfig=kubeconfig,
        kubernetes=provider,
        nvidia_device_plugin=nvidia_plugin,
        ascend_device_plugin=ascend_plugin,
        hub=hub,
        secrets=secrets,
    )
