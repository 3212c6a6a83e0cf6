#!/usr/bin/env python3
"""STAND-IN for `k3s kubectl`, for tests only: no cluster exists here. Keeps each Node as a
JSON file in $STANDIN_KUBE_DIR/<name>.json and answers exactly the calls the membership
script makes (get --raw /readyz, get node -o jsonpath, label, taint, annotate, drain, delete);
anything else exits 2. Every call is appended to $STANDIN_KUBE_DIR/calls.log."""

import json
import re
import sys
from pathlib import Path

store = Path(__import__("os").environ["STANDIN_KUBE_DIR"])


def load(name: str) -> dict:
    path = store / f"{name}.json"
    if not path.exists():
        sys.exit(f'Error from server (NotFound): nodes "{name}" not found')
    return json.loads(path.read_text())


def save(node: dict) -> None:
    (store / f"{node['name']}.json").write_text(json.dumps(node, sort_keys=True))


def jsonpath(node: dict, expression: str) -> str:
    if expression == "{.metadata.name}":
        return node["name"]
    if expression == '{.status.conditions[?(@.type=="Ready")].status}':
        return "True" if node.get("ready") else "False"
    match = re.fullmatch(r"\{\.metadata\.annotations\.(.+)\}", expression)
    if match:
        return node["annotations"].get(match.group(1).replace("\\.", "."), "")
    sys.exit(f"kubectl stand-in: unsupported jsonpath {expression}")


def main(args: list[str]) -> None:
    with (store / "calls.log").open("a") as log:
        log.write(" ".join(args) + "\n")
    overwrite = "--overwrite" in args
    args = [a for a in args if a != "--overwrite"]
    if args[:2] == ["get", "--raw"]:
        return print("ok")
    if args[:2] == ["get", "node"] and args[3:4] == ["-o"]:
        expression = args[4].removeprefix("jsonpath=")
        return print(jsonpath(load(args[2]), expression), end="")
    if args[0] in ("label", "annotate", "taint") and args[1] == "node":
        node = load(args[2])
        for item in args[3:]:
            if args[0] == "taint":
                key = re.split("[=:]", item, maxsplit=1)[0]
                effect = item.rstrip("-").rsplit(":", 1)[1]
                taints = [t for t in node["taints"] if (t["key"], t["effect"]) != (key, effect)]
                if not item.endswith("-"):
                    if len(taints) != len(node["taints"]) and not overwrite:
                        sys.exit(f"error: node {node['name']} already has {key} taint(s)")
                    value = item.split("=", 1)[1].rsplit(":", 1)[0] if "=" in item else ""
                    taints.append({"key": key, "value": value, "effect": effect})
                node["taints"] = taints
                continue
            field = "labels" if args[0] == "label" else "annotations"
            if item.endswith("-"):
                node[field].pop(item[:-1], None)
            else:
                key, value = item.split("=", 1)
                if key in node[field] and node[field][key] != value and not overwrite:
                    sys.exit(f"error: '{key}' already has a value")
                node[field][key] = value
        return save(node)
    if args[0] == "drain":
        node = load(args[1])
        node["unschedulable"] = True
        return save(node)
    if args[:2] == ["delete", "node"]:
        load(args[2])
        (store / f"{args[2]}.json").unlink()
        return None
    sys.exit(f"kubectl stand-in: unsupported call: {' '.join(args)}")


main(sys.argv[1:])
