"""End to end: the real program's node scripts on booted machines, over SSH.

Each test gets a fresh 3-node sandbox fleet (tests/sandbox/fleet.py) and drives the program
with the stand-in provider (tests/sandbox/deployment.py).
"""

from __future__ import annotations

import copy
import json
import signal
import subprocess
import sys
import threading

import pytest

from model.site import DEFAULT_K3S_VERSION
from tests.conftest import PROJECT_DIR, sample_host_key
from tests.e2e.conftest import NODE_NAMES, sandbox_site
from tests.sandbox.deployment import CommandError, Deployment
from tests.sandbox.fleet import SandboxFleet, alive, mounts_under, run
from tests.sandbox.k3s_bundle import build_bundle

COMMAND = "command:remote:Command"
K3S_STORE = "/var/lib/rancher/k3s/standin/nodes"
HOSTS_BLOCK = "# BEGIN convecthub"
# What a script may leave changing on its own: logs, caches, runtime state.
VOLATILE = (
    "/proc",
    "/sys",
    "/run",
    "/dev",
    "/tmp",
    "/var/log",
    "/var/cache",
    "/var/lib/apt",
    "/var/lib/systemd",
    "/var/lib/dhcp",
    "/var/tmp",
)


def next_patch(version: str) -> str:
    """The release after `version` in its minor (the stand-in bundle makes any release)."""
    base, build = version.split("+", 1)
    major, minor, patch = base.removeprefix("v").split(".")
    return f"v{major}.{minor}.{int(patch) + 1}+{build}"


# A patch upgrade of the default release: one minor at a time is a path (k3s-install.sh).
NEXT_PATCH = next_patch(DEFAULT_K3S_VERSION)


def files_of(fleet: SandboxFleet, node) -> str:
    """Every file on the node with its modification time and checksum, volatile places aside."""
    prune = " -o ".join(f"-path {path}" for path in VOLATILE)
    return fleet.sh(
        node, f"find / -xdev \\( {prune} \\) -prune -o -type f -printf '%p %T@ %s\\n' | sort"
    )


def keys(commands: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(action, resource name) of each command run, sorted."""
    return sorted((action, key.split("::", 1)[1]) for action, key in commands)


def first_up(names=NODE_NAMES) -> list[tuple[str, str]]:
    """What a first `up` of the sandbox site runs: every step of every node."""
    steps = ("facts", "os-prep", "k3s-bundle", "k3s-images", "k3s-install", "k3s-membership")
    gpu = [("create", f"worker1-gpu-{step}") for step in ("driver", "runtime")]
    return sorted(
        [("create", f"{n}-{step}") for n in names for step in steps]
        + [("create", "master-k3s-kubeconfig"), ("create", "hub-certificate")]
        + (gpu if "worker1" in names else [])
    )


def cluster_node(fleet: SandboxFleet, name: str) -> dict:
    """A Node object as the stand-in cluster on the first server keeps it."""
    return json.loads(fleet.sh(by_name(fleet, "master"), f"sudo cat {K3S_STORE}/{name}.json"))


def by_name(fleet: SandboxFleet, name: str):
    return fleet.nodes[NODE_NAMES.index(name)]


def test_a_three_node_site_comes_up(fleet, deployment, stack_file) -> None:
    outputs = deployment.up(stack_file(sandbox_site(fleet)))
    assert keys(deployment.commands) == first_up()
    addresses = {name: by_name(fleet, name).address for name in NODE_NAMES}
    expected_block = "\n".join(
        [
            HOSTS_BLOCK + " (managed by convecthub-infra; edits here are overwritten)",
            *(f"{addresses[n]}\t{n}" for n in NODE_NAMES),
            "# END convecthub",
        ]
    )
    for name in NODE_NAMES:
        node = by_name(fleet, name)
        report = fleet.sh(
            node,
            """
            hostname; cat /etc/hosts; echo ---
            grep swap /etc/fstab; awk 'NR > 1' /proc/swaps | wc -l; echo ---
            cat /etc/sysctl.d/90-convecthub.conf; sysctl -n net.ipv4.ip_forward; echo ---
            cat /etc/modules-load.d/convecthub.conf; echo ---
            cat /etc/apt/apt.conf.d/90convecthub-proxy; echo ---
            cat /etc/systemd/timesyncd.conf.d/convecthub.conf; echo ---
            dpkg-query -W -f='${Package} ${Status}\\n' curl gnupg iptables conntrack socat
            """,
        )
        hosts, swap, sysctl, modules, apt, ntp, packages = report.split("---\n")
        assert hosts.splitlines()[0] == name
        assert expected_block in hosts
        assert swap == "#convecthub-swap-off# /swap.img\tnone\tswap\tsw\t0\t0\n0\n"
        assert "net.ipv4.ip_forward=1" in sysctl and sysctl.endswith("\n1\n")
        assert modules == "overlay\nbr_netfilter\n"
        assert apt == f'Acquire::http::Proxy "{fleet.apt_proxy}";\n'
        assert ntp == f"[Time]\nNTP={fleet.gateway}\n"
        assert packages.count("install ok installed") == 5
    summary = outputs["nodes"]
    assert summary["worker1"]["gpus"] == [
        {"slot": "0000:3b:00.0", "class": "0302", "vendor": "nvidia", "device": "10de:20b0"}
    ]
    assert summary["master"]["address"] == addresses["master"]
    assert summary["worker2"]["os"] == {"id": "debian", "version": "12"}
    assert outputs["kubeconfig"] == "[secret]"
    assert outputs["apiServer"] == f"https://{addresses['master']}:6443"
    # The hub's self-signed certificate, made on the master for its address.
    assert outputs["hubUrls"]["https"] == f"https://{addresses['master']}/"
    assert outputs["hubAdminPassword"] == "[secret]"
    names = fleet.sh(
        by_name(fleet, "master"),
        "sudo openssl x509 -noout -ext subjectAltName -in /var/lib/convecthub/hub-tls/tls.crt",
    )
    assert names.splitlines()[-1].strip() == f"IP Address:{addresses['master']}"


def test_the_site_becomes_a_k3s_cluster(fleet, deployment, stack_file) -> None:
    """On each node: config.yaml, registries.yaml, the root-only token file, the k3s unit
    running; in the (stand-in) cluster: every node joined with its token, with its labels."""
    deployment.up(stack_file(sandbox_site(fleet)))
    addresses = {name: by_name(fleet, name).address for name in NODE_NAMES}
    for name in NODE_NAMES:
        node = by_name(fleet, name)
        unit = "k3s" if name == "master" else "k3s-agent"
        report = fleet.sh(
            node,
            f"""
            sudo cat /etc/rancher/k3s/config.yaml; echo ---
            sudo cat /etc/rancher/k3s/registries.yaml; echo ---
            sudo stat -c '%a %U' /etc/rancher/k3s/cluster-token; echo ---
            systemctl is-active {unit}; systemctl is-enabled {unit}; echo ---
            ls /var/lib/rancher/k3s/agent/images; k3s --version | head -n 1
            """,
        )
        config, registries, token, unit_state, installed = report.split("---\n")
        config_lines = config.splitlines()
        assert config_lines[:2] == [f"node-name: {name}", f"node-ip: {addresses[name]}"]
        if name == "master":
            assert "server:" not in config
        else:
            assert f"server: https://{addresses['master']}:6443" in config_lines
        assert "token-file: /etc/rancher/k3s/cluster-token" in config_lines
        assert registries == (
            f"mirrors:\n  docker.io:\n    endpoint:\n    - http://{fleet.gateway}:5000\n"
        )
        assert token == "600 root\n"
        assert unit_state == "active\nenabled\n"
        assert installed == (
            f"k3s-airgap-images-amd64.tar.zst\nk3s version {DEFAULT_K3S_VERSION} (standin)\n"
        )
    for name in NODE_NAMES:
        assert cluster_node(fleet, name)["ready"] is True
    labels = {name: cluster_node(fleet, name)["labels"] for name in NODE_NAMES}
    assert labels["worker1"] == {
        "kubernetes.io/hostname": "worker1",
        "gpu": "true",
        "gpu-type": "A100",
        "org": "public",
    }
    assert labels["worker2"] == {"kubernetes.io/hostname": "worker2", "cpu": "true"}
    # The GPU node: its (stand-in) driver answered, the toolkit was there, and k3s runs every
    # pod on the NVIDIA runtime.
    worker1 = fleet.sh(by_name(fleet, "worker1"), "cat /etc/rancher/k3s/config.yaml")
    assert "default-runtime: nvidia" in worker1.splitlines()
    assert "default-runtime" not in fleet.sh(
        by_name(fleet, "worker2"), "cat /etc/rancher/k3s/config.yaml"
    )
    kubeconfig = deployment.state[f"{COMMAND}::master-k3s-kubeconfig"].outputs["stdout"]
    assert f"server: https://{addresses['master']}:6443" in kubeconfig


def test_a_second_up_runs_nothing_and_scripts_twice_change_nothing(
    fleet, deployment, stack_file
) -> None:
    site = stack_file(sandbox_site(fleet))
    deployment.up(site)
    deployment.commands.clear()
    deployment.up(site)
    assert deployment.commands == []
    # By hand, as the program runs them: each script twice; the second run writes nothing.
    node = by_name(fleet, "worker1")
    for step in ("facts", "os-prep", "k3s-install"):
        inputs = deployment.state[f"{COMMAND}::worker1-{step}"].inputs
        for attempt in (1, 2):
            before = files_of(fleet, node)
            result = run(
                *fleet.ssh_command(node, "convect"),
                inputs["create"],
                input=inputs["stdin"],
                check=False,
                timeout=300,
            )
            assert result.returncode == 0, result.stderr
            changed = sorted(set(files_of(fleet, node).splitlines()) ^ set(before.splitlines()))
            if attempt == 2:
                assert changed == [], f"{step} changed files when run again"


def test_a_changed_setting_reruns_only_what_the_graph_says(fleet, deployment, stack_file):
    config = sandbox_site(fleet)
    deployment.up(stack_file(config))

    config["convecthub:os"]["ntpServers"] = [fleet.gateway, "ntp.example"]
    deployment.commands.clear()
    deployment.up(stack_file(config))
    assert keys(deployment.commands) == [("update", f"{n}-os-prep") for n in NODE_NAMES]
    assert "NTP=" + fleet.gateway + " ntp.example" in fleet.sh(
        by_name(fleet, "worker2"), "cat /etc/systemd/timesyncd.conf.d/convecthub.conf"
    )

    # A label: only that node's membership, through the cluster.
    config["convecthub:nodes"][1]["labels"] = {"org": "research"}
    deployment.commands.clear()
    deployment.up(stack_file(config))
    assert keys(deployment.commands) == [("update", "worker1-k3s-membership")]
    assert cluster_node(fleet, "worker1")["labels"]["org"] == "research"

    # A k3s version (and the bundle that carries it): only the bundles and the installs.
    build_bundle(fleet.work_dir / "k3s-bundle", NEXT_PATCH)
    config["convecthub:k3s"]["version"] = NEXT_PATCH
    deployment.commands.clear()
    deployment.up(stack_file(config))
    assert keys(deployment.commands) == sorted(
        ("update", f"{n}-k3s-{step}") for n in NODE_NAMES for step in ("bundle", "install")
    )
    for node in fleet.nodes:
        version = fleet.sh(node, "k3s --version | head -n 1")
        assert version == f"k3s version {NEXT_PATCH} (standin)\n"
        assert cluster_node(fleet, "worker1")["labels"]["org"] == "research"

    # One node's interface: its preflight runs again (its address is the same, so no hosts
    # block changes) and its k3s, now pinned to that interface for flannel, and nothing else.
    config["convecthub:nodes"][2]["iface"] = "host0"
    deployment.commands.clear()
    deployment.up(stack_file(config))
    assert keys(deployment.commands) == [
        ("update", "worker2-facts"),
        ("update", "worker2-k3s-install"),
    ]
    worker2 = by_name(fleet, "worker2")
    assert "flannel-iface: host0" in fleet.sh(worker2, "cat /etc/rancher/k3s/config.yaml")


def k3s_leftovers(fleet: SandboxFleet, node) -> str:
    return fleet.sh(
        node,
        "ls -d /etc/rancher/k3s /var/lib/rancher/k3s /usr/local/bin/k3s* "
        "/etc/systemd/system/k3s* ~convect/.convecthub-bundle 2>/dev/null || true",
    )


def test_a_removed_node_leaves_the_cluster_and_can_join_again(
    fleet, deployment, stack_file
) -> None:
    config = sandbox_site(fleet)
    deployment.up(stack_file(config))
    worker2 = by_name(fleet, "worker2")
    removed = copy.deepcopy(config)
    removed["convecthub:nodes"] = config["convecthub:nodes"][:2]
    deployment.commands.clear()
    deployment.up(stack_file(removed))
    assert keys(deployment.commands) == sorted(
        [
            ("delete", "worker2-k3s-membership"),
            ("delete", "worker2-k3s-install"),
            ("delete", "worker2-os-prep"),
            ("update", "master-os-prep"),  # the hosts block loses worker2
            ("update", "worker1-os-prep"),
        ]
    )
    order = [key.split("::")[1] for action, key in deployment.commands if action == "delete"]
    assert order == ["worker2-k3s-membership", "worker2-k3s-install", "worker2-os-prep"]
    calls = fleet.sh(by_name(fleet, "master"), f"sudo cat {K3S_STORE}/calls.log")
    assert "drain worker2 --ignore-daemonsets" in calls
    assert "delete node worker2" in calls
    assert fleet.sh(by_name(fleet, "master"), f"ls {K3S_STORE}") == (
        "calls.log\nmaster.json\nworker1.json\n"
    )
    assert k3s_leftovers(fleet, worker2) == ""

    # Back in the config, it joins again under its name.
    deployment.commands.clear()
    deployment.up(stack_file(config))
    assert ("create", "worker2-k3s-membership") in keys(deployment.commands)
    assert cluster_node(fleet, "worker2")["ready"] is True


def test_destroy_leaves_every_node_clean(fleet, deployment, stack_file) -> None:
    before = {node.name: fleet.sh(node, "hostname; cat /etc/fstab") for node in fleet.nodes}
    deployment.up(stack_file(sandbox_site(fleet)))
    deployment.commands.clear()
    deployment.destroy()
    assert keys(deployment.commands) == sorted(
        [
            ("delete", f"{n}-{step}")
            for n in NODE_NAMES
            for step in ("os-prep", "k3s-install", "k3s-membership")
        ]
        + [("delete", "worker1-gpu-runtime"), ("delete", "hub-certificate")]
    )
    order = [key.split("::")[1] for _, key in deployment.commands]
    for name in NODE_NAMES:  # drained and deleted from the cluster, then uninstalled
        assert order.index(f"{name}-k3s-membership") < order.index(f"{name}-k3s-install")
        assert order.index(f"{name}-k3s-install") < order.index(f"{name}-os-prep")
    assert deployment.state == {}
    for node in fleet.nodes:
        assert fleet.sh(node, "hostname; cat /etc/fstab") == before[node.name]
        assert HOSTS_BLOCK not in fleet.sh(node, "cat /etc/hosts")
        assert k3s_leftovers(fleet, node) == ""
        leftovers = fleet.sh(
            node,
            "find / -xdev \\( -path /proc -o -path /sys \\) -prune -o -name '*convecthub*' -print",
        )
        assert leftovers == ""


def test_apt_mirror_and_proxies_are_applied_and_undone(fleet, deployment, stack_file) -> None:
    config = sandbox_site(fleet)
    # No aptProxy: apt goes through the site's HTTP proxy (here the sandbox's apt cache).
    config["convecthub:os"] = {
        "aptMirror": "http://deb.debian.org/debian",
        "httpProxy": fleet.apt_proxy,
        "noProxy": ["10.0.0.0/8"],
    }
    node = by_name(fleet, "worker2")
    original = fleet.sh(node, "ls /etc/apt/sources.list.d; cat /etc/apt/sources.list.d/*")
    deployment.up(stack_file(config))
    report = fleet.sh(
        node,
        """
        ls /etc/apt/sources.list.d; echo ---
        cat /etc/apt/sources.list.d/convecthub-mirror.sources; echo ---
        cat /etc/apt/apt.conf.d/90convecthub-proxy; echo ---
        grep -i proxy /etc/environment; echo ---
        sudo cat /etc/systemd/system/k3s-agent.service.env; echo ---
        apt-get -q update >/dev/null && echo apt-works
        """,
    )
    listing, mirror, apt_proxy, environment, k3s_env, apt = report.split("---\n")
    assert listing == "convecthub-mirror.sources\n"
    assert mirror == (
        "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm "
        "bookworm-updates\nComponents: main\nSigned-By: "
        "/usr/share/keyrings/debian-archive-keyring.gpg\n"
    )
    assert apt_proxy == f'Acquire::http::Proxy "{fleet.apt_proxy}";\n'
    no_proxy = "localhost,127.0.0.1,::1,10.42.0.0/16,10.43.0.0/16,.svc,.cluster.local,10.0.0.0/8"
    assert environment.splitlines() == [
        f"http_proxy={fleet.apt_proxy}",
        f"HTTP_PROXY={fleet.apt_proxy}",
        f"no_proxy={no_proxy}",
        f"NO_PROXY={no_proxy}",
    ]
    # k3s and its containerd start with the proxy too.
    assert k3s_env == f"HTTP_PROXY={fleet.apt_proxy}\nNO_PROXY={no_proxy}\n"
    assert apt == "apt-works\n"

    deployment.destroy()
    assert fleet.sh(node, "ls /etc/apt/sources.list.d; cat /etc/apt/sources.list.d/*") == original
    assert "proxy" not in fleet.sh(node, "cat /etc/environment 2>/dev/null || true").lower()


def test_an_unreachable_node_fails_naming_it_and_changes_nothing(
    fleet, deployment, stack_file
) -> None:
    config = sandbox_site(fleet)
    ghost = fleet.gateway.rsplit(".", 1)[0] + ".99"  # inside the sandbox subnet, no machine
    ghost_ssh = {"hostKey": sample_host_key("ghost")}
    config["convecthub:nodes"].append(
        {"name": "ghost", "host": ghost, "ssh": ghost_ssh, "roles": ["agent"]}
    )
    with pytest.raises(CommandError) as raised:
        deployment.up(stack_file(config))
    assert str(raised.value) == (
        f"{COMMAND} (ghost-facts): cannot log in to convect@{ghost}:22: ssh: connect to host "
        f"{ghost} port 22: No route to host"
    )
    assert not [key for _, key in deployment.commands if key.endswith("-os-prep")]
    for node in fleet.nodes:
        assert HOSTS_BLOCK not in fleet.sh(node, "cat /etc/hosts 2>/dev/null || true")


def test_a_wrong_key_fails_naming_the_node(fleet, deployment, stack_file, tmp_path) -> None:
    wrong = tmp_path / "id_wrong"
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong))
    config = sandbox_site(fleet)
    config["convecthub:nodes"][1]["ssh"]["privateKeyFile"] = str(wrong)
    with pytest.raises(CommandError) as raised:
        deployment.up(stack_file(config))
    address = by_name(fleet, "worker1").address
    assert str(raised.value) == (
        f"{COMMAND} (worker1-facts): cannot log in to convect@{address}:22: "
        f"convect@{address}: Permission denied (publickey,password)."
    )
    assert not [key for _, key in deployment.commands if key.endswith("-os-prep")]


def test_a_run_killed_half_way_converges_on_the_next_up(fleet, deployment, stack_file) -> None:
    site = stack_file(sandbox_site(fleet))
    node = by_name(fleet, "worker2")
    failure: list[BaseException] = []

    def up() -> None:
        try:
            deployment.up(site)
        except BaseException as error:  # handed to the test thread
            failure.append(error)

    # A watcher on the node itself waits for dpkg to start installing, then cuts everything
    # off as a lost link or a power cut would: no race with the speed of the install.
    watcher = subprocess.Popen(
        [*fleet.ssh_command(node), "bash -s"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert watcher.stdin is not None
    watcher.stdin.write(
        "seen=no\n"
        "for _ in $(seq 15000); do pgrep -x dpkg >/dev/null && { seen=yes; break; }; "
        "sleep 0.02; done\n"
        '[ "$seen" = yes ] || exit 1\n'
        "pkill -KILL -f 'bash -s apply'; pkill -KILL -x apt-get; pkill -KILL -x dpkg\n"
        "echo killed\n"
    )
    watcher.stdin.close()
    runner = threading.Thread(target=up)
    runner.start()
    runner.join(timeout=600)
    watched = watcher.wait(timeout=60)
    assert watcher.stderr is not None
    assert watched == 0, f"dpkg was never seen installing ({watched}: {watcher.stderr.read()})"
    assert watcher.stdout is not None and watcher.stdout.read() == "killed\n"
    assert failure and isinstance(failure[0], CommandError)
    assert str(failure[0]).startswith(
        f"{COMMAND} (worker2-os-prep): cut off on {node.address} (connection lost or the "
        "command killed)"
    )

    deployment.commands.clear()
    deployment.up(site)
    assert ("create", "worker2-os-prep") in keys(deployment.commands)
    state = fleet.sh(
        node,
        "dpkg --audit; dpkg-query -W -f='${Status}\\n' curl socat; grep -c convecthub /etc/hosts",
    )
    assert state == "install ok installed\ninstall ok installed\n2\n"
    deployment.commands.clear()
    deployment.up(site)
    assert deployment.commands == []


def test_facts_stop_a_machine_that_is_not_what_the_config_says(
    fleet, deployment, stack_file
) -> None:
    config = sandbox_site(fleet)
    config["convecthub:nodes"][0]["arch"] = "arm64"
    with pytest.raises(CommandError) as raised:
        deployment.up(stack_file(config))
    assert str(raised.value) == (
        f"{COMMAND} (master-facts): exited 1: convecthub: node master: is amd64, but its stack "
        "config says arch: arm64: set arch: amd64 for it in convecthub:nodes"
    )
    assert not [key for _, key in deployment.commands if key.endswith("-os-prep")]


def test_the_sandbox_leaves_nothing_behind() -> None:
    with SandboxFleet(1) as fleet:
        node = fleet.nodes[0]
        pid, root, bridge = node.pid, node.root, fleet.bridge
        assert json.loads(fleet.sh(node, "echo '{\"up\": true}'")) == {"up": True}
    assert subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode != 0
    assert not root.is_mount()
    assert run("ip", "link", "show", bridge, check=False).returncode != 0
    assert Deployment().state == {}


HOLD_FLEET = """
import sys, time
from tests.sandbox.fleet import SandboxFleet
with SandboxFleet(1, work_dir=__import__('pathlib').Path(sys.argv[1])) as fleet:
    print(fleet.nodes[0].pid, flush=True)
    time.sleep(600)
"""


def _held_fleet(work_dir) -> tuple[subprocess.Popen, int]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_FLEET, str(work_dir)],
        cwd=PROJECT_DIR,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    return holder, int(holder.stdout.readline())


def _nothing_left(work_dir, nspawn_pid: int) -> None:
    assert not alive(nspawn_pid)
    assert not mounts_under(work_dir)
    assert run("ip", "link", "show", "chsb0", check=False).returncode != 0


def test_a_terminated_run_tears_its_fleet_down(tmp_path) -> None:
    holder, nspawn_pid = _held_fleet(tmp_path / "run")
    holder.send_signal(signal.SIGTERM)
    assert holder.wait(timeout=60) == 128 + signal.SIGTERM
    _nothing_left(tmp_path / "run", nspawn_pid)


def test_a_killed_run_is_cleaned_up_by_the_next(tmp_path) -> None:
    holder, nspawn_pid = _held_fleet(tmp_path / "run")
    holder.kill()
    holder.wait(timeout=60)
    assert alive(nspawn_pid)  # SIGKILL left the node running
    with SandboxFleet(1, work_dir=tmp_path / "run"):
        assert not alive(nspawn_pid)
    _nothing_left(tmp_path / "run", nspawn_pid)
