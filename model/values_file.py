"""The site's own JupyterHub chart values file (the seed's jhub_config_path), and how chart
values merge (as Helm merges values files)."""

from __future__ import annotations

import copy
from collections.abc import Mapping

from model.safe_yaml import NOT_YAML, YamlError, load_yaml_file


def read_values_file(path: str) -> dict[str, object]:
    """The values file's mapping; raises ValueError with what is wrong."""
    try:
        loaded = load_yaml_file(path, string_keys=False).data
    except YamlError as problem:
        where = f" (line {problem.line})" if problem.line is not None else ""
        if problem.message == NOT_YAML:
            raise ValueError(f"is not valid YAML{where}") from None
        raise ValueError(f"{problem.message}{where}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ValueError("does not hold a mapping of chart values")
    return loaded


def merge_values(ours: Mapping[str, object], theirs: Mapping[str, object]) -> dict[str, object]:
    """`theirs` over `ours`, as Helm merges values files: mappings merge key by key, anything
    else (lists included) is replaced by theirs. Neither input is changed."""
    merged: dict[str, object] = copy.copy(dict(ours))
    for key, value in theirs.items():
        mine = merged.get(key)
        if isinstance(mine, Mapping) and isinstance(value, Mapping):
            merged[key] = merge_values(mine, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
