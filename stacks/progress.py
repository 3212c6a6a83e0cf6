"""Per-node progress lines from the Pulumi engine's events, and the tallies a run's summary needs.

The engine reports each step as it starts (`resourcePreEvent`), ends (`resOutputsEvent`) or fails
(`resOpFailedEvent`), and passes on what providers say (`diagnosticEvent`). `RunProgress` turns
them into one line per step that changes something, led by the node it runs on, and counts what
changed by operation, by resource type and by node.

A resource's node is found by its name, looked up whole in the site's StepTable
(components/steps.py: `gpu-2-facts` is gpu-2's facts step, never gpu's); else by its parents as
reported, up to the node's component (its BareMetalNode, named after the node);
the rest belong to the hub, when they are part of it, or to the site (the device plugins too).
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pulumi.automation import EngineEvent, OpType, StepEventMetadata

from components.steps import (
    COMPONENT_PACKAGE,
    NODE_COMPONENTS,
    SITE_COMPONENT_NAMES,
    STACK_TYPE,
    Component,
    StepId,
    StepTable,
    type_chain,
    urn_name,
    urn_type,
)

NODE_TYPES = frozenset(component.type_token for component in NODE_COMPONENTS)
# The site-wide components whose resources are told under the component's name (the hub's);
# the device plugins' are the site's.
GROUP_TYPES = frozenset({Component.HUB.type_token})
SITE_LABEL = "site"
# Engine operations that leave a resource as it was.
UNCHANGED_OPS = {OpType.SAME, OpType.READ, OpType.REFRESH}
# What a step is doing, has done, and would do (preview): by the engine's operation.
_WORDS = {
    OpType.CREATE: ("creating", "created", "would create"),
    OpType.UPDATE: ("updating", "updated", "would update"),
    OpType.DELETE: ("deleting", "deleted", "would delete"),
    OpType.REPLACE: ("replacing", "replaced", "would replace"),
    OpType.CREATE_REPLACEMENT: ("creating replacement", "created replacement", "would replace"),
    OpType.DELETE_REPLACED: ("deleting replaced", "deleted replaced", "would delete replaced"),
    OpType.IMPORT: ("importing", "imported", "would import"),
    OpType.REFRESH: ("refreshing", "refreshed", "would refresh"),
    OpType.DISCARD: ("discarding", "discarded", "would discard"),
}
# The engine's colour directives, e.g. `<{%reset%}>`, in diagnostic messages.
_COLOUR = re.compile(r"<\{%[^%]*%\}>")


@dataclass
class NodeTally:
    """What happened to one node's (or the site's) steps in this run."""

    done: int = 0
    changes: Counter[str] = field(default_factory=Counter)
    failed: list[str] = field(default_factory=list)


@dataclass
class _Step:
    urn: str
    type: str
    name: str
    parent: str | None


class RunProgress:
    """Consumes engine events (from the engine's event stream thread) and writes progress lines.

    `expected` is how many steps each node has in the program's graph (from the offline
    render), shown as "done/expected"; unknown (0) for runs that do not start from the config.
    Its keys are the site's nodes (a destroy's: those the stack file lists), whose steps the
    lines are told by.
    """

    def __init__(
        self,
        write: Callable[[str], None],
        *,
        expected: Mapping[str, int] | None = None,
        verbose: bool = False,
    ):
        self._write = write
        self._expected = dict(expected or {})
        self._table = StepTable(self._expected)
        self._verbose = verbose
        self._lock = threading.Lock()
        self._steps: dict[str, _Step] = {}
        self._started: dict[str, int] = {}
        self.nodes: dict[str, NodeTally] = {}
        self.changes: Counter[str] = Counter()
        self.changes_by_type: dict[str, Counter[str]] = {}
        self.errors: list[str] = []
        self.duration_seconds: int | None = None
        self._width = max([len(name) for name in self._expected] + [len(SITE_LABEL), 8])

    def on_event(self, event: EngineEvent) -> None:
        with self._lock:
            if event.resource_pre_event is not None:
                pre = event.resource_pre_event
                self._on_pre(pre.metadata, event.timestamp, planning=bool(pre.planning))
            elif event.res_outputs_event is not None:
                self._on_outputs(event.res_outputs_event.metadata, event.timestamp)
            elif event.res_op_failed_event is not None:
                self._on_failed(event.res_op_failed_event.metadata, event.timestamp)
            elif event.diagnostic_event is not None:
                diagnostic = event.diagnostic_event
                self._on_diagnostic(
                    diagnostic.message, diagnostic.severity, diagnostic.urn, diagnostic.ephemeral
                )
            elif event.summary_event is not None:
                self.duration_seconds = event.summary_event.duration_seconds

    def node_of(self, urn: str) -> str:
        """The node a resource runs on; else "hub" for the hub's; else "site"."""
        if urn.count("::") < 3:  # no resource's URN
            return SITE_LABEL
        reported = self._steps.get(urn)
        owner = self._owner(reported.type if reported else urn_type(urn), urn_name(urn))
        if owner is not None:
            return owner
        seen: set[str] = set()
        top: _Step | None = None
        current: str | None = urn
        while current and current not in seen:
            seen.add(current)
            step = self._steps.get(current)
            if step is None:
                # Not reported yet (a destroy ends parents after their children): its URN
                # still says its type and its parents' types.
                types = type_chain(current)
                if types[-1] in NODE_TYPES:
                    return urn_name(current)
                if current != urn and len(types) == 1 and types[0] in GROUP_TYPES:
                    return urn_name(current)  # a top-level component: the hub
                break
            if step.type in NODE_TYPES:
                return step.name
            if step.type == STACK_TYPE:
                if top is not None and top.urn != urn and top.type in GROUP_TYPES:
                    return top.name
                return SITE_LABEL
            top = step
            current = step.parent
        return SITE_LABEL

    def _owner(self, type_: str, name: str) -> str | None:
        """The node of a step or of a node's component, by its whole name; a site step's
        site-wide component (the hub's certificate step is the hub's)."""
        step = self._known_step(type_, name)
        if step is not None:
            if step.node is not None:
                return step.node
            assert step.kind.site_component is not None
            return SITE_COMPONENT_NAMES[step.kind.site_component]
        return self._table.node_of_component(type_, name)

    def _known_step(self, type_: str, name: str) -> StepId | None:
        step = self._table.step(name)
        return step if step is not None and step.type_token == type_ else None

    def _remember(self, metadata: StepEventMetadata) -> _Step:
        state = metadata.new or metadata.old
        step = _Step(
            urn=metadata.urn,
            type=metadata.type,
            name=urn_name(metadata.urn),
            parent=(state.parent or None) if state is not None else None,
        )
        self._steps[metadata.urn] = step
        return step

    def _on_pre(self, metadata: StepEventMetadata, timestamp: int, *, planning: bool) -> None:
        step = self._remember(metadata)
        op = metadata.op
        self.changes[op.value] += 1
        self.changes_by_type.setdefault(step.type, Counter())[op.value] += 1
        if not _is_step(metadata):
            return
        if op not in UNCHANGED_OPS:
            self._tally(step).changes[op.value] += 1
        if op in UNCHANGED_OPS:
            if planning or op is not OpType.REFRESH:
                self._tally(step).done += 1
            return
        words = _WORDS.get(op, (op.value, op.value, f"would {op.value}"))
        if planning:
            self._tally(step).done += 1
            self._line(step, words[2])
        else:
            self._started[step.urn] = timestamp
            self._line(step, f"{words[0]}...")

    def _on_outputs(self, metadata: StepEventMetadata, timestamp: int) -> None:
        step = self._remember(metadata)
        if not _is_step(metadata):
            return
        op = metadata.op
        if op in UNCHANGED_OPS and op is not OpType.REFRESH:
            return
        tally = self._tally(step)
        tally.done += 1
        words = _WORDS.get(op, (op.value, op.value, op.value))
        took = timestamp - self._started.pop(step.urn, timestamp)
        if op is OpType.REFRESH:
            # A refresh reads every resource back: only what it finds changed is news.
            if metadata.diffs:
                self._line(step, f"differs from the state: {', '.join(metadata.diffs)}")
            return
        self._line(step, f"{words[1]} in {took}s{self._progress(tally, step)}")

    def _on_failed(self, metadata: StepEventMetadata, timestamp: int) -> None:
        step = self._remember(metadata)
        tally = self._tally(step)
        tally.failed.append(self._step_label(step))
        took = timestamp - self._started.pop(step.urn, timestamp)
        self._line(step, f"FAILED after {took}s")

    def _on_diagnostic(
        self, message: str, severity: str, urn: str | None, ephemeral: bool | None
    ) -> None:
        text = _COLOUR.sub("", message).rstrip()
        if not text:
            return
        if severity == "error":
            first = next(line for line in text.splitlines() if line.strip())
            step = self._steps.get(urn or "")
            where = f"{self._step_label(step)}: " if step is not None else ""
            self.errors.append(f"{where}{first.strip()}")
        elif severity != "warning" and (ephemeral or not self._verbose):
            return
        label = self.node_of(urn) if urn else SITE_LABEL
        for line in text.splitlines():
            self._write(f"{label:<{self._width}}   {severity}: {line}".rstrip())

    def _tally(self, step: _Step) -> NodeTally:
        return self.nodes.setdefault(self.node_of(step.urn), NodeTally())

    def _step_label(self, step: _Step) -> str:
        """A step's kind ("k3s-install"); another resource's name, less its group's."""
        known = self._known_step(step.type, step.name)
        if known is not None:
            return known.kind.suffix
        node = self.node_of(step.urn)
        return step.name.removeprefix(f"{node}-") if node != SITE_LABEL else step.name

    def _progress(self, tally: NodeTally, step: _Step) -> str:
        expected = self._expected.get(self.node_of(step.urn))
        return f"  ({tally.done}/{expected})" if expected else ""

    def _line(self, step: _Step, text: str) -> None:
        label = self.node_of(step.urn)
        self._write(f"{label:<{self._width}}   {self._step_label(step):<24} {text}")

    def node_summary(self) -> list[str]:
        """One line per node: what its steps did."""
        lines = []
        for node in sorted(self.nodes, key=lambda name: (name not in self._expected, name)):
            tally = self.nodes[node]
            parts = [f"{count} {op}" for op, count in sorted(tally.changes.items())]
            if tally.failed:
                parts.append(f"failed: {', '.join(tally.failed)}")
            lines.append(f"{node:<{self._width}}   {', '.join(parts) or 'unchanged'}")
        return lines


def expected_steps(resources: list[Mapping[str, object]]) -> dict[str, int]:
    """How many steps each node has, from the offline render's resources (`stacks.render`):
    a node's step by its whole name (a node's facts step is the stack's own resource), any
    other resource by its parents, up to its node's component."""
    by_urn = {str(r["urn"]): r for r in resources}
    nodes = [str(r["name"]) for r in resources if r["type"] in NODE_TYPES]
    table = StepTable(dict.fromkeys(nodes))
    counts: Counter[str] = Counter()
    for resource in resources:
        kind = str(resource["type"])
        if kind.startswith((COMPONENT_PACKAGE, "pulumi:")):
            continue  # components, the stack and providers are no steps
        step = table.step(str(resource["name"]))
        if step is not None and step.node is not None and step.type_token == kind:
            counts[step.node] += 1
            continue
        parent = resource.get("parent")
        # Up to the node's component (its BareMetalNode, named after the node).
        while parent and by_urn.get(str(parent), {}).get("type") not in (*NODE_TYPES, None):
            parent = by_urn[str(parent)].get("parent")
        if parent and str(parent) in by_urn:
            counts[str(by_urn[str(parent)]["name"])] += 1
    return dict(counts)


def _is_step(metadata: StepEventMetadata) -> bool:
    """A resource the engine creates, changes or deletes (no component, no provider, no stack)."""
    state = metadata.new or metadata.old
    if state is not None and state.custom is False:
        return False
    return not metadata.type.startswith("pulumi:providers:") and metadata.type != STACK_TYPE
