"""The seeds' loosely typed values, read the way their tools read them: Ansible's booleans,
port numbers, and host names turned into node names."""

from __future__ import annotations

import re

from stacks.config import ConfigError

# What Ansible's `bool` filter and its boolean options accept, in any case.
_TRUE = {"true", "yes", "y", "on", "1", "t"}
_FALSE = {"false", "no", "n", "off", "0", "f"}
_NODE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")


def ansible_bool(value: object, name: str, where: str) -> bool:
    """`value` as Ansible reads a boolean (true/false, yes/no, on/off, 1/0, any case)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(where, f"{name}={value!r} is not true or false: write true or false")


def port_number(value: object, name: str, where: str) -> int:
    """`value` as a TCP port."""
    text = str(value).strip()
    if text.isdigit() and 1 <= int(text) <= 65535:
        return int(text)
    raise ConfigError(
        where, f"{name}={value!r} is not a port number: use a whole number from 1 to 65535"
    )


def node_name(host_name: str, where: str) -> tuple[str, str | None]:
    """The node name for a host name (a lowercase RFC 1123 label), and a warning when it had to
    change: upper case is lowered, `_` and `.` become `-`."""
    name = host_name.lower().replace("_", "-").replace(".", "-")
    if not _NODE_NAME.match(name):
        raise ConfigError(
            where,
            f"host name {host_name!r} cannot become a node name (it becomes the hostname and "
            "the Kubernetes node name): rename it to 1-63 characters a-z, 0-9 and '-', "
            "starting and ending with a letter or digit",
        )
    if name == host_name:
        return name, None
    return name, (
        f"{where}: host {host_name!r} becomes node {name!r} (node names are lowercase RFC 1123 "
        "labels: they become the hostname and the Kubernetes node name)"
    )
