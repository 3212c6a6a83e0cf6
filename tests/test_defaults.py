"""The table of defaults (model/defaults.py): the one place a default version lives, what the
model and the README take from it, and what a site that relies on a default is told."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from model import defaults
from model.defaults import (
    DEVICE_PLUGIN_CHART_VERSION,
    HUB_CHART_VERSION,
    K3S_VERSION,
    KUBERNETES_MINOR,
    NVIDIA_DRIVER_BRANCH,
    kubernetes_minor,
    markdown_table,
    upgrade_refusal,
)
from model.site import DevicePluginSettings, GpuSettings, HubSettings, K3sSettings
from tests.conftest import PROJECT_DIR

# Where the program's own code and node scripts live, and the sandbox and stand-ins that follow
# its defaults. Test modules hold test data (a site on an old release, say), not defaults.
CODE = (
    "model",
    "stacks",
    "components",
    "__main__.py",
    "tests/sandbox",
    "tests/standins",
)
# Any k3s release (v1.37.2+k3s1): none may be spelt outside the table.
K3S_RELEASE = re.compile(r"v[0-9]+\.[0-9]+\.[0-9]+\+k3s[0-9]+")
# A driver branch spelt as a package name or as a script's fallback value.
DRIVER_BRANCH = re.compile(r"nvidia-[a-z-]+-[0-9]{3}-server|DRIVER_VERSION:-[0-9]|such as [0-9]{3}")


def code_files() -> list[Path]:
    files = []
    for place in CODE:
        path = PROJECT_DIR / place
        candidates = [path] if path.is_file() else sorted(path.rglob("*"))
        files += [
            candidate
            for candidate in candidates
            if candidate.is_file()
            and "__pycache__" not in candidate.parts
            and candidate != PROJECT_DIR / "model" / "defaults.py"
        ]
    return files


def test_the_model_takes_its_defaults_from_the_table() -> None:
    assert K3sSettings().version == K3S_VERSION
    assert GpuSettings().driver_version == NVIDIA_DRIVER_BRANCH
    assert DevicePluginSettings().chart_version == DEVICE_PLUGIN_CHART_VERSION
    assert HubSettings().chart_version == HUB_CHART_VERSION
    assert KUBERNETES_MINOR == "1.37" == "{}.{}".format(*kubernetes_minor(K3S_VERSION))
    pinned = {row.key: row.value for row in defaults.DEFAULTS if row.key}
    assert pinned == {
        "k3s.version": K3S_VERSION,
        "gpu.driverVersion": NVIDIA_DRIVER_BRANCH,
        "gpu.devicePlugin.chartVersion": DEVICE_PLUGIN_CHART_VERSION,
        "hub.chartVersion": HUB_CHART_VERSION,
    }
    for row in defaults.DEFAULTS:
        assert row.source and row.supported_until, row.what


def test_no_other_module_spells_a_default_version() -> None:
    quoted = [
        f"{quote}{value}{quote}"
        for value in (NVIDIA_DRIVER_BRANCH, DEVICE_PLUGIN_CHART_VERSION, HUB_CHART_VERSION)
        for quote in "\"'"
    ]
    found = []
    files = code_files()
    assert len(files) > 40  # the scan reaches the modules and scripts
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        where = path.relative_to(PROJECT_DIR)
        found += [f"{where}: {match}" for match in K3S_RELEASE.findall(text)]
        found += [f"{where}: {match}" for match in DRIVER_BRANCH.findall(text)]
        found += [f"{where}: {literal}" for literal in quoted if literal in text]
    assert found == []


def test_the_readme_shows_the_table() -> None:
    readme = (PROJECT_DIR / "README.md").read_text(encoding="utf-8")
    assert markdown_table() in readme
    assert f"| k3s release | `{K3S_VERSION}` | `convecthub:k3s.version` |" in readme


@pytest.mark.parametrize(
    ("running", "target"),
    [
        ("v1.36.4+k3s1", "v1.37.2+k3s1"),  # one minor on
        ("v1.37.0+k3s1", "v1.37.2+k3s1"),  # a patch
        ("v1.37.2+k3s1", "v1.37.2+k3s2"),  # a k3s revision
        ("v1.37.2+k3s1", "v1.37.2+k3s1"),
    ],
)
def test_one_minor_at_a_time_is_a_path(running: str, target: str) -> None:
    assert upgrade_refusal(running, target) is None


def test_a_jump_of_several_minors_names_each_one_between() -> None:
    assert upgrade_refusal("v1.31.4+k3s1", "v1.37.2+k3s1") == (
        "runs k3s v1.31.4+k3s1 and convecthub:k3s.version asks for v1.37.2+k3s1, 6 minors on: "
        "Kubernetes upgrades one minor at a time, so set convecthub:k3s.version to the newest "
        "release of v1.32, v1.33, v1.34, v1.35, v1.36 in turn "
        "(https://github.com/k3s-io/k3s/releases), running pulumi up after each, then to "
        "v1.37.2+k3s1"
    )


def test_going_back_a_minor_is_refused() -> None:
    assert upgrade_refusal("v1.37.2+k3s1", "v1.36.4+k3s1") == (
        "runs k3s v1.37.2+k3s1, a later Kubernetes than the v1.36.4+k3s1 convecthub:k3s.version "
        "asks for, and k3s cannot go back a minor: set convecthub:k3s.version to a v1.37 "
        "release or later"
    )
