"""What an import gives: the site's config, what could not be carried over, and the secrets the
operator still has to set."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple


class SecretToSet(NamedTuple):
    """A secret the inputs held, to be set with `pulumi config set --secret --path KEY`.
    `key` is a key path as for `pulumi config set --path` (k3s.token, nodes[2].ssh.password)."""

    key: str
    origin: str  # where the value is, e.g. "the inventory's convect_token"


@dataclass(frozen=True)
class ImportResult:
    """One import. `config` holds the namespace's keys without the `convecthub:` prefix, with
    plain values (mappings, lists, strings, numbers, booleans), never a secret's value."""

    config: dict[str, object]
    warnings: tuple[str, ...]
    secrets: tuple[SecretToSet, ...]
    sources: tuple[Path, ...]


def in_file_order(warnings: Iterable[str], sources: Iterable[Path]) -> tuple[str, ...]:
    """The warnings, each once, in the order of the `<file>:<line>: ` they start with: the
    sources' order, then line order; a warning about a whole file before its lines'."""
    files = [str(path) for path in sources]

    def position(warning: str) -> tuple[int, int]:
        for index, name in enumerate(files):
            if warning.startswith(f"{name}:"):
                head = warning[len(name) + 1 :].split(":", 1)[0]
                return index, int(head) if head.isdigit() else 0
        return len(files), 0

    return tuple(sorted(dict.fromkeys(warnings), key=position))
