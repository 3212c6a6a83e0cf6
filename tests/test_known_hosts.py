"""`python -m stacks known-hosts` and accept-new's first contact, against a real sshd on
127.0.0.1 (a child process with its own temporary host keys, stopped by its PID), and the
stack file edits that pin the keys."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from model.ssh_keys import parse_host_key
from stacks.__main__ import main
from stacks.known_hosts import add_host_keys
from tests.conftest import PROJECT_DIR, sample_host_key
from tests.test_automation import cli_env, stacks  # noqa: F401 (cli_env is a fixture)

SSHD = Path("/usr/sbin/sshd")
needs_sshd = pytest.mark.skipif(
    os.geteuid() != 0 or not SSHD.exists() or shutil.which("ssh-keyscan") is None,
    reason="runs a real sshd (needs root and openssh-server: apt-get install openssh-server)",
)


@dataclass
class Sshd:
    ports: list[int]
    ed25519: str  # the host keys' public halves, `<type> <base64>`
    ecdsa: str
    client_key: Path  # a key sshd lets root log in with


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def public_half(path: Path) -> str:
    kind, encoded, *_ = path.read_text().split()
    return f"{kind} {encoded}"


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    """sshd on two free ports of 127.0.0.1, offering an ECDSA and an ed25519 host key."""
    directory = tmp_path / "sshd"
    directory.mkdir()
    for kind in ("ecdsa", "ed25519", "client"):
        key_type = "ed25519" if kind == "client" else kind
        subprocess.run(
            ["ssh-keygen", "-q", "-t", key_type, "-N", "", "-f", str(directory / kind)],
            check=True,
        )
    shutil.copy(directory / "client.pub", directory / "authorized_keys")
    ports = [free_port(), free_port()]
    config = directory / "sshd_config"
    config.write_text(
        "".join(f"Port {port}\n" for port in ports)
        + f"ListenAddress 127.0.0.1\nHostKey {directory / 'ecdsa'}\n"
        f"HostKey {directory / 'ed25519'}\nPidFile {directory / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {directory / 'authorized_keys'}\nStrictModes no\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nAllowTcpForwarding yes\n"
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    log = (directory / "sshd.log").open("w")
    process = subprocess.Popen(
        [str(SSHD), "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 10
        while not all(_listening(port) for port in ports):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"sshd did not start: {(directory / 'sshd.log').read_text()}")
            time.sleep(0.05)
        yield Sshd(
            ports=ports,
            ed25519=public_half(directory / "ed25519.pub"),
            ecdsa=public_half(directory / "ecdsa.pub"),
            client_key=directory / "client",
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


STACK = """\
# The test site (this comment stays).
config:
  convecthub:ssh:
    user: root  # the login
    privateKeyFile: {key}
  convecthub:nodes:
    - name: master  # the server
      host: 127.0.0.1
      ssh: {{port: {port0}}}
      roles: [server]
    - name: worker1
      host: 127.0.0.1
      roles: [agent]
      ssh:
        port: {port1}
"""


def project(tmp_path: Path, text: str, stack: str = "lab") -> Path:
    directory = tmp_path / "project"
    directory.mkdir(exist_ok=True)
    shutil.copy(PROJECT_DIR / "Pulumi.yaml", directory / "Pulumi.yaml")
    (directory / f"Pulumi.{stack}.yaml").write_text(text)
    return directory


def known_hosts(directory: Path, *args: str, stack: str = "lab") -> int:
    return main(["known-hosts", "--stack", stack, "--project-dir", str(directory), *args])


def host_keys_of(path: Path) -> dict[str, str]:
    nodes = yaml.safe_load(path.read_text())["config"]["convecthub:nodes"]
    return {node["name"]: node["ssh"].get("hostKey") for node in nodes}


@needs_sshd
def test_known_hosts_writes_each_nodes_ed25519_key(sshd, tmp_path, capsys) -> None:
    text = STACK.format(key=sshd.client_key, port0=sshd.ports[0], port1=sshd.ports[1])
    directory = project(tmp_path, text)
    stack_file = directory / "Pulumi.lab.yaml"
    assert known_hosts(directory, "--write") == 0
    captured = capsys.readouterr()
    fingerprint = parse_host_key(sshd.ed25519).fingerprint
    assert captured.out.splitlines() == [
        f"node master   127.0.0.1:{sshd.ports[0]}        ssh-ed25519          256 {fingerprint} "
        "(ED25519)  new",
        f"node worker1  127.0.0.1:{sshd.ports[1]}        ssh-ed25519          256 {fingerprint} "
        "(ED25519)  new",
    ]
    # ed25519 is preferred although the server offers ECDSA first.
    assert host_keys_of(stack_file) == {"master": sshd.ed25519, "worker1": sshd.ed25519}
    written = stack_file.read_text()
    assert "# The test site (this comment stays)." in written
    assert "    - name: master  # the server\n" in written
    assert f"ssh: {{port: {sshd.ports[0]}, hostKey: {sshd.ed25519}}}" in written
    # Run again: every key matches, the file stays as it is.
    assert known_hosts(directory, "--write") == 0
    assert "pinned" in capsys.readouterr().out
    assert stack_file.read_text() == written


@needs_sshd
def test_known_hosts_can_pin_another_key_type(sshd, tmp_path, capsys) -> None:
    text = STACK.format(key=sshd.client_key, port0=sshd.ports[0], port1=sshd.ports[1])
    directory = project(tmp_path, text)
    assert known_hosts(directory, "--type", "ecdsa", "--write") == 0
    assert host_keys_of(directory / "Pulumi.lab.yaml") == {
        "master": sshd.ecdsa,
        "worker1": sshd.ecdsa,
    }


@needs_sshd
def test_without_a_terminal_nothing_is_written_unless_asked(sshd, tmp_path, capsys) -> None:
    text = STACK.format(key=sshd.client_key, port0=sshd.ports[0], port1=sshd.ports[1])
    directory = project(tmp_path, text)
    assert known_hosts(directory) == 0  # pytest's stdin is no terminal
    assert "nothing written: 2 new host key(s); pass --write" in capsys.readouterr().err
    assert (directory / "Pulumi.lab.yaml").read_text() == text


@needs_sshd
def test_a_changed_key_is_an_error_and_is_not_written(sshd, tmp_path, capsys) -> None:
    text = STACK.format(key=sshd.client_key, port0=sshd.ports[0], port1=sshd.ports[1])
    text = text.replace("      ssh:\n", f"      ssh:\n        hostKey: {sample_host_key('old')}\n")
    directory = project(tmp_path, text)
    assert known_hosts(directory, "--write") == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    old = parse_host_key(sample_host_key("old")).fingerprint
    new = parse_host_key(sshd.ed25519).fingerprint
    assert errors == [
        f"error: node worker1 (127.0.0.1:{sshd.ports[1]}) shows {new}, not its pinned {old}: "
        "someone may be intercepting the connection, or the machine was reinstalled; if you "
        "know it was, delete convecthub:nodes[1].ssh.hostKey and run known-hosts again"
    ]
    assert host_keys_of(directory / "Pulumi.lab.yaml") == {
        "master": sshd.ed25519,  # the new one is written all the same
        "worker1": sample_host_key("old"),
    }


@needs_sshd
def test_an_unreachable_node_is_one_line_naming_it(sshd, tmp_path, capsys) -> None:
    closed = free_port()
    text = STACK.format(key=sshd.client_key, port0=sshd.ports[0], port1=closed)
    directory = project(tmp_path, text)
    assert known_hosts(directory, "--write", "--timeout", "2") == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(errors) == 1
    assert errors[0].startswith(f"error: node worker1 (127.0.0.1:{closed}) showed no host key: ")
    assert host_keys_of(directory / "Pulumi.lab.yaml") == {"master": sshd.ed25519, "worker1": None}


BASTION_STACK = """\
config:
  convecthub:ssh:
    user: root
    privateKeyFile: {key}
    bastion:
      host: 127.0.0.1
      port: {port0}
      user: root
      privateKeyFile: {key}{bastion_key}
  convecthub:nodes:
    - {{name: master, host: 127.0.0.1, roles: [server], ssh: {{port: {port1}}}}}
"""


@needs_sshd
def test_a_node_behind_a_bastion_is_asked_through_it(sshd, tmp_path, capsys) -> None:
    text = BASTION_STACK.format(
        key=sshd.client_key, port0=sshd.ports[0], port1=sshd.ports[1], bastion_key=""
    )
    directory = project(tmp_path, text)
    assert known_hosts(directory, "--write") == 0
    document = yaml.safe_load((directory / "Pulumi.lab.yaml").read_text())["config"]
    assert document["convecthub:ssh"]["bastion"]["hostKey"] == sshd.ed25519
    assert document["convecthub:nodes"][0]["ssh"]["hostKey"] == sshd.ed25519


@needs_sshd
def test_a_bastion_showing_another_key_lets_nothing_through(sshd, tmp_path, capsys) -> None:
    wrong = f"\n      hostKey: {sample_host_key('bastion')}"
    text = BASTION_STACK.format(
        key=sshd.client_key, port0=sshd.ports[0], port1=sshd.ports[1], bastion_key=wrong
    )
    directory = project(tmp_path, text)
    assert known_hosts(directory, "--write") == 1
    err = capsys.readouterr().err
    assert (
        f"error: node master (127.0.0.1:{sshd.ports[1]}) showed no host key: through bastion "
        f"127.0.0.1: bastion 127.0.0.1 showed another host key than 256 "
        f"{parse_host_key(sample_host_key('bastion')).fingerprint} (ED25519)"
    ) in err
    assert (directory / "Pulumi.lab.yaml").read_text() == text


@needs_sshd
def test_accept_new_records_keys_on_the_first_up_only(
    sshd,
    tmp_path,
    cli_env,  # noqa: F811 (the fixture)
) -> None:
    text = STACK.format(key=sshd.client_key, port0=sshd.ports[0], port1=sshd.ports[1])
    text = text.replace(
        "    user: root  # the login\n", "    user: root\n    hostKeyPolicy: accept-new\n"
    )
    directory = project(tmp_path, text)
    stack_file = directory / "Pulumi.lab.yaml"
    preview = stacks(directory, cli_env, "preview", "--stack", "lab")
    assert preview.returncode == 0, preview.stderr
    assert stack_file.read_text() == text  # a preview records nothing
    assert "hostKeyPolicy accept-new: no host key recorded yet for master, worker1" in (
        preview.stderr
    )
    up = stacks(directory, cli_env, "up", "--stack", "lab")
    assert up.returncode == 0, up.stderr
    assert host_keys_of(stack_file) == {"master": sshd.ed25519, "worker1": sshd.ed25519}
    assert "recorded 2 host key(s) in Pulumi.lab.yaml" in up.stdout
    recorded = stack_file.read_text()
    again = stacks(directory, cli_env, "up", "--stack", "lab")
    assert again.returncode == 0, again.stderr
    assert "accept-new" not in again.stdout + again.stderr
    assert stack_file.read_text() == recorded


def test_accept_new_with_a_machine_that_does_not_answer_runs_nothing(
    tmp_path,
    cli_env,  # noqa: F811 (the fixture)
) -> None:
    closed = free_port()
    text = STACK.format(key="/dev/null", port0=closed, port1=free_port())
    text = text.replace("    user: root  # the login\n", "    hostKeyPolicy: accept-new\n")
    text = text.replace("    privateKeyFile: /dev/null\n", "")
    directory = project(tmp_path, text)
    up = stacks(directory, cli_env, "up", "--stack", "lab")
    assert up.returncode == 2
    assert up.stderr.startswith(
        f"error: convecthub:nodes[0].ssh.hostKey: node master (127.0.0.1:{closed}) showed no "
        "host key ("
    )
    assert "accept-new records it on first contact, so it must answer" in up.stderr
    assert (directory / "Pulumi.lab.yaml").read_text() == text


# ---- the stack file edits --------------------------------------------------------------------

KEY = sample_host_key("a")
BASTION_KEY = sample_host_key("b")


@pytest.mark.parametrize(
    ("before", "where", "after"),
    [
        (
            "config:\n  convecthub:nodes:\n    - name: a  # first\n      host: h\n"
            "      roles: [server]\n",
            ("nodes", 0, "ssh"),
            "config:\n  convecthub:nodes:\n    - name: a  # first\n      host: h\n"
            f"      ssh: {{hostKey: {KEY}}}\n      roles: [server]\n",
        ),
        (
            "config:\n  convecthub:nodes:\n    - {name: a, host: h, roles: [server]}\n",
            ("nodes", 0, "ssh"),
            "config:\n  convecthub:nodes:\n"
            f"    - {{name: a, host: h, roles: [server], ssh: {{hostKey: {KEY}}}}}\n",
        ),
        (
            "config:\n  convecthub:nodes:\n    - name: a\n      ssh: {}\n",
            ("nodes", 0, "ssh"),
            f"config:\n  convecthub:nodes:\n    - name: a\n      ssh: {{hostKey: {KEY}}}\n",
        ),
        (
            "config:\n  convecthub:nodes:\n    - name: a\n      ssh:\n        port: 22  # x\n",
            ("nodes", 0, "ssh"),
            "config:\n  convecthub:nodes:\n    - name: a\n      ssh:\n"
            f"        hostKey: {KEY}\n        port: 22  # x\n",
        ),
        (
            "config:\n  convecthub:ssh:\n    bastion:\n      host: j\n  convecthub:nodes: []\n",
            ("ssh", "bastion"),
            "config:\n  convecthub:ssh:\n    bastion:\n"
            f"      hostKey: {KEY}\n      host: j\n  convecthub:nodes: []\n",
        ),
    ],
    ids=["block node", "flow node", "empty flow ssh", "block ssh", "site bastion"],
)
def test_a_key_is_added_in_the_mappings_own_style(before, where, after) -> None:
    assert add_host_keys(before, {where: KEY}) == after


def test_several_keys_at_once_keep_everything_else() -> None:
    before = (PROJECT_DIR / "examples" / "Pulumi.seed-vagrant.yaml").read_text()
    additions = {("nodes", index, "ssh"): sample_host_key(str(index)) for index in range(3)}
    after = add_host_keys(before, additions)
    assert [line for line in after.splitlines() if line.startswith("#")] == [
        line for line in before.splitlines() if line.startswith("#")
    ]
    nodes = yaml.safe_load(after)["config"]["convecthub:nodes"]
    assert [node["ssh"]["hostKey"] for node in nodes] == [sample_host_key(str(i)) for i in range(3)]
    assert [node["ssh"]["port"] for node in nodes] == [2222, 2200, 2201]


def test_a_file_it_cannot_edit_safely_is_refused() -> None:
    with pytest.raises(ValueError, match="has a hostKey already"):
        add_host_keys(
            f"config:\n  convecthub:nodes:\n    - name: a\n      ssh: {{hostKey: {KEY}}}\n",
            {("nodes", 0, "ssh"): BASTION_KEY},
        )
    with pytest.raises(ValueError, match="no"):
        add_host_keys("config:\n  convecthub:nodes: []\n", {("nodes", 0, "ssh"): KEY})
