"""The stand-in CLI honours aliases as the engine does: a resource renamed between two runs,
with an alias to its old name, takes over its old state entry (same, or update when its inputs
changed) instead of a create and a delete, and the state keeps it under its new URN.

The program itself renames nothing, so a test renames a component on the way in: a
`sitecustomize` on PYTHONPATH (which every Python process of the run imports, the stand-in
CLI's too) wraps `pulumi.ComponentResource.__init__` so that the GPU component gets a new type
and name, with or without an alias to the old ones. Its children keep their names; their URNs
change with their parent's type, so they are found under the alias they inherit from it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from components.steps import Component
from tests.conftest import PROJECT_DIR, STANDINS, pinned, three_node_site, write_stack_file

SITE = "site"
TAIL = ["--stack", SITE]
OLD_TYPE = Component.GPU.type_token
NEW_TYPE = "convecthub:infra:RenamedAccelerator"
RENAME = '''"""For a test: the GPU component gets a new type and name{note}."""
import pulumi

_init = pulumi.ComponentResource.__init__


def _renamed(self, t, name, props=None, opts=None, *args, **kwargs):
    if t == {old_type!r}:
        aliases = [pulumi.Alias(name=name, type_=t)] if {alias!r} else []
        t, name = {new_type!r}, name + "-renamed"
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(aliases=aliases))
    _init(self, t, name, props, opts, *args, **kwargs)


pulumi.ComponentResource.__init__ = _renamed
'''


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PULUMI_", "STANDIN_PULUMI")) and key != "PYTHONPATH"
    }
    environment.update(
        PATH=f"{STANDINS / 'pulumi'}{os.pathsep}{os.environ['PATH']}",
        STANDIN_PULUMI_PYTHON=sys.executable,
        PULUMI_CONFIG_PASSPHRASE="correct horse battery staple",
    )
    return environment


def renaming(env: dict[str, str], directory: Path, *, alias: bool) -> dict[str, str]:
    """`env` with the GPU component renamed in every Python process (with an alias or not)."""
    directory.mkdir(exist_ok=True)
    (directory / "sitecustomize.py").write_text(
        RENAME.format(
            note=", with an alias to the old ones" if alias else ", without an alias",
            old_type=OLD_TYPE,
            new_type=NEW_TYPE,
            alias=alias,
        ),
        encoding="utf-8",
    )
    return {**env, "PYTHONPATH": str(directory)}


def stacks(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stacks", *args, "--project-dir", str(project)],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def state_urns(project: Path) -> list[str]:
    path = project / ".pulumi-state" / ".pulumi" / "stacks" / "convecthub" / f"{SITE}.json"
    return [resource["urn"] for resource in json.loads(path.read_text())["resources"]]


def changes(result: subprocess.CompletedProcess) -> dict[str, int]:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["changes"]


def test_a_renamed_component_with_an_alias_is_taken_over(
    project: Path, cli_env: dict, tmp_path: Path
) -> None:
    assert stacks(project, cli_env, "up", *TAIL).returncode == 0
    before = state_urns(project)
    gpu = [urn for urn in before if f"{OLD_TYPE}" in urn]
    assert len(gpu) == 3  # worker2's GPU component, its driver and its runtime steps

    env = renaming(cli_env, tmp_path / "alias", alias=True)
    preview = changes(stacks(project, env, "preview", *TAIL, "--json"))
    assert preview == {"same": len(before)}
    assert state_urns(project) == before  # a preview changes nothing

    assert changes(stacks(project, env, "up", *TAIL, "--json")) == {"same": len(before)}
    after = state_urns(project)
    # Each under its new URN, where the old one was; nothing left under the old ones.
    renamed = [urn.replace(OLD_TYPE, NEW_TYPE) for urn in before]
    renamed = [urn + "-renamed" if urn.endswith("::worker2-gpu") else urn for urn in renamed]
    assert after == renamed
    assert not [urn for urn in after if OLD_TYPE in urn]

    # The next run under the same program finds each under its own URN.
    assert changes(stacks(project, env, "up", *TAIL, "--json")) == {"same": len(before)}
    assert state_urns(project) == after


def test_a_changed_input_under_an_alias_is_an_update(
    project: Path, cli_env: dict, tmp_path: Path
) -> None:
    assert stacks(project, cli_env, "up", *TAIL).returncode == 0
    site = pinned(three_node_site())
    site["nodes"][2]["gpu"]["installDriver"] = True  # type: ignore[index]
    write_stack_file(project, site, stack=SITE)
    env = renaming(cli_env, tmp_path / "alias", alias=True)
    result = stacks(project, env, "preview", *TAIL, "--json")
    assert set(changes(result)) == {"same", "update"}  # no create, no delete
    # The driver step, found under the alias its parent gave it, differs from its old state.
    assert re.search(r"^worker2 +gpu-driver +would update$", result.stderr, re.M)


def test_without_an_alias_the_renamed_resources_are_replaced(
    project: Path, cli_env: dict, tmp_path: Path
) -> None:
    assert stacks(project, cli_env, "up", *TAIL).returncode == 0
    before = state_urns(project)
    env = renaming(cli_env, tmp_path / "no-alias", alias=False)
    preview = changes(stacks(project, env, "preview", *TAIL, "--json"))
    # The component and its two steps: created anew, and the old ones deleted.
    assert preview == {"same": len(before) - 3, "create": 3, "delete": 3}
    assert changes(stacks(project, env, "up", *TAIL, "--json")) == preview
    assert len(state_urns(project)) == len(before)
