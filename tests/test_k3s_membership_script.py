"""k3s-membership.sh for real, against a stand-in for `k3s kubectl` (tests/standins/k3s/,
named as one) that keeps Node objects as JSON files: labels and taints converge to the config
and give back only what the script set, and removal drains and deletes the node."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from components.remote_script import script_stdin

STANDINS = Path(__file__).with_name("standins")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the script runs as root")


@pytest.fixture
def cluster(tmp_path: Path) -> Path:
    """One Node, `agent1`, Ready, with a label someone else set."""
    node = {
        "name": "agent1",
        "ready": True,
        "labels": {"kubernetes.io/hostname": "agent1"},
        "annotations": {},
        "taints": [],
    }
    (tmp_path / "agent1.json").write_text(json.dumps(node))
    return tmp_path


def node(cluster: Path) -> dict:
    return json.loads((cluster / "agent1.json").read_text())


def run(cluster: Path, action: str, labels: str = "", taints: str = "", **extra: str):
    env = {
        "CONVECTHUB_NODE_NAME": "agent1",
        "CONVECTHUB_LABELS": labels,
        "CONVECTHUB_TAINTS": taints,
        "CONVECTHUB_READY_TIMEOUT": "4",
        "CONVECTHUB_DRAIN_TIMEOUT": "30",
        **extra,
    }
    return subprocess.run(
        ["/bin/bash", "-s", action],
        input=script_stdin("k3s-membership.sh", env),
        capture_output=True,
        text=True,
        env={"PATH": f"{STANDINS / 'k3s'}:{os.environ['PATH']}", "STANDIN_KUBE_DIR": str(cluster)},
        timeout=60,
        check=False,
    )


def test_labels_and_taints_are_applied_and_recorded(cluster) -> None:
    result = run(cluster, "apply", "org=public\ntrain=true", "gpu=true:NoSchedule")
    assert result.returncode == 0, result.stderr
    state = node(cluster)
    assert state["labels"] == {
        "kubernetes.io/hostname": "agent1",
        "org": "public",
        "train": "true",
    }
    assert state["taints"] == [{"key": "gpu", "value": "true", "effect": "NoSchedule"}]
    assert state["annotations"] == {
        "convecthub.io/managed-labels": "org,train",
        "convecthub.io/managed-taints": "gpu:NoSchedule",
    }


def test_what_the_config_drops_is_taken_back_and_nothing_else(cluster) -> None:
    run(cluster, "apply", "org=public\ntrain=true", "gpu=true:NoSchedule")
    result = run(cluster, "apply", "org=research", "")
    assert result.returncode == 0, result.stderr
    state = node(cluster)
    assert state["labels"] == {"kubernetes.io/hostname": "agent1", "org": "research"}
    assert state["taints"] == []
    assert "removed label train from agent1" in result.stderr
    assert "removed taint gpu:NoSchedule from agent1" in result.stderr


def test_applying_twice_gives_the_same_node(cluster) -> None:
    run(cluster, "apply", "org=public", "dedicated:NoExecute")
    first = node(cluster)
    run(cluster, "apply", "org=public", "dedicated:NoExecute")
    assert node(cluster) == first


def test_a_node_that_never_gets_ready_fails_in_one_line(cluster) -> None:
    state = node(cluster)
    state["ready"] = False
    (cluster / "agent1.json").write_text(json.dumps(state))
    result = run(cluster, "apply", "org=public")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "convecthub: node agent1: node agent1 did not become Ready within 4 s: on agent1, see "
        "journalctl -u k3s-agent (or -u k3s on a server)"
    )


def test_remove_drains_and_deletes_the_node_and_is_idempotent(cluster) -> None:
    result = run(cluster, "remove")
    assert result.returncode == 0, result.stderr
    assert not (cluster / "agent1.json").exists()
    calls = (cluster / "calls.log").read_text().splitlines()
    drain = next(i for i, c in enumerate(calls) if c.startswith("drain agent1"))
    delete = next(i for i, c in enumerate(calls) if c.startswith("delete node agent1"))
    assert drain < delete
    assert "--ignore-daemonsets" in calls[drain] and "--timeout=30s" in calls[drain]
    again = run(cluster, "remove")
    assert again.returncode == 0, again.stderr
    assert "is not in the cluster" in again.stderr
