"""How a script of `components/scripts/` runs on a node over SSH.

The script travels on the command's stdin, behind an `export` preamble that carries its
environment; `create` and `delete` stay short fixed command lines (`sudo -n /bin/bash -s
apply`). So nothing depends on the node's sshd accepting environment variables (stock sshd
accepts only LANG and LC_*), and no value, secret or not, is ever spliced into a command line.
A secret value makes the whole stdin a secret Output, which Pulumi encrypts in the state.
"""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pulumi

SCRIPTS_DIR = Path(__file__).with_name("scripts")
SECRET_MASK = "[secret]"
_ENV_NAME = re.compile(r"^CONVECTHUB_[A-Z0-9_]+$")


@functools.cache
def script_text(name: str) -> str:
    """The text of `components/scripts/<name>`."""
    return (SCRIPTS_DIR / name).read_text(encoding="utf-8")


def env_preamble(env: Mapping[str, str]) -> str:
    """`export NAME='value'` lines, one per variable, in name order."""
    for name in env:
        if not _ENV_NAME.match(name):
            raise ValueError(f"script variables are named CONVECTHUB_*: {name!r}")
    return "".join(f"export {name}={shlex.quote(env[name])}\n" for name in sorted(env))


def run_command(script: str, action: str | None, *, as_root: bool, login_user: str) -> str:
    """The command line that runs `script` from stdin; the trailing comment names the script."""
    runner = "sudo -n /bin/bash -s" if as_root and login_user != "root" else "/bin/bash -s"
    argument = f" {action}" if action else ""
    return f"{runner}{argument}  # {script}"


@dataclass(frozen=True)
class ScriptStep:
    """One script with its environment; `secret_env` values are always secret Outputs."""

    script: str
    env: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    secret_env: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)

    def stdin(self) -> pulumi.Output[str]:
        """Preamble plus script text, secret when any `secret_env` is given."""
        text = script_text(self.script)
        values = {**self.env, **{k: pulumi.Output.secret(v) for k, v in self.secret_env.items()}}
        return pulumi.Output.all(**values).apply(lambda resolved: env_preamble(resolved) + text)

    def describe(self) -> pulumi.Output[dict]:
        """What runs, for people: the script and its environment, secrets masked."""
        masked = {name: SECRET_MASK for name in self.secret_env}
        return pulumi.Output.all(**self.env).apply(
            lambda resolved: {"script": self.script, "env": {**resolved, **masked}}
        )
