"""STAND-INs for the accelerators of sandbox nodes: no GPU or NPU exists here, so a node that
plays one gets, in its root filesystem before it boots, what such a machine would show the
node scripts. Everything else on the node stays real (apt, dpkg, systemd, sshd, the reboot).

  nvidia            an A100 on `lspci`, its driver "came preinstalled" (`nvidia-smi` answers),
                    and the NVIDIA container toolkit installed as a package.
  nvidia-no-driver  an A100 on `lspci` and no driver yet: a local apt repository offers the
                    driver packages gpu-driver.sh installs for the default branch
                    (model/defaults.py: nvidia-headless-<branch>-server and
                    nvidia-utils-<branch>-server). Like the real module, the stand-in driver only
                    loads at boot: nvidia-smi answers after the reboot, not before. The machine
                    says it is Ubuntu 22.04 (the driver install is Ubuntu-only; the root is
                    Debian's) and has an `update-initramfs` (a container has no initramfs).
  ascend            an Ascend 910B on `lspci`, its preinstalled driver under
                    /usr/local/Ascend/driver, and an `npu-smi` that answers.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

from model.defaults import NVIDIA_DRIVER_BRANCH

KINDS = ("nvidia", "nvidia-no-driver", "ascend")
NVIDIA_DEVICE = "0000:3b:00.0 0302: 10de:20b0 (rev a1)"
ASCEND_DEVICE = "0000:81:00.0 1200: 19e5:d801 (rev 20)"
DRIVER_BRANCH = NVIDIA_DRIVER_BRANCH  # what a site that names no branch installs
DRIVER_RELEASE = f"{DRIVER_BRANCH}.126.09"  # what the stand-in nvidia-smi reports
DRIVER_LOADED_FLAG = "/run/convecthub-standin-nvidia-loaded"
DRIVER_UNIT = "convecthub-standin-nvidia-driver.service"
LOCAL_REPOSITORY = "/opt/convecthub-standin-apt"
SMI_FIELDS = {"flag": DRIVER_LOADED_FLAG, "driver": DRIVER_RELEASE}

NVIDIA_SMI = """\
if [ -n "${ONLY_AFTER_BOOT:-}" ] && [ ! -e %(flag)s ]; then
  echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
  exit 9
fi
case "${1:-}" in
  -L) echo "GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-00000000-stand-in)" ;;
  --query-gpu=driver_version) echo "%(driver)s" ;;
  *) echo "nvidia-smi stand-in: unsupported: $*" >&2; exit 2 ;;
esac
"""
NPU_SMI = """\
[ "${1:-}" = info ] || { echo "npu-smi stand-in: unsupported: $*" >&2; exit 2; }
echo "+ npu-smi 23.0.rc3 (stand-in) | NPU 0 910B OK"
"""
OS_RELEASE = """\
PRETTY_NAME="Ubuntu 22.04 (STAND-IN: the Debian root of a convecthub sandbox node)"
NAME="Ubuntu"
VERSION_ID="22.04"
VERSION_CODENAME=jammy
ID=ubuntu
ID_LIKE=debian
"""
DRIVER_UNIT_TEXT = f"""\
[Unit]
Description=STAND-IN for the NVIDIA kernel module loading at boot (convecthub sandbox)

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/touch {DRIVER_LOADED_FLAG}

[Install]
WantedBy=multi-user.target
"""


def install_accelerator(root: Path, kind: str) -> None:
    """Give the node whose root filesystem is `root` the stand-ins of one accelerator kind."""
    if kind == "nvidia":
        _tool(root, "usr/local/bin/lspci", f"echo '{NVIDIA_DEVICE}'\n")
        _tool(root, "usr/local/bin/nvidia-smi", NVIDIA_SMI % SMI_FIELDS)
        _install_packages(root, [_toolkit_package])
    elif kind == "nvidia-no-driver":
        _tool(root, "usr/local/bin/lspci", f"echo '{NVIDIA_DEVICE}'\n")
        _tool(root, "usr/local/sbin/update-initramfs", "exit 0\n")
        os_release = root / "etc" / "os-release"
        os_release.unlink(missing_ok=True)  # Debian's is a link into /usr/lib
        os_release.write_text(OS_RELEASE)
        _install_packages(root, [_toolkit_package])
        _local_repository(root, [_driver_utils_package, _driver_headless_package])
    elif kind == "ascend":
        _tool(root, "usr/local/bin/lspci", f"echo '{ASCEND_DEVICE}'\n")
        _tool(root, "usr/local/sbin/npu-smi", NPU_SMI)
        driver = root / "usr/local/Ascend/driver"
        driver.mkdir(parents=True)
        (driver / "version.info").write_text("Version=23.0.rc3 (STAND-IN)\n")
    else:
        raise ValueError(f"unknown accelerator {kind!r}: one of {', '.join(KINDS)}")


def _tool(root: Path, path: str, body: str) -> None:
    name = os.path.basename(path)
    tool = root / path
    tool.parent.mkdir(parents=True, exist_ok=True)
    tool.write_text(
        f"#!/bin/sh\n# STAND-IN for {name} (convecthub sandbox): no accelerator exists here.\n"
        f"{body}"
    )
    tool.chmod(0o755)


def _build_package(directory: Path, control: dict[str, str], files: dict[str, str]) -> Path:
    """A .deb of `files` (path: text; executables under bin/ and sbin/)."""
    package = directory / control["Package"]
    (package / "DEBIAN").mkdir(parents=True)
    fields = {
        "Version": "0.0.0-standin",
        "Architecture": "all",
        "Maintainer": "convecthub sandbox <sandbox@localhost>",
        **control,
    }
    (package / "DEBIAN" / "control").write_text(
        "".join(f"{key}: {value}\n" for key, value in fields.items())
    )
    for path, text in files.items():
        target = package / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if text.startswith("->"):
            target.symlink_to(text[2:].strip())
            continue
        target.write_text(text)
        target.chmod(0o755 if "bin/" in path else 0o644)
    deb = directory / f"{control['Package']}.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "--build", str(package), str(deb)],
        check=True,
        capture_output=True,
    )
    return deb


def _toolkit_package(directory: Path) -> Path:
    return _build_package(
        directory,
        {
            "Package": "nvidia-container-toolkit",
            "Description": "STAND-IN for the NVIDIA container toolkit (no GPU exists here)",
        },
        {
            "usr/bin/nvidia-container-runtime": (
                "#!/bin/sh\n# STAND-IN for nvidia-container-runtime\nexit 1\n"
            )
        },
    )


def _driver_utils_package(directory: Path) -> Path:
    smi = NVIDIA_SMI % SMI_FIELDS
    return _build_package(
        directory,
        {
            "Package": f"nvidia-utils-{DRIVER_BRANCH}-server",
            "Description": "STAND-IN for the NVIDIA driver utilities: nvidia-smi",
        },
        {"usr/bin/nvidia-smi": f"#!/bin/sh\n# STAND-IN for nvidia-smi\nONLY_AFTER_BOOT=1\n{smi}"},
    )


def _driver_headless_package(directory: Path) -> Path:
    return _build_package(
        directory,
        {
            "Package": f"nvidia-headless-{DRIVER_BRANCH}-server",
            "Description": "STAND-IN for the NVIDIA driver: its module loads at the next boot",
        },
        {
            f"lib/systemd/system/{DRIVER_UNIT}": DRIVER_UNIT_TEXT,
            f"lib/systemd/system/multi-user.target.wants/{DRIVER_UNIT}": f"-> ../{DRIVER_UNIT}",
        },
    )


def _install_packages(root: Path, builders) -> None:
    with tempfile.TemporaryDirectory() as directory:
        for build in builders:
            deb = build(Path(directory))
            subprocess.run(
                ["dpkg", f"--root={root}", "--force-script-chrootless", "-i", str(deb)],
                check=True,
                capture_output=True,
            )


def _local_repository(root: Path, builders) -> None:
    """A flat apt repository in the node (its index fetched by os-prep's apt-get update)."""
    repository = root / LOCAL_REPOSITORY.lstrip("/")
    repository.mkdir(parents=True)
    entries = []
    for build in builders:
        deb = build(repository / "build")
        target = repository / deb.name
        deb.rename(target)
        control = subprocess.run(
            ["dpkg-deb", "--field", str(target)], check=True, capture_output=True, text=True
        ).stdout.rstrip("\n")
        data = target.read_bytes()
        entries.append(
            f"{control}\nFilename: ./{target.name}\nSize: {len(data)}\n"
            f"SHA256: {hashlib.sha256(data).hexdigest()}\n"
        )
    subprocess.run(["rm", "-rf", str(repository / "build")], check=True)
    index = "\n".join(entries).encode()
    (repository / "Packages").write_bytes(index)
    (repository / "Release").write_text(
        "Origin: convecthub-sandbox\nLabel: STAND-IN driver packages\n"
        f"SHA256:\n {hashlib.sha256(index).hexdigest()} {len(index)} Packages\n"
    )
    (root / "etc/apt/sources.list.d/convecthub-standin-driver.list").write_text(
        f"deb [trusted=yes] file:{LOCAL_REPOSITORY} ./\n"
    )
