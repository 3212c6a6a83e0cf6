"""Keys and passwords are secret Outputs from the config to every resource that takes them."""

from __future__ import annotations

import asyncio
import json

import pulumi

from components.connection import connection_args
from stacks.config import load_site
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
