"""Bring up the sandbox fleet and the program on it, to look inside the nodes by hand.

    sudo .venv/bin/python -m tests.sandbox [--nodes 3]

Boots the nodes, runs `up` for a site of one server and agents (node2 with a stand-in GPU),
prints how to log in to each node, and tears everything down on Enter or Ctrl-C.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path

import yaml

from model.site import DEFAULT_K3S_VERSION
from stacks.stackfile import read_stack_file
from tests.sandbox.deployment import CommandError, Deployment
from tests.sandbox.fleet import SUDO_USER, SandboxFleet, SandboxUnavailableError
from tests.sandbox.k3s_bundle import airgapped_gpu_settings, build_bundle, standin_hub_chart


def demo_site(fleet: SandboxFleet) -> dict:
    nodes = []
    for index, node in enumerate(fleet.nodes):
        entry = {
            "name": "master" if index == 0 else f"worker{index}",
            "host": node.address,
            "ssh": {"hostKey": node.host_key},  # its real key, pinned (hostKeyPolicy: pinned)
            "roles": ["server"] if index == 0 else ["agent"],
        }
        if node.accelerator == "nvidia":
            # Its driver "came preinstalled": the sandbox's nvidia-smi stand-in answers.
            entry["gpu"] = {"vendor": "nvidia", "type": "A100", "installDriver": False}
        nodes.append(entry)
    return {
        "config": {
            "convecthub:ssh": {"user": SUDO_USER, "privateKeyFile": str(fleet.key_file)},
            "convecthub:nodes": nodes,
            "convecthub:os": {"aptProxy": fleet.apt_proxy},
            # k3s from the stand-in airgap bundle: the sandbox has no internet.
            "convecthub:registry": {
                "bundleDir": str(build_bundle(fleet.work_dir / "k3s-bundle", DEFAULT_K3S_VERSION))
            },
            "convecthub:gpu": airgapped_gpu_settings(fleet.gateway, fleet.work_dir),
            "convecthub:hub": {"chartFile": str(standin_hub_chart(fleet.work_dir))},
        }
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sandbox", description=__doc__)
    parser.add_argument("--nodes", type=int, default=3, choices=range(1, 10))
    args = parser.parse_args()
    try:
        with SandboxFleet(args.nodes, accelerators={"node2": "nvidia"}) as fleet:
            print(f"booted {args.nodes} node(s); running `up` (stand-in k3s)...", flush=True)
            with tempfile.TemporaryDirectory() as directory:
                stack = Path(directory) / "Pulumi.sandbox.yaml"
                stack.write_text(yaml.safe_dump(demo_site(fleet), sort_keys=False))
                deployment = Deployment()
                try:
                    deployment.up(read_stack_file(stack))
                    print(f"up ran {len(deployment.commands)} command(s)")
                except CommandError as error:
                    print(f"up failed: {error}")
                for node in fleet.nodes:
                    print(f"  {node.name}: {shlex.join(fleet.ssh_command(node, SUDO_USER))}")
                input("press Enter to tear the fleet down ")
    except SandboxUnavailableError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, EOFError):
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
