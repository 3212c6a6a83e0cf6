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
from pulumi_command import remote

from model.secrecy import SECRET_MASK

SCRIPTS_DIR = Path(__file__).with_name("scripts")
COMMON_SCRIPT = "common.sh"
_ENV_NAME = re.compile(r"^CONVECTHUB_[A-Z0-9_]+$")


@functools.cache
def script_text(name: str) -> str:
    """The text of `components/scripts/<name>`."""
    return (SCRIPTS_DIR / name).read_text(encoding="utf-8")


def uses_common(name: str) -> bool:
    """Whether the script sources common.sh (then common.sh travels ahead of it)."""
    return f'/{COMMON_SCRIPT}"' in script_text(name)


def env_preamble(env: Mapping[str, str]) -> str:
    """`export NAME='value'` lines, one per variable, in name order."""
    for name in env:
        if not _ENV_NAME.match(name):
            raise ValueError(f"script variables are named CONVECTHUB_*: {name!r}")
    return "".join(f"export {name}={shlex.quote(env[name])}\n" for name in sorted(env))


def script_stdin(name: str, env: Mapping[str, str]) -> str:
    """What a node's bash reads: the preamble, common.sh when the script sources it, the script."""
    library = script_text(COMMON_SCRIPT) if uses_common(name) else ""
    return env_preamble(env) + library + script_text(name)


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
        values = {**self.env, **{k: pulumi.Output.secret(v) for k, v in self.secret_env.items()}}
        return pulumi.Output.all(**values).apply(
            lambda resolved: script_stdin(self.script, resolved)
        )

    def describe(self) -> pulumi.Output[dict]:
        """What runs, for people: the script and its environment, secrets masked (the
        `secret_env` ones and any `env` value that is a secret Output)."""
        masked = {name: SECRET_MASK for name in self.secret_env}
        shown = {name: _masked_if_secret(value) for name, value in self.env.items()}
        return pulumi.Output.all(**shown).apply(
            lambda resolved: {"script": self.script, "env": {**resolved, **masked}}
        )


def _masked_if_secret(value: pulumi.Input[str]) -> pulumi.Output[str]:
    """The value, or the mask in its place when it is a secret Output (then known and plain)."""
    output = pulumi.Output.from_input(value)

    async def shown() -> object:
        return SECRET_MASK if await output.is_secret() else await output.future(with_unknowns=True)

    async def known() -> bool:
        return await output.is_secret() or await output.is_known()

    return pulumi.Output(output.resources(), shown(), known())


def script_command(
    resource_name: str,
    step: ScriptStep,
    *,
    connection: pulumi.Input[remote.ConnectionArgs],
    login_user: str,
    opts: pulumi.ResourceOptions,
    reversible: bool = True,
    as_root: bool = True,
    secret_stdout: bool = False,
) -> remote.Command:
    """The `remote.Command` that runs `step` on a node: `<script> apply` on create and update
    and `<script> remove` on delete when `reversible`, else the bare script and no delete.
    `secret_stdout` keeps what the script prints secret and out of the logs."""
    action, undo = ("apply", "remove") if reversible else (None, None)
    extra = pulumi.ResourceOptions(additional_secret_outputs=["stdout"]) if secret_stdout else None
    return remote.Command(
        resource_name,
        connection=connection,
        create=run_command(step.script, action, as_root=as_root, login_user=login_user),
        delete=run_command(step.script, undo, as_root=as_root, login_user=login_user)
        if undo
        else None,
        stdin=step.stdin(),
        add_previous_output_in_env=False,
        logging=remote.Logging.NONE if secret_stdout else None,
        opts=pulumi.ResourceOptions.merge(opts, extra),
    )
