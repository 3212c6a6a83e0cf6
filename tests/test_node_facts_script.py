"""node-facts.sh, run for real on this machine (it only reads), with a stand-in lspci."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from components.node_facts import FACT_FIELDS
from components.remote_script import SCRIPTS_DIR, script_stdin

STANDINS = Path(__file__).with_name("standins")
FACTS = SCRIPTS_DIR / "node-facts.sh"


def run_facts(
    env: dict[str, str] | None = None, path_prefix: Path | None = None, user: str | None = None
) -> subprocess.CompletedProcess:
    full_env = {
        **os.environ,
        "CONVECTHUB_NODE_NAME": "n1",
        "CONVECTHUB_MIN_DISK_GB": "0",
        "CONVECTHUB_MIN_MEMORY_MB": "0",
        "CONVECTHUB_MIN_CPUS": "1",
        **(env or {}),
    }
    if path_prefix is not None:
        full_env["PATH"] = f"{path_prefix}:{full_env['PATH']}"
    command = ["/bin/bash", str(FACTS)]
    if user is not None:
        command = ["runuser", "-u", user, "--", *command]
    return subprocess.run(command, env=full_env, capture_output=True, text=True, timeout=60)


def os_release(tmp_path: Path, os_id: str, version: str) -> str:
    path = tmp_path / "os-release"
    path.write_text(f'ID={os_id}\nVERSION_ID="{version}"\nVERSION_CODENAME=test\n')
    return str(path)


def test_prints_every_fact_field_as_json() -> None:
    result = run_facts()
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    assert tuple(facts) == FACT_FIELDS
    assert facts["arch"] in ("amd64", "arm64")
    assert facts["cpus"] == os.cpu_count()
    assert facts["passwordlessSudo"] is True  # tests run as root
    assert facts["address"] and facts["iface"]


def test_runs_the_same_from_stdin_behind_its_preamble() -> None:
    """How Pulumi runs it: `/bin/bash -s` with the exports and the script on stdin."""
    stdin = script_stdin(
        "node-facts.sh",
        {
            "CONVECTHUB_NODE_NAME": "n1",
            "CONVECTHUB_MIN_DISK_GB": "0",
            "CONVECTHUB_MIN_MEMORY_MB": "0",
            "CONVECTHUB_MIN_CPUS": "1",
        },
    )
    result = subprocess.run(
        ["/bin/bash", "-s"],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert tuple(json.loads(result.stdout)) == FACT_FIELDS


def test_reports_accelerators_from_lspci() -> None:
    devices = "\n".join(
        [
            "0000:00:02.0 0300: 8086:3e92 (rev 02)",
            "0000:01:00.0 0302: 10de:20b0 (rev a1)",
            "0000:02:00.0 1200: 19e5:d801 (rev 20)",
            "0000:03:00.0 0200: 8086:1533 (rev 03)",
        ]
    )
    result = run_facts({"STANDIN_LSPCI_DEVICES": devices}, path_prefix=STANDINS)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["gpus"] == [
        {"slot": "0000:00:02.0", "class": "0300", "vendor": "intel", "device": "8086:3e92"},
        {"slot": "0000:01:00.0", "class": "0302", "vendor": "nvidia", "device": "10de:20b0"},
        {"slot": "0000:02:00.0", "class": "1200", "vendor": "huawei", "device": "19e5:d801"},
    ]


def test_refuses_a_machine_of_the_wrong_arch() -> None:
    machine = json.loads(run_facts().stdout)["arch"]
    other = "arm64" if machine == "amd64" else "amd64"
    result = run_facts({"CONVECTHUB_EXPECT_ARCH": other})
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"convecthub: node n1: is {machine}, but its stack config says arch: {other}: "
        f"set arch: {machine} for it in convecthub:nodes\n"
    )


def test_refuses_a_machine_below_the_minimum() -> None:
    result = run_facts({"CONVECTHUB_MIN_CPUS": "4096"})
    assert result.returncode == 1
    assert result.stderr.startswith("convecthub: node n1: has ")
    assert "it needs at least 4096 CPUs" in result.stderr
    assert result.stderr.endswith("give it more, or leave it out of convecthub:nodes\n")


def test_refuses_a_missing_interface() -> None:
    result = run_facts({"CONVECTHUB_IFACE": "nosuch0"})
    assert result.returncode == 1
    assert result.stderr.startswith(
        "convecthub: node n1: has no IPv4 address on interface nosuch0 (it has: "
    )
    assert result.stderr.endswith("): fix iface for it in convecthub:nodes\n")


@pytest.mark.parametrize(
    ("os_id", "version", "supported"),
    [
        ("ubuntu", "22.04", True),
        ("ubuntu", "20.04", True),
        ("ubuntu", "18.04", False),
        ("debian", "12", True),
        ("debian", "10", False),
        ("centos", "7", False),
    ],
)
def test_checks_the_operating_system(tmp_path, os_id, version, supported) -> None:
    result = run_facts({"CONVECTHUB_OS_RELEASE": os_release(tmp_path, os_id, version)})
    if supported:
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["os"] == {"id": os_id, "version": version}
    else:
        assert result.returncode == 1
        assert result.stderr == (
            f"convecthub: node n1: runs {os_id} {version}, which is not supported: install "
            "Ubuntu 20.04 or newer (or Debian 11 or newer)\n"
        )


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("runuser"),
    reason="needs root to run the script as another user",
)
def test_refuses_a_user_without_passwordless_sudo() -> None:
    assert run_facts().returncode == 0, "this machine's own OS must pass the preflight"
    result = run_facts(user="nobody")
    assert result.returncode == 1
    assert result.stderr == (
        "convecthub: node n1: user nobody cannot run sudo without a password: on the node "
        "run  echo 'nobody ALL=(ALL:ALL) NOPASSWD: ALL' | sudo tee /etc/sudoers.d/nobody  "
        "or connect as root\n"
    )
