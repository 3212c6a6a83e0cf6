"""The site's own JupyterHub chart values file (the seed's jhub_config_path)."""

from __future__ import annotations

from pathlib import Path

import yaml


def read_values_file(path: str) -> dict[str, object]:
    """The values file's mapping; raises ValueError with what is wrong."""
    try:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ValueError(f"is not valid YAML{where}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ValueError("does not hold a mapping of chart values")
    return loaded
