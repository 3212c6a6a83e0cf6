"""The site model: every bad input ends in its one exact line, and good input is typed."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest

from model.site import Taint
from stacks.config import ConfigError, decode_config, load_site
from tests.conftest import three_node_site

Mutation = Callable[[dict], object]


def node(values: dict, index: int) -> dict:
    return values["nodes"][index]


BAD_INPUTS: list[tuple[str, Mutation, str]] = [
    (
        "duplicate node name",
        lambda v: node(v, 2).update(name="worker1"),
        "convecthub:nodes[2].name: 'worker1' is already the name of nodes[1]: "
        "give every node its own name",
    ),
    (
        "duplicate host and port",
        lambda v: node(v, 2).update(host="10.0.0.11"),
        "convecthub:nodes[2].host: nodes[1] is reached at 10.0.0.11 port 22 too: "
        "give each node its own host, or its own ssh.port",
    ),
    (
        "duplicate host and explicit port",
        lambda v: [node(v, i).update(host="127.0.0.1", ssh={"port": 2200}) for i in (1, 2)],
        "convecthub:nodes[2].host: nodes[1] is reached at 127.0.0.1 port 2200 too: "
        "give each node its own host, or its own ssh.port",
    ),
    (
        "name not an RFC 1123 label",
        lambda v: node(v, 1).update(name="Worker_1"),
        "convecthub:nodes[1].name: 'Worker_1' is not a lowercase RFC 1123 label: use 1-63 "
        "characters a-z, 0-9 and '-', starting and ending with a letter or digit (it becomes "
        "the hostname and the Kubernetes node name)",
    ),
    (
        "bad IPv4 address",
        lambda v: node(v, 1).update(host="10.0.0.300"),
        "convecthub:nodes[1].host: '10.0.0.300' is neither an IP address nor a DNS hostname: "
        "give the address the provisioner reaches the machine at, e.g. 10.0.0.11 or "
        "node1.example.com",
    ),
    (
        "host with a space",
        lambda v: node(v, 1).update(host="node 1"),
        "convecthub:nodes[1].host: 'node 1' is neither an IP address nor a DNS hostname: "
        "give the address the provisioner reaches the machine at, e.g. 10.0.0.11 or "
        "node1.example.com",
    ),
    (
        "port out of range",
        lambda v: node(v, 1).update(ssh={"port": 70000}),
        "convecthub:nodes[1].ssh.port: 70000 is not a port number: "
        "use a whole number from 1 to 65535",
    ),
    (
        "port zero in the defaults",
        lambda v: v.update(ssh={"port": 0}),
        "convecthub:ssh.port: 0 is not a port number: use a whole number from 1 to 65535",
    ),
    (
        "no server",
        lambda v: node(v, 0).update(roles=["agent"]),
        "convecthub:nodes: no node has the role server: "
        "give one node (or three, for HA) roles: [server]",
    ),
    (
        "server and agent",
        lambda v: node(v, 1).update(roles=["server", "agent"]),
        "convecthub:nodes[1].roles: a node is a server or an agent, not both: keep one of "
        "the two (k3s servers run workloads too unless tainted)",
    ),
    (
        "unknown role",
        lambda v: node(v, 1).update(roles=["worker"]),
        "convecthub:nodes[1].roles: unknown role 'worker': roles are server or agent, plus "
        "registry for the node that serves images",
    ),
    (
        "registry alone",
        lambda v: node(v, 1).update(roles=["registry"]),
        "convecthub:nodes[1].roles: give the node the role server or agent",
    ),
    (
        "unknown GPU vendor",
        lambda v: node(v, 2)["gpu"].update(vendor="amd"),
        "convecthub:nodes[2].gpu.vendor: 'amd' is not allowed here: use 'nvidia' or 'ascend'",
    ),
    (
        "invalid label key",
        lambda v: node(v, 2)["labels"].update({"bad key": "x"}),
        "convecthub:nodes[2].labels[\"bad key\"]: 'bad key' is not a valid Kubernetes label key: "
        "an optional DNS prefix and '/', then at most 63 characters a-z, A-Z, 0-9, '-', '_' "
        "and '.'",
    ),
    (
        "invalid label value",
        lambda v: node(v, 2)["labels"].update({"org": "-public"}),
        "convecthub:nodes[2].labels.org: '-public' is not a valid Kubernetes label value: at "
        "most 63 characters a-z, A-Z, 0-9, '-', '_' and '.', starting and ending with a "
        "letter or digit",
    ),
    (
        "unquoted boolean label",
        lambda v: node(v, 2)["labels"].update({"train": True}),
        "convecthub:nodes[2].labels.train: label values are strings: quote it in the stack "
        'file, e.g. "true"',
    ),
    (
        "invalid taint effect",
        lambda v: node(v, 2).update(taints=["gpu=true:Never"]),
        "convecthub:nodes[2].taints[0]: 'gpu=true:Never' is not a taint: write "
        "key=value:Effect with Effect one of NoSchedule, PreferNoSchedule, NoExecute",
    ),
    (
        "invalid taint key",
        lambda v: node(v, 2).update(taints=["b@d=x:NoSchedule"]),
        "convecthub:nodes[2].taints[0]: 'b@d=x:NoSchedule' is not a valid taint: 'b@d' is "
        "not a valid Kubernetes label key: an optional DNS prefix and '/', then at most 63 "
        "characters a-z, A-Z, 0-9, '-', '_' and '.'",
    ),
    (
        "http and https on one port",
        lambda v: v.update(hub={"httpPort": 8080, "httpsPort": 8080}),
        "convecthub:hub.httpsPort: httpPort and httpsPort are both 8080: serve HTTP and "
        "HTTPS on different ports, e.g. 80 and 443",
    ),
    (
        "Traefik left on, hub on its ports",
        lambda v: v.update(k3s={"disable": []}),
        "convecthub:hub.httpPort: 80 is taken by k3s's Traefik, which k3s.disable leaves on: "
        "add traefik to k3s.disable (the hub has its own proxy), or serve the hub on other "
        "ports, e.g. 9000 and 9443",
    ),
    (
        "a hub certificate without its key",
        lambda v: v.update(hub={"tls": {"certificate": "PEM"}}),
        "convecthub:hub.tls.key: a certificate and its key go together: set both (as "
        "secrets), or neither for a self-signed certificate",
    ),
    (
        "unknown key in a node",
        lambda v: node(v, 1).update(hots="10.0.0.1"),
        "convecthub:nodes[1].hots: unknown key 'hots': did you mean 'host'? the keys here are "
        "name, host, roles, iface, address, arch, ssh, gpu, installDocker, labels, taints",
    ),
    (
        "unknown key in ssh",
        lambda v: v.update(ssh={"usr": "ubuntu"}),
        "convecthub:ssh.usr: unknown key 'usr': did you mean 'user'? the keys here are user, "
        "port, privateKeyFile, privateKey, privateKeyPassword, password, hostKey, "
        "hostKeyPolicy, bastion, dialAttempts, dialTimeoutSeconds",
    ),
    (
        "unknown top-level key",
        lambda v: v.update(nodez=[]),
        "convecthub:nodez: unknown key 'nodez': did you mean 'nodes'? the keys here are ssh, "
        "nodes, os, k3s, registry, gpu, hub, storage",
    ),
    (
        "missing host",
        lambda v: node(v, 1).pop("host"),
        "convecthub:nodes[1].host: is required: give the address the provisioner reaches "
        "the machine at over SSH",
    ),
    (
        "no nodes",
        lambda v: v.update(nodes=[]),
        "convecthub:nodes: is empty: list the fleet: one entry per machine with name, host "
        "and roles",
    ),
    (
        "unknown arch",
        lambda v: node(v, 1).update(arch="x86"),
        "convecthub:nodes[1].arch: 'x86' is not allowed here: use 'amd64' or 'arm64'",
    ),
    (
        "bad interface name",
        lambda v: node(v, 1).update(iface="eth 1"),
        "convecthub:nodes[1].iface: 'eth 1' is not a network interface name: use the name "
        "`ip -br addr` shows on the node, e.g. eth1",
    ),
    (
        "bad apt proxy",
        lambda v: v.update(os={"aptProxy": "cache:3142"}),
        "convecthub:os.aptProxy: 'cache:3142' is not an http(s) URL: write it as http://host:port",
    ),
    (
        "bad k3s version",
        lambda v: v.update(k3s={"version": "1.31"}),
        "convecthub:k3s.version: '1.31' does not have the expected form "
        r"(^v[0-9]+\.[0-9]+\.[0-9]+\+k3s[0-9]+$)",
    ),
    (
        "nodes not a list",
        lambda v: v.update(nodes={"master": {}}),
        "convecthub:nodes: must be a list, not dict: write it as [a, b] or one '- ' line each",
    ),
    (
        "not a number",
        lambda v: v.update(ssh={"dialAttempts": "many"}),
        "convecthub:ssh.dialAttempts: 'many' is not a whole number",
    ),
    (
        "number out of range",
        lambda v: v.update(ssh={"dialAttempts": 0}),
        "convecthub:ssh.dialAttempts: 0 is out of range: input should be greater than or "
        "equal to 1",
    ),
    (
        "two problems",
        lambda v: [node(v, 1).update(arch="x86"), node(v, 2).update(arch="x86")],
        "convecthub:nodes[1].arch: 'x86' is not allowed here: use 'amd64' or 'arm64' "
        "(and 1 more problem(s) after this one)",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [pytest.param(mutate, expected, id=case) for case, mutate, expected in BAD_INPUTS],
)
def test_bad_input_ends_in_its_one_line(mutate: Mutation, expected: str) -> None:
    values = copy.deepcopy(three_node_site())
    mutate(values)
    with pytest.raises(ConfigError) as raised:
        load_site(values)
    assert str(raised.value) == expected
    assert "\n" not in str(raised.value)


def test_missing_key_file_names_the_key_and_the_fix(tmp_path) -> None:
    values = three_node_site()
    missing = tmp_path / "no-such-key"
    values["ssh"] = {"privateKeyFile": str(missing)}
    with pytest.raises(ConfigError) as raised:
        load_site(values)
    assert str(raised.value) == (
        f"convecthub:ssh.privateKeyFile: cannot read '{missing}' (no such file or directory): "
        "point it at a readable private key, or create one with ssh-keygen"
    )


def test_unreadable_key_file_in_a_node_override(tmp_path) -> None:
    values = three_node_site()
    directory = tmp_path / "a-directory"
    directory.mkdir()
    values["nodes"][1]["ssh"] = {"privateKeyFile": str(directory)}
    with pytest.raises(ConfigError) as raised:
        load_site(values)
    assert str(raised.value) == (
        f"convecthub:nodes[1].ssh.privateKeyFile: cannot read '{directory}' (is a directory): "
        "point it at a readable private key, or create one with ssh-keygen"
    )


def test_key_file_path_expands_home(tmp_path, monkeypatch, key_file) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    values = three_node_site()
    values["ssh"] = {"privateKeyFile": "~/id_test"}
    assert load_site(values).site.ssh.private_key_file == str(key_file)


def test_good_site_is_typed_with_defaults() -> None:
    site = load_site(three_node_site()).site
    master, worker1, worker2 = site.nodes
    assert [n.role for n in site.nodes] == ["server", "agent", "agent"]
    assert master.arch == "amd64" and master.iface == "eth1" and worker1.iface is None
    assert worker2.gpu is not None and worker2.gpu.install_driver is False
    assert worker2.taints == [Taint(key="gpu", value="true", effect="NoSchedule")]
    assert str(worker2.taints[0]) == "gpu=true:NoSchedule"
    assert (site.hub.http_port, site.hub.https_port) == (80, 443)
    assert site.k3s.version == "v1.37.2+k3s1"
    assert site.os.set_hostname is True


def test_same_host_on_different_ports_is_valid() -> None:
    values = three_node_site()
    for index, port in ((0, 2222), (1, 2200), (2, 2201)):
        values["nodes"][index].update(host="127.0.0.1", ssh={"port": port})
    assert [n.ssh.port for n in load_site(values).site.nodes] == [2222, 2200, 2201]


def test_node_ssh_settings_override_the_defaults(key_file) -> None:
    values = three_node_site()
    values["ssh"] = {"user": "ubuntu", "port": 22, "privateKeyFile": str(key_file)}
    values["nodes"][1]["ssh"] = {"port": 2222, "user": "admin"}
    site = load_site(values).site
    effective = site.ssh_for(site.nodes[1])
    assert (effective.user, effective.port, effective.private_key_file) == (
        "admin",
        2222,
        str(key_file),
    )
    assert site.ssh_for(site.nodes[0]).user == "ubuntu"


def test_numbers_as_label_values_become_strings() -> None:
    values = three_node_site()
    values["nodes"][2]["labels"] = {"gpus": 8}
    assert load_site(values).site.nodes[2].labels == {"gpus": "8"}


def test_plain_text_secrets_are_warned_about() -> None:
    values = three_node_site()
    values["ssh"] = {"password": "hunter2"}
    values["k3s"] = {"token": "k3s_hub_token"}
    warnings = load_site(values).warnings
    assert warnings == (
        "convecthub:ssh.password is stored in plain text in the stack file: set it with "
        "`pulumi config set --secret --path 'ssh.password'`",
        "convecthub:k3s.token is stored in plain text in the stack file: set it with "
        "`pulumi config set --secret --path 'k3s.token'`",
    )
    assert load_site(values, secret_keys=["convecthub:ssh", "convecthub:k3s"]).warnings == ()


def test_decode_config_reads_pulumi_json_values_of_this_namespace_only() -> None:
    decoded = decode_config(
        {
            "convecthub:nodes": '[{"name": "a"}]',
            "convecthub:hub": '{"httpPort": 9000}',
            "kubernetes:context": "{not ours}",
        }
    )
    assert decoded == {"nodes": [{"name": "a"}], "hub": {"httpPort": 9000}}


def test_decode_config_rejects_broken_json_with_its_key() -> None:
    with pytest.raises(ConfigError) as raised:
        decode_config({"convecthub:nodes": "[{broken"})
    assert str(raised.value) == (
        "convecthub:nodes: is not valid JSON: set it again with `pulumi config set --path`"
    )
