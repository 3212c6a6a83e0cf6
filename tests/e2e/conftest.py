"""The sandbox fleet for end-to-end tests: a fresh fleet per test, torn down also on failure."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from model.site import DEFAULT_K3S_VERSION
from stacks.stackfile import StackFile, read_stack_file
from tests.sandbox.deployment import Deployment
from tests.sandbox.fleet import SUDO_USER, SandboxFleet, unavailable_reason
from tests.sandbox.k3s_bundle import airgapped_gpu_settings, build_bundle, standin_hub_chart

NODE_NAMES = ("master", "worker1", "worker2")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    reason = unavailable_reason()
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def fleet() -> Iterator[SandboxFleet]:
    """node1..node3; node2 carries a stand-in GPU."""
    with SandboxFleet(3, accelerators={"node2": "nvidia"}) as booted:
        yield booted


def sandbox_site(fleet: SandboxFleet, k3s_version: str = DEFAULT_K3S_VERSION) -> dict:
    """master (server) on node1, worker1 (agent, GPU) on node2, worker2 (agent) on node3;
    k3s from the stand-in airgap bundle (the sandbox has no internet), and a registry mirror
    so that every node gets a registries.yaml. Each node's real host key is pinned (the
    default hostKeyPolicy, pinned), and the stand-in provider checks it on every dial."""
    node1, node2, node3 = fleet.nodes
    for arch in ("amd64", "arm64"):  # arm64 too: a test declares a node of the wrong arch
        bundle = build_bundle(fleet.work_dir / "k3s-bundle", k3s_version, arch)
    return {
        # Three dials, not pulumi-command's ten: the failure tests need not wait that long.
        "convecthub:ssh": {
            "user": SUDO_USER,
            "privateKeyFile": str(fleet.key_file),
            "dialAttempts": 3,
        },
        "convecthub:nodes": [
            {
                "name": "master",
                "host": node1.address,
                "ssh": {"hostKey": node1.host_key},
                "roles": ["server"],
                "iface": "host0",
            },
            {
                "name": "worker1",
                "host": node2.address,
                "ssh": {"hostKey": node2.host_key},
                "roles": ["agent"],
                # Its driver "came preinstalled" (the sandbox's nvidia-smi stand-in answers).
                "gpu": {"vendor": "nvidia", "type": "A100", "installDriver": False},
                "labels": {"org": "public"},
            },
            {
                "name": "worker2",
                "host": node3.address,
                "ssh": {"hostKey": node3.host_key},
                "roles": ["agent"],
            },
        ],
        "convecthub:os": {"aptProxy": fleet.apt_proxy, "ntpServers": [fleet.gateway]},
        "convecthub:k3s": {"version": k3s_version},
        "convecthub:gpu": airgapped_gpu_settings(fleet.gateway, fleet.work_dir),
        "convecthub:hub": {"chartFile": str(standin_hub_chart(fleet.work_dir))},
        "convecthub:registry": {
            "bundleDir": str(bundle),
            "mirrors": {"docker.io": [f"http://{fleet.gateway}:5000"]},
        },
    }


@pytest.fixture
def stack_file(tmp_path: Path) -> Callable[[dict], StackFile]:
    def write(config: dict) -> StackFile:
        path = tmp_path / "Pulumi.sandbox.yaml"
        path.write_text(yaml.safe_dump({"config": config}, sort_keys=False))
        return read_stack_file(path)

    return write


@pytest.fixture
def deployment() -> Deployment:
    return Deployment()
