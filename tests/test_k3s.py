"""The K3s layer: what each node's k3s reads (exact values), the order of the steps, airgap,
secrets, and which resources a config change touches."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from pulumi.runtime import rpc

from components.k3s import K3sRole, api_server_url, k3s_config, proxy_env, registries_config
from model.site import Site
from stacks.config import ConfigError, load_site
from stacks.host_keys import reviewing
from stacks.render import RecordingMonitor, StandInProviders, map_secrets, run_program
from stacks.stackfile import read_stack_file
from tests.conftest import name_of, resources_by_name, write_stack_file

TOKEN = "k3s-token-must-stay-secret"
REGISTRY_PASSWORD = "registry-password-must-stay-secret"


def ha_site(servers: int = 3, agents: int = 5) -> dict:
    nodes = [
        {"name": f"server{i}", "host": f"10.0.0.{i}", "roles": ["server"], "iface": "eth1"}
        for i in range(1, servers + 1)
    ]
    nodes += [
        {"name": f"agent{i}", "host": f"10.0.1.{i}", "roles": ["agent"], "iface": "eth1"}
        for i in range(1, agents + 1)
    ]
    return {"nodes": nodes, "k3s": {"apiEndpoint": "10.0.0.100"}}


def single_site() -> dict:
    return {
        "nodes": [
            {"name": "master", "host": "10.0.0.10", "roles": ["server"], "address": "10.0.0.10"},
            {
                "name": "worker",
                "host": "10.0.0.11",
                "roles": ["agent"],
                "address": "10.0.0.11",
                "labels": {"org": "public"},
                "taints": ["gpu=true:NoSchedule"],
            },
        ]
    }


def make_bundle(directory: Path, arches=("amd64",)) -> Path:
    for arch in arches:
        (directory / arch).mkdir(parents=True)
        (directory / arch / "k3s").write_bytes(b"\x7fELF stand-in k3s binary")
        (directory / arch / "install.sh").write_text("#!/bin/sh\n# stand-in install script\n")
        (directory / "images" / arch).mkdir(parents=True)
        (directory / "images" / arch / f"k3s-airgap-images-{arch}.tar.zst").write_bytes(b"x")
    return directory


def make_hub_chart(directory: Path) -> Path:
    """A stand-in for the JupyterHub chart's .tgz an airgapped site names (never opened)."""
    directory.mkdir(parents=True, exist_ok=True)
    chart = directory / "jupyterhub-4.3.3.tgz"
    chart.write_bytes(b"stand-in chart archive")
    return chart


def install_env(rendering, node: str) -> dict[str, str]:
    """The install step's environment as the render describes it (the token masked)."""
    component = resources_by_name(rendering)[f"{node}-k3s"]
    steps = rendering.outputs[component["urn"]]["steps"]
    assert steps[0]["script"] == "k3s-install.sh"
    return steps[0]["env"]


def site_model(values: dict) -> Site:
    return load_site(values).site


# ---- what each node's k3s reads --------------------------------------------------------------


def test_config_of_the_first_of_several_servers() -> None:
    site = site_model(ha_site())
    config = k3s_config(
        site.nodes[0],
        site.k3s,
        K3sRole(server=True, first=True, cluster_init=True),
        address="192.168.1.1",
        join_url=None,
    )
    assert config == {
        "node-name": "server1",
        "node-ip": "192.168.1.1",
        "flannel-iface": "eth1",
        "token-file": "/etc/rancher/k3s/cluster-token",
        "cluster-init": True,
        "tls-san": ["10.0.0.100"],
        "disable": ["traefik"],  # the default: the hub has its own proxy on the master's ports
        "write-kubeconfig-mode": "0600",
    }


def test_config_of_a_joining_server_with_extra_options() -> None:
    values = ha_site()
    values["k3s"].update(
        disable=["traefik", "servicelb"],
        serverConfig={"tls-san": ["hub.example.com", "10.0.0.100"], "kubelet-arg": ["a=b"]},
    )
    site = site_model(values)
    config = k3s_config(
        site.nodes[1],
        site.k3s,
        K3sRole(server=True),
        address="192.168.1.2",
        join_url="https://192.168.1.1:6443",
    )
    assert config == {
        "node-name": "server2",
        "node-ip": "192.168.1.2",
        "flannel-iface": "eth1",
        "server": "https://192.168.1.1:6443",
        "token-file": "/etc/rancher/k3s/cluster-token",
        "tls-san": ["10.0.0.100", "hub.example.com"],
        "disable": ["traefik", "servicelb"],
        "write-kubeconfig-mode": "0600",
        "kubelet-arg": ["a=b"],
    }
    assert "cluster-init" not in config


def test_config_of_an_agent_has_no_server_options() -> None:
    values = single_site()
    values["k3s"] = {"disable": ["traefik"], "agentConfig": {"node-external-ip": "1.2.3.4"}}
    site = site_model(values)
    config = k3s_config(
        site.nodes[1],
        site.k3s,
        K3sRole(server=False),
        address="10.0.0.11",
        join_url="https://10.0.0.10:6443",
    )
    assert config == {
        "node-name": "worker",
        "node-ip": "10.0.0.11",
        "server": "https://10.0.0.10:6443",
        "token-file": "/etc/rancher/k3s/cluster-token",
        "node-external-ip": "1.2.3.4",
    }


def test_registries_for_mirrors_insecure_registries_and_credentials() -> None:
    values = single_site()
    values["registry"] = {
        "mirrors": {"docker.io": ["https://mirror.example.com:5000"]},
        "insecure": ["10.0.0.5:5000"],
        "credentials": {"mirror.example.com:5000": {"username": "pull", "password": "pw"}},
    }
    registry = site_model(values).registry
    assert registries_config(registry, embedded_mirror=False) == {
        "mirrors": {
            "10.0.0.5:5000": {"endpoint": ["https://10.0.0.5:5000", "http://10.0.0.5:5000"]},
            "docker.io": {"endpoint": ["https://mirror.example.com:5000"]},
        },
        "configs": {
            "10.0.0.5:5000": {"tls": {"insecure_skip_verify": True}},
            "mirror.example.com:5000": {"auth": {"username": "pull", "password": "pw"}},
        },
    }
    with_mirror = registries_config(registry, embedded_mirror=True)
    assert with_mirror["mirrors"]["*"] == {}


def test_no_registries_file_without_registry_settings() -> None:
    assert registries_config(site_model(single_site()).registry, embedded_mirror=False) == {}


@pytest.mark.parametrize(
    ("address", "url"),
    [
        ("10.0.0.1", "https://10.0.0.1:6443"),
        ("fd00::1", "https://[fd00::1]:6443"),
        ("api.example.com", "https://api.example.com:6443"),
    ],
)
def test_api_server_url(address, url) -> None:
    assert api_server_url(address) == url


def test_proxy_reaches_containerd_with_the_cluster_networks_bypassed() -> None:
    values = single_site()
    values["os"] = {"httpsProxy": "http://proxy:3128", "noProxy": ["10.0.0.0/8"]}
    env = proxy_env(site_model(values).os, ["10.96.0.0/12"])
    assert env["CONVECTHUB_HTTPS_PROXY"] == "http://proxy:3128"
    assert "CONVECTHUB_HTTP_PROXY" not in env
    assert env["CONVECTHUB_NO_PROXY"].split(",")[-2:] == ["10.0.0.0/8", "10.96.0.0/12"]
    assert "10.42.0.0/16" in env["CONVECTHUB_NO_PROXY"]
    assert proxy_env(site_model(single_site()).os) == {}


# ---- the graph -------------------------------------------------------------------------------


def depends(resource: dict) -> set[str]:
    return {name_of(urn) for urn in resource["dependencies"]}


def test_single_server_site(render) -> None:
    rendering = render(single_site())
    resources = resources_by_name(rendering)
    assert resources["master-k3s"]["type"] == "convecthub:infra:K3sServer"
    assert resources["worker-k3s"]["type"] == "convecthub:infra:K3sAgent"
    master, worker = install_env(rendering, "master"), install_env(rendering, "worker")
    assert master["CONVECTHUB_K3S_ROLE"] == "server"
    assert yaml.safe_load(master["CONVECTHUB_K3S_CONFIG"]) == {
        "node-name": "master",
        "node-ip": "10.0.0.10",
        "token-file": "/etc/rancher/k3s/cluster-token",
        "disable": ["traefik"],
        "write-kubeconfig-mode": "0600",
    }
    assert yaml.safe_load(worker["CONVECTHUB_K3S_CONFIG"])["server"] == "https://10.0.0.10:6443"
    assert master["CONVECTHUB_INSTALL_SCRIPT_URL"] == "https://get.k3s.io"
    assert master["CONVECTHUB_K3S_VERSION"] == "v1.37.2+k3s1"
    install = resources["master-k3s-install"]["inputs"]
    assert install["create"] == "/bin/bash -s apply  # k3s-install.sh"
    assert install["delete"] == "/bin/bash -s remove  # k3s-install.sh"
    assert depends(resources["worker-k3s-install"]) >= {"master-k3s-install", "worker-os-prep"}
    kubeconfig = resources["master-k3s-kubeconfig"]["inputs"]
    assert kubeconfig["logging"] == "none"
    assert "delete" not in kubeconfig
    provider = resources["cluster"]
    assert provider["type"] == "pulumi:providers:kubernetes"
    assert provider["inputs"]["kubeconfig"] == "[secret]"


def test_ha_servers_join_one_after_another_and_agents_in_parallel(render) -> None:
    rendering = render(ha_site(servers=3, agents=5))
    resources = resources_by_name(rendering)
    installs = {f"server{i}-k3s-install" for i in (1, 2, 3)}
    chain = [depends(resources[f"server{i}-k3s-install"]) & installs for i in (1, 2, 3)]
    assert chain == [set(), {"server1-k3s-install"}, {"server2-k3s-install"}]
    configs = [
        yaml.safe_load(install_env(rendering, f"server{i}")["CONVECTHUB_K3S_CONFIG"])
        for i in (1, 2, 3)
    ]
    assert configs[0]["cluster-init"] is True and "server" not in configs[0]
    for config in configs[1:]:
        assert "cluster-init" not in config
        assert config["server"] == "https://<server1.address>:6443"
    for i in range(1, 6):
        install = resources[f"agent{i}-k3s-install"]
        assert not any(name.startswith("agent") and "-k3s" in name for name in depends(install))
        assert depends(install) & installs == installs
        config = yaml.safe_load(install_env(rendering, f"agent{i}")["CONVECTHUB_K3S_CONFIG"])
        assert config["server"] == "https://10.0.0.100:6443"
    text_waits = [
        line.strip() for line in _render_text(rendering).splitlines() if "(waits for" in line
    ]
    assert text_waits[:3] == [
        "(waits for no other node)",
        "(waits for server1-k3s-install)",
        "(waits for server2-k3s-install)",
    ]


def _render_text(rendering) -> str:
    from stacks.render import format_text

    return format_text(rendering)


def test_membership_runs_on_the_first_server_after_the_node_joined(render) -> None:
    rendering = render(ha_site(servers=3, agents=2))
    resources = resources_by_name(rendering)
    membership = resources["agent1-k3s-membership"]
    assert "agent1-k3s-install" in depends(membership)
    assert membership["inputs"]["delete"] == "/bin/bash -s remove  # k3s-membership.sh"
    steps = rendering.outputs[resources["agent1-k3s"]["urn"]]["steps"]
    assert steps[1]["on"] == "server1"
    assert steps[1]["script"] == "k3s-membership.sh"


def test_labels_and_taints_go_to_membership_only(render) -> None:
    rendering = render(single_site())
    resources = resources_by_name(rendering)
    steps = rendering.outputs[resources["worker-k3s"]["urn"]]["steps"]
    env = steps[1]["env"]
    assert steps[1]["script"] == "k3s-membership.sh"
    assert env["CONVECTHUB_LABELS"] == "cpu=true\norg=public"
    assert env["CONVECTHUB_TAINTS"] == "gpu=true:NoSchedule"
    assert env["CONVECTHUB_NODE_NAME"] == "worker"
    config = install_env(rendering, "worker")["CONVECTHUB_K3S_CONFIG"]
    assert "org" not in config and "taint" not in config


def test_the_token_is_generated_by_pulumi_random_unless_configured(render) -> None:
    resources = resources_by_name(render(single_site()))
    token = resources["k3s-token"]
    assert token["type"] == "random:index/randomPassword:RandomPassword"
    assert token["inputs"]["length"] == 48
    assert "k3s-token" in depends(resources["master-k3s-install"])
    values = single_site()
    values["k3s"] = {"token": TOKEN}
    assert "k3s-token" not in resources_by_name(render(values))


@pytest.mark.parametrize(
    ("gpu", "labels", "expected"),
    [
        (None, {}, {"cpu": "true"}),
        ({"vendor": "nvidia", "type": "A100"}, {}, {"gpu": "true", "gpu-type": "A100"}),
        ({"vendor": "nvidia"}, {"org": "public"}, {"gpu": "true", "org": "public"}),
        ({"vendor": "ascend", "type": "910B"}, {}, {"npu": "true", "gpu-type": "910B"}),
        (
            {"vendor": "nvidia", "type": "T4"},
            {"gpu-type": "t4-16g"},
            {"gpu": "true", "gpu-type": "t4-16g"},
        ),
    ],
)
def test_accelerator_labels_come_first_and_the_node_own_labels_win(gpu, labels, expected) -> None:
    from components.k3s import node_labels

    values = single_site()
    values["nodes"][1].update(labels=labels, gpu=gpu)
    if gpu is None:
        del values["nodes"][1]["gpu"]
    values["gpu"] = {"ascendDevicePlugin": {"image": "ascend-k8sdeviceplugin:v6.0.0"}}
    assert node_labels(site_model(values).nodes[1]) == expected


# ---- airgap ----------------------------------------------------------------------------------


def airgap_site(bundle: Path, registry_node: bool) -> dict:
    values = ha_site(servers=1, agents=2)
    values["registry"] = {"bundleDir": str(bundle)}
    values["hub"] = {"chartFile": str(make_hub_chart(bundle.parent / "charts"))}
    if registry_node:
        values["nodes"][0]["roles"] = ["server", "registry"]
    return values


def test_airgap_copies_the_bundle_and_downloads_nothing(render, tmp_path) -> None:
    bundle = make_bundle(tmp_path / "bundle")
    rendering = render(airgap_site(bundle, registry_node=False))
    resources = resources_by_name(rendering)
    for node in ("server1", "agent1", "agent2"):
        copy_step = resources[f"{node}-k3s-bundle"]
        assert copy_step["type"] == "command:remote:CopyToRemote"
        assert copy_step["inputs"]["source"] == {"archive": str(bundle / "amd64")}
        assert copy_step["inputs"]["remotePath"] == f"<{node}.home>/.convecthub-bundle"
        images = resources[f"{node}-k3s-images"]
        assert images["inputs"]["source"] == {"archive": str(bundle / "images" / "amd64")}
        assert f"{node}-k3s-bundle" in depends(images)
        assert {f"{node}-k3s-bundle", f"{node}-k3s-images"} <= depends(
            resources[f"{node}-k3s-install"]
        )
        env = install_env(rendering, node)
        assert env["CONVECTHUB_BUNDLE_DIR"] == f"<{node}.home>/.convecthub-bundle/amd64"
        assert env["CONVECTHUB_IMAGES_DIR"] == f"<{node}.home>/.convecthub-bundle/images/amd64"
        assert "CONVECTHUB_INSTALL_SCRIPT_URL" not in env
        urls = [value for name, value in env.items() if name != "CONVECTHUB_K3S_CONFIG"]
        assert not any("http" in value for value in urls), env


def test_with_a_registry_node_only_it_holds_the_images(render, tmp_path) -> None:
    bundle = make_bundle(tmp_path / "bundle")
    rendering = render(airgap_site(bundle, registry_node=True))
    resources = resources_by_name(rendering)
    assert "server1-k3s-images" in resources
    assert "agent1-k3s-images" not in resources
    assert "CONVECTHUB_IMAGES_DIR" not in install_env(rendering, "agent1")
    server = install_env(rendering, "server1")
    config = yaml.safe_load(server["CONVECTHUB_K3S_CONFIG"])
    assert config["embedded-registry"] is True
    assert config["disable-default-registry-endpoint"] is True
    for node in ("server1", "agent1"):
        registries = yaml.safe_load(install_env(rendering, node)["CONVECTHUB_REGISTRIES"])
        assert registries == {"mirrors": {"*": {}}}
    agent = yaml.safe_load(install_env(rendering, "agent1")["CONVECTHUB_K3S_CONFIG"])
    assert agent["disable-default-registry-endpoint"] is True
    assert "embedded-registry" not in agent


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda v, b: v["nodes"][0].update(roles=["server", "registry"]),
            "convecthub:nodes[0].roles: the registry role serves the airgap bundle's images to "
            "the other nodes: set convecthub:registry.bundleDir, or drop the role",
        ),
        (
            lambda v, b: (
                v.update(registry={"bundleDir": str(b)}),
                v["nodes"][1].update(arch="arm64"),
            ),
            "convecthub:registry.bundleDir: {b} lacks arm64/k3s, arm64/install.sh, "
            "images/arm64/k3s-airgap-images-arm64.tar.zst: put the k3s v1.37.2+k3s1 release "
            "files there (see the README, 'Airgapped sites')",
        ),
        (
            lambda v, b: (
                v.update(registry={"bundleDir": str(b)}, k3s={"version": "v1.28.5+k3s1"}),
                v["nodes"][0].update(roles=["server", "registry"]),
            ),
            "convecthub:nodes[0].roles: the registry role needs k3s's embedded registry mirror, "
            "which k3s v1.28.5+k3s1 lacks: set convecthub:k3s.version to v1.31.4+k3s1 or newer",
        ),
        (
            lambda v, b: v.update(k3s={"serverConfig": {"node-label": ["a=b"]}}),
            "convecthub:k3s.serverConfig.node-label: 'node-label' is set by the program: use "
            "labels on the node in convecthub:nodes",
        ),
    ],
)
def test_airgap_and_k3s_config_errors(tmp_path, change, expected) -> None:
    bundle = make_bundle(tmp_path / "bundle")
    values = copy.deepcopy(single_site())
    change(values, bundle)
    with pytest.raises(ConfigError) as raised:
        load_site(values)
    assert str(raised.value) == expected.format(b=bundle)


# ---- secrets ---------------------------------------------------------------------------------


class RawMonitor(RecordingMonitor):
    """Keeps each resource's inputs as the engine would get them, secrets still marked."""

    def __init__(self) -> None:
        super().__init__(StandInProviders())
        self.raw: dict[str, object] = {}

    def RegisterResource(self, request):  # noqa: N802
        response = super().RegisterResource(request)
        self.raw[request.name] = rpc.deserialize_properties(request.object)
        return response


def raw_inputs(tmp_path: Path, values: dict) -> RawMonitor:
    monitor = RawMonitor()
    with reviewing():  # like the render: a host key not pinned is no refusal here
        run_program(read_stack_file(write_stack_file(tmp_path, values)), monitor, preview=True)
    return monitor


def test_token_and_registry_password_reach_nodes_only_as_secrets(tmp_path) -> None:
    values = single_site()
    values["k3s"] = {"token": TOKEN}
    values["registry"] = {
        "credentials": {"r.example.com": {"username": "u", "password": REGISTRY_PASSWORD}}
    }
    monitor = raw_inputs(tmp_path, values)
    unwrapped = json.dumps(map_secrets(monitor.raw, lambda value: value), default=str)
    masked = json.dumps(map_secrets(monitor.raw, lambda _: "[secret]"), default=str)
    for secret in (TOKEN, REGISTRY_PASSWORD):
        assert secret in unwrapped  # it does reach the install steps...
        assert secret not in masked  # ...and only inside secret values
    for name, inputs in monitor.raw.items():
        for key in ("create", "delete", "update"):
            assert TOKEN not in str(inputs.get(key, "")), name
    stack_outputs = monitor.recorded_outputs[
        next(r["urn"] for r in monitor.recorded if r["type"] == "pulumi:pulumi:Stack")
    ]
    assert stack_outputs["kubeconfig"] == "[secret]"


# ---- blast radius ----------------------------------------------------------------------------


def inputs_by_name(tmp_path: Path, values: dict) -> dict[str, object]:
    """Every resource's inputs with secrets unwrapped: a changed token or secret stdin must
    count as a change too."""
    raw = raw_inputs(tmp_path, values).raw
    return {name: map_secrets(inputs, lambda value: value) for name, inputs in raw.items()}


def changed(before: dict, after: dict) -> set[str]:
    return {name for name in before.keys() & after.keys() if before[name] != after[name]}


def test_the_same_config_renders_the_same_inputs(tmp_path) -> None:
    assert inputs_by_name(tmp_path, ha_site()) == inputs_by_name(tmp_path, ha_site())


def test_one_label_change_alters_exactly_one_resource(tmp_path) -> None:
    before = inputs_by_name(tmp_path, ha_site())
    values = ha_site()
    values["nodes"][4]["labels"] = {"gpu-type": "A100"}
    after = inputs_by_name(tmp_path, values)
    assert changed(before, after) == {"agent2-k3s-membership"}


def test_adding_an_agent_alters_no_existing_k3s_step(tmp_path) -> None:
    before = inputs_by_name(tmp_path, ha_site(agents=5))
    after = inputs_by_name(tmp_path, ha_site(agents=6))
    assert set(after) - set(before) == {
        "agent6",
        "agent6-facts",
        "agent6-os-prep",
        "agent6-k3s",
        "agent6-k3s-install",
        "agent6-k3s-membership",
    }
    # Only the fleet-wide hosts list moves.
    assert changed(before, after) == {name for name in before if name.endswith("-os-prep")}


def test_a_version_bump_touches_only_install_steps(tmp_path) -> None:
    before = inputs_by_name(tmp_path, ha_site())
    values = ha_site()
    values["k3s"]["version"] = "v1.32.1+k3s1"
    after = inputs_by_name(tmp_path, values)
    assert changed(before, after) == {name for name in before if name.endswith("-k3s-install")}
