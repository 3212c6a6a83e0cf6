"""Docker Engine on the nodes that want it (`convecthub:os.docker`, a node's `installDocker`):
a DockerEngine `<node>-docker` whose one step, `<node>-docker-engine` (docker-engine.sh), runs
after the node's OS prep and GPU layer; on an NVIDIA node the nvidia runtime becomes Docker's
default (OpenPAI's setting). k3s never waits for it and never uses it: k3s keeps its own
containerd.

daemon.json is composed here: Docker Hub's mirrors (the registry mirrors of docker.io, else
of `*`: Docker mirrors Docker Hub only), the insecure registries, data-root, the nvidia
runtime, then the site's further settings.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
from pulumi_command import remote

from components.k3s import proxy_env
from components.node import BareMetalNode, url_secrets
from components.remote_script import ScriptStep
from components.steps import Component, StepId, StepKind
from model.accelerator import accelerator_of
from model.secrecy import SecretSections, holds_secret
from model.site import DockerSettings, Node, OsSettings, RegistrySettings

DOCKER_SCRIPT = "docker-engine.sh"
# The sections each script variable comes from (model/secrecy.py); the others come from os.
DOCKER_SOURCES: dict[str, tuple[str, ...]] = {
    "CONVECTHUB_NODE_NAME": (),
    "CONVECTHUB_DOCKER_DAEMON_JSON": ("os", "registry", "nodes"),
}
DOCKER_URLS = (
    "CONVECTHUB_DOCKER_REPO",
    "CONVECTHUB_DOCKER_KEY_URL",
    "CONVECTHUB_HTTP_PROXY",
    "CONVECTHUB_HTTPS_PROXY",
)


@dataclass(frozen=True)
class DockerEngineArgs:
    node: BareMetalNode  # a node that wants Docker, its OS prepared
    os: OsSettings  # Docker's settings (os.docker) and the site's proxy
    registry: RegistrySettings  # Docker Hub's mirrors and the insecure registries
    after: Sequence[pulumi.Resource] = ()  # what it waits for besides OS prep (the GPU layer)
    secrets: SecretSections = field(default_factory=SecretSections)  # the secret sections


# How Docker runs the NVIDIA runtime the GPU layer installed (its `runtimes` entry).
NVIDIA_RUNTIME = {"path": "nvidia-container-runtime", "runtimeArgs": []}


def docker_daemon_config(
    node: Node, docker: DockerSettings, registry: RegistrySettings
) -> dict[str, object]:
    """The node's daemon.json, in a fixed key order."""
    config: dict[str, object] = {}
    hub_mirrors = registry.mirrors.get("docker.io") or registry.mirrors.get("*") or []
    if hub_mirrors:
        config["registry-mirrors"] = list(hub_mirrors)
    # Docker takes hosts and CIDRs here; "*" (every registry, for containerd) has no equivalent.
    insecure = [name for name in registry.insecure if name != "*"]
    if insecure:
        config["insecure-registries"] = insecure
    if docker.data_root:
        config["data-root"] = docker.data_root
    runtime = accelerator_of(node).default_runtime
    if runtime is not None:
        config["default-runtime"] = runtime
        config["runtimes"] = {runtime: NVIDIA_RUNTIME}
    config.update(sorted(docker.daemon_config.items()))
    return config


def docker_env(node: Node, os: OsSettings, registry: RegistrySettings) -> dict[str, str]:
    docker = os.docker
    return {
        "CONVECTHUB_NODE_NAME": node.name,
        "CONVECTHUB_DOCKER_REPO": docker.repository.rstrip("/"),
        "CONVECTHUB_DOCKER_KEY_URL": docker.key_url,
        "CONVECTHUB_DOCKER_DAEMON_JSON": json.dumps(
            docker_daemon_config(node, docker, registry), indent=2
        ),
        **proxy_env(os),
    }


class DockerEngine(pulumi.ComponentResource):
    """Docker on one node: its `engine` step, docker-engine.sh apply (remove on delete)."""

    engine: remote.Command

    def __init__(
        self, name: str, args: DockerEngineArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__(Component.DOCKER.type_token, name, None, opts)
        node = args.node.model
        env = docker_env(node, args.os, args.registry)
        secret = url_secrets(env, DOCKER_URLS)
        # A setting named like a secret, or a URL with credentials (a mirror's, a proxy's).
        if holds_secret(docker_daemon_config(node, args.os.docker, args.registry)):
            secret.append("CONVECTHUB_DOCKER_DAEMON_JSON")
        plain, hidden = args.secrets.split_env(env, DOCKER_SOURCES, default=("os",), secret=secret)
        step = ScriptStep(DOCKER_SCRIPT, env=plain, secret_env=hidden)
        self.engine = args.node.run_prepared(
            StepId(StepKind.DOCKER, node.name).resource_name, step, parent=self, after=args.after
        )
        steps = [step.describe().apply(lambda d: {"step": "docker", "action": "apply", **d})]
        self.register_outputs({"steps": steps})
