"""An existing site does not notice the restructure of issue 17: for every example site, the
render of the program at the pinned commit before it (tests/program_upgrade.py) and at HEAD
differ only in URNs that HEAD takes over under an alias, as the engine would take them over;
everything else (inputs, parents, dependencies, providers, the stack's outputs) is the same.

The old render runs in a subprocess in the pinned commit's tree; the new one here, against the
old render's URNs (`evaluate(..., old_urns=...)`), which resolves HEAD's aliases with the
engine's rules. Two differences are by design, and each site's are asserted exactly: the
device plugins' components are new (a component runs nothing, and only groups the plugins'
resources, moved into it under aliases), and each node's facts step moved up out of its
BareMetalNode to the stack (under an alias naming where it was). The comparison itself is
shown to catch a rename without an alias, on hand-made resources and on the real program with
a component renamed.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from components.steps import Component
from stacks.render import evaluate
from stacks.stackfile import read_stack_file
from tests.conftest import FAKE_KEY, PROJECT_DIR, pinned, three_node_site, write_stack_file
from tests.program_upgrade import (
    compare_upgrade,
    in_tree,
    pinned_tree,
    rename,
    upgrade_problems,
)

K3S_VERSION = "v1.37.2+k3s1"


@pytest.fixture(scope="module")
def old_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pinned_tree(tmp_path_factory.mktemp("pinned") / "tree")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home with the ~/.ssh/id_rsa the seed's example names, for both renders."""
    directory = tmp_path / "home"
    (directory / ".ssh").mkdir(parents=True)
    (directory / ".ssh" / "id_rsa").write_text(FAKE_KEY)
    monkeypatch.setenv("HOME", str(directory))
    return directory


def example(relative: str) -> Callable[[Path], Path]:
    """A committed stack file, copied (with the project file beside it, if it has one)."""

    def copy(directory: Path) -> Path:
        source = PROJECT_DIR / relative
        if (source.parent / "Pulumi.yaml").exists():
            shutil.copy(source.parent / "Pulumi.yaml", directory / "Pulumi.yaml")
        return Path(shutil.copy(source, directory / source.name))

    return copy


def accelerated_site(directory: Path) -> Path:
    """Three servers (one an arm64 Ascend NPU node and the registry), NVIDIA agents with and
    without a preinstalled driver, Docker on two nodes, NFS storage, and the airgap bundle with
    the charts and mirrors an airgapped site names."""
    bundle = directory / "bundle"
    for arch in ("amd64", "arm64"):
        (bundle / arch).mkdir(parents=True)
        (bundle / arch / "k3s").write_bytes(b"\x7fELF stand-in k3s binary")
        (bundle / arch / "install.sh").write_text("#!/bin/sh\n# stand-in install script\n")
        (bundle / "images" / arch).mkdir(parents=True)
        (bundle / "images" / arch / f"k3s-airgap-images-{arch}.tar.zst").write_bytes(b"x")
    charts = directory / "charts"
    charts.mkdir()
    hub_chart = charts / "jupyterhub-4.4.0.tgz"
    plugin_chart = charts / "nvidia-device-plugin-0.20.1.tgz"
    for chart in (hub_chart, plugin_chart):
        chart.write_bytes(b"stand-in chart archive")
    values = {
        "nodes": [
            {"name": "s1", "host": "10.0.0.1", "roles": ["server", "registry"], "iface": "eth1"},
            {
                "name": "s2",
                "host": "10.0.0.2",
                "roles": ["server"],
                "arch": "arm64",
                "gpu": {"vendor": "ascend", "type": "910B"},
            },
            {"name": "s3", "host": "10.0.0.3", "roles": ["server"]},
            {
                "name": "gpu1",
                "host": "10.0.0.4",
                "roles": ["agent"],
                "gpu": {"vendor": "nvidia", "type": "A100"},
                "installDocker": True,
            },
            {
                "name": "gpu2",
                "host": "10.0.0.5",
                "roles": ["agent"],
                "gpu": {"vendor": "nvidia", "type": "V100", "installDriver": False},
                "labels": {"org": "public"},
                "taints": ["gpu=true:NoSchedule"],
            },
            {"name": "cpu1", "host": "10.0.0.6", "roles": ["agent"], "installDocker": True},
        ],
        "os": {
            "docker": {
                "repository": "http://mirror.site/docker/",
                "keyUrl": "http://mirror.site/docker/gpg",
            },
            "ntpServers": ["10.0.0.1"],
        },
        "k3s": {"version": K3S_VERSION},
        "registry": {"bundleDir": str(bundle), "mirrors": {"docker.io": ["http://10.0.0.1:5000"]}},
        "gpu": {
            "driverVersion": "535",
            "toolkitRepository": "http://mirror.site/nvidia/",
            "toolkitKeyUrl": "http://mirror.site/nvidia/gpgkey",
            "ascendDevicePlugin": {"image": "10.0.0.1:5000/ascend-k8sdeviceplugin:v6.0.0"},
            "devicePlugin": {"chartFile": str(plugin_chart)},
        },
        "hub": {"chartFile": str(hub_chart), "adminUsers": ["alice"]},
        "storage": {"nfs": {"server": "10.0.0.9", "path": "/export/k8s"}},
    }
    return write_stack_file(directory, pinned(values), stack="accelerated")


SITES = {
    "dev": example("Pulumi.dev.yaml"),
    "seed-vagrant": example("examples/Pulumi.seed-vagrant.yaml"),
    "accelerated": accelerated_site,
}
# Each site's nodes, and the device plugins' components it has (new by design).
NODES = {
    "dev": ["local"],
    "seed-vagrant": ["master", "worker1", "worker2"],
    "accelerated": ["s1", "s2", "s3", "gpu1", "gpu2", "cpu1"],
}
NVIDIA_PLUGIN = "convecthub:infra:NvidiaDevicePlugin::nvidia-device-plugin"
ASCEND_PLUGIN = "convecthub:infra:AscendDevicePlugin::ascend-device-plugin"
NEW_COMPONENTS = {
    "dev": [],
    "seed-vagrant": [NVIDIA_PLUGIN],
    "accelerated": [ASCEND_PLUGIN, NVIDIA_PLUGIN],
}


def old_render(tree: Path, stack_file: Path) -> dict:
    result = in_tree(tree, "-m", "stacks", "render", "--json", str(stack_file))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("site", sorted(SITES))
def test_every_example_site_differs_only_in_urns_taken_over(
    site: str, old_tree: Path, tmp_path: Path, home: Path
) -> None:
    (tmp_path / "site").mkdir()
    stack_file = SITES[site](tmp_path / "site")
    old = old_render(old_tree, stack_file)
    new = evaluate(read_stack_file(stack_file), old_urns=[r["urn"] for r in old["resources"]])
    upgrade = compare_upgrade(old["resources"], new.resources, new.taken_over)
    assert not upgrade.problems, "\n".join(
        ["HEAD's render differs from the pinned commit's:", *upgrade.problems]
    )
    assert upgrade.new_components == NEW_COMPONENTS[site]
    # Each facts step is the stack's own now, no longer its BareMetalNode's.
    stack = f"pulumi:pulumi:Stack::convecthub-{site}"
    assert upgrade.moved == {f"command:remote:Command::{node}-facts": stack for node in NODES[site]}
    assert new.as_json()["outputs"] == old["outputs"]
    assert len(new.resources) == len(old["resources"]) + len(NEW_COMPONENTS[site])
    assert len(old["resources"]) > 10


# The comparison catches what the engine would replace.


def resource(urn: str, inputs: dict | None = None, **links: object) -> dict:
    return {"urn": urn, "inputs": inputs or {}, "parent": None, "dependencies": [], **links}


OLD = "urn:pulumi:s::p::t:m:Node::a"
NEW = "urn:pulumi:s::p::t:m:Node::b"
STEP = "urn:pulumi:s::p::t:m:Node$t:m:Step::a-step"
NEW_STEP = "urn:pulumi:s::p::t:m:Node$t:m:Step::b-step"


def test_a_rename_without_an_alias_is_a_new_resource_and_a_deleted_one() -> None:
    assert upgrade_problems([resource(OLD)], [resource(NEW)], {}) == [
        f"{NEW}: new (no old resource has its URN or one of its aliases)",
        f"{OLD}: left over (no new resource is it, so it is deleted)",
    ]


def test_a_rename_taken_over_under_an_alias_is_the_old_resource() -> None:
    old = [resource(OLD), resource(STEP, parent=OLD), resource("urn:x", dependencies=[STEP])]
    new = [
        resource(NEW),
        resource(NEW_STEP, parent=NEW),
        resource("urn:x", dependencies=[NEW_STEP]),
    ]
    assert upgrade_problems(old, new, {NEW: OLD, NEW_STEP: STEP}) == []


def test_what_else_differs_is_caught() -> None:
    old = [resource(OLD, {"create": "run"}), resource(STEP, parent=OLD, dependencies=[OLD])]
    new = [
        resource(NEW, {"create": "run --twice"}),
        resource(NEW_STEP, parent="urn:other", dependencies=[]),
    ]
    assert upgrade_problems(old, new, {NEW: OLD, NEW_STEP: STEP}) == [
        f"{NEW}: input create differs from {OLD}'s",
        f"{NEW_STEP}: parent urn:other was {OLD}",
        f"{NEW_STEP}: waits for [], the old one for ['{NEW}']",
    ]
    # Two taking over one old resource: the engine refuses that.
    assert upgrade_problems([resource(OLD)], [resource(OLD), resource(NEW)], {NEW: OLD}) == [
        f"{NEW}: takes over {OLD}, which {OLD} is already"
    ]


# The differences by design: a new component that only groups old resources, a step moved up.

ROOT = "urn:pulumi:s::p::pulumi:pulumi:Stack::p-s"
PLUGIN = "urn:pulumi:s::p::convecthub:infra:Plugin::plugin"
RELEASE = "urn:pulumi:s::p::t:m:Release::plugin"
MOVED_RELEASE = "urn:pulumi:s::p::convecthub:infra:Plugin$t:m:Release::plugin-release"
NODE = "urn:pulumi:s::p::convecthub:infra:Node::n"
FACTS = "urn:pulumi:s::p::convecthub:infra:Node$t:m:Step::n-facts"
ROOT_FACTS = "urn:pulumi:s::p::t:m:Step::n-facts"


def test_a_new_component_grouping_old_resources_is_reported_not_refused() -> None:
    old = [resource(ROOT), resource(RELEASE, parent=ROOT)]
    new = [
        resource(ROOT),
        resource(PLUGIN, parent=ROOT),
        resource(MOVED_RELEASE, parent=PLUGIN),
    ]
    upgrade = compare_upgrade(old, new, {MOVED_RELEASE: RELEASE})
    assert upgrade.problems == []
    assert upgrade.new_components == ["convecthub:infra:Plugin::plugin"]
    assert upgrade.moved == {}


def test_a_new_component_is_refused_unless_it_only_groups_old_resources_and_is_of_a_new_type():
    # Its child is no old resource (no alias): both are new.
    old = [resource(ROOT), resource(RELEASE, parent=ROOT)]
    new = [resource(ROOT), resource(PLUGIN, parent=ROOT), resource(MOVED_RELEASE, parent=PLUGIN)]
    upgrade = compare_upgrade(old, new, {})
    assert upgrade.new_components == []
    assert upgrade.problems == [
        f"{PLUGIN}: new (no old resource has its URN or one of its aliases)",
        f"{MOVED_RELEASE}: new (no old resource has its URN or one of its aliases)",
        f"{RELEASE}: left over (no new resource is it, so it is deleted)",
    ]
    # Of a type the old rendering had: a new one of those is a new resource.
    other = "urn:pulumi:s::p::convecthub:infra:Plugin::other"
    old = [resource(ROOT), resource(PLUGIN, parent=ROOT), resource(RELEASE, parent=ROOT)]
    new = [*old[:2], resource(other, parent=ROOT), resource(MOVED_RELEASE, parent=other)]
    upgrade = compare_upgrade(old, new, {MOVED_RELEASE: RELEASE})
    assert upgrade.new_components == []
    assert upgrade.problems == [
        f"{other}: new (no old resource has its URN or one of its aliases)",
        f"{MOVED_RELEASE}: parent {other} was {ROOT}",
    ]
    # With inputs, or of a type outside the program's components: no component of this kind.
    for urn, inputs in ((PLUGIN, {"x": 1}), ("urn:pulumi:s::p::t:m:Group::g", {})):
        new = [resource(ROOT), resource(urn, inputs, parent=ROOT)]
        new.append(resource(MOVED_RELEASE, parent=urn))
        upgrade = compare_upgrade([resource(ROOT), resource(RELEASE, parent=ROOT)], new, {})
        assert upgrade.new_components == []
        assert f"{urn}: new (no old resource has its URN or one of its aliases)" in upgrade.problems


def test_a_step_moved_up_out_of_its_component_under_an_alias_is_reported_not_refused() -> None:
    old = [resource(ROOT), resource(NODE, parent=ROOT), resource(FACTS, parent=NODE)]
    new = [resource(ROOT), resource(NODE, parent=ROOT), resource(ROOT_FACTS, parent=ROOT)]
    upgrade = compare_upgrade(old, new, {ROOT_FACTS: FACTS})
    assert upgrade.problems == []
    assert upgrade.new_components == []
    assert upgrade.moved == {"t:m:Step::n-facts": "pulumi:pulumi:Stack::p-s"}
    # Moved anywhere but up its old parent's line: refused.
    elsewhere = "urn:pulumi:s::p::convecthub:infra:Node::m"
    new = [*new[:2], resource(elsewhere, parent=ROOT), resource(ROOT_FACTS, parent=elsewhere)]
    upgrade = compare_upgrade(old, new, {ROOT_FACTS: FACTS})
    assert f"{ROOT_FACTS}: parent {elsewhere} was {NODE}" in upgrade.problems


@pytest.mark.parametrize("alias", [True, False])
def test_a_component_renamed_in_the_real_program_is_caught_without_its_alias(
    alias: bool, render, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = pinned(three_node_site())
    old = render(site)
    rename(
        monkeypatch,
        Component.GPU.type_token,
        new_type="convecthub:infra:RenamedAccelerator",
        new_name=lambda name: f"{name}-renamed",
        alias=alias,
    )
    new = evaluate(old.stack, old_urns=[r["urn"] for r in old.resources])
    problems = upgrade_problems(old.resources, new.resources, new.taken_over)
    if alias:  # the component and its two steps, each taken over
        assert problems == [] and len(new.taken_over) == 3
    else:
        assert len([p for p in problems if ": new (" in p]) == 3
        assert len([p for p in problems if ": left over (" in p]) == 3


@pytest.mark.parametrize("alias", [True, False])
def test_a_step_renamed_in_the_real_program_is_caught_without_its_alias(
    alias: bool, render, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = pinned(three_node_site())
    old = render(site)
    rename(
        monkeypatch,
        "command:remote:Command",
        name="worker1-os-prep",
        new_name=lambda name: "worker1-os",
        alias=alias,
    )
    new = evaluate(old.stack, old_urns=[r["urn"] for r in old.resources])
    problems = upgrade_problems(old.resources, new.resources, new.taken_over)
    if alias:  # what waits for it waits for it under its new URN
        assert problems == []
    else:
        assert any(
            p.endswith("::worker1-os: new (no old resource has its URN or one of its aliases)")
            for p in problems
        )
        assert any("::worker1-os-prep: left over" in p for p in problems)
