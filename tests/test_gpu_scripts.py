"""gpu-driver.sh and gpu-runtime.sh for real, against stand-ins for what cannot exist here
(tests/standins/gpu/: nvidia-smi, npu-smi, modprobe, lsmod, apt-get, update-initramfs,
systemd-run; tests/standins/: lspci, systemctl; arch/dpkg plays an arm64 machine), each named
as a stand-in. Every decision the scripts make: no device, driver present, driver to install,
reboot needed, driver required but absent, NPU driver missing; the container toolkit from a
repository, once."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import needs_private_root
from tests.standin_node import NVIDIA_CARD
from tests.standin_node import StandinNode as Node

ASCEND_CARD = "0000:81:00.0 1200: 19e5:d801"

pytestmark = needs_private_root


def last_line(result: subprocess.CompletedProcess) -> str:
    return result.stderr.strip().splitlines()[-1]


def driver(node: Node, vendor: str = "nvidia", install: str = "true"):
    ascend_driver = node.work / "Ascend" / "driver"
    return node.run(
        "gpu-driver.sh",
        None,
        CONVECTHUB_GPU_VENDOR=vendor,
        CONVECTHUB_INSTALL_DRIVER=install,
        CONVECTHUB_DRIVER_VERSION="550",
        CONVECTHUB_ASCEND_DRIVER=str(ascend_driver),
    )


def test_a_declared_gpu_that_is_not_on_the_bus_fails_in_one_line(tmp_path) -> None:
    result = driver(Node(tmp_path, pci=""))
    assert result.returncode == 1
    assert last_line(result) == (
        "convecthub: node gpu1: declares an NVIDIA GPU but has none on its PCI bus: check the "
        "card is seated and powered, or remove gpu from it in convecthub:nodes"
    )


def test_a_driver_that_answers_is_left_alone(tmp_path) -> None:
    node = Node(tmp_path).has("nvidia.loaded")
    result = driver(node)
    assert result.returncode == 0, result.stderr
    assert "the NVIDIA driver answers: 550.127.05" in result.stderr
    assert node.calls == ""


def test_install_driver_false_needs_a_driver_that_answers(tmp_path) -> None:
    node = Node(tmp_path)
    result = driver(node, install="false")
    assert result.returncode == 1
    assert last_line(result) == (
        "convecthub: node gpu1: has installDriver: false, but nvidia-smi does not answer: "
        "install the NVIDIA driver on it, or set installDriver: true for it in convecthub:nodes"
    )
    assert node.calls == ""


def test_the_driver_is_installed_and_loads_without_a_reboot(tmp_path) -> None:
    node = Node(tmp_path)
    result = driver(node)
    assert result.returncode == 0, result.stderr
    calls = node.calls.splitlines()
    assert "update-initramfs -u" in calls
    apt = [c for c in calls if c.startswith("apt-get")]
    assert apt == [  # fresh package lists first: a new machine's may be missing or stale
        "apt-get -q -o DPkg::Lock::Timeout=300 update",
        "apt-get -q -o DPkg::Lock::Timeout=300 -y install --no-install-recommends "
        "nvidia-headless-550-server nvidia-utils-550-server",
    ]
    assert "modprobe nvidia" in calls
    assert not any(c.startswith("systemd-run") for c in calls)
    blacklist = tmp_path / "upper" / "_etc" / "modprobe.d" / "convecthub-blacklist-nouveau.conf"
    assert blacklist.read_text() == "blacklist nouveau\noptions nouveau modeset=0\n"


@pytest.mark.parametrize("why", ["reboot.needed", "nouveau.loaded"])
def test_a_driver_that_needs_a_reboot_schedules_one(tmp_path, why) -> None:
    node = Node(tmp_path).has(why, "ssh.service.active")
    result = driver(node)
    assert result.returncode == 0, result.stderr
    assert "rebooting in 5 s to load the NVIDIA driver" in result.stderr
    assert "systemd-run --quiet --on-active=5 /bin/systemctl reboot" in node.calls
    # No new login reaches the old boot: sshd stops until the reboot (or a fallback timer).
    assert "systemd-run --quiet --on-active=600 /bin/systemctl start ssh.service" in node.calls
    units = (node.state / "systemctl.log").read_text().splitlines()
    assert "systemctl stop ssh.service" in units
    assert "systemctl stop ssh.socket" not in units  # not active here: left as it is


def test_driver_install_on_another_os_fails_in_one_line(tmp_path) -> None:
    node = Node(tmp_path, os_id="debian")
    result = driver(node)
    assert result.returncode == 1
    assert last_line(result) == (
        "convecthub: node gpu1: installing the NVIDIA driver is supported on Ubuntu only: "
        "install it on this node by hand, then set installDriver: false for it in "
        "convecthub:nodes"
    )


def test_an_ascend_npu_needs_its_preinstalled_driver(tmp_path) -> None:
    missing = driver(Node(tmp_path / "a", pci=ASCEND_CARD), vendor="ascend")
    assert missing.returncode == 1
    assert last_line(missing) == (
        "convecthub: node gpu1: declares an Ascend NPU, but npu-smi does not answer: install "
        "the Ascend driver and firmware (Huawei's installer), then run pulumi up again"
    )
    npu = Node(tmp_path / "b", pci=ASCEND_CARD).has("npu.driver")
    no_driver_dir = driver(npu, vendor="ascend")
    assert no_driver_dir.returncode == 1
    assert last_line(no_driver_dir) == (
        f"convecthub: node gpu1: npu-smi answers but {npu.work}/Ascend/driver is missing, which "
        "the Ascend device plugin mounts: reinstall the driver with Huawei's installer at its "
        "default path"
    )
    (npu.work / "Ascend" / "driver").mkdir(parents=True)
    present = driver(npu, vendor="ascend")
    assert present.returncode == 0, present.stderr
    assert last_line(present) == "convecthub: node gpu1: the Ascend driver answers"
    absent = driver(Node(tmp_path / "c", pci=NVIDIA_CARD), vendor="ascend")
    assert absent.returncode == 1
    assert "has no Huawei device on its PCI bus" in last_line(absent)


def runtime(node: Node, action: str, key: Path):
    return node.run(
        "gpu-runtime.sh",
        action,
        CONVECTHUB_TOOLKIT_REPO="http://mirror.example/nvidia",
        CONVECTHUB_TOOLKIT_KEY_URL=f"file://{key}",
        CONVECTHUB_BOOT_TIMEOUT="10",
    )


@pytest.fixture
def key(tmp_path) -> Path:
    """An ASCII-armoured block, as the repository's key URL serves one."""
    armoured = tmp_path / "gpgkey"
    data = tmp_path / "key.bin"
    data.write_bytes(b"stand-in key material")
    subprocess.run(
        ["gpg", "--batch", "--yes", "--enarmor", "-o", str(armoured), str(data)], check=True
    )
    return armoured


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_the_toolkit_comes_from_the_repository_once(tmp_path, key, arch) -> None:
    node = Node(tmp_path / "node", arch=arch).has("nvidia.loaded")
    result = runtime(node, "apply", key)
    assert result.returncode == 0, result.stderr
    source = tmp_path / "node" / "upper" / "_etc" / "apt" / "sources.list.d"
    expected = (
        "deb [signed-by=/usr/share/keyrings/convecthub-nvidia-container-toolkit.gpg] "
        f"http://mirror.example/nvidia/{arch} /\n"
    )
    assert (source / "convecthub-nvidia-container-toolkit.list").read_text() == expected
    assert "apt-get -q -o DPkg::Lock::Timeout=300 -y install nvidia-container-toolkit" in node.calls
    calls = node.calls
    again = runtime(node, "apply", key)
    assert again.returncode == 0, again.stderr
    assert node.calls == calls  # installed: no repository, no apt
    removed = runtime(node, "remove", key)
    assert removed.returncode == 0, removed.stderr
    assert not (source / "convecthub-nvidia-container-toolkit.list").exists()


def test_the_runtime_step_needs_the_driver_to_answer(tmp_path, key) -> None:
    result = runtime(Node(tmp_path), "apply", key)
    assert result.returncode == 1
    assert last_line(result) == (
        "convecthub: node gpu1: nvidia-smi does not answer after the driver step (and its "
        "reboot): see dmesg | grep -i nvidia on it"
    )
