"""Reads a site's `convecthub:*` config into the typed `Site` model, or one clear error line.

This is the one place config is read. Every problem a user can cause becomes a `ConfigError`
whose text is `convecthub:<key path>: <what is wrong and how to fix it>`, raised before any
resource is registered. `load_site` composes the package's modules, one job each:

  keys      the namespace, key paths and `ConfigError`
  decode    Pulumi's config into the model's input; one-line text; offline placeholders
  explain   a pydantic ValidationError as one line, with hints and near-miss keys
  policy    the checks across fields the model's own validation cannot make
  warnings  version, site and plain-secret warnings for a valid site
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pydantic import ValidationError

from model.secrecy import SecretSections
from model.site import Site
from stacks.config.decode import (
    SECRET_PLACEHOLDER,
    check_one_line_text,
    decode_config,
    in_offline_review,
    pulumi_config,
    reviewing_offline,
    with_typed_placeholders,
)
from stacks.config.explain import check_top_level_keys, first_error
from stacks.config.keys import NAMESPACE, ConfigError, key_path
from stacks.config.policy import CLUSTER_PORTS, TRAEFIK_PORTS, check_site
from stacks.config.warnings import plain_secret_warnings, site_warnings, version_warnings

__all__ = [
    "CLUSTER_PORTS",
    "NAMESPACE",
    "SECRET_PLACEHOLDER",
    "TRAEFIK_PORTS",
    "ConfigError",
    "LoadedSite",
    "decode_config",
    "in_offline_review",
    "key_path",
    "load_site",
    "load_site_from_pulumi",
    "reviewing_offline",
]


@dataclass(frozen=True)
class LoadedSite:
    site: Site
    warnings: tuple[str, ...]
    # The sections Pulumi holds as secret: everything taken from them stays secret.
    secret_sections: SecretSections = field(default_factory=SecretSections)
    # The defaults the site relies on that a newer program moves, each with how to pin it.
    version_warnings: tuple[str, ...] = ()


def load_site(values: Mapping[str, object], secret_keys: Iterable[str] = ()) -> LoadedSite:
    """Validate the namespace's values (keyed without the `convecthub:` prefix).

    `values` holds decoded values (mappings, lists, scalars), as a stack file or
    `decode_config` gives them. `secret_keys` are the keys Pulumi holds as secrets.
    """
    check_top_level_keys(values)
    check_one_line_text(values)
    if in_offline_review():
        values = with_typed_placeholders(values)
    try:
        site = Site.model_validate(dict(values))
    except ValidationError as error:
        raise first_error(error) from None
    check_site(site)
    secret_keys = set(secret_keys)
    return LoadedSite(
        site,
        (*plain_secret_warnings(values, secret_keys), *site_warnings(site)),
        SecretSections.of_keys(secret_keys, NAMESPACE),
        tuple(version_warnings(values, site)),
    )


def load_site_from_pulumi() -> LoadedSite:
    """The site from the config Pulumi hands the running program."""
    return load_site(*pulumi_config())
