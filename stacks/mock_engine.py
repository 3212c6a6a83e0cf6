"""A stand-in for the Pulumi engine and providers, to run the real program offline: the one
module that uses the SDK's internals (its mock monitor, RPC (de)serialisation, settings, the
stack runner, the alias protos), so an SDK upgrade touches this file only.

- `RecordingMonitor` keeps every registration and every outputs registration, and makes URNs
  and resolves aliases as the engine does (`AliasResolver`).
- `StandInProviders` answers for every provider: a resource's state is its inputs, and the
  steps whose output the program reads are answered with placeholders (`<master.address>`).
- `run_program` evaluates the program against a monitor, to the end, in a loop of its own.
- `deserialize_keeping_nested_secrets`, `map_secrets` and `mask_secrets` read a registration's
  properties with each secret where it sits.

URNs and aliases as the engine makes them: the SDK's mock monitor keeps only the last type of
the parent's chain, and puts the root stack's type in front of every top-level resource. The
engine keeps the parent's whole chain and leaves the root stack out (`components.steps.new_urn`).
A stand-in with the mock's URNs would not see that moving a component moves every resource
under it, so the stand-ins use the engine's.

Aliases follow the engine's step generator (as of Pulumi v3.274):
each alias the program gives is collapsed to a URN (an unset name, type or parent is the
resource's own; a parent that was itself found under an alias is taken at its old URN; the root
stack counts as no parent); then, when the parent was found under an alias, the child is also
looked for under that old parent, with the parent's old name in place of its new one where the
child's name starts with it. A resource takes over the first of its URN and its aliases that
the old state holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
from collections.abc import Callable, Iterable

import pulumi
from google.protobuf import struct_pb2
from pulumi.runtime import mocks, rpc, settings
from pulumi.runtime.proto import alias_pb2
from pulumi.runtime.stack import run_in_stack, wait_for_rpcs

from components.node_facts import FACT_FIELDS, reviewing_placeholder_facts
from components.steps import (
    COMMAND_TYPE,
    StepKind,
    StepTable,
    new_urn,
    urn_name,
    urn_type,
)
from model.secrecy import SECRET_MASK
from stacks import program
from stacks.config import ConfigError, decode_config
from stacks.stackfile import StackFile

RANDOM_PASSWORD_TYPE = "random:index/randomPassword:RandomPassword"
RANDOM_ID_TYPE = "random:index/randomId:RandomId"


def placeholder_facts(node_name: str) -> dict[str, str]:
    """What the render's stand-in for a node answers in place of node-facts.sh."""
    return {name: f"<{node_name}.{name}>" for name in FACT_FIELDS}


class StandInProviders(pulumi.runtime.Mocks):
    """Stand-in for every provider: a resource's state is its inputs; a facts step's stdout
    is `placeholder_facts` of its node, the hub's certificate step a placeholder pair, any other
    command prints `<name.stdout>`, and a generated password or id is `<generated>`.

    A step is known by its name in `steps`, the site's StepTable. Without one (a test's own
    monitor), `run_program` gives it the steps of the nodes the stack file lists."""

    # Its facts are placeholders, which the program then takes as they are (nothing ran).
    answers_facts_with_placeholders = True

    def __init__(self, steps: StepTable | None = None):
        self.steps = steps

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        state = dict(args.inputs)
        if args.typ == COMMAND_TYPE:
            state.update(stdout=self._stdout(args.name), stderr="")
        elif args.typ == RANDOM_PASSWORD_TYPE:
            state["result"] = "<generated>"
        elif args.typ == RANDOM_ID_TYPE:
            state.update({name: "<generated>" for name in ("hex", "b64_std", "b64_url", "dec")})
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list]:
        return {}, []

    def _stdout(self, name: str) -> str:
        step = self.steps.step(name) if self.steps is not None else None
        if step is not None and step.kind is StepKind.FACTS:
            assert step.node is not None
            return json.dumps(placeholder_facts(step.node))
        if step is not None and step.kind is StepKind.HUB_CERTIFICATE:
            return json.dumps({"certificate": "<certificate>", "key": "<key>"})
        return f"<{name}.stdout>"


def deserialize_keeping_nested_secrets(struct: struct_pb2.Struct) -> dict:
    """A registration's properties, each secret kept where it sits. (The SDK's
    deserialize_properties makes a whole property secret when anything inside it is: a chart's
    values would show as one "[secret]" for the one password among them.)"""

    def value_of(value: object) -> object:
        if rpc._is_rpc_struct_secret(value):
            return rpc.wrap_rpc_secret(value_of(value["value"]))  # type: ignore[index]
        if isinstance(value, struct_pb2.Struct):
            if rpc._special_sig_key in value:  # an asset, archive or resource reference
                return rpc.deserialize_property(value)
            return {key: value_of(item) for key, item in value.items()}
        if isinstance(value, struct_pb2.ListValue):
            return [value_of(item) for item in value]
        return rpc.deserialize_property(value)

    properties = {key: value_of(value) for key, value in struct.items()}
    return {key: value for key, value in properties.items() if value is not None}


def map_secrets(value: object, on_secret: Callable[[object], object]) -> object:
    """A deserialized property value with each secret, wherever it sits, replaced by
    `on_secret(the secret's own value)`, and each file asset or archive by its path."""
    if rpc.is_rpc_secret(value):
        return on_secret(rpc.unwrap_rpc_secret(value))
    if isinstance(value, pulumi.FileArchive):
        return {"archive": value.path}
    if isinstance(value, pulumi.FileAsset):
        return {"asset": value.path}
    if isinstance(value, dict):
        return {key: map_secrets(item, on_secret) for key, item in value.items()}
    if isinstance(value, list):
        return [map_secrets(item, on_secret) for item in value]
    return value


def mask_secrets(value: object) -> object:
    """A deserialized property value with every secret as "[secret]"."""
    return map_secrets(value, lambda _: SECRET_MASK)


class AliasResolver:
    """Which old resource each new registration takes over, given the old state's URNs."""

    def __init__(self, stack: str, project: str, old_urns: Iterable[str] = ()):
        self.stack = stack
        self.project = project
        self.old_urns = frozenset(old_urns)
        self.taken_over: dict[str, str] = {}  # new URN -> the old URN it took over

    def aliases(
        self, urn: str, type_: str, name: str, parent: str, specs: Iterable[alias_pb2.Alias]
    ) -> list[str]:
        """The alias URNs of a registration, in the engine's order, without repeats."""
        own = [self._collapse(name, type_, parent, alias) for alias in specs]
        found = list(dict.fromkeys(own))
        parent_alias = self.taken_over.get(parent) if parent else None
        if parent_alias is not None:
            found.append(self._inherited(type_, name, urn_name(parent), parent_alias))
            for alias in own:
                found.append(
                    self._inherited(
                        urn_type(alias), urn_name(alias), urn_name(parent), parent_alias
                    )
                )
        return [alias for alias in dict.fromkeys(found) if alias != urn]

    def take_over(self, urn: str, aliases: Iterable[str]) -> str | None:
        """The old URN this registration takes over (its own first), noted for its children."""
        if urn in self.old_urns:
            return urn
        for alias in aliases:
            if alias in self.old_urns:
                self.taken_over[urn] = alias
                return alias
        return None

    def _collapse(self, name: str, type_: str, parent: str, alias: alias_pb2.Alias) -> str:
        if alias.WhichOneof("alias") == "urn":
            return alias.urn
        spec = alias.spec
        old_parent = spec.parentUrn or parent
        if spec.parentUrn:
            old_parent = self.taken_over.get(old_parent, old_parent)
        if spec.noParent:
            old_parent = ""
        return new_urn(
            spec.stack or self.stack,
            spec.project or self.project,
            old_parent,
            spec.type or type_,
            spec.name or name,
        )

    def _inherited(self, type_: str, name: str, parent_name: str, parent_alias: str) -> str:
        alias_name = name
        if name.startswith(parent_name):
            alias_name = urn_name(parent_alias) + name[len(parent_name) :]
        return new_urn(self.stack, self.project, parent_alias, type_, alias_name)


class RecordingMonitor(mocks.MockMonitor):
    """A mock monitor that also keeps every registration and every outputs registration, and
    makes URNs and resolves aliases as the engine does: `old_urns` are the URNs of the state a
    registration may take over (read when the first resource registers)."""

    def __init__(self, providers: pulumi.runtime.Mocks, old_urns: Iterable[str] = ()):
        super().__init__(providers)
        self.recorded: list[dict] = []
        self.recorded_outputs: dict[str, dict] = {}
        self.old_urns = frozenset(old_urns)
        self._resolver: AliasResolver | None = None
        self.aliases: dict[str, list[str]] = {}  # per URN, its alias URNs (none: left out)
        self.taken_over: dict[str, str] = {}  # per URN, the old URN it took over under an alias

    def make_urn(self, parent: str, type_: str, name: str) -> str:
        return new_urn(pulumi.get_stack(), pulumi.get_project(), parent, type_, name)

    def RegisterResource(self, request):  # noqa: N802 (the gRPC method's name)
        self._resolve_aliases(request)
        response = super().RegisterResource(request)
        dependencies = set(request.dependencies)
        for urns in request.propertyDependencies.values():
            dependencies.update(urns.urns)
        resource = {
            "urn": response.urn,
            "type": request.type,
            "name": request.name,
            "parent": request.parent or None,
            "dependencies": sorted(dependencies),
            "inputs": mask_secrets(deserialize_keeping_nested_secrets(request.object)),
        }
        if request.provider:  # an explicit provider, e.g. the cluster's: "<urn>::<id>"
            resource["provider"] = request.provider.rsplit("::", 1)[0]
        self.recorded.append(resource)
        return response

    def _resolve_aliases(self, request) -> None:
        if self._resolver is None:
            self._resolver = AliasResolver(pulumi.get_stack(), pulumi.get_project(), self.old_urns)
        urn = self.make_urn(request.parent, request.type, request.name)
        aliases = self._resolver.aliases(
            urn, request.type, request.name, request.parent, request.aliases
        )
        if aliases:
            self.aliases[urn] = aliases
        old = self._resolver.take_over(urn, aliases)
        if old is not None and old != urn:
            self.taken_over[urn] = old

    def RegisterResourceOutputs(self, request):  # noqa: N802
        outputs = rpc.deserialize_properties(request.outputs)
        self.recorded_outputs[request.urn] = mask_secrets(outputs)
        return super().RegisterResourceOutputs(request)


def run_program(stack: StackFile, monitor: RecordingMonitor, *, preview: bool) -> None:
    """Evaluate the real program against `monitor` with the stack file's config, to the end
    (every registration answered), in an event loop of its own."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    collecting = gc.isenabled()  # the program turns the cyclic collector off for its run
    forget_pending_outputs()
    try:
        mocks.set_mocks(
            monitor.mocks,
            project=stack.project,
            stack=stack.stack,
            preview=preview,
            monitor=monitor,
        )
        # set_mocks finishes a root stack of its own; the program gets a fresh one, as under
        # the CLI, so its exports are registered as the stack's outputs.
        loop.run_until_complete(wait_for_rpcs())
        settings.set_root_resource(None)  # type: ignore[arg-type]
        monitor.recorded.clear()
        pulumi.runtime.set_all_config(dict(stack.config), list(stack.secret_keys))
        providers = monitor.mocks
        if isinstance(providers, StandInProviders) and providers.steps is None:
            providers.steps = StepTable(listed_nodes(stack))
        placeholders = getattr(providers, "answers_facts_with_placeholders", False)
        with reviewing_placeholder_facts() if placeholders else contextlib.nullcontext():
            loop.run_until_complete(run_in_stack(program.run))
    finally:
        forget_pending_outputs()
        asyncio.set_event_loop(None)
        loop.close()
        if collecting:
            gc.enable()


def listed_nodes(stack: StackFile) -> list[str]:
    """The names of the nodes the stack file lists, unchecked (the program checks them)."""
    try:
        nodes = decode_config(stack.config).get("nodes")
    except ConfigError:
        return []
    if not isinstance(nodes, list):
        return []
    return [n["name"] for n in nodes if isinstance(n, dict) and isinstance(n.get("name"), str)]


def forget_pending_outputs() -> None:
    """Drops the Output tasks the SDK's settings still hold from a run that ended early.

    `set_mocks` gives each run a new RPC manager but keeps the settings' set of pending Output
    tasks, and every run waits for that set to empty. A run that failed or was cut off leaves
    tasks of its own event loop, now closed, in it: the next run then waits forever, or fails
    with "Event loop is closed"."""
    with settings.SETTINGS.lock:
        settings.SETTINGS.outputs = set()
