"""The GPU layer in the graph, for a mixed site modelled on DLWS: an arm64 server with an
Ascend NPU, amd64 agents with NVIDIA GPUs (one with its driver preinstalled), a CPU agent."""

from __future__ import annotations

import pytest
import yaml

from components.gpu import REBOOT_DIAL_SECONDS, REDIAL_PAUSE_SECONDS, through_reboot
from stacks.config import ConfigError, load_site
from stacks.render import format_text
from tests.conftest import name_of, resources_by_name

ASCEND_IMAGE = "10.0.0.1:5000/ascend-k8sdeviceplugin:v6.0.0"


def mixed_site() -> dict:
    return {
        "nodes": [
            {
                "name": "npu-server",
                "host": "10.0.0.1",
                "roles": ["server"],
                "arch": "arm64",
                "gpu": {"vendor": "ascend", "type": "910B"},
            },
            {
                "name": "gpu1",
                "host": "10.0.0.2",
                "roles": ["agent"],
                "gpu": {"vendor": "nvidia", "type": "A100"},
            },
            {
                "name": "gpu2",
                "host": "10.0.0.3",
                "roles": ["agent"],
                "gpu": {"vendor": "nvidia", "type": "V100", "installDriver": False},
            },
            {"name": "cpu1", "host": "10.0.0.4", "roles": ["agent"]},
        ],
        "gpu": {
            "driverVersion": "535",
            "toolkitRepository": "http://mirror.site/nvidia/",
            "ascendDevicePlugin": {"image": ASCEND_IMAGE},
        },
    }


def config_error(values: dict) -> str:
    """The one line loading this config fails with."""
    with pytest.raises(ConfigError) as raised:
        load_site(values)
    return str(raised.value)


def depends(resource: dict) -> set[str]:
    return {name_of(urn) for urn in resource["dependencies"]}


def test_the_gpu_layer_is_exactly_on_accelerator_nodes(render) -> None:
    resources = resources_by_name(render(mixed_site()))
    components = {r["name"] for r in resources.values() if r["type"] == "convecthub:infra:GpuNode"}
    assert components == {"npu-server-gpu", "gpu1-gpu", "gpu2-gpu"}
    gpu_steps = {name for name in resources if "-gpu-" in name}
    assert gpu_steps == {
        "npu-server-gpu-driver",  # Ascend: the driver check only
        "gpu1-gpu-driver",
        "gpu1-gpu-runtime",
        "gpu2-gpu-driver",
        "gpu2-gpu-runtime",
    }
    assert resources["gpu1-gpu"]["parent"] == resources["gpu1"]["urn"]


def test_gpu_steps_run_after_os_prep_and_before_k3s(render) -> None:
    resources = resources_by_name(render(mixed_site()))
    assert "gpu1-os-prep" in depends(resources["gpu1-gpu-driver"])
    assert "gpu1-gpu-driver" in depends(resources["gpu1-gpu-runtime"])
    assert "gpu1-gpu-runtime" in depends(resources["gpu1-k3s-install"])
    assert "npu-server-gpu-driver" in depends(resources["npu-server-k3s-install"])
    assert not any("-gpu-" in name for name in depends(resources["cpu1-k3s-install"]))
    driver = resources["gpu1-gpu-driver"]["inputs"]
    assert driver["create"] == "/bin/bash -s  # gpu-driver.sh"
    assert "delete" not in driver  # drivers stay
    assert (
        resources["gpu1-gpu-runtime"]["inputs"]["delete"] == "/bin/bash -s remove  # gpu-runtime.sh"
    )


def step_env(rendering, component: str, step: int) -> dict[str, str]:
    resources = resources_by_name(rendering)
    return rendering.outputs[resources[component]["urn"]]["steps"][step]["env"]


def test_what_each_gpu_step_is_told(render) -> None:
    rendering = render(mixed_site())
    assert step_env(rendering, "gpu1-gpu", 0) == {
        "CONVECTHUB_NODE_NAME": "gpu1",
        "CONVECTHUB_GPU_VENDOR": "nvidia",
        "CONVECTHUB_INSTALL_DRIVER": "true",
        "CONVECTHUB_DRIVER_VERSION": "535",
    }
    assert step_env(rendering, "gpu2-gpu", 0)["CONVECTHUB_INSTALL_DRIVER"] == "false"
    assert "CONVECTHUB_DRIVER_VERSION" not in step_env(rendering, "gpu2-gpu", 0)
    assert step_env(rendering, "npu-server-gpu", 0) == {
        "CONVECTHUB_NODE_NAME": "npu-server",
        "CONVECTHUB_GPU_VENDOR": "ascend",
    }
    assert step_env(rendering, "gpu1-gpu", 1) == {
        "CONVECTHUB_NODE_NAME": "gpu1",
        "CONVECTHUB_TOOLKIT_REPO": "http://mirror.site/nvidia",
        "CONVECTHUB_TOOLKIT_KEY_URL": "https://nvidia.github.io/libnvidia-container/gpgkey",
        "CONVECTHUB_BOOT_TIMEOUT": "900",
    }


def test_nvidia_nodes_run_pods_on_the_nvidia_runtime_by_default(render) -> None:
    rendering = render(mixed_site())
    configs = {
        name: yaml.safe_load(step_env(rendering, f"{name}-k3s", 0)["CONVECTHUB_K3S_CONFIG"])
        for name in ("npu-server", "gpu1", "gpu2", "cpu1")
    }
    assert configs["gpu1"]["default-runtime"] == configs["gpu2"]["default-runtime"] == "nvidia"
    assert "default-runtime" not in configs["cpu1"]
    assert "default-runtime" not in configs["npu-server"]


def test_the_render_shows_the_gpu_layer_between_os_prep_and_k3s(render) -> None:
    text = format_text(render(mixed_site()))
    block = text.split("\ngpu1  ")[1].split("\ngpu2  ")[0]
    steps = [line.split()[1] for line in block.splitlines() if line[:4].strip().endswith(".")]
    assert steps == ["facts", "os-prep", "gpu-driver", "gpu-runtime", "k3s", "membership"]


def test_the_runtime_step_keeps_dialling_through_a_reboot() -> None:
    site = load_site(mixed_site()).site
    ssh = through_reboot(site.ssh_for(site.nodes[1]), site.gpu)
    assert ssh.dial_timeout_seconds == REBOOT_DIAL_SECONDS
    # Dials refused at once are 5 s apart: enough of them to span the whole reboot timeout.
    assert ssh.dial_attempts * REDIAL_PAUSE_SECONDS >= site.gpu.reboot_timeout_seconds
    assert ssh.dial_attempts == 180


def test_the_device_plugin_is_released_for_nvidia_nodes_through_the_cluster(render) -> None:
    resources = resources_by_name(render(mixed_site()))
    release = resources["nvidia-device-plugin-release"]
    assert release["type"] == "kubernetes:helm.sh/v3:Release"
    inputs = release["inputs"]
    assert inputs["chart"] == "nvidia-device-plugin"
    assert inputs["version"] == "0.20.1"
    assert inputs["repositoryOpts"] == {"repo": "https://nvidia.github.io/k8s-device-plugin"}
    assert inputs["namespace"] == "nvidia-device-plugin"
    assert inputs["createNamespace"] is True and inputs["atomic"] is True
    assert inputs["values"] == {"nodeSelector": {"gpu": "true"}, "gfd": {"enabled": True}}
    assert depends(release) >= {"gpu1-k3s-membership", "gpu2-k3s-membership"}
    assert "npu-server-k3s-membership" not in depends(release)
    assert release["provider"] == resources["cluster"]["urn"]


def test_an_airgapped_site_releases_the_chart_from_its_file(render, tmp_path) -> None:
    chart = tmp_path / "nvidia-device-plugin-0.17.0.tgz"
    chart.write_bytes(b"stand-in chart archive")
    values = mixed_site()
    values["gpu"]["devicePlugin"] = {"chartFile": str(chart)}
    inputs = resources_by_name(render(values))["nvidia-device-plugin-release"]["inputs"]
    assert inputs["chart"] == str(chart)
    assert "repositoryOpts" not in inputs


def test_no_device_plugin_without_nvidia_gpus(render) -> None:
    values = mixed_site()
    values["nodes"] = [values["nodes"][0], values["nodes"][3]]
    names = set(resources_by_name(render(values)))
    assert not {"nvidia-device-plugin", "nvidia-device-plugin-release"} & names  # its component too


def test_the_ascend_device_plugin_runs_on_npu_nodes_through_the_cluster(render) -> None:
    from components.ascend_device_plugin import ascend_cluster_role_rules

    resources = resources_by_name(render(mixed_site()))
    daemonset = resources["ascend-device-plugin-daemonset"]
    assert daemonset["type"] == "kubernetes:apps/v1:DaemonSet"
    assert daemonset["inputs"]["metadata"] == {
        "name": "ascend-device-plugin",
        "namespace": "kube-system",
    }
    pod = daemonset["inputs"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"npu": "true"}
    assert pod["serviceAccountName"] == "ascend-device-plugin"
    (container,) = pod["containers"]
    assert container["image"] == ASCEND_IMAGE
    assert "-useAscendDocker=false" in container["args"]  # k3s's containerd, no Ascend runtime
    volumes = {v["name"]: v["hostPath"] for v in pod["volumes"]}
    assert volumes["driver"] == {"path": "/usr/local/Ascend/driver", "type": "Directory"}
    assert volumes["device-plugins"] == {"path": "/var/lib/kubelet/device-plugins"}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["driver"]["readOnly"] is True
    # It waits for the NPU node's labels, and for the account its pods run as.
    assert "npu-server-k3s-membership" in depends(daemonset)
    assert "ascend-device-plugin-binding" in depends(daemonset)
    assert not depends(daemonset) & {"gpu1-k3s-membership", "gpu2-k3s-membership"}
    binding = resources["ascend-device-plugin-binding"]["inputs"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "ascend-device-plugin", "namespace": "kube-system"}
    ]
    assert (
        binding["roleRef"]["name"]
        == resources["ascend-device-plugin-role"]["inputs"]["metadata"]["name"]
    )
    assert resources["ascend-device-plugin-role"]["inputs"]["rules"] == ascend_cluster_role_rules()
    for name in ("ascend-device-plugin-daemonset", "ascend-device-plugin-binding"):
        assert resources[name]["provider"] == resources["cluster"]["urn"]


def test_no_ascend_device_plugin_without_ascend_npus(render) -> None:
    values = mixed_site()
    del values["nodes"][0]["gpu"]
    names = set(resources_by_name(render(values)))
    assert not {name for name in names if name.startswith("ascend-device-plugin")}


def test_ascend_nodes_need_the_device_plugin_image() -> None:
    values = mixed_site()
    del values["gpu"]["ascendDevicePlugin"]
    assert config_error(values) == (
        "convecthub:gpu.ascendDevicePlugin.image: the site has Ascend nodes (npu-server) but "
        "no image for their device plugin: put Huawei's ascend-k8sdeviceplugin in the site's "
        "registry (or in the airgap bundle's images/<arch>/) and set image to its reference"
    )
    values["gpu"]["ascendDevicePlugin"] = {"image": "http://registry/plugin"}
    assert config_error(values).startswith(
        "convecthub:gpu.ascendDevicePlugin.image: 'http://registry/plugin' is not an image "
        "reference"
    )


def airgapped_gpu_site(tmp_path) -> dict:
    from tests.test_k3s import make_bundle

    values = mixed_site()
    values["nodes"][0]["arch"] = "amd64"
    values["registry"] = {"bundleDir": str(make_bundle(tmp_path / "bundle"))}
    return values


def test_an_airgapped_site_must_name_its_mirrors_for_gpu_nodes(tmp_path) -> None:
    values = airgapped_gpu_site(tmp_path)
    values["gpu"] = {}
    assert config_error(values) == (
        "convecthub:gpu.toolkitRepository: the site is airgapped (registry.bundleDir) but its "
        "NVIDIA nodes would fetch the container toolkit from "
        "https://nvidia.github.io/libnvidia-container/stable/deb: set toolkitRepository and "
        "toolkitKeyUrl to the site's mirror of it"
    )
    values["gpu"] = {
        "toolkitRepository": "http://mirror.site/nvidia",
        "toolkitKeyUrl": "http://mirror.site/nvidia/gpgkey",
    }
    assert config_error(values).startswith("convecthub:gpu.devicePlugin.chartFile: the site is ")


def test_an_airgapped_gpu_site_reaches_for_nothing_outside(render, tmp_path) -> None:
    """No step of an airgapped site (with Docker too) is told a place outside it: every URL in
    any step's environment or any resource's inputs is the site's own mirror or address (the
    scripts' own text aside: it is code, not where to fetch from)."""
    import re

    chart = tmp_path / "nvidia-device-plugin-0.17.0.tgz"
    chart.write_bytes(b"stand-in chart archive")
    values = airgapped_gpu_site(tmp_path)
    values["gpu"] = {
        "toolkitRepository": "http://mirror.site/nvidia",
        "toolkitKeyUrl": "http://mirror.site/nvidia/gpgkey",
        "devicePlugin": {"chartFile": str(chart)},
        "ascendDevicePlugin": {"image": ASCEND_IMAGE},
    }
    values["hub"] = {"chartFile": str(chart)}  # any .tgz: the render never opens it
    values["os"] = {
        "docker": {
            "install": True,
            "repository": "http://mirror.site/docker",
            "keyUrl": "http://mirror.site/docker/gpg",
        }
    }
    rendering = render(values)
    assert len(rendering.components("DockerEngine")) == len(values["nodes"])
    urls = set()
    for resource in rendering.resources:
        inputs = {key: value for key, value in resource["inputs"].items() if key != "stdin"}
        urls |= set(re.findall(r"https?://[^\s'\"]+", str(inputs)))
    for outputs in rendering.outputs.values():
        urls |= set(re.findall(r"https?://[^\s'\"]+", str(outputs)))
    outside = {
        url
        for url in urls
        if not url.startswith(("http://mirror.site/", "https://<", "http://<", "https://10.0.0."))
    }
    assert outside == set()
