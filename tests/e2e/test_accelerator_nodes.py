"""End to end, on a fleet whose second node has an NVIDIA card and no driver yet and whose third
has an Ascend NPU (stand-ins: tests/sandbox/accelerators.py): the driver is installed, the node
reboots for it and the next step waits for it to be back; the NPU's driver is checked; both
get their labels, and k3s on the GPU node runs pods on the NVIDIA runtime."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import sandbox_site
from tests.sandbox.accelerators import DRIVER_BRANCH
from tests.sandbox.fleet import SandboxFleet

COMMAND = "command:remote:Command"
K3S_STORE = "/var/lib/rancher/k3s/standin/nodes"
BOOT_ID = "cat /proc/sys/kernel/random/boot_id"


@pytest.fixture
def accelerator_fleet() -> Iterator[SandboxFleet]:
    with SandboxFleet(3, accelerators={"node2": "nvidia-no-driver", "node3": "ascend"}) as booted:
        yield booted


def accelerator_site(fleet: SandboxFleet) -> dict:
    """master (server), worker1 (NVIDIA A100, driver to install), worker2 (Ascend 910B)."""
    config = sandbox_site(fleet)
    nodes = config["convecthub:nodes"]
    nodes[1]["gpu"] = {"vendor": "nvidia", "type": "A100"}  # installDriver: true, the default
    nodes[2]["gpu"] = {"vendor": "ascend", "type": "910B"}
    return config


def test_a_driver_install_reboots_the_node_and_the_site_comes_up(
    accelerator_fleet, deployment, stack_file
) -> None:
    fleet = accelerator_fleet
    master, gpu_node, _ = fleet.nodes
    boot_before = fleet.sh(gpu_node, BOOT_ID)
    site = stack_file(accelerator_site(fleet))
    deployment.up(site)

    # The driver went in, the node rebooted to load it, and only then did the runtime step run.
    assert fleet.sh(gpu_node, BOOT_ID) != boot_before
    report = fleet.sh(
        gpu_node,
        f"""
        dpkg-query -W -f='${{Status}}\\n' nvidia-headless-{DRIVER_BRANCH}-server
        cat /etc/modprobe.d/convecthub-blacklist-nouveau.conf
        nvidia-smi -L
        systemctl is-active ssh.service k3s-agent
        grep default-runtime /etc/rancher/k3s/config.yaml
        """,
    )
    assert report.splitlines() == [
        "install ok installed",
        "blacklist nouveau",
        "options nouveau modeset=0",
        "GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-00000000-stand-in)",
        "active",
        "active",
        "default-runtime: nvidia",
    ]
    runtime = deployment.state[f"{COMMAND}::worker1-gpu-runtime"]
    assert "nvidia-smi does not answer" not in runtime.outputs["stderr"]

    # The NPU node: its driver checked (no runtime step for Ascend), its labels set.
    assert f"{COMMAND}::worker2-gpu-driver" in deployment.state
    assert f"{COMMAND}::worker2-gpu-runtime" not in deployment.state
    labels = {
        name: json.loads(fleet.sh(master, f"sudo cat {K3S_STORE}/{name}.json"))["labels"]
        for name in ("worker1", "worker2")
    }
    assert labels["worker1"]["gpu"] == "true" and labels["worker1"]["gpu-type"] == "A100"
    assert labels["worker2"]["npu"] == "true" and labels["worker2"]["gpu-type"] == "910B"
    plugins = {key.split("::")[1] for key in deployment.state if key.startswith("kubernetes:")}
    assert {"nvidia-device-plugin-release", "ascend-device-plugin-daemonset"} <= plugins

    # Unchanged config: nothing runs, and the node does not reboot again.
    boot_after = fleet.sh(gpu_node, BOOT_ID)
    deployment.commands.clear()
    deployment.up(site)
    assert deployment.commands == []
    assert fleet.sh(gpu_node, BOOT_ID) == boot_after
