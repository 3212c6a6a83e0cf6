"""`python -m stacks preview|up|destroy|refresh|outputs` against the stand-in `pulumi`.

The stand-in (tests/standins/pulumi) records every call the Automation API makes of the CLI,
keeps state in the file backend, and reports engine events from the project's own offline
render, so these tests see the real call sequence, environment and progress of each command.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from stacks.__main__ import main
from stacks.known_hosts import write_host_keys
from tests.conftest import (
    PROJECT_DIR,
    STANDINS,
    pinned,
    sample_host_key,
    three_node_site,
    write_stack_file,
)

STANDIN_PULUMI = STANDINS / "pulumi"
PASSPHRASE = "correct horse battery staple"
SITE = "site"
TAIL = ["--stack", SITE]


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PULUMI_", "STANDIN_PULUMI"))
    }
    environment.update(
        PATH=f"{STANDIN_PULUMI}{os.pathsep}{os.environ['PATH']}",
        STANDIN_PULUMI_PYTHON=sys.executable,
        STANDIN_PULUMI_LOG=str(tmp_path / "pulumi-calls.jsonl"),
        PULUMI_CONFIG_PASSPHRASE=PASSPHRASE,
    )
    return environment


def stacks(
    project: Path, env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stacks", *args, "--project-dir", str(project)],
        cwd=PROJECT_DIR,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )


def calls(env: dict[str, str]) -> list[dict]:
    path = Path(env["STANDIN_PULUMI_LOG"])
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def argvs(env: dict[str, str]) -> list[list[str]]:
    """Each call's arguments, the event log's address made stable."""
    normal = []
    for call in calls(env):
        argv = [re.sub(r"^tcp://127\.0\.0\.1:\d+$", "tcp://EVENTS", arg) for arg in call["argv"]]
        argv = [re.sub(r"^/.*/eventlog\.txt$", "EVENTLOG", arg) for arg in argv]
        normal.append(argv)
    return normal


def reset_log(env: dict[str, str]) -> None:
    Path(env["STANDIN_PULUMI_LOG"]).unlink(missing_ok=True)


RUN = ["--color", "never", "--exec-kind", "auto.local", "--event-log", "tcp://EVENTS", *TAIL]
OUTPUTS = [
    ["--non-interactive", "stack", "output", "--json", *TAIL],
    ["--non-interactive", "stack", "output", "--json", "--show-secrets", *TAIL],
]
HISTORY = [
    "--non-interactive", "stack", "history", "--json", "--show-secrets",
    "--page-size", "1", "--page", "1", *TAIL,
]  # fmt: skip
SELECT = ["--non-interactive", "stack", "select", *TAIL]


def test_up_creates_the_stack_and_reports_each_node(project: Path, cli_env: dict) -> None:
    result = stacks(project, cli_env, "up", *TAIL)
    assert result.returncode == 0, result.stderr
    assert argvs(cli_env) == [
        ["version"],
        SELECT,
        ["--non-interactive", "stack", "init", SITE],
        ["--non-interactive", "up", "--yes", "--skip-preview", *RUN],
        *OUTPUTS,
        HISTORY,
    ]
    state_dir = project / ".pulumi-state"
    for call in calls(cli_env)[1:]:  # all but `pulumi version`, which checks the CLI
        assert call["cwd"] == str(project)
        assert call["env"]["PULUMI_BACKEND_URL"] == f"file://{state_dir}"
    assert calls(cli_env)[3]["env"]["PULUMI_CONFIG_PASSPHRASE"] == PASSPHRASE
    assert (state_dir / ".pulumi" / "stacks" / "convecthub" / f"{SITE}.json").is_file()
    lines = result.stdout.splitlines()
    assert lines[0] == "site site: 3 node(s), 15 steps"
    assert re.search(r"^master +facts +created in 1s  \(1/5\)$", result.stdout, re.M)
    assert re.search(r"^worker2 +gpu-runtime +created in 1s  \(\d/6\)$", result.stdout, re.M)
    assert re.search(r"^hub +release +created in 1s$", result.stdout, re.M)
    assert re.search(r"^up succeeded for site site in \d+s: \d+ create$", result.stdout, re.M)
    assert re.search(r"^worker1 +4 create$", result.stdout, re.M)
    assert 'output hubAdminPassword: "[secret]"' in lines


def test_a_second_up_changes_nothing(project: Path, cli_env: dict) -> None:
    assert stacks(project, cli_env, "up", *TAIL).returncode == 0
    reset_log(cli_env)
    result = stacks(project, cli_env, "up", *TAIL, "--json")
    assert result.returncode == 0, result.stderr
    assert argvs(cli_env)[1:3] == [
        SELECT,
        ["--non-interactive", "up", "--yes", "--skip-preview", *RUN],
    ]
    summary = json.loads(result.stdout)
    assert set(summary["changes"]) == {"same"}
    assert {node: tally["changes"] for node, tally in summary["nodes"].items()} == {
        "master": {},
        "worker1": {},
        "worker2": {},
        "hub": {},
        "site": {},
    }
    assert "created" not in result.stderr and "updating" not in result.stderr
    # Secrets stay masked in the summary CI keeps, and the passphrase is never echoed.
    assert summary["outputs"]["hubAdminPassword"] == "[secret]"
    assert summary["outputs"]["kubeconfig"] == "[secret]"
    assert "standin-secret" not in result.stdout + result.stderr
    assert PASSPHRASE not in result.stdout + result.stderr


def test_preview_json_counts_changes_by_operation_type_and_node(
    project: Path, cli_env: dict
) -> None:
    result = stacks(project, cli_env, "preview", *TAIL, "--json")
    assert result.returncode == 0, result.stderr
    assert argvs(cli_env) == [
        ["version"],
        SELECT,
        ["--non-interactive", "stack", "init", SITE],
        ["--non-interactive", "preview", *RUN],
    ]
    summary = json.loads(result.stdout)  # stdout holds the JSON alone
    assert summary["command"] == "preview" and summary["result"] == "succeeded"
    assert summary["changesByType"]["command:remote:Command"] == {
        "create": 15 + 1
    }  # and the hub's certificate
    assert summary["changes"]["create"] == sum(
        ops.get("create", 0) for ops in summary["changesByType"].values()
    )
    assert summary["nodes"]["worker2"]["changes"] == {"create": 6}
    assert summary["errors"] == [] and summary["outputs"] == {}
    assert re.search(r"^worker2 +gpu-driver +would create$", result.stderr, re.M)
    state = project / ".pulumi-state" / ".pulumi" / "stacks" / "convecthub" / f"{SITE}.json"
    assert json.loads(state.read_text())["resources"] == []  # a preview changes nothing


def test_a_changed_node_previews_as_one_update(project: Path, cli_env: dict) -> None:
    assert stacks(project, cli_env, "up", *TAIL).returncode == 0
    site = pinned(three_node_site())
    site["nodes"][1]["labels"] = {"rack": "r7"}  # type: ignore[index]
    write_stack_file(project, site, stack=SITE)
    result = stacks(project, cli_env, "preview", *TAIL)
    assert result.returncode == 0, result.stderr
    changed = [line.split() for line in result.stdout.splitlines() if "would" in line]
    assert changed == [["worker1", "k3s-membership", "would", "update"]]


def test_refresh_reads_the_state_back(project: Path, cli_env: dict) -> None:
    assert stacks(project, cli_env, "up", *TAIL).returncode == 0
    reset_log(cli_env)
    result = stacks(project, cli_env, "refresh", *TAIL)
    assert result.returncode == 0, result.stderr
    assert argvs(cli_env) == [
        ["version"],
        SELECT,
        ["--non-interactive", "refresh", "--skip-preview", "--yes", *RUN],
        HISTORY,
    ]
    assert re.search(r"^refresh succeeded for site site in \d+s: \d+ refresh$", result.stdout, re.M)


def test_destroy_with_yes_removes_everything(project: Path, cli_env: dict) -> None:
    assert stacks(project, cli_env, "up", *TAIL).returncode == 0
    reset_log(cli_env)
    result = stacks(project, cli_env, "destroy", *TAIL, "--yes")
    assert result.returncode == 0, result.stderr
    assert argvs(cli_env) == [
        ["version"],
        SELECT,
        ["--non-interactive", "destroy", "--skip-preview", "--yes", *RUN],
        HISTORY,
    ]
    # Children end before their node's component, yet each step is told by its node.
    assert re.search(r"^master +facts +deleted in 1s$", result.stdout, re.M)
    assert re.search(r"^worker2 +5 delete$", result.stdout, re.M) is None
    assert re.search(r"^worker2 +6 delete$", result.stdout, re.M)
    assert re.search(r"^hub +\d+ delete$", result.stdout, re.M)
    outputs = stacks(project, cli_env, "outputs", *TAIL, "--json")
    assert json.loads(outputs.stdout) == {}


def test_destroy_without_a_terminal_asks_for_yes(project: Path, cli_env: dict) -> None:
    assert stacks(project, cli_env, "up", *TAIL).returncode == 0
    reset_log(cli_env)
    result = stacks(project, cli_env, "destroy", *TAIL, stdin="site\n")
    assert result.returncode == 2
    assert result.stderr == (
        "error: destroy asks before it uninstalls site site, and there is no terminal to ask "
        "on: pass --yes to destroy without asking\n"
    )
    assert [argv for argv in argvs(cli_env) if "destroy" in argv] == []


@pytest.mark.parametrize(("answer", "destroyed"), [("site", True), ("yes", False), ("", False)])
def test_destroy_at_a_terminal_wants_the_site_name(
    project: Path,
    cli_env: dict,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    answer: str,
    destroyed: bool,
) -> None:
    assert stacks(project, cli_env, "up", *TAIL).returncode == 0
    reset_log(cli_env)
    for key in [key for key in os.environ if key.startswith("PULUMI_")]:
        monkeypatch.delenv(key)
    for key, value in cli_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda: answer)
    code = main(["destroy", *TAIL, "--project-dir", str(project)])
    captured = capsys.readouterr()
    prompt = (
        "This uninstalls ConvectHub, k3s and everything else this program set up from 3 "
        "node(s): master, worker1, worker2.\nType the site's name (site) to go on: "
    )
    assert captured.err.startswith(prompt)
    ran_destroy = any("destroy" in argv for argv in argvs(cli_env))
    assert ran_destroy == destroyed
    if destroyed:
        assert code == 0
    else:
        assert code == 2
        assert captured.err.endswith(
            "error: destroy of site site not confirmed: nothing was changed\n"
        )


def test_outputs_mask_secrets_unless_asked(project: Path, cli_env: dict) -> None:
    assert stacks(project, cli_env, "up", *TAIL).returncode == 0
    reset_log(cli_env)
    masked = stacks(project, cli_env, "outputs", *TAIL, "--json")
    assert masked.returncode == 0, masked.stderr
    assert argvs(cli_env) == [["version"], SELECT, *OUTPUTS]
    document = json.loads(masked.stdout)
    assert document["hubAdminPassword"] == "[secret]" and document["kubeconfig"] == "[secret]"
    assert document["hubAdminUsers"] == ["admin"]
    assert "standin-secret" not in masked.stdout + masked.stderr
    text = stacks(project, cli_env, "outputs", *TAIL)
    assert 'hubAdminPassword: "[secret]"' in text.stdout.splitlines()
    shown = stacks(project, cli_env, "outputs", *TAIL, "hubAdminPassword", "--show-secrets")
    assert shown.stdout == "standin-secret-hubAdminPassword\n"
    urls = stacks(project, cli_env, "outputs", *TAIL, "hubUrls")
    assert json.loads(urls.stdout) == {
        "http": "http://<master.address>/",
        "https": "https://<master.address>/",
    }
    missing = stacks(project, cli_env, "outputs", *TAIL, "hubUrl")
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: site site has no output 'hubUrl' (outputs: apiServer,")


def test_a_failed_up_exits_1_and_names_the_step(project: Path, cli_env: dict) -> None:
    env = {**cli_env, "STANDIN_PULUMI_FAIL": "worker1-os-prep"}
    result = stacks(project, env, "up", *TAIL, "--json")
    assert result.returncode == 1
    summary = json.loads(result.stdout)
    assert summary["result"] == "failed"
    assert summary["nodes"]["worker1"]["failed"] == ["os-prep"]
    assert summary["errors"] == [
        "os-prep: Process exited with status 1: worker1-os-prep failed (stand-in)"
    ]
    assert re.search(r"^worker1 +os-prep +FAILED after 1s$", result.stderr, re.M)
    assert re.search(r"^worker1 +error:   its stderr, second line$", result.stderr, re.M)
    text = stacks(project, env, "up", *TAIL)
    assert text.returncode == 1
    assert re.search(r"^up FAILED for site site", text.stdout, re.M)
    assert text.stderr.splitlines()[-1] == (
        "error: os-prep: Process exited with status 1: worker1-os-prep failed (stand-in)"
    )
    assert "Traceback" not in text.stderr


def test_without_the_pulumi_cli_one_line_points_to_install_and_render(
    project: Path, cli_env: dict, tmp_path: Path
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {**cli_env, "PATH": str(empty)}
    result = subprocess.run(
        [sys.executable, "-m", "stacks", "up", *TAIL, "--project-dir", str(project)],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        "error: the Pulumi CLI (`pulumi`) is not on PATH: install it with "
        "`curl -fsSL https://get.pulumi.com | sh` and add ~/.pulumi/bin to PATH "
        "(https://www.pulumi.com/docs/install/); without it, "
        "`python -m stacks render Pulumi.site.yaml` shows what the site would become\n"
    )


def test_without_a_passphrase_nothing_runs(project: Path, cli_env: dict) -> None:
    env = {key: value for key, value in cli_env.items() if key != "PULUMI_CONFIG_PASSPHRASE"}
    result = stacks(project, env, "up", *TAIL)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: PULUMI_CONFIG_PASSPHRASE is not set: the stack's secrets are encrypted with a "
        "passphrase; export PULUMI_CONFIG_PASSPHRASE, or PULUMI_CONFIG_PASSPHRASE_FILE naming "
        "a file that holds it"
    ]
    assert argvs(env) == [["version"]]


def test_a_passphrase_file_is_passed_on(project: Path, cli_env: dict, tmp_path: Path) -> None:
    secret = tmp_path / "passphrase"
    secret.write_text(PASSPHRASE)
    env = {key: value for key, value in cli_env.items() if key != "PULUMI_CONFIG_PASSPHRASE"}
    missing = stacks(
        project, {**env, "PULUMI_CONFIG_PASSPHRASE_FILE": str(tmp_path / "nope")}, "up", *TAIL
    )
    assert missing.returncode == 2
    assert missing.stderr.startswith(
        f"error: PULUMI_CONFIG_PASSPHRASE_FILE={tmp_path / 'nope'}: cannot read it"
    )
    env["PULUMI_CONFIG_PASSPHRASE_FILE"] = str(secret)
    result = stacks(project, env, "up", *TAIL)
    assert result.returncode == 0, result.stderr
    up = next(call for call in calls(env) if "up" in call["argv"])
    assert up["env"]["PULUMI_CONFIG_PASSPHRASE_FILE"] == str(secret)


def test_an_empty_passphrase_is_allowed_with_a_warning(project: Path, cli_env: dict) -> None:
    result = stacks(project, {**cli_env, "PULUMI_CONFIG_PASSPHRASE": ""}, "preview", *TAIL)
    assert result.returncode == 0, result.stderr
    assert "warning: PULUMI_CONFIG_PASSPHRASE is empty" in result.stderr


def test_pulumi_backend_url_wins(project: Path, cli_env: dict, tmp_path: Path) -> None:
    elsewhere = tmp_path / "state"
    elsewhere.mkdir()
    env = {**cli_env, "PULUMI_BACKEND_URL": f"file://{elsewhere}"}
    assert stacks(project, env, "up", *TAIL).returncode == 0
    assert {call["env"]["PULUMI_BACKEND_URL"] for call in calls(env)} == {f"file://{elsewhere}"}
    assert (elsewhere / ".pulumi" / "stacks" / "convecthub" / f"{SITE}.json").is_file()
    assert not (project / ".pulumi-state").exists()


def test_bad_config_stops_before_the_cli_runs_anything(project: Path, cli_env: dict) -> None:
    site = three_node_site()
    site["nodes"][2]["host"] = "10.0.0.300"  # type: ignore[index]
    write_stack_file(project, site, stack=SITE)
    result = stacks(project, cli_env, "up", *TAIL)
    assert result.returncode == 2
    assert result.stderr.startswith("error: convecthub:nodes[2].host: '10.0.0.300' is neither")
    assert len(result.stderr.splitlines()) == 1
    assert argvs(cli_env) == [["version"]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["destroy", "--yes"],
            "error: --stack site: no such stack in file://{state}: `python -m stacks up --stack "
            "site` creates it (or set PULUMI_BACKEND_URL to where its state is)\n",
        ),
        (["outputs"], None),
        (["refresh"], None),
    ],
)
def test_commands_on_a_site_never_brought_up(
    project: Path, cli_env: dict, args: list[str], message: str | None
) -> None:
    result = stacks(project, cli_env, args[0], *TAIL, *args[1:])
    assert result.returncode == 2
    assert "no such stack" in result.stderr and len(result.stderr.splitlines()) == 1
    if message:
        assert result.stderr == message.format(state=project / ".pulumi-state")
    assert argvs(cli_env) == [["version"], SELECT]


def test_a_site_without_a_stack_file(project: Path, cli_env: dict) -> None:
    result = stacks(project, cli_env, "up", "--stack", "elsewhere")
    assert result.returncode == 2
    assert result.stderr == (
        f"error: {project / 'Pulumi.elsewhere.yaml'} does not exist: write the site's stack "
        "file there (see examples/, or `python -m stacks import-inventory` for an Ansible "
        "inventory)\n"
    )


def test_a_bad_stack_name_is_bad_usage(project: Path, cli_env: dict) -> None:
    result = stacks(project, cli_env, "preview", "--stack", "my site")
    assert result.returncode == 2
    assert result.stderr.startswith("error: --stack 'my site' is not a stack name")
    assert calls(cli_env) == []


def test_an_older_cli_gets_an_event_log_file(project: Path, cli_env: dict) -> None:
    env = {**cli_env, "STANDIN_PULUMI_VERSION": "v3.150.0"}
    result = stacks(project, env, "up", *TAIL)
    assert result.returncode == 0, result.stderr
    up = next(argv for argv in argvs(env) if "up" in argv)
    assert up[up.index("--event-log") + 1] == "EVENTLOG"
    assert re.search(r"^master +k3s-install +created in 1s  \(3/5\)$", result.stdout, re.M)


def test_a_cli_too_old_for_the_sdk(project: Path, cli_env: dict) -> None:
    result = stacks(project, {**cli_env, "STANDIN_PULUMI_VERSION": "v3.0.1"}, "up", *TAIL)
    assert result.returncode == 2
    assert result.stderr.startswith("error: pulumi: Minimum version requirement failed.")
    assert len(result.stderr.splitlines()) == 1


CI_WORKFLOW = PROJECT_DIR / "docs" / "ci" / "convecthub-site.yml"


def workflow_steps() -> list[dict]:
    import yaml

    workflow = yaml.safe_load(CI_WORKFLOW.read_text())
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def test_the_ci_example_runs_commands_that_exist() -> None:
    from stacks.__main__ import parser

    commands = [
        line.split("python -m stacks", 1)[1].split(">")[0].replace('"$SITE"', "prod").split()
        for step in workflow_steps()
        for line in step.get("run", "").splitlines()
        if "python -m stacks" in line
    ]
    assert [command[0] for command in commands] == ["preview", "up", "outputs"]
    for command in commands:
        parser().parse_args(command)  # exits 2 on an unknown command or option


def test_the_ci_example_summarises_a_preview(project: Path, cli_env: dict, tmp_path: Path) -> None:
    result = stacks(project, cli_env, "preview", *TAIL, "--json")
    (tmp_path / "preview.json").write_text(result.stdout)
    summary_step = next(step for step in workflow_steps() if step.get("name") == "Summary")
    script = summary_step["run"].split("<<'PY'\n", 1)[1].rsplit("PY", 1)[0]
    summary = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert summary.stdout.splitlines()[:5] == [
        "### preview of site site: succeeded",
        "| node | would change |",
        "|---|---|",
        "| hub | 7 create |",
        "| master | 5 create |",
    ]
    (tmp_path / "preview.json").write_text("")  # what a preview that never ran leaves
    failed = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True
    )
    assert failed.stdout == "### preview did not run: see the job's log\n"


def test_relative_paths_in_the_stack_file_are_the_projects(project: Path, cli_env: dict) -> None:
    # The CLI runs the program in the project directory: the check before it must agree.
    (project / "jupyterhub.yaml").write_text("singleuser: {startTimeout: 600}\n")
    site = pinned(three_node_site())
    site["hub"] = {"valuesFile": "jupyterhub.yaml"}
    write_stack_file(project, site, stack=SITE)
    result = stacks(project, cli_env, "preview", *TAIL)
    assert result.returncode == 0, result.stderr


def test_from_the_seeds_inventory_to_a_site_that_is_up(
    project: Path, cli_env: dict, tmp_path: Path
) -> None:
    """The README's migration walk: import the Ansible inventory, preview, up, the hub's URL."""
    from tests.conftest import FAKE_KEY

    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text(FAKE_KEY)
    env = {**cli_env, "HOME": str(home)}
    inventory = PROJECT_DIR / "examples" / "convecthub-inventory.ini"
    imported = stacks(project, env, "import-inventory", str(inventory), "--stack", "vagrant")
    assert imported.returncode == 0, imported.stderr
    assert "pulumi config set --secret --path 'k3s.token' --stack vagrant" in imported.stderr
    assert "k3s_hub_token" not in imported.stderr + (project / "Pulumi.vagrant.yaml").read_text()
    # The walk pins the machines' host keys next (`known-hosts --write`); these are samples.
    names = ("master", "worker1", "worker2")
    keys = {("nodes", index, "ssh"): sample_host_key(name) for index, name in enumerate(names)}
    write_host_keys(project / "Pulumi.vagrant.yaml", keys)
    preview = stacks(project, env, "preview", "--stack", "vagrant")
    assert preview.returncode == 0, preview.stderr
    assert preview.stdout.splitlines()[0] == "site vagrant: 3 node(s), 15 steps"
    planned = {line.split()[0] for line in preview.stdout.splitlines() if "would create" in line}
    assert planned == {"master", "worker1", "worker2", "hub", "site"}
    up = stacks(project, env, "up", "--stack", "vagrant")
    assert up.returncode == 0, up.stderr
    assert re.search(r"^worker2 +gpu-runtime +created in 1s", up.stdout, re.M)
    urls = stacks(project, env, "outputs", "--stack", "vagrant", "hubUrls")
    assert json.loads(urls.stdout)["https"] == "https://<master.address>/"
