"""The SSH connection of a node, from its effective `SshSettings`.

Keys and passwords become secret Outputs here and stay secret from then on. With no key and
no password, pulumi-command authenticates through the SSH agent (SSH_AUTH_SOCK).

Host keys: pulumi-command (1.1 and later) checks the node's key against `hostKey` when it is
set, and the bastion's against its own `hostKey` (`ProxyConnection.hostKey`); unset, it
accepts whatever key it is shown. A given key is always passed on, whatever the site's
`hostKeyPolicy`; which nodes may go without one is `stacks/host_keys.py`'s to decide, before
any connection is made.
"""

from __future__ import annotations

import functools
import getpass
import os
from pathlib import Path

import pulumi
from pulumi_command import remote
from pydantic import SecretStr

from model.site import Bastion, SshSettings


def login_user(ssh: SshSettings | Bastion) -> str:
    """The configured user, or the provisioner's own login name as `ssh` would use."""
    return ssh.user or getpass.getuser()


def read_key_file(path: str) -> str:
    """A private key file's text: read once however many nodes share it, and again when the
    file changes (a long-lived process may evaluate the program more than once)."""
    stat = os.stat(path)
    return _read_key_file(path, stat.st_ino, stat.st_mtime_ns, stat.st_size)


@functools.cache
def _read_key_file(path: str, _inode: int, _mtime_ns: int, _size: int) -> str:
    return Path(path).read_text(encoding="utf-8")


def _key(private_key_file: str | None, private_key: SecretStr | None) -> pulumi.Output[str] | None:
    if private_key is not None:
        return pulumi.Output.secret(private_key.get_secret_value())
    if private_key_file is not None:
        return pulumi.Output.secret(read_key_file(private_key_file))
    return None


def _secret(value: SecretStr | None) -> pulumi.Output[str] | None:
    return None if value is None else pulumi.Output.secret(value.get_secret_value())


def has_credentials(ssh: SshSettings) -> bool:
    """Whether the settings name a key or a password (else the SSH agent must serve one)."""
    return any(v is not None for v in (ssh.private_key_file, ssh.private_key, ssh.password))


def connection_args(host: str, ssh: SshSettings) -> remote.ConnectionArgs:
    bastion = ssh.bastion
    proxy = None
    if bastion is not None:
        proxy = remote.ProxyConnectionArgs(
            host=bastion.host,
            port=bastion.port,
            user=login_user(bastion),
            private_key=_key(bastion.private_key_file, bastion.private_key),
            password=_secret(bastion.password),
            host_key=bastion.host_key,
        )
    return remote.ConnectionArgs(
        host=host,
        port=ssh.port or 22,
        user=login_user(ssh),
        private_key=_key(ssh.private_key_file, ssh.private_key),
        private_key_password=_secret(ssh.private_key_password),
        password=_secret(ssh.password),
        host_key=ssh.host_key,
        dial_error_limit=ssh.dial_attempts,
        per_dial_timeout=ssh.dial_timeout_seconds,
        proxy=proxy,
    )
