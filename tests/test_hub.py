"""The hub in the graph (HubPlatform, components/hub.py): the release's values for the dev
site, the seed's 9000/9443 site and a GPU site (ports, profiles, node selectors, TLS); its
secrets secret; the site's own values winning where they set a key; the config errors."""

from __future__ import annotations

import copy

import pytest
import yaml

from components.hub import HubSecrets, hub_values, merge_values, profile_list
from stacks.config import ConfigError, load_site
from stacks.render import format_text
from tests.conftest import name_of, resources_by_name, three_node_site

SECRETS = HubSecrets(
    cookie_secret="c" * 64,
    proxy_token="p" * 64,
    tls_certificate="CERT",
    tls_key="KEY",
    admin_password="a" * 32,
)


def dev_site() -> dict:
    return {"nodes": [{"name": "local", "host": "127.0.0.1", "roles": ["server"]}]}


def seed_site() -> dict:
    """The seed's inventory with http_port=9000 and https_port=9443 (seed 001)."""
    values = three_node_site()
    values["hub"] = {"httpPort": 9000, "httpsPort": 9443}
    return values


def gpu_site() -> dict:
    """Two resource groups (org), A100s (tainted) and V100s, an NPU, CPU nodes."""
    a100 = {"vendor": "nvidia", "type": "A100"}
    return {
        "nodes": [
            {"name": "master", "host": "10.0.0.1", "roles": ["server"]},
            {"name": "cpu1", "host": "10.0.0.2", "roles": ["agent"], "labels": {"org": "public"}},
            {
                "name": "a100-1",
                "host": "10.0.0.3",
                "roles": ["agent"],
                "gpu": a100,
                "labels": {"org": "public"},
                "taints": ["gpu=true:NoSchedule"],
            },
            {
                "name": "a100-2",
                "host": "10.0.0.4",
                "roles": ["agent"],
                "gpu": a100,
                "labels": {"org": "public"},
                "taints": ["gpu=true:NoSchedule"],
            },
            {
                "name": "v100",
                "host": "10.0.0.5",
                "roles": ["agent"],
                "gpu": {"vendor": "nvidia", "type": "V100"},
                "labels": {"org": "research"},
            },
            {
                "name": "npu",
                "host": "10.0.0.6",
                "roles": ["agent"],
                "arch": "arm64",
                "gpu": {"vendor": "ascend", "type": "910B"},
                "labels": {"org": "research"},
            },
        ],
        "gpu": {"ascendDevicePlugin": {"image": "10.0.0.1:5000/ascend-k8sdeviceplugin:v6.0.0"}},
    }


def release(rendering) -> dict:
    return resources_by_name(rendering)["hub-release"]


def test_the_dev_site_gets_the_hub_on_80_and_443(render) -> None:
    rendering = render(dev_site())
    resources = resources_by_name(rendering)
    inputs = release(rendering)["inputs"]
    assert inputs["chart"] == "jupyterhub" and inputs["version"] == "4.4.0"
    assert inputs["repositoryOpts"] == {"repo": "https://hub.jupyter.org/helm-chart/"}
    assert inputs["name"] == "convecthub" and inputs["namespace"] == "convecthub"
    assert inputs["atomic"] is True and inputs["timeout"] == 900
    values = inputs["values"]
    assert values["proxy"]["service"] == {"type": "ClusterIP"}
    assert values["proxy"]["https"]["enabled"] is True
    assert values["proxy"]["https"]["type"] == "manual"
    assert "chp" not in values["proxy"]  # HTTPS on 443: the chart's redirect is right
    assert values["hub"]["config"]["JupyterHub"] == {"authenticator_class": "shared-password"}
    assert values["hub"]["config"]["Authenticator"] == {"admin_users": ["admin"]}
    assert values["singleuser"]["profileList"][0]["display_name"] == "CPU"
    entry = resources["hub-entry"]["inputs"]
    assert entry["metadata"] == {"name": "convecthub-entry", "namespace": "convecthub"}
    assert entry["spec"]["type"] == "LoadBalancer"
    assert [(p["port"], p["targetPort"]) for p in entry["spec"]["ports"]] == [
        (80, "http"),
        (443, "https"),
    ]
    assert entry["spec"]["selector"] == {
        "app": "jupyterhub",
        "component": "proxy",
        "release": "convecthub",
    }
    outputs = rendering.outputs[rendering.stack_urn]
    assert outputs["hubUrls"] == {
        "https": "https://<local.address>/",
        "http": "http://<local.address>/",
    }
    assert outputs["hubAdminUsers"] == ["admin"]


def test_the_seed_site_serves_the_hub_on_9000_and_9443(render) -> None:
    rendering = render(seed_site())
    entry = resources_by_name(rendering)["hub-entry"]["inputs"]["spec"]
    assert [(p["name"], p["port"]) for p in entry["ports"]] == [("http", 9000), ("https", 9443)]
    values = release(rendering)["inputs"]["values"]
    assert values["proxy"]["chp"] == {"extraCommandLineFlags": ["--redirect-to=9443"]}
    urls = rendering.outputs[rendering.stack_urn]["hubUrls"]
    assert urls == {
        "https": "https://<master.address>:9443/",
        "http": "http://<master.address>:9000/",
    }


def test_the_master_alone_binds_the_hub_ports(render) -> None:
    resources = resources_by_name(render(seed_site()))

    def labels(node: str) -> str:
        return next(
            line
            for line in resources[f"{node}-k3s-membership"]["inputs"]["stdin"].splitlines()
            if line.startswith("export CONVECTHUB_LABELS=")
        )

    assert "svccontroller.k3s.cattle.io/enablelb=true" in labels("master")
    assert "enablelb" not in labels("worker1") + labels("worker2")


def test_gpu_site_profiles_select_their_nodes_and_ask_for_an_accelerator() -> None:
    site = load_site(gpu_site()).site
    profiles = profile_list(site.nodes)
    assert [(p["display_name"], p["slug"]) for p in profiles] == [
        ("CPU", "cpu"),  # the master: no org label
        ("CPU (public)", "cpu-public"),
        ("GPU A100 (public)", "gpu-a100-public"),
        ("NPU 910B (research)", "npu-910b-research"),
        ("GPU V100 (research)", "gpu-v100-research"),
    ]
    assert profiles[0]["default"] is True
    assert sum(1 for p in profiles if p.get("default")) == 1
    by_slug = {p["slug"]: p["kubespawner_override"] for p in profiles}
    assert by_slug["gpu-a100-public"] == {
        "node_selector": {"gpu": "true", "gpu-type": "A100", "org": "public"},
        "extra_resource_limits": {"nvidia.com/gpu": "1"},
        "extra_resource_guarantees": {"nvidia.com/gpu": "1"},
        "tolerations": [
            {"key": "gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}
        ],
    }
    assert by_slug["npu-910b-research"]["extra_resource_limits"] == {"huawei.com/Ascend910": "1"}
    assert by_slug["npu-910b-research"]["node_selector"] == {
        "npu": "true",
        "gpu-type": "910B",
        "org": "research",
    }
    assert by_slug["cpu-public"] == {"node_selector": {"cpu": "true", "org": "public"}}


def test_a_gpu_site_release_carries_its_profiles(render) -> None:
    values = release(render(gpu_site()))["inputs"]["values"]
    slugs = [p["slug"] for p in values["singleuser"]["profileList"]]
    assert "gpu-a100-public" in slugs and "gpu-v100-research" in slugs


def test_the_release_waits_for_every_node_and_the_device_plugins(render) -> None:
    resources = resources_by_name(render(gpu_site()))
    depends = {name_of(urn) for urn in release_dependencies(resources)}
    nodes = [n["name"] for n in gpu_site()["nodes"]]
    assert {f"{n}-k3s-membership" for n in nodes} <= depends
    assert {"nvidia-device-plugin-release", "ascend-device-plugin-daemonset", "hub-namespace"} <= (
        depends
    )


def release_dependencies(resources: dict) -> list[str]:
    return resources["hub-release"]["dependencies"]


def test_every_hub_secret_stays_secret(render) -> None:
    rendering = render(dev_site())
    values = release(rendering)["inputs"]["values"]
    assert values["hub"]["cookieSecret"] == "[secret]"
    assert values["proxy"]["secretToken"] == "[secret]"
    assert values["proxy"]["https"]["manual"]["key"] == "[secret]"
    password = values["hub"]["config"]["SharedPasswordAuthenticator"]["admin_password"]
    assert password == "[secret]"
    outputs = rendering.outputs[rendering.stack_urn]
    assert outputs["hubAdminPassword"] == "[secret]"
    certificate = resources_by_name(rendering)["hub-certificate"]
    assert certificate["inputs"]["logging"] == "none"  # its stdout holds the key


def test_a_site_certificate_is_used_and_no_certificate_is_made(render) -> None:
    values = dev_site()
    values["hub"] = {"tls": {"certificate": "-----BEGIN CERTIFICATE-----", "key": "KEY"}}
    rendering = render(values)
    resources = resources_by_name(rendering)
    assert "hub-certificate" not in resources
    manual = release(rendering)["inputs"]["values"]["proxy"]["https"]["manual"]
    assert manual == {"cert": "-----BEGIN CERTIFICATE-----", "key": "[secret]"}


def test_the_site_values_win_where_they_set_a_key(tmp_path, render) -> None:
    values_file = tmp_path / "jupyterhub.yaml"  # the seed's jhub_config_path
    values_file.write_text(
        yaml.safe_dump(
            {
                "hub": {"config": {"Authenticator": {"allowed_users": ["ann"]}}},
                "singleuser": {"image": {"name": "convecthub/notebook", "tag": "v1"}},
                "proxy": {"https": {"type": "secret", "secret": {"name": "site-tls"}}},
            }
        )
    )
    values = dev_site()
    values["hub"] = {
        "valuesFile": str(values_file),
        "values": {"singleuser": {"memory": {"limit": "8G"}}},
    }
    chart = release(render(values))["inputs"]["values"]
    # Theirs are all there; ours stay where they set nothing.
    assert chart["hub"]["config"]["Authenticator"] == {
        "admin_users": ["admin"],
        "allowed_users": ["ann"],
    }
    assert chart["singleuser"]["image"] == {"name": "convecthub/notebook", "tag": "v1"}
    assert chart["singleuser"]["memory"] == {"limit": "8G"}
    assert chart["singleuser"]["profileList"][0]["slug"] == "cpu"
    assert chart["proxy"]["https"]["type"] == "secret"
    assert chart["proxy"]["https"]["secret"] == {"name": "site-tls"}


def test_merge_values_replaces_lists_and_keeps_both_inputs() -> None:
    site = load_site(dev_site()).site
    ours = hub_values(site.hub, site.nodes, SECRETS, site.storage)
    before = copy.deepcopy(ours)
    theirs = {"singleuser": {"profileList": [{"display_name": "Mine"}]}, "new": {"a": 1}}
    merged = merge_values(ours, theirs)
    assert merged["singleuser"]["profileList"] == [{"display_name": "Mine"}]
    assert merged["new"] == {"a": 1}
    assert ours == before and theirs["new"] == {"a": 1}


def test_an_airgapped_site_installs_the_chart_from_its_file(render, tmp_path) -> None:
    from tests.test_k3s import make_bundle, make_hub_chart

    values = dev_site()
    values["registry"] = {"bundleDir": str(make_bundle(tmp_path / "bundle"))}
    with pytest.raises(ConfigError) as raised:
        load_site(values)
    assert str(raised.value).startswith(
        "convecthub:hub.chartFile: the site is airgapped (registry.bundleDir) but the JupyterHub "
        "chart would come from https://hub.jupyter.org/helm-chart/"
    )
    chart = make_hub_chart(tmp_path / "charts")
    values["hub"] = {"chartFile": str(chart)}
    inputs = release(render(values))["inputs"]
    assert inputs["chart"] == str(chart)
    assert "repositoryOpts" not in inputs


@pytest.mark.parametrize(
    ("hub", "k3s", "message"),
    [
        (
            {"httpPort": 9000, "httpsPort": 443},
            {"disable": []},
            "convecthub:hub.httpsPort: 443 is taken by k3s's Traefik, which k3s.disable leaves "
            "on: add traefik to k3s.disable (the hub has its own proxy), or serve the hub on "
            "other ports, e.g. 9000 and 9443",
        ),
        (
            {"tls": {"key": "KEY"}},
            {},
            "convecthub:hub.tls.certificate: a certificate and its key go together: set both "
            "(as secrets), or neither for a self-signed certificate",
        ),
    ],
)
def test_hub_config_errors_name_the_key(hub, k3s, message) -> None:
    with pytest.raises(ConfigError) as raised:
        load_site({**dev_site(), "hub": hub, "k3s": k3s})
    assert str(raised.value) == message


def test_traefik_may_stay_when_the_hub_is_on_other_ports() -> None:
    site = load_site({**seed_site(), "k3s": {"disable": []}}).site
    assert site.k3s.disable == []


def test_a_values_file_that_is_not_a_mapping_fails_in_one_line(tmp_path) -> None:
    bad = tmp_path / "jupyterhub.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError) as raised:
        load_site({**dev_site(), "hub": {"valuesFile": str(bad)}})
    assert str(raised.value) == (
        f"convecthub:hub.valuesFile: {bad} does not hold a mapping of chart values: fix the "
        "file, or point valuesFile elsewhere"
    )


def test_the_render_says_where_the_hub_answers(render) -> None:
    text = format_text(render(seed_site()))
    assert "hub  jupyterhub 4.4.0 from https://hub.jupyter.org/helm-chart/" in text
    assert "  https://<master.address>:9443/  (and http://<master.address>:9000/" in text
    assert "  profiles: CPU, GPU A100" in text


def test_unchanged_config_gives_the_hub_unchanged_inputs(render, tmp_path) -> None:
    """Profiles, values and secrets are built in a fixed order: a second `up` finds nothing
    to change; a new node of a kind the hub has already leaves the release alone."""

    def hub_inputs(values: dict) -> dict:
        resources = resources_by_name(render(values))
        return {n: r["inputs"] for n, r in resources.items() if n.startswith("hub")}

    assert hub_inputs(gpu_site()) == hub_inputs(gpu_site())
    grown = gpu_site()
    grown["nodes"].append(
        {
            "name": "a100-3",
            "host": "10.0.0.7",
            "roles": ["agent"],
            "gpu": {"vendor": "nvidia", "type": "A100"},
            "labels": {"org": "public"},
            "taints": ["gpu=true:NoSchedule"],
        }
    )
    assert hub_inputs(grown) == hub_inputs(gpu_site())


def test_a_plain_tls_key_in_the_stack_file_is_warned_about() -> None:
    values = {**dev_site(), "hub": {"tls": {"certificate": "CERT", "key": "KEY"}}}
    assert load_site(values).warnings == (
        "convecthub:hub.tls.key is stored in plain text in the stack file: set it with "
        "`pulumi config set --secret --path 'hub.tls.key'`",
    )
    assert load_site(values, ["convecthub:hub"]).warnings == ()


def test_the_render_lists_the_site_profiles_when_it_gives_its_own(render) -> None:
    values = dev_site()
    values["hub"] = {"values": {"singleuser": {"profileList": [{"display_name": "Mine"}]}}}
    assert "  profiles: Mine" in format_text(render(values)).splitlines()
