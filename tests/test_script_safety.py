"""The node scripts take every value as data, write all or nothing, finish what a cut-off run
left undone, and keep credentials root's (issue 14). Each test runs a real script of
components/scripts/ as root in a private mount namespace (tests/standins/private-root.sh)
against the stand-ins of tests/standins/, and feeds it what a hostile or broken config, a full
disk or a lost connection would."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from components.k3s import to_yaml
from components.remote_script import script_stdin
from tests.conftest import STANDINS, needs_private_root
from tests.standin_node import StandinNode

pytestmark = needs_private_root

NODE = "node1"
TOKEN = "token-that-must-not-be-printed"
K3S_CONFIG = "node-name: node1\nnode-ip: 10.0.0.1\ntoken-file: /etc/rancher/k3s/cluster-token"
REGISTRIES = "/etc/rancher/k3s/registries.yaml"
K3S_ENV = "/etc/systemd/system/k3s-agent.service.env"
DROPIN = "/etc/systemd/system/docker.service.d/convecthub-proxy.conf"
APT_PROXY = "/etc/apt/apt.conf.d/90convecthub-proxy"
TIMESYNCD = "/etc/systemd/timesyncd.conf.d/convecthub.conf"
CHRONY = "/etc/chrony/sources.d/convecthub.sources"
HOSTILE_NO_PROXY = '10.0.0.0/8"\nExecStartPre=/bin/sh -c "id >/tmp/x'


class Node(StandinNode):
    """A stand-in node that also runs os-prep.sh and k3s-install.sh: stand-ins for sysctl,
    swap and time keeping (tests/standins/os/, never the host's own), chrony on request, and
    /etc on a full disk on request (private-root.sh's PRIVATE_ROOT_FULL_ETC)."""

    def __init__(self, work: Path, chrony: bool = False):
        super().__init__(work)
        env_file = self.upper("/etc/convecthub-standin.env")
        env_file.write_text(env_file.read_text() + f"STANDIN_K3S_BINARY={STANDINS}/k3s/k3s\n")
        self.chrony = chrony

    node_name = NODE

    def run(self, script: str, action: str | None, full_etc: str = "", **env: str):
        standins = [STANDINS / "os", *([STANDINS / "chrony"] if self.chrony else [])]
        full = {"PRIVATE_ROOT_FULL_ETC": full_etc} if full_etc else {}
        return self.run_with(script, action, env, standins, full)

    def text(self, path: str) -> str | None:
        """What the script left at `path` (None when it wrote nothing there)."""
        file = self.upper(path)
        return file.read_text() if file.exists() else None

    def mode(self, path: str) -> str:
        return oct(stat.S_IMODE(self.upper(path).stat().st_mode))

    @property
    def units(self) -> list[str]:
        log = self.state / "systemctl.log"
        return log.read_text().splitlines() if log.exists() else []

    def interrupt(self, at: str, how: str) -> None:
        """Cut the next run off at a stand-in call (tests/standins/interrupt.sh)."""
        (self.state / f"interrupt.{at}").write_text(how)


@pytest.fixture
def node(tmp_path: Path) -> Node:
    return Node(tmp_path / "node")


def refusal(result: subprocess.CompletedProcess) -> str:
    """The one line a refused run ends with (it must be the only thing it says)."""
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr
    return result.stderr


# ---- the scripts' environments ---------------------------------------------------------------


def os_prep(node: Node, action: str = "apply", full_etc: str = "", **env: str):
    settings = {"CONVECTHUB_SET_HOSTNAME": "false", "CONVECTHUB_HOSTS": "node1=10.0.0.1"}
    return node.run("os-prep.sh", action, full_etc=full_etc, **{**settings, **env})


def k3s(node: Node, action: str = "apply", full_etc: str = "", **env: str):
    settings = {
        "CONVECTHUB_K3S_ROLE": "agent",
        "CONVECTHUB_K3S_VERSION": "v1.31.4+k3s1",
        "CONVECTHUB_K3S_CONFIG": K3S_CONFIG,
        "CONVECTHUB_K3S_TOKEN": TOKEN,
        "CONVECTHUB_INSTALL_SCRIPT_URL": f"file://{STANDINS}/k3s/install.sh",
        "CONVECTHUB_READY_TIMEOUT": "10",
    }
    return node.run("k3s-install.sh", action, full_etc=full_etc, **{**settings, **env})


@pytest.fixture
def key(tmp_path: Path) -> Path:
    """An ASCII-armoured block, as Docker's key URL serves one."""
    data = tmp_path / "key.bin"
    data.write_bytes(b"stand-in key material")
    armoured = tmp_path / "key.asc"
    subprocess.run(
        ["gpg", "--batch", "--yes", "--enarmor", "-o", str(armoured), str(data)], check=True
    )
    return armoured


def docker(node: Node, key: Path, daemon: dict | None = None, **env: str):
    return node.run(
        "docker-engine.sh",
        "apply",
        CONVECTHUB_DOCKER_REPO="http://mirror.example/docker",
        CONVECTHUB_DOCKER_KEY_URL=f"file://{key}",
        CONVECTHUB_DOCKER_DAEMON_JSON=json.dumps(daemon or {}),
        **env,
    )


def storage(node: Node, full_etc: str = "", **env: str):
    settings = {
        "CONVECTHUB_NFS_SOURCE": "10.0.0.5:/export/k8s",
        "CONVECTHUB_MOUNT_POINT": str(node.work / "data-k8s"),
        "CONVECTHUB_NFS_OPTIONS": "hard,_netdev",
    }
    return node.run("storage-mount.sh", "apply", full_etc=full_etc, **{**settings, **env})


# ---- A. values are data ----------------------------------------------------------------------


def kubeconfig(tmp_path: Path, api_server: str) -> subprocess.CompletedProcess:
    source = tmp_path / "k3s.yaml"
    source.write_text(
        "apiVersion: v1\nclusters:\n- cluster:\n    server: https://127.0.0.1:6443\n"
        "  name: default\nkind: Config\n"
    )
    env = {"CONVECTHUB_NODE_NAME": NODE, "CONVECTHUB_KUBECONFIG": str(source)}
    return subprocess.run(
        ["/bin/bash", "-s"],
        input=script_stdin("k3s-kubeconfig.sh", {**env, "CONVECTHUB_API_SERVER": api_server}),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    "address",
    [
        "[fe80::1%x#;e touch {dir}/injected;#]",  # the reviewer's apiEndpoint, as a URL host
        "10.0.0.10:6443#;e touch {dir}/injected;#",
        "10.0.0.10\n    e touch {dir}/injected",
        "10.0.0.10/`touch {dir}/injected`",
        "10.0.0.10/$(touch {dir}/injected)",
    ],
)
def test_an_api_server_is_never_sed_code(tmp_path, address) -> None:
    url = f"https://{address.format(dir=tmp_path)}:6443"
    result = kubeconfig(tmp_path, url)
    assert not (tmp_path / "injected").exists()
    line = refusal(result)
    assert line.startswith(f"convecthub: node {NODE}: CONVECTHUB_API_SERVER ")
    assert line.endswith(("refused", "give it on one line"))
    assert result.stdout == ""


def test_an_api_server_url_reaches_the_kubeconfig_as_it_is(tmp_path) -> None:
    # & is sed's "what matched" in a replacement: the old script wrote the local URL back.
    for url in ("https://10.0.0.10:6443/&x", "https://[fd00::10]:6443", "https://api:6443/a;b=c"):
        result = kubeconfig(tmp_path, url)
        ok(result)
        assert yaml.safe_load(result.stdout)["clusters"][0]["cluster"]["server"] == url


def test_a_proxy_value_never_adds_lines_to_dockers_drop_in(node, key) -> None:
    result = docker(
        node, key, CONVECTHUB_HTTP_PROXY="http://proxy:3128", CONVECTHUB_NO_PROXY=HOSTILE_NO_PROXY
    )
    assert refusal(result) == (
        f"convecthub: node {NODE}: CONVECTHUB_NO_PROXY holds a newline or another control "
        "character: refused, as it would add lines to what root reads; give it on one line"
    )
    assert node.text(DROPIN) is None
    assert not [call for call in node.units if "restart" in call]


def test_a_proxy_value_is_quoted_for_systemd_in_the_drop_in(node, key) -> None:
    proxy = "http://user:p%25ss@proxy:3128/?a=$b&c=(d)"
    ok(docker(node, key, CONVECTHUB_HTTPS_PROXY=proxy, CONVECTHUB_NO_PROXY="localhost,.svc"))
    assert node.text(DROPIN) == (
        "[Service]\n"
        'Environment="HTTPS_PROXY=http://user:p%%25ss@proxy:3128/?a=$b&c=(d)"\n'
        'Environment="NO_PROXY=localhost,.svc"\n'
    )
    assert node.mode(DROPIN) == "0o600"  # the URL carries a password


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CONVECTHUB_NO_PROXY", HOSTILE_NO_PROXY),
        ("CONVECTHUB_NO_PROXY", "10.0.0.0/8;touch /tmp/x"),
        ("CONVECTHUB_HTTP_PROXY", 'http://proxy:3128";\nAPT::Update::Pre-Invoke {"id";};'),
        ("CONVECTHUB_HTTP_PROXY", "http://proxy:3128/$(id)`id`"),
        ("CONVECTHUB_APT_MIRROR", "http://mirror/ubuntu\nURIs: http://evil/ubuntu"),
        ("CONVECTHUB_PACKAGES", "curl -oAPT::Update::Pre-Invoke::=id"),
        ("CONVECTHUB_NTP_SERVERS", "10.0.0.1\n[Time]\nRootDistanceMaxSec=1"),
        ("CONVECTHUB_NTP_SERVERS", "10.0.0.1 *"),
        ("CONVECTHUB_NTP_SERVERS", "10.0.0.1 time#1"),
    ],
)
def test_os_prep_refuses_a_value_that_would_be_code_before_changing_anything(
    node, variable, value
) -> None:
    line = refusal(os_prep(node, **{variable: value}))
    assert line.startswith(f"convecthub: node {NODE}: {variable}")
    assert line.endswith(("refused", "give it on one line"))
    for path in ("/etc/environment", "/etc/hosts", APT_PROXY, TIMESYNCD):
        assert node.text(path) is None, path
    assert node.calls == ""  # no sysctl, no apt-get: nothing ran


def test_the_environment_file_gets_plain_proxy_lines_only(node) -> None:
    ok(
        os_prep(
            node,
            CONVECTHUB_HTTP_PROXY="http://proxy:3128",
            CONVECTHUB_HTTPS_PROXY="http://user:secret@proxy:3129",
            CONVECTHUB_NO_PROXY="localhost,10.0.0.0/8,.svc",
        )
    )
    environment = node.text("/etc/environment") or ""
    assert "secret" not in environment
    assert [line for line in environment.splitlines() if "proxy" in line.lower()] == [
        "http_proxy=http://proxy:3128",
        "HTTP_PROXY=http://proxy:3128",
        "no_proxy=localhost,10.0.0.0/8,.svc",
        "NO_PROXY=localhost,10.0.0.0/8,.svc",
    ]
    # apt is root's: it gets the proxy with its password, in a file only root reads.
    assert node.text(APT_PROXY) == (
        'Acquire::http::Proxy "http://proxy:3128";\n'
        'Acquire::https::Proxy "http://user:secret@proxy:3129";\n'
    )
    assert node.mode(APT_PROXY) == "0o600"


@pytest.mark.parametrize(
    "hosts",
    [
        "node1=fe80::1%x,github.com=203.0.113.66",  # the reviewer's zone id
        "node1=10.0.0.1\n203.0.113.66\tgithub.com",
        "node1=10.0.0.1 github.com",
        "node1=10.0.0.1#,node2=10.0.0.2",
        "github.com=203.0.113.66",
        "node1=evil.example.com",
    ],
)
def test_a_hosts_entry_never_adds_a_name_to_etc_hosts(node, hosts) -> None:
    ok(os_prep(node, CONVECTHUB_HOSTS="node1=10.0.0.1,node2=fd00::2,node3=fe80::3%eth1"))
    before = node.text("/etc/hosts") or ""
    assert "10.0.0.1\tnode1\nfd00::2\tnode2\nfe80::3%eth1\tnode3\n# END convecthub" in before
    line = refusal(os_prep(node, CONVECTHUB_HOSTS=hosts))
    assert line.startswith(f"convecthub: node {NODE}: CONVECTHUB_HOSTS")
    assert node.text("/etc/hosts") == before


def test_ntp_servers_reach_chrony_and_timesyncd_one_per_word(tmp_path) -> None:
    chrony = Node(tmp_path / "chrony", chrony=True)
    ok(os_prep(chrony, CONVECTHUB_NTP_SERVERS="10.0.0.1  ntp.example.com"))
    assert chrony.text(CHRONY) == "server 10.0.0.1 iburst\nserver ntp.example.com iburst\n"
    refused = refusal(os_prep(chrony, CONVECTHUB_NTP_SERVERS="10.0.0.1 * iburst\nconfdir /tmp"))
    assert refused.startswith(f"convecthub: node {NODE}: CONVECTHUB_NTP_SERVERS")
    assert chrony.text(CHRONY) == "server 10.0.0.1 iburst\nserver ntp.example.com iburst\n"
    timesyncd = Node(tmp_path / "timesyncd")
    ok(os_prep(timesyncd, CONVECTHUB_NTP_SERVERS="10.0.0.1 fd00::1"))
    assert timesyncd.text(TIMESYNCD) == "[Time]\nNTP=10.0.0.1 fd00::1\n"
    refused = refusal(os_prep(timesyncd, CONVECTHUB_NTP_SERVERS="10.0.0.1\nFallbackNTP=evil"))
    assert refused.startswith(f"convecthub: node {NODE}: CONVECTHUB_NTP_SERVERS")
    assert timesyncd.text(TIMESYNCD) == "[Time]\nNTP=10.0.0.1 fd00::1\n"


def test_a_proxy_value_never_adds_lines_to_k3s_service_environment(node) -> None:
    line = refusal(
        k3s(node, CONVECTHUB_HTTPS_PROXY="http://proxy:3128", CONVECTHUB_NO_PROXY=HOSTILE_NO_PROXY)
    )
    assert line.startswith(f"convecthub: node {NODE}: CONVECTHUB_NO_PROXY holds a newline")
    assert node.text(K3S_ENV) is None
    assert node.text("/etc/rancher/k3s/config.yaml") is None


def test_k3s_service_environment_reads_back_each_value_as_given(node) -> None:
    proxy = "http://user:pa$$w0rd'x@proxy:3128/?q=(1)&r=2;s=*"
    ok(k3s(node, CONVECTHUB_HTTPS_PROXY=proxy, CONVECTHUB_NO_PROXY="localhost,10.0.0.0/8"))
    env_file = node.upper(K3S_ENV)
    assert oct(stat.S_IMODE(env_file.stat().st_mode)) == "0o600"
    assert "NO_PROXY=localhost,10.0.0.0/8\n" in env_file.read_text()
    # systemd reads an EnvironmentFile= value the way sh reads a double-quoted word.
    read_back = subprocess.run(
        ["/bin/sh", "-c", '. "$1"; printf %s "$HTTPS_PROXY"', "sh", str(env_file)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert read_back.stdout == proxy


def fstab_lines(node: Node) -> list[str]:
    return [line for line in (node.text("/etc/fstab") or "").splitlines() if "nfs" in line]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CONVECTHUB_NFS_SOURCE", "10.0.0.5:/export/k8s\n/dev/sda1 /etc ext4 defaults 0 0"),
        ("CONVECTHUB_NFS_OPTIONS", "hard\n/dev/sda1 /etc ext4 defaults 0 0"),
        ("CONVECTHUB_NFS_OPTIONS", "hard 0 0\n/dev/sda1"),
        ("CONVECTHUB_NFS_OPTIONS", "hard,exec #"),
        ("CONVECTHUB_MOUNT_POINT", "relative/dir"),
    ],
)
def test_a_storage_value_never_adds_an_fstab_line(node, variable, value) -> None:
    line = refusal(storage(node, **{variable: value}))
    assert line.startswith(f"convecthub: node {NODE}: {variable}")
    assert fstab_lines(node) == []
    assert "mount" not in node.calls


def test_fstab_fields_are_escaped_as_libmount_reads_them(node) -> None:
    mount_point = node.work / "data#k8s"
    source = "10.0.0.5:/my export\\x"
    ok(storage(node, CONVECTHUB_NFS_SOURCE=source, CONVECTHUB_MOUNT_POINT=str(mount_point)))
    escaped = str(mount_point).replace("#", "\\043")
    assert fstab_lines(node) == [
        f"10.0.0.5:/my\\040export\\134x\t{escaped}\tnfs\thard,_netdev\t0\t0"
    ]
    # The stand-in mount reads the line back as libmount does: the same source and target.
    assert (node.state / "mounts").read_text() == f"{mount_point} {source}\n"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CONVECTHUB_K3S_CONFIG", K3S_CONFIG + "\rserver: https://evil:6443"),
        ("CONVECTHUB_REGISTRIES", "mirrors:\r  docker.io: {}"),
        ("CONVECTHUB_K3S_TOKEN", "token\nserver: https://evil:6443"),
        ("CONVECTHUB_K3S_VERSION", "v1.31.4+k3s1 INSTALL_K3S_EXEC=server"),
    ],
)
def test_k3s_yaml_documents_are_written_as_the_dumper_made_them(node, variable, value) -> None:
    """config.yaml and registries.yaml are made by components/k3s.py with yaml.safe_dump
    (to_yaml), which quotes and escapes every value: whatever one holds, the file reads back
    as the same mapping. A document with a control character the dumper never writes raw (a
    carriage return), a token or version of more than one line or word, is refused."""
    hostile = "x\"\ny: 1\n# ', $(id) `id` ; % \\ #\r"
    config = {"node-name": NODE, "node-label": [hostile], "kubelet-arg": [f"a={hostile}"]}
    registries = {
        "mirrors": {"docker.io": {"endpoint": [f"http://m/{hostile}"]}},
        "configs": {"m": {"auth": {"username": hostile, "password": hostile}}},
    }
    ok(k3s(node, CONVECTHUB_K3S_CONFIG=to_yaml(config), CONVECTHUB_REGISTRIES=to_yaml(registries)))
    assert yaml.safe_load(node.text("/etc/rancher/k3s/config.yaml") or "") == config
    assert yaml.safe_load(node.text(REGISTRIES) or "") == registries
    before = node.text("/etc/rancher/k3s/config.yaml")
    line = refusal(k3s(node, **{variable: value}))
    assert line.startswith(f"convecthub: node {NODE}: {variable}")
    assert node.text("/etc/rancher/k3s/config.yaml") == before


# ---- B. all or nothing on a full disk --------------------------------------------------------

FULL = "1m"  # the size of the tmpfs /etc's changes go to, then filled (private-root.sh)


def full_disk_line(result: subprocess.CompletedProcess, path: str) -> None:
    assert refusal(result) == (
        f"convecthub: node {NODE}: cannot write {path} (No space left on device): it is left "
        "as it was"
    )


def test_a_full_disk_leaves_fstab_as_it_was(node) -> None:
    fstab = node.upper("/etc/fstab")
    fstab.write_text("".join(f"# the site's own line {n:04d} {'.' * 80}\n" for n in range(120)))
    ok(storage(node))
    before = fstab.read_bytes()
    assert len(before) > 12 * 1024
    result = storage(node, full_etc=FULL, CONVECTHUB_NFS_SOURCE="10.0.0.6:/export/k8s")
    full_disk_line(result, "/etc/fstab")
    assert fstab.read_bytes() == before
    assert not list(fstab.parent.glob("fstab.convecthub.*"))
    # The full tmpfs lived in the run's private mount namespace only.
    assert str(node.work) not in Path("/proc/self/mountinfo").read_text()


def test_a_full_disk_leaves_etc_hosts_as_it_was(node) -> None:
    ok(os_prep(node))
    hosts = node.upper("/etc/hosts")
    before = hosts.read_bytes()
    result = os_prep(node, full_etc=FULL, CONVECTHUB_HOSTS="node1=10.0.0.1,node2=10.0.0.2")
    full_disk_line(result, "/etc/hosts")
    assert hosts.read_bytes() == before


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"CONVECTHUB_K3S_TOKEN": "another-token"}, "/etc/rancher/k3s/cluster-token"),
        (
            {"CONVECTHUB_K3S_CONFIG": K3S_CONFIG + "\nnode-label: [a=b]"},
            "/etc/rancher/k3s/config.yaml",
        ),
    ],
)
def test_a_full_disk_leaves_k3s_settings_as_they_were(node, change, path) -> None:
    ok(k3s(node))
    before = {
        p: node.text(p) for p in ("/etc/rancher/k3s/cluster-token", "/etc/rancher/k3s/config.yaml")
    }
    restarts = node.units.count("systemctl restart --no-block k3s-agent")
    full_disk_line(k3s(node, full_etc=FULL, **change), path)
    assert {p: node.text(p) for p in before} == before
    assert node.units.count("systemctl restart --no-block k3s-agent") == restarts
    # With room again, the change is made and k3s restarted with it.
    ok(k3s(node, **change))
    assert node.units.count("systemctl restart --no-block k3s-agent") == restarts + 1


# ---- C. a run cut off is finished by the next one --------------------------------------------


@pytest.mark.parametrize(
    ("at", "how"),
    [
        ("systemctl-daemon-reload", "kill"),
        ("systemctl-enable", "kill"),
        ("systemctl-restart", "kill"),
        ("systemctl-restart", "fail"),
    ],
)
def test_k3s_restarts_after_a_run_cut_off_before_its_restart(node, at, how) -> None:
    ok(k3s(node))
    changed = K3S_CONFIG + "\nkubelet-arg: [max-pods=200]"
    node.interrupt(at, how)
    cut = k3s(node, CONVECTHUB_K3S_CONFIG=changed)
    assert cut.returncode != 0
    assert node.text("/etc/rancher/k3s/config.yaml") == changed + "\n"  # written, not applied
    restarts = node.units.count("systemctl restart --no-block k3s-agent")
    ok(k3s(node, CONVECTHUB_K3S_CONFIG=changed))
    assert node.units.count("systemctl restart --no-block k3s-agent") == restarts + 1
    # Applied now: a further run restarts nothing.
    ok(k3s(node, CONVECTHUB_K3S_CONFIG=changed))
    assert node.units.count("systemctl restart --no-block k3s-agent") == restarts + 1


@pytest.mark.parametrize(
    ("at", "how"),
    [
        ("systemctl-daemon-reload", "kill"),
        ("systemctl-restart", "kill"),
        ("systemctl-restart", "fail"),
    ],
)
def test_docker_restarts_after_a_run_cut_off_before_its_restart(node, key, at, how) -> None:
    ok(docker(node, key))
    node.interrupt(at, how)
    assert docker(node, key, {"log-level": "warn"}).returncode != 0
    assert json.loads(node.text("/etc/docker/daemon.json") or "") == {"log-level": "warn"}
    restarts = node.units.count("systemctl restart docker.service")
    ok(docker(node, key, {"log-level": "warn"}))
    assert node.units.count("systemctl restart docker.service") == restarts + 1
    ok(docker(node, key, {"log-level": "warn"}))
    assert node.units.count("systemctl restart docker.service") == restarts + 1


@pytest.mark.parametrize("how", ["kill", "fail"])
def test_storage_remounts_after_a_run_cut_off_before_its_remount(node, how) -> None:
    target = node.work / "data-k8s"
    ok(storage(node))
    node.interrupt("umount", how)
    assert storage(node, CONVECTHUB_NFS_OPTIONS="hard,_netdev,nfsvers=4.1").returncode != 0
    assert fstab_lines(node) == [
        f"10.0.0.5:/export/k8s\t{target}\tnfs\thard,_netdev,nfsvers=4.1\t0\t0"
    ]
    calls = len(node.calls.splitlines())
    ok(storage(node, CONVECTHUB_NFS_OPTIONS="hard,_netdev,nfsvers=4.1"))
    assert node.calls.splitlines()[calls:] == [f"umount {target}", f"mount {target}"]
    ok(storage(node, CONVECTHUB_NFS_OPTIONS="hard,_netdev,nfsvers=4.1"))
    assert len(node.calls.splitlines()) == calls + 2


def test_time_sync_is_reloaded_after_a_run_whose_reload_failed(tmp_path) -> None:
    chrony = Node(tmp_path / "chrony", chrony=True)
    ok(os_prep(chrony, CONVECTHUB_NTP_SERVERS="10.0.0.1"))
    chrony.interrupt("chronyc", "fail")
    ok(os_prep(chrony, CONVECTHUB_NTP_SERVERS="10.0.0.2"))  # chronyd may not run: not an error
    reloads = chrony.calls.count("chronyc reload sources")
    ok(os_prep(chrony, CONVECTHUB_NTP_SERVERS="10.0.0.2"))
    assert chrony.calls.count("chronyc reload sources") == reloads + 1
    ok(os_prep(chrony, CONVECTHUB_NTP_SERVERS="10.0.0.2"))
    assert chrony.calls.count("chronyc reload sources") == reloads + 1

    timesyncd = Node(tmp_path / "timesyncd").has("systemd-timesyncd.service.enabled")
    ok(os_prep(timesyncd, CONVECTHUB_NTP_SERVERS="10.0.0.1"))
    timesyncd.interrupt("systemctl-try-restart", "kill")
    assert os_prep(timesyncd, CONVECTHUB_NTP_SERVERS="10.0.0.2").returncode != 0
    restarts = timesyncd.units.count("systemctl try-restart systemd-timesyncd.service")
    ok(os_prep(timesyncd, CONVECTHUB_NTP_SERVERS="10.0.0.2"))
    assert timesyncd.units.count("systemctl try-restart systemd-timesyncd.service") == restarts + 1


def test_a_node_converged_before_the_records_is_not_restarted(node, key) -> None:
    """A node set up by a version that kept no record of what took effect: its first run with
    this one finds everything in place and running, so it restarts and remounts nothing."""
    ok(k3s(node))
    ok(docker(node, key))
    ok(storage(node))
    for record in node.upper("/var/lib/convecthub/applied").iterdir():
        record.unlink()
    units, calls = len(node.units), node.calls
    ok(k3s(node))
    ok(docker(node, key))
    ok(storage(node))
    assert not [call for call in node.units[units:] if "restart" in call]
    assert node.calls.count("mount") == calls.count("mount")


# ---- D. credentials stay root's --------------------------------------------------------------


def test_files_that_may_hold_credentials_are_root_only(node, key) -> None:
    proxy = "http://user:secret@proxy:3128"
    ok(docker(node, key, CONVECTHUB_HTTP_PROXY=proxy))
    ok(k3s(node, CONVECTHUB_HTTP_PROXY=proxy, CONVECTHUB_REGISTRIES="configs: {}"))
    ok(os_prep(node, CONVECTHUB_HTTP_PROXY=proxy))
    for path in (DROPIN, K3S_ENV, APT_PROXY, REGISTRIES, "/etc/rancher/k3s/cluster-token"):
        assert node.mode(path) == "0o600", path
        assert node.upper(path).stat().st_uid == 0
    assert "secret" not in (node.text("/etc/environment") or "")
    records = node.upper("/var/lib/convecthub/applied")
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in records.iterdir()} == {
        "docker": "0o600",
        "k3s": "0o600",
    }
    # Without a password, apt's proxy file stays readable for apt run by users.
    ok(os_prep(node, CONVECTHUB_HTTP_PROXY="http://proxy:3128"))
    assert node.mode(APT_PROXY) == "0o644"


def test_a_drop_in_written_before_is_made_root_only(node, key) -> None:
    proxy = "http://user:secret@proxy:3128"
    ok(docker(node, key, CONVECTHUB_HTTP_PROXY=proxy))
    node.upper(DROPIN).chmod(0o644)  # as earlier versions left it
    ok(docker(node, key, CONVECTHUB_HTTP_PROXY=proxy))
    assert node.mode(DROPIN) == "0o600"
