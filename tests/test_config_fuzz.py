"""No input makes the config loader raise anything but its one-line ConfigError (issue 14).

The loader is what `python -m stacks render` and the commands use: the stack file read into
Pulumi's config (`read_stack_file`), decoded (`decode_config`) and validated (`load_site`).
It is fed random YAML trees, built from the model's real key names and random ones, and random
documents of text and bytes."""

from __future__ import annotations

import tempfile
import typing
from collections.abc import Iterator
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from model.site import Site
from stacks.config import ConfigError, decode_config, load_site

FUZZ = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _model_keys(model: type[BaseModel], seen: set[type]) -> Iterator[str]:
    if model in seen:
        return
    seen.add(model)
    for name, info in model.model_fields.items():
        yield info.alias or name
        for inner in _models_in(info.annotation):
            yield from _model_keys(inner, seen)


def _models_in(annotation: object) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in typing.get_args(annotation):
        yield from _models_in(arg)


MODEL_KEYS = sorted(set(_model_keys(Site, set())))
SECTIONS = [f"convecthub:{info.alias or name}" for name, info in Site.model_fields.items()]

keys = st.one_of(st.sampled_from(MODEL_KEYS), st.text(max_size=12))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(
        [
            "10.0.0.1",
            "fe80::1%eth0",
            "server",
            "agent",
            "nvidia",
            "[secret]",
            "/",
            "/dev/zero",
            "http://x",
            "127.0.0.1",
            "v1.31.4+k3s1",
            "a\nb",
        ]
    ),
)


def secure_value(_: object) -> dict:
    return {"secure": "v1:abc"}


trees = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(keys, inner, max_size=5),
        st.builds(secure_value, inner),
    ),
    max_leaves=25,
)


node_like = st.fixed_dictionaries(
    {"name": st.sampled_from(["master", "w1", "Bad"]), "host": scalars, "roles": trees},
    optional={key: trees for key in ("ssh", "gpu", "labels", "taints", "address", "iface")},
)
config_trees = st.dictionaries(
    st.one_of(
        st.sampled_from(SECTIONS),
        st.sampled_from(["nodes", "kubernetes:context", "convectub:os", "pulumi:x"]),
        st.text(max_size=12),
    ),
    st.one_of(trees, st.lists(node_like, min_size=1, max_size=3)),
    max_size=6,
)


def load(path: Path) -> None:
    from stacks.stackfile import read_stack_file

    stack = read_stack_file(path)
    load_site(decode_config(stack.config), stack.secret_keys)


def outcome(content: bytes) -> str:
    """'ok', or the one line of the ConfigError; any other exception fails the test."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "Pulumi.fuzz.yaml"
        path.write_bytes(content)
        try:
            load(path)
        except ConfigError as error:
            message = str(error)
            assert message and "\n" not in message, message
            return message
    return "ok"


@FUZZ
@given(config_trees)
def test_random_config_trees_load_or_fail_in_one_line(config: dict) -> None:
    text = yaml.safe_dump({"config": config}, allow_unicode=True)
    assert outcome(text.encode("utf-8"))


@FUZZ
@given(trees)
def test_random_documents_of_any_shape_load_or_fail_in_one_line(document: object) -> None:
    text = yaml.safe_dump(document, allow_unicode=True)
    assert outcome(text.encode("utf-8"))


@FUZZ
@given(
    st.text(
        alphabet=st.sampled_from(list("config:convecthub nodes-[]{}&*!|>'\"#%\n\t ,?01")),
        max_size=200,
    )
)
def test_random_yaml_text_loads_or_fails_in_one_line(text: str) -> None:
    assert outcome(text.encode("utf-8"))


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes_load_or_fail_in_one_line(content: bytes) -> None:
    assert outcome(content)
