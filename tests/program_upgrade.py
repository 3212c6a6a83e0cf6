"""The program as it was before issue 17's restructure, for the tests that an existing site
does not notice the new one (tests/test_program_upgrade.py, tests/e2e/test_program_upgrade.py).

`pinned_tree` extracts the pinned commit's files (`git archive`), and `in_tree` runs a module
of that tree with this project's Python; `compare_upgrade` says how a new rendering differs
from an old one other than in URNs that the new program takes over under an alias (and in the
two differences by design: new components that only group old resources, and resources moved
up out of their old parent under an alias); `rename`
has the program register a resource under another type or name, with an alias or without, for
the tests that show a rename is caught.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pytest

from components.steps import COMPONENT_PACKAGE, urn_name, urn_type
from tests.conftest import PROJECT_DIR

# The last commit of the program before the restructure: a site brought up by it must see
# every resource `same` under the program after it.
PINNED_COMMIT = "b91bc65"


def project_python() -> str:
    """The project's own interpreter (its .venv), which both trees run under."""
    venv = PROJECT_DIR / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def pinned_tree(destination: Path, commit: str = PINNED_COMMIT) -> Path:
    """The project's files at `commit`, extracted into `destination`."""
    found = subprocess.run(
        ["git", "-C", str(PROJECT_DIR), "cat-file", "-e", f"{commit}^{{commit}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode != 0:
        pytest.fail(
            f"this clone of the project lacks commit {commit}, the program before the "
            "restructure that the upgrade tests compare with (a shallow clone?): fetch the "
            "history: git fetch --unshallow",
            pytrace=False,
        )
    destination.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(PROJECT_DIR), "archive", commit], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(destination)], input=archive.stdout, check=True)
    return destination


def in_tree(
    tree: Path, *args: str, env: Mapping[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """`python *args` with `tree` as the working directory and the only project on the path."""
    environment = {**os.environ, **(env or {}), "PYTHONPATH": str(tree)}
    return subprocess.run(
        [project_python(), *args],
        cwd=tree,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class Upgrade:
    """How a new rendering differs from an old one (`compare_upgrade`)."""

    problems: list[str] = field(default_factory=list)
    # The components new by design, each `type::name`: of a convecthub:infra: type the old
    # rendering had none of, grouping only resources the old program had, moved into it.
    new_components: list[str] = field(default_factory=list)
    # The resources moved up out of their old parent, under an alias naming it: per resource
    # (`type::name`), its new parent's `type::name`.
    moved: dict[str, str] = field(default_factory=dict)


def _own_type(urn: str) -> str:
    """The type of a URN's resource ("" for what is no URN, as in the hand-made tests)."""
    return urn_type(urn) if urn.count("::") >= 3 else ""


def identity(urn: str) -> str:
    """A resource's `type::name`, as the sandbox's state names it."""
    return f"{urn_type(urn)}::{urn_name(urn)}" if _own_type(urn) else urn


def compare_upgrade(
    old: Iterable[Mapping], new: Iterable[Mapping], taken_over: Mapping[str, str]
) -> Upgrade:
    """How the resources `new` (a rendering's) differ from `old` beyond renamed URNs.

    Each new resource must be an old one: under its own URN, or under the old URN it takes
    over through its aliases (`taken_over`, the new rendering's, made against the old URNs),
    with no two taking over the same one; its inputs, and its parent, dependencies and provider
    with each old URN read as the new one that took it over, must be the old one's; and no old
    resource may be left over (it would be deleted).

    Two differences are by design, and reported rather than refused. A new component: of a
    `convecthub:infra:` type the old rendering had none of, with no inputs and no provider
    (a component runs nothing), and only old resources under it (moved into it: each compares
    its parent as the new component's own parent, where it was). And a resource taken over
    under an alias whose new parent is an ancestor of its old one: moved up out of it (the
    engine takes it over as it is, with its new parent)."""
    old = list(old)
    old_by_urn = {resource["urn"]: resource for resource in old}
    old_types = {_own_type(urn) for urn in old_by_urn}
    new = list(new)
    new_by_urn = {resource["urn"]: resource for resource in new}
    upgrade = Upgrade()
    renamed: dict[str, str] = {}  # old URN -> the new URN that is it now
    unmatched: list[Mapping] = []
    for resource in new:
        urn = resource["urn"]
        old_urn = urn if urn in old_by_urn else taken_over.get(urn)
        if old_urn is None or old_urn not in old_by_urn:
            unmatched.append(resource)
        elif old_urn in renamed:
            upgrade.problems.append(
                f"{urn}: takes over {old_urn}, which {renamed[old_urn]} is already"
            )
        else:
            renamed[old_urn] = urn
    grouping = _grouping_components(unmatched, new, set(renamed.values()), old_types)
    for resource in unmatched:
        if resource["urn"] in grouping:
            upgrade.new_components.append(identity(resource["urn"]))
        else:
            upgrade.problems.append(
                f"{resource['urn']}: new (no old resource has its URN or one of its aliases)"
            )

    def where(parent: str | None) -> str | None:
        """A new parent as the old program had it: a new component stands for its own parent."""
        while parent in grouping:
            parent = new_by_urn[parent].get("parent")
        return parent

    def ancestors(urn: str | None) -> list[str]:
        found = []
        while urn in new_by_urn and new_by_urn[urn].get("parent"):
            urn = new_by_urn[urn]["parent"]
            found.append(urn)
        return found

    for resource in new:
        urn = resource["urn"]
        old_urn = next((o for o, n in renamed.items() if n == urn), None)
        if old_urn is None:
            continue
        before = old_by_urn[old_urn]
        for key in sorted(set(before["inputs"]) | set(resource["inputs"])):
            if before["inputs"].get(key) != resource["inputs"].get(key):
                upgrade.problems.append(f"{urn}: input {key} differs from {old_urn}'s")
        was = before.get("parent")
        now = resource.get("parent")
        expected = renamed.get(was, was)
        if where(now) != expected:
            if old_urn != urn and now in ancestors(expected):
                upgrade.moved[identity(urn)] = identity(now)
            else:
                upgrade.problems.append(f"{urn}: parent {now} was {was}")
        was = before.get("provider")
        if renamed.get(was, was) != resource.get("provider"):
            upgrade.problems.append(f"{urn}: provider {resource.get('provider')} was {was}")
        waited = sorted(
            renamed.get(dependency, dependency) for dependency in before["dependencies"]
        )
        if waited != sorted(resource["dependencies"]):
            upgrade.problems.append(
                f"{urn}: waits for {sorted(resource['dependencies'])}, the old one for {waited}"
            )
    for old_urn in old_by_urn:
        if old_urn not in renamed:
            upgrade.problems.append(
                f"{old_urn}: left over (no new resource is it, so it is deleted)"
            )
    upgrade.new_components.sort()
    return upgrade


def _grouping_components(
    candidates: Iterable[Mapping],
    new: Iterable[Mapping],
    kept: set[str],
    old_types: set[str],
) -> set[str]:
    """The URNs among `candidates` (new resources, no old one's) that are new components by
    design: of a convecthub:infra: type the old rendering had none of, with no inputs and no
    provider, and something under them, each an old resource (in `kept`) or such a component."""
    children: dict[str, list[str]] = {}
    for resource in new:
        children.setdefault(resource.get("parent") or "", []).append(resource["urn"])
    possible = {
        resource["urn"]
        for resource in candidates
        if _own_type(resource["urn"]).startswith(COMPONENT_PACKAGE)
        and _own_type(resource["urn"]) not in old_types
        and not resource["inputs"]
        and not resource.get("provider")
    }
    grouping: set[str] = set()
    changed = True
    while changed:  # a component of such components is one too
        changed = False
        for urn in possible - grouping:
            under = children.get(urn, [])
            if under and all(child in kept or child in grouping for child in under):
                grouping.add(urn)
                changed = True
    return grouping


def upgrade_problems(
    old: Iterable[Mapping], new: Iterable[Mapping], taken_over: Mapping[str, str]
) -> list[str]:
    """`compare_upgrade`'s problems alone."""
    return compare_upgrade(old, new, taken_over).problems


def rename(
    monkeypatch: pytest.MonkeyPatch,
    type_token: str,
    *,
    name: str | None = None,
    new_type: str | None = None,
    new_name: Callable[[str], str] | None = None,
    alias: bool,
) -> None:
    """For one test: each resource of `type_token` (named `name`, if given) registers under
    `new_type` and `new_name(its name)` instead, with an alias to its old type and name when
    `alias`. What it creates under itself keeps its names (the program named those)."""
    original = pulumi.Resource.__init__

    def renamed(self, t, resource_name, custom, props=None, opts=None, *rest, **options):
        if t == type_token and name in (None, resource_name):
            aliases = [pulumi.Alias(name=resource_name, type_=t)] if alias else []
            t = new_type or t
            resource_name = new_name(resource_name) if new_name else resource_name
            opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(aliases=aliases))
        original(self, t, resource_name, custom, props, opts, *rest, **options)

    monkeypatch.setattr(pulumi.Resource, "__init__", renamed)
