"""The Ansible INI inventory parser: sections, quoting, ranges, precedence, and its errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from stacks.config import ConfigError
from stacks.importers.ansible_ini import Var, parse_inventory, read_inventory
from tests.conftest import PROJECT_DIR

SEED_INVENTORY = PROJECT_DIR / "examples" / "convecthub-inventory.ini"
INVENTORY = Path("inv.ini")


def values(variables: dict[str, Var]) -> dict[str, str]:
    return {name: var.value for name, var in variables.items()}


def test_seed_sample_is_read_as_ansible_reads_it() -> None:
    inventory = read_inventory(SEED_INVENTORY)
    assert list(inventory.hosts) == ["worker2", "worker1", "master"]
    assert inventory.members("driver") == ["master"]
    assert inventory.members("worker") == ["worker1", "worker2"]
    assert inventory.members("registry") == ["master"]
    assert inventory.members("ungrouped") == []
    assert values(inventory.host_vars("worker2")) == {
        "convect_workdir": "/tmp/convecthub",
        "convect_token": "k3s_hub_token",
        "has_gpu": "true",
        "jhub_config_path": "thu-vars/jupyterhub.yaml",
        "ansible_ssh_user": "vagrant",
        "ansible_ssh_host": "127.0.0.1",
        "ansible_ssh_port": "2201",
        "ansible_ssh_private_key_file": "~/.ssh/id_rsa",
        "my_iface": "eth1",
    }
    assert inventory.host_vars("worker2")["has_gpu"] == Var("true", 1, "host worker2")
    assert inventory.host_vars("master")["has_gpu"] == Var("false", 18, "[all:vars]")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("h a='~/.ssh/id_rsa'", "~/.ssh/id_rsa"),
        ('h a="two words"', "two words"),
        ("h a=plain # a comment", "plain"),
        ("h a=x=y", "x=y"),
        ("h a=", ""),
    ],
)
def test_inline_values_are_unquoted(line: str, expected: str) -> None:
    inventory = parse_inventory(line, INVENTORY)
    assert inventory.hosts["h"].vars["a"].value == expected


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("a='~/.ssh/id_rsa'", "~/.ssh/id_rsa"),
        ('a="two words"', "two words"),
        ("a = spaced", "spaced"),
        ("a='unbalanced", "'unbalanced"),
        ("a=x=y", "x=y"),
    ],
)
def test_group_values_are_unquoted(line: str, expected: str) -> None:
    inventory = parse_inventory(f"h\n[all:vars]\n{line}\n", INVENTORY)
    assert inventory.host_vars("h")["a"].value == expected


def test_comments_and_blank_lines_are_skipped() -> None:
    text = "# a comment\n; another\n\n  h1 a=1\n[g]  # the group\nh1\n; h2\n"
    inventory = parse_inventory(text, INVENTORY)
    assert list(inventory.hosts) == ["h1"]
    assert inventory.members("g") == ["h1"]


@pytest.mark.parametrize(
    ("pattern", "hosts"),
    [
        ("worker[01:03]", ["worker01", "worker02", "worker03"]),
        ("node[1:10:4]", ["node1", "node5", "node9"]),
        ("db-[a:c]", ["db-a", "db-b", "db-c"]),
        ("r[1:2]-[a:b]", ["r1-a", "r1-b", "r2-a", "r2-b"]),
        ("gpu[8:10].lab", ["gpu8.lab", "gpu9.lab", "gpu10.lab"]),
    ],
)
def test_host_ranges_expand(pattern: str, hosts: list[str]) -> None:
    inventory = parse_inventory(f"[worker]\n{pattern} my_iface=eth1\n", INVENTORY)
    assert inventory.members("worker") == hosts
    assert [inventory.host_vars(h)["my_iface"].scope for h in hosts] == [f"host {h}" for h in hosts]


def test_host_port_becomes_ansible_port() -> None:
    inventory = parse_inventory("node1:2222 ansible_user=ops\n", INVENTORY)
    assert values(inventory.host_vars("node1")) == {"ansible_port": "2222", "ansible_user": "ops"}


NESTED = """\
lonely
[all:vars]
x=all
y=all
[gpu:vars]
x=gpu
y=gpu
[nvidia:vars]
x=nvidia
[gpu:children]
nvidia
[nvidia]
n1 x=host
n2
[gpu]
g1
[cluster:children]
gpu
"""


@pytest.mark.parametrize(
    ("host", "x", "y", "groups"),
    [
        ("n1", "host", "gpu", ["all", "cluster", "gpu", "nvidia"]),
        ("n2", "nvidia", "gpu", ["all", "cluster", "gpu", "nvidia"]),
        ("g1", "gpu", "gpu", ["all", "cluster", "gpu"]),
        ("lonely", "all", "all", ["all", "ungrouped"]),
    ],
)
def test_precedence_host_then_child_then_parent_then_all(host, x, y, groups) -> None:
    inventory = parse_inventory(NESTED, INVENTORY)
    assert inventory.groups_of(host) == groups
    assert inventory.host_vars(host)["x"].value == x
    assert inventory.host_vars(host)["y"].value == y


def test_children_members_follow_the_groups_own() -> None:
    inventory = parse_inventory(NESTED, INVENTORY)
    assert inventory.members("cluster") == ["g1", "n1", "n2"]
    assert inventory.members("all") == ["lonely", "g1", "n1", "n2"]


@pytest.mark.parametrize(
    ("priority", "winner"),
    [("", "b"), ("[a:vars]\nansible_group_priority=10\n", "a")],
)
def test_groups_of_one_depth_go_by_priority_then_name(priority: str, winner: str) -> None:
    text = f"[a]\nh\n[b]\nh\n[a:vars]\nx=a\n[b:vars]\nx=b\n{priority}"
    assert parse_inventory(text, INVENTORY).host_vars("h")["x"].value == winner


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[driver\nmaster\n",
            "inv.ini:1: cannot read section header '[driver': write [group], [group:vars] or "
            "[group:children], with no spaces in the group name",
        ),
        (
            "h\n[g:hosts]\n",
            "inv.ini:2: unknown section [g:hosts]: write [g], [g:vars] or [g:children]",
        ),
        (
            "master ansible_ssh_port 2222\n",
            "inv.ini:1: expected key=value after the host name, got 'ansible_ssh_port': write "
            "variables as name=value, and quote values with spaces",
        ),
        ("h a='open\n", "inv.ini:1: a quote is not closed: close it, or remove it"),
        (
            "[g]\nh\n[g:vars]\njust words\n",
            "inv.ini:4: cannot read 'just words' in [g:vars]: write one name=value per line",
        ),
        (
            "[g]\nh\n[cluster:children]\ng\nmissing\n",
            "inv.ini:5: [cluster:children] names 'missing', which is no group of this "
            "inventory: declare [missing] with its hosts, or remove the line",
        ),
        (
            "[g:children]\na b\n",
            "inv.ini:2: cannot read 'a b' in [g:children]: list one group name per line",
        ),
        (
            "h\n[nowhere:vars]\na=1\n",
            "inv.ini:2: [nowhere:vars] sets variables of a group with no hosts and no children: "
            "declare [nowhere] with its hosts, or remove the section",
        ),
        (
            "[a:children]\nb\n[b:children]\na\n",
            "inv.ini:4: [b:children] makes a loop (a > b > a): a group cannot be inside itself; "
            "remove one of these lines",
        ),
        (
            "w[1:a]\n",
            "inv.ini:1: cannot read host range 'w[1:a]': the ends are both numbers or both "
            "single letters, e.g. [01:10] or [a:f]",
        ),
        (
            "w[3:1]\n",
            "inv.ini:1: host range 'w[3:1]' runs backwards: put the smaller end first",
        ),
        (
            "w[01:100]\n",
            "inv.ini:1: host range 'w[01:100]' mixes widths: give both ends as many digits, "
            "e.g. [01:10]",
        ),
        (
            "w[1-3]\n",
            "inv.ini:1: cannot read host range 'w[1-3]': write it as name[01:10] or name[a:f], "
            "with an optional step: name[01:10:2]",
        ),
    ],
)
def test_unreadable_lines_are_one_line_errors_naming_file_and_line(text, expected) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_inventory(text, INVENTORY)
    assert str(raised.value) == expected


def test_a_priority_that_is_no_number_names_its_line() -> None:
    inventory = parse_inventory("[g]\nh\n[g:vars]\nansible_group_priority=high\n", INVENTORY)
    with pytest.raises(ConfigError) as raised:
        inventory.host_vars("h")
    assert str(raised.value) == (
        "inv.ini:4: ansible_group_priority='high' is not a whole number: write a number, e.g. 10"
    )


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        read_inventory(tmp_path / "nope.ini")
    assert (
        str(raised.value) == f"{tmp_path / 'nope.ini'}: cannot read it (No such file or directory)"
    )
