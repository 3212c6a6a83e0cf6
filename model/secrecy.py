"""Which of a site's values are secrets, and how they stay secret on their way to resources.

Two kinds:

* Sections Pulumi holds as secret. Setting any path of a top-level key with `--secret`
  (`pulumi config set --secret --path 'hub.values.x.client_secret'`) makes Pulumi report the
  whole key (`convecthub:hub`) as secret: the program cannot tell which value inside it is the
  secret one, so every value it takes from that section leaves as a secret Output
  (`SecretSections`). Names stay plain, because Pulumi keeps them plain in the state whatever
  the inputs: a node's name (its resources' names and URNs) and the hub's namespace (the
  Kubernetes objects' IDs), and so does the graph's shape (which steps exist, whether a step
  runs under sudo). So do the files the airgap bundle copies from the provisioner (archives,
  which are no secret Outputs; their contents are public release files).
* Values that are secrets by what they are, wherever they sit, set with `--secret` or not:
  in the free-form maps (`k3s.serverConfig` / `agentConfig`, `os.docker.daemonConfig`,
  `hub.values` and the hub's values file) a value under a key named like a secret
  (`is_secret_name`), the value of a `{name: <secret name>, value: ...}` entry (an env list),
  and a `NAME=value` string with a secret name (an extra argument); and any URL that carries
  credentials (`has_credentials_in_url`). stacks/config/warnings.py warns about those the
  stack file holds in plain text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi

# What a secret shows as wherever it is not to be read: in a preview, a render, the outputs the
# CLI prints, and as the placeholder an offline stack file holds for each `secure:` value.
SECRET_MASK = "[secret]"

# The top-level keys of the namespace (convecthub:<section>).
SECTIONS = ("ssh", "nodes", "os", "k3s", "registry", "gpu", "hub", "storage")

# A word of a key name containing one of these makes it a secret's name.
SECRET_WORD_PARTS = ("secret", "password", "passwd", "passphrase", "token", "credential")
# A key name whose last word is one of these names a secret (auth: docker's base64 user:pass,
# k3s's vpn-auth with its join key, basic-auth).
SECRET_LAST_WORDS = frozenset(
    {"pass", "pwd", "auth", "apikey", "privatekey", "accesskey", "signingkey"}
)
# "...Key" names a secret (apiKey, privateKey, tls_key, etcd-s3-access-key), but not alone:
# Kubernetes uses a bare `key` for label, taint and keyRef names (tolerations, selectors);
# nor after these words, whose keys are public.
PUBLIC_KEY_WORDS = frozenset({"public", "host"})
# Names that refer to a secret, or say something about it, rather than hold it:
# secretName, passwordFile, keyUrl, tokenTTL, existingSecret.
REFERENCE_LAST_WORDS = frozenset(
    {"file", "path", "url", "uri", "name", "ref", "dir", "type", "length", "enabled", "ttl"}
)
REFERENCE_FIRST_WORDS = frozenset({"existing"})

_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
# scheme://userinfo@host...: the userinfo, whatever follows the host.
_URL_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://([^/?#@\s]+)@")
# NAME=value or --NAME=value, as extra arguments are written.
_ASSIGNMENT = re.compile(r"^-{0,2}([A-Za-z][A-Za-z0-9_.-]*)=")

Path = tuple[int | str, ...]


def name_words(name: str) -> list[str]:
    """A key's name as lowercase words: camelCase, snake_case, kebab-case and dotted names."""
    return [word.lower() for word in _WORD.findall(name)]


def is_secret_name(name: str) -> bool:
    """Whether a key of a free-form map names a secret value.

    Yes: a word containing secret, password, passwd, passphrase, token or credential
    (client_secret, cookieSecret, agent-token, OAUTH_CLIENT_SECRET, apiToken); a last word
    pass, pwd, auth, apikey, privatekey, accesskey or signingkey (smtp_pass, vpn-auth); a last
    word key after a word other than public or host (apiKey, privateKey, tls_key,
    etcd-s3-access-key).
    No, whatever the words before: a name ending in a word that refers to or describes the
    secret (file, path, url, uri, name, ref, dir, type, length, enabled, ttl: keyUrl,
    secretName, passwordFile) or starting with existing (existingSecret); a bare key.
    """
    words = name_words(name)
    if not words or words[0] in REFERENCE_FIRST_WORDS or words[-1] in REFERENCE_LAST_WORDS:
        return False
    if any(part in word for word in words for part in SECRET_WORD_PARTS):
        return True
    if words[-1] in SECRET_LAST_WORDS:
        return True
    return words[-1] == "key" and len(words) > 1 and words[-2] not in PUBLIC_KEY_WORDS


def has_credentials_in_url(text: str) -> bool:
    """Whether `text` is a URL with credentials in it: a user and password
    (`scheme://user:pass@host`), or over http(s) any userinfo (`https://TOKEN@host`: a token
    as the user name). An `ssh://git@host` login name alone is none."""
    match = _URL_USERINFO.match(text)
    if match is None:
        return False
    scheme, userinfo = match.group(1).lower(), match.group(2)
    return ":" in userinfo or scheme in ("http", "https")


def _is_secret_string(text: str) -> bool:
    if has_credentials_in_url(text):
        return True
    assignment = _ASSIGNMENT.match(text)
    return assignment is not None and is_secret_name(assignment.group(1))


def secret_value_paths(tree: object, path: Path = ()) -> Iterator[Path]:
    """The paths, below `path`, of the secret leaves of a free-form map (chart values, k3s
    config, daemon.json): strings and numbers under a secret name (or in a list under one),
    the `value` of a `{name: <secret name>, value: ...}` entry, and strings that are URLs with
    credentials or `NAME=value` with a secret name. true/false and null are no secrets."""
    if isinstance(tree, Mapping):
        entry_name = tree.get("name")
        secret_entry = isinstance(entry_name, str) and is_secret_name(entry_name)
        for key, item in tree.items():
            named = is_secret_name(str(key)) or (secret_entry and key == "value")
            yield from _leaf_paths(item, (*path, key), named)
    elif isinstance(tree, list):
        for index, item in enumerate(tree):
            yield from _leaf_paths(item, (*path, index), False)
    elif isinstance(tree, str) and _is_secret_string(tree):
        yield path


def _leaf_paths(value: object, path: Path, named: bool) -> Iterator[Path]:
    if named and _is_scalar(value):
        yield path
    elif named and isinstance(value, list) and all(_is_scalar(v) for v in value):
        yield from ((*path, index) for index in range(len(value)))
    else:
        yield from secret_value_paths(value, path)


def _is_scalar(value: object) -> bool:
    return isinstance(value, str | int | float) and not isinstance(value, bool)


def holds_secret(tree: object) -> bool:
    """Whether a free-form map has any secret leaf."""
    return next(iter(secret_value_paths(tree)), None) is not None


def with_secrets_at(tree: Any, paths: Iterable[Path]) -> Any:
    """A copy of `tree` with the value at each path a secret Output (what is not on a path is
    shared, not copied)."""
    for path in paths:
        tree = _secret_at(tree, path)
    return tree


def _secret_at(tree: Any, path: Path) -> Any:
    if not path:
        return tree if isinstance(tree, pulumi.Output) else pulumi.Output.secret(tree)
    head, rest = path[0], path[1:]
    if isinstance(tree, Mapping) and head in tree:
        return {**tree, head: _secret_at(tree[head], rest)}
    if isinstance(tree, list) and isinstance(head, int) and head < len(tree):
        return [*tree[:head], _secret_at(tree[head], rest), *tree[head + 1 :]]
    return tree  # the path is not there (a merge replaced it): nothing to hide


@dataclass(frozen=True)
class SecretSections:
    """The sections (top-level keys of the namespace) Pulumi holds as secret."""

    names: frozenset[str] = frozenset()

    @classmethod
    def of_keys(cls, secret_keys: Iterable[str], namespace: str) -> SecretSections:
        """From Pulumi's secret keys (`convecthub:hub`, or `hub` as a stack's config holds it);
        other namespaces' keys are not ours."""
        prefix = f"{namespace}:"
        names = set()
        for key in secret_keys:
            if key.startswith(prefix):
                key = key[len(prefix) :]
            elif ":" in key:
                continue
            if key in SECTIONS:
                names.add(key)
        return cls(frozenset(names))

    def __contains__(self, section: object) -> bool:
        return section in self.names

    def __bool__(self) -> bool:
        return bool(self.names)

    def any(self, sections: Iterable[str]) -> bool:
        return any(section in self.names for section in sections)

    def wrap(self, value: Any, *sections: str) -> Any:
        """`value` as a secret Output when any of `sections` is secret, else `value` itself
        (so a site without secrets gets the very same inputs)."""
        return pulumi.Output.secret(value) if self.any(sections) else value

    def split_env(
        self,
        env: Mapping[str, pulumi.Input[str]],
        sources: Mapping[str, Sequence[str]],
        *,
        default: Sequence[str] = SECTIONS,
        secret: Iterable[str] = (),
    ) -> tuple[dict[str, pulumi.Input[str]], dict[str, pulumi.Input[str]]]:
        """A script's environment as (plain, secret): a variable is secret when a section it
        comes from (`sources`, else `default`: any) is secret, or it is named in `secret`
        (a value that is a secret by what it is)."""
        secret_names = set(secret)
        plain: dict[str, pulumi.Input[str]] = {}
        hidden: dict[str, pulumi.Input[str]] = {}
        for name, value in env.items():
            target = (
                hidden if name in secret_names or self.any(sources.get(name, default)) else plain
            )
            target[name] = value
        return plain, hidden
