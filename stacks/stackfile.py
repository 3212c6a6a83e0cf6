"""Reads a `Pulumi.<stack>.yaml` file the way the Pulumi CLI hands its config to a program.

Offline there is no passphrase or secrets provider, so every `secure:` value becomes the
placeholder `[secret]` and its key is reported as a secret key.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from model.safe_yaml import NOT_YAML, YamlError, load_yaml_file
from stacks.config import NAMESPACE, SECRET_PLACEHOLDER, ConfigError

DEFAULT_PROJECT = "convecthub"
# This project's directory: Pulumi.yaml and the sites' stack files.
PROJECT_DIR = Path(__file__).resolve().parent.parent
# A stack's name: letters, digits, '-', '_' and '.'; on Pulumi Cloud, optionally org/project/stack.
STACK_NAME = re.compile(r"^([A-Za-z0-9_.-]+/){0,2}[A-Za-z0-9_.-]+\Z")


@dataclass(frozen=True)
class StackFile:
    project: str
    stack: str
    config: dict[str, str]  # "namespace:key" -> value as Pulumi passes it (JSON for objects)
    secret_keys: tuple[str, ...]


def read_stack_file(path: str | Path) -> StackFile:
    path = Path(path)
    stack = _stack_name(path)
    document, root = _load_yaml(path)
    project = _project_name(path.resolve().parent)
    entries = document.get("config") or {}
    if not isinstance(entries, dict):
        raise ConfigError(_where(path, _value_node(root, "config")), CONFIG_NOT_A_MAPPING)
    lines = _key_lines(_value_node(root, "config"))
    config: dict[str, str] = {}
    first_line: dict[str, int | None] = {}
    secret_keys: list[str] = []
    for key, value in entries.items():
        line = lines.get(key)
        full_key = key if ":" in key else f"{project}:{key}"
        _check_namespace(full_key, project, _where(path, line))
        if full_key in config:
            earlier = first_line[full_key]
            raise ConfigError(
                _where(path, line),
                f"{key!r} sets {full_key}, which "
                + (f"line {earlier} sets too" if earlier else "an earlier key sets too")
                + ": keep one of them",
            )
        first_line[full_key] = line
        plain, had_secret = _without_secure(value)
        if had_secret:
            secret_keys.append(full_key)
        config[full_key] = _wire(plain)
    return StackFile(project, stack, config, tuple(secret_keys))


CONFIG_NOT_A_MAPPING = "`config:` must be a mapping of keys to values"
# The namespaces a stack file may set: the program's, and those of the providers it uses.
PROVIDER_NAMESPACES = ("pulumi", "kubernetes", "command", "random")


def _check_namespace(full_key: str, project: str, where: str) -> None:
    namespace = full_key.split(":", 1)[0]
    known = list(dict.fromkeys([NAMESPACE, project, *PROVIDER_NAMESPACES]))
    if namespace in known:
        return
    close = difflib.get_close_matches(namespace, known, n=1, cutoff=0.6)
    guess = f"did you mean {close[0]}:? " if close else ""
    raise ConfigError(
        where,
        f"unknown namespace {namespace!r} in {full_key!r}: {guess}this program reads "
        f"{NAMESPACE}:* keys (and its providers' {', '.join(PROVIDER_NAMESPACES[1:])})",
    )


def _where(path: Path, line: int | None) -> str:
    return f"{path}:{line}" if line else str(path)


def _value_node(root: yaml.Node | None, key: str) -> yaml.Node | None:
    if isinstance(root, yaml.MappingNode):
        for key_node, value_node in root.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
                return value_node
    return None


def _key_lines(mapping: yaml.Node | None) -> dict[str, int]:
    """Each key of a mapping node, with the line it is on."""
    if not isinstance(mapping, yaml.MappingNode):
        return {}
    return {
        key_node.value: key_node.start_mark.line + 1
        for key_node, _ in mapping.value
        if isinstance(key_node, yaml.ScalarNode)
    }


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


def _load_yaml(path: Path) -> tuple[dict, yaml.Node | None]:
    try:
        loaded = load_yaml_file(path)
    except YamlError as problem:
        if problem.message == NOT_YAML:  # the parser's own complaint: said as it always was
            where = f" at line {problem.line}" if problem.line else ""
            raise ConfigError(
                str(path), f"is not valid YAML{where}: fix the indentation or quoting there"
            ) from None
        raise ConfigError(_where(path, problem.line), problem.message) from None
    document = loaded.data if loaded.data is not None else {}
    if not isinstance(document, dict):
        raise ConfigError(str(path), "must be a YAML mapping with a `config:` key")
    return document, loaded.root


def _project_name(directory: Path) -> str:
    for candidate in (directory / "Pulumi.yaml", directory / "Pulumi.yml"):
        if candidate.is_file():
            try:
                project = load_yaml_file(candidate).data or {}
            except YamlError as problem:
                raise ConfigError(_where(candidate, problem.line), problem.message) from None
            name = project.get("name") if isinstance(project, dict) else None
            return str(name) if isinstance(name, str) and name else DEFAULT_PROJECT
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
