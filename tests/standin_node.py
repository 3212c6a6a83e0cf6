"""A stand-in machine for running node scripts for real on this host: a private mount
namespace with overlays (tests/standins/private-root.sh) and the state the stand-ins of
tests/standins/ keep (which devices, drivers and units exist; the calls they got)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from components.remote_script import script_stdin
from tests.conftest import STANDINS

NVIDIA_CARD = "0000:3b:00.0 0302: 10de:20b0"
# Stand-ins searched before the host's own tools.
STANDIN_PATH = [
    STANDINS / "gpu",
    STANDINS / "docker",
    STANDINS / "storage",
    STANDINS / "arch",
    STANDINS,
]


class StandinNode:
    """A stand-in machine: a private root (overlays) and the stand-ins' state."""

    def __init__(
        self,
        work: Path,
        os_id: str = "ubuntu",
        pci: str = NVIDIA_CARD,
        codename: str = "jammy",
        arch: str = "amd64",
    ):
        self.arch = arch  # what dpkg --print-architecture answers (tests/standins/arch/dpkg)
        self.work = work
        self.state = work / "state"
        self.state.mkdir(parents=True)
        etc = work / "upper" / "_etc"
        etc.mkdir(parents=True)
        (etc / "convecthub-standin.env").write_text(
            f"STANDIN_STATE={self.state}\nSTANDIN_LOG={self.state}/systemctl.log\n"
        )
        self.os_release = work / "os-release"
        codename_line = f"VERSION_CODENAME={codename}\n" if codename else ""
        self.os_release.write_text(f"ID={os_id}\nVERSION_ID=22.04\n{codename_line}")
        self.pci = pci

    def has(self, *flags: str) -> StandinNode:
        for flag in flags:
            (self.state / flag).touch()
        return self

    @property
    def calls(self) -> str:
        path = self.state / "calls"
        return path.read_text() if path.exists() else ""

    node_name = "gpu1"  # what CONVECTHUB_NODE_NAME says unless a run gives it

    def run(self, script: str, action: str | None, **env: str) -> subprocess.CompletedProcess:
        return self.run_with(script, action, env)

    def run_with(
        self,
        script: str,
        action: str | None,
        env: Mapping[str, str],
        standins: Sequence[Path] = (),
        host_env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess:
        """Run `script` with its environment `env` in the private root; `standins` are searched
        before STANDIN_PATH, and `host_env` goes to private-root.sh itself."""
        env = {
            "CONVECTHUB_NODE_NAME": self.node_name,
            "CONVECTHUB_OS_RELEASE": str(self.os_release),
            **env,
        }
        path = ":".join([*map(str, [*standins, *STANDIN_PATH]), os.environ["PATH"]])
        command = [str(STANDINS / "private-root.sh"), str(self.work), "/bin/bash", "-s"]
        return subprocess.run(
            command + ([action] if action else []),
            input=script_stdin(script, env),
            capture_output=True,
            text=True,
            env={
                "PATH": path,
                "LANG": "C.UTF-8",
                "STANDIN_LSPCI_DEVICES": self.pci,
                "STANDIN_ARCH": self.arch,
                **(host_env or {}),
            },
            timeout=120,
            check=False,
        )

    def upper(self, path: str) -> Path:
        """Where a file the script wrote at `path` (under an overlaid directory) landed."""
        for top in ("/usr/share/keyrings", "/usr/local/bin", "/var/lib", "/etc"):
            if path.startswith(top + "/"):
                return self.work / "upper" / top.replace("/", "_") / path[len(top) + 1 :]
        raise ValueError(f"{path} is not under an overlaid directory")
