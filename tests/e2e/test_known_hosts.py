"""`python -m stacks known-hosts` on the sandbox fleet: it pins each node's real host key, and a
run then dials only a node that shows its pinned key (another key fails the dial, naming it)."""

from __future__ import annotations

import shutil

import pytest
import yaml

from stacks.__main__ import main
from stacks.stackfile import read_stack_file
from tests.conftest import PROJECT_DIR
from tests.e2e.conftest import sandbox_site
from tests.sandbox.deployment import CommandError, Deployment

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

    facts_only = Deployment(targets=lambda key: key.endswith("-facts"))
    facts_only.up(read_stack_file(stack_file))
    assert sorted(key for _, key in facts_only.commands) == [
        f"{COMMAND}::{name}-facts" for name in ("master", "worker1", "worker2")
    ]

    # worker1 pinned to worker2's key: its dial fails, naming the step and the reason.
    pinned[1]["ssh"]["hostKey"] = fleet.nodes[2].host_key
    stack_file.write_text(yaml.safe_dump({"config": {**config, "convecthub:nodes": pinned}}))
    with pytest.raises(CommandError) as raised:
        Deployment(targets=lambda key: key.endswith("worker1-facts")).up(
            read_stack_file(stack_file)
        )
    assert str(raised.value).startswith(f"{COMMAND} (worker1-facts): cannot log in to ")
    assert str(raised.value).endswith("Host key verification failed.")
