"""Hostile config (issue 14): every value has a grammar, every input a limit, every dangerous
setting a word, and each ends in one line naming the key, never a traceback or a hang."""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from components.hub import hub_urls
from model.site import HubSettings
from stacks.__main__ import main
from stacks.config import ConfigError, decode_config, load_site
from stacks.importers.ansible_ini import parse_inventory, read_inventory
from stacks.render import evaluate
from stacks.stackfile import read_stack_file
from tests.conftest import three_node_site, write_stack_file

Mutation = Callable[[dict], object]


def node(values: dict, index: int) -> dict:
    return values["nodes"][index]


def refused(mutate: Mutation) -> str:
    values = copy.deepcopy(three_node_site())
    mutate(values)
    with pytest.raises(ConfigError) as raised:
        load_site(values)
    message = str(raised.value)
    assert "\n" not in message
    return message


SCOPE_ID = (
    "has an IPv6 scope id (the part from %): a zone names an interface of the machine that "
    "reads the address, so the nodes cannot share it; give a global or unique-local address "
    "(or a DNS name) instead"
)
ONE_LINE = "holds a control character (a newline, tab or the like): write the value on one line"

# Finding 1: what reached a sed expression, /etc/hosts or a config file on a node.
INJECTIONS: list[tuple[str, Mutation, str]] = [
    (
        "scope id into sed",
        lambda v: v.update(k3s={"apiEndpoint": "fe80::1%x#;e echo INJECTED;#"}),
        f"convecthub:k3s.apiEndpoint: 'fe80::1%x#;e echo INJECTED;#' {SCOPE_ID}",
    ),
    (
        "scope id into /etc/hosts",
        lambda v: node(v, 1).update(address="fe80::1%x,github.com=203.0.113.66"),
        f"convecthub:nodes[1].address: 'fe80::1%x,github.com=203.0.113.66' {SCOPE_ID}",
    ),
    (
        "even a plain interface as scope id",
        lambda v: node(v, 1).update(host="fe80::1%eth0"),
        f"convecthub:nodes[1].host: 'fe80::1%eth0' {SCOPE_ID}",
    ),
    (
        "newline in a noProxy entry",
        lambda v: v.update(os={"noProxy": ["example.com\nINJECTED=1"]}),
        f"convecthub:os.noProxy[0]: 'example.com\\nINJECTED=1' {ONE_LINE}, without them",
    ),
    (
        "comma in a noProxy entry",
        lambda v: v.update(os={"noProxy": ["a.example.com,evil"]}),
        "convecthub:os.noProxy[0]: 'a.example.com,evil' is not a no-proxy entry: write a host "
        "(node1), a domain (.example.com), an IP address (10.0.0.1), a CIDR range "
        "(10.0.0.0/8) or *",
    ),
    (
        "trailing newline after an address",
        lambda v: node(v, 1).update(host="10.0.0.11\n"),
        f"convecthub:nodes[1].host: '10.0.0.11\\n' {ONE_LINE}, without them",
    ),
    (
        "trailing newline after a name (the model's own grammar)",
        lambda v: node(v, 1).update(iface="eth1\n"),
        f"convecthub:nodes[1].iface: 'eth1\\n' {ONE_LINE}, without them",
    ),
    (
        "newline in a k3s config value",
        lambda v: v.update(k3s={"serverConfig": {"kubelet-arg": ["max-pods=200\nx: y"]}}),
        f"convecthub:k3s.serverConfig.kubelet-arg[0]: 'max-pods=200\\nx: y' {ONE_LINE}, "
        "without them",
    ),
    (
        "tab in a map key",
        lambda v: v.update(os={"docker": {"daemonConfig": {"log\tlevel": "warn"}}}),
        "convecthub:os.docker.daemonConfig[\"log\\tlevel\"]: the key 'log\\tlevel' holds a "
        "control character: write it without",
    ),
    (
        "a URL with a fragment (# ends a sed expression)",
        lambda v: v.update(os={"aptMirror": "http://mirror/ubuntu#;e"}),
        "convecthub:os.aptMirror: 'http://mirror/ubuntu#;e' is not an http(s) URL (its path "
        "may hold letters, digits and ._~%/:@+=,- and a ?query of the same, no #fragment): "
        "write it as http://host:port",
    ),
    (
        "a URL with shell syntax",
        lambda v: v.update(k3s={"installScriptUrl": "https://get.k3s.io/$(id)"}),
        "convecthub:k3s.installScriptUrl: 'https://get.k3s.io/$(id)' is not an http(s) URL "
        "(its path may hold letters, digits and ._~%/:@+=,- and a ?query of the same, no "
        "#fragment): write it as http://host:port",
    ),
    (
        "a URL escaping a newline",
        lambda v: v.update(os={"aptProxy": "http://cache:3142/%0a"}),
        "convecthub:os.aptProxy: 'http://cache:3142/%0a' is not an http(s) URL (a % starts no "
        "escape, or escapes a control character): write it as http://host:port",
    ),
    (
        "a URL whose port is out of range",
        lambda v: v.update(os={"aptProxy": "http://cache:70000"}),
        "convecthub:os.aptProxy: 'http://cache:70000' is not an http(s) URL (port 70000 is not "
        "from 1 to 65535): write it as http://host:port",
    ),
    (
        "a URL with a scope id",
        lambda v: v.update(os={"httpProxy": "http://[fe80::1%25eth0]:3128"}),
        "convecthub:os.httpProxy: 'http://[fe80::1%25eth0]:3128' is not an http(s) URL (an "
        "IPv6 scope id (%) has no place in it): write it as http://host:port",
    ),
    (
        "a path with ..",
        lambda v: v.update(os={"docker": {"dataRoot": "/data/../etc"}}),
        "convecthub:os.docker.dataRoot: '/data/../etc' is not a plain path: write its parts "
        "with letters, digits and '._+@-' only (no '.' or '..', spaces or control characters), "
        "e.g. /mnt/docker",
    ),
    (
        "a path with a space (fstab splits on it)",
        lambda v: v.update(storage={"mountPoint": "/data/k8s extra"}),
        "convecthub:storage.mountPoint: '/data/k8s extra' is not a plain path: write its parts "
        "with letters, digits and '._+@-' only (no '.' or '..', spaces or control characters), "
        "e.g. /mnt/docker",
    ),
    (
        "an option for ssh as the login name",
        lambda v: v.update(ssh={"user": "-oProxyCommand=x"}),
        "convecthub:ssh.user: '-oProxyCommand=x' is not a login name: use up to 64 letters, "
        "digits and '_', '.', '@', '-', not starting with '.', '@' or '-'",
    ),
    (
        "a hub admin with a space",
        lambda v: v.update(hub={"adminUsers": ["admin x"]}),
        "convecthub:hub.adminUsers[0]: 'admin x' is not a user name: use up to 64 letters, "
        "digits and '_', '.', '@', '-', not starting with '.', '@' or '-'",
    ),
    (
        "a daemon.json key that is no option",
        lambda v: v.update(os={"docker": {"daemonConfig": {"Log Level": "warn"}}}),
        "convecthub:os.docker.daemonConfig[\"Log Level\"]: 'Log Level' is not a daemon.json "
        "option: write it as Docker names it, in lowercase words and dashes, e.g. log-opts",
    ),
    (
        "a chart version with a newline",
        lambda v: v.update(gpu={"devicePlugin": {"chartVersion": "0.17.0 --set x=y"}}),
        "convecthub:gpu.devicePlugin.chartVersion: '0.17.0 --set x=y' is not a chart version: "
        "write it as helm does, e.g. 0.17.0",
    ),
    (
        "an IPv6 address in brackets",
        lambda v: node(v, 1).update(host="[fd00::11]"),
        "convecthub:nodes[1].host: '[fd00::11]' is in brackets: write the IPv6 address without "
        "them, e.g. fd00::10",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [pytest.param(mutate, expected, id=case) for case, mutate, expected in INJECTIONS],
)
def test_a_value_outside_its_grammar_is_one_line(mutate: Mutation, expected: str) -> None:
    assert refused(mutate) == expected


def test_values_inside_their_grammar_pass() -> None:
    values = three_node_site()
    values["os"] = {
        "noProxy": ["*", ".corp", "*.corp", "10.0.0.0/8", "fd00::/8", "proxy:8080", "::1"],
        "aptMirror": "http://[fd00::5]:3142/ubuntu",
        "httpProxy": "http://proxy.corp:3128",
    }
    values["hub"] = {"adminUsers": ["admin", "jane.doe@corp"]}
    values["storage"] = {"mountPoint": "/srv/nfs/k8s/"}
    site = load_site(values).site
    assert site.os.no_proxy[-1] == "::1"
    assert site.storage.mount_point == "/srv/nfs/k8s"  # normalised


# Finding 2: the same address written two ways, and IPv6 in URLs.
def test_one_ipv6_address_written_two_ways_is_a_duplicate() -> None:
    message = refused(
        lambda v: [node(v, 1).update(host="FD00:0:0::11"), node(v, 2).update(host="fd00::11")]
    )
    assert message == (
        "convecthub:nodes[2].host: nodes[1] is reached at fd00::11 port 22 too: give each node "
        "its own host, or its own ssh.port"
    )


def test_an_ipv4_mapped_address_is_its_ipv4_address() -> None:
    message = refused(
        lambda v: [
            node(v, 1).update(address="10.0.1.5"),
            node(v, 2).update(address="::ffff:10.0.1.5"),
        ]
    )
    assert message == (
        "convecthub:nodes[2].address: ::ffff:10.0.1.5 is already the address of nodes[1]: give "
        "every node its own private address"
    )


def test_a_host_name_differs_from_itself_by_case_only() -> None:
    message = refused(
        lambda v: [node(v, 1).update(host="Node1.Corp"), node(v, 2).update(host="node1.corp")]
    )
    assert message.startswith("convecthub:nodes[2].host: nodes[1] is reached at node1.corp")


def test_ipv6_addresses_are_kept_in_their_compressed_form() -> None:
    values = three_node_site()
    node(values, 1)["host"] = "FD00:0000::0011"
    values["k3s"] = {"apiEndpoint": "FD00::10"}
    site = load_site(values).site
    assert (site.nodes[1].host, site.k3s.api_endpoint) == ("fd00::11", "fd00::10")


def test_hub_urls_bracket_an_ipv6_address() -> None:
    assert hub_urls("fd00::10", HubSettings(httpPort=9000, httpsPort=9443)) == {
        "https": "https://[fd00::10]:9443/",
        "http": "http://[fd00::10]:9000/",
    }
    assert hub_urls("10.0.0.10", HubSettings(hosts=["fd00::20"]))["https"] == "https://[fd00::20]/"


def test_an_ipv6_site_renders_bracketed_urls(render) -> None:
    values = three_node_site()
    for index, address in enumerate(("fd00::10", "fd00::11", "fd00::12")):
        node(values, index).update(host=address, address=address)
    values["k3s"] = {"apiEndpoint": "FD00::10"}
    outputs = render(values).as_json()["outputs"]
    assert outputs["apiServer"] == "https://[fd00::10]:6443"
    assert outputs["hubUrls"] == {"https": "https://[fd00::10]/", "http": "http://[fd00::10]/"}


# Finding 2: numbers that are no numbers.
@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda v: v.update(ssh={"port": True}),
            "convecthub:ssh.port: true is not a port number: use a whole number from 1 to 65535",
        ),
        (
            lambda v: node(v, 1).update(ssh={"port": False}),
            "convecthub:nodes[1].ssh.port: false is not a port number: use a whole number from "
            "1 to 65535",
        ),
        (
            lambda v: v.update(hub={"httpPort": True, "httpsPort": 9443}),
            "convecthub:hub.httpPort: true is not a port number: use a whole number from 1 to "
            "65535",
        ),
        (
            lambda v: node(v, 2)["gpu"].update(count=True),
            "convecthub:nodes[2].gpu.count: true is true/false, not a number: write a whole number",
        ),
        (
            lambda v: v.update(k3s={"readyTimeoutSeconds": True}),
            "convecthub:k3s.readyTimeoutSeconds: true is true/false, not a number: write a whole "
            "number",
        ),
        (
            lambda v: v.setdefault("ssh", {}).update(dialAttempts=True),
            "convecthub:ssh.dialAttempts: true is true/false, not a number: write a whole number",
        ),
        (
            lambda v: node(v, 1).update(ssh={"dialTimeoutSeconds": False}),
            "convecthub:nodes[1].ssh.dialTimeoutSeconds: false is true/false, not a number: "
            "write a whole number",
        ),
    ],
)
def test_true_and_false_are_no_numbers(mutate: Mutation, expected: str) -> None:
    assert refused(mutate) == expected


# Finding 3: settings that break the site.
@pytest.mark.parametrize(
    ("mount_point", "why"),
    [
        ("/", "is a system directory"),
        ("/etc", "is a system directory"),
        ("/usr/", "is a system directory"),
        ("/var", "is a system directory"),
        ("/root", "is a system directory"),
        ("/tmp", "is a system directory"),
        ("/lib64", "is a system directory"),
        ("/var/lib/rancher", "is a system directory"),
        ("/var/lib/rancher/k3s/storage", "is under /var/lib/rancher"),
        ("/var/lib/kubelet/pods", "is under /var/lib/kubelet"),
        ("/etc/rancher/k3s", "is under /etc/rancher"),
        ("/proc/data", "is under /proc"),
    ],
)
def test_the_share_is_never_mounted_over_the_system(mount_point: str, why: str) -> None:
    message = refused(lambda v: v.update(storage={"mountPoint": mount_point}))
    shown = mount_point.rstrip("/") or "/"
    assert message == (
        f"convecthub:storage.mountPoint: {shown} {why}: mounting the share there would hide what "
        "the node runs on, and removing the site unmounts it; mount it at a directory of its "
        "own, e.g. /data/k8s"
    )


def test_the_share_on_home_is_a_warning() -> None:
    values = three_node_site()
    values["storage"] = {
        "nfs": {"server": "10.0.0.5", "path": "/export/home"},
        "mountPoint": "/home",
    }
    assert load_site(values).warnings == (
        "convecthub:storage.mountPoint is /home: the share hides the nodes' own home "
        "directories, the login user's ~/.ssh/authorized_keys among them; make sure the share "
        "holds it, or mount the share elsewhere, e.g. /data/k8s",
    )


@pytest.mark.parametrize(
    ("hub", "ssh", "expected"),
    [
        (
            {"httpPort": 22},
            None,
            "convecthub:hub.httpPort: 22 is the first server's SSH port (ssh.port 22)",
        ),
        (
            {"httpsPort": 2222},
            {"port": 2222},
            "convecthub:hub.httpsPort: 2222 is the first server's SSH port (ssh.port 2222)",
        ),
        ({"httpsPort": 6443}, None, "convecthub:hub.httpsPort: 6443 is the Kubernetes API"),
        ({"httpsPort": 10250}, None, "convecthub:hub.httpsPort: 10250 is the kubelet's API"),
        ({"httpPort": 2379}, None, "convecthub:hub.httpPort: 2379 is the embedded etcd's client"),
        ({"httpPort": 2380}, None, "convecthub:hub.httpPort: 2380 is the embedded etcd's peer"),
        ({"httpPort": 10259}, None, "convecthub:hub.httpPort: 10259 is the scheduler's port"),
    ],
)
def test_the_hub_takes_no_port_the_node_needs(hub: dict, ssh: dict | None, expected: str) -> None:
    def mutate(values: dict) -> None:
        values["hub"] = hub
        if ssh is not None:
            values["ssh"] = ssh

    message = refused(mutate)
    assert message.startswith(expected)
    assert message.endswith(
        "which the hub's load balancer would take over on the node: serve the hub on another "
        "port, e.g. 80 and 443 or 9000 and 9443"
    )


def test_port_22_is_free_for_the_hub_when_ssh_listens_elsewhere() -> None:
    values = three_node_site()
    values["ssh"] = {"port": 2222}
    values["hub"] = {"httpPort": 22, "httpsPort": 443}
    assert load_site(values).site.hub.http_port == 22


@pytest.mark.parametrize("endpoint", ["127.0.0.1", "127.0.1.1", "::1", "localhost"])
def test_a_loopback_api_endpoint_on_a_fleet_is_refused(endpoint: str) -> None:
    message = refused(lambda v: v.update(k3s={"apiEndpoint": endpoint}))
    assert message == (
        f"convecthub:k3s.apiEndpoint: {endpoint} is a loopback address, and the site has 3 "
        "nodes: each would look for the API on itself; give an address every node reaches the "
        "servers at (a load balancer or the first server's private address), or leave it unset"
    )


def test_a_loopback_node_address_on_a_fleet_is_refused() -> None:
    message = refused(lambda v: node(v, 0).update(address="127.0.0.1"))
    assert message.startswith(
        "convecthub:nodes[0].address: 127.0.0.1 is a loopback address, and the site has 3 nodes"
    )


def test_a_loopback_api_endpoint_on_one_node_is_fine() -> None:
    values = {
        "nodes": [{"name": "local", "host": "127.0.0.1", "roles": ["server"]}],
        "k3s": {"apiEndpoint": "127.0.0.1"},
    }
    assert load_site(values).site.k3s.api_endpoint == "127.0.0.1"


@pytest.mark.parametrize("servers", [2, 4])
def test_an_even_number_of_servers_is_warned_about(servers: int) -> None:
    values = three_node_site()
    values["nodes"] = [
        {"name": f"s{i}", "host": f"10.0.0.{i}", "roles": ["server"]} for i in range(servers)
    ]
    assert load_site(values).warnings == (
        f"convecthub:nodes has {servers} servers, an even number: k3s's embedded etcd needs a "
        f"majority of them up, so {servers} servers survive as few failures as {servers - 1} "
        f"({(servers - 1) // 2}) and a network split in halves stops both; use an odd number, "
        "3 or 5",
    )


@pytest.mark.parametrize("servers", [1, 3, 5])
def test_an_odd_number_of_servers_is_not(servers: int) -> None:
    values = {
        "nodes": [
            {"name": f"s{i}", "host": f"10.0.0.{i}", "roles": ["server"]} for i in range(servers)
        ]
    }
    assert load_site(values).warnings == ()


# Finding 2: key files.
def key_file_message(path: Path, reason: str) -> str:
    return (
        f"convecthub:ssh.privateKeyFile: cannot read '{path}' ({reason}): point it at a readable "
        "private key, or create one with ssh-keygen"
    )


def with_key_file(path: Path | str) -> dict:
    values = three_node_site()
    values["ssh"] = {"privateKeyFile": str(path)}
    return values


def test_a_binary_key_file_is_one_line(tmp_path: Path) -> None:
    key = tmp_path / "id_binary"
    key.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    with pytest.raises(ConfigError) as raised:
        load_site(with_key_file(key))
    assert str(raised.value) == key_file_message(
        key, "not text: a private key file is PEM or OpenSSH text"
    )


def test_a_huge_key_file_is_one_line(tmp_path: Path) -> None:
    key = tmp_path / "id_huge"
    key.write_bytes(b"A" * (1024 * 1024))
    with pytest.raises(ConfigError) as raised:
        load_site(with_key_file(key))
    assert str(raised.value) == key_file_message(
        key, "1048576 bytes: a private key is under 64 KiB"
    )


@pytest.mark.timeout(10)
def test_a_device_key_file_does_not_hang() -> None:
    with pytest.raises(ConfigError) as raised:
        load_site(with_key_file("/dev/zero"))
    assert str(raised.value) == key_file_message(Path("/dev/zero"), "not a regular file")


@pytest.mark.timeout(10)
def test_a_fifo_key_file_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "id_fifo"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError) as raised:
        load_site(with_key_file(fifo))
    assert str(raised.value) == key_file_message(fifo, "not a regular file")


# Finding 2: the stack file itself.
def stack_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "Pulumi.site.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def read_error(path: Path) -> str:
    with pytest.raises(ConfigError) as raised:
        read_stack_file(path)
    message = str(raised.value)
    assert "\n" not in message
    return message


NODES = "  convecthub:nodes:\n    - {name: master, host: 10.0.0.10, roles: [server]}\n"


def test_a_key_given_twice_in_a_node_names_both_lines(tmp_path: Path) -> None:
    path = stack_file(
        tmp_path,
        "config:\n  convecthub:nodes:\n    - name: master\n      host: 10.0.0.10\n"
        "      roles: [server]\n      host: 10.0.0.99\n",
    )
    assert read_error(path) == (
        f"{path}:6: the key 'host' is given twice in one mapping, first at line 4: keep one of them"
    )


def test_a_section_given_twice_names_both_lines(tmp_path: Path) -> None:
    path = stack_file(tmp_path, f"config:\n{NODES}  convecthub:nodes: []\n")
    assert read_error(path) == (
        f"{path}:4: the key 'convecthub:nodes' is given twice in one mapping, first at line 2: "
        "keep one of them"
    )


def test_a_section_given_with_and_without_its_namespace_names_both_lines(tmp_path) -> None:
    path = stack_file(tmp_path, f"config:\n{NODES}  nodes: []\n")
    assert read_error(path) == (
        f"{path}:4: 'nodes' sets convecthub:nodes, which line 2 sets too: keep one of them"
    )


def test_yaml_merge_keys_still_override(tmp_path: Path) -> None:
    path = stack_file(
        tmp_path,
        "defaults: &node {roles: [agent], arch: amd64}\nconfig:\n  convecthub:nodes:\n"
        "    - {<<: *node, name: master, host: 10.0.0.10, roles: [server]}\n",
    )
    assert '"roles": ["server"]' in read_stack_file(path).config["convecthub:nodes"]


def test_a_misspelt_namespace_is_an_error(tmp_path: Path) -> None:
    path = stack_file(tmp_path, f"config:\n{NODES}  convectub:os:\n    setHostname: false\n")
    assert read_error(path) == (
        f"{path}:4: unknown namespace 'convectub' in 'convectub:os': did you mean convecthub:? "
        "this program reads convecthub:* keys (and its providers' kubernetes, command, random)"
    )


def test_a_misspelt_namespace_in_pulumis_config_is_an_error() -> None:
    with pytest.raises(ConfigError) as raised:
        decode_config({"convecthub:nodes": "[]", "convecthb:os": '{"setHostname": false}'})
    assert str(raised.value) == (
        "convecthb:os: unknown namespace 'convecthb': did you mean convecthub? this program "
        "reads convecthub:* keys only, so the value would be ignored"
    )


def test_the_providers_namespaces_are_allowed(tmp_path: Path) -> None:
    path = stack_file(tmp_path, f"config:\n{NODES}  kubernetes:context: default\n")
    assert read_stack_file(path).config["kubernetes:context"] == "default"


def test_a_key_that_is_no_string_is_one_line(tmp_path: Path) -> None:
    path = stack_file(tmp_path, f"config:\n{NODES}  123: x\n")
    assert read_error(path) == f"{path}:4: the key '123' is not a string: quote it"


def test_a_date_stays_a_string(tmp_path: Path) -> None:
    path = stack_file(tmp_path, f"config:\n{NODES}  convecthub:k3s:\n    version: 2024-01-01\n")
    assert read_stack_file(path).config["convecthub:k3s"] == '{"version": "2024-01-01"}'


def test_a_binary_tag_is_one_line(tmp_path: Path) -> None:
    path = stack_file(tmp_path, f"config:\n{NODES}  convecthub:os: !!binary aGVsbG8=\n")
    assert read_error(path) == (
        f"{path}:4: the tag !!binary has no place in a stack file's values: write a plain "
        "string, number, list or mapping"
    )


BOMB = "config:\n  a0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 9)
)


@pytest.mark.timeout(10)
def test_an_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    path = stack_file(tmp_path, BOMB)
    assert len(BOMB) < 500
    started = time.perf_counter()
    message = read_error(path)
    assert time.perf_counter() - started < 1.0
    assert message == (
        f"{path}:8: expands to more than 1000000 values (its aliases, *name, repeat what they "
        "refer to): write it without nested aliases"
    )


def test_an_alias_that_holds_itself_is_refused(tmp_path: Path) -> None:
    path = stack_file(tmp_path, "config:\n  convecthub:nodes: &loop [*loop]\n")
    assert read_error(path) == (
        f"{path}:2: an alias refers to the node that holds it: write it out"
    )


def test_nesting_too_deep_is_one_line(tmp_path: Path) -> None:
    path = stack_file(tmp_path, "config:\n  convecthub:hub: " + "[" * 3000 + "]" * 3000 + "\n")
    assert read_error(path).endswith("nests deeper than 64 levels: flatten it")


def test_a_huge_stack_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = stack_file(tmp_path, "config: {}\n" + "#" * (9 * 1024 * 1024) + "\n")
    assert read_error(path) == (
        f"{path}: is {path.stat().st_size} bytes, over the 8388608 a file may hold"
    )


@pytest.mark.timeout(10)
def test_a_fifo_stack_file_does_not_hang(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.site.yaml"
    os.mkfifo(path)
    assert read_error(path) == f"{path}: is not a regular file (a pipe, socket or device)"


def test_a_stack_file_that_is_no_utf8_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.site.yaml"
    path.write_bytes(b"config:\n  convecthub:nodes: []\n  x: \xff\xfe\n")
    assert read_error(path) == f"{path}:3: is not UTF-8 text: save it as UTF-8"


def test_the_render_command_says_it_in_one_line(tmp_path: Path, capsys) -> None:
    path = stack_file(tmp_path, BOMB)
    assert main(["render", str(path)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith(f"error: {path}:8: expands")


def test_a_refused_ssh_port_renders_nothing(tmp_path: Path) -> None:
    values = three_node_site()
    values["ssh"] = {"port": True}
    with pytest.raises(ConfigError) as raised:
        evaluate(read_stack_file(write_stack_file(tmp_path, values)))
    assert str(raised.value).startswith("convecthub:ssh.port: true is not a port number")


# Finding 2: the INI importer's host ranges.
INVENTORY = Path("inventory.ini")


@pytest.mark.timeout(10)
def test_a_host_range_of_millions_is_one_line() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_inventory("[worker]\nw[0:50000000]\n", INVENTORY)
    assert str(raised.value) == (
        "inventory.ini:2: host range 'w[0:50000000]' names more than 10000 hosts: split the "
        "fleet over smaller ranges, or check the range's ends"
    )


@pytest.mark.timeout(10)
def test_nested_host_ranges_are_bounded_together() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_inventory("[worker]\nw[0:999]-[0:999]\n", INVENTORY)
    assert str(raised.value).startswith("inventory.ini:2: host range 'w[0:999]-[0:999]' names")


def test_a_range_end_of_many_digits_is_one_line() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_inventory(f"[worker]\nw[1:{'9' * 5000}]\n", INVENTORY)
    assert "names more than 10000 hosts" in str(raised.value)


def test_ten_thousand_hosts_still_expand() -> None:
    inventory = parse_inventory("[worker]\nw[00001:10000]\n", INVENTORY)
    assert len(inventory.members("worker")) == 10000


@pytest.mark.timeout(10)
def test_an_inventory_that_is_a_fifo_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "inventory.ini"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError) as raised:
        read_inventory(fifo)
    assert str(raised.value) == f"{fifo}: is not a regular file (a pipe, socket or device)"
