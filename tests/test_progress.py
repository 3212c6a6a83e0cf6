"""Per-node progress lines and tallies from engine events (stacks/progress.py), and the
backend and passphrase checks (stacks/backend.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pulumi.automation import EngineEvent

from stacks.backend import STATE_DIRECTORY, BackendError, backend_for
from stacks.progress import RunProgress, expected_steps

STACK = "urn:pulumi:prod::convecthub::pulumi:pulumi:Stack::convecthub-prod"
NODE = "urn:pulumi:prod::convecthub::pulumi:pulumi:Stack$convecthub:infra:BareMetalNode::gpu"
K3S = (
    "urn:pulumi:prod::convecthub::pulumi:pulumi:Stack$convecthub:infra:BareMetalNode"
    "$convecthub:infra:K3sServer::gpu-k3s"
)
INSTALL = (
    "urn:pulumi:prod::convecthub::pulumi:pulumi:Stack$convecthub:infra:BareMetalNode"
    "$convecthub:infra:K3sServer$command:remote:Command::gpu-k3s-install"
)
# A second node whose name starts like the first's.
NODE2 = "urn:pulumi:prod::convecthub::pulumi:pulumi:Stack$convecthub:infra:BareMetalNode::gpu-2"
FACTS2 = (
    "urn:pulumi:prod::convecthub::pulumi:pulumi:Stack$convecthub:infra:BareMetalNode"
    "$command:remote:Command::gpu-2-facts"
)
K3S2 = K3S.replace("::gpu-k3s", "::gpu-2-k3s")
INSTALL2 = INSTALL.replace("::gpu-k3s-install", "::gpu-2-k3s-install")
HUB = "urn:pulumi:prod::convecthub::pulumi:pulumi:Stack$convecthub:infra:HubPlatform::hub"
RELEASE = (
    "urn:pulumi:prod::convecthub::pulumi:pulumi:Stack$convecthub:infra:HubPlatform"
    "$kubernetes:helm.sh/v3:Release::convecthub"
)
TOKEN = "urn:pulumi:prod::convecthub::pulumi:pulumi:Stack$random:index/randomPassword:RandomPassword::k3s-token"  # noqa: E501
PARENTS = {STACK: "", NODE: STACK, K3S: NODE, INSTALL: K3S, NODE2: STACK, FACTS2: NODE2}
PARENTS |= {HUB: STACK, RELEASE: HUB, TOKEN: STACK, K3S2: NODE2, INSTALL2: K3S2}


def step(kind: str, urn: str, op: str, timestamp: int, **extra: object) -> EngineEvent:
    resource_type = urn.split("::")[2].split("$")[-1]
    custom = not resource_type.startswith(("convecthub:infra:", "pulumi:pulumi:"))
    state = {"type": resource_type, "urn": urn, "parent": PARENTS[urn], "custom": custom}
    metadata = {
        "op": op,
        "urn": urn,
        "type": resource_type,
        "provider": "",
        "old": state if op != "create" else None,
        "new": state if op != "delete" else None,
        **extra,
    }
    return EngineEvent.from_json(
        {"sequence": 1, "timestamp": timestamp, kind: {"metadata": metadata, "planning": False}}
    )


def diagnostic(urn: str, severity: str, message: str, ephemeral: bool = False) -> EngineEvent:
    body = {"urn": urn, "message": message, "severity": severity, "ephemeral": ephemeral}
    return EngineEvent.from_json({"sequence": 2, "timestamp": 0, "diagnosticEvent": body})


def run(events: list[EngineEvent], **options: object) -> tuple[RunProgress, list[str]]:
    lines: list[str] = []
    progress = RunProgress(lines.append, **options)  # type: ignore[arg-type]
    for event in events:
        progress.on_event(event)
    return progress, lines


def test_an_update_is_told_by_node_step_time_and_progress() -> None:
    events = [
        step("resourcePreEvent", STACK, "same", 100),
        step("resourcePreEvent", NODE, "same", 100),
        step("resourcePreEvent", K3S, "same", 100),
        step("resourcePreEvent", INSTALL, "update", 100),
        diagnostic(INSTALL, "info", "[INFO]  Using v1.31.4+k3s1 as release\n"),
        step("resOutputsEvent", INSTALL, "update", 114),
        step("resourcePreEvent", HUB, "same", 115),
        step("resourcePreEvent", RELEASE, "create", 115),
        step("resOutputsEvent", RELEASE, "create", 175),
        step("resourcePreEvent", TOKEN, "same", 176),
    ]
    progress, lines = run(events, expected={"gpu": 5, "gpu-2": 4})
    assert lines == [
        "gpu        k3s-install              updating...",
        "gpu        k3s-install              updated in 14s  (1/5)",
        "hub        convecthub               creating...",
        "hub        convecthub               created in 60s",
    ]
    assert progress.changes == {"same": 5, "update": 1, "create": 1}
    assert progress.changes_by_type["command:remote:Command"] == {"update": 1}
    assert progress.changes_by_type["convecthub:infra:BareMetalNode"] == {"same": 1}
    assert progress.node_summary() == [
        "gpu        1 update",
        "hub        1 create",
        "site       unchanged",
    ]


def test_info_output_shows_when_verbose_and_errors_always() -> None:
    events = [
        step("resourcePreEvent", NODE, "same", 0),
        diagnostic(INSTALL, "info", "installing\n"),
        diagnostic(INSTALL, "info", "a spinner line", ephemeral=True),
        diagnostic(INSTALL, "warning", "<{%fg 3%}>slow mirror<{%reset%}>\n"),
        diagnostic("", "error", "update failed"),
    ]
    quiet, quiet_lines = run(events, expected={"gpu": 5})
    assert quiet_lines == ["gpu        warning: slow mirror", "site       error: update failed"]
    assert quiet.errors == ["update failed"]
    _, verbose_lines = run(events, expected={"gpu": 5}, verbose=True)
    assert verbose_lines[0] == "gpu        info: installing"
    assert len(verbose_lines) == 3  # an ephemeral line is a live display's, never a log's


def test_a_failed_step_is_counted_against_its_node_with_its_error() -> None:
    events = [
        step("resourcePreEvent", NODE2, "same", 0),
        step("resourcePreEvent", FACTS2, "create", 10),
        diagnostic(FACTS2, "error", "gpu-2: only 2 GB of memory\nsecond line\n"),
        step("resOpFailedEvent", FACTS2, "create", 13, status=1, steps=0),
    ]
    progress, lines = run(events, expected={"gpu": 5, "gpu-2": 4})
    assert lines[-1] == "gpu-2      facts                    FAILED after 3s"
    assert lines[1:3] == [
        "gpu-2      error: gpu-2: only 2 GB of memory",
        "gpu-2      error: second line",
    ]
    assert progress.errors == ["facts: gpu-2: only 2 GB of memory"]
    assert progress.nodes["gpu-2"].failed == ["facts"]


def test_a_destroy_names_nodes_before_their_components_are_reported() -> None:
    # Deletes run children first: the parents' URNs, and the names of the nodes the stack file
    # still lists (the only knowledge of the site a destroy starts with), are all there is.
    events = [
        step("resourcePreEvent", INSTALL, "delete", 0),
        step("resOutputsEvent", INSTALL, "delete", 2),
        step("resourcePreEvent", INSTALL2, "delete", 2),
        step("resOutputsEvent", INSTALL2, "delete", 2),
        step("resourcePreEvent", FACTS2, "delete", 2),
        step("resOutputsEvent", FACTS2, "delete", 3),
        step("resourcePreEvent", RELEASE, "delete", 3),
        step("resOutputsEvent", RELEASE, "delete", 9),
        step("resourcePreEvent", TOKEN, "delete", 9),
        step("resOutputsEvent", TOKEN, "delete", 9),
    ]
    _, lines = run(events, expected={"gpu": 0, "gpu-2": 0})
    done = [line.split()[:2] for line in lines if "deleted" in line]
    assert done == [["gpu", "k3s-install"], ["gpu-2", "k3s-install"], ["gpu-2", "facts"],
                    ["hub", "convecthub"], ["site", "k3s-token"]]  # fmt: skip


def test_a_refresh_tells_only_what_drifted() -> None:
    events = [
        step("resourcePreEvent", NODE, "refresh", 0),
        step("resourcePreEvent", K3S, "refresh", 0),
        step("resourcePreEvent", INSTALL, "refresh", 0),
        step("resOutputsEvent", INSTALL, "refresh", 1, diffs=["stdout"]),
        step("resourcePreEvent", FACTS2, "refresh", 1),
        step("resOutputsEvent", FACTS2, "refresh", 2),
    ]
    progress, lines = run(events, expected={"gpu": 5, "gpu-2": 4})
    assert lines == ["gpu        k3s-install              differs from the state: stdout"]
    assert progress.nodes["gpu"].done == 1 and progress.nodes["gpu-2"].done == 1


# The engine's URNs (the parent's whole type chain, no root stack), a node's facts step under its
# NodeFacts, and a node called gpu-k3s, as gpu's K3sServer is.
ENGINE = "urn:pulumi:prod::convecthub::"
E_NODE = f"{ENGINE}convecthub:infra:BareMetalNode::gpu"
E_K3S = f"{ENGINE}convecthub:infra:BareMetalNode$convecthub:infra:K3sServer::gpu-k3s"
E_INSTALL = (
    f"{ENGINE}convecthub:infra:BareMetalNode$convecthub:infra:K3sServer"
    "$command:remote:Command::gpu-k3s-install"
)
E_FACTS_OF = f"{ENGINE}convecthub:infra:NodeFacts::gpu-k3s"
E_FACTS = f"{ENGINE}convecthub:infra:NodeFacts$command:remote:Command::gpu-k3s-facts"
E_HUB = f"{ENGINE}convecthub:infra:HubPlatform::hub"
E_CERTIFICATE = f"{ENGINE}convecthub:infra:HubPlatform$command:remote:Command::hub-certificate"
PARENTS |= {E_NODE: STACK, E_K3S: E_NODE, E_INSTALL: E_K3S, E_FACTS_OF: STACK}
PARENTS |= {E_FACTS: E_FACTS_OF, E_HUB: STACK, E_CERTIFICATE: E_HUB}


def test_engine_urns_name_each_steps_node_by_its_whole_name() -> None:
    destroy = [
        step("resourcePreEvent", E_INSTALL, "delete", 0),
        step("resOutputsEvent", E_INSTALL, "delete", 1),
        step("resourcePreEvent", E_FACTS, "delete", 1),
        step("resOutputsEvent", E_FACTS, "delete", 2),
        step("resourcePreEvent", E_CERTIFICATE, "delete", 2),
        step("resOutputsEvent", E_CERTIFICATE, "delete", 3),
    ]
    _, lines = run(destroy, expected={"gpu": 0, "gpu-k3s": 0})
    done = [line.split()[:2] for line in lines if "deleted" in line]
    assert done == [["gpu", "k3s-install"], ["gpu-k3s", "facts"], ["hub", "certificate"]]
    up = [
        step("resourcePreEvent", STACK, "same", 0),
        step("resourcePreEvent", E_FACTS_OF, "create", 0),
        step("resourcePreEvent", E_FACTS, "create", 0),
        step("resOutputsEvent", E_FACTS, "create", 4),
    ]
    progress, lines = run(up, expected={"gpu": 5, "gpu-k3s": 4})
    assert lines[-1] == "gpu-k3s    facts                    created in 4s  (1/4)"
    assert progress.node_summary() == ["gpu-k3s    1 create"]


def test_expected_steps_counts_each_nodes_own_steps() -> None:
    resources = [
        {"urn": STACK, "type": "pulumi:pulumi:Stack", "name": "convecthub-prod", "parent": None},
        {"urn": NODE, "type": "convecthub:infra:BareMetalNode", "name": "gpu", "parent": STACK},
        {"urn": K3S, "type": "convecthub:infra:K3sServer", "name": "gpu-k3s", "parent": NODE},
        {"urn": INSTALL, "type": "command:remote:Command", "name": "x", "parent": K3S},
        {"urn": HUB, "type": "convecthub:infra:HubPlatform", "name": "hub", "parent": STACK},
        {"urn": RELEASE, "type": "kubernetes:helm.sh/v3:Release", "name": "c", "parent": HUB},
        {"urn": "p", "type": "pulumi:providers:kubernetes", "name": "k", "parent": STACK},
    ]
    assert expected_steps(resources) == {"gpu": 1}


def stack_file(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "Pulumi.prod.yaml"
    path.write_text(f"{extra}config: {{}}\n")
    return path


def test_the_default_backend_is_a_state_directory_in_the_project(tmp_path: Path) -> None:
    backend = backend_for(tmp_path, stack_file(tmp_path), {"PULUMI_CONFIG_PASSPHRASE": "x"})
    assert backend.url == f"file://{tmp_path / STATE_DIRECTORY}"
    assert (tmp_path / STATE_DIRECTORY).is_dir()
    assert backend.environment == {
        "PULUMI_BACKEND_URL": backend.url,
        "PULUMI_SKIP_UPDATE_CHECK": "true",
    }
    assert backend.warnings == ()


@pytest.mark.parametrize(
    ("environ", "extra", "needs_passphrase"),
    [
        ({}, "", True),
        ({"PULUMI_BACKEND_URL": "s3://bucket/state"}, "", True),
        ({"PULUMI_BACKEND_URL": "https://api.pulumi.com"}, "", False),
        ({}, "secretsprovider: awskms://alias/site\n", False),
        ({"PULUMI_BACKEND_URL": "https://api.pulumi.com"}, "secretsprovider: passphrase\n", True),
    ],
)
def test_a_passphrase_is_needed_where_the_stack_uses_one(
    tmp_path: Path, environ: dict[str, str], extra: str, needs_passphrase: bool
) -> None:
    path = stack_file(tmp_path, extra)
    if needs_passphrase:
        with pytest.raises(BackendError, match=r"^PULUMI_CONFIG_PASSPHRASE is not set: "):
            backend_for(tmp_path, path, environ)
    else:
        assert backend_for(tmp_path, path, environ).url
