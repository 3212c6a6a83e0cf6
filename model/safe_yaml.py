"""Reads the YAML and text files a user hands the program, with limits.

Stack files, chart values files and OpenPAI's config are read through here, so none of them can
hang the program (a FIFO, /dev/zero), exhaust it (a huge file, an alias bomb, nesting too deep)
or be misread without a word (a key given twice is an error, not last-wins). PyYAML's safe
loader does the parsing; on top of it a document is refused when

- the file is not a regular file, or holds more than `max_bytes` bytes or no UTF-8 text;
- its aliases (*name) number more than `MAX_ALIASES`, or the document, with every alias
  expanded, has more than `MAX_NODES` nodes, or nests deeper than `MAX_DEPTH`;
- a mapping gives one key twice (YAML merge keys, `<<`, still override as YAML says);
- a key is not a string (with `string_keys`), or a value has a tag that has no JSON
  counterpart (!!binary, !!set, !!timestamp, ...).

Dates stay strings (2024-01-01), as Pulumi's own YAML reading keeps them. Every refusal is a
`YamlError` with the line it is on, for the caller to turn into its one-line error.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import yaml

MAX_BYTES = 8 * 1024 * 1024
MAX_ALIASES = 10_000
MAX_NODES = 1_000_000
MAX_DEPTH = 64
_MERGE_TAG = "tag:yaml.org,2002:merge"
NOT_YAML = "is not valid YAML: fix the indentation or quoting there"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


class YamlError(ValueError):
    """Why a file or document is refused; `line` (1-based) is where, when there is a where."""

    def __init__(self, message: str, line: int | None = None, kind: str = "", detail: str = ""):
        super().__init__(message)
        self.message = message
        self.line = line
        # For a file refused by `read_text_file`: why (unreadable, directory, special, too_big,
        # not_utf8) and the OS's reason or the size, for a caller that words it its own way.
        self.kind = kind
        self.detail = detail


def read_text_file(path: str | Path, max_bytes: int = MAX_BYTES) -> str:
    """A regular file's UTF-8 text, at most `max_bytes` bytes of it, or a `YamlError`.

    The file is looked at before it is opened and opened without blocking, so a FIFO or a
    device cannot hang the read."""
    special = "is not a regular file (a pipe, socket or device)"
    try:
        status = os.stat(path)
        if stat.S_ISDIR(status.st_mode):
            raise YamlError("is a directory, not a file", kind="directory")
        if not stat.S_ISREG(status.st_mode):
            raise YamlError(special, kind="special")
        if status.st_size > max_bytes:
            raise YamlError(
                f"is {status.st_size} bytes, over the {max_bytes} a file may hold",
                kind="too_big",
                detail=str(status.st_size),
            )
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
        with os.fdopen(descriptor, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise YamlError(special, kind="special")
            content = handle.read(max_bytes + 1)
    except OSError as error:
        reason = error.strerror or str(error)
        raise YamlError(f"cannot read it ({reason})", kind="unreadable", detail=reason) from None
    if len(content) > max_bytes:
        raise YamlError(f"holds over the {max_bytes} bytes a file may hold", kind="too_big")
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError as error:
        line = content[: error.start].count(b"\n") + 1
        raise YamlError("is not UTF-8 text: save it as UTF-8", line, kind="not_utf8") from None


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, counting aliases and refusing duplicate and non-string keys."""

    # Plain scalars that look like dates stay strings.
    yaml_implicit_resolvers: ClassVar[dict] = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP_TAG]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    string_keys = True

    def __init__(self, text: str):
        super().__init__(text)
        self.alias_count = 0

    def compose_node(self, parent, index):  # type: ignore[no-untyped-def]
        if self.check_event(yaml.AliasEvent):
            self.alias_count += 1
            if self.alias_count > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise YamlError(
                    f"uses more than {MAX_ALIASES} aliases (*name): write the values out",
                    mark.line + 1,
                )
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):  # type: ignore[no-untyped-def]
        if isinstance(node, yaml.MappingNode):
            seen: dict[object, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                if self.string_keys and not isinstance(key, str):
                    raise YamlError(f"the key {key_node.value!r} is not a string: quote it", line)
                try:
                    first = seen.get(key)
                except TypeError:
                    continue  # unhashable: the safe loader says so
                if first is not None:
                    raise YamlError(
                        f"the key {key!r} is given twice in one mapping, first at line {first}: "
                        "keep one of them",
                        line,
                    )
                seen[key] = line
        return super().construct_mapping(node, deep)


def _refuse_tag(loader: yaml.SafeLoader, node: yaml.Node) -> object:
    raise YamlError(
        f"the tag {node.tag.replace('tag:yaml.org,2002:', '!!')} has no place in a stack "
        "file's values: write a plain string, number, list or mapping",
        node.start_mark.line + 1,
    )


for _tag in ("binary", "set", "omap", "pairs", "timestamp"):
    _Loader.add_constructor(f"tag:yaml.org,2002:{_tag}", _refuse_tag)


class _StringKeysOptional(_Loader):
    string_keys = False


@dataclass(frozen=True)
class Document:
    data: object
    root: yaml.Node | None  # the composed tree, for the lines keys are on


def load_yaml(text: str, *, string_keys: bool = True) -> Document:
    """The one document `text` holds, within the limits above, or a `YamlError`."""
    if len(text) > MAX_BYTES:
        raise YamlError(f"holds over the {MAX_BYTES} bytes a document may hold")
    try:
        # The reader checks the characters as it is made: a NUL is a YAMLError already.
        loader = (_Loader if string_keys else _StringKeysOptional)(text)
    except yaml.YAMLError:
        raise YamlError(NOT_YAML) from None
    try:
        root = loader.get_single_node()
        if root is None:
            return Document(None, None)
        _measure(root)
        return Document(loader.construct_document(root), root)
    except YamlError:
        raise
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        raise YamlError(NOT_YAML, mark.line + 1 if mark is not None else None) from None
    except RecursionError:
        raise YamlError(f"nests deeper than {MAX_DEPTH} levels: flatten it") from None
    finally:
        loader.dispose()


def load_yaml_file(path: str | Path, *, string_keys: bool = True) -> Document:
    return load_yaml(read_text_file(path), string_keys=string_keys)


def _measure(root: yaml.Node) -> None:
    """Refuse a tree that, with every alias expanded, is too big or too deep (an alias bomb:
    a few hundred bytes that expand to billions of nodes), or that holds itself."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()

    def size(node: yaml.Node, depth: int) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        line = node.start_mark.line + 1
        if depth > MAX_DEPTH:
            raise YamlError(f"nests deeper than {MAX_DEPTH} levels: flatten it", line)
        if id(node) in on_path:
            raise YamlError("an alias refers to the node that holds it: write it out", line)
        total = 1
        if isinstance(node, yaml.SequenceNode | yaml.MappingNode):
            on_path.add(id(node))
            children = (
                node.value
                if isinstance(node, yaml.SequenceNode)
                else [part for pair in node.value for part in pair]
            )
            for child in children:
                total += size(child, depth + 1)
                if total > MAX_NODES:
                    raise YamlError(
                        f"expands to more than {MAX_NODES} values (its aliases, *name, "
                        "repeat what they refer to): write it without nested aliases",
                        line,
                    )
            on_path.discard(id(node))
        sizes[id(node)] = total
        return total

    size(root, 0)
