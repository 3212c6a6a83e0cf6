"""The sandbox fleet: systemd-booted nspawn nodes on a private bridge, each with its own root
filesystem (an overlay on one cached Debian base), hostname, address, network namespace and
sshd, plus an apt-cacher-ng on the bridge that the nodes reach through `convecthub:os.aptProxy`.

Everything it starts it stops by PID; every mount, bridge and directory it makes it removes,
also when a test fails (`SandboxFleet` is a context manager, and `stop` is idempotent).
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.sandbox.accelerators import install_accelerator
from tests.sandbox.ssh import SSH_OPTIONS

HOST_APT_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
# python3: the k3s stand-in's kubectl (tests/standins/k3s/kubectl.py) runs on the nodes;
# kmod: lsmod and modprobe, which gpu-driver.sh asks about the NVIDIA module.
BASE_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "sudo",
    "iproute2",
    "procps",
    "python3",
    "kmod",
)
SUITE = "bookworm"
CACHE_DIR = Path(os.environ.get("CONVECTHUB_SANDBOX_CACHE", "/var/tmp/convecthub-sandbox-cache"))
KEEP_BOOTED = Path(__file__).with_name("keep-booted.sh")
SUDO_USER = "convect"  # a non-root login with passwordless sudo, as the seeds ask for
REQUIRED_TOOLS = ("mmdebstrap", "systemd-nspawn", "apt-cacher-ng", "ssh", "ssh-keygen", "ip")


class SandboxUnavailableError(Exception):
    """The sandbox cannot run here (not root, or a tool missing): a reason to skip."""


def unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "the sandbox fleet needs root (nspawn, overlay mounts, a bridge)"
    missing = [tool for tool in REQUIRED_TOOLS if not _which(tool)]
    if missing:
        return (
            f"the sandbox fleet needs {', '.join(missing)} (apt-get install mmdebstrap "
            "systemd-container apt-cacher-ng openssh-client iproute2)"
        )
    return None


def _which(tool: str) -> str | None:
    return shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")


def run(*command: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, check=check, capture_output=True, text=True, **kwargs)


def base_image() -> Path:
    """The cached Debian root filesystem every node's overlay sits on (built once)."""
    recipe = "\n".join([SUITE, *BASE_PACKAGES, HOST_APT_SOURCES.read_text(), "v2"])
    digest = hashlib.sha256(recipe.encode()).hexdigest()[:12]
    base = CACHE_DIR / f"base-{digest}"
    if (base / "etc" / "os-release").exists():
        return base
    partial = CACHE_DIR / f"base-{digest}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    hooks = [
        'chroot "$1" systemctl enable ssh.service systemd-networkd.service',
        f'chroot "$1" useradd --create-home --shell /bin/bash {SUDO_USER}',
        f"echo '{SUDO_USER} ALL=(ALL:ALL) NOPASSWD: ALL' > \"$1/etc/sudoers.d/{SUDO_USER}\"",
        # The distribution's 80-container-host0.network would ask DHCP; nodes get a fixed address.
        'rm -f "$1/usr/lib/systemd/network/80-container-host0.network"',
    ]
    command = ["mmdebstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}"]
    command += [f"--customize-hook={hook}" for hook in hooks]
    command += [SUITE, str(partial), str(HOST_APT_SOURCES)]
    result = run(*command, check=False)
    if result.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        raise SandboxUnavailableError(
            f"mmdebstrap failed: {result.stderr.strip().splitlines()[-1:]}"
        )
    partial.rename(base)
    return base


@dataclass
class SandboxNode:
    name: str
    address: str
    directory: Path
    pid: int | None = None
    accelerator: str | None = None  # tests/sandbox/accelerators.py: what it plays
    host_key: str | None = None  # its sshd's ed25519 public host key, `<type> <base64>`

    @property
    def root(self) -> Path:
        return self.directory / "root"


@dataclass
class SandboxFleet:
    """`with SandboxFleet(3) as fleet:` boots node1..node3 at .11, .12, .13 of `subnet`;
    `accelerators={"node2": "nvidia"}` gives a node the stand-ins of one (accelerators.py)."""

    count: int = 3
    subnet: str = "10.213.77.0/24"
    bridge: str = "chsb0"
    work_dir: Path = field(default_factory=lambda: CACHE_DIR / "run")
    accelerators: dict[str, str] = field(default_factory=dict)
    nodes: list[SandboxNode] = field(default_factory=list)
    key_file: Path = field(init=False)
    _apt_cache_pid: int | None = None
    _bridge_made: bool = False
    _previous_sigterm: object = None

    @property
    def gateway(self) -> str:
        return str(next(ipaddress.ip_network(self.subnet).hosts()))

    @property
    def apt_proxy(self) -> str:
        return f"http://{self.gateway}:3142"

    def __enter__(self) -> SandboxFleet:
        # A SIGTERM (CI's time limit, a kill) must still tear the fleet down.
        if threading.current_thread() is threading.main_thread():
            self._previous_sigterm = signal.signal(signal.SIGTERM, _exit_on_signal)
        try:
            self.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        try:
            self.stop()
        finally:
            if self._previous_sigterm is not None:
                signal.signal(signal.SIGTERM, self._previous_sigterm)
                self._previous_sigterm = None

    def start(self) -> None:
        reason = unavailable_reason()
        if reason:
            raise SandboxUnavailableError(reason)
        base = base_image()
        self._reclaim_leftovers()
        self.work_dir.mkdir(parents=True)
        self.key_file = self.work_dir / "id_sandbox"
        run(
            "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "sandbox", "-f", str(self.key_file)
        )
        self._make_bridge()
        self._start_apt_cache()
        network = ipaddress.ip_network(self.subnet)
        for index in range(1, self.count + 1):
            node = SandboxNode(
                name=f"node{index}",
                address=str(network.network_address + 10 + index),
                directory=self.work_dir / f"node{index}",
                accelerator=self.accelerators.get(f"node{index}"),
            )
            self.nodes.append(node)
            self._boot(node, base)
        for node in self.nodes:
            self.wait_for_ssh(node)

    def stop(self) -> None:
        for node in self.nodes:
            self._halt(node)
        self.nodes.clear()
        if self._apt_cache_pid:
            _terminate(self._apt_cache_pid)
            self._apt_cache_pid = None
        if self._bridge_made:
            run("ip", "link", "delete", self.bridge, check=False)
            self._bridge_made = False
        shutil.rmtree(self.work_dir, ignore_errors=True)

    def _reclaim_leftovers(self) -> None:
        """What a run that died without tearing down left in `work_dir`: its processes (by
        the PIDs it wrote, and only while their command line names `work_dir`), its mounts
        and its bridge."""
        if not self.work_dir.exists():
            return
        marker = str(self.work_dir)
        for pid_file in sorted(self.work_dir.glob("**/pid")):
            pid = int(pid_file.read_text())
            if marker in _command_line(pid):
                _terminate(pid, timeout=15)
        for mount_point in reversed(mounts_under(self.work_dir)):
            if run("umount", mount_point, check=False).returncode:
                run("umount", "--lazy", mount_point, check=False)
        bridge_file = self.work_dir / "bridge"
        if bridge_file.exists():
            run("ip", "link", "delete", bridge_file.read_text().strip(), check=False)
        shutil.rmtree(self.work_dir, ignore_errors=True)

    def node(self, name: str) -> SandboxNode:
        return next(node for node in self.nodes if node.name == name)

    def ssh_command(self, node: SandboxNode, user: str = "root") -> list[str]:
        return ["ssh", "-i", str(self.key_file), *SSH_OPTIONS, f"{user}@{node.address}"]

    def sh(self, node: SandboxNode, script: str, check: bool = True) -> str:
        """Run `script` as root on the node; its stdout."""
        result = run(*self.ssh_command(node), "bash -s", input=script, check=False, timeout=300)
        if check and result.returncode != 0:
            raise AssertionError(f"{node.name}: {script!r} failed: {result.stderr.strip()}")
        return result.stdout

    def wait_for_ssh(self, node: SandboxNode, timeout: float = 120) -> None:
        # Boots take 2-3 s; twice in a day of runs one took over 60 s, right after another
        # run: hence the margin, and the last answers in the error to tell why next time.
        deadline = time.monotonic() + timeout
        booted = login = None
        while time.monotonic() < deadline:
            # Until boot is over, pam_nologin turns away every user but root. Some boots of
            # these containers leave /run/nologin behind once boot has finished; it is stale
            # then, and goes as systemd-user-sessions would have removed it.
            # `is-system-running` exits non-zero for "degraded" too (a unit failed): the stale
            # file goes whatever the state, once boot is over.
            booted = run(
                *self.ssh_command(node),
                "state=$(systemctl is-system-running --wait); rm -f /run/nologin; echo $state",
                check=False,
                timeout=max(1, deadline - time.monotonic()),
            )
            login = run(*self.ssh_command(node, SUDO_USER), "true", check=False, timeout=30)
            if booted.stdout.strip() in ("running", "degraded") and login.returncode == 0:
                return
            time.sleep(0.2)
        log = (node.directory / "console.log").read_text(errors="replace")[-2000:]
        answers = (
            f"system state {booted.stdout.strip()!r} ({booted.stderr.strip()!r}), "
            f"{SUDO_USER} login exit {login.returncode} ({login.stderr.strip()!r})"
            if booted is not None and login is not None
            else "no answer"
        )
        raise SandboxUnavailableError(
            f"{node.name} did not answer on ssh within {timeout}s: {answers}\n{log}"
        )

    def _make_bridge(self) -> None:
        if run("ip", "link", "show", self.bridge, check=False).returncode == 0:
            raise SandboxUnavailableError(
                f"bridge {self.bridge} exists already: is another "
                "sandbox running? (`ip link delete {self.bridge}`)"
            )
        prefix = ipaddress.ip_network(self.subnet).prefixlen
        run("ip", "link", "add", self.bridge, "type", "bridge")
        self._bridge_made = True
        (self.work_dir / "bridge").write_text(self.bridge)
        run("ip", "addr", "add", f"{self.gateway}/{prefix}", "dev", self.bridge)
        run("ip", "link", "set", self.bridge, "up")

    def _start_apt_cache(self) -> None:
        conf = self.work_dir / "apt-cacher-ng"
        (conf / "log").mkdir(parents=True)
        cache = CACHE_DIR / "apt-cacher-ng"
        cache.mkdir(parents=True, exist_ok=True)
        # No remapping: a plain caching proxy for whatever mirror the nodes' sources name.
        (conf / "acng.conf").write_text(
            f"CacheDir: {cache}\nLogDir: {conf / 'log'}\nSupportDir: /usr/lib/apt-cacher-ng\n"
            f"Port: 3142\nBindAddress: {self.gateway}\nExThreshold: 4\n"
        )
        binary = _which("apt-cacher-ng")
        assert binary
        process = subprocess.Popen(
            [binary, "-c", str(conf), "ForeGround=1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._apt_cache_pid = process.pid
        (conf / "pid").write_text(str(process.pid))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            probe = run("bash", "-c", f"exec 3<>/dev/tcp/{self.gateway}/3142", check=False)
            if probe.returncode == 0:
                return
            time.sleep(0.1)
        raise SandboxUnavailableError("apt-cacher-ng did not start")

    def _boot(self, node: SandboxNode, base: Path) -> None:
        for part in ("upper", "work", "root"):
            (node.directory / part).mkdir(parents=True)
        run(
            "mount",
            "-t",
            "overlay",
            "overlay",
            "-o",
            f"lowerdir={base},upperdir={node.directory / 'upper'},"
            f"workdir={node.directory / 'work'}",
            str(node.root),
        )
        node.host_key = _own_host_keys(node)
        public_key = self.key_file.with_suffix(".pub").read_text()
        for home, owner in (("root", "root"), (f"home/{SUDO_USER}", SUDO_USER)):
            ssh_dir = node.root / home / ".ssh"
            ssh_dir.mkdir(mode=0o700, exist_ok=True)
            (ssh_dir / "authorized_keys").write_text(public_key)
            if owner != "root":
                run("chroot", str(node.root), "chown", "-R", f"{owner}:{owner}", f"/{home}/.ssh")
        (node.root / "etc" / "hostname").write_text(f"{node.name}-image\n")
        prefix = ipaddress.ip_network(self.subnet).prefixlen
        (node.root / "etc/systemd/network/10-sandbox.network").write_text(
            f"[Match]\nName=host0\n\n[Network]\nAddress={node.address}/{prefix}\n"
            f"Gateway={self.gateway}\n"
        )
        # A swap entry like a stock Ubuntu install has, for os-prep to turn off and restore.
        with (node.root / "etc" / "fstab").open("a") as fstab:
            fstab.write("/swap.img\tnone\tswap\tsw\t0\t0\n")
        if node.accelerator:
            install_accelerator(node.root, node.accelerator)
        console = (node.directory / "console.log").open("w")
        # nspawn ends when the node reboots; keep-booted.sh starts it again, as firmware would.
        process = subprocess.Popen(
            [
                str(KEEP_BOOTED),
                "systemd-nspawn",
                "--quiet",
                "--boot",
                f"--directory={node.root}",
                "--register=no",
                "--keep-unit",
                f"--network-bridge={self.bridge}",
                f"--machine={node.name}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        node.pid = process.pid
        (node.directory / "pid").write_text(str(process.pid))

    def _halt(self, node: SandboxNode) -> None:
        if node.pid:
            _terminate(node.pid, timeout=15)
            node.pid = None
        if node.root.is_mount() and run("umount", str(node.root), check=False).returncode:
            run("umount", "--lazy", str(node.root), check=False)


def _own_host_keys(node: SandboxNode) -> str:
    """New host keys for the node's sshd (ed25519 and ECDSA, as a stock install offers; the
    base image's, which every node would share, are removed): its ed25519 public key."""
    ssh_dir = node.root / "etc" / "ssh"
    for old in ssh_dir.glob("ssh_host_*_key*"):
        old.unlink()
    for kind in ("ed25519", "ecdsa"):
        key = ssh_dir / f"ssh_host_{kind}_key"
        run("ssh-keygen", "-q", "-t", kind, "-N", "", "-C", f"root@{node.name}", "-f", str(key))
    public = (ssh_dir / "ssh_host_ed25519_key.pub").read_text().split()
    return f"{public[0]} {public[1]}"


def _terminate(pid: int, timeout: float = 10) -> None:
    """SIGTERM (nspawn powers the container off), then SIGKILL; only this PID and its group."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid if not alive(pid) else 0
        if done:
            return
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def mounts_under(directory: Path) -> list[str]:
    prefix = f"{directory}/"
    with open("/proc/mounts") as mounts:
        points = [line.split()[1] for line in mounts]
    return [point for point in points if point.startswith(prefix)]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
