"""GpuNode: the accelerator layer of a node whose config has `gpu`, between its OS prep and
its k3s install.

  driver   gpu-driver.sh: the device is on the PCI bus and its driver answers; for NVIDIA
           with installDriver, nouveau blacklisted and the driver installed, and a reboot
           scheduled when the module needs one. Drivers stay on removal (no delete).
  runtime  NVIDIA only, gpu-runtime.sh apply: waits for the node to be back and booted,
           checks nvidia-smi, installs the NVIDIA container toolkit from its repository (or
           the site's mirror); `delete` removes the repository. Its SSH connection keeps
           dialling for as long as a reboot may take (`convecthub:gpu.rebootTimeoutSeconds`).

k3s on an NVIDIA node then starts with `default-runtime: nvidia` (see components/k3s.py), so a
pod asking for `nvidia.com/gpu` runs on the NVIDIA runtime without naming a RuntimeClass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from components.connection import connection_args
from components.node import BareMetalNode, url_secrets
from components.remote_script import ScriptStep
from components.steps import Component, StepId, StepKind
from model.accelerator import accelerator_of
from model.secrecy import SecretSections
from model.site import GpuSettings, Node, SshSettings

DRIVER_SCRIPT = "gpu-driver.sh"
RUNTIME_SCRIPT = "gpu-runtime.sh"
# How long one SSH dial may take while the node reboots.
REBOOT_DIAL_SECONDS = 15
# pulumi-command waits between failed dials with a backoff that levels off at 5 s; a node
# that refuses (sshd stopped for the reboot) or has no route fails each dial at once, so the
# attempts are counted at that pace: a node that times out instead only waits longer.
REDIAL_PAUSE_SECONDS = 5
# The sections each script variable comes from (model/secrecy.py).
DRIVER_SOURCES: dict[str, tuple[str, ...]] = {
    "CONVECTHUB_NODE_NAME": (),
    "CONVECTHUB_GPU_VENDOR": ("nodes",),
    "CONVECTHUB_INSTALL_DRIVER": ("nodes",),
}
RUNTIME_SOURCES: dict[str, tuple[str, ...]] = {"CONVECTHUB_NODE_NAME": ()}
RUNTIME_URLS = ("CONVECTHUB_TOOLKIT_REPO", "CONVECTHUB_TOOLKIT_KEY_URL")


def driver_env(node: Node, settings: GpuSettings) -> dict[str, str]:
    accelerator = accelerator_of(node)
    assert accelerator.vendor is not None
    env = {"CONVECTHUB_NODE_NAME": node.name, "CONVECTHUB_GPU_VENDOR": accelerator.vendor}
    if accelerator.is_nvidia:
        env["CONVECTHUB_INSTALL_DRIVER"] = "true" if accelerator.install_driver else "false"
        if accelerator.install_driver:
            env["CONVECTHUB_DRIVER_VERSION"] = settings.driver_version
    return env


def runtime_env(node: Node, settings: GpuSettings) -> dict[str, str]:
    return {
        "CONVECTHUB_NODE_NAME": node.name,
        "CONVECTHUB_TOOLKIT_REPO": settings.toolkit_repository.rstrip("/"),
        "CONVECTHUB_TOOLKIT_KEY_URL": settings.toolkit_key_url,
        "CONVECTHUB_BOOT_TIMEOUT": str(settings.reboot_timeout_seconds),
    }


def through_reboot(ssh: SshSettings, settings: GpuSettings) -> SshSettings:
    """The node's SSH settings, dialling for at least as long as a reboot may take."""
    attempts = max(
        ssh.dial_attempts or 0, -(-settings.reboot_timeout_seconds // REDIAL_PAUSE_SECONDS)
    )
    return ssh.model_copy(
        update={"dial_attempts": attempts, "dial_timeout_seconds": REBOOT_DIAL_SECONDS}
    )


@dataclass(frozen=True)
class GpuNodeArgs:
    node: BareMetalNode  # an accelerator node, its OS prepared
    settings: GpuSettings
    secrets: SecretSections = field(default_factory=SecretSections)  # the secret sections


class GpuNode(pulumi.ComponentResource):
    """The driver (and, for NVIDIA, the container runtime) of one accelerator node."""

    ready: pulumi.Resource  # the last step: the node's k3s install waits for it

    def __init__(self, name: str, args: GpuNodeArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(Component.GPU.type_token, name, None, opts)
        node = args.node
        model = node.model
        accelerator = accelerator_of(model)
        assert not accelerator.is_cpu
        secrets = args.secrets
        env, secret_env = secrets.split_env(
            driver_env(model, args.settings), DRIVER_SOURCES, default=("gpu",)
        )
        driver_step = ScriptStep(DRIVER_SCRIPT, env=env, secret_env=secret_env)
        self.driver = node.run_prepared(
            StepId(StepKind.GPU_DRIVER, model.name).resource_name,
            driver_step,
            parent=self,
            reversible=False,
        )
        self.ready = self.driver
        steps = [driver_step.describe().apply(lambda d: {"step": "gpu-driver", **d})]
        if accelerator.is_nvidia:
            env = runtime_env(model, args.settings)
            plain, secret = secrets.split_env(
                env, RUNTIME_SOURCES, default=("gpu",), secret=url_secrets(env, RUNTIME_URLS)
            )
            runtime_step = ScriptStep(RUNTIME_SCRIPT, env=plain, secret_env=secret)
            self.runtime = node.run_prepared(
                StepId(StepKind.GPU_RUNTIME, model.name).resource_name,
                runtime_step,
                parent=self,
                after=[self.driver],
                connection=connection_args(model.host, through_reboot(node.ssh, args.settings)),
            )
            self.ready = self.runtime
            steps.append(
                runtime_step.describe().apply(
                    lambda d: {"step": "gpu-runtime", "action": "apply", **d}
                )
            )
        self._steps = steps
        self.register_outputs({"vendor": secrets.wrap(accelerator.vendor, "nodes"), "steps": steps})
