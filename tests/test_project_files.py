"""The project's own files agree with each other: README, CI, Pulumi.yaml, requirements."""

from __future__ import annotations

import re

import yaml

from model.site import Site
from stacks.config import NAMESPACE
from tests.conftest import PROJECT_DIR


def readme_commands() -> list[str]:
    text = (PROJECT_DIR / "README.md").read_text()
    return re.findall(r"```sh\n(.*?)\n```", text, flags=re.DOTALL)


def test_ci_runs_the_readme_test_command() -> None:
    test_command = next(c for c in readme_commands() if "pytest" in c)
    assert test_command in (PROJECT_DIR / ".ci" / "run").read_text().splitlines()


def test_project_file_describes_every_config_key() -> None:
    project = yaml.safe_load((PROJECT_DIR / "Pulumi.yaml").read_text())
    assert project["name"] == NAMESPACE
    assert project["runtime"] == {
        "name": "python",
        "options": {"toolchain": "pip", "virtualenv": ".venv"},
    }
    declared = set(project["template"]["config"])
    expected = {f"{NAMESPACE}:{info.alias or name}" for name, info in Site.model_fields.items()}
    assert declared == expected
    assert all(entry["description"] for entry in project["template"]["config"].values())


def test_requirements_are_pinned() -> None:
    for name in ("requirements.txt", "requirements-dev.txt"):
        for line in (PROJECT_DIR / name).read_text().splitlines():
            if line and not line.startswith(("#", "-r ")):
                assert re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][0-9A-Za-z.]*", line), line


def test_the_readme_runs_only_commands_that_exist() -> None:
    from stacks.__main__ import parser

    text = (PROJECT_DIR / "README.md").read_text()
    shell = [line for block in readme_commands() for line in block.splitlines()]
    commands = [
        line.split("python -m stacks", 1)[1] for line in shell if "python -m stacks" in line
    ]
    commands += re.findall(r"^\| `python -m stacks ([^`]+)` \|", text, flags=re.MULTILINE)
    assert len(commands) >= 10
    for command in commands:
        command = command.split("#")[0].split("&&")[0]
        command = command.replace("[NAME]", "hubUrls").replace("[", "").replace("]", "")
        parser().parse_args(command.split())  # exits 2, failing the test, on a wrong command
