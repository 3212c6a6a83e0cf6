"""`python -m stacks import-inventory`: a seed's inventory in, a stack file out.

  python -m stacks import-inventory inventory.ini [--stack SITE | -o PATH] [--bundle-dir DIR]
  python -m stacks import-inventory master.csv -w worker.csv [-c config] [--stack SITE | -o PATH]

The stack file goes to `Pulumi.SITE.yaml` in the project directory (--stack), to PATH (-o), or
to stdout; an existing file is overwritten only with --force. Warnings (one line each, starting
`warning: `) and the `pulumi config set --secret` commands still to run go to stderr. The result
is then checked as `pulumi up` would check it: a problem only this machine has (a key file that
is not here) does not stop the import, it is one more warning.
"""

from __future__ import annotations

import argparse
import copy as copy_module
import dataclasses
import itertools
import re
import sys
from pathlib import Path

from model.defaults import (
    DEVICE_PLUGIN_CHART_VERSION,
    HUB_CHART_VERSION,
    K3S_VERSION,
    NVIDIA_DRIVER_BRANCH,
)
from stacks.config import SECRET_PLACEHOLDER, ConfigError, load_site
from stacks.importers.ansible_ini import read_inventory
from stacks.importers.convecthub_inventory import import_convecthub_inventory
from stacks.importers.openpai import import_openpai
from stacks.importers.result import ImportResult
from stacks.importers.stack_document import secret_command, stack_document
from stacks.stackfile import PROJECT_DIR, STACK_NAME, stack_file_path, stack_of

_PATH_PART = re.compile(r'\.?([A-Za-z0-9_-]+)|\[(\d+)\]|\["([^"]*)"\]')


def register(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `import-inventory` to the subcommands of `python -m stacks`."""
    command = commands.add_parser(
        "import-inventory",
        help="turn a seed's inventory (Ansible INI, or OpenPAI's CSVs) into a stack file",
        description="Turn the ConvectHub Ansible INI inventory, or OpenPAI's master.csv and "
        "worker.csv (with its config), into a Pulumi.<site>.yaml stack file.",
    )
    command.add_argument(
        "file",
        metavar="FILE",
        help="an Ansible INI inventory, or OpenPAI's master.csv (with -w, or a name ending .csv)",
    )
    command.add_argument(
        "-w", "--workers", metavar="WORKER_CSV", help="OpenPAI's worker.csv", type=Path
    )
    command.add_argument(
        "-c", "--openpai-config", metavar="CONFIG", help="OpenPAI's config file", type=Path
    )
    output = command.add_mutually_exclusive_group()
    output.add_argument(
        "--stack", metavar="SITE", help="write Pulumi.SITE.yaml into the project directory"
    )
    output.add_argument("-o", "--output", metavar="PATH", type=Path, help="write the file here")
    command.add_argument(
        "--project-dir",
        type=Path,
        default=PROJECT_DIR,
        help="where --stack writes Pulumi.SITE.yaml (default: this project)",
    )
    command.add_argument("--force", action="store_true", help="overwrite an existing file")
    command.add_argument(
        "--bundle-dir",
        metavar="DIR",
        type=Path,
        help="the airgap bundle (the seed's shared/bin/): sets registry.bundleDir, and the "
        "registry role of the inventory's [registry] hosts",
    )
    command.set_defaults(run=run_import)
    return command


def run_import(args: argparse.Namespace) -> int:
    """Import, write, and report on stderr; ConfigError for anything the user must fix."""
    source = Path(args.file)
    bundle_dir = _bundle_dir(args.bundle_dir)
    if args.workers is not None or source.suffix.lower() == ".csv":
        result = import_openpai(source, args.workers, args.openpai_config, bundle_dir)
    else:
        if args.openpai_config is not None:
            raise ConfigError(
                "--openpai-config",
                f"goes with OpenPAI's master.csv and worker.csv, not with {source}: pass "
                "master.csv as FILE and worker.csv with -w",
            )
        result = import_convecthub_inventory(read_inventory(source), bundle_dir)
    target, stack = _target(args)
    if target is not None and target.exists() and not args.force:
        raise ConfigError(str(target), "already exists: pass --force to overwrite it")
    result = dataclasses.replace(result, config=with_pinned_versions(result.config))
    warnings = [*result.warnings, *validation_warnings(result)]
    text = stack_document(dataclasses.replace(result, warnings=tuple(warnings)), stack)
    if target is None:
        sys.stdout.write(text)
    else:
        try:
            target.write_text(text, encoding="utf-8")
        except OSError as error:
            raise ConfigError(str(target), f"cannot write it ({error.strerror or error})") from None
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if result.secrets:
        print(
            "set the secrets once the stack exists (`pulumi stack init`, with the state where "
            "python -m stacks keeps it: see the README); each command prompts for the value:",
            file=sys.stderr,
        )
        for secret in result.secrets:
            print(f"  {secret_command(secret, stack)}", file=sys.stderr)
    nodes = result.config.get("nodes")
    count = len(nodes) if isinstance(nodes, list) else 0
    print(f"imported {count} node(s) into {target or 'stdout'}", file=sys.stderr)
    return 0


def with_pinned_versions(config: dict[str, object]) -> dict[str, object]:
    """`config` with the k3s release, the hub's chart and, with NVIDIA nodes, the device
    plugin's chart (and the driver branch, when they get their driver here) pinned to today's
    defaults: an imported site moves only when its stack file says."""
    pinned = copy_module.deepcopy(config)
    k3s = pinned.setdefault("k3s", {})
    if isinstance(k3s, dict):
        k3s.setdefault("version", K3S_VERSION)
    nodes = pinned.get("nodes")
    installs = any(
        isinstance(node, dict)
        and isinstance(node.get("gpu"), dict)
        and node["gpu"].get("vendor") == "nvidia"
        and node["gpu"].get("installDriver", True) is not False
        for node in (nodes if isinstance(nodes, list) else [])
    )
    nvidia = any(
        isinstance(node, dict)
        and isinstance(node.get("gpu"), dict)
        and node["gpu"].get("vendor") == "nvidia"
        for node in (nodes if isinstance(nodes, list) else [])
    )
    gpu = pinned.setdefault("gpu", {}) if nvidia else None
    if isinstance(gpu, dict):
        if installs:
            gpu.setdefault("driverVersion", NVIDIA_DRIVER_BRANCH)
        plugin = gpu.setdefault("devicePlugin", {})
        if isinstance(plugin, dict) and "chartFile" not in plugin:
            plugin.setdefault("chartVersion", DEVICE_PLUGIN_CHART_VERSION)
    hub = pinned.setdefault("hub", {})
    if isinstance(hub, dict) and "chartFile" not in hub:
        hub.setdefault("chartVersion", HUB_CHART_VERSION)
    return pinned


def validation_warnings(result: ImportResult) -> list[str]:
    """The import checked as `pulumi up` checks a stack, with each secret taken as set: a
    problem is a warning, since it may be one of this machine only (a key file not here)."""
    values = with_secret_placeholders(result.config, [secret.key for secret in result.secrets])
    try:
        loaded = load_site(values)
    except ConfigError as error:
        return [f"{error} (the stack will not render or deploy from here until that is fixed)"]
    return list(loaded.warnings)


def with_secret_placeholders(config: dict[str, object], keys: list[str]) -> dict[str, object]:
    """A copy of `config` with the placeholder `[secret]` at each `--path` key, as a stack file
    holds a secret once it is set."""
    copy = copy_module.deepcopy(config)
    for key in keys:
        parts = [
            int(index) if index else (name or quoted)
            for name, index, quoted in _PATH_PART.findall(key)
        ]
        here: object = copy
        for part, following in itertools.pairwise(parts):
            if isinstance(here, list) and isinstance(part, int):
                here = here[part]
            elif isinstance(here, dict):
                here = here.setdefault(part, [] if isinstance(following, int) else {})
        if isinstance(here, dict):
            here[parts[-1]] = SECRET_PLACEHOLDER
    return copy


def _bundle_dir(value: Path | None) -> Path | None:
    if value is None:
        return None
    path = value.expanduser().resolve()
    if not path.is_dir():
        raise ConfigError(
            "--bundle-dir",
            f"{path} is not a directory: point it at the airgap bundle (the seed's shared/bin/)",
        )
    return path


def _target(args: argparse.Namespace) -> tuple[Path | None, str | None]:
    """Where the stack file goes (None: stdout) and the stack it is for, when known."""
    if args.stack is not None:
        if not STACK_NAME.match(args.stack):
            raise ConfigError(
                "--stack",
                f"{args.stack!r} is not a stack name: use letters, digits, '-', '_' and '.'",
            )
        return stack_file_path(args.project_dir, args.stack), args.stack
    if args.output is not None:
        return args.output, stack_of(args.output)
    return None, None
