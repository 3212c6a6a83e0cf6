"""`python -m stacks known-hosts --stack SITE [--write]`: collect and pin the fleet's host keys.

Each node's key is asked for once, on its SSH port: with `ssh-keyscan` when the provisioner
reaches it directly, and through its bastion (`ssh -W`, the bastion's own key checked against
its pinned or just collected one) when it has one; the node is never logged in to. One key per
machine, ed25519 when it offers one (else ECDSA, else RSA; `--type` chooses). Every key is
printed with its SHA256 fingerprint, as `ssh-keygen -l` prints it, for review; with `--write`
(or a yes at the terminal) the new ones go into the stack file as each node's `ssh.hostKey`
(a bastion's `bastion.hostKey`), the rest of the file, comments included, left as it was.

A key that differs from the pinned one is never written: it is an error line (someone may be
intercepting the connection, or the machine was reinstalled). So is a machine that shows no key.
Exit codes: 0 done (or reviewed, nothing to write); 1 a machine showed no key, or another key
than its pinned one; 2 bad usage or config.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

from components.connection import login_user
from model.secrecy import SECRET_MASK
from model.site import Site
from model.ssh_keys import SHORT_TYPES, HostKey, HostKeyError, parse_host_key
from stacks.config import NAMESPACE, ConfigError, decode_config, load_site
from stacks.host_keys import Target, targets
from stacks.stackfile import PROJECT_DIR, STACK_NAME, read_stack_file, stack_file_path

DEFAULT_TIMEOUT = 5
PREFERENCE = ("ed25519", "ecdsa", "rsa")
# What the SSH client offers to verify, per short type, in the order it prefers them.
_ALGORITHMS = {
    "ed25519": ("ssh-ed25519",),
    "ecdsa": ("ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521"),
    "rsa": ("rsa-sha2-512", "rsa-sha2-256"),
}
_NODE_ALIAS = "convecthub-node"
_BASTION_ALIAS = "convecthub-bastion"
_PARALLEL = 32


@dataclass(frozen=True)
class Seen:
    """What one machine showed: its key, or why there is none."""

    target: Target
    key: HostKey | None
    error: str | None = None


class ScanError(Exception):
    """A machine showed no key: the reason, in a few words."""


def load_stack_site(stack_file: Path) -> Site:
    """The site a stack file describes, checked as the program checks it (one line if not)."""
    if not stack_file.is_file():
        raise ConfigError(
            str(stack_file),
            "does not exist: write the site's stack file there (see examples/), or import it "
            "with `python -m stacks import-inventory`",
        )
    with contextlib.chdir(stack_file.parent):  # relative paths resolve as under the CLI
        stack = read_stack_file(stack_file)
        return load_site(decode_config(stack.config), stack.secret_keys).site


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ConfigError(
            name, "is not on PATH: install the OpenSSH client (apt-get install openssh-client)"
        )
    return found


def _order(types: Iterable[str]) -> list[str]:
    return [short for short in PREFERENCE if short in types]


def _best(keys: Iterable[HostKey], types: list[str]) -> HostKey | None:
    ranked = [(next(i for i, s in enumerate(types) if k.type in SHORT_TYPES[s]), k) for k in keys]
    return min(ranked, key=lambda pair: pair[0])[1] if ranked else None


def _reason(stderr: str, fallback: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("#")]
    return lines[-1].rstrip(".") if lines else fallback


def scan_direct(host: str, port: int, timeout: int, types: list[str]) -> HostKey:
    """The key `host` shows on `port`, asked with ssh-keyscan."""
    command = [_tool("ssh-keyscan"), "-T", str(timeout), "-p", str(port)]
    command += ["-t", ",".join(types), "--", host]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout * 3 + 5, check=False
        )
    except subprocess.TimeoutExpired:
        raise ScanError(f"no answer within {timeout}s") from None
    keys = []
    for line in result.stdout.splitlines():
        fields = line.split()
        if line.startswith("#") or len(fields) < 3:
            continue
        with contextlib.suppress(HostKeyError):
            keys.append(parse_host_key(f"{fields[1]} {fields[2]}"))
    best = _best(keys, types)
    if best is None:
        raise ScanError(
            _reason(
                result.stderr,
                f"no SSH answer on port {port} (nothing listening, or no reply within {timeout}s)",
            )
        )
    return best


def _identity(target: Target, directory: Path) -> list[str]:
    """The ssh options that log in to a bastion as its settings say (key file, key, agent)."""
    bastion = target.bastion
    assert bastion is not None
    if bastion.password is not None and bastion.private_key_file is None:
        raise ScanError(
            "it logs in with a password, which known-hosts cannot type: give the bastion a "
            "privateKeyFile or load its key into the SSH agent"
        )
    if bastion.private_key is not None:
        key = bastion.private_key.get_secret_value()
        if key == SECRET_MASK:  # the stack file holds it encrypted
            raise ScanError(
                "its privateKey is a secret the stack file holds encrypted: give the bastion "
                "a privateKeyFile, or load its key into the SSH agent, for known-hosts"
            )
        path = directory / "bastion-key"
        path.touch(mode=0o600)
        path.write_text(key if key.endswith("\n") else key + "\n", encoding="utf-8")
        return ["-i", str(path), "-o", "IdentitiesOnly=yes"]
    if bastion.private_key_file is not None:
        return ["-i", bastion.private_key_file, "-o", "IdentitiesOnly=yes"]
    return []


def scan_via(
    node: Target, bastion_key: HostKey, timeout: int, types: list[str], directory: Path
) -> HostKey:
    """The key `node` shows, asked through its bastion (whose key must be `bastion_key`): an
    ssh that stops after the key exchange, offering no credentials to the node."""
    bastion = node.via
    assert bastion is not None and bastion.bastion is not None
    bastion_known = directory / "bastion_known_hosts"
    bastion_known.write_text(f"{_BASTION_ALIAS} {bastion_key.text}\n", encoding="utf-8")
    node_known = directory / "node_known_hosts"
    node_known.write_text("", encoding="utf-8")
    jump = [
        _tool("ssh"), "-F", "/dev/null",
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={bastion_known}",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", f"HostKeyAlias={_BASTION_ALIAS}",
        "-o", f"ConnectTimeout={timeout}",
        "-p", str(bastion.port),
        *_identity(bastion, directory),
        "-W", "%h:%p",
    ]  # fmt: skip
    destination = f"{login_user(bastion.bastion)}@{bastion.host}"
    # ssh expands %-tokens in ProxyCommand: a literal % (in a path) is written %%.
    proxy = shlex.join([*jump, destination]).replace("%", "%%").replace("%%h:%%p", "%h:%p")
    algorithms = ",".join(a for short in types for a in _ALGORITHMS[short])
    command = [
        _tool("ssh"), "-F", "/dev/null",
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=accept-new",
        "-o", f"UserKnownHostsFile={node_known}",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "HashKnownHosts=no",
        "-o", "CheckHostIP=no",
        "-o", f"HostKeyAlias={_NODE_ALIAS}",
        "-o", f"HostKeyAlgorithms={algorithms}",
        # Stop after the key exchange: no credentials go to a machine not verified yet.
        "-o", "PreferredAuthentications=publickey",
        "-o", "PubkeyAuthentication=no",
        "-o", f"ConnectTimeout={timeout}",
        "-o", f"ProxyCommand={proxy}",
        "-p", str(node.port),
        f"{login_user(node.ssh)}@{node.host}",
        "true",
    ]  # fmt: skip
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout * 4 + 5, check=False
        )
    except subprocess.TimeoutExpired:
        raise ScanError(f"no answer through bastion {bastion.name} within {timeout}s") from None
    keys = []
    for line in node_known.read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[0] == _NODE_ALIAS:
            with contextlib.suppress(HostKeyError):
                keys.append(parse_host_key(f"{fields[1]} {fields[2]}"))
    best = _best(keys, types)
    if best is None:
        reason = _reason(result.stderr, "no SSH answer")
        if "Host key verification failed" in result.stderr or "IDENTIFICATION HAS CHANGED" in (
            result.stderr
        ):
            reason = f"bastion {bastion.name} showed another host key than {bastion_key.label}"
        raise ScanError(f"through bastion {bastion.name}: {reason}")
    return best


def _short_type(key_type: str) -> str | None:
    return next((short for short, full in SHORT_TYPES.items() if key_type in full), None)


def _types_for(target: Target, order: list[str]) -> list[str]:
    """A pinned machine is asked for its pinned key's type (to compare), others for `order`."""
    if target.pinned is not None:
        short = _short_type(parse_host_key(target.pinned).type)
        if short is not None:
            return [short]
    return order


def collect(
    wanted: list[Target], *, timeout: int = DEFAULT_TIMEOUT, types: Iterable[str] = PREFERENCE
) -> list[Seen]:
    """The key each of `wanted` shows, bastions first: their nodes are reached through them,
    each bastion's key checked against its pinned one, or else the one it just showed."""
    order = _order(types)
    bastions = {t.where: t for t in wanted if t.kind == "bastion"}
    for target in wanted:
        if target.via is not None and target.via.pinned is None:
            bastions.setdefault(target.via.where, target.via)

    def scan_bastion(target: Target) -> HostKey | str:
        try:
            return scan_direct(target.host, target.port, timeout, _types_for(target, order))
        except ScanError as error:
            return str(error)

    def scan_node(target: Target) -> Seen:
        try:
            if target.via is None:
                key = scan_direct(target.host, target.port, timeout, _types_for(target, order))
                return Seen(target, key)
            if target.via.pinned is not None:
                bastion_key = parse_host_key(target.via.pinned)
            else:
                shown = bastion_seen[target.via.where]
                if shown.key is None:
                    raise ScanError(f"its bastion {target.via.name} showed no host key")
                bastion_key = shown.key
            with tempfile.TemporaryDirectory(prefix="convecthub-known-hosts-") as directory:
                key = scan_via(
                    target, bastion_key, timeout, _types_for(target, order), Path(directory)
                )
            return Seen(target, key)
        except ScanError as error:
            return Seen(target, None, str(error))

    with ThreadPoolExecutor(max_workers=_PARALLEL) as pool:
        # A bastion configured in several places is asked once.
        distinct = {(t.host.lower(), t.port): t for t in bastions.values()}
        answers = dict(zip(distinct, pool.map(scan_bastion, distinct.values()), strict=True))
        bastion_seen = {}
        for where, target in bastions.items():
            answer = answers[(target.host.lower(), target.port)]
            if isinstance(answer, HostKey):
                bastion_seen[where] = Seen(target, answer)
            else:
                bastion_seen[where] = Seen(target, None, answer)
        node_seen = list(pool.map(scan_node, [t for t in wanted if t.kind == "node"]))
    return [*(bastion_seen[t.where] for t in wanted if t.kind == "bastion"), *node_seen]


# --- the stack file ---------------------------------------------------------------------------


class _Edit:
    def __init__(self, index: int, text: str):
        self.index = index
        self.text = text


def _line_start(text: str, line: int) -> int:
    """The index where `line` (0-based) starts; the end of the text past the last line."""
    index = 0
    for _ in range(line):
        found = text.find("\n", index)
        if found < 0:
            return len(text)
        index = found + 1
    return index


def _mapping_value(mapping: yaml.MappingNode, key: str) -> yaml.Node | None:
    for key_node, value in mapping.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
            return value
    return None


def _insert(text: str, mapping: yaml.MappingNode, key: str, value: str) -> _Edit:
    """The edit that adds `key: value` to `mapping`, in the mapping's own style."""
    if mapping.flow_style:
        end = mapping.end_mark.index
        if text[end - 1 : end] != "}":
            raise ValueError("a flow mapping that does not end with }")
        separator = ", " if mapping.value else ""
        return _Edit(end - 1, f"{separator}{key}: {value}")
    if not mapping.value:
        raise ValueError("an empty block mapping")
    first_key = mapping.value[0][0]
    column = first_key.start_mark.column
    line_start = _line_start(text, first_key.start_mark.line)
    if not text[line_start : first_key.start_mark.index].strip():
        # The first key has its own line: the new key goes on a line before it.
        return _Edit(line_start, f"{' ' * column}{key}: {value}\n")
    # A list item's mapping (`- name: x`): the new key goes after a one-line scalar pair.
    pairs = sorted(
        (pair for pair in mapping.value if isinstance(pair[1], yaml.ScalarNode)),
        key=lambda pair: pair[0].value != "host",
    )
    for key_node, value_node in pairs:
        if value_node.end_mark.line == key_node.start_mark.line:
            after = _line_start(text, value_node.end_mark.line + 1)
            newline = "" if text[:after].endswith("\n") else "\n"
            return _Edit(after, f"{newline}{' ' * column}{key}: {value}\n")
    raise ValueError("no line to put it after")


def _config_mapping(root: yaml.Node, part: str) -> yaml.Node | None:
    config = _mapping_value(root, "config") if isinstance(root, yaml.MappingNode) else None
    if not isinstance(config, yaml.MappingNode):
        return None
    found = _mapping_value(config, f"{NAMESPACE}:{part}")
    return found if found is not None else _mapping_value(config, part)


def add_host_keys(text: str, additions: dict[tuple[int | str, ...], str]) -> str:
    """`text` (a stack file) with each `where -> key` of `additions` set as `hostKey` in the
    mapping at `where` (made under the node when it has no `ssh:`). Everything else, comments
    included, stays as it was; a file this cannot edit safely is a ValueError."""
    root = yaml.compose(text)
    edits = []
    for where, key in additions.items():
        node = _config_mapping(root, str(where[0]))
        for depth, part in enumerate(where[1:], start=1):
            last = depth == len(where) - 1
            if isinstance(part, int):
                if not isinstance(node, yaml.SequenceNode) or part >= len(node.value):
                    raise ValueError(f"no {where[: depth + 1]}")
                node = node.value[part]
                continue
            if not isinstance(node, yaml.MappingNode):
                raise ValueError(f"{where[:depth]} is not a mapping")
            child = _mapping_value(node, part)
            if child is None and last and part == "ssh":
                edits.append(_insert(text, node, "ssh", "{hostKey: " + key + "}"))
                node = None
                break
            node = child
        if node is None:
            continue
        if not isinstance(node, yaml.MappingNode):
            raise ValueError(f"{where} is not a mapping")
        if _mapping_value(node, "hostKey") is not None:
            raise ValueError(f"{where} has a hostKey already")
        edits.append(_insert(text, node, "hostKey", key))
    edited = text
    for edit in sorted(edits, key=lambda e: e.index, reverse=True):
        edited = edited[: edit.index] + edit.text + edited[edit.index :]
    _check_edit(text, edited, additions)
    return edited


def _check_edit(before: str, after: str, additions: dict[tuple[int | str, ...], str]) -> None:
    """The edited file must read as the old one plus exactly the keys added."""
    expected = copy.deepcopy(yaml.safe_load(before))
    config = expected["config"]
    for where, key in additions.items():
        top = f"{NAMESPACE}:{where[0]}"
        node = config[top if top in config else where[0]]
        for part in where[1:]:
            if isinstance(node, dict) and part not in node:
                node[part] = {}
            node = node[part]
        node["hostKey"] = key
    if yaml.safe_load(after) != expected:
        raise ValueError("the edited file reads differently")


def write_host_keys(stack_file: Path, additions: dict[tuple[int | str, ...], str]) -> None:
    """Set the keys in the stack file (written whole, atomically, its mode kept)."""
    text = stack_file.read_text(encoding="utf-8")
    try:
        edited = add_host_keys(text, additions)
    except (ValueError, yaml.YAMLError, KeyError, TypeError) as problem:
        paths = ", ".join(
            "convecthub:" + ".".join(str(p) for p in where) + ".hostKey" for where in additions
        )
        raise ConfigError(
            str(stack_file),
            f"cannot add the host keys to it without changing anything else ({problem}): set "
            f"{paths} by hand to the keys printed above",
        ) from None
    temporary = stack_file.with_name(f".{stack_file.name}.known-hosts")
    temporary.write_text(edited, encoding="utf-8")
    os.chmod(temporary, stack_file.stat().st_mode & 0o7777)
    os.replace(temporary, stack_file)


# --- the command ------------------------------------------------------------------------------


def register(commands: argparse._SubParsersAction) -> None:
    """Add `known-hosts` to the subcommands of `python -m stacks`."""
    command = commands.add_parser(
        "known-hosts",
        help="collect the nodes' (and bastions') SSH host keys and pin them in the stack file",
        description="Collect each node's and bastion's SSH host key once, print their SHA256 "
        "fingerprints, and with --write pin the new ones in Pulumi.SITE.yaml (ssh.hostKey).",
    )
    command.add_argument("--stack", "-s", required=True, metavar="SITE", help="the site")
    command.add_argument(
        "--project-dir",
        default=str(PROJECT_DIR),
        help="the directory with the stack files (default: this project)",
    )
    command.add_argument(
        "--write",
        "--yes",
        "-y",
        action="store_true",
        dest="write",
        help="write the new keys into the stack file without asking",
    )
    command.add_argument(
        "--type",
        choices=PREFERENCE,
        action="append",
        dest="types",
        help="the key type(s) to pin, in order of preference (default: ed25519, ecdsa, rsa)",
    )
    command.add_argument(
        "--timeout",
        type=int,
        default=DEFAULT_TIMEOUT,
        choices=range(1, 121),
        metavar="SECONDS",
        help=f"how long each machine may take to answer (default {DEFAULT_TIMEOUT})",
    )
    command.set_defaults(run=run)


def _confirmed(count: int, stack_file: Path, ask: Callable[[str], str]) -> bool:
    try:
        answer = ask(f"Pin these {count} new host key(s) in {stack_file.name}? [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def run(args: argparse.Namespace) -> int:
    if not STACK_NAME.match(args.stack):
        raise ConfigError(
            "--stack", f"{args.stack!r} is not a stack name: use letters, digits, '-', '_', '.'"
        )
    stack_file = stack_file_path(Path(args.project_dir).resolve(), args.stack)
    site = load_stack_site(stack_file)
    everything = targets(site)
    types = list(dict.fromkeys(args.types or PREFERENCE))
    seen = collect(everything, timeout=args.timeout, types=types)
    width = max(len(result.target.label) for result in seen)
    additions: dict[tuple[int | str, ...], str] = {}
    failed = 0
    for result in seen:
        target = result.target
        lead = f"{target.label:<{width}}  {target.address:<21}"
        if result.key is None:
            failed += 1
            print(f"error: {target.label} ({target.address}) showed no host key: {result.error}",
                  file=sys.stderr)  # fmt: skip
            continue
        key = result.key
        if target.pinned is None:
            status = "new"
            additions[target.where] = key.text
        elif parse_host_key(target.pinned).blob == key.blob:
            status = "pinned"
        elif parse_host_key(target.pinned).type != key.type:
            status = f"pinned as {parse_host_key(target.pinned).type}, which it did not show"
        else:
            failed += 1
            status = "CHANGED"
            print(
                f"error: {target.label} ({target.address}) shows {key.fingerprint}, not its "
                f"pinned {parse_host_key(target.pinned).fingerprint}: someone may be "
                "intercepting the connection, or the machine was reinstalled; if you know it "
                f"was, delete {target.key_path} and run known-hosts again",
                file=sys.stderr,
            )
        print(f"{lead}  {key.type:<20} {key.label}  {status}")
    if additions:
        write = args.write
        if not write and sys.stdin.isatty() and sys.stdout.isatty():
            write = _confirmed(len(additions), stack_file, input)
        if write:
            write_host_keys(stack_file, additions)
            print(f"pinned {len(additions)} new host key(s) in {stack_file}", file=sys.stderr)
        elif sys.stdin.isatty():
            print("nothing written", file=sys.stderr)
        else:
            print(
                f"nothing written: {len(additions)} new host key(s); pass --write to pin them "
                "(there is no terminal to confirm on)",
                file=sys.stderr,
            )
    elif not failed:
        print(f"every host key in {stack_file.name} is pinned already", file=sys.stderr)
    return 1 if failed else 0
