"""docker-engine.sh for real, against stand-ins for what cannot exist here (tests/standins/:
apt-get, docker, systemctl), each named as a stand-in: Docker installed from the repository
once; an engine already there configured, never replaced; the node's own daemon.json kept aside
and restored; restarts only on change; the proxy drop-in; and the one-line errors."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import needs_private_root
from tests.standin_node import StandinNode

pytestmark = needs_private_root

DAEMON_JSON = "/etc/docker/daemon.json"
SOURCE_FILE = "/etc/apt/sources.list.d/convecthub-docker.list"
KEYRING = "/usr/share/keyrings/convecthub-docker.gpg"
DROPIN = "/etc/systemd/system/docker.service.d/convecthub-proxy.conf"
MIRRORED = {"registry-mirrors": ["http://10.0.0.5:5000"], "insecure-registries": ["10.0.0.5:5000"]}


@pytest.fixture
def key(tmp_path) -> Path:
    """An ASCII-armoured block, as the repository's key URL serves one."""
    data = tmp_path / "key.bin"
    data.write_bytes(b"stand-in key material")
    armoured = tmp_path / "gpg"
    subprocess.run(
        ["gpg", "--batch", "--yes", "--enarmor", "-o", str(armoured), str(data)], check=True
    )
    return armoured


def docker(node: StandinNode, action: str, key: Path, daemon: dict, **env: str):
    return node.run(
        "docker-engine.sh",
        action,
        CONVECTHUB_NODE_NAME="worker1",
        CONVECTHUB_DOCKER_REPO="http://mirror.example/docker",
        CONVECTHUB_DOCKER_KEY_URL=f"file://{key}",
        CONVECTHUB_DOCKER_DAEMON_JSON=json.dumps(daemon, indent=2),
        **env,
    )


def systemctl_calls(node: StandinNode) -> list[str]:
    log = node.state / "systemctl.log"
    return log.read_text().splitlines() if log.exists() else []


def last_line(result: subprocess.CompletedProcess) -> str:
    return result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_docker_is_installed_from_the_repository_once(tmp_path, key, arch) -> None:
    node = StandinNode(tmp_path / "node", arch=arch)
    result = docker(node, "apply", key, MIRRORED)
    assert result.returncode == 0, result.stderr
    assert node.upper(SOURCE_FILE).read_text() == (
        f"deb [arch={arch} signed-by={KEYRING}] http://mirror.example/docker jammy stable\n"
    )
    assert node.upper(KEYRING).stat().st_size > 0  # dearmored, in the private root
    assert not Path(KEYRING).exists()
    assert (
        "apt-get -q -o DPkg::Lock::Timeout=300 -y install docker-ce docker-ce-cli containerd.io"
        in node.calls
    )
    assert json.loads(node.upper(DAEMON_JSON).read_text()) == MIRRORED
    assert "systemctl enable --quiet docker.service" in systemctl_calls(node)
    assert "systemctl restart docker.service" in systemctl_calls(node)
    assert "docker info" in node.calls

    calls, units = node.calls, systemctl_calls(node)
    again = docker(node, "apply", key, MIRRORED)
    assert again.returncode == 0, again.stderr
    assert "apt-get" not in node.calls[len(calls) :]  # installed: no repository, no apt
    assert not [c for c in systemctl_calls(node)[len(units) :] if "restart" in c]


def test_a_changed_daemon_json_restarts_docker_once(tmp_path, key) -> None:
    node = StandinNode(tmp_path / "node")
    assert docker(node, "apply", key, {}).returncode == 0
    units = len(systemctl_calls(node))
    changed = docker(node, "apply", key, {"log-driver": "json-file"})
    assert changed.returncode == 0, changed.stderr
    assert json.loads(node.upper(DAEMON_JSON).read_text()) == {"log-driver": "json-file"}
    assert systemctl_calls(node)[units:].count("systemctl restart docker.service") == 1


def test_an_engine_already_there_is_configured_and_its_own_settings_come_back(
    tmp_path, key
) -> None:
    node = StandinNode(tmp_path / "node")
    dockerd = node.upper("/usr/local/bin/dockerd")
    dockerd.parent.mkdir(parents=True)
    dockerd.write_text("#!/bin/sh\n# the site's own engine\n")
    dockerd.chmod(0o755)
    own = node.upper(DAEMON_JSON)
    own.parent.mkdir(parents=True)
    own.write_text('{"log-driver": "journald"}\n')

    result = docker(node, "apply", key, MIRRORED)
    assert result.returncode == 0, result.stderr
    assert "apt-get" not in node.calls
    assert not node.upper(SOURCE_FILE).exists()
    assert "configuring it, not replacing it" in result.stderr
    assert json.loads(own.read_text()) == MIRRORED
    assert node.upper(f"{DAEMON_JSON}.convecthub-orig").read_text() == (
        '{"log-driver": "journald"}\n'
    )
    # A second apply must not take the program's own daemon.json for the node's.
    assert docker(node, "apply", key, {"log-level": "warn"}).returncode == 0
    assert "journald" in node.upper(f"{DAEMON_JSON}.convecthub-orig").read_text()

    removed = docker(node, "remove", key, MIRRORED)
    assert removed.returncode == 0, removed.stderr
    assert own.read_text() == '{"log-driver": "journald"}\n'
    assert not node.upper(f"{DAEMON_JSON}.convecthub-orig").exists()
    assert dockerd.exists()  # the engine stays


def test_remove_takes_back_what_apply_wrote(tmp_path, key) -> None:
    node = StandinNode(tmp_path / "node")
    proxy = {"CONVECTHUB_HTTP_PROXY": "http://proxy:3128", "CONVECTHUB_NO_PROXY": "localhost"}
    assert docker(node, "apply", key, MIRRORED, **proxy).returncode == 0
    removed = docker(node, "remove", key, MIRRORED)
    assert removed.returncode == 0, removed.stderr
    for path in (DAEMON_JSON, SOURCE_FILE, KEYRING, DROPIN):
        assert not node.upper(path).exists(), path
    assert systemctl_calls(node)[-1] == "systemctl restart docker.service"
    again = docker(node, "remove", key, MIRRORED)
    assert again.returncode == 0, again.stderr


def test_the_proxy_reaches_dockerd_through_a_drop_in(tmp_path, key) -> None:
    node = StandinNode(tmp_path / "node")
    proxy = {
        "CONVECTHUB_HTTP_PROXY": "http://proxy:3128",
        "CONVECTHUB_HTTPS_PROXY": "http://proxy:3129",
        "CONVECTHUB_NO_PROXY": "localhost,10.0.0.0/8",
    }
    assert docker(node, "apply", key, {}, **proxy).returncode == 0
    assert node.upper(DROPIN).read_text() == (
        "[Service]\n"
        'Environment="HTTP_PROXY=http://proxy:3128"\n'
        'Environment="HTTPS_PROXY=http://proxy:3129"\n'
        'Environment="NO_PROXY=localhost,10.0.0.0/8"\n'
    )
    assert "systemctl daemon-reload" in systemctl_calls(node)
    units = len(systemctl_calls(node))
    dropped = docker(node, "apply", key, {})
    assert dropped.returncode == 0, dropped.stderr
    assert not node.upper(DROPIN).exists()
    assert "systemctl restart docker.service" in systemctl_calls(node)[units:]


def test_docker_that_does_not_answer_fails_in_one_line(tmp_path, key) -> None:
    node = StandinNode(tmp_path / "node")
    nvidia_default = {"default-runtime": "nvidia", "runtimes": {"nvidia": {"path": "x"}}}
    result = node.run(
        "docker-engine.sh",
        "apply",
        CONVECTHUB_NODE_NAME="worker1",
        CONVECTHUB_DOCKER_REPO="http://mirror.example/docker",
        CONVECTHUB_DOCKER_KEY_URL=f"file://{key}",
        CONVECTHUB_DOCKER_DAEMON_JSON=json.dumps(nvidia_default),
        CONVECTHUB_DOCKER_START_TIMEOUT="4",
    )
    # The stand-in dockerd, like the real one, cannot start on a runtime that is not there.
    assert result.returncode == 1
    assert last_line(result) == (
        "convecthub: node worker1: docker does not answer 4 s after starting: see "
        "journalctl -u docker on it"
    )


def test_an_os_release_without_a_codename_fails_in_one_line(tmp_path, key) -> None:
    node = StandinNode(tmp_path / "node", codename="")
    result = docker(node, "apply", key, {})
    assert result.returncode == 1
    assert last_line(result) == (
        "convecthub: node worker1: its os-release names no VERSION_CODENAME, which Docker's "
        "repository is organised by: install Docker by hand and set installDocker: false for "
        "it in convecthub:nodes"
    )
    assert "apt-get" not in node.calls


def test_an_unreachable_key_fails_in_one_line_naming_the_setting(tmp_path) -> None:
    node = StandinNode(tmp_path / "node")
    result = docker(node, "apply", tmp_path / "no-such-key", {})
    assert result.returncode == 1
    assert last_line(result) == (
        f"convecthub: node worker1: cannot download the signing key file://{tmp_path}/"
        "no-such-key: set convecthub:os docker.keyUrl to the site's mirror of it"
    )
