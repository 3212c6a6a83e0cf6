"""`python -m stacks`: a site's lifecycle, and offline tools for its stack file.

  python -m stacks preview|up|refresh --stack SITE [--json]   through the Pulumi CLI
  python -m stacks destroy --stack SITE [--yes] [--json]
  python -m stacks outputs --stack SITE [NAME] [--show-secrets] [--json]
  python -m stacks import-inventory FILE [--stack SITE]   a stack file from an Ansible or
                                                          OpenPAI inventory
  python -m stacks known-hosts --stack SITE [--write]   collect the nodes' SSH host keys and
                                                        pin them in the stack file
  python -m stacks render STACK_FILE [--json]   the resource graph and per-node steps, offline
  python -m stacks schema                       JSON Schema of a stack file's config

Exit codes: 0 done; 1 the update (or the program) failed; 2 nothing ran: bad usage, bad config,
a missing tool or passphrase, or a destroy not confirmed (one line on stderr); 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys

import pulumi

from stacks import automation
from stacks.config import ConfigError
from stacks.importers.cli import register as register_import
from stacks.known_hosts import register as register_known_hosts


def _render(args: argparse.Namespace) -> int:
    from stacks.host_keys import check_host_keys
    from stacks.render import evaluate, format_text
    from stacks.stackfile import read_stack_file

    rendering = evaluate(read_stack_file(args.stack_file))
    for warning in check_host_keys(rendering.loaded.site, rendering.stack.stack, refuse=False):
        print(f"warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps(rendering.as_json(), indent=2, sort_keys=True))
    else:
        print(format_text(rendering))
    return 0


def _schema(_: argparse.Namespace) -> int:
    from stacks.schema import stack_file_schema

    print(json.dumps(stack_file_schema(), indent=2))
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m stacks", description=__doc__.splitlines()[0])
    commands = root.add_subparsers(dest="command", required=True)
    automation.register(commands)
    register_import(commands)
    register_known_hosts(commands)
    render = commands.add_parser("render", help="show the graph a stack file becomes, offline")
    render.add_argument("stack_file", help="a Pulumi.<stack>.yaml file")
    render.add_argument(
        "--json", action="store_true", help="machine-readable resources and outputs"
    )
    render.set_defaults(run=_render)
    schema = commands.add_parser("schema", help="print the JSON Schema of a stack file")
    schema.set_defaults(run=_schema)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except (ConfigError, automation.UsageError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: a step cut off midway is retried by the next up", file=sys.stderr)
        return 130
    except pulumi.RunError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader stopped early (`| head`): not an error
        sys.stdout = None  # type: ignore[assignment] # nothing more to flush
        return 0


if __name__ == "__main__":
    sys.exit(main())
