"""What the program installs when a site names no version: the one table of defaults.

Every default version lives here and nowhere else (tests/test_defaults.py checks that no other
module or node script spells one). Each row says where its value comes from and until when
that release is supported, and the README shows the table (`markdown_table`). A site that
leaves `k3s.version` or `gpu.driverVersion` to its default is told so on every preview and up
(stacks/config/warnings.py), since a newer program moves the default; k3s-install.sh refuses
to move a node more than one Kubernetes minor at once (`upgrade_refusal` says the same in
Python).

How the values were chosen (checked 2026-12-01):
  k3s            the newest k3s patch release of the newest Kubernetes minor that upstream
                 supports and that has had patch releases: Kubernetes 1.37 came out on
                 2026-08-26 and has had 1.37.1 and 1.37.2; k3s published v1.37.2+k3s1 on
                 2026-11-03 (1.34 reached its end of life on 2026-10-27).
  driver         NVIDIA's Unix deprecation schedule says the 580 series is the last to support
                 Maxwell, Pascal and Volta GPUs: the seeds name the V100 (Volta) besides the T4
                 and A100, so no later branch drives all of them. NVIDIA's data center
                 documentation lists R580 as a long term support branch, with an end of life in
                 June 2028; Ubuntu 22.04 and 24.04 carry nvidia-headless-580-server and
                 nvidia-utils-580-server.
  device plugin  the newest release of NVIDIA's k8s-device-plugin chart (0.20.1, 2026-09);
                 its values.schema.json still has nodeSelector and gfd.enabled, the two values
                 components/device_plugin.py sets.
  hub            the newest zero-to-jupyterhub release (4.4.0, 2026-06-10): a security release
                 that upgrades JupyterHub to 5.5.0 and changes no chart value, so the values
                 components/hub.py sets (hub.cookieSecret, hub.config, proxy.secretToken,
                 proxy.service.type, proxy.https.*, proxy.chp.extraCommandLineFlags,
                 singleuser.profileList, singleuser.storage.*) are those of 4.3; the chart asks
                 for Kubernetes 1.32 or newer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

K3S_VERSION = "v1.37.2+k3s1"
NVIDIA_DRIVER_BRANCH = "580"
DEVICE_PLUGIN_CHART_VERSION = "0.20.1"
HUB_CHART_VERSION = "4.4.0"

K3S_RELEASES = "https://github.com/k3s-io/k3s/releases"
_K3S_RELEASE = re.compile(r"v(?P<major>[0-9]+)\.(?P<minor>[0-9]+)\.(?P<patch>[0-9]+)\+k3s[0-9]+")


def is_k3s_release(text: str) -> bool:
    return _K3S_RELEASE.fullmatch(text) is not None


def kubernetes_minor(k3s_version: str) -> tuple[int, int]:
    """The Kubernetes (major, minor) a k3s release carries: v1.37.2+k3s1 -> (1, 37)."""
    match = _K3S_RELEASE.fullmatch(k3s_version)
    if match is None:
        raise ValueError(f"{k3s_version!r} is not a k3s release such as vMAJOR.MINOR.PATCH+k3sN")
    return int(match["major"]), int(match["minor"])


def minor_text(minor: tuple[int, int]) -> str:
    return f"{minor[0]}.{minor[1]}"


KUBERNETES_MINOR = minor_text(kubernetes_minor(K3S_VERSION))


@dataclass(frozen=True)
class Default:
    """One row of the table."""

    key: str  # the stack config key a site pins it with ("" when none does)
    what: str
    value: str
    source: str  # where the value comes from
    supported_until: str


DEFAULTS: tuple[Default, ...] = (
    Default(
        "k3s.version",
        "k3s release",
        K3S_VERSION,
        f"k3s's releases ({K3S_RELEASES}): the newest patch of Kubernetes {KUBERNETES_MINOR}, "
        "published 2026-11-03",
        "as Kubernetes 1.37: 2027-10-28",
    ),
    Default(
        "",
        "Kubernetes minor",
        KUBERNETES_MINOR,
        "the k3s release's (it follows k3s.version); released 2026-08-26, patches 1.37.1 and "
        "1.37.2 (https://kubernetes.io/releases/1.37/)",
        "2027-10-28 (maintenance mode from 2027-08-28)",
    ),
    Default(
        "gpu.driverVersion",
        "NVIDIA driver branch (`nvidia-headless-<branch>-server`, `nvidia-utils-<branch>-server`)",
        NVIDIA_DRIVER_BRANCH,
        "NVIDIA: the last branch for Maxwell, Pascal and Volta (V100), a long term support "
        "branch; in Ubuntu 22.04 and 24.04",
        "June 2028 (NVIDIA's end of life for R580)",
    ),
    Default(
        "",
        "NVIDIA container toolkit",
        "not pinned",
        "the newest nvidia-container-toolkit of gpu.toolkitRepository when a node first gets it "
        "(1.20.0 when this table was checked); a node that has one keeps it",
        "NVIDIA fixes the newest release",
    ),
    Default(
        "gpu.devicePlugin.chartVersion",
        "NVIDIA device plugin chart (with GPU feature discovery)",
        DEVICE_PLUGIN_CHART_VERSION,
        "NVIDIA/k8s-device-plugin release v0.20.1 (https://nvidia.github.io/k8s-device-plugin)",
        "until its next release: NVIDIA fixes the newest one",
    ),
    Default(
        "hub.chartVersion",
        "JupyterHub chart (zero-to-jupyterhub)",
        HUB_CHART_VERSION,
        "zero-to-jupyterhub 4.4.0, 2026-06-10, JupyterHub 5.5.0 "
        "(https://hub.jupyter.org/helm-chart/)",
        "until its next release: fixes come as new 4.x releases",
    ),
    Default(
        "",
        "container images",
        "the charts' own",
        "the program pins no image: each chart runs the images of its version; the Ascend "
        "device plugin's image has no default (gpu.ascendDevicePlugin.image)",
        "as their charts",
    ),
)


def markdown_table() -> str:
    """The table as the README shows it."""
    lines = [
        "| Default | Value | Pin it with | Where it comes from | Supported until |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in DEFAULTS:
        key = f"`convecthub:{row.key}`" if row.key else "-"
        value = row.value if " " in row.value else f"`{row.value}`"
        lines.append(f"| {row.what} | {value} | {key} | {row.source} | {row.supported_until} |")
    return "\n".join(lines) + "\n"


def minors_between(running: tuple[int, int], target: tuple[int, int]) -> list[str]:
    """The minors a cluster passes through from `running` to `target`, both excluded."""
    return [minor_text((running[0], minor)) for minor in range(running[1] + 1, target[1])]


def upgrade_refusal(running: str, target: str) -> str | None:
    """Why k3s cannot go from `running` to `target` in one step (Kubernetes moves one minor at a
    time, and never back), as the end of a line that names the node; None when it can."""
    now, then = kubernetes_minor(running), kubernetes_minor(target)
    if now[0] != then[0] or then[1] < now[1]:
        return (
            f"runs k3s {running}, a later Kubernetes than the {target} convecthub:k3s.version "
            f"asks for, and k3s cannot go back a minor: set convecthub:k3s.version to a "
            f"v{minor_text(now)} release or later"
        )
    if then[1] - now[1] <= 1:
        return None
    steps = ", ".join(f"v{minor}" for minor in minors_between(now, then))
    return (
        f"runs k3s {running} and convecthub:k3s.version asks for {target}, "
        f"{then[1] - now[1]} minors on: Kubernetes upgrades one minor at a time, so set "
        f"convecthub:k3s.version to the newest release of {steps} in turn ({K3S_RELEASES}), "
        f"running pulumi up after each, then to {target}"
    )
