"""os-prep.sh sets and restores a node's hostname even when systemd-hostnamed does not answer:
hostnamed starts on demand over D-Bus, and that start timed out on a sandbox node once, which
failed a destroy. Runs the real script in a private root (tests/standins/private-root.sh) with
stand-ins for hostnamectl and hostname (tests/standins/hostname/), never the host's own."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import STANDINS, needs_private_root
from tests.standin_node import StandinNode

pytestmark = needs_private_root

NODE = "node1"


class Node(StandinNode):
    """A stand-in node whose systemd runs (or not) and whose hostname is the stand-ins'."""

    node_name = NODE

    def __init__(self, work: Path, systemd: bool = True):
        super().__init__(work)
        self.systemd = systemd

    def os_prep(self, action: str):
        env = {"CONVECTHUB_HOSTS": f"{NODE}=10.0.0.1"}
        return self.run_with(
            "os-prep.sh",
            action,
            env,
            standins=[STANDINS / "os", STANDINS / "hostname"],
            host_env={"PRIVATE_ROOT_SYSTEMD": "1"} if self.systemd else {},
        )

    def unanswered(self, calls: int) -> None:
        (self.state / "hostnamectl.unanswered").write_text(f"{calls}\n")

    @property
    def hostname(self) -> str:
        path = self.state / "hostname"
        return path.read_text().strip() if path.exists() else "standin-host"

    @property
    def static_hostname(self) -> str | None:
        path = self.upper("/etc/hostname")
        return path.read_text().strip() if path.exists() else None

    def calls_to(self, tool: str) -> list[str]:
        return [line for line in self.calls.splitlines() if line.split()[0] == tool]


def ok(result) -> str:
    assert result.returncode == 0, result.stderr
    return result.stderr


def test_hostnamed_answering_late_is_asked_again(tmp_path: Path) -> None:
    node = Node(tmp_path / "node")
    node.unanswered(2)
    said = ok(node.os_prep("apply"))
    assert node.calls_to("hostnamectl") == [f"hostnamectl set-hostname {NODE}"] * 3
    assert node.calls_to("hostname") == []
    assert (node.hostname, node.static_hostname) == (NODE, NODE)
    assert f"hostname is now {NODE}" in said


@pytest.mark.parametrize("action", ["apply", "remove"])
def test_hostnamed_never_answering_sets_the_hostname_directly(tmp_path: Path, action) -> None:
    node = Node(tmp_path / "node")
    if action == "remove":
        ok(node.os_prep("apply"))
    node.unanswered(3)
    said = ok(node.os_prep(action))
    wanted = NODE if action == "apply" else "standin-host"
    assert node.calls_to("hostname") == [f"hostname {wanted}"]
    assert (node.hostname, node.static_hostname) == (wanted, wanted)
    assert "hostnamectl did not answer" in said
    assert f"hostname is now {wanted}" in said


def test_the_original_hostname_comes_back_on_remove(tmp_path: Path) -> None:
    node = Node(tmp_path / "node")
    ok(node.os_prep("apply"))
    ok(node.os_prep("remove"))
    assert (node.hostname, node.static_hostname) == ("standin-host", "standin-host")
    assert node.calls_to("hostname") == []


def test_without_systemd_the_hostname_is_set_directly(tmp_path: Path) -> None:
    node = Node(tmp_path / "node", systemd=False)
    ok(node.os_prep("apply"))
    assert node.calls_to("hostnamectl") == []
    assert node.calls_to("hostname") == [f"hostname {NODE}"]
    assert (node.hostname, node.static_hostname) == (NODE, NODE)


def test_a_second_apply_changes_nothing(tmp_path: Path) -> None:
    node = Node(tmp_path / "node")
    ok(node.os_prep("apply"))
    ok(node.os_prep("apply"))
    assert node.calls_to("hostnamectl") == [f"hostnamectl set-hostname {NODE}"]
