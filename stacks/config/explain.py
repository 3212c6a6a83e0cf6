"""A pydantic `ValidationError` as one readable line: the key path, what is wrong, a hint for
what to write, and for an unknown key the near-miss the user probably meant."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Mapping

from pydantic import BaseModel, ValidationError

from model.site import Site
from stacks.config.keys import ConfigError, key_path, keys_of


def first_error(error: ValidationError) -> ConfigError:
    """The first problem pydantic found, with how many more there are."""
    problems = error.errors(include_url=False)
    first = problems[0]
    loc = keys_of(first["loc"])
    # A value that fits no member of a union gets one problem per member: say it once.
    same_place = [p for p in problems if keys_of(p["loc"]) == loc]
    if "list[str]" in first["loc"] and len(same_place) > 1:
        message = (
            f"{first.get('input')!r} is not a string, a number, true/false or a list of strings"
        )
        problems = [p for p in problems if p not in same_place]
        if problems:
            message += f" (and {len(problems)} more problem(s) after this one)"
        return ConfigError(key_path(loc), message)
    message = _explain(first, loc)
    if len(problems) > 1:
        message += f" (and {len(problems) - 1} more problem(s) after this one)"
    return ConfigError(key_path(loc), message)


_HINTS = {
    "nodes": "list the fleet: one entry per machine with name, host and roles",
    "name": "give the node a name (lowercase, it becomes the hostname)",
    "host": "give the address the provisioner reaches the machine at over SSH",
    "roles": "give the node roles: [server] or roles: [agent]",
    "vendor": "give the vendor: nvidia or ascend",
}


def _explain(problem: Mapping[str, typing.Any], loc: list[int | str]) -> str:
    kind = problem["type"]
    given = problem.get("input")
    ctx = problem.get("ctx") or {}
    field = next((part for part in reversed(loc) if isinstance(part, str)), "")
    if kind == "missing":
        return f"is required: {_HINTS.get(field, 'add this key')}"
    if kind == "extra_forbidden":
        return unknown_key_message(str(loc[-1]), _aliases_at(loc[:-1]))
    if kind == "literal_error":
        return f"{given!r} is not allowed here: use {ctx.get('expected')}"
    if kind in {
        "greater_than_equal",
        "less_than_equal",
        "int_parsing",
        "int_type",
        "int_from_float",
        "greater_than",
        "less_than",
    }:
        if field.endswith("port") or field.endswith("Port") or field == "port":
            return f"{given!r} is not a port number: use a whole number from 1 to 65535"
        if kind in {"int_parsing", "int_type", "int_from_float"}:
            return f"{given!r} is not a whole number"
        return f"{given!r} is out of range: {problem['msg'].lower()}"
    if kind == "too_short" and field == "nodes":
        return f"is empty: {_HINTS['nodes']}"
    if kind in {"model_type", "model_attributes_type", "dict_type"}:
        return f"must be a mapping of keys to values, not {type(given).__name__}"
    if kind == "list_type":
        return (
            f"must be a list, not {type(given).__name__}: write it as [a, b] or one '- ' line each"
        )
    if kind == "string_type":
        return f"must be a string, not {type(given).__name__}: quote the value"
    if kind == "bool_parsing" or kind == "bool_type":
        return f"{given!r} is not true or false"
    if kind == "string_pattern_mismatch":
        return f"{given!r} does not have the expected form ({ctx.get('pattern')})"
    return problem["msg"][0].lower() + problem["msg"][1:]


def unknown_key_message(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    guess = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown key {key!r}: {guess}the keys here are {', '.join(known)}"


def check_top_level_keys(values: Mapping[str, object]) -> None:
    """Every top-level key is one of the namespace's sections."""
    known = list(_aliases(Site))
    for key in values:
        if key not in known:
            raise ConfigError(key_path([str(key)]), unknown_key_message(str(key), known))


def _aliases(model: type[BaseModel]) -> Iterable[str]:
    for name, info in model.model_fields.items():
        yield info.alias or name


def _aliases_at(loc: list[int | str]) -> list[str]:
    """The keys the model accepts at `loc` (for the unknown-key message)."""
    annotation: object = Site
    for part in loc:
        model = _model_in(annotation)
        if model is None:
            return []
        if isinstance(part, int):
            annotation = _item_type(annotation)
            continue
        field = next((f for n, f in model.model_fields.items() if (f.alias or n) == part), None)
        if field is None:
            return []
        annotation = field.annotation
    model = _model_in(annotation)
    return list(_aliases(model)) if model else []


def _model_in(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found:
            return found
    return None


def _item_type(annotation: object) -> object:
    origin = typing.get_origin(annotation)
    if origin in (list, tuple):
        return typing.get_args(annotation)[0]
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if arg is not type(None):
                return _item_type(arg)
    return annotation
