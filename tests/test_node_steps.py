"""BareMetalNode under mocks: its steps, their commands and environment, and their order."""

from __future__ import annotations

import getpass
import json

import pulumi
import pytest

from components.node import no_proxy, os_prep_env
from components.node_facts import parse_facts
from components.remote_script import script_text
from stacks.config import load_site
from stacks.render import format_text
from tests.conftest import name_of, resources_by_name, three_node_site


def preamble_of(stdin: str, script: str) -> dict[str, str]:
    """The variables a stdin exports ahead of `script`'s text (values as bash would see)."""
    assert stdin.endswith(script_text(script))
    head = stdin[: -len(script_text(script))]
    env = {}
    for line in head.splitlines():
        if not line.startswith("export "):
            break  # common.sh follows the preamble
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = value.strip("'")
    return env


def test_each_node_gets_facts_then_os_prep(render, site) -> None:
    rendering = render(site)
    resources = resources_by_name(rendering)
    for name in ("master", "worker1", "worker2"):
        component = resources[name]
        assert component["type"] == "convecthub:infra:BareMetalNode"
        facts, prep = resources[f"{name}-facts"], resources[f"{name}-os-prep"]
        # The facts step is the stack's own (NodeFacts is no component), the rest the node's.
        assert facts["parent"] == rendering.stack_urn
        assert component["urn"] == prep["parent"]
        assert facts["inputs"]["create"] == "/bin/bash -s  # node-facts.sh"
        assert "delete" not in facts["inputs"]
        assert prep["inputs"]["create"] == "/bin/bash -s apply  # os-prep.sh"
        assert prep["inputs"]["delete"] == "/bin/bash -s remove  # os-prep.sh"
        assert facts["inputs"]["addPreviousOutputInEnv"] is False


def test_sudo_is_used_for_a_non_root_user(render, site) -> None:
    site["ssh"] = {"user": "ubuntu"}
    prep = resources_by_name(render(site))["master-os-prep"]
    assert prep["inputs"]["create"] == "sudo -n /bin/bash -s apply  # os-prep.sh"
    assert prep["inputs"]["delete"] == "sudo -n /bin/bash -s remove  # os-prep.sh"


def test_os_prep_takes_every_address_but_waits_only_for_its_own_facts(render, site) -> None:
    """The hosts list carries every node's address, not the n dependency edges (n² in all):
    each os-prep waits for its own node's facts alone, however large the fleet."""
    resources = resources_by_name(render(site))
    for name in ("master", "worker1", "worker2"):
        assert resources[f"{name}-facts"]["dependencies"] == []
        prep = resources[f"{name}-os-prep"]
        assert {name_of(urn) for urn in prep["dependencies"]} == {f"{name}-facts"}
        hosts = preamble_of(prep["inputs"]["stdin"], "os-prep.sh")["CONVECTHUB_HOSTS"]
        assert hosts == (
            "master=<master.address>,worker1=<worker1.address>,worker2=<worker2.address>"
        )


def test_facts_environment(render, site) -> None:
    resources = resources_by_name(render(site))
    assert preamble_of(resources["master-facts"]["inputs"]["stdin"], "node-facts.sh") == {
        "CONVECTHUB_EXPECT_ARCH": "amd64",
        "CONVECTHUB_IFACE": "eth1",
        "CONVECTHUB_NODE_NAME": "master",
    }
    assert preamble_of(resources["worker1-facts"]["inputs"]["stdin"], "node-facts.sh") == {
        "CONVECTHUB_EXPECT_ARCH": "amd64",
        "CONVECTHUB_NODE_NAME": "worker1",
    }


def test_os_prep_environment_with_defaults(render, site) -> None:
    site["nodes"][1]["address"] = "192.168.1.11"
    prep = resources_by_name(render(site))["worker2-os-prep"]
    assert preamble_of(prep["inputs"]["stdin"], "os-prep.sh") == {
        "CONVECTHUB_HOSTS": "master=<master.address>,worker1=192.168.1.11,"
        "worker2=<worker2.address>",
        "CONVECTHUB_NODE_NAME": "worker2",
        "CONVECTHUB_SET_HOSTNAME": "true",
    }


def test_os_prep_environment_with_every_os_setting() -> None:
    values = three_node_site()
    values["os"] = {
        "setHostname": False,
        "aptMirror": "http://mirror.example/ubuntu",
        "aptProxy": "http://10.0.0.1:3142",
        "httpProxy": "http://proxy:3128",
        "httpsProxy": "http://proxy:3128",
        "noProxy": ["10.0.0.0/8", "localhost"],
        "ntpServers": ["10.0.0.1", "ntp.example"],
        "packages": ["nfs-common", "htop"],
    }
    site = load_site(values).site
    assert os_prep_env(site.nodes[0], site.os, "master=10.0.0.10") == {
        "CONVECTHUB_NODE_NAME": "master",
        "CONVECTHUB_SET_HOSTNAME": "false",
        "CONVECTHUB_HOSTS": "master=10.0.0.10",
        "CONVECTHUB_APT_MIRROR": "http://mirror.example/ubuntu",
        "CONVECTHUB_APT_PROXY": "http://10.0.0.1:3142",
        "CONVECTHUB_HTTP_PROXY": "http://proxy:3128",
        "CONVECTHUB_HTTPS_PROXY": "http://proxy:3128",
        "CONVECTHUB_NO_PROXY": "localhost,127.0.0.1,::1,10.42.0.0/16,10.43.0.0/16,.svc,"
        ".cluster.local,10.0.0.0/8",
        "CONVECTHUB_NTP_SERVERS": "10.0.0.1 ntp.example",
        "CONVECTHUB_PACKAGES": "nfs-common htop",
    }


def test_no_proxy_only_with_a_proxy() -> None:
    values = three_node_site()
    values["os"] = {"aptProxy": "http://10.0.0.1:3142"}
    site = load_site(values).site
    assert "CONVECTHUB_NO_PROXY" not in os_prep_env(site.nodes[0], site.os, "")
    assert no_proxy(site.os).startswith("localhost,127.0.0.1")


@pytest.mark.parametrize(
    ("ssh", "expected_user"),
    [({"user": "vagrant"}, "vagrant"), ({}, None)],
)
def test_node_summary_output(render, site, ssh, expected_user) -> None:
    site["ssh"] = ssh
    rendering = render(site)
    summary = rendering.as_json()["outputs"]["nodes"]
    assert sorted(summary) == ["master", "worker1", "worker2"]
    assert summary["worker2"] == {
        "role": "agent",
        "host": "10.0.0.12",
        "address": "<worker2.address>",
        "arch": "<worker2.arch>",
        "os": "<worker2.os>",
        "cpus": "<worker2.cpus>",
        "memoryMb": "<worker2.memoryMb>",
        "gpus": "<worker2.gpus>",
        # Every label it carries: the hub's (gpu, gpu-type) and its own.
        "labels": {"gpu": "true", "gpu-type": "A100", "org": "public", "train": "true"},
    }
    assert summary["master"]["labels"] == {
        "svccontroller.k3s.cattle.io/enablelb": "true",  # it serves the hub's ports
        "cpu": "true",
    }
    user = expected_user or getpass.getuser()
    assert f"master  server  {user}@10.0.0.10:22  arch amd64" in format_text(rendering)


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (
            {"address": "fe80::1%x,github.com=203.0.113.66", "home": "/home/u"},
            "node n1: the preflight reported 'fe80::1%x,github.com=203.0.113.66' as its "
            "address, which is no IP address: set address (or iface) for it in convecthub:nodes",
        ),
        (
            {"address": "10.0.0.1\n10.6.6.6 evil", "home": "/home/u"},
            "node n1: the preflight reported '10.0.0.1\\n10.6.6.6 evil' as its address, which is "
            "no IP address: set address (or iface) for it in convecthub:nodes",
        ),
        (
            {"address": "10.0.0.1", "home": "/home/u;reboot"},
            "node n1: the preflight reported '/home/u;reboot' as the login's home, which is no "
            "plain absolute path: give the SSH user a home such as /home/ubuntu",
        ),
        (
            ["not", "an", "object"],
            'node n1: the preflight printed no facts (got \'["not", "an", "object"]\'): run '
            "components/scripts/node-facts.sh on it by hand to see why",
        ),
    ],
)
def test_what_a_node_reports_is_held_to_the_models_grammar(facts, expected) -> None:
    """A node is not trusted to print only what node-facts.sh would: its address goes into
    every other node's hosts file and join URL, its home into paths."""
    with pytest.raises(pulumi.RunError) as raised:
        parse_facts("n1", json.dumps(facts))
    assert str(raised.value) == expected


def test_a_reported_address_is_written_one_way() -> None:
    facts = parse_facts("n1", json.dumps({"address": "FD00:0::0010", "home": "/home/u"}))
    assert facts["address"] == "fd00::10"
