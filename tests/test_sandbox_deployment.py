"""The sandbox's stand-in engine (tests/sandbox/deployment.py) without a fleet: its state by
URN, its preview, and aliases taken over as the engine takes them over. SSH is stood in for by
`FakeNodes`, which answers each step as a node would (facts as node-facts.sh prints them) and
notes what ran; the e2e tests run the same engine on booted machines.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from components.steps import Component
from model.defaults import DEVICE_PLUGIN_CHART_VERSION, HUB_CHART_VERSION, K3S_VERSION
from stacks.render import evaluate
from stacks.stackfile import StackFile, read_stack_file
from tests.conftest import pinned, three_node_site, write_stack_file
from tests.program_upgrade import rename
from tests.sandbox import deployment as sandbox
from tests.sandbox.deployment import Deployment

COMMAND = "command:remote:Command"
RENAMED_GPU = "convecthub:infra:RenamedAccelerator"


class FakeNodes:
    """Answers ssh_run and ssh_copy as the nodes would, and notes each (label, command)."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    def run(self, connection: dict, command: str, stdin: str | None, label: str):
        name = label.split(" (", 1)[1].rstrip(")")
        self.ran.append(name)
        if name.endswith("-facts"):
            return json.dumps(self.facts(connection["host"])), ""
        if name == "hub-certificate":
            return json.dumps({"certificate": "CERTIFICATE", "key": "KEY"}), ""
        return f"{name} done", ""

    def copy(self, connection: dict, source: str, remote_path: str, label: str) -> None:
        self.ran.append(label.split(" (", 1)[1].rstrip(")"))

    @staticmethod
    def facts(address: str) -> dict:
        return {
            "hostname": "image",
            "os": "Ubuntu 24.04",
            "kernel": "6.8.0",
            "arch": "amd64",
            "cpus": 8,
            "memoryMb": 32000,
            "diskFreeGb": 200,
            "iface": "eth0",
            "address": address,
            "user": "convect",
            "home": "/home/convect",
            "passwordlessSudo": True,
            "gpus": [],
            "k3sVersion": None,
            "nvidiaDriver": None,
        }


@pytest.fixture
def nodes(monkeypatch: pytest.MonkeyPatch) -> FakeNodes:
    fake = FakeNodes()
    monkeypatch.setattr(sandbox, "ssh_run", fake.run)
    monkeypatch.setattr(sandbox, "ssh_copy", fake.copy)
    return fake


@pytest.fixture
def site(key_file: Path) -> dict:
    values = pinned(three_node_site())
    values["ssh"] = {"privateKeyFile": str(key_file)}
    values["os"] = {"ntpServers": ["10.0.0.1"]}
    # The default versions pinned, as a site pins them.
    values["k3s"] = {"version": K3S_VERSION}
    values["hub"] = {"chartVersion": HUB_CHART_VERSION}
    values["gpu"] = {"devicePlugin": {"chartVersion": DEVICE_PLUGIN_CHART_VERSION}}
    return values


@pytest.fixture
def stack(tmp_path: Path):
    def write(values: dict) -> StackFile:
        return read_stack_file(write_stack_file(tmp_path, values))

    return write


def names(commands: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return sorted((action, key.split("::", 1)[1]) for action, key in commands)


def name_of(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


def test_the_state_is_kept_by_urn(nodes, site, stack) -> None:
    deployment = Deployment()
    deployment.up(stack(site))
    rendered = evaluate(stack(site)).resources
    assert set(deployment.resources) == {
        r["urn"] for r in rendered if r["type"] != "pulumi:pulumi:Stack"
    }
    for urn, resource in deployment.resources.items():
        assert resource.urn == urn
        assert resource.key == f"{urn.split('::')[2].rsplit('$', 1)[-1]}::{name_of(urn)}"
        assert all(dependency in deployment.resources for dependency in resource.dependencies)
    # By `type::name` too, as the e2e tests look a step up.
    runtime = deployment.state[f"{COMMAND}::worker2-gpu-runtime"]
    assert runtime.outputs["stdout"] == "worker2-gpu-runtime done"
    install = deployment.state[f"{COMMAND}::worker2-k3s-install"]
    assert runtime.urn in install.dependencies


def test_a_preview_says_what_up_would_do_and_runs_nothing(nodes, site, stack) -> None:
    deployment = Deployment()
    deployment.up(stack(site))
    assert set(deployment.preview(stack(site)).values()) == {"same"}
    deployment.commands.clear()
    deployment.up(stack(site))
    assert deployment.commands == []

    site["os"]["ntpServers"] = ["10.0.0.1", "ntp.example"]
    before = copy.deepcopy(deployment.resources)
    ran = len(nodes.ran)
    operations = deployment.preview(stack(site))
    assert deployment.commands == [] and len(nodes.ran) == ran
    assert deployment.resources == before
    changed = sorted(name_of(urn) for urn, op in operations.items() if op != "same")
    assert changed == ["master-os-prep", "worker1-os-prep", "worker2-os-prep"]
    assert {operations[urn] for urn in operations if name_of(urn) in changed} == {"update"}
    deployment.up(stack(site))
    assert names(deployment.commands) == [("update", name) for name in changed]

    # A node gone: its resources would be deleted, and the others' hosts blocks change.
    removed = copy.deepcopy(site)
    del removed["nodes"][1]
    operations = deployment.preview(stack(removed))
    deleted = {name_of(urn) for urn, op in operations.items() if op == "delete"}
    assert deleted == {name_of(urn) for urn in deployment.resources if "::worker1" in urn}
    assert deployment.resources.keys() == before.keys()


def test_a_renamed_component_with_an_alias_is_taken_over(
    nodes, site, stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployment = Deployment()
    deployment.up(stack(site))
    old_urns = list(deployment.resources)
    rename(
        monkeypatch,
        Component.GPU.type_token,
        new_type=RENAMED_GPU,
        new_name=lambda name: f"{name}-renamed",
        alias=True,
    )
    operations = deployment.preview(stack(site))
    assert set(operations.values()) == {"same"}
    assert len(operations) == len(old_urns)
    moved = [urn for urn in operations if RENAMED_GPU in urn]
    assert sorted(map(name_of, moved)) == [
        "worker2-gpu-driver",
        "worker2-gpu-renamed",
        "worker2-gpu-runtime",
    ]

    deployment.commands.clear()
    deployment.up(stack(site))
    assert deployment.commands == []
    # The state keeps them under their new URNs, and what waits for them waits for those.
    assert set(deployment.resources) == set(operations)
    assert not [urn for urn in deployment.resources if Component.GPU.type_token in urn]
    install = deployment.state[f"{COMMAND}::worker2-k3s-install"]
    runtime = deployment.state[f"{COMMAND}::worker2-gpu-runtime"]
    assert runtime.urn in moved and runtime.urn in install.dependencies
    deployment.up(stack(site))
    assert deployment.commands == []


def test_without_an_alias_a_renamed_component_is_replaced(
    nodes, site, stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployment = Deployment()
    deployment.up(stack(site))
    rename(
        monkeypatch,
        Component.GPU.type_token,
        new_type=RENAMED_GPU,
        new_name=lambda name: f"{name}-renamed",
        alias=False,
    )
    operations = deployment.preview(stack(site))
    by_op = {
        op: sorted(name_of(urn) for urn in operations if operations[urn] == op)
        for op in ("create", "delete")
    }
    assert by_op == {
        "create": ["worker2-gpu-driver", "worker2-gpu-renamed", "worker2-gpu-runtime"],
        "delete": ["worker2-gpu", "worker2-gpu-driver", "worker2-gpu-runtime"],
    }
    deployment.commands.clear()
    deployment.up(stack(site))
    assert ("create", "worker2-gpu-driver") in names(deployment.commands)
    assert ("delete", "worker2-gpu-runtime") in names(deployment.commands)


def test_a_state_saved_by_the_pinned_commit_loads(nodes, site, stack, tmp_path: Path) -> None:
    deployment = Deployment()
    deployment.up(stack(site))
    path = tmp_path / "state.json"
    deployment.save(path)
    assert Deployment.load(path).resources == deployment.resources
    # The pinned commit kept what a resource waits for by `type::name`.
    document = json.loads(path.read_text())
    key_of = {entry["urn"]: entry["key"] for entry in document["resources"]}
    for entry in document["resources"]:
        entry["dependencies"] = [key_of[urn] for urn in entry["dependencies"]]
    path.write_text(json.dumps(document))
    loaded = Deployment.load(path)
    assert loaded.resources == deployment.resources
    loaded.up(stack(site))
    assert loaded.commands == []
