"""`python -m stacks known-hosts` on the sandbox fleet: it pins each node's real host key, and a
run then dials only a node that shows its pinned key (another key fails the dial, naming it)."""

from __future__ import annotations

import shutil

import pytest
import yaml

from stacks.__main__ import main
from tests.conftest import PROJECT_DIR
from tests.e2e.conftest import sandbox_site
from tests.sandbox.deployment import CommandError, ssh_run

COMMAND = "command:remote:Command"


def test_known_hosts_pins_the_fleets_keys_and_the_run_checks_them(fleet, tmp_path) -> None:
    config = sandbox_site(fleet)
    for node in config["convecthub:nodes"]:
        del node["ssh"]  # unpinned, as a site is before known-hosts
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(PROJECT_DIR / "Pulumi.yaml", project / "Pulumi.yaml")
    stack_file = project / "Pulumi.sandbox.yaml"
    stack_file.write_text(yaml.safe_dump({"config": config}, sort_keys=False))

    assert main(["known-hosts", "--stack", "sandbox", "--project-dir", str(project), "-y"]) == 0
    pinned = yaml.safe_load(stack_file.read_text())["config"]["convecthub:nodes"]
    # Each node's own ed25519 key, although the nodes offer ECDSA too.
    assert [node["ssh"]["hostKey"] for node in pinned] == [n.host_key for n in fleet.nodes]

    # The stand-in provider dials each node as pulumi-command does with those pins: the
    # pinned key logs in, another node's key fails the dial, naming the step and the reason.
    login = {
        "user": config["convecthub:ssh"]["user"],
        "privateKey": fleet.key_file.read_text(),
        "dialErrorLimit": 1,
    }
    for node, entry in zip(fleet.nodes, pinned, strict=True):
        connection = {**login, "host": node.address, "hostKey": entry["ssh"]["hostKey"]}
        shown = "cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub"
        assert ssh_run(connection, shown, None, entry["name"])[0] == node.host_key
    wrong = {**login, "host": fleet.nodes[1].address, "hostKey": fleet.nodes[2].host_key}
    with pytest.raises(CommandError) as raised:
        ssh_run(wrong, "true", None, f"{COMMAND} (worker1-facts)")
    assert str(raised.value).startswith(f"{COMMAND} (worker1-facts): cannot log in to ")
    assert str(raised.value).endswith("Host key verification failed.")
