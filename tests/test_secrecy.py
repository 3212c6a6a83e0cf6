"""The rules that say which values are secrets (model/secrecy.py), on exact inputs."""

from __future__ import annotations

import asyncio

import pulumi
import pytest

from model.secrecy import (
    SecretSections,
    has_credentials_in_url,
    holds_secret,
    is_secret_name,
    name_words,
    secret_value_paths,
    with_secrets_at,
)


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("client_secret", ["client", "secret"]),
        ("cookieSecret", ["cookie", "secret"]),
        ("agent-token", ["agent", "token"]),
        ("APIKey", ["api", "key"]),
        ("OAUTH_CLIENT_SECRET", ["oauth", "client", "secret"]),
        ("etcd-s3-secret-key", ["etcd", "s", "3", "secret", "key"]),
        ("docker.io", ["docker", "io"]),
    ],
)
def test_a_key_name_splits_into_lowercase_words(name, words) -> None:
    assert name_words(name) == words


SECRET_NAMES = [
    "client_secret",  # hub.config.GitHubOAuthenticator
    "cookieSecret",
    "secretToken",  # proxy.secretToken
    "secret",
    "password",
    "db_password",
    "PASSWD",
    "passphrase",
    "token",
    "agent-token",  # k3s
    "etcd-s3-secret-key",
    "etcd-s3-access-key",
    "etcd-s3-session-token",
    "apiToken",
    "apitoken",
    "OAUTH_CLIENT_SECRET",
    "GITHUB_TOKEN",
    "credentials",
    "apiKey",
    "APIKey",
    "api_key",
    "privateKey",
    "tls_key",
    "signingKey",
    "smtp_pass",
    "pwd",
    "vpn-auth",  # k3s: name=tailscale,joinKey=...
    "auth",  # docker's base64 user:password
]
PLAIN_NAMES = [
    "key",  # tolerations, selectors and keyRefs name a label or a field with it
    "keyUrl",
    "toolkitKeyUrl",
    "keyFile",
    "publicKey",
    "hostKey",
    "secretName",
    "secretKeyRef",
    "existingSecret",
    "passwordFile",
    "tokenFile",
    "agent-token-file",
    "tokenTTL",
    "token_type",
    "datastore-endpoint",  # secret only with credentials in its URL
    "datastore-keyfile",
    "client_id",
    "display_name",
    "kubelet-arg",
    "monkey",
    "authenticator_class",
    "enable_auth_state",
    "",
]


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_names_of_secrets(name) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", PLAIN_NAMES)
def test_names_that_hold_no_secret(name) -> None:
    assert not is_secret_name(name)


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("http://proxyuser:pw@proxy.example.com:3128", True),
        ("https://ghp_token@github.example.com/org/repo", True),  # a token as the user
        ("HTTP://user@proxy:3128", True),
        ("postgres://k3s:pw@10.0.0.3:5432/k3s", True),
        ("mysql://k3s:pw@tcp(10.0.0.3:3306)/k3s", True),
        ("http://proxy.example.com:3128", False),
        ("https://mirror.example.com/a@b", False),  # an @ in the path is no userinfo
        ("ssh://git@git.example.com/repo", False),  # a login name, no password
        ("user:pw@host", False),  # no scheme: no URL
        ("not a url", False),
        ("", False),
    ],
)
def test_urls_with_credentials(text, secret) -> None:
    assert has_credentials_in_url(text) is secret


def test_the_secret_leaves_of_chart_values() -> None:
    values = {
        "hub": {
            "config": {
                "GitHubOAuthenticator": {"client_id": "id", "client_secret": "s"},
                "JupyterHub": {"cookie_secret": 42},
            },
            "extraEnv": [{"name": "API_TOKEN", "value": "t"}, {"name": "LANG", "value": "C"}],
            "db": {"url": "postgresql://hub:pw@db:5432/hub", "password": None},
            "existingSecret": "hub-secrets",
        },
        "proxy": {"https": {"secret": {"name": "tls", "key": "tls.key", "crt": "tls.crt"}}},
        "singleuser": {
            "extraTolerations": [{"key": "gpu", "operator": "Exists"}],
            "imagePullSecret": {"create": True, "username": "u", "password": "p"},
            "cmd": ["jupyterhub-singleuser", "--NotebookApp.token=abc", "--port=8888"],
        },
        "tokens": ["a", "b"],
        "enabled": True,
    }
    assert list(secret_value_paths(values)) == [
        ("hub", "config", "GitHubOAuthenticator", "client_secret"),
        ("hub", "config", "JupyterHub", "cookie_secret"),
        ("hub", "extraEnv", 0, "value"),
        ("hub", "db", "url"),
        ("singleuser", "imagePullSecret", "password"),
        ("singleuser", "cmd", 1),
        ("tokens", 0),
        ("tokens", 1),
    ]


def test_the_secret_leaves_of_k3s_config_and_daemon_json() -> None:
    server_config = {
        "agent-token": "a",
        "datastore-endpoint": "postgres://k3s:pw@10.0.0.3:5432/k3s",
        "kube-apiserver-arg": ["oidc-client-secret=s", "oidc-client-id=i"],
        "kubelet-arg": ["max-pods=200"],
        "secrets-encryption": True,
    }
    assert list(secret_value_paths(server_config)) == [
        ("agent-token",),
        ("datastore-endpoint",),
        ("kube-apiserver-arg", 0),
    ]
    assert holds_secret({"proxies": {"https-proxy": "http://u:pw@proxy:3128"}})
    assert not holds_secret({"log-driver": "json-file", "log-opts": {"max-size": "10m"}})
    assert not holds_secret({"datastore-endpoint": "https://10.0.0.3:2379"})


@pytest.fixture
def loop():
    """An event loop of the test's own, for the Outputs it makes."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield loop
    asyncio.set_event_loop(None)
    loop.close()


def resolve(loop, output: pulumi.Output) -> tuple[object, bool]:
    async def both() -> tuple[object, bool]:
        return await output.future(), await output.is_secret()

    return loop.run_until_complete(both())


def test_secrets_at_paths_become_secret_outputs_and_the_rest_is_shared(loop) -> None:
    plain = {"profiles": [{"name": "CPU"}], "storage": {"capacity": "1Ti"}}
    values = {"hub": {"client_secret": "s", "client_id": "i"}, "singleuser": plain}
    hidden = with_secrets_at(
        values, [("hub", "client_secret"), ("hub", "gone", "deeper"), ("absent",)]
    )
    assert values["hub"]["client_secret"] == "s"  # the input is not changed
    assert hidden["singleuser"] is plain
    assert hidden["hub"]["client_id"] == "i"
    assert resolve(loop, hidden["hub"]["client_secret"]) == ("s", True)
    assert set(hidden) == {"hub", "singleuser"}


def test_secret_sections_come_from_this_namespace_only() -> None:
    sections = SecretSections.of_keys(
        ["convecthub:hub", "convecthub:ssh", "kubernetes:context", "os", "other:nodes", "x"],
        "convecthub",
    )
    assert sections.names == frozenset({"hub", "ssh", "os"})
    assert "hub" in sections and "nodes" not in sections
    assert sections.any(["nodes", "ssh"]) and not sections.any(["nodes", "k3s"])
    assert not SecretSections()


def test_wrap_leaves_values_of_plain_sections_alone(loop) -> None:
    sections = SecretSections(frozenset({"hub"}))
    assert sections.wrap("ubuntu", "ssh", "nodes") == "ubuntu"
    assert resolve(loop, sections.wrap(8443, "nodes", "hub")) == (8443, True)


def test_split_env_by_source_sections_and_by_value() -> None:
    sections = SecretSections(frozenset({"os"}))
    env = {
        "CONVECTHUB_NODE_NAME": "n1",
        "CONVECTHUB_APT_MIRROR": "http://m/ubuntu",
        "CONVECTHUB_LABELS": "a=b",
        "CONVECTHUB_REGISTRIES": "mirrors: {}",
    }
    plain, secret = sections.split_env(
        env,
        {"CONVECTHUB_NODE_NAME": (), "CONVECTHUB_LABELS": ("nodes",)},
        default=("os",),
        secret=["CONVECTHUB_LABELS"],
    )
    assert plain == {"CONVECTHUB_NODE_NAME": "n1"}
    assert secret == {
        "CONVECTHUB_APT_MIRROR": "http://m/ubuntu",
        "CONVECTHUB_LABELS": "a=b",
        "CONVECTHUB_REGISTRIES": "mirrors: {}",
    }
    assert SecretSections().split_env(env, {}) == (env, {})


def test_a_secret_output_in_a_steps_environment_is_described_masked(loop) -> None:
    from components.remote_script import ScriptStep

    step = ScriptStep(
        "os-prep.sh",
        env={"CONVECTHUB_A": "shown", "CONVECTHUB_B": pulumi.Output.secret("hidden-b")},
        secret_env={"CONVECTHUB_C": "hidden-c"},
    )
    described, described_secret = resolve(loop, step.describe())
    assert described == {
        "script": "os-prep.sh",
        "env": {"CONVECTHUB_A": "shown", "CONVECTHUB_B": "[secret]", "CONVECTHUB_C": "[secret]"},
    }
    assert described_secret is False  # what people read holds no secret
    stdin, stdin_secret = resolve(loop, step.stdin())
    assert "export CONVECTHUB_B=hidden-b\n" in stdin
    assert "export CONVECTHUB_C=hidden-c\n" in stdin
    assert stdin_secret is True
