"""Wires the components from the site model: one BareMetalNode per machine, in fleet order."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.node import BareMetalNode, BareMetalNodeArgs, fleet_hosts
from stacks.site_model import Site

# What the per-node summary output repeats of each node's facts.
SUMMARY_FACTS = ("arch", "os", "cpus", "memoryMb", "gpus")


@dataclass(frozen=True)
class Cluster:
    site: Site
    nodes: dict[str, BareMetalNode]

    def summary(self) -> pulumi.Output[dict]:
        """Per node: role, address, arch and what the preflight found."""
        return pulumi.Output.all(
            **{
                node.name: pulumi.Output.all(
                    self.nodes[node.name].facts, self.nodes[node.name].address
                ).apply(
                    lambda resolved, node=node: {
                        "role": node.role,
                        "host": node.host,
                        "address": resolved[1],
                        **{key: resolved[0].get(key) for key in SUMMARY_FACTS},
                        "labels": dict(node.labels),
                    }
                )
                for node in self.site.nodes
            }
        )


def build_cluster(site: Site) -> Cluster:
    nodes = {
        node.name: BareMetalNode(
            node.name, BareMetalNodeArgs(node=node, ssh=site.ssh_for(node), os=site.os)
        )
        for node in site.nodes
    }
    hosts = fleet_hosts({name: node.address for name, node in nodes.items()})
    for node in nodes.values():
        node.prepare_os(hosts)
    return Cluster(site=site, nodes=nodes)
