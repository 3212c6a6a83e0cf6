"""Pulumi's config as the model's input: the namespace's keys and their JSON values decoded,
every string checked to be one line, and, when the program is reviewed offline, the stack
file's `[secret]` placeholders replaced by typed stand-ins."""

from __future__ import annotations

import contextlib
import contextvars
import copy
import difflib
import json
from collections.abc import Callable, Iterator, Mapping

import pulumi
from pydantic import ValidationError

from model.grammar import has_control
from model.secrecy import SECRET_MASK
from model.site import Site
from stacks.config.keys import NAMESPACE, ConfigError, key_path, keys_of, value_at

# What an offline stack file holds for each `secure:` value (there is no passphrase to
# decrypt it): the mask a secret shows as everywhere.
SECRET_PLACEHOLDER = SECRET_MASK


def decode_config(config: Mapping[str, object]) -> dict[str, object]:
    """Pulumi's flat `namespace:key -> JSON string` config, narrowed to this namespace."""
    decoded: dict[str, object] = {}
    prefix = f"{NAMESPACE}:"
    for full_key, raw in config.items():
        if not full_key.startswith(prefix):
            _check_near_namespace(full_key)
            continue
        value = raw
        if isinstance(raw, str) and raw[:1] in "[{":
            try:
                value = json.loads(raw)
            except ValueError:
                raise ConfigError(
                    full_key, "is not valid JSON: set it again with `pulumi config set --path`"
                ) from None
        decoded[full_key[len(prefix) :]] = value
    return decoded


def pulumi_config() -> tuple[dict[str, object], list[str]]:
    """The namespace's values from the config Pulumi hands the running program, and the keys
    Pulumi holds as secrets."""
    config = {**pulumi.runtime.get_config_env(), **pulumi.runtime.config.CONFIG.get()}
    secret_keys = [key for key in config if pulumi.runtime.is_config_secret(key)]
    secret_keys += pulumi.runtime.get_config_secret_keys_env()
    return decode_config(config), secret_keys


_NEAR_NAMESPACE_CUTOFF = 0.8


def _check_near_namespace(full_key: str) -> None:
    """A key of another namespace that is this one misspelt (convectub:os) is an error: it would
    be ignored without a word."""
    namespace = full_key.split(":", 1)[0]
    if difflib.get_close_matches(namespace, [NAMESPACE], n=1, cutoff=_NEAR_NAMESPACE_CUTOFF):
        raise ConfigError(
            full_key,
            f"unknown namespace {namespace!r}: did you mean {NAMESPACE}? this program reads "
            f"{NAMESPACE}:* keys only, so the value would be ignored",
        )


# Where a string may span lines: PEM text, secrets (set with `pulumi config set --secret`, whose
# text the program never splices anywhere) and the chart's free-form values (sent to the
# cluster as data). The host keys pin is read by components/connection.py as it is.
_MULTILINE_FIELDS = {"certificate", "privateKey", "privateKeyPassword", "password", "token"}
_MULTILINE_PLACES = {("hub", "values"), ("hostKey",), ("tls", "key")}


def check_one_line_text(values: Mapping[str, object]) -> None:
    """No string of the config, key or value, holds a control character (a newline, a tab, a
    NUL), except where text spans lines by nature; every grammar of the model refuses them too,
    this also covers the free-form maps (k3s serverConfig and agentConfig, daemonConfig)."""
    pending: list[tuple[list[int | str], object]] = [
        ([key], value) for key, value in values.items()
    ]
    while pending:
        path, value = pending.pop()
        last = path[-1]
        if isinstance(last, str) and has_control(last):
            raise ConfigError(
                key_path(path), f"the key {last!r} holds a control character: write it without"
            )
        if isinstance(last, str) and (
            last in _MULTILINE_FIELDS
            or (last,) in _MULTILINE_PLACES
            or tuple(str(p) for p in path[-2:]) in _MULTILINE_PLACES
        ):
            continue
        if isinstance(value, str) and has_control(value):
            raise ConfigError(
                key_path(path),
                f"{value!r} holds a control character (a newline, tab or the like): write the "
                "value on one line, without them",
            )
        if isinstance(value, Mapping):
            pending += [([*path, key], item) for key, item in value.items()]
        elif isinstance(value, list):
            pending += [([*path, index], item) for index, item in enumerate(value)]


# Offline (render, and the check before the CLI) a `secure:` value is the placeholder
# `[secret]`, which no grammar but a secret's admits: where one stands for an address, a URL,
# a path..., the review takes a stand-in of that grammar instead, numbered so that no two
# collide. The section it sits in is secret, so the stand-in is masked wherever it goes.
_REVIEWING_OFFLINE = contextvars.ContextVar("convecthub_offline_review", default=False)
_PLACEHOLDER_STAND_INS: dict[str, Callable[[int], str]] = {
    "url": lambda n: f"https://secret-{n}.invalid/",
    "address": lambda n: f"secret-{n}.invalid",
    "registry": lambda n: f"secret-{n}.invalid",
    "no_proxy": lambda n: f"secret-{n}.invalid",
    "path": lambda n: f"/srv/secret-{n}",
    "image": lambda n: f"secret-{n}.invalid/image",
    "iface": lambda n: f"secret{n}",
    "node_name": lambda n: f"secret-{n}",
    "label_value": lambda n: f"secret-{n}",
    "user_name": lambda n: f"secret{n}",
}


@contextlib.contextmanager
def reviewing_offline() -> Iterator[None]:
    """Within: `load_site` reads `[secret]` placeholders as the stack file's secrets (offline
    there is no passphrase to decrypt them), never as values of their own, and the program's
    host-key check (stacks/host_keys.py) warns where it would refuse."""
    token = _REVIEWING_OFFLINE.set(True)
    try:
        yield
    finally:
        _REVIEWING_OFFLINE.reset(token)


def in_offline_review() -> bool:
    """Whether the program is evaluated offline for review (render, the check before the CLI):
    nothing runs, secrets are placeholders, and host-key refusals are warnings."""
    return _REVIEWING_OFFLINE.get()


def with_typed_placeholders(values: Mapping[str, object]) -> dict[str, object]:
    """`values` with each placeholder that a grammar refuses replaced by a stand-in of that
    grammar (the model's own error says which), until the model has no more to refuse."""
    values = copy.deepcopy(dict(values))
    taken = 0
    while True:
        try:
            Site.model_validate(values)
            return values
        except ValidationError as error:
            replaced = False
            for problem in error.errors(include_url=False):
                stand_in = _PLACEHOLDER_STAND_INS.get(problem["type"])
                if stand_in is None or problem.get("input") != SECRET_PLACEHOLDER:
                    continue
                loc = keys_of(problem["loc"])
                parent = value_at(values, loc[:-1])
                if value_at(parent, loc[-1:]) == SECRET_PLACEHOLDER:
                    parent[loc[-1]] = stand_in(taken)  # type: ignore[index]
                    taken += 1
                    replaced = True
            if not replaced:
                return values  # what is left is the model's to explain
