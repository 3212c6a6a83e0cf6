"""k3s-install.sh moves a node one Kubernetes minor at a time, never back, and says so in one
line before it changes anything; run for real as in tests/test_k3s_install_script.py."""

from __future__ import annotations

from model.defaults import K3S_VERSION, upgrade_refusal
from tests.conftest import needs_private_root
from tests.test_k3s_install_script import applied, node, online_env, run

pytestmark = needs_private_root
__all__ = ["node"]  # the fixture, shared with the install script's tests

OLD_DEFAULT = "v1.31.4+k3s1"  # what a site that relied on the default ran before


def test_a_jump_of_several_minors_is_refused_before_anything_changes(node) -> None:
    applied(node, online_env(CONVECTHUB_K3S_VERSION=OLD_DEFAULT))
    before = node.snapshot()
    calls = list(node.calls)
    result = run(node, "apply", online_env(CONVECTHUB_K3S_VERSION=K3S_VERSION))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"convecthub: node n1: {upgrade_refusal(OLD_DEFAULT, K3S_VERSION)}"
    ]
    assert node.snapshot() == before
    assert node.calls == calls
    assert OLD_DEFAULT in (node.bin / "k3s").read_text()


def test_going_back_a_minor_is_refused(node) -> None:
    applied(node, online_env(CONVECTHUB_K3S_VERSION="v1.33.6+k3s1"))
    result = run(node, "apply", online_env(CONVECTHUB_K3S_VERSION="v1.32.9+k3s1"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"convecthub: node n1: {upgrade_refusal('v1.33.6+k3s1', 'v1.32.9+k3s1')}"
    ]


def test_each_minor_in_turn_gets_there(node) -> None:
    applied(node, online_env(CONVECTHUB_K3S_VERSION="v1.35.6+k3s1"))
    applied(node, online_env(CONVECTHUB_K3S_VERSION="v1.36.4+k3s1"))
    log = applied(node, online_env(CONVECTHUB_K3S_VERSION=K3S_VERSION))
    assert f"installing k3s {K3S_VERSION} as server" in log
    assert K3S_VERSION in (node.bin / "k3s").read_text()


def test_a_k3s_already_at_the_version_is_not_installed_again(node) -> None:
    """A node that already runs the requested release (put there by hand, or by the Ansible
    installer) keeps its binary: only the settings are written."""
    applied(node, online_env(CONVECTHUB_K3S_VERSION=K3S_VERSION))
    binary = (node.bin / "k3s").read_bytes()
    log = applied(node, online_env(CONVECTHUB_K3S_VERSION=K3S_VERSION))
    assert "installing" not in log
    assert (node.bin / "k3s").read_bytes() == binary
