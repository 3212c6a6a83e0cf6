"""Wires the components from the site model: one BareMetalNode per machine, in fleet order."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.node import BareMetalNode, BareMetalNodeArgs, fleet_hosts
from stacks.site_model import Site


@dataclass(frozen=True)
class Cluster:
    site: Site
    nodes: dict[str, BareMetalNode]

    def summary(self) -> pulumi.Output[dict]:
        """Per node: role, address, arch and what the preflight found."""
        return pulumi.Output.all(
            **{
                node.name: self.nodes[node.name].facts.apply(
                    lambda facts, node=node: {
                        "role": node.role,
                        "host": node.host,
                        "address": node.address or facts.get("address"),
                        "arch": facts.get("arch"),
                        "os": facts.get("os"),
                        "cpus": facts.get("cpus"),
                        "memoryMb": facts.get("memoryMb"),
                        "gpus": facts.get("gpus"),
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
