"""Docker in the graph (the seeds' install_docker / docker_repo, OpenPAI's daemon settings): on
exactly the nodes that want it, after their OS prep and GPU layer, never in k3s's way; the
daemon.json each node gets; the config errors."""

from __future__ import annotations

import json

import pytest

from components.docker import docker_daemon_config
from stacks.config import ConfigError, load_site
from stacks.render import format_text
from tests.conftest import name_of, resources_by_name, three_node_site


def docker_site(**docker: object) -> dict:
    values = three_node_site()
    values["os"] = {"docker": {"install": True, **docker}}
    return values


def depends(resource: dict) -> set[str]:
    return {name_of(urn) for urn in resource["dependencies"]}


def daemon_json(rendering, node: str) -> dict:
    """The daemon.json a node's docker step writes, from the environment it is given."""
    engine = rendering.components("DockerEngine")[f"{node}-docker"]
    (step,) = rendering.outputs[engine["urn"]]["steps"]
    return json.loads(step["env"]["CONVECTHUB_DOCKER_DAEMON_JSON"])


def test_no_docker_unless_the_site_asks_for_it(render) -> None:
    resources = resources_by_name(render(three_node_site()))
    assert not [r for r in resources.values() if r["type"] == "convecthub:infra:DockerEngine"]


def test_docker_goes_exactly_where_wanted_and_a_node_may_say_no(render) -> None:
    values = docker_site()
    values["nodes"][1]["installDocker"] = False
    resources = resources_by_name(render(values))
    engines = {
        r["name"] for r in resources.values() if r["type"] == "convecthub:infra:DockerEngine"
    }
    assert engines == {"master-docker", "worker2-docker"}
    assert resources["master-docker"]["parent"] == resources["master"]["urn"]
    engine = resources["master-docker-engine"]["inputs"]
    assert engine["create"].endswith("/bin/bash -s apply  # docker-engine.sh")
    assert engine["delete"].endswith("/bin/bash -s remove  # docker-engine.sh")

    only = three_node_site()
    only["nodes"][1]["installDocker"] = True  # the site default is no Docker
    names = set(resources_by_name(render(only)))
    assert {n for n in names if n.endswith("-docker")} == {"worker1-docker"}


def test_docker_runs_after_os_prep_and_the_gpu_layer_and_k3s_never_waits(render) -> None:
    resources = resources_by_name(render(docker_site()))
    assert depends(resources["worker2-docker-engine"]) >= {"worker2-os-prep", "worker2-gpu-runtime"}
    assert "master-os-prep" in depends(resources["master-docker-engine"])
    for name, resource in resources.items():
        if name.endswith(("-k3s-install", "-k3s-membership")):
            assert not {d for d in depends(resource) if d.endswith("-docker-engine")}, name
    assert "(beside k3s: neither waits for the other)" in format_text(render(docker_site()))


def test_daemon_json_for_a_gpu_node_with_mirrors_and_settings() -> None:
    values = docker_site(dataRoot="/mnt/docker", daemonConfig={"log-opts": {"max-size": "100m"}})
    values["registry"] = {
        "mirrors": {"docker.io": ["https://hub-mirror.site"], "quay.io": ["https://q.site"]},
        "insecure": ["10.0.0.5:5000", "*"],
    }
    site = load_site(values).site
    gpu_node = site.nodes[2]
    config = docker_daemon_config(gpu_node, site.os.docker, site.registry)
    assert config == {
        "registry-mirrors": ["https://hub-mirror.site"],
        "insecure-registries": ["10.0.0.5:5000"],
        "data-root": "/mnt/docker",
        "default-runtime": "nvidia",
        "runtimes": {"nvidia": {"path": "nvidia-container-runtime", "runtimeArgs": []}},
        "log-opts": {"max-size": "100m"},
    }
    assert list(config) == [
        "registry-mirrors",
        "insecure-registries",
        "data-root",
        "default-runtime",
        "runtimes",
        "log-opts",
    ]


def test_daemon_json_for_a_cpu_node_takes_the_catch_all_mirror() -> None:
    values = docker_site()
    values["registry"] = {"mirrors": {"*": ["http://10.0.0.5:5000"]}}
    site = load_site(values).site
    assert docker_daemon_config(site.nodes[0], site.os.docker, site.registry) == {
        "registry-mirrors": ["http://10.0.0.5:5000"]
    }
    assert (
        docker_daemon_config(site.nodes[0], site.os.docker, load_site(docker_site()).site.registry)
        == {}
    )


def test_each_node_is_told_its_own_daemon_json(render) -> None:
    rendering = render(docker_site())
    assert daemon_json(rendering, "master") == {}
    assert daemon_json(rendering, "worker2")["default-runtime"] == "nvidia"


def test_a_daemon_setting_change_touches_only_docker_steps(render) -> None:
    before = resources_by_name(render(docker_site()))
    after = resources_by_name(render(docker_site(daemonConfig={"log-level": "warn"})))
    changed = {name for name in before if before[name]["inputs"] != after[name]["inputs"]}
    assert changed == {"master-docker-engine", "worker1-docker-engine", "worker2-docker-engine"}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"os": {"docker": {"daemonConfig": {"default-runtime": "runc"}}}},
            "convecthub:os.docker.daemonConfig.default-runtime: 'default-runtime' is set by the "
            "program: it is nvidia on NVIDIA nodes, Docker's own elsewhere",
        ),
        (
            {"os": {"docker": {"dataRoot": "var/lib/docker"}}},
            "convecthub:os.docker.dataRoot: 'var/lib/docker' is not an absolute path on the "
            "node, e.g. /mnt/docker",
        ),
        (
            {"k3s": {"agentConfig": {"docker": True}}},
            "convecthub:k3s.agentConfig.docker: 'docker' is not supported: k3s keeps its own "
            "containerd; convecthub:os.docker installs Docker beside it",
        ),
    ],
)
def test_docker_config_errors_name_the_key(values, message) -> None:
    with pytest.raises(ConfigError) as raised:
        load_site({**three_node_site(), **values})
    assert str(raised.value) == message


def test_an_airgapped_site_must_name_its_docker_mirror(tmp_path) -> None:
    from tests.test_k3s import make_bundle, make_hub_chart

    values = docker_site()
    values["registry"] = {"bundleDir": str(make_bundle(tmp_path / "bundle"))}
    values["hub"] = {"chartFile": str(make_hub_chart(tmp_path / "charts"))}
    values["gpu"] = {
        "toolkitRepository": "http://mirror.site/nvidia",
        "toolkitKeyUrl": "http://mirror.site/nvidia/gpgkey",
        "devicePlugin": {"chartFile": str(make_chart(tmp_path))},
    }
    with pytest.raises(ConfigError) as raised:
        load_site(values)
    assert str(raised.value) == (
        "convecthub:os.docker.repository: the site is airgapped (registry.bundleDir) but its "
        "Docker nodes would fetch Docker from https://download.docker.com/linux/ubuntu: set "
        "repository and keyUrl to the site's mirror of it"
    )
    values["os"]["docker"].update(
        repository="http://mirror.site/docker", keyUrl="http://mirror.site/docker/gpg"
    )
    assert load_site(values).site.os.docker.repository == "http://mirror.site/docker"


def make_chart(directory):
    chart = directory / "nvidia-device-plugin-0.17.0.tgz"
    chart.write_bytes(b"stand-in chart archive")
    return chart
