"""Writes an `ImportResult` out as the text of a `Pulumi.<site>.yaml` stack file.

A header of comments says where the site came from, what was not carried over (the warnings)
and the `pulumi config set --secret` commands still to run, which prompt for each value: a
secret's value is never written. Then `config:`, with the namespace's keys in the contract's
order and each node's keys in the order name, host, ssh, roles, iface, gpu, installDocker.
The same result always gives the same bytes: no timestamps, no order that moves.
"""

from __future__ import annotations

import shlex
import textwrap

import yaml

from model.site import Node, Site
from stacks.config import NAMESPACE
from stacks.importers.result import ImportResult, SecretToSet

WIDTH = 100
NODE_KEYS = ("name", "host", "ssh", "roles", "iface", "gpu", "installDocker")


def secret_command(secret: SecretToSet, stack: str | None) -> str:
    """The command that sets one secret; it prompts for the value."""
    key = f"'{secret.key}'" if "'" not in secret.key else shlex.quote(secret.key)
    stack_option = f" --stack {shlex.quote(stack)}" if stack else ""
    return f"pulumi config set --secret --path {key}{stack_option}  # {secret.origin}"


def stack_document(result: ImportResult, stack: str | None = None) -> str:
    """The stack file's text. `stack` names the stack in the secret commands; without it they
    act on the selected stack."""
    return _header(result, stack) + _config_text(result.config)


def _header(result: ImportResult, stack: str | None) -> str:
    lines = ["Imported by `python -m stacks import-inventory` from:"]
    lines += [f"  {source}" for source in result.sources]
    site = stack or "<site>"
    lines.append(
        f"Review it, then see what it would do: `python -m stacks preview --stack {site}`."
    )
    if result.secrets:
        lines += [
            "",
            "Secrets are never written here: once the stack exists (`pulumi stack init`), set",
            "each one (the command prompts for it):",
        ]
        lines += [f"  {secret_command(secret, stack)}" for secret in result.secrets]
    if result.warnings:
        lines += ["", "Not carried over, or carried over with a change:"]
        for warning in result.warnings:
            lines += textwrap.wrap(
                warning,
                width=WIDTH - 2,
                initial_indent="  - ",
                subsequent_indent="    ",
                break_long_words=False,
                break_on_hyphens=False,
            )
    return "".join(f"# {line}".rstrip() + "\n" for line in lines)


class _Block(dict):
    """A mapping written in block style even when it holds only scalars."""


class _Dumper(yaml.SafeDumper):
    """Lists indented under their key, as in the examples."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        return super().increase_indent(flow, False)


_Dumper.add_representer(
    _Block, lambda dumper, data: dumper.represent_mapping("tag:yaml.org,2002:map", data, False)
)


def _config_text(config: dict[str, object]) -> str:
    order = [info.alias or name for name, info in Site.model_fields.items()]
    known = [key for key in order if key in config]
    ordered = {key: config[key] for key in known + sorted(set(config) - set(known))}
    if isinstance(ordered.get("nodes"), list):
        ordered["nodes"] = [_node(node) for node in ordered["nodes"]]  # type: ignore[union-attr]
    document = {
        "config": _Block(
            {
                f"{NAMESPACE}:{key}": _Block(value) if isinstance(value, dict) else value
                for key, value in ordered.items()
            }
        )
    }
    return yaml.dump(
        document,
        Dumper=_Dumper,
        default_flow_style=None,
        sort_keys=False,
        width=WIDTH,
        allow_unicode=True,
    )


def _node(node: dict[str, object]) -> _Block:
    """A node's keys in the order of NODE_KEYS, then the rest in the model's order."""
    order = list(NODE_KEYS) + [
        info.alias or name
        for name, info in Node.model_fields.items()
        if (info.alias or name) not in NODE_KEYS
    ]
    known = [key for key in order if key in node]
    return _Block({key: node[key] for key in known + sorted(set(node) - set(known))})
