"""JSON Schema of a stack file (`Pulumi.<stack>.yaml`), for editors to complete and check.

The `convecthub:*` keys are described by the site model itself; a secret-by-nature value may
be written plainly or as the `{secure: ...}` object `pulumi config set --secret` writes.
"""

from __future__ import annotations

from model.site import Site
from stacks.config import NAMESPACE

_SECURE = {
    "type": "object",
    "properties": {"secure": {"type": "string"}},
    "required": ["secure"],
    "additionalProperties": False,
}


def _allow_secure(node: object) -> object:
    if isinstance(node, dict):
        if node.get("format") == "password":
            plain = {key: value for key, value in node.items() if key != "writeOnly"}
            return {"anyOf": [plain, _SECURE]}
        return {key: _allow_secure(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_allow_secure(item) for item in node]
    return node


def stack_file_schema() -> dict:
    site = _allow_secure(Site.model_json_schema(by_alias=True))
    assert isinstance(site, dict)
    sections = {f"{NAMESPACE}:{key}": value for key, value in site["properties"].items()}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "ConvectHub site stack file (Pulumi.<stack>.yaml)",
        "type": "object",
        "properties": {
            "config": {
                "type": "object",
                "properties": sections,
                "required": [f"{NAMESPACE}:{key}" for key in site.get("required", [])],
                # Other namespaces (pulumi:, kubernetes:, ...) pass; an unknown convecthub:
                # key does not.
                "patternProperties": {f"^(?!{NAMESPACE}:)": {}},
                "additionalProperties": False,
            },
            "secretsprovider": {"type": "string"},
            "encryptedkey": {"type": "string"},
            "encryptionsalt": {"type": "string"},
            "environment": {},
        },
        "$defs": site.get("$defs", {}),
    }
