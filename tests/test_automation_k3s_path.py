"""`python -m stacks preview|up` read what k3s release each node last got from the site's state
(the file backend's checkpoint: no CLI call) before the CLI runs: the move shows in a preview,
and a move of more than one Kubernetes minor stops an up in one line."""

from __future__ import annotations

from pathlib import Path

from model.defaults import K3S_VERSION, upgrade_refusal
from tests.conftest import pinned, three_node_site, write_stack_file
from tests.test_automation import SITE, TAIL, argvs, cli_env, reset_log, stacks

__all__ = ["cli_env"]  # the fixture, shared with tests/test_automation.py (project: conftest.py)

OLD_DEFAULT = "v1.31.4+k3s1"  # the default a site that named no version got before


def site_on(project: Path, version: str | None) -> None:
    values = pinned(three_node_site())
    if version is not None:
        values["k3s"] = {"version": version}
    write_stack_file(project, values, stack=SITE)


def test_a_site_on_the_old_default_previews_the_upgrade_and_up_refuses_it(
    project: Path, cli_env: dict
) -> None:
    # Brought up when the default was the old one: the state holds that release.
    site_on(project, OLD_DEFAULT)
    assert stacks(project, cli_env, "up", *TAIL).returncode == 0
    # Now the stack file names no version, and the default is six minors on.
    site_on(project, None)
    reset_log(cli_env)
    refusal = f"node master {upgrade_refusal(OLD_DEFAULT, K3S_VERSION)}"

    preview = stacks(project, cli_env, "preview", *TAIL)
    assert preview.returncode == 0, preview.stderr
    assert (
        f"site {SITE}: k3s {OLD_DEFAULT} -> {K3S_VERSION} on master, worker1, worker2"
        in preview.stdout.splitlines()
    )
    warnings = [line for line in preview.stderr.splitlines() if line.startswith("warning: ")]
    assert f"warning: {refusal}; up refuses this" in warnings
    assert sum("convecthub:k3s.version is not set" in line for line in warnings) == 1
    assert any(argv[1:2] == ["preview"] for argv in argvs(cli_env))

    reset_log(cli_env)
    up = stacks(project, cli_env, "up", *TAIL)
    assert up.returncode == 2
    errors = [line for line in up.stderr.splitlines() if not line.startswith("warning: ")]
    assert errors == [f"error: {refusal}"]
    assert argvs(cli_env) == [["version"]]  # the CLI was never asked to change anything


def test_one_minor_on_is_shown_and_runs(project: Path, cli_env: dict) -> None:
    site_on(project, "v1.36.4+k3s1")
    assert stacks(project, cli_env, "up", *TAIL).returncode == 0
    site_on(project, K3S_VERSION)
    up = stacks(project, cli_env, "up", *TAIL)
    assert up.returncode == 0, up.stderr
    assert f"site {SITE}: k3s v1.36.4+k3s1 -> {K3S_VERSION} on master, worker1, worker2" in (
        up.stdout.splitlines()
    )
    again = stacks(project, cli_env, "preview", *TAIL)
    assert "k3s v1.36.4+k3s1 ->" not in again.stdout


def test_a_first_up_has_nothing_to_compare(project: Path, cli_env: dict) -> None:
    site_on(project, K3S_VERSION)
    result = stacks(project, cli_env, "preview", *TAIL)
    assert result.returncode == 0, result.stderr
    assert " -> " not in result.stdout
