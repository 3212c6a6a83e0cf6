"""A STAND-IN airgap bundle for the sandbox fleet, which cannot reach the internet: the k3s
stand-in as the binary, the stand-in install script and the stand-in cluster's kubectl
(all from tests/standins/k3s/), and a placeholder image archive. Laid out as
model/airgap.py expects, so the program takes its real airgap path: copy with
CopyToRemote, install with INSTALL_K3S_SKIP_DOWNLOAD, images into k3s's import directory."""

from __future__ import annotations

import shutil
from pathlib import Path

STANDINS = Path(__file__).resolve().parent.parent / "standins" / "k3s"


def build_bundle(directory: Path, version: str, arch: str = "amd64") -> Path:
    """Write (or rewrite, for another version) the bundle in `directory`; return it."""
    binaries = directory / arch
    images = directory / "images" / arch
    binaries.mkdir(parents=True, exist_ok=True)
    images.mkdir(parents=True, exist_ok=True)
    binary = (STANDINS / "k3s").read_text().replace("@VERSION@", version)
    (binaries / "k3s").write_text(binary)
    for name in ("install.sh", "kubectl.py"):
        shutil.copy(STANDINS / name, binaries / name)
    (images / f"k3s-airgap-images-{arch}.tar.zst").write_bytes(b"stand-in image archive\n")
    return directory


def standin_device_plugin_chart(directory: Path) -> Path:
    """A STAND-IN for the NVIDIA device plugin's chart archive: an airgapped site names its
    .tgz; the sandbox has no Kubernetes API to release it to, so it is never opened."""
    chart = directory / "nvidia-device-plugin-standin.tgz"
    chart.write_bytes(b"stand-in chart archive, never opened\n")
    return chart


def standin_hub_chart(directory: Path) -> Path:
    """A STAND-IN for the JupyterHub chart's archive an airgapped site names (never opened:
    the sandbox's cluster is a stand-in without an API server to release it to)."""
    directory.mkdir(parents=True, exist_ok=True)
    chart = directory / "jupyterhub-standin.tgz"
    chart.write_bytes(b"stand-in chart archive, never opened\n")
    return chart


def airgapped_gpu_settings(gateway: str, directory: Path) -> dict:
    """`convecthub:gpu` for the sandbox: the GPU node's toolkit is a preinstalled stand-in, so
    the mirror named here (as an airgapped site must) is never asked."""
    return {
        "toolkitRepository": f"http://{gateway}:3142/nvidia-container-toolkit",
        "toolkitKeyUrl": f"http://{gateway}:3142/nvidia-container-toolkit/gpgkey",
        "devicePlugin": {"chartFile": str(standin_device_plugin_chart(directory))},
        # Never pulled: the sandbox's cluster is a stand-in without pods.
        "ascendDevicePlugin": {"image": f"{gateway}:5000/ascend-k8sdeviceplugin:v6.0.0"},
    }
