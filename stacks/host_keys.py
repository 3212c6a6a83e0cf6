"""Which nodes (and bastions) may be reached without a pinned host key: `ssh.hostKeyPolicy`.

pulumi-command checks a connection's `hostKey` when it is given and accepts any key when it is
not, so a node without one hands its SSH credentials (and so root) to whoever intercepts the
connection. The policy, site-wide in `convecthub:ssh` and overridable per node:

- `pinned` (the default): a node or bastion without `hostKey` is refused, with one line saying
  how to pin it (`python -m stacks known-hosts --stack SITE --write`).
- `accept-new` (trust on first use): `python -m stacks up`, before the engine runs, collects
  the keys not recorded yet, prints their fingerprints and writes them into the stack file as
  each node's `ssh.hostKey` (the bastion's `bastion.hostKey`), where they are pinned from then
  on: the next run reads them from the file, so unchanged config stays an empty diff. A preview
  records nothing and connects to nothing. A bare `pulumi up` cannot write the stack file: it
  warns, and accepts whatever key those nodes show on that run.
- `insecure`: any key is accepted, with a warning on every preview and up.

A given `hostKey` is always checked, whatever the policy. The refusal is raised by the program
before any resource is registered, under `pulumi preview` and `pulumi up`, and by
`python -m stacks preview|up` before the CLI runs; the offline render (`python -m stacks
render`) shows it as a warning and goes on, so a site can be reviewed before it is pinned.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from model.site import Bastion, Site, SshSettings
from stacks.config import ConfigError, in_offline_review, key_path, reviewing_offline

_NAMES_SHOWN = 5
# Within the offline review (the render), `check_host_keys` warns where it would refuse: the
# review is config's one flag, so render and the tests enter one context, not one per check.
reviewing = reviewing_offline
in_review = in_offline_review


@dataclass(frozen=True)
class Target:
    """One machine whose host key the site needs: a node, or a bastion nodes go through."""

    kind: str  # "node" or "bastion"
    name: str  # the node's name; for a bastion, its host:port
    host: str
    port: int
    pinned: str | None  # the configured hostKey
    policy: str
    # The mapping in the stack's config that holds (or gets) this target's hostKey:
    # ("nodes", 2, "ssh"), ("ssh", "bastion") or ("nodes", 2, "ssh", "bastion").
    where: tuple[int | str, ...]
    ssh: SshSettings  # the node's effective settings (for a bastion: of its first node)
    via: Target | None = None  # the bastion a node is reached through
    bastion: Bastion | None = None  # for a bastion: its settings

    @property
    def key_path(self) -> str:
        return key_path([*self.where, "hostKey"])

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}"

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def targets(site: Site) -> list[Target]:
    """Every bastion (once per place it is configured), then every node, in the file's order."""
    bastions: dict[tuple[int | str, ...], Target] = {}
    nodes = []
    for index, node in enumerate(site.nodes):
        ssh = site.ssh_for(node)
        via = None
        if ssh.bastion is not None:
            own = node.ssh.bastion is not None
            where: tuple[int | str, ...] = (
                ("nodes", index, "ssh", "bastion") if own else ("ssh", "bastion")
            )
            via = bastions.get(where)
            if via is None:
                via = bastions[where] = Target(
                    kind="bastion",
                    name=ssh.bastion.host,
                    host=ssh.bastion.host,
                    port=ssh.bastion.port,
                    pinned=ssh.bastion.host_key,
                    policy=ssh.policy,
                    where=where,
                    ssh=ssh,
                    bastion=ssh.bastion,
                )
        nodes.append(
            Target(
                kind="node",
                name=node.name,
                host=node.host,
                port=ssh.port or 22,
                pinned=ssh.host_key,
                policy=ssh.policy,
                where=("nodes", index, "ssh"),
                ssh=ssh,
                via=via,
            )
        )
    return [*bastions.values(), *nodes]


def _names(found: list[Target]) -> str:
    names = [target.name if target.kind == "node" else target.label for target in found]
    shown = ", ".join(names[:_NAMES_SHOWN])
    return shown + (f" and {len(names) - _NAMES_SHOWN} more" if len(names) > _NAMES_SHOWN else "")


def pin_command(stack: str) -> str:
    return f"python -m stacks known-hosts --stack {stack} --write"


def check_host_keys(site: Site, stack: str, *, refuse: bool) -> list[str]:
    """The warnings the site's host keys call for. With `refuse`, a node or bastion that has
    no hostKey under the pinned policy is a ConfigError (one line); without, a warning."""
    unpinned = [target for target in targets(site) if target.pinned is None]
    refused = [target for target in unpinned if target.policy == "pinned"]
    warnings = []
    if refused:
        first = refused[0]
        more = f" (nor do {_names(refused[1:])})" if len(refused) > 1 else ""
        message = (
            f"{first.label} has no hostKey and hostKeyPolicy is pinned (the default){more}: "
            f"collect and pin the keys with `{pin_command(stack)}`, or set "
            "convecthub:ssh.hostKeyPolicy to accept-new (trust on first use) or insecure"
        )
        if refuse:
            raise ConfigError(first.key_path, message)
        warnings.append(f"{first.key_path}: {message} (preview and up refuse this site)")
    first_contact = [target for target in unpinned if target.policy == "accept-new"]
    if first_contact:
        warnings.append(
            f"hostKeyPolicy accept-new: no host key recorded yet for {_names(first_contact)}: "
            f"`python -m stacks up --stack {stack}` records the keys they show first and pins "
            "them from then on; until then (a preview, or a bare `pulumi up`, which records "
            "nothing) any key they show is accepted"
        )
    insecure = [target for target in unpinned if target.policy == "insecure"]
    if insecure:
        warnings.append(
            f"hostKeyPolicy insecure: {_names(insecure)} accept any host key, so whoever "
            "intercepts the connection gets their SSH credentials and root: pin the keys with "
            f"`{pin_command(stack)}`"
        )
    return warnings


def record_first_contact(stack_file: Path, stack: str, say) -> int:
    """Before `up`: the keys of the accept-new nodes and bastions that have none recorded,
    collected once and written into the stack file. Returns how many were written; a machine
    that shows no key is a ConfigError naming it."""
    from stacks.known_hosts import collect, load_stack_site, write_host_keys

    site = load_stack_site(stack_file)
    wanted = [
        target
        for target in targets(site)
        if target.pinned is None and target.policy == "accept-new"
    ]
    if not wanted:
        return 0
    say(f"hostKeyPolicy accept-new: collecting the host keys of {_names(wanted)} (first contact)")
    seen = collect(wanted, timeout=10)
    for result in seen:
        if result.key is None:
            raise ConfigError(
                result.target.key_path,
                f"{result.target.label} ({result.target.address}) showed no host key "
                f"({result.error}): accept-new records it on first contact, so it must answer; "
                f"bring it up, or pin its key by hand or with `{pin_command(stack)}`",
            )
    additions = {result.target.where: result.key.text for result in seen if result.key}
    write_host_keys(stack_file, additions)
    for result in seen:
        assert result.key is not None
        say(
            f"  {result.target.label} ({result.target.address}): {result.key.type} "
            f"{result.key.label}, recorded"
        )
    say(
        f"recorded {len(additions)} host key(s) in {stack_file.name}, pinned from now on: "
        "review the fingerprints and commit the file"
    )
    return len(additions)
