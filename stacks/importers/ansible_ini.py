"""A parser of Ansible INI inventories, pure: text in, hosts, groups and variables out.

It reads what Ansible's `ini` inventory plugin reads: host lines with inline `key=value`
variables (shell-quoted, so `'~/.ssh/id_rsa'` is `~/.ssh/id_rsa`), `[group]`, `[group:vars]`,
`[group:children]` (nested, declared in any order), `[all:vars]`, `#` and `;` comment lines,
host ranges such as `worker[01:03]` or `db-[a:c]`, and `host:port`. A host's variables follow
Ansible's precedence: its own over its groups', a child group's over its parent's, and `all`'s
last; groups of the same depth in name order (or `ansible_group_priority`).

Every value is kept as the string the file holds. A line it cannot read is a
`ConfigError("<file>:<line>", ...)`.
"""

from __future__ import annotations

import ast
import re
import shlex
import string
from dataclasses import dataclass, field
from pathlib import Path

from model.safe_yaml import YamlError, read_text_file
from stacks.config import ConfigError

ALL = "all"
UNGROUPED = "ungrouped"
_SECTION = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:[#;].*)?$")
_RANGE = re.compile(r"^(.*?)\[([^\[\]:]+):([^\[\]:]+)(?::(\d+))?\](.*)$")
_HOST_PORT = re.compile(r"^([^:\[\]]+):(\d+)\Z")
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
# The most hosts one host line may expand to (a fleet is thousands of machines, not millions).
MAX_RANGE_HOSTS = 10_000
MAX_INVENTORY_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Var:
    """One variable declaration: its value, the line it is on and whose it is."""

    value: str
    line: int
    scope: str  # "host worker2", "[worker:vars]" or "[all:vars]"


@dataclass
class Group:
    """A group: its own hosts, its child groups and its `[name:vars]`."""

    name: str
    line: int  # where it is first declared (0 for the implicit all and ungrouped)
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    vars: dict[str, Var] = field(default_factory=dict)


@dataclass
class Host:
    """A host, with the variables its own lines give it."""

    name: str
    line: int  # where it is first declared
    vars: dict[str, Var] = field(default_factory=dict)  # its own, inline


@dataclass(frozen=True)
class Inventory:
    """A whole inventory, and the questions Ansible answers about it."""

    path: Path
    hosts: dict[str, Host]  # in the order the file first names them
    groups: dict[str, Group]  # `all` and `ungrouped` first, then in the file's order

    def where(self, line: int) -> str:
        return f"{self.path}:{line}"

    def members(self, group: str) -> list[str]:
        """The group's hosts, its children's after its own, each once."""
        found: list[str] = []
        for name in self._descendants(group):
            found += [host for host in self.groups[name].hosts if host not in found]
        if group == ALL:
            found += [host for host in self.hosts if host not in found]
        return found

    def groups_of(self, host: str) -> list[str]:
        """Every group the host is in, directly or through children, in Ansible's order of
        precedence: lowest first (`all`), then by depth, priority and name."""
        direct = [name for name, group in self.groups.items() if host in group.hosts]
        found = {ALL}
        pending = list(direct)
        while pending:
            name = pending.pop()
            if name in found:
                continue
            found.add(name)
            pending += [parent for parent, g in self.groups.items() if name in g.children]
        depth = self._depths()
        return sorted(found, key=lambda name: (depth[name], self._priority(name), name))

    def host_vars(self, host: str) -> dict[str, Var]:
        """The host's variables as Ansible sees them, each with the declaration that won."""
        merged: dict[str, Var] = {}
        for group in self.groups_of(host):
            merged.update(self.groups[group].vars)
        merged.update(self.hosts[host].vars)
        return merged

    def _descendants(self, group: str) -> list[str]:
        order: list[str] = []
        pending = [group]
        while pending:
            name = pending.pop(0)
            if name not in order:
                order.append(name)
                pending += self.groups[name].children
        return order

    def _depths(self) -> dict[str, int]:
        """Each group's depth below `all`: the longest chain of parents above it."""
        depth = dict.fromkeys(self.groups, 0)
        parents = {
            name: [p for p, g in self.groups.items() if name in g.children] for name in self.groups
        }

        def depth_of(name: str) -> int:
            if name == ALL:
                return 0
            if not depth[name]:
                depth[name] = 1 + max((depth_of(p) for p in parents[name]), default=0)
            return depth[name]

        return {name: depth_of(name) for name in self.groups}

    def _priority(self, group: str) -> int:
        declared = self.groups[group].vars.get("ansible_group_priority")
        if declared is None:
            return 1
        if not declared.value.strip().isdigit():
            raise ConfigError(
                self.where(declared.line),
                f"ansible_group_priority={declared.value!r} is not a whole number: "
                "write a number, e.g. 10",
            )
        return int(declared.value)


def read_inventory(path: Path) -> Inventory:
    """The inventory in the file at `path`."""
    try:
        text = read_text_file(path, MAX_INVENTORY_BYTES)
    except YamlError as problem:
        where = f"{path}:{problem.line}" if problem.line else str(path)
        raise ConfigError(where, problem.message) from None
    return parse_inventory(text, path)


def parse_inventory(text: str, path: Path) -> Inventory:
    """The inventory `text` holds; `path` names it in errors."""
    return _Parser(path).parse(text)


class _Parser:
    def __init__(self, path: Path):
        self.path = path
        self.hosts: dict[str, Host] = {}
        self.groups: dict[str, Group] = {ALL: Group(ALL, 0), UNGROUPED: Group(UNGROUPED, 0)}
        self.groups[ALL].children.append(UNGROUPED)
        # Names a [x:children] or [x:vars] section refers to, and where: resolved at the end.
        self.pending_children: list[tuple[str, str, int]] = []
        self.pending_vars: dict[str, int] = {}

    def where(self, line: int) -> str:
        return f"{self.path}:{line}"

    def parse(self, text: str) -> Inventory:
        group, kind = UNGROUPED, "hosts"
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                group, kind = self._section(line, number)
            elif kind == "hosts":
                self._host_line(line, number, group)
            elif kind == "vars":
                self._vars_line(line, number, group)
            else:
                self._child_line(line, number, group)
        self._resolve()
        self._check_loops()
        top = [name for name in self.groups if name != ALL and not self._has_parent(name)]
        self.groups[ALL].children = [UNGROUPED] + [n for n in top if n != UNGROUPED]
        # As in Ansible, `ungrouped` keeps only the hosts no other group holds.
        grouped = {
            host
            for name, group in self.groups.items()
            if name not in (ALL, UNGROUPED)
            for host in group.hosts
        }
        ungrouped = self.groups[UNGROUPED]
        ungrouped.hosts = [host for host in ungrouped.hosts if host not in grouped]
        return Inventory(self.path, self.hosts, self.groups)

    def _section(self, line: str, number: int) -> tuple[str, str]:
        match = _SECTION.match(line)
        if not match:
            raise ConfigError(
                self.where(number),
                f"cannot read section header {line!r}: write [group], [group:vars] or "
                "[group:children], with no spaces in the group name",
            )
        name, kind = match.group(1), match.group(2) or "hosts"
        if match.group(2) not in (None, "vars", "children"):
            raise ConfigError(
                self.where(number),
                f"unknown section [{name}:{kind}]: write [{name}], [{name}:vars] or "
                f"[{name}:children]",
            )
        if kind == "vars":
            if name not in self.groups:
                self.pending_vars.setdefault(name, number)
            self.groups.setdefault(name, Group(name, number))
        else:
            self._declare(name, number)
        return name, kind

    def _declare(self, name: str, number: int) -> None:
        group = self.groups.setdefault(name, Group(name, number))
        if group.line == 0 and name not in (ALL, UNGROUPED):
            group.line = number
        self.pending_vars.pop(name, None)

    def _host_line(self, line: str, number: int, group: str) -> None:
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError:
            raise ConfigError(
                self.where(number), "a quote is not closed: close it, or remove it"
            ) from None
        if not tokens:
            return
        pattern, assignments = tokens[0], tokens[1:]
        variables: dict[str, str] = {}
        for token in assignments:
            key, sep, value = token.partition("=")
            if not sep or not _VARIABLE.match(key):
                raise ConfigError(
                    self.where(number),
                    f"expected key=value after the host name, got {token!r}: write variables "
                    "as name=value, and quote values with spaces",
                )
            variables[key] = value
        pattern_port = _HOST_PORT.match(pattern)
        if pattern_port:
            pattern = pattern_port.group(1)
            variables = {"ansible_port": pattern_port.group(2), **variables}
        for name in self._expand(pattern, number):
            host = self.hosts.setdefault(name, Host(name, number))
            for key, value in variables.items():
                host.vars[key] = Var(value, number, f"host {name}")
            if name not in self.groups[group].hosts:
                self.groups[group].hosts.append(name)

    def _expand(self, pattern: str, number: int) -> list[str]:
        """A host pattern's names: `worker[01:03]` is worker01, worker02, worker03."""
        match = _RANGE.match(pattern)
        if not match:
            if "[" in pattern or "]" in pattern:
                raise ConfigError(
                    self.where(number),
                    f"cannot read host range {pattern!r}: write it as name[01:10] or name[a:f], "
                    "with an optional step: name[01:10:2]",
                )
            return [pattern]
        head, first, last, step, tail = match.groups()
        names = [f"{head}{item}" for item in self._range(first, last, step, pattern, number)]
        expanded: list[str] = []
        for item in names:
            expanded += self._expand(item + tail, number)
            if len(expanded) > MAX_RANGE_HOSTS:
                raise self._too_many(pattern, number)
        return expanded

    def _too_many(self, pattern: str, number: int) -> ConfigError:
        return ConfigError(
            self.where(number),
            f"host range {pattern!r} names more than {MAX_RANGE_HOSTS} hosts: split the fleet "
            "over smaller ranges, or check the range's ends",
        )

    def _range(self, first: str, last: str, step: str | None, pattern: str, number: int):
        if max(len(first), len(last), len(step or "")) > 9:
            raise self._too_many(pattern, number)
        stride = int(step) if step else 1
        if all(end.isascii() and end.isdigit() for end in (first, last)):
            width = len(first) if first.startswith("0") and len(first) > 1 else 0
            if width and len(last) != width:
                raise ConfigError(
                    self.where(number),
                    f"host range {pattern!r} mixes widths: give both ends as many digits, "
                    "e.g. [01:10]",
                )
            if int(first) > int(last) or stride < 1:
                raise ConfigError(
                    self.where(number),
                    f"host range {pattern!r} runs backwards: put the smaller end first",
                )
            if (int(last) - int(first)) // stride + 1 > MAX_RANGE_HOSTS:
                raise self._too_many(pattern, number)
            return [str(i).zfill(width) for i in range(int(first), int(last) + 1, stride)]
        letters = string.ascii_letters
        if len(first) == 1 == len(last) and first in letters and last in letters:
            if letters.index(first) > letters.index(last) or stride < 1:
                raise ConfigError(
                    self.where(number),
                    f"host range {pattern!r} runs backwards: put the earlier letter first",
                )
            return list(letters[letters.index(first) : letters.index(last) + 1 : stride])
        raise ConfigError(
            self.where(number),
            f"cannot read host range {pattern!r}: the ends are both numbers or both single "
            "letters, e.g. [01:10] or [a:f]",
        )

    def _vars_line(self, line: str, number: int, group: str) -> None:
        key, sep, value = (part.strip() for part in line.partition("="))
        if not sep or not _VARIABLE.match(key):
            raise ConfigError(
                self.where(number),
                f"cannot read {line!r} in [{group}:vars]: write one name=value per line",
            )
        scope = f"[{group}:vars]"
        self.groups[group].vars[key] = Var(_unquote(value), number, scope)

    def _child_line(self, line: str, number: int, group: str) -> None:
        tokens = line.split("#", 1)[0].split()
        if len(tokens) != 1 or "=" in tokens[0]:
            raise ConfigError(
                self.where(number),
                f"cannot read {line!r} in [{group}:children]: list one group name per line",
            )
        self.pending_children.append((group, tokens[0], number))

    def _resolve(self) -> None:
        for parent, child, number in self.pending_children:
            if child not in self.groups or child in self.pending_vars:
                raise ConfigError(
                    self.where(number),
                    f"[{parent}:children] names {child!r}, which is no group of this inventory: "
                    f"declare [{child}] with its hosts, or remove the line",
                )
            if child == ALL:
                raise ConfigError(
                    self.where(number),
                    f"[{parent}:children] names all, which holds every group: remove the line",
                )
            if child not in self.groups[parent].children:
                self.groups[parent].children.append(child)
        for name, number in self.pending_vars.items():
            raise ConfigError(
                self.where(number),
                f"[{name}:vars] sets variables of a group with no hosts and no children: "
                f"declare [{name}] with its hosts, or remove the section",
            )

    def _check_loops(self) -> None:
        def visit(name: str, chain: list[str]) -> None:
            for child in self.groups[name].children:
                if child in chain:
                    line = next(n for p, c, n in self.pending_children if p == name and c == child)
                    loop = " > ".join([*chain[chain.index(child) :], child])
                    raise ConfigError(
                        self.where(line),
                        f"[{name}:children] makes a loop ({loop}): a group cannot be inside "
                        "itself; remove one of these lines",
                    )
                visit(child, [*chain, child])

        for name in self.groups:
            visit(name, [name])

    def _has_parent(self, name: str) -> bool:
        return any(name in group.children for group in self.groups.values())


def _unquote(value: str) -> str:
    """A `[group:vars]` value: Ansible reads it as a Python literal, so a quoted string loses
    its quotes; anything else stays as written."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        try:
            unquoted = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
        if isinstance(unquoted, str):
            return unquoted
    return value
