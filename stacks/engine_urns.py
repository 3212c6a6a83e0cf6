"""URNs and aliases as the Pulumi engine makes them, for the stand-ins that play the engine
(the offline render, the sandbox deployment, the stand-in CLI).

The SDK's mock monitor makes URNs its own way: it keeps only the last type of the parent's
chain, and puts the root stack's type in front of every top-level resource. The engine keeps
the parent's whole chain and leaves the root stack out (`components.steps.new_urn`). A
stand-in with the mock's URNs would not see that moving a component moves every resource
under it, so the stand-ins use the engine's.

Aliases follow the engine's step generator (pkg/v3 resource/deploy/step_generator.go, v3.274):
each alias the program gives is collapsed to a URN (an unset name, type or parent is the
resource's own; a parent that was itself found under an alias is taken at its old URN; the root
stack counts as no parent); then, when the parent was found under an alias, the child is also
looked for under that old parent, with the parent's old name in place of its new one where the
child's name starts with it. A resource takes over the first of its URN and its aliases that
the old state holds.
"""

from __future__ import annotations

from collections.abc import Iterable

from pulumi.runtime.proto import alias_pb2

from components.steps import new_urn, qualified_type, urn_name


class AliasResolver:
    """Which old resource each new registration takes over, given the old state's URNs."""

    def __init__(self, stack: str, project: str, old_urns: Iterable[str] = ()):
        self.stack = stack
        self.project = project
        self.old_urns = frozenset(old_urns)
        self.taken_over: dict[str, str] = {}  # new URN -> the old URN it took over

    def aliases(
        self, urn: str, type_: str, name: str, parent: str, specs: Iterable[alias_pb2.Alias]
    ) -> list[str]:
        """The alias URNs of a registration, in the engine's order, without repeats."""
        own = [self._collapse(name, type_, parent, alias) for alias in specs]
        found = list(dict.fromkeys(own))
        parent_alias = self.taken_over.get(parent) if parent else None
        if parent_alias is not None:
            found.append(self._inherited(type_, name, urn_name(parent), parent_alias))
            for alias in own:
                found.append(
                    self._inherited(
                        qualified_type(alias).rsplit("$", 1)[-1],
                        urn_name(alias),
                        urn_name(parent),
                        parent_alias,
                    )
                )
        return [alias for alias in dict.fromkeys(found) if alias != urn]

    def take_over(self, urn: str, aliases: Iterable[str]) -> str | None:
        """The old URN this registration takes over (its own first), noted for its children."""
        if urn in self.old_urns:
            return urn
        for alias in aliases:
            if alias in self.old_urns:
                self.taken_over[urn] = alias
                return alias
        return None

    def _collapse(self, name: str, type_: str, parent: str, alias: alias_pb2.Alias) -> str:
        if alias.WhichOneof("alias") == "urn":
            return alias.urn
        spec = alias.spec
        old_parent = spec.parentUrn or parent
        if spec.parentUrn:
            old_parent = self.taken_over.get(old_parent, old_parent)
        if spec.noParent:
            old_parent = ""
        return new_urn(
            spec.stack or self.stack,
            spec.project or self.project,
            old_parent,
            spec.type or type_,
            spec.name or name,
        )

    def _inherited(self, type_: str, name: str, parent_name: str, parent_alias: str) -> str:
        alias_name = name
        if name.startswith(parent_name):
            alias_name = urn_name(parent_alias) + name[len(parent_name) :]
        return new_urn(self.stack, self.project, parent_alias, type_, alias_name)
