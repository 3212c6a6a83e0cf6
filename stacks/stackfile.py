"""Reads a `Pulumi.<stack>.yaml` file the way the Pulumi CLI hands its config to a program.

Offline there is no passphrase or secrets provider, so every `secure:` value becomes the
placeholder `[secret]` and its key is reported as a secret key.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from stacks.config import SECRET_PLACEHOLDER, ConfigError

DEFAULT_PROJECT = "convecthub"
# This project's directory: Pulumi.yaml and the sites' stack files.
PROJECT_DIR = Path(__file__).resolve().parent.parent
# A stack's name: letters, digits, '-', '_' and '.'; on Pulumi Cloud, optionally org/project/stack.
STACK_NAME = re.compile(r"^([A-Za-z0-9_.-]+/){0,2}[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class StackFile:
    project: str
    stack: str
    config: dict[str, str]  # "namespace:key" -> value as Pulumi passes it (JSON for objects)
    secret_keys: tuple[str, ...]


def read_stack_file(path: str | Path) -> StackFile:
    path = Path(path)
    stack = _stack_name(path)
    document = _load_yaml(path)
    project = _project_name(path.resolve().parent)
    entries = document.get("config") or {}
    if not isinstance(entries, dict):
        raise ConfigError(str(path), "`config:` must be a mapping of keys to values")
    config: dict[str, str] = {}
    secret_keys: list[str] = []
    for key, value in entries.items():
        full_key = key if ":" in key else f"{project}:{key}"
        plain, had_secret = _without_secure(value)
        if had_secret:
            secret_keys.append(full_key)
        config[full_key] = _wire(plain)
    return StackFile(project, stack, config, tuple(secret_keys))


def stack_file_path(project_dir: Path, stack: str) -> Path:
    """Where a stack's config lives: Pulumi.<stack>.yaml (of a qualified name, its last part)."""
    return project_dir / f"Pulumi.{stack.rsplit('/', 1)[-1]}.yaml"


def stack_of(path: Path) -> str | None:
    """The stack a file named Pulumi.<stack>.yaml (or .yml) is for; None for any other name."""
    name = path.name
    for suffix in (".yaml", ".yml"):
        if (
            name.startswith("Pulumi.")
            and name.endswith(suffix)
            and len(name) > len("Pulumi.") + len(suffix)
        ):
            return name[len("Pulumi.") : -len(suffix)]
    return None


def _stack_name(path: Path) -> str:
    stack = stack_of(path)
    if stack is None:
        raise ConfigError(
            str(path), "a stack file is named Pulumi.<stack>.yaml, e.g. Pulumi.dev.yaml"
        )
    return stack


def _load_yaml(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(str(path), f"cannot read it ({error.strerror or error})") from None
    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(
            str(path), f"is not valid YAML{where}: fix the indentation or quoting there"
        ) from None
    if not isinstance(document, dict):
        raise ConfigError(str(path), "must be a YAML mapping with a `config:` key")
    return document


def _project_name(directory: Path) -> str:
    for candidate in (directory / "Pulumi.yaml", directory / "Pulumi.yml"):
        if candidate.is_file():
            project = yaml.safe_load(candidate.read_text(encoding="utf-8")) or {}
            return str(project.get("name", DEFAULT_PROJECT))
    return DEFAULT_PROJECT


def _without_secure(value: object) -> tuple[object, bool]:
    """`value` with every `{secure: ...}` replaced by the placeholder, and whether any was."""
    if isinstance(value, dict):
        if set(value) == {"secure"}:
            return SECRET_PLACEHOLDER, True
        found = False
        plain = {}
        for key, item in value.items():
            plain[key], had = _without_secure(item)
            found = found or had
        return plain, found
    if isinstance(value, list):
        pairs = [_without_secure(item) for item in value]
        return [item for item, _ in pairs], any(had for _, had in pairs)
    return value, False


def _wire(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value)
