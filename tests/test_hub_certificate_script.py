"""hub-certificate.sh for real (openssl on this host): a self-signed certificate for the hub's
names, made once and kept; made again when the names change; removed on delete."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from components.remote_script import script_stdin

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="node scripts run as root")


def certificate(directory: Path, action: str, names: str) -> subprocess.CompletedProcess:
    env = {
        "CONVECTHUB_NODE_NAME": "master",
        "CONVECTHUB_HUB_NAMES": names,
        "CONVECTHUB_HUB_TLS_DIR": str(directory),
    }
    return subprocess.run(
        ["/bin/bash", "-s", action],
        input=script_stdin("hub-certificate.sh", env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def subject_alt_names(pem: str) -> str:
    text = subprocess.run(
        ["openssl", "x509", "-noout", "-ext", "subjectAltName"],
        input=pem,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return text.splitlines()[-1].strip()


def test_the_certificate_is_made_once_for_the_hub_names(tmp_path) -> None:
    tls = tmp_path / "hub-tls"
    first = certificate(tls, "apply", "10.0.0.10,hub.example.com")
    assert first.returncode == 0, first.stderr
    pair = json.loads(first.stdout)
    assert pair["certificate"].startswith("-----BEGIN CERTIFICATE-----")
    assert "PRIVATE KEY-----" in pair["key"]
    assert subject_alt_names(pair["certificate"]) == "IP Address:10.0.0.10, DNS:hub.example.com"
    assert (tls / "tls.key").stat().st_mode & 0o777 == 0o600
    assert tls.stat().st_mode & 0o777 == 0o700
    assert "made a self-signed certificate" in first.stderr

    again = certificate(tls, "apply", "10.0.0.10,hub.example.com")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == pair  # kept: every up serves the same certificate
    assert "made" not in again.stderr

    renamed = certificate(tls, "apply", "10.0.0.10,jupyter.example.com")
    assert renamed.returncode == 0, renamed.stderr
    assert subject_alt_names(json.loads(renamed.stdout)["certificate"]) == (
        "IP Address:10.0.0.10, DNS:jupyter.example.com"
    )

    removed = certificate(tls, "remove", "10.0.0.10")
    assert removed.returncode == 0, removed.stderr
    assert not tls.exists()
