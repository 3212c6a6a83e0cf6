"""SSH public host keys: the grammar of a pinned `hostKey`, and its fingerprint.

A host key is written as OpenSSH writes it in `/etc/ssh/ssh_host_ed25519_key.pub` or as
`ssh-keyscan` prints it after the host name: `<type> <base64>`, optionally followed by a
comment, which is dropped (it names nothing the connection checks). The base64 must decode to
the wire form of a key of that same type (RFC 4253 section 6.6), so a truncated paste, a key of
another type under a wrong name, or anything else with a space in it is refused.

Pure functions, no I/O: the site model validates with them and `python -m stacks known-hosts`
prints fingerprints with them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from model.secrecy import SECRET_MASK

# The key types OpenSSH offers as host keys today, and how `ssh-keygen -l` names them.
KEY_TYPES = {
    "ssh-ed25519": "ED25519",
    "ecdsa-sha2-nistp256": "ECDSA",
    "ecdsa-sha2-nistp384": "ECDSA",
    "ecdsa-sha2-nistp521": "ECDSA",
    "ssh-rsa": "RSA",
    "sk-ssh-ed25519@openssh.com": "ED25519-SK",
    "sk-ecdsa-sha2-nistp256@openssh.com": "ECDSA-SK",
}
# What each type's short name in `ssh-keyscan -t` or `known-hosts --type` stands for.
SHORT_TYPES = {
    "ed25519": ("ssh-ed25519",),
    "ecdsa": ("ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521"),
    "rsa": ("ssh-rsa",),
}
_ECDSA_BITS = {"nistp256": 256, "nistp384": 384, "nistp521": 521}
_BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")
_MAX_LENGTH = 16384  # an RSA-16384 key is about 2.8 kB of base64; anything longer is not a key
_SHOWN = 40


class HostKeyError(ValueError):
    """Not a host key: `str(error)` says why and how to get a right one, in one line."""


@dataclass(frozen=True)
class HostKey:
    type: str
    blob: bytes

    @property
    def text(self) -> str:
        """`<type> <base64>`, as the connection takes it."""
        return f"{self.type} {base64.b64encode(self.blob).decode()}"

    @property
    def fingerprint(self) -> str:
        """`SHA256:...`, as `ssh-keygen -l` prints it."""
        digest = hashlib.sha256(self.blob).digest()
        return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")

    @property
    def bits(self) -> int:
        return _bits(self.type, self.blob)

    @property
    def label(self) -> str:
        """`256 SHA256:... (ED25519)`, the form of `ssh-keygen -l`."""
        return f"{self.bits} {self.fingerprint} ({KEY_TYPES[self.type]})"


def _shown(text: str) -> str:
    head = text if len(text) <= _SHOWN else text[:_SHOWN] + "..."
    return repr(head)


def _how() -> str:
    return (
        "write the node's public host key as `<type> <base64>`, e.g. the content of its "
        "/etc/ssh/ssh_host_ed25519_key.pub, or collect it with `python -m stacks known-hosts`"
    )


def parse_host_key(text: str) -> HostKey:
    """The key `text` names, or HostKeyError with the one line that says what is wrong."""
    if not isinstance(text, str):
        raise HostKeyError(f"a host key is a string, not {type(text).__name__}: {_how()}")
    if "PRIVATE KEY" in text:
        # Never echo it back: it is a secret pasted in the wrong place.
        raise HostKeyError(
            "this is a private key: hostKey is the node's PUBLIC host key (a .pub file); "
            "remove the private key from the stack file and " + _how()
        )
    if text == SECRET_MASK:  # what a `secure:` value reads as offline
        raise HostKeyError(
            "a host key is public: store it in plain text, not with `pulumi config set "
            "--secret`; " + _how()
        )
    if len(text) > _MAX_LENGTH:
        raise HostKeyError(f"{len(text)} characters is too long for a host key: {_how()}")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in text.replace("\t", " ")):
        raise HostKeyError(
            f"{_shown(text)} holds control characters (a line break?): {_how()}, on one line"
        )
    fields = text.strip().split()
    if not fields:
        raise HostKeyError(f"is empty: {_how()}")
    if fields[0].startswith("@"):
        raise HostKeyError(
            f"{fields[0]!r} is a known_hosts marker: pin the node's own key, not a "
            "certificate authority or a revoked key; " + _how()
        )
    key_type = fields[0]
    if key_type not in KEY_TYPES:
        if len(fields) >= 3 and fields[1] in KEY_TYPES:
            raise HostKeyError(
                f"{_shown(text)} starts with the host name {fields[0]!r}, as a known_hosts "
                "line does: drop it, keep `<type> <base64>`"
            )
        if key_type.endswith("-cert-v01@openssh.com"):
            raise HostKeyError(
                f"{key_type!r} is a host certificate: pin the host's plain key instead; " + _how()
            )
        if key_type == "ssh-dss":
            raise HostKeyError(
                "ssh-dss (DSA) host keys are obsolete and OpenSSH no longer offers them: "
                "pin the node's ed25519 key; " + _how()
            )
        raise HostKeyError(
            f"{_shown(text)} is not an SSH public key: the key type must be one of "
            f"{', '.join(KEY_TYPES)}; " + _how()
        )
    if len(fields) < 2:
        raise HostKeyError(f"{key_type} has no key after it: {_how()}")
    encoded = fields[1]
    blob = _decode(key_type, encoded)
    _check_blob(key_type, blob)
    return HostKey(key_type, blob)


def _decode(key_type: str, encoded: str) -> bytes:
    if not _BASE64.match(encoded) or len(encoded) % 4:
        raise HostKeyError(
            f"the {key_type} key {_shown(encoded)} is not base64 (cut short when copied?): "
            + _how()
        )
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise HostKeyError(
            f"the {key_type} key {_shown(encoded)} is not base64 (cut short when copied?): "
            + _how()
        ) from None


def _strings(blob: bytes) -> list[bytes]:
    """The length-prefixed strings the key's wire form is made of."""
    parts = []
    offset = 0
    while offset < len(blob):
        if offset + 4 > len(blob):
            raise ValueError("truncated")
        length = int.from_bytes(blob[offset : offset + 4], "big")
        offset += 4
        if length > len(blob) - offset:
            raise ValueError("truncated")
        parts.append(blob[offset : offset + length])
        offset += length
    return parts


def _check_blob(key_type: str, blob: bytes) -> None:
    broken = HostKeyError(
        f"the base64 after {key_type} does not decode to a {key_type} key (cut short, or "
        "another key type): " + _how()
    )
    try:
        parts = _strings(blob)
    except ValueError:
        raise broken from None
    if not parts:
        raise broken
    embedded = parts[0].decode("ascii", errors="replace")
    if embedded != key_type:
        if embedded in KEY_TYPES:
            raise HostKeyError(
                f"the key after {key_type} is a {embedded} key: write it as `{embedded} <base64>`"
            )
        raise broken
    body = parts[1:]
    if key_type in ("ssh-ed25519", "sk-ssh-ed25519@openssh.com"):
        expected = 2 if key_type.startswith("sk-") else 1
        if len(body) != expected or len(body[0]) != 32:
            raise broken
    elif "ecdsa" in key_type:
        curve = key_type.removeprefix("sk-").split("@")[0].rsplit("-", 1)[-1]
        expected = 3 if key_type.startswith("sk-") else 2
        if len(body) != expected or body[0] != curve.encode() or body[1][:1] != b"\x04":
            raise broken
        size = (_ECDSA_BITS[curve] + 7) // 8
        if len(body[1]) != 1 + 2 * size:
            raise broken
    elif key_type == "ssh-rsa":
        if len(body) != 2 or not body[0] or not body[1]:
            raise broken
        if int.from_bytes(body[1], "big").bit_length() < 1024:
            raise HostKeyError(
                "this ssh-rsa key is shorter than 1024 bits, which OpenSSH refuses: pin the "
                "node's ed25519 key; " + _how()
            )


def _bits(key_type: str, blob: bytes) -> int:
    if "ed25519" in key_type:
        return 256
    parts = _strings(blob)
    if "ecdsa" in key_type:
        return _ECDSA_BITS[parts[1].decode()]
    return int.from_bytes(parts[2], "big").bit_length()
