"""Secrets stay secret wherever the program moves them (issue 14), under the render's mocks.

Two kinds (model/secrecy.py): a section Pulumi holds as secret (any path of it set with
--secret), of which every value reaches resources as a secret Output; and values that are
secrets by what they are (credentials in a URL, secret-named keys of the free-form maps),
secret Outputs whether set with --secret or not, and warned about when they are plain.

Each case checks that the value (a) does reach the resources, (b) only inside secret inputs
and outputs: the render's text and JSON never show it, and (c) is warned about when plain.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable

import pytest

from stacks import render as render_module
from stacks.render import (
    RecordingMonitor,
    Rendering,
    deserialize_keeping_nested_secrets,
    evaluate,
    format_text,
    map_secrets,
)
from stacks.stackfile import read_stack_file
from tests.conftest import three_node_site, write_stack_file

MASK = "[secret]"
PLAIN_TEXT = "is stored in plain text in the stack file"


class KeepingMonitor(RecordingMonitor):
    """The render's monitor, also keeping each registration's values with their secrets
    marked (so a test can see that a value reaches a resource, and where it is secret)."""

    last: KeepingMonitor | None = None

    def __init__(self, providers, old_urns=()):
        super().__init__(providers, old_urns)
        self.raw: dict[str, object] = {}
        self.raw_outputs: dict[str, object] = {}
        KeepingMonitor.last = self

    def RegisterResource(self, request):  # noqa: N802 (the gRPC method's name)
        response = super().RegisterResource(request)
        self.raw[request.name] = deserialize_keeping_nested_secrets(request.object)
        return response

    def RegisterResourceOutputs(self, request):  # noqa: N802
        self.raw_outputs[request.urn] = deserialize_keeping_nested_secrets(request.outputs)
        return super().RegisterResourceOutputs(request)


@dataclasses.dataclass
class Trace:
    rendering: Rendering
    monitor: KeepingMonitor

    @property
    def text(self) -> str:
        return format_text(self.rendering)

    @property
    def shown(self) -> str:
        """Everything the render shows: its text, its JSON and every component's outputs."""
        graph = json.dumps({"graph": self.rendering.as_json(), "all": self.rendering.outputs})
        return self.text + "\n" + graph

    @property
    def reached(self) -> str:
        """Every input and output the resources got, secrets unwrapped."""
        raw = {"inputs": self.monitor.raw, "outputs": self.monitor.raw_outputs}
        return json.dumps(map_secrets(raw, lambda value: value), default=str)

    @property
    def plain_warnings(self) -> list[str]:
        return [w for w in self.rendering.loaded.warnings if PLAIN_TEXT in w]

    def inputs(self, name: str) -> dict:
        return next(r["inputs"] for r in self.rendering.resources if r["name"] == name)

    def outputs(self, name: str) -> dict:
        urn = next(r["urn"] for r in self.rendering.resources if r["name"] == name)
        return self.rendering.outputs[urn]

    def stack_outputs(self) -> dict:
        return self.rendering.outputs[self.rendering.stack_urn]

    def env(self, component: str, step: str) -> dict[str, str]:
        """The environment of a component's step as the render describes it."""
        steps = self.outputs(component)["steps"]
        return next(s["env"] for s in steps if s["step"] == step)


@pytest.fixture
def trace(tmp_path, monkeypatch) -> Callable[..., Trace]:
    """Render a site, its `secret` sections held as secrets as the Pulumi CLI hands them over
    (the decrypted values, and the section's key among the secret keys)."""
    monkeypatch.setattr(render_module, "RecordingMonitor", KeepingMonitor)

    def run(values: dict, secret: tuple[str, ...] = ()) -> Trace:
        stack = read_stack_file(write_stack_file(tmp_path, values))
        if secret:
            keys = tuple(f"convecthub:{section}" for section in secret)
            stack = dataclasses.replace(stack, secret_keys=keys)
        rendering = evaluate(stack)
        assert KeepingMonitor.last is not None
        return Trace(rendering, KeepingMonitor.last)

    return run


def base_site() -> dict:
    """The three-node site, its plain agent with Docker too."""
    values = copy.deepcopy(three_node_site())
    values["nodes"][1]["installDocker"] = True
    return values


def set_path(values: dict, path: list[str], value: object) -> dict:
    here = values
    for key in path[:-1]:
        here = here.setdefault(key, {})
    here[path[-1]] = value
    return values


def hub_values_at(t: Trace, *path: str | int) -> object:
    """A value of the hub's release; the mask when it sits inside a masked value (all of
    them are, when the hub's section is secret)."""
    value: object = t.inputs("hub-release")["values"]
    for part in path:
        if value == MASK:
            break
        value = value[part]  # type: ignore[index]
    return value


# ---- values that are secrets by what they are ------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Known:
    """A secret by nature: where it is set, its section, the warning's key and where it must
    arrive as a secret."""

    path: list[str]
    value: object
    secret: str  # the part of the value that must never be shown
    warned: str  # the key path the warning names
    carriers: tuple[Callable[[Trace], object], ...]

    @property
    def section(self) -> str:
        return self.path[0]


def proxy(name: str) -> Callable[[Trace], object]:
    return lambda t: t.env("master", "os-prep")[name]


KNOWN = {
    "os.httpProxy": Known(
        ["os", "httpProxy"],
        "http://proxyuser:proxy-pw-1@proxy.example.com:3128",
        "proxy-pw-1",
        "os.httpProxy",
        (
            lambda t: t.inputs("master-os-prep")["stdin"],
            proxy("CONVECTHUB_HTTP_PROXY"),
            lambda t: t.env("master-k3s", "k3s")["CONVECTHUB_HTTP_PROXY"],
            lambda t: t.env("worker1-docker", "docker")["CONVECTHUB_HTTP_PROXY"],
        ),
    ),
    "os.httpsProxy": Known(
        ["os", "httpsProxy"],
        "http://proxyuser:proxy-pw-2@proxy.example.com:3128",
        "proxy-pw-2",
        "os.httpsProxy",
        (proxy("CONVECTHUB_HTTPS_PROXY"),),
    ),
    "os.aptProxy": Known(
        ["os", "aptProxy"],
        "http://apt:apt-pw-3@cache.example.com:3142",
        "apt-pw-3",
        "os.aptProxy",
        (proxy("CONVECTHUB_APT_PROXY"),),
    ),
    "os.aptMirror": Known(
        ["os", "aptMirror"],
        "https://apt-token-4@mirror.example.com/ubuntu",  # a token as the user
        "apt-token-4",
        "os.aptMirror",
        (proxy("CONVECTHUB_APT_MIRROR"),),
    ),
    "os.docker.repository": Known(
        ["os", "docker", "repository"],
        "https://u:docker-pw-5@mirror.example.com/docker",
        "docker-pw-5",
        "os.docker.repository",
        (
            lambda t: t.inputs("worker1-docker-engine")["stdin"],
            lambda t: t.env("worker1-docker", "docker")["CONVECTHUB_DOCKER_REPO"],
        ),
    ),
    "os.docker.keyUrl": Known(
        ["os", "docker", "keyUrl"],
        "https://u:docker-pw-6@mirror.example.com/docker/gpg",
        "docker-pw-6",
        "os.docker.keyUrl",
        (lambda t: t.env("worker1-docker", "docker")["CONVECTHUB_DOCKER_KEY_URL"],),
    ),
    "os.docker.daemonConfig": Known(
        ["os", "docker", "daemonConfig"],
        {"proxies": {"https-proxy": "http://u:daemon-pw-7@proxy.example.com:3128"}},
        "daemon-pw-7",
        "os.docker.daemonConfig.proxies.https-proxy",
        (lambda t: t.env("worker1-docker", "docker")["CONVECTHUB_DOCKER_DAEMON_JSON"],),
    ),
    "k3s.serverConfig.agent-token": Known(
        ["k3s", "serverConfig", "agent-token"],
        "agent-token-8",
        "agent-token-8",
        "k3s.serverConfig.agent-token",
        (lambda t: t.env("master-k3s", "k3s")["CONVECTHUB_K3S_CONFIG"],),
    ),
    "k3s.serverConfig.datastore-endpoint": Known(
        ["k3s", "serverConfig", "datastore-endpoint"],
        "postgres://k3s:datastore-pw-9@10.0.0.3:5432/k3s",
        "datastore-pw-9",
        "k3s.serverConfig.datastore-endpoint",
        (lambda t: t.env("master-k3s", "k3s")["CONVECTHUB_K3S_CONFIG"],),
    ),
    "k3s.serverConfig.etcd-s3-secret-key": Known(
        ["k3s", "serverConfig", "etcd-s3-secret-key"],
        "s3-secret-10",
        "s3-secret-10",
        "k3s.serverConfig.etcd-s3-secret-key",
        (lambda t: t.env("master-k3s", "k3s")["CONVECTHUB_K3S_CONFIG"],),
    ),
    "k3s.serverConfig.kube-apiserver-arg": Known(
        ["k3s", "serverConfig", "kube-apiserver-arg"],
        ["oidc-client-secret=oidc-11", "oidc-client-id=hub"],
        "oidc-11",
        "k3s.serverConfig.kube-apiserver-arg[0]",
        (lambda t: t.env("master-k3s", "k3s")["CONVECTHUB_K3S_CONFIG"],),
    ),
    "k3s.agentConfig.vpn-auth": Known(
        ["k3s", "agentConfig", "vpn-auth"],
        "name=tailscale,joinKey=tskey-12",
        "tskey-12",
        "k3s.agentConfig.vpn-auth",
        (lambda t: t.env("worker1-k3s", "k3s")["CONVECTHUB_K3S_CONFIG"],),
    ),
    "k3s.installScriptUrl": Known(
        ["k3s", "installScriptUrl"],
        "https://u:script-pw-13@mirror.example.com/k3s-install.sh",
        "script-pw-13",
        "k3s.installScriptUrl",
        (lambda t: t.env("master-k3s", "k3s")["CONVECTHUB_INSTALL_SCRIPT_URL"],),
    ),
    "registry.mirrors": Known(
        ["registry", "mirrors"],
        {"docker.io": ["https://robot:mirror-pw-14@mirror.example.com:5000"]},
        "mirror-pw-14",
        'registry.mirrors["docker.io"][0]',
        (
            lambda t: t.env("master-k3s", "k3s")["CONVECTHUB_REGISTRIES"],
            lambda t: t.env("worker1-docker", "docker")["CONVECTHUB_DOCKER_DAEMON_JSON"],
        ),
    ),
    "gpu.toolkitRepository": Known(
        ["gpu", "toolkitRepository"],
        "https://u:toolkit-pw-15@mirror.example.com/nvidia/deb",
        "toolkit-pw-15",
        "gpu.toolkitRepository",
        (
            lambda t: t.inputs("worker2-gpu-runtime")["stdin"],
            lambda t: t.env("worker2-gpu", "gpu-runtime")["CONVECTHUB_TOOLKIT_REPO"],
        ),
    ),
    "gpu.toolkitKeyUrl": Known(
        ["gpu", "toolkitKeyUrl"],
        "https://u:toolkit-pw-16@mirror.example.com/nvidia/gpgkey",
        "toolkit-pw-16",
        "gpu.toolkitKeyUrl",
        (lambda t: t.env("worker2-gpu", "gpu-runtime")["CONVECTHUB_TOOLKIT_KEY_URL"],),
    ),
    "gpu.devicePlugin.repository": Known(
        ["gpu", "devicePlugin", "repository"],
        "https://u:plugin-pw-17@charts.example.com/nvidia",
        "plugin-pw-17",
        "gpu.devicePlugin.repository",
        (lambda t: t.inputs("nvidia-device-plugin-release")["repositoryOpts"]["repo"],),
    ),
    "hub.repository": Known(
        ["hub", "repository"],
        "https://u:hub-pw-18@charts.example.com/jupyterhub/",
        "hub-pw-18",
        "hub.repository",
        (
            lambda t: t.inputs("hub-release")["repositoryOpts"]["repo"],
            lambda t: t.outputs("hub")["chart"],
        ),
    ),
    "hub.values client_secret": Known(
        ["hub", "values", "hub"],
        {"config": {"GitHubOAuthenticator": {"client_id": "hub-id", "client_secret": "oauth-19"}}},
        "oauth-19",
        "hub.values.hub.config.GitHubOAuthenticator.client_secret",
        (lambda t: hub_values_at(t, "hub", "config", "GitHubOAuthenticator", "client_secret"),),
    ),
    "hub.values apiToken": Known(
        ["hub", "values", "hub"],
        {"services": {"monitor": {"apiToken": "api-token-20"}}},
        "api-token-20",
        "hub.values.hub.services.monitor.apiToken",
        (lambda t: hub_values_at(t, "hub", "services", "monitor", "apiToken"),),
    ),
    "hub.values env entry": Known(
        ["hub", "values", "singleuser"],
        {"extraEnv": [{"name": "WANDB_API_KEY", "value": "wandb-key-21"}]},
        "wandb-key-21",
        "hub.values.singleuser.extraEnv[0].value",
        (lambda t: hub_values_at(t, "singleuser", "extraEnv", 0, "value"),),
    ),
    "hub.values db url": Known(
        ["hub", "values", "hub"],
        {"db": {"type": "postgres", "url": "postgresql://hub:db-pw-22@db.example.com/hub"}},
        "db-pw-22",
        "hub.values.hub.db.url",
        (lambda t: hub_values_at(t, "hub", "db", "url"),),
    ),
}


def warning_for(key: str) -> str:
    return f"convecthub:{key} {PLAIN_TEXT}: set it with `pulumi config set --secret --path '{key}'`"


@pytest.mark.parametrize("case", KNOWN.values(), ids=KNOWN.keys())
def test_a_plain_secret_by_nature_is_secret_and_warned_about(trace, case: Known) -> None:
    t = trace(set_path(base_site(), case.path, case.value))
    assert case.secret in t.reached  # it does reach the resources...
    assert case.secret not in t.shown  # ...only inside secret inputs and outputs
    for carrier in case.carriers:
        assert carrier(t) == MASK
    assert t.plain_warnings == [warning_for(case.warned)]
    assert f"  warning: {warning_for(case.warned)}" in t.text.splitlines()


@pytest.mark.parametrize("case", KNOWN.values(), ids=KNOWN.keys())
def test_a_secret_by_nature_set_as_a_secret_is_not_warned_about(trace, case: Known) -> None:
    t = trace(set_path(base_site(), case.path, case.value), secret=(case.section,))
    assert case.secret in t.reached
    assert case.secret not in t.shown
    for carrier in case.carriers:
        assert carrier(t) == MASK
    assert t.plain_warnings == []


def test_only_the_secret_leaf_of_the_hub_values_is_masked(trace) -> None:
    values = {"config": {"GitHubOAuthenticator": {"client_id": "hub-id", "client_secret": "s"}}}
    t = trace(set_path(base_site(), ["hub", "values", "hub"], values))
    oauth = hub_values_at(t, "hub", "config", "GitHubOAuthenticator")
    assert oauth == {"client_id": "hub-id", "client_secret": MASK}
    assert hub_values_at(t, "proxy", "service") == {"type": "ClusterIP"}


def test_a_values_file_secret_is_masked_and_not_warned_about(trace, tmp_path) -> None:
    """Secrets in the hub's values file never reach the state in plain text either; the
    stack file holds none, so there is nothing to warn about."""
    values_file = tmp_path / "hub-values.yaml"
    values_file.write_text(
        "hub:\n  config:\n    GenericOAuthenticator:\n      client_secret: file-secret-23\n"
    )
    t = trace(set_path(base_site(), ["hub", "valuesFile"], str(values_file)))
    assert "file-secret-23" in t.reached
    assert "file-secret-23" not in t.shown
    assert hub_values_at(t, "hub", "config", "GenericOAuthenticator", "client_secret") == MASK
    assert t.plain_warnings == []


def test_names_that_only_look_like_secrets_stay_plain_and_unwarned(trace) -> None:
    values = base_site()
    set_path(values, ["hub", "values", "singleuser"], {"extraTolerations": [{"key": "gpu"}]})
    set_path(values, ["hub", "values", "hub", "existingSecret"], "hub-secret-name")
    set_path(values, ["k3s", "serverConfig", "kubelet-arg"], ["max-pods=200"])
    set_path(values, ["os", "httpProxy"], "http://proxy.example.com:3128")
    t = trace(values)
    assert t.plain_warnings == []
    assert hub_values_at(t, "singleuser", "extraTolerations") == [{"key": "gpu"}]
    assert hub_values_at(t, "hub", "existingSecret") == "hub-secret-name"
    assert t.env("master", "os-prep")["CONVECTHUB_HTTP_PROXY"] == "http://proxy.example.com:3128"
    assert "max-pods=200" in t.env("master-k3s", "k3s")["CONVECTHUB_K3S_CONFIG"]
    assert t.inputs("master-os-prep")["stdin"] != MASK


# ---- whole sections held as secret -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Section:
    """A value no rule knows for a secret, in a section held as secret: where it is set, and
    where it arrives (a secret there when the section is)."""

    change: Callable[[dict], None]
    value: str
    carriers: tuple[Callable[[Trace], object], ...]


def add_ascend_node(values: dict) -> None:
    values["nodes"].append(
        {"name": "npu1", "host": "10.0.0.13", "roles": ["agent"], "gpu": {"vendor": "ascend"}}
    )
    set_path(values, ["gpu", "ascendDevicePlugin", "image"], "10.0.0.5:5000/ascend-visible:v6")


SECTIONS = {
    "ssh": Section(
        lambda v: set_path(v, ["ssh", "user"], "operator-visible"),
        "operator-visible",
        (lambda t: t.inputs("master-facts")["connection"],),
    ),
    "nodes": Section(
        lambda v: set_path(v["nodes"][2], ["labels", "org"], "group-visible"),
        "group-visible",
        (
            lambda t: t.env("worker2-k3s", "membership")["CONVECTHUB_LABELS"],
            lambda t: t.stack_outputs()["nodes"],
            lambda t: hub_values_at(t, "singleuser", "profileList"),
            lambda t: t.outputs("hub")["profiles"],
        ),
    ),
    "os": Section(
        lambda v: set_path(v, ["os", "aptMirror"], "http://mirror-visible.example.com/ubuntu"),
        "mirror-visible",
        (
            lambda t: t.inputs("master-os-prep")["stdin"],
            lambda t: t.env("master", "os-prep")["CONVECTHUB_APT_MIRROR"],
        ),
    ),
    "k3s": Section(
        lambda v: set_path(v, ["k3s", "serverConfig", "kubelet-arg"], ["max-pods=321"]),
        "max-pods=321",
        (
            lambda t: t.env("master-k3s", "k3s")["CONVECTHUB_K3S_CONFIG"],
            lambda t: t.env("master-k3s", "k3s")["CONVECTHUB_K3S_VERSION"],
        ),
    ),
    "registry": Section(
        lambda v: set_path(v, ["registry", "insecure"], ["registry-visible.example.com:5000"]),
        "registry-visible",
        (
            lambda t: t.env("master-k3s", "k3s")["CONVECTHUB_REGISTRIES"],
            lambda t: t.env("worker1-docker", "docker")["CONVECTHUB_DOCKER_DAEMON_JSON"],
        ),
    ),
    "gpu": Section(
        add_ascend_node,
        "ascend-visible",
        (
            lambda t: t.inputs("ascend-device-plugin-daemonset")["spec"]["template"]["spec"][
                "containers"
            ][0]["image"],
            lambda t: t.env("worker2-gpu", "gpu-runtime")["CONVECTHUB_TOOLKIT_REPO"],
            lambda t: t.inputs("nvidia-device-plugin-release")["version"],
        ),
    ),
    "hub": Section(
        lambda v: set_path(v, ["hub", "values", "hub", "config"], {"X": {"id": "hub-visible"}}),
        "hub-visible",
        (
            lambda t: t.inputs("hub-release")["values"],
            lambda t: t.inputs("hub-entry")["spec"]["ports"],
            lambda t: t.outputs("hub")["urls"],
            lambda t: t.stack_outputs()["hubUrls"],
            lambda t: t.stack_outputs()["hubAdminUsers"],
        ),
    ),
    "storage": Section(
        lambda v: set_path(
            v, ["storage", "nfs"], {"server": "10.9.9.9", "path": "/export/nfs-visible"}
        ),
        "nfs-visible",
        (
            lambda t: t.env("master", "storage")["CONVECTHUB_NFS_SOURCE"],
            lambda t: t.inputs("hub-home-volume")["spec"]["nfs"],
        ),
    ),
}


def section_site(case: Section) -> dict:
    values = base_site()
    case.change(values)
    return values


@pytest.mark.parametrize("section", SECTIONS.keys())
def test_a_plain_section_shows_its_values(trace, section: str) -> None:
    """The same values, their section not secret: shown (what the next test hides is there)."""
    case = SECTIONS[section]
    t = trace(section_site(case))
    assert case.value in t.shown
    for carrier in case.carriers[1:] if section == "ssh" else case.carriers:
        assert carrier(t) != MASK


@pytest.mark.parametrize("section", SECTIONS.keys())
def test_every_value_of_a_secret_section_stays_secret(trace, section: str) -> None:
    case = SECTIONS[section]
    t = trace(section_site(case), secret=(section,))
    assert case.value in t.reached
    assert case.value not in t.shown
    for carrier in case.carriers:
        assert carrier(t) == MASK
    assert t.plain_warnings == []


def test_names_stay_plain_in_a_secret_nodes_section(trace) -> None:
    """Pulumi keeps resource names and IDs plain: a node's name and the hub's namespace stay
    plain inputs; what the node is and where it is, are not."""
    t = trace(base_site(), secret=("nodes",))
    assert t.env("worker2", "facts") == {
        "CONVECTHUB_NODE_NAME": "worker2",
        "CONVECTHUB_EXPECT_ARCH": MASK,
    }
    assert t.outputs("worker2-gpu")["vendor"] == MASK
    assert t.inputs("hub-namespace")["metadata"] == {"name": "convecthub"}
    lines = t.text.splitlines()
    assert "worker2  agent  [secret]@[secret]:[secret]  arch [secret]" in lines
    assert "10.0.0.12" not in t.shown


def test_a_secret_ssh_section_masks_the_login_the_render_prints(trace) -> None:
    t = trace(section_site(SECTIONS["ssh"]), secret=("ssh",))
    assert "master  server  [secret]@10.0.0.10:[secret]  arch amd64" in t.text.splitlines()


def test_a_secret_hub_section_keeps_the_render_readable(trace) -> None:
    t = trace(section_site(SECTIONS["hub"]), secret=("hub",))
    hub_lines = t.text.split("\nhub  ", 1)[1].splitlines()
    assert hub_lines == [
        "[secret], namespace convecthub",
        "  [secret]  (and [secret], which redirects there)",
        "  certificate: [secret]",
        "  profiles: [secret]",
    ]
    assert t.inputs("hub-release")["timeout"] == MASK
    assert t.inputs("hub-certificate")["stdin"] == MASK  # the names it is made for


def test_an_api_endpoint_of_a_secret_k3s_section_stays_secret(trace) -> None:
    values = set_path(base_site(), ["k3s", "apiEndpoint"], "10.0.0.99")
    t = trace(values, secret=("k3s",))
    assert "10.0.0.99" in t.reached
    assert "10.0.0.99" not in t.shown
    assert t.stack_outputs()["apiServer"] == MASK
    assert t.inputs("master-k3s-kubeconfig")["stdin"] == MASK
    assert t.env("worker1-k3s", "k3s")["CONVECTHUB_K3S_CONFIG"] == MASK


def test_a_generated_token_keeps_a_site_without_secrets_plain(trace) -> None:
    """No secret section, no secret by nature: every value is shown as it is."""
    t = trace(base_site())
    assert t.plain_warnings == []
    assert t.inputs("master-os-prep")["stdin"] != MASK
    assert t.stack_outputs()["hubUrls"] == {
        "https": "https://<master.address>/",
        "http": "http://<master.address>/",
    }
    assert t.stack_outputs()["hubAdminUsers"] == ["admin"]


def test_a_configured_address_of_a_secret_nodes_section_stays_secret(trace) -> None:
    """The address travels as an Output (into every node's hosts list, the k3s config, the
    certificate's names): secret from where it is read, and masked wherever it is described."""
    values = base_site()
    values["nodes"][0]["address"] = "192.168.77.10"
    t = trace(values, secret=("nodes",))
    assert "192.168.77.10" in t.reached
    assert "192.168.77.10" not in t.shown
    assert t.env("worker1", "os-prep")["CONVECTHUB_HOSTS"] == MASK
    assert t.inputs("worker1-os-prep")["stdin"] == MASK
    assert t.inputs("hub-certificate")["stdin"] == MASK
    plain = trace(values)
    hosts = plain.env("worker1", "os-prep")["CONVECTHUB_HOSTS"]
    assert hosts.startswith("master=192.168.77.10,")
