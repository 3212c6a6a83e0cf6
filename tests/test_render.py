"""`python -m stacks render` and `schema`: the offline graph, its stability, its errors."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import jsonschema
import pytest
import yaml

from stacks.__main__ import main
from stacks.render import evaluate
from stacks.stackfile import read_stack_file
from tests.conftest import FAKE_KEY, PROJECT_DIR, name_of, three_node_site, write_stack_file
from tests.test_config import BAD_INPUTS

DEV_STACK = PROJECT_DIR / "Pulumi.dev.yaml"
SEED_STACK = PROJECT_DIR / "examples" / "Pulumi.seed-vagrant.yaml"


def run_cli(*args: str, home: str | None = None) -> subprocess.CompletedProcess:
    env = None
    if home is not None:
        import os

        env = {**os.environ, "HOME": home}
    return subprocess.run(
        [sys.executable, "-m", "stacks", *args],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_dev_stack_renders_as_json() -> None:
    result = run_cli("render", "Pulumi.dev.yaml", "--json")
    assert result.returncode == 0, result.stderr
    graph = json.loads(result.stdout)
    assert set(graph) == {"resources", "outputs"}
    kinds = [(r["type"], r["name"]) for r in graph["resources"]]
    assert kinds == [
        ("pulumi:pulumi:Stack", "convecthub-dev"),
        ("command:remote:Command", "local-facts"),
        ("convecthub:infra:BareMetalNode", "local"),
        ("command:remote:Command", "local-os-prep"),
        ("convecthub:infra:K3sServer", "local-k3s"),
        ("command:remote:Command", "local-k3s-install"),
        ("command:remote:Command", "local-k3s-kubeconfig"),
        ("command:remote:Command", "local-k3s-membership"),
        ("convecthub:infra:HubPlatform", "hub"),
        ("command:remote:Command", "hub-certificate"),
        ("kubernetes:core/v1:Namespace", "hub-namespace"),
        ("kubernetes:core/v1:Service", "hub-entry"),
        ("kubernetes:helm.sh/v3:Release", "hub-release"),
        ("random:index/randomId:RandomId", "hub-cookie-secret"),
        ("random:index/randomId:RandomId", "hub-proxy-token"),
        ("random:index/randomPassword:RandomPassword", "hub-admin-password"),
        ("pulumi:providers:kubernetes", "cluster"),
        ("random:index/randomPassword:RandomPassword", "k3s-token"),
    ]
    by_name = {r["name"]: r for r in graph["resources"]}
    assert by_name["convecthub-dev"]["parent"] is None
    assert by_name["local"]["parent"] == by_name["convecthub-dev"]["urn"]
    assert by_name["local-facts"]["parent"] == by_name["convecthub-dev"]["urn"]
    assert [name_of(u) for u in by_name["local-os-prep"]["dependencies"]] == ["local-facts"]
    assert by_name["local-k3s"]["parent"] == by_name["local"]["urn"]
    for resource in graph["resources"]:
        keys = {"urn", "type", "name", "parent", "dependencies", "inputs"}
        # Resources on the cluster name the provider built from the kubeconfig.
        assert set(resource) - {"provider"} == keys
        assert resource.get("provider", by_name["cluster"]["urn"]) == by_name["cluster"]["urn"]
    stdin = by_name["local-os-prep"]["inputs"]["stdin"]
    assert "export CONVECTHUB_SET_HOSTNAME=false\n" in stdin
    assert graph["outputs"]["nodes"]["local"]["role"] == "server"


def test_dev_stack_renders_its_steps_as_text() -> None:
    result = run_cli("render", "Pulumi.dev.yaml")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.splitlines()[0] == (
        "convecthub / dev: 1 node(s), 6 remote command(s), 18 resource(s)"
    )
    steps = [
        "1. facts      node-facts.sh",
        "2. os-prep    os-prep.sh apply",
        "3. k3s        k3s-install.sh apply",
        "4. membership k3s-membership.sh apply  (runs on local)",
    ]
    positions = [text.index(step) for step in steps]
    assert positions == sorted(positions)
    assert "CONVECTHUB_HOSTS=local=<local.address>" in text


def test_dev_stack_renders_without_any_ssh_key_or_agent(tmp_path) -> None:
    """A fresh machine: empty HOME, no agent. The dev stack names no key, so it renders."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    env["HOME"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "stacks", "render", str(DEV_STACK), "--json"],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_seed_inventory_renders_three_machines(tmp_path) -> None:
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "id_rsa").write_text(FAKE_KEY)
    result = run_cli("render", str(SEED_STACK), "--json", home=str(tmp_path))
    assert result.returncode == 0, result.stderr
    graph = json.loads(result.stdout)
    nodes = [r["name"] for r in graph["resources"] if r["type"].endswith("BareMetalNode")]
    assert nodes == ["master", "worker1", "worker2"]
    text = run_cli("render", str(SEED_STACK), home=str(tmp_path)).stdout
    assert "master  server  vagrant@127.0.0.1:2222" in text
    assert "worker1  agent  vagrant@127.0.0.1:2200" in text
    assert "worker2  agent  vagrant@127.0.0.1:2201" in text
    assert "CONVECTHUB_HOSTS=master=<master.address>,worker1=<worker1.address>," in text


def test_rendering_twice_gives_identical_inputs(tmp_path) -> None:
    path = write_stack_file(tmp_path, three_node_site())
    first, second = evaluate(read_stack_file(path)), evaluate(read_stack_file(path))
    assert first.resources == second.resources
    assert first.outputs == second.outputs
    one, two = run_cli("render", str(path), "--json"), run_cli("render", str(path), "--json")
    assert one.returncode == 0 and one.stdout == two.stdout


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [pytest.param(mutate, expected, id=case) for case, mutate, expected in BAD_INPUTS],
)
def test_render_exits_2_with_one_line_for_bad_input(tmp_path, capsys, mutate, expected) -> None:
    values = copy.deepcopy(three_node_site())
    mutate(values)
    assert main(["render", str(write_stack_file(tmp_path, values))]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"error: {expected}\n"


def test_bad_input_under_the_real_interpreter_shows_no_traceback(tmp_path) -> None:
    values = three_node_site()
    values["nodes"][1]["host"] = "10.0.0.300"
    result = run_cli("render", str(write_stack_file(tmp_path, values)))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: convecthub:nodes[1].host: '10.0.0.300'")


@pytest.mark.parametrize(
    ("file_name", "content", "expected"),
    [
        ("Pulumi.x.yaml", None, "error: {path}: cannot read it (No such file or directory)\n"),
        (
            "Pulumi.x.yaml",
            "config: [",
            "error: {path}: is not valid YAML at line 1: fix the indentation or quoting there\n",
        ),
        (
            "site.yaml",
            "config: {}\n",
            "error: {path}: a stack file is named Pulumi.<stack>.yaml, e.g. Pulumi.dev.yaml\n",
        ),
        (
            "Pulumi.x.yaml",
            "config: {}\n",
            "error: convecthub:nodes: is required: list the "
            "fleet: one entry per machine with name, host and roles\n",
        ),
    ],
)
def test_render_exits_2_for_a_bad_stack_file(tmp_path, capsys, file_name, content, expected):
    path = tmp_path / file_name
    if content is not None:
        path.write_text(content)
    assert main(["render", str(path)]) == 2
    assert capsys.readouterr().err == expected.format(path=path)


def test_schema_checks_stack_files() -> None:
    result = run_cli("schema")
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for stack_file in (DEV_STACK, SEED_STACK):
        validator.validate(yaml.safe_load(stack_file.read_text()))
    secured = {
        "config": {
            "convecthub:nodes": three_node_site()["nodes"],
            "convecthub:ssh": {"password": {"secure": "v1:abc"}},
            "kubernetes:context": "other namespaces pass",
        }
    }
    validator.validate(secured)
    typo = {"config": {"convecthub:nodez": []}}
    assert not validator.is_valid(typo)
    bad_node = {
        "config": {
            "convecthub:nodes": [
                {"name": "a", "host": "h", "roles": ["server"], "gpu": {"vendor": "amd"}}
            ]
        }
    }
    assert not validator.is_valid(bad_node)


@pytest.mark.timeout(60)
def test_a_run_that_ended_early_does_not_hold_up_the_next() -> None:
    """A run cut off midway (an e2e test kills one) leaves pending Output work of its own,
    closed, event loop in the SDK's settings. The next render used to wait for it forever."""
    import asyncio

    from pulumi.runtime import settings

    loop = asyncio.new_event_loop()
    never_done = loop.create_future()
    with settings.SETTINGS.lock:
        settings.SETTINGS.outputs.add(never_done)
    loop.close()
    rendering = evaluate(read_stack_file(DEV_STACK))
    # The stack, then its first child by URN: the facts step (the stack's own).
    assert [r["name"] for r in rendering.resources][:2] == ["convecthub-dev", "local-facts"]
    assert not settings.SETTINGS.outputs  # and this run leaves none behind
