"""The NVIDIA device plugin, with GPU feature discovery, as a Helm release on the cluster:
it makes `nvidia.com/gpu` a resource pods can ask for. It runs only on nodes labelled
`gpu=true` (the membership step's labels); the chart comes from its repository, or from a
local .tgz on an airgapped site."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_kubernetes as kubernetes
from pulumi_kubernetes.helm import v3 as helm

from components.chart_source import chart_source
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


def nvidia_device_plugin(
    settings: DevicePluginSettings,
    provider: kubernetes.Provider,
    depends_on: Sequence[pulumi.Resource],
    secret: bool = False,
) -> helm.Release:
    """The release; with `secret` (the gpu section is secret) where its chart comes from is a
    secret, as is a repository URL with credentials in it."""

    def hidden(value: str, own: bool = False) -> pulumi.Input[str]:
        return pulumi.Output.secret(value) if secret or own else value

    source = chart_source(
        CHART,
        hidden(settings.chart_version),
        hidden(settings.repository, has_credentials_in_url(settings.repository)),
        settings.chart_file,
    )
    if settings.chart_file:
        source["chart"] = hidden(settings.chart_file)
    return helm.Release(
        RELEASE_NAME,
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
        opts=pulumi.ResourceOptions(provider=provider, depends_on=list(depends_on)),
    )
