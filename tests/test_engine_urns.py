"""The engine's URN and alias rules, as the stand-ins apply them (the recording monitor's alias
resolver, components/steps.py `new_urn`), each expectation worked out by hand from the rules:

- a URN is `urn:pulumi:<stack>::<project>::<types>::<name>`, where <types> is the parent's whole
  type chain, `$`, the resource's own type; the root stack is no parent (as Pulumi
  v3.274's engine makes URNs);
- an alias is collapsed to a URN: an unset name or type is the resource's own, an unset parent
  its (new) parent, `parent=ROOT_STACK_RESOURCE` (noParent) none, a parent URN that itself was
  found under an alias its old URN (the engine's step generator);
- a child of a parent found under an alias is also looked for under that old parent, its name
  and each of its own aliases' names with the parent's old name in place of the new where they
  start with it (`inheritedChildAlias`, `generateAliases`);
- a resource takes over the first of its own URN and its aliases that the old state holds
  (`generateSteps`: "Check the URN first, then aliases").

Tiny components and resources run under the SDK's mocks with the project's recording monitor,
so the aliases are the SDK's own alias specs, as a program sends them.
"""

from __future__ import annotations

from collections.abc import Callable

import pulumi
import pytest

from components.steps import new_urn
from stacks import program
from stacks.render import RecordingMonitor, run_program
from stacks.stackfile import StackFile

STACK, PROJECT = "dev", "proj"
PREFIX = f"urn:pulumi:{STACK}::{PROJECT}::"
THING = "test:index:Thing"
COMP = "test:index:Comp"
SUB = "test:index:Sub"
ROOT = f"{PREFIX}pulumi:pulumi:Stack::{PROJECT}-{STACK}"


def urn(types: str, name: str) -> str:
    """A URN spelt out by hand: `types` is the whole type chain."""
    return f"{PREFIX}{types}::{name}"


class Echo(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list]:
        return {}, []


class Comp(pulumi.ComponentResource):
    def __init__(self, type_: str, name: str, opts: pulumi.ResourceOptions | None = None):
        super().__init__(type_, name, None, opts)
        self.register_outputs({})


def thing(name: str, **opts: object) -> pulumi.CustomResource:
    return pulumi.CustomResource(THING, name, {"value": name}, pulumi.ResourceOptions(**opts))


@pytest.fixture
def register(monkeypatch: pytest.MonkeyPatch) -> Callable[..., RecordingMonitor]:
    """Runs `body` as the program, under mocks, against an old state of `old_urns`."""

    def run(body: Callable[[], None], old_urns: tuple[str, ...] = ()) -> RecordingMonitor:
        monitor = RecordingMonitor(Echo(), old_urns)
        monkeypatch.setattr(program, "run", body)
        run_program(StackFile(PROJECT, STACK, {}, ()), monitor, preview=True)
        return monitor

    return run


def urns_of(monitor: RecordingMonitor) -> dict[str, str]:
    return {resource["name"]: resource["urn"] for resource in monitor.recorded}


# URNs.


def test_new_urn_keeps_the_whole_parent_chain_and_leaves_the_root_stack_out() -> None:
    assert new_urn(STACK, PROJECT, "", THING, "a") == urn(THING, "a")
    assert new_urn(STACK, PROJECT, ROOT, THING, "a") == urn(THING, "a")
    parent = urn(COMP, "c")
    assert new_urn(STACK, PROJECT, parent, THING, "c-a") == urn(f"{COMP}${THING}", "c-a")
    grandparent_chain = urn(f"{COMP}${SUB}", "c-s")
    assert new_urn(STACK, PROJECT, grandparent_chain, THING, "x") == urn(
        f"{COMP}${SUB}${THING}", "x"
    )


def test_top_level_child_and_grandchild_urns(register) -> None:
    def body() -> None:
        thing("a")
        comp = Comp(COMP, "c")
        thing("c-a", parent=comp)
        sub = Comp(SUB, "c-s", pulumi.ResourceOptions(parent=comp))
        thing("c-s-a", parent=sub)

    monitor = register(body)
    assert urns_of(monitor) == {
        f"{PROJECT}-{STACK}": ROOT,
        "a": urn(THING, "a"),
        "c": urn(COMP, "c"),
        "c-a": urn(f"{COMP}${THING}", "c-a"),
        "c-s": urn(f"{COMP}${SUB}", "c-s"),
        # The SDK's own mock monitor would say `test:index:Sub$test:index:Thing` here.
        "c-s-a": urn(f"{COMP}${SUB}${THING}", "c-s-a"),
    }
    parents = {resource["name"]: resource["parent"] for resource in monitor.recorded}
    assert parents["a"] == ROOT  # a top-level resource's parent is the stack, not in its URN
    assert parents["c-s-a"] == urn(f"{COMP}${SUB}", "c-s")
    assert monitor.aliases == {} and monitor.taken_over == {}


# Aliases a resource gives itself.


def test_an_alias_with_a_new_name(register) -> None:
    body = lambda: thing("new", aliases=[pulumi.Alias(name="old")])  # noqa: E731
    old = urn(THING, "old")
    assert register(body).aliases == {urn(THING, "new"): [old]}
    assert register(body).taken_over == {}  # nothing to take over in an empty state
    monitor = register(body, old_urns=(old,))
    assert monitor.taken_over == {urn(THING, "new"): old}


def test_an_alias_with_a_new_type_and_an_unset_name_keeps_the_name(register) -> None:
    def body() -> None:
        pulumi.CustomResource("test:index:Renamed", "a", {}, pulumi.ResourceOptions(
            aliases=[pulumi.Alias(type_=THING)]
        ))  # fmt: skip

    monitor = register(body, old_urns=(urn(THING, "a"),))
    assert monitor.taken_over == {urn("test:index:Renamed", "a"): urn(THING, "a")}


def test_an_alias_to_no_parent_is_the_top_level_urn(register) -> None:
    """A resource moved from the top level into a component: `parent=ROOT_STACK_RESOURCE`."""

    def body() -> None:
        comp = Comp(COMP, "c")
        thing("a", parent=comp, aliases=[pulumi.Alias(parent=pulumi.ROOT_STACK_RESOURCE)])

    moved = urn(f"{COMP}${THING}", "a")
    monitor = register(body, old_urns=(urn(COMP, "c"), urn(THING, "a")))
    assert monitor.aliases == {moved: [urn(THING, "a")]}
    assert monitor.taken_over == {moved: urn(THING, "a")}


def test_an_alias_to_the_root_stack_urn_is_no_parent_too(register) -> None:
    def body() -> None:
        comp = Comp(COMP, "c")
        thing("a", parent=comp, aliases=[pulumi.Alias(parent=ROOT)])

    assert register(body).aliases == {urn(f"{COMP}${THING}", "a"): [urn(THING, "a")]}


def test_an_alias_with_a_parent_urn(register) -> None:
    """A resource moved from one component into another, the old one given by its URN."""
    old_parent = urn(f"{COMP}${SUB}", "old")

    def body() -> None:
        comp = Comp(COMP, "c")
        thing("a", parent=comp, aliases=[pulumi.Alias(parent=old_parent)])

    old = urn(f"{COMP}${SUB}${THING}", "a")
    monitor = register(body, old_urns=(old,))
    assert monitor.aliases == {urn(f"{COMP}${THING}", "a"): [old]}
    assert monitor.taken_over == {urn(f"{COMP}${THING}", "a"): old}


def test_an_alias_whose_parent_urn_was_itself_taken_over_names_its_old_urn(register) -> None:
    """The parent given by its new URN, which took over an old one of another type: the
    alias is under the old one (a URN holds its parents' types, not their names)."""
    comp2 = "test:index:Comp2"

    def body() -> None:
        comp = Comp(comp2, "c", pulumi.ResourceOptions(aliases=[pulumi.Alias(type_=COMP)]))
        thing("b", parent=comp, aliases=[pulumi.Alias(name="a", parent=urn(comp2, "c"))])

    child = urn(f"{comp2}${THING}", "b")
    monitor = register(body, old_urns=(urn(COMP, "c"),))
    assert monitor.taken_over == {urn(comp2, "c"): urn(COMP, "c")}
    # Its own alias under the parent's old URN, then its name under the old parent (its
    # alias's name there is the first again).
    assert monitor.aliases[child] == [urn(f"{COMP}${THING}", "a"), urn(f"{COMP}${THING}", "b")]
    # With the parent not taken over, the alias names the parent's new URN, and nothing is
    # inherited.
    monitor = register(body)
    assert monitor.aliases[child] == [urn(f"{comp2}${THING}", "a")]


# Aliases a child inherits from its parent.


def test_a_child_inherits_its_renamed_parents_alias_with_the_name_prefix_swapped(register) -> None:
    def body() -> None:
        app = Comp(COMP, "newapp", pulumi.ResourceOptions(aliases=[pulumi.Alias(name="app")]))
        thing("newapp-fn", parent=app)  # named after its parent: the prefix is swapped
        thing("other", parent=app)  # not: its URN never had the parent's name in it

    old = (urn(COMP, "app"), urn(f"{COMP}${THING}", "app-fn"), urn(f"{COMP}${THING}", "other"))
    monitor = register(body, old_urns=old)
    assert monitor.aliases == {
        urn(COMP, "newapp"): [urn(COMP, "app")],
        urn(f"{COMP}${THING}", "newapp-fn"): [urn(f"{COMP}${THING}", "app-fn")],
    }
    assert monitor.taken_over == {
        urn(COMP, "newapp"): urn(COMP, "app"),
        urn(f"{COMP}${THING}", "newapp-fn"): urn(f"{COMP}${THING}", "app-fn"),
    }
    # "other" keeps its URN: found under it, it takes nothing over.
    assert urn(f"{COMP}${THING}", "other") not in monitor.taken_over


def test_a_child_inherits_only_from_a_parent_that_was_found_under_an_alias(register) -> None:
    def body() -> None:
        app = Comp(COMP, "newapp", pulumi.ResourceOptions(aliases=[pulumi.Alias(name="app")]))
        thing("newapp-fn", parent=app)

    # The old state has the child's old URN but not its parent's: the parent is created, and
    # the child has no alias to be found under.
    monitor = register(body, old_urns=(urn(f"{COMP}${THING}", "app-fn"),))
    assert monitor.aliases == {urn(COMP, "newapp"): [urn(COMP, "app")]}
    assert monitor.taken_over == {}


def test_a_type_renamed_component_carries_its_children_and_grandchildren(register) -> None:
    """A new type changes every URN below it; each is found under the old chain."""

    def body() -> None:
        comp = Comp("test:index:Comp2", "c", pulumi.ResourceOptions(
            aliases=[pulumi.Alias(type_=COMP)]
        ))  # fmt: skip
        sub = Comp(SUB, "c-s", pulumi.ResourceOptions(parent=comp))
        thing("x", parent=sub)

    old = (urn(COMP, "c"), urn(f"{COMP}${SUB}", "c-s"), urn(f"{COMP}${SUB}${THING}", "x"))
    monitor = register(body, old_urns=old)
    assert monitor.taken_over == {
        urn("test:index:Comp2", "c"): old[0],
        urn(f"test:index:Comp2${SUB}", "c-s"): old[1],
        urn(f"test:index:Comp2${SUB}${THING}", "x"): old[2],
    }


def test_a_childs_own_aliases_are_multiplied_out_under_its_parents_alias(register) -> None:
    def body() -> None:
        app = Comp(COMP, "newapp", pulumi.ResourceOptions(aliases=[pulumi.Alias(name="app")]))
        thing("newapp-fn2", parent=app, aliases=[pulumi.Alias(name="newapp-fn")])

    new = urn(f"{COMP}${THING}", "newapp-fn2")
    monitor = register(body, old_urns=(urn(COMP, "app"), urn(f"{COMP}${THING}", "app-fn")))
    # In the engine's order: its own alias (under its new parent: the parent's new name is no
    # part of a URN), its name under the old parent, its alias's name under the old parent.
    assert monitor.aliases[new] == [
        urn(f"{COMP}${THING}", "newapp-fn"),
        urn(f"{COMP}${THING}", "app-fn2"),
        urn(f"{COMP}${THING}", "app-fn"),
    ]
    assert monitor.taken_over[new] == urn(f"{COMP}${THING}", "app-fn")


# Which old resource is taken over.


def test_its_own_urn_first(register) -> None:
    def body() -> None:
        thing("a", aliases=[pulumi.Alias(name="b")])

    monitor = register(body, old_urns=(urn(THING, "a"), urn(THING, "b")))
    assert monitor.aliases == {urn(THING, "a"): [urn(THING, "b")]}
    assert monitor.taken_over == {}  # found under its own URN: "b" is left to be deleted


def test_the_first_alias_the_old_state_holds(register) -> None:
    def body() -> None:
        thing("a", aliases=[pulumi.Alias(name="b"), pulumi.Alias(name="c")])

    assert register(body, old_urns=(urn(THING, "c"), urn(THING, "b"))).taken_over == {
        urn(THING, "a"): urn(THING, "b")
    }
    assert register(body, old_urns=(urn(THING, "c"),)).taken_over == {
        urn(THING, "a"): urn(THING, "c")
    }


def test_an_alias_given_as_a_urn_is_taken_as_it_is(register) -> None:
    somewhere = urn(f"{SUB}${THING}", "elsewhere")
    monitor = register(lambda: thing("a", aliases=[somewhere]), old_urns=(somewhere,))
    assert monitor.taken_over == {urn(THING, "a"): somewhere}


def test_an_alias_in_another_stack_or_project_keeps_them(register) -> None:
    body = lambda: thing("a", aliases=[pulumi.Alias(stack="prod", project="other")])  # noqa: E731
    assert register(body).aliases == {urn(THING, "a"): [f"urn:pulumi:prod::other::{THING}::a"]}
