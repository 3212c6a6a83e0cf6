"""Where a site's state lives and what unlocks its secrets, for the `pulumi` CLI the commands run.

State goes to `PULUMI_BACKEND_URL` when it is set, else to a local file backend inside the
project (`.pulumi-state/`), so no Pulumi Cloud account is needed. A stack on a self-managed
backend keeps its secrets with the passphrase provider unless its stack file names another one,
and the CLI, run without a terminal, can only take that passphrase from
`PULUMI_CONFIG_PASSPHRASE` or `PULUMI_CONFIG_PASSPHRASE_FILE`: checked here, before anything runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from model.safe_yaml import YamlError, load_yaml_file

STATE_DIRECTORY = ".pulumi-state"
PASSPHRASE = "PULUMI_CONFIG_PASSPHRASE"
PASSPHRASE_FILE = "PULUMI_CONFIG_PASSPHRASE_FILE"
# Pulumi Cloud (and self-hosted Pulumi Cloud) backends are reached over http(s).
_SERVICE_SCHEMES = ("https://", "http://")


class BackendError(Exception):
    """What keeps the CLI from reaching the site's state: one line, with the fix."""


@dataclass(frozen=True)
class Backend:
    url: str
    environment: dict[str, str]  # what the CLI gets on top of this process's environment
    warnings: tuple[str, ...]


def backend_for(project_dir: Path, stack_file: Path, environ: Mapping[str, str]) -> Backend:
    """The backend and the environment the CLI needs for one site."""
    url = environ.get("PULUMI_BACKEND_URL", "").strip()
    if not url:
        state = project_dir / STATE_DIRECTORY
        try:
            state.mkdir(exist_ok=True)
        except OSError as error:
            raise BackendError(
                f"cannot make the state directory {state} ({error.strerror or error}): make it "
                "writable, or set PULUMI_BACKEND_URL to where the state should go"
            ) from None
        url = f"file://{state.resolve()}"
    environment = {"PULUMI_BACKEND_URL": url, "PULUMI_SKIP_UPDATE_CHECK": "true"}
    warnings: list[str] = []
    if _uses_passphrase(url, stack_file):
        warnings.extend(_check_passphrase(environ))
    return Backend(url, environment, tuple(warnings))


def _uses_passphrase(url: str, stack_file: Path) -> bool:
    provider = _secrets_provider(stack_file)
    if provider is not None:
        return provider == "passphrase"
    return not url.startswith(_SERVICE_SCHEMES)


def _secrets_provider(stack_file: Path) -> str | None:
    try:
        document = load_yaml_file(stack_file).data or {}
    except YamlError:
        return None  # the program's own check of the stack file says what is wrong with it
    provider = document.get("secretsprovider") if isinstance(document, dict) else None
    return str(provider).split("://", 1)[0] if provider else None


def _check_passphrase(environ: Mapping[str, str]) -> list[str]:
    if PASSPHRASE in environ:
        if environ[PASSPHRASE] == "":
            return [
                f"{PASSPHRASE} is empty: the site's secrets (k3s token, keys, the hub's "
                "password) are stored unprotected; set a real passphrase for a site that matters"
            ]
        return []
    path = environ.get(PASSPHRASE_FILE)
    if path is None:
        raise BackendError(
            f"{PASSPHRASE} is not set: the stack's secrets are encrypted with a passphrase; "
            f"export {PASSPHRASE}, or {PASSPHRASE_FILE} naming a file that holds it"
        )
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as error:
        raise BackendError(
            f"{PASSPHRASE_FILE}={path}: cannot read it ({error.strerror or error}): point it "
            "at the file that holds the stack's passphrase"
        ) from None
    return []
