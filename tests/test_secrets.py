"""Keys and passwords are secret Outputs from the config to every resource that takes them."""

from __future__ import annotations

import asyncio
import json

import pulumi
import pytest

from components.connection import connection_args
from stacks.config import ConfigError, load_site
from tests.conftest import FAKE_KEY, resources_by_name, three_node_site, write_stack_file

PASSWORD = "pw-hunter2-do-not-print"
KEY_PASSPHRASE = "passphrase-do-not-print"
BASTION_PASSWORD = "bastion-pw-do-not-print"
INLINE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\ninline-key-do-not-print\n-----END-----\n"
TOKEN = "k3s-token-do-not-print"


def secret_site(key_file) -> dict:
    values = three_node_site()
    values["ssh"] = {
        "user": "ubuntu",
        "privateKeyFile": str(key_file),
        "privateKeyPassword": KEY_PASSPHRASE,
        "bastion": {"host": "203.0.113.5", "user": "jump", "password": BASTION_PASSWORD},
    }
    values["nodes"][1]["ssh"] = {"password": PASSWORD}
    values["nodes"][2]["ssh"] = {"privateKey": INLINE_KEY}
    values["k3s"] = {"token": TOKEN}
    return values


def everything_rendered(rendering) -> str:
    return json.dumps({"graph": rendering.as_json(), "components": rendering.outputs})


def test_no_secret_appears_anywhere_in_the_graph_or_outputs(render, key_file) -> None:
    rendering = render(secret_site(key_file))
    text = everything_rendered(rendering)
    for secret in (
        FAKE_KEY.splitlines()[1],
        PASSWORD,
        KEY_PASSPHRASE,
        BASTION_PASSWORD,
        "inline-key-do-not-print",
        TOKEN,
    ):
        assert secret not in text
    for name, resource in resources_by_name(rendering).items():
        if resource["type"] == "command:remote:Command":
            assert resource["inputs"]["connection"] == "[secret]", name
            assert "secret" not in resource["inputs"]["create"]


def test_the_model_never_prints_a_secret(key_file) -> None:
    site = load_site(secret_site(key_file)).site
    shown = repr(site) + str(site) + site.model_dump_json()
    for secret in (PASSWORD, KEY_PASSPHRASE, BASTION_PASSWORD, TOKEN, "inline-key"):
        assert secret not in shown


def test_connection_credentials_are_secret_outputs(key_file) -> None:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    site = load_site(secret_site(key_file)).site
    by_key_file = connection_args("10.0.0.10", site.ssh_for(site.nodes[0]))
    by_password = connection_args("10.0.0.11", site.ssh_for(site.nodes[1]))
    by_inline_key = connection_args("10.0.0.12", site.ssh_for(site.nodes[2]))
    proxy = pulumi.get(by_key_file, "proxy")
    outputs = {
        "key file": pulumi.get(by_key_file, "private_key"),
        "passphrase": pulumi.get(by_key_file, "private_key_password"),
        "password": pulumi.get(by_password, "password"),
        "inline key": pulumi.get(by_inline_key, "private_key"),
        "bastion password": pulumi.get(proxy, "password"),
    }

    async def secrecy() -> dict[str, bool]:
        return {name: await output.is_secret() for name, output in outputs.items()}

    try:
        assert loop.run_until_complete(secrecy()) == dict.fromkeys(outputs, True)
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def test_secure_values_of_a_stack_file_render_as_secret(tmp_path) -> None:
    from stacks.render import evaluate
    from stacks.stackfile import read_stack_file

    values = three_node_site()
    values["ssh"] = {"password": {"secure": "v1:AAAAencryptedAAAA"}}
    stack = read_stack_file(write_stack_file(tmp_path, values))
    assert stack.secret_keys == ("convecthub:ssh",)
    rendering = evaluate(stack)
    assert rendering.loaded.warnings == ()
    assert "v1:AAAA" not in everything_rendered(rendering)


def test_a_replaced_key_file_is_read_again(tmp_path) -> None:
    from components.connection import read_key_file

    path = tmp_path / "id_rotating"
    path.write_text("first key")
    assert read_key_file(str(path)) == read_key_file(str(path)) == "first key"
    replacement = tmp_path / "id_new"
    replacement.write_text("second key, longer")
    replacement.replace(path)
    assert read_key_file(str(path)) == "second key, longer"


def test_secrets_by_nature_are_warned_about_by_their_keys() -> None:
    values = three_node_site()
    values["os"] = {"httpProxy": "http://proxyuser:pw@proxy.example.com:3128"}
    values["k3s"] = {"serverConfig": {"agent-token": "a", "kubelet-arg": ["max-pods=200"]}}
    values["registry"] = {"mirrors": {"docker.io": ["https://robot:pw@mirror.example.com"]}}
    values["hub"] = {
        "values": {
            "hub": {"config": {"X": {"client_id": "id", "client_secret": "s"}}},
            "singleuser": {"extraTolerations": [{"key": "gpu", "operator": "Exists"}]},
        }
    }
    command = "set it with `pulumi config set --secret --path"
    assert load_site(values).warnings == (
        f"convecthub:os.httpProxy is stored in plain text in the stack file: {command} "
        "'os.httpProxy'`",
        "convecthub:k3s.serverConfig.agent-token is stored in plain text in the stack file: "
        f"{command} 'k3s.serverConfig.agent-token'`",
        'convecthub:registry.mirrors["docker.io"][0] is stored in plain text in the stack '
        f"file: {command} 'registry.mirrors[\"docker.io\"][0]'`",
        "convecthub:hub.values.hub.config.X.client_secret is stored in plain text in the stack "
        f"file: {command} 'hub.values.hub.config.X.client_secret'`",
    )
    secret_keys = ["convecthub:os", "convecthub:k3s", "convecthub:registry", "convecthub:hub"]
    loaded = load_site(values, secret_keys)
    assert loaded.warnings == ()
    assert loaded.secret_sections.names == frozenset({"os", "k3s", "registry", "hub"})


def test_a_secret_set_in_a_free_form_map_is_no_plain_text() -> None:
    """Once set with --secret, a stack file holds `secure:` there: the offline render reads the
    placeholder, which is nothing to warn about."""
    values = three_node_site()
    values["k3s"] = {"serverConfig": {"agent-token": "[secret]"}}
    values["hub"] = {"values": {"hub": {"cookieSecret": "[secret]"}}}
    assert load_site(values).warnings == ()


def test_secrets_of_typed_settings_render_offline_as_stand_ins(tmp_path) -> None:
    """A proxy URL, a node's address and the NFS path set with --secret are `secure:` in the
    stack file, which render cannot decrypt: it reviews the site with a stand-in of each
    setting's grammar (never the placeholder refused as a URL), all of it masked."""
    from stacks.render import evaluate
    from stacks.stackfile import read_stack_file

    secure = {"secure": "v1:AAAAencryptedAAAA"}
    values = three_node_site()
    values["os"] = {"httpProxy": secure, "noProxy": [secure]}
    values["nodes"][1]["host"] = secure  # type: ignore[index]
    values["nodes"][2]["host"] = secure  # type: ignore[index]
    values["storage"] = {"nfs": {"server": secure, "path": secure}}
    stack = read_stack_file(write_stack_file(tmp_path, values))
    rendering = evaluate(stack)
    text = everything_rendered(rendering)
    assert "v1:AAAA" not in text
    proxy = rendering.loaded.site.os.http_proxy
    assert proxy is not None and proxy.startswith("https://secret-")
    assert proxy not in text  # the os section is secret: its stand-in is masked too
    hosts = [node.host for node in rendering.loaded.site.nodes]
    assert hosts[1] != hosts[2]  # two stand-ins, no duplicate-address error
    assert {hosts[1], hosts[2]} <= {f"secret-{n}.invalid" for n in range(6)}
    assert rendering.loaded.site.storage.nfs.path.startswith("/srv/secret-")


def test_a_placeholder_is_a_value_of_its_own_outside_a_review() -> None:
    """Under the CLI the secret is decrypted: a literal `[secret]` as a URL is refused."""
    values = three_node_site()
    values["os"] = {"httpProxy": "[secret]"}
    with pytest.raises(ConfigError, match=r"^convecthub:os\.httpProxy: "):
        load_site(values)
