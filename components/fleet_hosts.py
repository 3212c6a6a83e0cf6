"""The fleet's hosts list ("name=address,..."), for every node's /etc/hosts block.

An address may come from a node's facts, so the list is built from every node's facts. Passed
as an ordinary Output, it would make each of the n OS prep steps depend on all n facts steps,
and everything downstream of an OS prep (k3s, membership) would inherit those n edges: n²
edges that the SDK walks (its cycle check follows transitive dependencies), serialises and the
engine stores, on every preview (docs/benchmarks.md has the figures).

The dependency is on the values only: OS prep has no lifecycle tie to another node's preflight
(facts steps have nothing to delete, and are never replaced by a change elsewhere). So the list
is handed on as an Output that carries the value but no resources. Ordering still holds: the
SDK registers an OS prep step only once its stdin, and so every address, has resolved.
"""

from __future__ import annotations

from collections.abc import Mapping

import pulumi


def hosts_listing(addresses: Mapping[str, str]) -> str:
    """ "name=address,..." in fleet order."""
    return ",".join(f"{name}={address}" for name, address in addresses.items())


def fleet_hosts(addresses: Mapping[str, pulumi.Input[str]]) -> pulumi.Output[str]:
    """The fleet's hosts list: the value of every address, without their dependency edges."""
    listing = pulumi.Output.all(**addresses).apply(
        lambda resolved: hosts_listing({name: resolved[name] for name in addresses})
    )
    return pulumi.Output(
        resources=set(),
        future=listing.future(with_unknowns=True),
        is_known=listing.is_known(),
        is_secret=listing.is_secret(),
    )
