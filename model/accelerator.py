"""What accelerator a node carries, and everything that follows from it: its vendor and type,
the resource pods ask for, the labels the node gets and the hub and device plugins select it
by. Decided here once; the components, the config checks and the cluster read it.

The labels follow cube-studio's scheme: gpu=true (npu=true for an Ascend NPU) and
gpu-type=<model> on accelerator nodes, cpu=true on the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from model.site import Node

Vendor = Literal["nvidia", "ascend"]

NVIDIA_RESOURCE = "nvidia.com/gpu"
# The resources Huawei's device plugin offers, one per Ascend chip it serves (910 by default).
# Sites taint their NPU nodes with these as keys, so the plugin tolerates them.
ASCEND_910 = "huawei.com/Ascend910"
ASCEND_310 = "huawei.com/Ascend310"
ASCEND_310P = "huawei.com/Ascend310P"
ASCEND_RESOURCES = (ASCEND_910, ASCEND_310, ASCEND_310P)
# The label that says what a node carries, and the one naming its accelerator's model.
GPU_LABEL = "gpu"
NPU_LABEL = "npu"
CPU_LABEL = "cpu"
TYPE_LABEL = "gpu-type"
# What the NVIDIA and Ascend device plugins select their nodes by.
NVIDIA_SELECTOR = {GPU_LABEL: "true"}
ASCEND_SELECTOR = {NPU_LABEL: "true"}
# The container runtime NVIDIA's container toolkit installs (the GPU layer), which k3s and Docker
# make their default on an NVIDIA node.
NVIDIA_RUNTIME = "nvidia"
VENDOR_NAMES = {"nvidia": "NVIDIA", "ascend": "Ascend"}


def ascend_resource(chip: str | None) -> str:
    """The resource Huawei's device plugin offers for an Ascend chip type (910 by default)."""
    name = (chip or "").upper()
    if name.startswith("310P"):
        return ASCEND_310P
    if name.startswith("310"):
        return ASCEND_310
    return ASCEND_910


@dataclass(frozen=True)
class Accelerator:
    """A node's accelerator; `vendor` None for a CPU-only node."""

    vendor: Vendor | None = None
    type: str | None = None  # the model, e.g. A100 or 910B
    install_driver: bool = False  # NVIDIA: the driver is installed here

    @property
    def is_nvidia(self) -> bool:
        return self.vendor == "nvidia"

    @property
    def is_ascend(self) -> bool:
        return self.vendor == "ascend"

    @property
    def is_cpu(self) -> bool:
        return self.vendor is None

    @property
    def kind(self) -> str:
        """GPU, NPU or CPU, as people say it."""
        return {"nvidia": "GPU", "ascend": "NPU"}.get(self.vendor or "", "CPU")

    @property
    def vendor_name(self) -> str | None:
        """NVIDIA or Ascend, as the vendors spell themselves (None on a CPU node)."""
        return VENDOR_NAMES.get(self.vendor or "")

    @property
    def default_runtime(self) -> str | None:
        """The container runtime k3s and Docker run every container on here (None: their own)."""
        return NVIDIA_RUNTIME if self.is_nvidia else None

    @property
    def resource(self) -> str | None:
        """The resource a pod asks for to get one (None on a CPU node)."""
        if self.is_nvidia:
            return NVIDIA_RESOURCE
        if self.is_ascend:
            return ascend_resource(self.type)
        return None

    @property
    def labels(self) -> dict[str, str]:
        """The labels that say what the node carries (the hub selects nodes by them)."""
        if self.is_cpu:
            return {CPU_LABEL: "true"}
        labels = {NPU_LABEL if self.is_ascend else GPU_LABEL: "true"}
        if self.type:
            labels[TYPE_LABEL] = self.type
        return labels


def accelerator_of(node: Node) -> Accelerator:
    if node.gpu is None:
        return Accelerator()
    return Accelerator(node.gpu.vendor, node.gpu.type, node.gpu.install_driver)
