"""The namespace, the key paths every config message starts with, and `ConfigError`, the one
line that names a key and says what is wrong with it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

import pulumi

NAMESPACE = "convecthub"

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escape(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape").decode("ascii")


class ConfigError(pulumi.RunError):
    """A bad stack config: `str(error)` is the one line to show the user.

    A `RunError`, so under the Pulumi CLI it ends the program with that line and no traceback.
    """

    def __init__(self, path: str, message: str):
        # One line whatever the user's input held: a control character shows as its escape.
        super().__init__(_CONTROL.sub(_escape, f"{path}: {message}"))
        self.path = path
        self.message = message


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


def key_path(loc: Iterable[int | str]) -> str:
    """('nodes', 2, 'host') -> 'convecthub:nodes[2].host'."""
    parts = list(loc)
    top = str(parts[0]) if parts else ""
    top = top if _PLAIN_KEY.fullmatch(top) or not parts else json.dumps(top)
    text = f"{NAMESPACE}:{top}" if parts else NAMESPACE
    for part in parts[1:]:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(part):
            text += f".{part}"
        else:
            text += f"[{json.dumps(part)}]"  # a map key such as "docker.io" or "*"
    return text


def is_schema_tag(part: int | str) -> bool:
    # pydantic names union members and validator functions inside `loc`; they are no keys.
    return isinstance(part, str) and ("[" in part or part in {"str", "int", "float", "bool"})


def keys_of(loc: Iterable[int | str]) -> list[int | str]:
    """The keys of a pydantic error's `loc`: its schema tags left out."""
    return [part for part in loc if not is_schema_tag(part)]


def value_at(tree: object, path: Iterable[int | str]) -> object:
    """What the decoded config holds at `path`."""
    for part in path:
        tree = tree[part]  # type: ignore[index]
    return tree
