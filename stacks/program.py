"""The Pulumi program: load the site, build the cluster, export its outputs."""

from __future__ import annotations

import os

import pulumi

from components.connection import has_credentials
from stacks.cluster import build_cluster
from stacks.config import ConfigError, key_path, load_site_from_pulumi
from stacks.site_model import Site


def check_ssh_agent(site: Site) -> None:
    """Before anything connects: nodes with no key or password need a running SSH agent."""
    if os.environ.get("SSH_AUTH_SOCK"):
        return
    for node in site.nodes:
        if not has_credentials(site.ssh_for(node)):
            raise ConfigError(
                key_path(["ssh"]),
                f"node {node.name} has no privateKeyFile, privateKey or password and no SSH "
                "agent is running (SSH_AUTH_SOCK is unset): run `eval $(ssh-agent) && ssh-add`"
                ", or set convecthub:ssh.privateKeyFile",
            )


def run() -> None:
    loaded = load_site_from_pulumi()
    for warning in loaded.warnings:
        pulumi.log.warn(warning)
    if not pulumi.runtime.is_dry_run():
        check_ssh_agent(loaded.site)
    cluster = build_cluster(loaded.site)
    pulumi.export("nodes", cluster.summary())
