"""AscendDevicePlugin: Huawei's Ascend device plugin on the cluster, which makes
`huawei.com/Ascend910` (and the other Ascend chips) resources pods can ask for. A DaemonSet in
kube-system on the nodes labelled `npu=true` (the membership step's labels), with the service
account and cluster role it needs to report device health on its Node and to annotate the pods
it serves.

It runs without Ascend's Docker runtime (`-useAscendDocker=false`): the plugin hands the
device nodes to k3s's containerd itself. It mounts the driver the node already has
(gpu-driver.sh checks for it) read-only, from Huawei's default path.

Its resources were the stack's own: the account, role and binding keep their names under the
component, the DaemonSet (`ascend-device-plugin`) is `ascend-device-plugin-daemonset`, each
with an alias to its old URN.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as kubernetes

from components.steps import Component
from model.accelerator import ASCEND_RESOURCES, ASCEND_SELECTOR

NAME = "ascend-device-plugin"
NAMESPACE = "kube-system"
ROLE_NAME = "convecthub-ascend-device-plugin"
DRIVER_DIR = "/usr/local/Ascend/driver"
LOG_DIR = "/var/log/mindx-dl/devicePlugin"
KUBELET_DIR = "/var/lib/kubelet"


def ascend_cluster_role_rules() -> list[dict[str, object]]:
    """What the plugin reads and writes: its pods' device annotations, its node's status
    (device health) and the device-info config map it keeps per node."""
    return [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "update"]},
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["nodes/status"], "verbs": ["get", "patch"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create", "update"]},
    ]


def _host_path(name: str, path: str, kind: str | None = None) -> dict[str, object]:
    host_path: dict[str, object] = {"path": path}
    if kind:
        host_path["type"] = kind
    return {"name": name, "hostPath": host_path}


def ascend_daemonset_spec(image: pulumi.Input[str]) -> dict[str, object]:
    """The DaemonSet's spec: one plugin pod on each NPU node."""
    labels = {"app.kubernetes.io/name": NAME}
    container = {
        "name": "device-plugin",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["device-plugin"],
        "args": [
            "-useAscendDocker=false",
            f"-logFile={LOG_DIR}/devicePlugin.log",
            "-logLevel=0",
        ],
        "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
        "resources": {
            "requests": {"cpu": "500m", "memory": "500Mi"},
            "limits": {"cpu": "500m", "memory": "500Mi"},
        },
        "securityContext": {"privileged": True, "readOnlyRootFilesystem": True},
        "volumeMounts": [
            {"name": "device-plugins", "mountPath": f"{KUBELET_DIR}/device-plugins"},
            {"name": "pod-resources", "mountPath": f"{KUBELET_DIR}/pod-resources"},
            {"name": "driver", "mountPath": DRIVER_DIR, "readOnly": True},
            {"name": "log", "mountPath": LOG_DIR},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    # Sites taint their NPU nodes with the resources the plugin serves as keys: it tolerates them.
    tolerations = [{"key": "CriticalAddonsOnly", "operator": "Exists"}] + [
        {"key": key, "operator": "Exists", "effect": "NoSchedule"} for key in ASCEND_RESOURCES
    ]
    return {
        "selector": {"matchLabels": labels},
        "updateStrategy": {"type": "RollingUpdate"},
        "template": {
            "metadata": {"labels": labels},
            "spec": {
                "serviceAccountName": NAME,
                "priorityClassName": "system-node-critical",
                "nodeSelector": dict(ASCEND_SELECTOR),
                "tolerations": tolerations,
                "containers": [container],
                "volumes": [
                    _host_path("device-plugins", f"{KUBELET_DIR}/device-plugins"),
                    _host_path("pod-resources", f"{KUBELET_DIR}/pod-resources"),
                    _host_path("driver", DRIVER_DIR, "Directory"),
                    _host_path("log", LOG_DIR, "DirectoryOrCreate"),
                    _host_path("tmp", "/tmp"),
                ],
            },
        },
    }


@dataclass(frozen=True)
class AscendDevicePluginArgs:
    image: pulumi.Input[str]  # Huawei's ascend-k8sdeviceplugin, in the site's registry
    provider: kubernetes.Provider  # the cluster's
    after: Sequence[pulumi.Resource]  # the membership steps that label the Ascend nodes


class AscendDevicePlugin(pulumi.ComponentResource):
    """The plugin's service account, cluster role and binding, and its DaemonSet
    (`daemonset`). They were resources of the stack's own: each keeps an alias to its URN."""

    daemonset: kubernetes.apps.v1.DaemonSet

    def __init__(
        self, name: str, args: AscendDevicePluginArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__(Component.ASCEND_DEVICE_PLUGIN.type_token, name, None, opts)

        def options(old_name: str, *after: pulumi.Resource) -> pulumi.ResourceOptions:
            """A child's options: the cluster's provider, what it waits for, and its old URN
            (`old_name` at the top of the stack)."""
            return pulumi.ResourceOptions(
                parent=self,
                provider=args.provider,
                depends_on=[*args.after, *after],
                aliases=[pulumi.Alias(name=old_name, parent=pulumi.ROOT_STACK_RESOURCE)],
            )

        account = kubernetes.core.v1.ServiceAccount(
            f"{name}-account",
            metadata={"name": NAME, "namespace": NAMESPACE},
            opts=options(f"{NAME}-account"),
        )
        role = kubernetes.rbac.v1.ClusterRole(
            f"{name}-role",
            metadata={"name": ROLE_NAME},
            rules=ascend_cluster_role_rules(),
            opts=options(f"{NAME}-role"),
        )
        binding = kubernetes.rbac.v1.ClusterRoleBinding(
            f"{name}-binding",
            metadata={"name": ROLE_NAME},
            role_ref={
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": ROLE_NAME,
            },
            subjects=[{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}],
            opts=options(f"{NAME}-binding", role, account),
        )
        self.daemonset = kubernetes.apps.v1.DaemonSet(
            f"{name}-daemonset",
            metadata={"name": NAME, "namespace": NAMESPACE},
            spec=ascend_daemonset_spec(args.image),
            opts=options(NAME, binding),
        )
        self.register_outputs({})
