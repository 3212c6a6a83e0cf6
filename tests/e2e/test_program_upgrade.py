"""End to end: a site brought up by the program before issue 17's restructure (the pinned
commit, tests/program_upgrade.py) does not notice the program after it.

The pinned commit's own stand-in engine brings the sandbox site up on the fleet, in its own
tree and process, and writes its state; HEAD's takes that state over. Its preview finds every
resource of that state `same` (a renamed one under its alias, as the engine would); the only
resources it creates are the components new by design (the NVIDIA device plugin's, which
groups the plugin's release: a component runs nothing); nothing is updated or deleted, and an
`up` from it runs nothing on any node.
"""

from __future__ import annotations

import re
from collections import Counter

from tests.e2e.conftest import sandbox_site
from tests.program_upgrade import PINNED_COMMIT, identity, in_tree, pinned_tree
from tests.sandbox.deployment import Deployment

# The components new by design that the sandbox site has (worker1 is an NVIDIA node).
NEW_COMPONENTS = ["convecthub:infra:NvidiaDevicePlugin::nvidia-device-plugin"]


def test_a_site_the_pinned_program_brought_up_previews_all_same(fleet, stack_file, tmp_path):
    stack = stack_file(sandbox_site(fleet))  # tmp_path/Pulumi.sandbox.yaml, read by both
    stack_path = tmp_path / "Pulumi.sandbox.yaml"
    state_path = tmp_path / "state.json"
    tree = pinned_tree(tmp_path / f"pinned-{PINNED_COMMIT}")

    brought_up = in_tree(
        tree, "-m", "tests.sandbox.deployment", "up", str(stack_path), str(state_path)
    )
    assert brought_up.returncode == 0, brought_up.stderr
    assert not re.search(r"^(error|Traceback)", brought_up.stderr, re.M), brought_up.stderr
    old = Deployment.load(state_path)
    assert len(old.resources) > 20

    deployment = Deployment.load(state_path)
    operations = deployment.preview(stack)
    created = sorted(identity(urn) for urn, op in operations.items() if op == "create")
    assert created == NEW_COMPONENTS
    expected = {"same": len(old.resources), "create": len(NEW_COMPONENTS)}
    assert Counter(operations.values()) == expected, {
        urn: op for urn, op in operations.items() if op != "same"
    }
    assert deployment.commands == []
    assert deployment.resources == old.resources  # a preview changes nothing

    deployment.up(stack)
    assert deployment.commands == []
    # Each resource kept, under HEAD's URN (where one was renamed, the old entry moved to it),
    # and the new components beside them.
    assert set(deployment.resources) == set(operations)
    assert len(deployment.resources) == len(old.resources) + len(NEW_COMPONENTS)
    for urn, resource in deployment.resources.items():
        assert resource.urn == urn
        assert set(resource.dependencies) <= set(deployment.resources)
