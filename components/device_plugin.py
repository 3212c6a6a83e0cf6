"""NvidiaDevicePlugin: the NVIDIA device plugin, with GPU feature discovery, as a Helm release
on the cluster: it makes `nvidia.com/gpu` a resource pods can ask for. It runs only on nodes
labelled `gpu=true` (the membership step's labels); the chart comes from its repository, or
from a local .tgz on an airgapped site.

The release was a resource of the stack's own, named `nvidia-device-plugin`: under the
component it is `nvidia-device-plugin-release`, with an alias to its old URN."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as kubernetes
from pulumi_kubernetes.helm import v3 as helm

from components.chart_source import chart_source
from components.steps import Component
from model.accelerator import NVIDIA_SELECTOR
from model.secrecy import has_credentials_in_url
from model.site import DevicePluginSettings

RELEASE_NAME = "nvidia-device-plugin"
NAMESPACE = "nvidia-device-plugin"
CHART = "nvidia-device-plugin"
TIMEOUT_SECONDS = 600


def device_plugin_values() -> dict[str, object]:
    """The chart values: GPU nodes only, and GPU feature discovery with it."""
    return {"nodeSelector": dict(NVIDIA_SELECTOR), "gfd": {"enabled": True}}


@dataclass(frozen=True)
class NvidiaDevicePluginArgs:
    settings: DevicePluginSettings
    provider: kubernetes.Provider  # the cluster's
    after: Sequence[pulumi.Resource]  # the membership steps that label the NVIDIA nodes
    secret: bool = False  # the gpu section is secret: so is where the chart comes from


class NvidiaDevicePlugin(pulumi.ComponentResource):
    """The device plugin's Helm release (`release`), on the nodes labelled gpu=true."""

    release: helm.Release

    def __init__(
        self, name: str, args: NvidiaDevicePluginArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__(Component.NVIDIA_DEVICE_PLUGIN.type_token, name, None, opts)
        settings, secret = args.settings, args.secret

        def hidden(value: str, own: bool = False) -> pulumi.Input[str]:
            """With `secret`, or `own` (a repository URL with credentials), a secret."""
            return pulumi.Output.secret(value) if secret or own else value

        source = chart_source(
            CHART,
            hidden(settings.chart_version),
            hidden(settings.repository, has_credentials_in_url(settings.repository)),
            settings.chart_file,
        )
        if settings.chart_file:
            source["chart"] = hidden(settings.chart_file)
        self.release = helm.Release(
            f"{name}-release",
            helm.ReleaseArgs(
                name=RELEASE_NAME,
                namespace=NAMESPACE,
                create_namespace=True,
                atomic=True,
                cleanup_on_fail=True,
                timeout=TIMEOUT_SECONDS,
                values=device_plugin_values(),
                **source,
            ),
            # The release was a resource of the stack's own, named as the Helm release is.
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=args.provider,
                depends_on=list(args.after),
                aliases=[pulumi.Alias(name=RELEASE_NAME, parent=pulumi.ROOT_STACK_RESOURCE)],
            ),
        )
        self.register_outputs({})
