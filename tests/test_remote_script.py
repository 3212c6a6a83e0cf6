"""How scripts are composed into remote commands: exact strings, and values that survive bash."""

from __future__ import annotations

import re
import subprocess

import pytest

from components.remote_script import (
    COMMON_SCRIPT,
    SCRIPTS_DIR,
    env_preamble,
    run_command,
    script_stdin,
    script_text,
    uses_common,
)


@pytest.mark.parametrize(
    ("script", "action", "as_root", "user", "expected"),
    [
        ("os-prep.sh", "apply", True, "ubuntu", "sudo -n /bin/bash -s apply  # os-prep.sh"),
        ("os-prep.sh", "remove", True, "ubuntu", "sudo -n /bin/bash -s remove  # os-prep.sh"),
        ("os-prep.sh", "apply", True, "root", "/bin/bash -s apply  # os-prep.sh"),
        ("node-facts.sh", None, False, "ubuntu", "/bin/bash -s  # node-facts.sh"),
    ],
)
def test_run_command(script, action, as_root, user, expected) -> None:
    assert run_command(script, action, as_root=as_root, login_user=user) == expected


def test_preamble_exports_in_name_order_with_shell_quoting() -> None:
    assert env_preamble({"CONVECTHUB_B": "two words", "CONVECTHUB_A": "plain"}) == (
        "export CONVECTHUB_A=plain\nexport CONVECTHUB_B='two words'\n"
    )
    assert env_preamble({}) == ""


def test_preamble_refuses_names_outside_the_convention() -> None:
    with pytest.raises(ValueError, match="CONVECTHUB_"):
        env_preamble({"PATH": "/tmp"})


def test_values_reach_the_script_byte_for_byte() -> None:
    awkward = {
        "CONVECTHUB_QUOTES": 'it\'s "quoted" $HOME `id` \\ back',
        "CONVECTHUB_LINES": "first\nsecond\ttab",
        "CONVECTHUB_EMPTY": "",
    }
    script = env_preamble(awkward) + 'printf "%s\\0" "$CONVECTHUB_QUOTES" "$CONVECTHUB_LINES" '
    script += '"$CONVECTHUB_EMPTY"\n'
    result = subprocess.run(
        ["/bin/bash", "-s"], input=script.encode(), capture_output=True, check=True
    )
    assert result.stdout.split(b"\0")[:3] == [
        awkward["CONVECTHUB_QUOTES"].encode(),
        awkward["CONVECTHUB_LINES"].encode(),
        b"",
    ]


NODE_SCRIPTS = sorted(p.name for p in SCRIPTS_DIR.glob("*.sh") if p.name != COMMON_SCRIPT)


def test_the_shared_library_only_defines_functions() -> None:
    """common.sh runs ahead of scripts on stdin: it must do nothing but define functions."""
    text = script_text(COMMON_SCRIPT)
    body = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    depth = 0
    for line in body:
        if depth == 0:
            assert re.match(r"^[a-z_]+\(\) \{", line), line
        depth += line.count("{") - line.count("}")
    assert depth == 0


@pytest.mark.parametrize("name", NODE_SCRIPTS)
def test_scripts_that_source_the_library_get_it_on_stdin(name: str) -> None:
    text = script_text(name)
    stdin = script_stdin(name, {"CONVECTHUB_NODE_NAME": "n1"})
    library = script_text(COMMON_SCRIPT) if uses_common(name) else ""
    assert stdin == "export CONVECTHUB_NODE_NAME=n1\n" + library + text
    assert uses_common(name)


@pytest.mark.parametrize("name", NODE_SCRIPTS)
def test_every_script_guards_its_stdin(name: str) -> None:
    """Run from stdin, a script's children must not read the rest of it: every script is
    functions, a `main` that first closes stdin, and one last line that calls it."""
    text = script_text(name)
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines[-1] == 'main "$@"'
    main_body = text.split("main() {\n", 1)[1]
    assert main_body.splitlines()[0].strip() == "exec </dev/null"
