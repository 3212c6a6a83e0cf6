"""The program as it was before issue 17's restructure, for the tests that an existing site
does not notice the new one (tests/test_program_upgrade.py, tests/e2e/test_program_upgrade.py).

`pinned_tree` extracts the pinned commit's files (`git archive`), and `in_tree` runs a module
of that tree with this project's Python; `upgrade_problems` says how a new rendering differs
from an old one other than in URNs that the new program takes over under an alias; `rename`
has the program register a resource under another type or name, with an alias or without, for
the tests that show a rename is caught.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import pulumi
import pytest

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


def upgrade_problems(
    old: Iterable[Mapping], new: Iterable[Mapping], taken_over: Mapping[str, str]
) -> list[str]:
    """How the resources `new` (a rendering's) differ from `old` beyond renamed URNs.

    Each new resource must be an old one: under its own URN, or under the old URN it takes
    over through its aliases (`taken_over`, the new rendering's, made against the old URNs),
    with no two taking over the same one; its inputs, and its parent, dependencies and provider
    with each old URN read as the new one that took it over, must be the old one's; and no old
    resource may be left over (it would be deleted)."""
    old_by_urn = {resource["urn"]: resource for resource in old}
    new = list(new)
    problems = []
    renamed: dict[str, str] = {}  # old URN -> the new URN that is it now
    for resource in new:
        urn = resource["urn"]
        old_urn = urn if urn in old_by_urn else taken_over.get(urn)
        if old_urn is None or old_urn not in old_by_urn:
            problems.append(f"{urn}: new (no old resource has its URN or one of its aliases)")
        elif old_urn in renamed:
            problems.append(f"{urn}: takes over {old_urn}, which {renamed[old_urn]} is already")
        else:
            renamed[old_urn] = urn
    for resource in new:
        urn = resource["urn"]
        old_urn = next((o for o, n in renamed.items() if n == urn), None)
        if old_urn is None:
            continue
        before = old_by_urn[old_urn]
        for key in sorted(set(before["inputs"]) | set(resource["inputs"])):
            if before["inputs"].get(key) != resource["inputs"].get(key):
                problems.append(f"{urn}: input {key} differs from {old_urn}'s")
        for link in ("parent", "provider"):
            was = before.get(link)
            if renamed.get(was, was) != resource.get(link):
                problems.append(f"{urn}: {link} {resource.get(link)} was {was}")
        waited = sorted(
            renamed.get(dependency, dependency) for dependency in before["dependencies"]
        )
        if waited != sorted(resource["dependencies"]):
            problems.append(
                f"{urn}: waits for {sorted(resource['dependencies'])}, the old one for {waited}"
            )
    for old_urn in old_by_urn:
        if old_urn not in renamed:
            problems.append(f"{old_urn}: left over (no new resource is it, so it is deleted)")
    return problems


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
