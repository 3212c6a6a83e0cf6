"""k3s-install.sh for real, against stand-ins for what cannot exist here (systemd, k3s and its
install script, all under tests/standins/ and named as stand-ins): each run happens as root in
a private mount namespace whose /etc, /usr/local/bin and /var/lib are overlays, so the script
writes where it would on a node and this host stays as it was."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from components.remote_script import script_stdin
from tests.conftest import STANDINS, needs_private_root

TOKEN = "token-that-must-not-be-printed"
CONFIG = "node-name: n1\nnode-ip: 10.0.0.1\ntoken-file: /etc/rancher/k3s/cluster-token"

pytestmark = needs_private_root


@dataclass
class Node:
    """A stand-in node: its private overlays' upper dirs, and what the stand-ins record."""

    work: Path

    @property
    def etc(self) -> Path:
        return self.work / "upper" / "_etc"

    @property
    def bin(self) -> Path:
        return self.work / "upper" / "_usr_local_bin"

    @property
    def var_lib(self) -> Path:
        return self.work / "upper" / "_var_lib"

    @property
    def calls(self) -> list[str]:
        log = self.work / "systemctl.log"
        return log.read_text().splitlines() if log.exists() else []

    def snapshot(self) -> dict[str, tuple[bytes, int]]:
        return {
            str(path.relative_to(self.work)): (path.read_bytes(), path.stat().st_mode)
            for path in sorted((self.work / "upper").rglob("*"))
            if path.is_file()
        }


@pytest.fixture
def node(tmp_path: Path) -> Node:
    stand_in = Node(tmp_path)
    (tmp_path / "state").mkdir()
    stand_in.etc.mkdir(parents=True)
    (stand_in.etc / "convecthub-standin.env").write_text(
        f"STANDIN_LOG={tmp_path}/systemctl.log\n"
        f"STANDIN_STATE={tmp_path}/state\n"
        f"STANDIN_K3S_BINARY={STANDINS}/k3s/k3s\n"
    )
    return stand_in


def online_env(**changes: str) -> dict[str, str]:
    env = {
        "CONVECTHUB_NODE_NAME": "n1",
        "CONVECTHUB_K3S_ROLE": "server",
        "CONVECTHUB_K3S_VERSION": "v1.31.4+k3s1",
        "CONVECTHUB_K3S_CONFIG": CONFIG,
        "CONVECTHUB_K3S_TOKEN": TOKEN,
        "CONVECTHUB_INSTALL_SCRIPT_URL": f"file://{STANDINS}/k3s/install.sh",
        "CONVECTHUB_READY_TIMEOUT": "30",
    }
    env.update(changes)
    return env


def run(node: Node, action: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    path = f"{STANDINS}:{os.environ['PATH']}"
    return subprocess.run(
        [str(STANDINS / "private-root.sh"), str(node.work), "/bin/bash", "-s", action],
        input=script_stdin("k3s-install.sh", env),
        capture_output=True,
        text=True,
        env={"PATH": path, "LANG": "C.UTF-8"},
        timeout=120,
        check=False,
    )


def applied(node: Node, env: dict[str, str]) -> str:
    result = run(node, "apply", env)
    assert result.returncode == 0, result.stderr
    assert TOKEN not in result.stdout + result.stderr
    return result.stderr


def test_installs_k3s_with_its_config_and_a_root_only_token(node) -> None:
    log = applied(node, online_env())
    assert "installing k3s v1.31.4+k3s1 as server" in log
    rancher = node.etc / "rancher" / "k3s"
    assert (rancher / "config.yaml").read_text() == CONFIG + "\n"
    assert (rancher / "cluster-token").read_text() == TOKEN + "\n"
    assert oct((rancher / "cluster-token").stat().st_mode & 0o777) == "0o600"
    assert oct((rancher / "config.yaml").stat().st_mode & 0o777) == "0o600"
    assert not (rancher / "registries.yaml").exists()
    assert (node.etc / "systemd" / "system" / "k3s.service").exists()
    assert (node.bin / "k3s-uninstall.sh").exists()
    assert "v1.31.4+k3s1" in (node.bin / "k3s").read_text()
    assert node.calls.count("systemctl restart --no-block k3s") == 1


def test_a_second_run_changes_nothing_and_restarts_nothing(node) -> None:
    applied(node, online_env())
    before, calls = node.snapshot(), len(node.calls)
    log = applied(node, online_env())
    assert node.snapshot() == before
    assert not any("restart" in call for call in node.calls[calls:])
    assert "installing" not in log and "wrote" not in log


def test_a_changed_config_restarts_without_reinstalling(node) -> None:
    applied(node, online_env())
    log = applied(node, online_env(CONVECTHUB_K3S_CONFIG=CONFIG + "\nkubelet-arg: [a=b]"))
    assert "installing" not in log
    assert "wrote /etc/rancher/k3s/config.yaml" in log
    assert node.calls.count("systemctl restart --no-block k3s") == 2


def test_a_new_version_reinstalls(node) -> None:
    applied(node, online_env())
    log = applied(node, online_env(CONVECTHUB_K3S_VERSION="v1.32.1+k3s1"))
    assert "installing k3s v1.32.1+k3s1 as server" in log
    assert "v1.32.1+k3s1" in (node.bin / "k3s").read_text()


def test_proxy_settings_reach_the_service_environment(node) -> None:
    applied(
        node,
        online_env(
            CONVECTHUB_HTTPS_PROXY="http://proxy:3128", CONVECTHUB_NO_PROXY="localhost,10.0.0.0/8"
        ),
    )
    env_file = node.etc / "systemd" / "system" / "k3s.service.env"
    assert env_file.read_text() == "HTTPS_PROXY=http://proxy:3128\nNO_PROXY=localhost,10.0.0.0/8\n"


def airgap_env(node: Node, images: bool) -> dict[str, str]:
    """An agent installed from a bundle staged as CopyToRemote leaves it."""
    root = node.work / "home" / ".convecthub-bundle"
    (root / "amd64").mkdir(parents=True)
    binary = (STANDINS / "k3s" / "k3s").read_text().replace("@VERSION@", "v1.31.4+k3s1")
    (root / "amd64" / "k3s").write_text(binary)  # CopyToRemote does not keep the mode
    shutil.copy(STANDINS / "k3s" / "install.sh", root / "amd64" / "install.sh")
    env = online_env(CONVECTHUB_K3S_ROLE="agent")
    del env["CONVECTHUB_INSTALL_SCRIPT_URL"]
    env.update(CONVECTHUB_BUNDLE_ROOT=str(root), CONVECTHUB_BUNDLE_DIR=str(root / "amd64"))
    if images:
        (root / "images" / "amd64").mkdir(parents=True)
        (root / "images" / "amd64" / "k3s-airgap-images-amd64.tar.zst").write_bytes(b"images")
        env["CONVECTHUB_IMAGES_DIR"] = str(root / "images" / "amd64")
    return env


def test_airgap_installs_from_the_bundle_and_stages_the_images(node) -> None:
    env = airgap_env(node, images=True)
    applied(node, env)
    assert os.access(node.bin / "k3s", os.X_OK)
    images = node.var_lib / "rancher" / "k3s" / "agent" / "images"
    assert (images / "k3s-airgap-images-amd64.tar.zst").read_bytes() == b"images"
    assert (node.etc / "systemd" / "system" / "k3s-agent.service").exists()
    assert node.calls.count("systemctl restart --no-block k3s-agent") == 1
    before = node.snapshot()
    applied(node, env)
    assert node.snapshot() == before


def test_airgap_never_downloads(node, tmp_path) -> None:
    """With a bundle, the online path (curl to the install script URL) is never taken."""
    env = airgap_env(node, images=False)
    env["CONVECTHUB_INSTALL_SCRIPT_URL"] = "file:///nonexistent/install.sh"
    applied(node, env)
    assert (node.bin / "k3s").exists()


def test_remove_runs_the_uninstall_script_and_deletes_the_bundle(node) -> None:
    env = airgap_env(node, images=True)
    applied(node, env)
    result = run(node, "remove", env)
    assert result.returncode == 0, result.stderr
    assert "running k3s-agent-uninstall.sh" in result.stderr
    assert not (node.bin / "k3s").exists()
    assert not (node.etc / "systemd" / "system" / "k3s-agent.service").exists()
    assert not (node.work / "home" / ".convecthub-bundle").exists()
    again = run(node, "remove", env)
    assert again.returncode == 0, again.stderr


def test_a_role_switch_is_refused_with_one_line(node) -> None:
    applied(node, online_env())
    result = run(node, "apply", online_env(CONVECTHUB_K3S_ROLE="agent"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "convecthub: node n1: runs k3s as k3s but is now configured as a agent: remove the node "
        "from convecthub:nodes, run pulumi up, then add it back with its new role"
    )
