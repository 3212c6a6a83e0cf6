"""The Pulumi program: load the site, build the cluster, export its outputs."""

from __future__ import annotations

import gc
import os

import pulumi

from components.connection import has_credentials
from model.site import Site
from stacks.cluster import build_cluster
from stacks.config import ConfigError, key_path, load_site_from_pulumi
from stacks.host_keys import check_host_keys, in_review


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
    # Every resource, Output and future of the graph lives until the program ends, and
    # CPython's cyclic collector re-walks all of them at each full collection: that made
    # evaluation cost per node grow with the fleet (docs/benchmarks.md) while freeing next to
    # nothing (peak memory for 1000 nodes was the same with it off). Reference counting still
    # frees what it can; the process ends with the deployment.
    gc.disable()
    loaded = load_site_from_pulumi()
    for warning in loaded.warnings:
        pulumi.log.warn(warning)
    # Before any resource: a node without a pinned host key is refused (hostKeyPolicy). In
    # review (the offline render, the check before the CLI) the caller says it, once.
    if not in_review():
        # The defaults the site relies on: in review too the caller says them, once.
        for warning in loaded.version_warnings:
            pulumi.log.warn(warning)
        for warning in check_host_keys(loaded.site, pulumi.get_stack(), refuse=True):
            pulumi.log.warn(warning)
    if not pulumi.runtime.is_dry_run():
        check_ssh_agent(loaded.site)
    cluster = build_cluster(loaded.site, loaded.secret_sections)
    pulumi.export("nodes", cluster.summary())
    pulumi.export("versions", cluster.versions())
    pulumi.export("apiServer", cluster.api_server)
    pulumi.export("kubeconfig", pulumi.Output.secret(cluster.kubeconfig))
    pulumi.export("hubUrls", cluster.hub.urls)
    if cluster.hub.admin_password is not None:
        admins = list(loaded.site.hub.admin_users)
        pulumi.export("hubAdminUsers", loaded.secret_sections.wrap(admins, "hub"))
        pulumi.export("hubAdminPassword", pulumi.Output.secret(cluster.hub.admin_password))
