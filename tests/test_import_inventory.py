"""`python -m stacks import-inventory`: the seeds' inventories become stack files that render."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from stacks.config import ConfigError
from stacks.importers import cli
from stacks.importers.ansible_ini import read_inventory
from stacks.importers.convecthub_inventory import import_convecthub_inventory
from stacks.importers.openpai import import_openpai
from stacks.importers.result import ImportResult, SecretToSet
from stacks.importers.stack_document import stack_document
from stacks.render import evaluate, format_text
from stacks.stackfile import read_stack_file
from tests.conftest import FAKE_KEY, PROJECT_DIR

EXAMPLES = PROJECT_DIR / "examples"
SEED_INVENTORY = EXAMPLES / "convecthub-inventory.ini"
SEED_STACK = EXAMPLES / "Pulumi.seed-vagrant.yaml"
OPENPAI = EXAMPLES / "openpai"
SEED_TOKEN = "k3s_hub_token"
OPENPAI_PASSWORD = "example-ssh-password"
DOCKER_NOTE = (
    "inv.ini: install_docker is not set, so the seed's playbook installed Docker on every node; "
    "here k3s runs its own containerd and Docker goes only where asked: set "
    "convecthub:os.docker.install to true if the site's users need Docker on the nodes"
)

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME whose ~/.ssh/id_rsa exists, as the seed's inventory expects."""
    path = tmp_path / "home"
    (path / ".ssh").mkdir(parents=True)
    (path / ".ssh" / "id_rsa").write_text(FAKE_KEY, encoding="utf-8")
    monkeypatch.setenv("HOME", str(path))
    return path


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    """`python -m stacks import-inventory ARGS` as stacks/__main__.py will run it: the exit
    code, stdout and stderr."""

    def run_import(*argv: str) -> tuple[int, str, str]:
        root = argparse.ArgumentParser(prog="python -m stacks")
        cli.register(root.add_subparsers(dest="command", required=True))
        args = root.parse_args(["import-inventory", *argv])
        try:
            code = args.run(args)
        except ConfigError as error:
            print(f"error: {error}", file=sys.stderr)
            code = 2
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run_import


@pytest.fixture
def inventory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., ImportResult]:
    """Import an inventory's text, written to inv.ini in the working directory."""
    monkeypatch.chdir(tmp_path)

    def import_text(text: str, bundle_dir: Path | None = None) -> ImportResult:
        Path("inv.ini").write_text(text, encoding="utf-8")
        return import_convecthub_inventory(read_inventory(Path("inv.ini")), bundle_dir)

    return import_text


# The seed's sample inventory


def test_seed_sample_imports_to_its_three_machines() -> None:
    result = import_convecthub_inventory(read_inventory(SEED_INVENTORY))
    assert result.config == {
        "ssh": {"user": "vagrant", "privateKeyFile": "~/.ssh/id_rsa"},
        "nodes": [
            {
                "name": "master",
                "host": "127.0.0.1",
                "ssh": {"port": 2222},
                "roles": ["server"],
                "iface": "eth1",
            },
            {
                "name": "worker1",
                "host": "127.0.0.1",
                "ssh": {"port": 2200},
                "roles": ["agent"],
                "iface": "eth1",
            },
            {
                "name": "worker2",
                "host": "127.0.0.1",
                "ssh": {"port": 2201},
                "roles": ["agent"],
                "iface": "eth1",
                "gpu": {"vendor": "nvidia"},
            },
        ],
    }
    assert result.secrets == (SecretToSet("k3s.token", "the inventory's convect_token"),)
    assert result.sources == (SEED_INVENTORY,)
    values_file = EXAMPLES / "thu-vars" / "jupyterhub.yaml"
    assert result.warnings == (
        f"{SEED_INVENTORY}: install_docker is not set, so the seed's playbook installed Docker "
        "on every node; here k3s runs its own containerd and Docker goes only where asked: set "
        "convecthub:os.docker.install to true if the site's users need Docker on the nodes",
        f"{SEED_INVENTORY}:12: [registry] (master) is not imported: the registry role serves the "
        "airgap bundle's images (the seed's shared/bin/) to the other nodes; re-run with "
        "--bundle-dir DIR pointing at the bundle to keep it, or leave it out to install online",
        f"{SEED_INVENTORY}:16: convect_workdir ([all:vars]) has no meaning here and is not "
        "imported: the seed's working directory on the nodes; the program streams its scripts "
        "over SSH and keeps no working directory",
        f"{SEED_INVENTORY}:19: jhub_config_path ([all:vars]) names {values_file}, which is not "
        "on this machine, so hub.valuesFile is left out: copy the site's JupyterHub values "
        f"there, then run `pulumi config set --path hub.valuesFile {values_file}`",
    )


def test_seed_stack_file_renders_the_same_three_machines(home, run, tmp_path) -> None:
    target = tmp_path / "Pulumi.seed-vagrant.yaml"
    code, out, err = run(str(SEED_INVENTORY), "-o", str(target))
    assert (code, out) == (0, ""), err
    rendering = evaluate(read_stack_file(target))
    nodes = list(rendering.components("BareMetalNode"))
    assert nodes == ["master", "worker1", "worker2"]
    facts = [r["name"] for r in rendering.resources if r["name"].endswith("-facts")]
    assert facts == ["master-facts", "worker1-facts", "worker2-facts"]
    site = rendering.loaded.site
    logins = [(n.host, site.ssh_for(n).port, site.ssh_for(n).user) for n in site.nodes]
    assert logins == [
        ("127.0.0.1", 2222, "vagrant"),
        ("127.0.0.1", 2200, "vagrant"),
        ("127.0.0.1", 2201, "vagrant"),
    ]
    text = format_text(rendering)
    assert "master  server  vagrant@127.0.0.1:2222  arch amd64" in text
    assert "worker1  agent  vagrant@127.0.0.1:2200  arch amd64" in text
    assert "worker2  agent  vagrant@127.0.0.1:2201  arch amd64" in text
    # Exactly what the hand translation of the same inventory renders to.
    by_hand = evaluate(read_stack_file(SEED_STACK))
    assert rendering.resources == by_hand.resources
    assert rendering.outputs == by_hand.outputs


@pytest.mark.parametrize("to_file", [True, False], ids=["file", "stdout"])
def test_the_token_is_only_an_instruction(home, run, tmp_path, to_file) -> None:
    target = tmp_path / "Pulumi.seed.yaml"
    code, out, err = run(str(SEED_INVENTORY), *(["-o", str(target)] if to_file else []))
    assert code == 0, err
    document = target.read_text() if to_file else out
    command = "pulumi config set --secret --path 'k3s.token'"
    stack = " --stack seed" if to_file else ""
    instruction = f"{command}{stack}  # the inventory's convect_token"
    for text in (document, out, err):
        assert SEED_TOKEN not in text
    assert f"#   {instruction}\n" in document
    assert f"  {instruction}\n" in err
    assert "token" not in yaml.safe_load(document)["config"].get("convecthub:k3s", {})


def test_warnings_go_to_stderr_one_line_each(home, run) -> None:
    code, out, err = run(str(SEED_INVENTORY))
    assert code == 0
    result = import_convecthub_inventory(read_inventory(SEED_INVENTORY))
    assert err.splitlines() == [
        *(f"warning: {warning}" for warning in result.warnings),
        "set the secrets once the stack exists (`pulumi stack init`, with the state where "
        "python -m stacks keeps it: see the README); each command prompts for the value:",
        "  pulumi config set --secret --path 'k3s.token'  # the inventory's convect_token",
        "imported 3 node(s) into stdout",
    ]
    assert yaml.safe_load(out)["config"]["convecthub:nodes"][0]["name"] == "master"


def test_the_same_inventory_gives_the_same_bytes(home, run, tmp_path) -> None:
    first, second = tmp_path / "one" / "Pulumi.a.yaml", tmp_path / "two" / "Pulumi.a.yaml"
    for target in (first, second):
        target.parent.mkdir()
        assert run(str(SEED_INVENTORY), "-o", str(target))[0] == 0
    assert first.read_bytes() == second.read_bytes()
    assert run(str(SEED_INVENTORY))[1] == run(str(SEED_INVENTORY))[1]


def test_a_key_file_not_on_this_machine_is_a_warning(run, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    target = tmp_path / "Pulumi.seed.yaml"
    code, _, err = run(str(SEED_INVENTORY), "-o", str(target))
    assert code == 0
    expected = (
        f"warning: convecthub:ssh.privateKeyFile: cannot read '{tmp_path}/.ssh/id_rsa' (no such "
        "file or directory): point it at a readable private key, or create one with ssh-keygen "
        "(the stack will not render or deploy from here until that is fixed)"
    )
    assert expected in err.splitlines()
    assert "#   - convecthub:ssh.privateKeyFile: cannot read" in target.read_text()


# Inventory variables, groups and names


BASE = "[driver]\nm ansible_host=10.0.0.1\n[worker]\nw ansible_host=10.0.0.2\n"


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        pytest.param(
            BASE + "[all:vars]\nansible_user=ops\nansible_port=22\n",
            "ssh",
            {"user": "ops", "port": 22},
            id="shared-ssh-settings-are-site-wide",
        ),
        pytest.param(
            "[driver]\nm ansible_user=a ansible_private_key_file=/k\n[worker]\nw ansible_user=b "
            "ansible_ssh_private_key_file=/k\n",
            "nodes",
            [
                {"name": "m", "host": "m", "ssh": {"user": "a"}, "roles": ["server"]},
                {"name": "w", "host": "w", "ssh": {"user": "b"}, "roles": ["agent"]},
            ],
            id="differing-users-per-node-and-host-defaults-to-the-name",
        ),
        pytest.param(
            BASE + "[all:vars]\ninstall_docker=yes\n",
            "os",
            {"docker": {"install": True}},
            id="install-docker-site-wide",
        ),
        pytest.param(
            "[driver]\nm install_docker=False\n[worker]\nw\n[all:vars]\ninstall_docker=TRUE\n",
            "nodes",
            [
                {"name": "m", "host": "m", "roles": ["server"], "installDocker": False},
                {"name": "w", "host": "w", "roles": ["agent"], "installDocker": True},
            ],
            id="install-docker-overridden-per-node",
        ),
        pytest.param(
            BASE + "[all:vars]\ndocker_repo=https://mirrors.example.com/docker-ce/linux/ubuntu\n",
            "os",
            {
                "docker": {
                    "repository": "https://mirrors.example.com/docker-ce/linux/ubuntu",
                    "keyUrl": "https://mirrors.example.com/docker-ce/linux/ubuntu/gpg",
                }
            },
            id="docker-repo-mirror",
        ),
        pytest.param(
            BASE + "[all:vars]\nhttp_port=9000\nhttps_port='9443'\n",
            "hub",
            {"httpPort": 9000, "httpsPort": 9443},
            id="hub-ports",
        ),
        pytest.param(
            "[driver]\nm\n[worker]\nw has_gpu=Yes install_nvidia_driver=no my_iface=ens3\n",
            "nodes",
            [
                {"name": "m", "host": "m", "roles": ["server"]},
                {
                    "name": "w",
                    "host": "w",
                    "roles": ["agent"],
                    "iface": "ens3",
                    "gpu": {"vendor": "nvidia", "installDriver": False},
                },
            ],
            id="gpu-with-its-driver-kept",
        ),
        pytest.param(
            "[driver]\nm\n[worker]\nworker[1:2]\n[worker:vars]\nmy_iface=eth1\n",
            "nodes",
            [
                {"name": "m", "host": "m", "roles": ["server"]},
                {"name": "worker1", "host": "worker1", "roles": ["agent"], "iface": "eth1"},
                {"name": "worker2", "host": "worker2", "roles": ["agent"], "iface": "eth1"},
            ],
            id="ranges-and-group-vars",
        ),
        pytest.param(
            "[masters]\nm\n[driver:children]\nmasters\n[gpus]\ng has_gpu=1\n[worker:children]\n"
            "gpus\n",
            "nodes",
            [
                {"name": "m", "host": "m", "roles": ["server"]},
                {"name": "g", "host": "g", "roles": ["agent"], "gpu": {"vendor": "nvidia"}},
            ],
            id="roles-through-children-groups",
        ),
        pytest.param(
            "w2 ansible_port=2201\n[driver]\nm ansible_port=2222\n[worker]\nw2\n",
            "nodes",
            [
                {"name": "m", "host": "m", "ssh": {"port": 2222}, "roles": ["server"]},
                {"name": "w2", "host": "w2", "ssh": {"port": 2201}, "roles": ["agent"]},
            ],
            id="servers-first-then-agents",
        ),
    ],
)
def test_inventory_variables_map_to_the_contract(inventory, text, key, expected) -> None:
    assert inventory(text).config[key] == expected


@pytest.mark.parametrize(
    ("text", "warning"),
    [
        pytest.param(
            BASE + "[all:vars]\nansible_become_pass=hunter2\n",
            "inv.ini:6: ansible_become_pass ([all:vars]) is not imported: the program runs "
            "`sudo -n`, so give the SSH user passwordless sudo on every node, as the seed "
            'recommends: echo "$USER ALL=(ALL:ALL) NOPASSWD: ALL" | sudo tee '
            "/etc/sudoers.d/$USER",
            id="become-password",
        ),
        pytest.param(
            "[driver]\nm rack=12\n[worker]\nw\n",
            "inv.ini:2: rack (host m) has no meaning here and is not imported: neither the "
            "seed's playbook nor this program uses it",
            id="unknown-host-variable",
        ),
        pytest.param(
            BASE + "[worker:vars]\nansible_python_interpreter=/usr/bin/python3\n",
            "inv.ini:6: ansible_python_interpreter ([worker:vars]) has no meaning here and is "
            "not imported: the program runs shell scripts over SSH; nodes need no Python",
            id="python-interpreter",
        ),
        pytest.param(
            "spare ansible_host=10.0.0.3\n" + BASE,
            "inv.ini:1: host spare is in neither [driver] nor [worker]: it becomes an agent "
            "(list it under [driver] to make it a server)",
            id="host-in-no-role-group",
        ),
        pytest.param(
            BASE + "m\n",
            "inv.ini:2: host m is in [driver] and [worker]: it becomes a server (k3s servers "
            "run workloads too)",
            id="host-in-both-groups",
        ),
        pytest.param(
            BASE + "[rack1]\nw\n",
            "inv.ini:5: group [rack1] has no meaning here: its hosts and variables are "
            "imported, the group itself is not (to mark its nodes, give them labels in "
            "convecthub:nodes)",
            id="other-group",
        ),
        pytest.param(
            BASE + "[worker:vars]\ninstall_nvidia_driver=false\n",
            "inv.ini:6: install_nvidia_driver ([worker:vars]) has no effect: no node it applies "
            "to has has_gpu=true",
            id="driver-setting-without-gpu",
        ),
        pytest.param(
            "[driver]\nm docker_repo=https://a.example/ubuntu\n[worker]\nw1 "
            "docker_repo=https://b.example/ubuntu\nw2 docker_repo=https://b.example/ubuntu\n",
            "inv.ini:4: docker_repo differs between hosts, and the site has one: "
            "docker_repo=https://b.example/ubuntu (host w1) is kept, not the value of m "
            "(host m, line 2: https://a.example/ubuntu)",
            id="docker-repo-differs",
        ),
        pytest.param(
            "[driver]\nm convect_token=one\n[worker]\nw convect_token=two\n[all:vars]\n"
            "convect_token=three\n",
            "inv.ini:6: convect_token differs between hosts, and the site has one: "
            "convect_token ([all:vars]) is kept, not the value of m (host m, line 2), w "
            "(host w, line 4)",
            id="token-differs-values-unsaid",
        ),
        pytest.param(
            "[driver]\nMaster_1.lab ansible_host=10.0.0.1\n",
            "inv.ini:2: host 'Master_1.lab' becomes node 'master-1-lab' (node names are "
            "lowercase RFC 1123 labels: they become the hostname and the Kubernetes node name)",
            id="name-normalised",
        ),
        pytest.param(
            BASE + "[all:vars]\nansible_ssh_private_key_file=keys/site\n",
            "inv.ini:6: ansible_ssh_private_key_file ([all:vars]) is a relative path: it is "
            "taken from the inventory's directory, as {dir}/keys/site",
            id="relative-key-file",
        ),
        pytest.param(
            "[driver]\nm ansible_host=10.0.0.1 ansible_ssh_host=10.0.0.9\n",
            "inv.ini:2: ansible_host (host m) differs from ansible_ssh_host (line 2) for host "
            "m: ansible_ssh_host is kept, as Ansible's ssh connection does",
            id="host-aliases-differ",
        ),
    ],
)
def test_what_is_not_carried_over_is_a_warning(inventory, tmp_path, text, warning) -> None:
    assert warning.format(dir=tmp_path) in inventory(text).warnings


def test_warnings_never_hold_a_password_or_token(inventory) -> None:
    text = (
        "[driver]\nm convect_token=one-token ansible_become_pass=become-pass\n[worker]\n"
        "w convect_token=two-token ansible_ssh_pass=ssh-pass\n"
    )
    result = inventory(text)
    document = stack_document(result)
    for value in ("one-token", "two-token", "become-pass", "ssh-pass"):
        assert value not in document


@pytest.mark.parametrize(
    ("text", "secrets"),
    [
        pytest.param(
            BASE + "[all:vars]\nansible_ssh_pass=s3cret\n",
            (SecretToSet("ssh.password", "the inventory's SSH password"),),
            id="shared-password",
        ),
        pytest.param(
            "[driver]\nm ansible_password=a\n[worker]\nw ansible_ssh_pass=b\nx\n",
            (
                SecretToSet("nodes[0].ssh.password", "the inventory's SSH password of m"),
                SecretToSet("nodes[1].ssh.password", "the inventory's SSH password of w"),
            ),
            id="per-node-passwords",
        ),
    ],
)
def test_passwords_become_secret_instructions(inventory, text, secrets) -> None:
    result = inventory(text)
    assert result.secrets == secrets
    document = stack_document(result, "site")
    for value in ("s3cret", "=a", "=b"):
        assert value not in document
    for secret in secrets:
        assert f"pulumi config set --secret --path '{secret.key}' --stack site" in document


def test_the_values_file_is_found_beside_the_inventory(tmp_path, monkeypatch) -> None:
    site_dir = tmp_path / "site"
    (site_dir / "thu-vars").mkdir(parents=True)
    (site_dir / "thu-vars" / "jupyterhub.yaml").write_text("hub: {}\n")
    (site_dir / "inv.ini").write_text(
        BASE + "[all:vars]\njhub_config_path=thu-vars/jupyterhub.yaml\n"
    )
    monkeypatch.chdir(tmp_path)
    result = import_convecthub_inventory(read_inventory(Path("site/inv.ini")))
    assert result.config["hub"] == {"valuesFile": str(site_dir / "thu-vars" / "jupyterhub.yaml")}
    assert not [w for w in result.warnings if "jhub_config_path" in w]


def test_the_bundle_dir_keeps_the_registry_group(home, run, tmp_path) -> None:
    bundle = tmp_path / "bin"
    bundle.mkdir()
    code, out, err = run(str(SEED_INVENTORY), "--bundle-dir", str(bundle))
    assert code == 0
    config = yaml.safe_load(out)["config"]
    assert config["convecthub:nodes"][0]["roles"] == ["server", "registry"]
    assert config["convecthub:registry"] == {"bundleDir": str(bundle)}
    assert "[registry]" not in err
    # The empty bundle does not stop the import; the check says what it lacks.
    assert f"convecthub:registry.bundleDir: {bundle} lacks" in err


@pytest.mark.parametrize(
    ("text", "error"),
    [
        pytest.param(
            "[driver]\nbad!name\n",
            "inv.ini:2: host name 'bad!name' cannot become a node name (it becomes the hostname "
            "and the Kubernetes node name): rename it to 1-63 characters a-z, 0-9 and '-', "
            "starting and ending with a letter or digit",
            id="invalid-name",
        ),
        pytest.param(
            "[driver]\nnode_1\n[worker]\nnode-1\n",
            "inv.ini:4: host 'node-1' becomes node 'node-1', as host 'node_1' does: rename one "
            "of them",
            id="names-collide",
        ),
        pytest.param(
            "[driver]\nm ansible_ssh_port=ssh\n",
            "inv.ini:2: ansible_ssh_port='ssh' is not a port number: use a whole number from 1 "
            "to 65535",
            id="bad-port",
        ),
        pytest.param(
            "[driver]\nm has_gpu=maybe\n",
            "inv.ini:2: has_gpu='maybe' is not true or false: write true or false",
            id="bad-boolean",
        ),
        pytest.param(
            "[driver]\n[all:vars]\nhttp_port=80\n",
            "inv.ini: names no host: list the machines, one line each, and put them under "
            "[driver] and [worker]",
            id="no-hosts",
        ),
        pytest.param(
            "[driver]\nm ansible_host\n",
            "inv.ini:2: expected key=value after the host name, got 'ansible_host': write "
            "variables as name=value, and quote values with spaces",
            id="unreadable-line",
        ),
    ],
)
def test_bad_inventories_are_one_line_errors(run, tmp_path, monkeypatch, text, error) -> None:
    monkeypatch.chdir(tmp_path)
    Path("inv.ini").write_text(text)
    assert run("inv.ini") == (2, "", f"error: {error}\n")


# OpenPAI's quick-start files


def openpai_example() -> ImportResult:
    return import_openpai(OPENPAI / "master.csv", OPENPAI / "worker.csv", OPENPAI / "config")


def test_openpai_example_imports_servers_agents_and_its_settings() -> None:
    result = openpai_example()
    worker = {"roles": ["agent"], "gpu": {"vendor": "nvidia", "installDriver": False}}
    assert result.config == {
        "ssh": {"user": "pai"},
        "nodes": [
            {"name": "openpai-master-01", "host": "10.1.0.1", "roles": ["server"]},
            *(
                {"name": f"openpai-00{i}", "host": f"10.0.0.{i}", **worker, "installDocker": True}
                for i in range(1, 5)
            ),
        ],
        "os": {
            "httpProxy": "http://proxy.example.com:8080",
            "httpsProxy": "http://proxy.example.com:8080",
            "noProxy": ["localhost", "127.0.0.1", "10.0.0.0/8", ".example.com"],
            "docker": {"dataRoot": "/mnt/docker"},
        },
        "registry": {
            "mirrors": {
                "docker.io": ["https://registry.docker-cn.com", "https://mirror.aliyuncs.com"]
            },
            "insecure": ["mirror.registry.io", "172.19.16.11"],
        },
    }
    assert result.secrets == (SecretToSet("ssh.password", "OpenPAI's config: password"),)
    config = OPENPAI / "config"
    assert [w.split(" ", 2)[:2] for w in result.warnings] == [
        [f"{OPENPAI / 'worker.csv'}:", "OpenPAI"],
        [f"{config}:3:", "branch_name"],
        [f"{config}:4:", "docker_image_tag"],
        [f"{config}:77:", "kubeadm_download_url"],
        [f"{config}:78:", "hyperkube_download_url"],
    ]


def test_openpai_stack_file_renders(run, tmp_path) -> None:
    target = tmp_path / "Pulumi.pai.yaml"
    code, out, err = run(
        str(OPENPAI / "master.csv"),
        "-w",
        str(OPENPAI / "worker.csv"),
        "-c",
        str(OPENPAI / "config"),
        "-o",
        str(target),
    )
    assert (code, out) == (0, ""), err
    document = target.read_text()
    for text in (document, err):
        assert OPENPAI_PASSWORD not in text
        assert "pulumi config set --secret --path 'ssh.password' --stack pai" in text
    assert "the stack will not render" not in err
    rendering = evaluate(read_stack_file(target))
    site = rendering.loaded.site
    assert [n.name for n in site.servers] == ["openpai-master-01"]
    assert [n.name for n in site.agents] == [f"openpai-00{i}" for i in range(1, 5)]
    assert list(rendering.components("K3sAgent")) == [f"openpai-00{i}-k3s" for i in range(1, 5)]
    assert list(rendering.components("DockerEngine")) == [
        f"openpai-00{i}-docker" for i in range(1, 5)
    ]
    assert site.registry.mirrors == {
        "docker.io": ["https://registry.docker-cn.com", "https://mirror.aliyuncs.com"]
    }
    assert site.registry.insecure == ["mirror.registry.io", "172.19.16.11"]
    assert (site.os.http_proxy, site.os.https_proxy) == ("http://proxy.example.com:8080",) * 2
    assert site.os.docker.data_root == "/mnt/docker"
    assert site.ssh.password is None  # until the operator sets it
    text = format_text(rendering)
    assert "CONVECTHUB_HTTP_PROXY=http://proxy.example.com:8080" in text
    assert '"data-root": "/mnt/docker"' in text


MASTERS = "m1,10.0.0.1\n"
WORKERS = "w1,10.0.0.2\n"


@pytest.mark.parametrize(
    ("config", "key", "expected", "warning"),
    [
        pytest.param(
            "gcr_image_repo: mirror.example.com/gcr\nkube_image_repo: gcr.io/google-containers\n"
            "docker_image_repo: http://hub.example.com:5000\nquay_image_repo: quay.io\n",
            "registry",
            {
                "mirrors": {
                    "gcr.io": ["https://mirror.example.com/gcr"],
                    "docker.io": ["http://hub.example.com:5000"],
                }
            },
            "config:1: gcr_image_repo=mirror.example.com/gcr becomes a mirror of gcr.io at "
            "https://mirror.example.com/gcr: the scheme https:// is assumed; write http:// in "
            "convecthub:registry.mirrors if it serves plain HTTP",
            id="image-repositories",
        ),
        pytest.param(
            "docker_registry_domain: registry.example.com\ndocker_registry_username: ci\n"
            "docker_registry_password: p4ss\ndocker_registry_namespace: openpai\n",
            "registry",
            {"credentials": {"registry.example.com": {"username": "ci"}}},
            "config:4: docker_registry_namespace has no meaning here and is not imported: where "
            "OpenPAI's service images are; ConvectHub's come with the JupyterHub chart",
            id="registry-credentials",
        ),
        pytest.param(
            "gpu_type: amd\n",
            "nodes",
            [
                {"name": "m1", "host": "10.0.0.1", "roles": ["server"]},
                {"name": "w1", "host": "10.0.0.2", "roles": ["agent"], "installDocker": True},
            ],
            "config:1: gpu_type=amd is not imported and the workers get no gpu: the program "
            "knows NVIDIA GPUs and Ascend NPUs; give each worker its gpu (vendor nvidia or "
            "ascend) in convecthub:nodes",
            id="not-nvidia",
        ),
        pytest.param(
            "worker_default_docker_runtime: runc\ndocker_iptables_enabled: 'false'\n",
            "os",
            {"docker": {"daemonConfig": {"iptables": False}}},
            "config:1: worker_default_docker_runtime=runc is not imported: the program makes "
            "nvidia Docker's default runtime on NVIDIA nodes and leaves Docker's own elsewhere",
            id="docker-runtime-and-iptables",
        ),
        pytest.param(
            "no_proxy:\n  - localhost\n  - .corp\nhttp_proxy: http://p:3128\n"
            "openpai_kube_network_plugin: calico\n",
            "os",
            {"httpProxy": "http://p:3128", "noProxy": ["localhost", ".corp"]},
            "config:5: openpai_kube_network_plugin has no meaning here and is not imported: k3s "
            "uses flannel over each node's iface, not calico or another plugin",
            id="proxy-as-a-list",
        ),
        pytest.param(
            "user: ops\nssh_key_file_path: keys/id_pai\nqos-switch: 'false'\nflavour: x\n",
            "ssh",
            {"user": "ops", "privateKeyFile": "{dir}/keys/id_pai"},
            "config:4: flavour has no meaning here and is not imported: neither OpenPAI's quick "
            "start nor this program uses it",
            id="ssh-and-unknown-keys",
        ),
        pytest.param(
            "user:\ndocker_check: true\n",
            "ssh",
            None,
            "config:1: user is empty, so it is not imported",
            id="empty-setting",
        ),
    ],
)
def test_openpai_config_settings(tmp_path, monkeypatch, config, key, expected, warning) -> None:
    monkeypatch.chdir(tmp_path)
    for name, text in (("master.csv", MASTERS), ("worker.csv", WORKERS), ("config", config)):
        Path(name).write_text(text)
    result = import_openpai(Path("master.csv"), Path("worker.csv"), Path("config"))
    if isinstance(expected, dict) and key == "ssh":
        expected = {k: v.format(dir=tmp_path) for k, v in expected.items()}
    assert result.config.get(key) == expected
    assert warning in result.warnings


def test_openpai_registry_password_is_an_instruction(run, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("master.csv").write_text(MASTERS)
    Path("config").write_text("docker_registry_username: ci\ndocker_registry_password: p4ss\n")
    code, out, err = run("master.csv", "-c", "config")
    assert code == 0, err
    assert "p4ss" not in out + err
    command = "pulumi config set --secret --path 'registry.credentials[\"docker.io\"].password'"
    assert f"  {command}  # OpenPAI's config: docker_registry_password" in err.splitlines()
    assert "config:1: docker_registry_username has no docker_registry_domain" in err
    # Checked as if the password were set: a credential without one would not load.
    assert "will not render" not in err


@pytest.mark.parametrize(
    ("masters", "workers", "error"),
    [
        pytest.param(
            "m1,10.0.0.1\n",
            "w1,10.0.0.2\nw2 10.0.0.3\n",
            "worker.csv:2: cannot read 'w2 10.0.0.3': write one machine per line as "
            "hostname,host-ip, e.g. openpai-001,10.0.0.1",
            id="no-comma",
        ),
        pytest.param(
            "m1,10.0.0.1,extra\n",
            "",
            "master.csv:1: cannot read 'm1,10.0.0.1,extra': write one machine per line as "
            "hostname,host-ip, e.g. openpai-001,10.0.0.1",
            id="three-fields",
        ),
        pytest.param(
            "\n\n",
            "w1,10.0.0.2\n",
            "master.csv: lists no machine: write one line per machine as hostname,host-ip",
            id="no-master",
        ),
        pytest.param(
            "node1,10.0.0.1\n",
            "\n NODE1 , 10.0.0.2\n",
            "worker.csv:2: 'NODE1' is already listed at master.csv:1: list each machine once, "
            "in master.csv or in worker.csv",
            id="listed-twice",
        ),
        pytest.param(
            "m_1!,10.0.0.1\n",
            "w1,10.0.0.2\n",
            "master.csv:1: host name 'm_1!' cannot become a node name (it becomes the hostname "
            "and the Kubernetes node name): rename it to 1-63 characters a-z, 0-9 and '-', "
            "starting and ending with a letter or digit",
            id="invalid-name",
        ),
    ],
)
def test_bad_openpai_files_are_one_line_errors(run, tmp_path, monkeypatch, masters, workers, error):
    monkeypatch.chdir(tmp_path)
    Path("master.csv").write_text(masters)
    Path("worker.csv").write_text(workers)
    assert run("master.csv", "-w", "worker.csv") == (2, "", f"error: {error}\n")


def test_openpai_files_tolerate_blank_lines_and_spaces(tmp_path) -> None:
    (tmp_path / "master.csv").write_text("\n  Master-01 , 10.1.0.1  \n\n")
    result = import_openpai(tmp_path / "master.csv")
    assert result.config["nodes"] == [
        {"name": "master-01", "host": "10.1.0.1", "roles": ["server"]}
    ]
    assert result.warnings == (
        f"{tmp_path / 'master.csv'}:2: host 'Master-01' becomes node 'master-01' (node names "
        "are lowercase RFC 1123 labels: they become the hostname and the Kubernetes node name)",
    )


# Where the stack file goes


def test_stack_is_written_into_the_project_and_not_overwritten(home, run, tmp_path, monkeypatch):
    target = tmp_path / "Pulumi.lab.yaml"
    assert run(str(SEED_INVENTORY), "--stack", "lab", "--project-dir", str(tmp_path))[0] == 0
    assert yaml.safe_load(target.read_text())["config"]["convecthub:ssh"]["user"] == "vagrant"
    target.write_text("config: {}\n")
    assert run(str(SEED_INVENTORY), "--stack", "lab", "--project-dir", str(tmp_path)) == (
        2,
        "",
        f"error: {target}: already exists: pass --force to overwrite it\n",
    )
    assert target.read_text() == "config: {}\n"
    assert (
        run(str(SEED_INVENTORY), "--stack", "lab", "--project-dir", str(tmp_path), "--force")[0]
        == 0
    )
    assert "convecthub:nodes" in target.read_text()


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        pytest.param(
            [str(SEED_INVENTORY), "-c", "config"],
            f"--openpai-config: goes with OpenPAI's master.csv and worker.csv, not with "
            f"{SEED_INVENTORY}: pass master.csv as FILE and worker.csv with -w",
            id="openpai-config-with-an-inventory",
        ),
        pytest.param(
            [str(SEED_INVENTORY), "--stack", "my site"],
            "--stack: 'my site' is not a stack name: use letters, digits, '-', '_' and '.'",
            id="bad-stack-name",
        ),
        pytest.param(
            [str(SEED_INVENTORY), "--bundle-dir", "/nonexistent/bin"],
            "--bundle-dir: /nonexistent/bin is not a directory: point it at the airgap bundle "
            "(the seed's shared/bin/)",
            id="bundle-dir-missing",
        ),
        pytest.param(
            ["/nonexistent/inv.ini"],
            "/nonexistent/inv.ini: cannot read it (No such file or directory)",
            id="inventory-missing",
        ),
    ],
)
def test_bad_usage_is_one_line(run, argv, error) -> None:
    assert run(*argv) == (2, "", f"error: {error}\n")


def test_the_stack_document_layout() -> None:
    result = ImportResult(
        config={
            "hub": {"httpPort": 9000},
            "nodes": [
                {"gpu": {"vendor": "nvidia"}, "roles": ["agent"], "host": "10.0.0.2", "name": "w"},
                {"installDocker": True, "ssh": {"port": 2222}, "host": "10.0.0.1", "name": "m"},
            ],
            "ssh": {"user": "ops"},
        },
        warnings=("inv.ini:3: something was not imported",),
        secrets=(SecretToSet("nodes[1].ssh.password", "the inventory's SSH password of m"),),
        sources=(Path("inv.ini"),),
    )
    assert stack_document(result, "lab") == (
        "# Imported by `python -m stacks import-inventory` from:\n"
        "#   inv.ini\n"
        "# Review it, then see what it would do: `python -m stacks preview --stack lab`.\n"
        "#\n"
        "# Secrets are never written here: once the stack exists (`pulumi stack init`), set\n"
        "# each one (the command prompts for it):\n"
        "#   pulumi config set --secret --path 'nodes[1].ssh.password' --stack lab"
        "  # the inventory's SSH password of m\n"
        "#\n"
        "# Not carried over, or carried over with a change:\n"
        "#   - inv.ini:3: something was not imported\n"
        "config:\n"
        "  convecthub:ssh:\n"
        "    user: ops\n"
        "  convecthub:nodes:\n"
        "    - name: w\n"
        "      host: 10.0.0.2\n"
        "      roles: [agent]\n"
        "      gpu: {vendor: nvidia}\n"
        "    - name: m\n"
        "      host: 10.0.0.1\n"
        "      ssh: {port: 2222}\n"
        "      installDocker: true\n"
        "  convecthub:hub:\n"
        "    httpPort: 9000\n"
    )
