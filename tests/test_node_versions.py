"""The preflight reports what a node runs already: its k3s release and NVIDIA driver version
(null when it has none), and the render and the nodes output show them."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import STANDINS
from tests.test_node_facts_script import run_facts


def standin_tools(directory: Path, *, k3s: str | None, driver: str | None) -> Path:
    """A PATH directory with a stand-in k3s that says it is `k3s` and a stand-in nvidia-smi
    that answers with `driver` (each left out when None)."""
    directory.mkdir()
    if k3s is not None:
        binary = directory / "k3s"
        binary.write_text((STANDINS / "k3s" / "k3s").read_text().replace("@VERSION@", k3s))
        binary.chmod(0o755)
    if driver is not None:
        smi = directory / "nvidia-smi"
        smi.write_text(
            "#!/bin/sh\n"
            "# STAND-IN for nvidia-smi (tests only): a GPU whose driver answers.\n"
            'case "$1" in\n'
            '  -L) echo "GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-stand-in)" ;;\n'
            f'  --query-gpu=driver_version) echo "{driver}" ;;\n'
            "  *) exit 2 ;;\n"
            "esac\n"
        )
        smi.chmod(0o755)
    return directory


def test_a_node_without_k3s_or_driver_reports_null(tmp_path) -> None:
    result = run_facts(path_prefix=standin_tools(tmp_path / "bin", k3s=None, driver=None))
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    assert facts["k3sVersion"] is None
    assert facts["nvidiaDriver"] is None


def test_a_node_reports_the_k3s_and_driver_it_runs(tmp_path) -> None:
    tools = standin_tools(tmp_path / "bin", k3s="v1.31.4+k3s1", driver="550.127.05")
    result = run_facts(path_prefix=tools)
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    assert facts["k3sVersion"] == "v1.31.4+k3s1"
    assert facts["nvidiaDriver"] == "550.127.05"


def test_a_driver_that_does_not_answer_reports_null(tmp_path) -> None:
    tools = standin_tools(tmp_path / "bin", k3s=None, driver=None)
    broken = tools / "nvidia-smi"
    broken.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    broken.chmod(0o755)
    result = run_facts(path_prefix=tools)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["nvidiaDriver"] is None


def test_the_nodes_output_and_the_render_show_them(render) -> None:
    from stacks.render import format_text
    from tests.conftest import three_node_site

    rendering = render(three_node_site())
    summary = rendering.as_json()["outputs"]["versions"]
    assert summary["worker2"] == {
        "k3s": {"runs": "<worker2.k3sVersion>", "target": rendering.loaded.site.k3s.version},
        "nvidiaDriver": {"runs": "<worker2.nvidiaDriver>"},  # its own driver stays
    }
    assert summary["worker1"] == {
        "k3s": {"runs": "<worker1.k3sVersion>", "target": rendering.loaded.site.k3s.version}
    }
    assert (
        f"  k3s <master.k3sVersion> -> {rendering.loaded.site.k3s.version}"
        in format_text(rendering).splitlines()
    )


def test_what_a_node_reports_beyond_a_version_shows_as_none() -> None:
    from components.node_facts import parse_facts

    reported = {
        "address": "10.0.0.5",
        "home": "/home/u",
        "k3sVersion": "v1.37.2+k3s1\nserver: https://evil",
        "nvidiaDriver": ["580.126.09"],
    }
    facts = parse_facts("n1", json.dumps(reported))
    assert facts["k3sVersion"] is None and facts["nvidiaDriver"] is None
    reported.update(k3sVersion="v1.37.2+k3s1", nvidiaDriver="580.126.09")
    facts = parse_facts("n1", json.dumps(reported))
    assert (facts["k3sVersion"], facts["nvidiaDriver"]) == ("v1.37.2+k3s1", "580.126.09")
