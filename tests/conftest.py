"""Shared helpers: write a stack file for a site and render it under the recording mocks."""

from __future__ import annotations

import base64
import copy
import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from stacks.render import Rendering, evaluate
from stacks.stackfile import read_stack_file

PROJECT_DIR = Path(__file__).resolve().parent.parent
STANDINS = Path(__file__).resolve().parent / "standins"
# Tests that run a node script for real, as root, in a private mount namespace whose /etc,
# /usr/local/bin, /var/lib and /usr/share/keyrings are overlays (tests/standins/private-root.sh).
needs_private_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="runs node scripts as root in a private mount namespace (needs root and unshare)",
)
FAKE_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key-for-tests\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)


def three_node_site() -> dict[str, object]:
    """A small valid site: one server, two agents, one of them with a GPU."""
    return {
        "nodes": [
            {"name": "master", "host": "10.0.0.10", "roles": ["server"], "iface": "eth1"},
            {"name": "worker1", "host": "10.0.0.11", "roles": ["agent"]},
            {
                "name": "worker2",
                "host": "10.0.0.12",
                "roles": ["agent"],
                "gpu": {"vendor": "nvidia", "type": "A100", "installDriver": False},
                "labels": {"org": "public", "train": "true"},
                "taints": ["gpu=true:NoSchedule"],
            },
        ],
    }


def sample_host_key(name: str) -> str:
    """A well-formed ed25519 public host key, the same for the same name (no machine has it)."""
    blob = b""
    for part in (b"ssh-ed25519", hashlib.sha256(name.encode()).digest()):
        blob += len(part).to_bytes(4, "big") + part
    return f"ssh-ed25519 {base64.b64encode(blob).decode()}"


def pinned(values: dict[str, object]) -> dict[str, object]:
    """`values` with every node's host key pinned (a sample key per node name)."""
    for node in values["nodes"]:  # type: ignore[attr-defined]
        node.setdefault("ssh", {})["hostKey"] = sample_host_key(node["name"])
    return values


def write_stack_file(directory: Path, values: dict[str, object], stack: str = "test") -> Path:
    path = directory / f"Pulumi.{stack}.yaml"
    config = {f"convecthub:{key}": value for key, value in values.items()}
    path.write_text(yaml.safe_dump({"config": config}, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def site() -> dict[str, object]:
    return copy.deepcopy(three_node_site())


@pytest.fixture
def render(tmp_path: Path) -> Callable[[dict[str, object]], Rendering]:
    def render_values(values: dict[str, object]) -> Rendering:
        return evaluate(read_stack_file(write_stack_file(tmp_path, values)))

    return render_values


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "id_test"
    path.write_text(FAKE_KEY, encoding="utf-8")
    path.chmod(0o600)
    return path


def resources_by_name(rendering: Rendering) -> dict[str, dict]:
    return {resource["name"]: resource for resource in rendering.resources}


def name_of(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project directory for `python -m stacks` against the stand-in CLI: this project's
    Pulumi.yaml and a three-node site's stack file, Pulumi.site.yaml."""
    directory = tmp_path / "project"
    directory.mkdir()
    shutil.copy(PROJECT_DIR / "Pulumi.yaml", directory / "Pulumi.yaml")
    write_stack_file(directory, pinned(three_node_site()), stack="site")
    return directory
