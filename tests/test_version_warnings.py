"""A site that relies on a default version is told, once per preview and up, what it will run
and how to pin it; the examples and the import pin theirs; the dev stack renders a supported
Kubernetes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from model.defaults import (
    DEVICE_PLUGIN_CHART_VERSION,
    HUB_CHART_VERSION,
    K3S_VERSION,
    NVIDIA_DRIVER_BRANCH,
    kubernetes_minor,
)
from stacks.config import load_site
from stacks.render import evaluate, format_text
from stacks.stackfile import read_stack_file
from tests.conftest import PROJECT_DIR, three_node_site

K3S_NOTICE = (
    f"convecthub:k3s.version is not set, so this site runs k3s {K3S_VERSION}, this "
    "program's default, which a newer program moves: pin it with "
    f"convecthub:k3s: {{version: {K3S_VERSION}}}"
)
DRIVER_NOTICE = (
    "convecthub:gpu.driverVersion is not set, so the NVIDIA nodes that get their driver here "
    f"(installDriver) install branch {NVIDIA_DRIVER_BRANCH}, this program's default, which a "
    f'newer program moves: pin it with convecthub:gpu: {{driverVersion: "{NVIDIA_DRIVER_BRANCH}"}}'
)

HUB_CHART_NOTICE = (
    "convecthub:hub.chartVersion is not set, so this site installs the JupyterHub chart "
    f"{HUB_CHART_VERSION}, this program's default, which a newer program moves: pin it with "
    f"convecthub:hub: {{chartVersion: {HUB_CHART_VERSION}}}"
)
PLUGIN_CHART_NOTICE = (
    "convecthub:gpu.devicePlugin.chartVersion is not set, so this site installs the NVIDIA "
    f"device plugin chart {DEVICE_PLUGIN_CHART_VERSION}, this program's default, which a newer "
    "program moves: pin it with convecthub:gpu: {devicePlugin: {chartVersion: "
    f"{DEVICE_PLUGIN_CHART_VERSION}}}}}"
)


def charts_pinned(values: dict) -> dict:
    """`values` (which has NVIDIA nodes) with both charts' versions pinned."""
    values["hub"] = {"chartVersion": HUB_CHART_VERSION}
    values["gpu"] = {"devicePlugin": {"chartVersion": DEVICE_PLUGIN_CHART_VERSION}}
    return values


def test_a_site_on_the_default_k3s_is_told_once_how_to_pin_it() -> None:
    loaded = load_site(charts_pinned(three_node_site()))
    assert loaded.version_warnings == (K3S_NOTICE,)
    values = charts_pinned(three_node_site())
    values["k3s"] = {"version": K3S_VERSION}
    assert load_site(values).version_warnings == ()


def test_a_site_that_installs_drivers_on_the_default_branch_is_told_too() -> None:
    values = charts_pinned(three_node_site())
    values["k3s"] = {"version": K3S_VERSION}
    values["nodes"][2]["gpu"]["installDriver"] = True  # type: ignore[index]
    assert load_site(values).version_warnings == (DRIVER_NOTICE,)
    values["gpu"]["driverVersion"] = NVIDIA_DRIVER_BRANCH  # type: ignore[index]
    assert load_site(values).version_warnings == ()


def test_a_site_on_the_default_charts_is_told_how_to_pin_them() -> None:
    """Moving a chart's default would upgrade a site's release without a word: it is told."""
    values = three_node_site()
    values["k3s"] = {"version": K3S_VERSION}
    assert load_site(values).version_warnings == (HUB_CHART_NOTICE, PLUGIN_CHART_NOTICE)
    values["hub"] = {"chartVersion": "4.3.3"}  # a site may stay on an older chart
    assert load_site(values).version_warnings == (PLUGIN_CHART_NOTICE,)
    for node in values["nodes"]:  # type: ignore[attr-defined]
        node.pop("gpu", None)  # no NVIDIA node: no device plugin to pin
    assert load_site(values).version_warnings == ()


def test_the_warning_is_in_the_render(tmp_path: Path) -> None:
    from tests.conftest import write_stack_file

    text = format_text(evaluate(read_stack_file(write_stack_file(tmp_path, three_node_site()))))
    assert text.splitlines().count(f"  warning: {K3S_NOTICE}") == 1


@pytest.mark.parametrize(
    "stack_file",
    ["Pulumi.dev.yaml", "examples/Pulumi.seed-vagrant.yaml"],
)
def test_the_examples_pin_their_versions(stack_file: str) -> None:
    config = yaml.safe_load((PROJECT_DIR / stack_file).read_text())["config"]
    assert config["convecthub:k3s"]["version"] == K3S_VERSION
    nodes = config["convecthub:nodes"]
    if any(node.get("gpu", {}).get("installDriver", True) for node in nodes if "gpu" in node):
        assert config["convecthub:gpu"]["driverVersion"] == NVIDIA_DRIVER_BRANCH
    assert config["convecthub:hub"]["chartVersion"] == HUB_CHART_VERSION
    if any("gpu" in node for node in nodes):
        plugin = config["convecthub:gpu"]["devicePlugin"]
        assert plugin["chartVersion"] == DEVICE_PLUGIN_CHART_VERSION


def test_the_dev_stack_renders_a_supported_kubernetes() -> None:
    rendering = evaluate(read_stack_file(PROJECT_DIR / "Pulumi.dev.yaml"))
    assert rendering.loaded.version_warnings == ()
    server = rendering.components("K3sServer")["local-k3s"]
    k3s = next(step for step in rendering.outputs[server["urn"]]["steps"] if step["step"] == "k3s")
    assert k3s["env"]["CONVECTHUB_K3S_VERSION"] == K3S_VERSION
    assert kubernetes_minor(k3s["env"]["CONVECTHUB_K3S_VERSION"]) == (1, 37)


def test_an_imported_site_pins_its_versions(capsys) -> None:
    from stacks.__main__ import main
    from tests.test_import_inventory import SEED_INVENTORY

    assert main(["import-inventory", str(SEED_INVENTORY)]) == 0
    config = yaml.safe_load(capsys.readouterr().out)["config"]
    assert config["convecthub:k3s"] == {"version": K3S_VERSION}
    assert config["convecthub:gpu"] == {
        "driverVersion": NVIDIA_DRIVER_BRANCH,
        "devicePlugin": {"chartVersion": DEVICE_PLUGIN_CHART_VERSION},
    }
    assert config["convecthub:hub"]["chartVersion"] == HUB_CHART_VERSION
