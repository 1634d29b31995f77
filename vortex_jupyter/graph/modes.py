"""Muted and bypassed nodes (ComfyUI's node modes), as pure functions over a ``GraphModel``.

Policy (ComfyUI's): a node's mode is 0 (always), 2 (muted) or 4 (bypassed); the model keeps
it in ``NodeData.extra`` and indexes the non-zero ones in ``model.modes``.

- A muted node does not run. Whatever consumes its output gets nothing: validation reports
  VE-115 on the consumer's input, naming the muted node and the fix.
- A bypassed node does not run either; its output ``i`` is replaced by what feeds its first
  linked input of the same type as that output (the input at index ``i`` first, as ComfyUI's
  frontend tries it first), so data flows through it. Chains of bypassed nodes are followed
  iteratively. No such input: the consumer gets nothing (VE-115 again).
- Other modes (1 "on event", 3 "on trigger") run as usual, as in ComfyUI's prompt export.
- A bypassed node of a type we lack (VE-101 otherwise) passes through by the slot types its UI
  file recorded (``extra["comfy_ui"]["raw"]`` inputs/outputs), as the frontend does.
- Checks of a skipped node's own params (missing inputs, ranges, ...) are not reported, nor its
  unknown type: the node does not run, and ComfyUI leaves it out of the prompt.

Everything here is O(1) when ``model.modes`` is empty (the common case), so callers may call
it unconditionally; the engine tests ``model.modes`` itself on its hot paths.

Example: ``a -> b (bypassed IntAdd) -> c``: ``resolve(model, lookup, "b", 0) == ("a", 0)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import Problem
from .model import MODE_KEY, GraphModel

ALWAYS, MUTED, BYPASSED = 0, 2, 4
SKIPPED_MODES = (MUTED, BYPASSED)
NAMES = {MUTED: "muted", BYPASSED: "bypassed"}
#: Problems about a node's own params/inputs: moot for a node that does not run.
_OWN_CHECKS = frozenset({"VE-101", "VE-102", "VE-104", "VE-105", "VE-106", "VE-112", "VE-113", "VE-114", "VE-116",
                         "VE-117", "VE-700"})
Lookup = Callable[[str], Any]
Source = tuple[str, int]


def skipped(model: GraphModel) -> set[str]:
    """The nodes that do not run: muted and bypassed ones."""
    return {n for n, m in model.modes.items() if m in SKIPPED_MODES}


def resolve(model: GraphModel, lookup: Lookup, src: str, output: int) -> Source | None:
    """Where ``src``'s output ``output`` really comes from once bypassed nodes are passed
    through: ``(node, output)`` (a muted node stays: callers report it), or None when a
    bypassed node has no linked input of that output's type (or a chain loops)."""
    seen: set[str] = set()
    while model.modes.get(src) == BYPASSED:
        if src in seen:
            return None
        seen.add(src)
        found = _pass_through(model, lookup, src, output)
        if found is None:
            return None
        src, output = found
    return src, output


def _pass_through(model: GraphModel, lookup: Lookup, node: str, output: int) -> Source | None:
    found = _slot_types(model, lookup, node)
    if found is None or not 0 <= output < len(found[1]):
        return None
    inputs, outputs = found
    want = outputs[output]
    ports = list(inputs)
    if output < len(ports):
        ports.insert(0, ports[output])  # ComfyUI tries the input at the output's index first
    linked = model.inputs_of(node)
    for name, kind in ports:
        edges = linked.get(name)
        if kind == want and edges:
            return edges[0].src, edges[0].src_output
    return None


def _slot_types(model: GraphModel, lookup: Lookup, node: str) -> tuple[list[tuple[str, Any]], list[Any]] | None:
    """(input name, type) pairs and output types: from the spec, else from the UI file."""
    data = model.nodes.get(node)
    if data is None:
        return None
    spec = lookup(data.type)
    if spec is not None:
        return [(p.name, p.type) for p in spec.inputs], [o.type for o in spec.outputs]
    kept = data.extra.get(MODE_KEY)
    raw = kept.get("raw") if isinstance(kept, dict) else None
    if not isinstance(raw, dict):
        return None
    ins = [s for s in raw.get("inputs") or () if isinstance(s, dict)]
    outs = [s for s in raw.get("outputs") or () if isinstance(s, dict)]
    return [(_slot_name(s), s.get("type")) for s in ins], [s.get("type") for s in outs]


def _slot_name(slot: dict[str, Any]) -> str:
    widget = slot.get("widget")
    if isinstance(widget, dict) and isinstance(widget.get("name"), str):
        return str(widget["name"])
    return str(slot.get("name", ""))


def output_type(model: GraphModel, lookup: Lookup, node: str, output: int) -> str:
    found = _slot_types(model, lookup, node)
    if found is None or not 0 <= output < len(found[1]):
        return "?"
    return str(found[1][output])


def problems(model: GraphModel, lookup: Lookup, found: list[Problem]) -> list[Problem]:
    """``found`` without the own-param problems of skipped nodes, plus VE-115 for each input
    of a running node that a muted node (or a bypass with nothing to pass) leaves empty."""
    off = skipped(model)
    if not off:
        return found
    out = [p for p in found if not (p.node in off and p.code in _OWN_CHECKS)]
    for node in sorted(off):
        for e in model.outputs_of(node):
            if e.dst in model.nodes and e.dst not in off:
                problem = _consumer_problem(model, lookup, node, e.src_output, e.dst, e.dst_input)
                if problem is not None:
                    out.append(problem)
    return out


def _consumer_problem(
    model: GraphModel, lookup: Lookup, src: str, output: int, dst: str, dst_input: str
) -> Problem | None:
    where = f"input {dst_input!r} of node {dst} ({model.nodes[dst].type})"
    found = resolve(model, lookup, src, output)
    if found is None:
        kind = output_type(model, lookup, src, output)
        return Problem(
            "VE-115", dst, dst_input,
            f"{where} is fed by bypassed node {src} ({model.nodes[src].type}), which has no linked "
            f"{kind} input to pass through, so it would receive nothing",
            f"un-bypass node {src}, link a {kind} input into it, or disconnect it from node {dst}",
        )
    if model.modes.get(found[0]) == MUTED:
        muted = found[0]
        via = "" if muted == src else f" (through bypassed node {src})"
        return Problem(
            "VE-115", dst, dst_input,
            f"{where} is fed by muted node {muted} ({model.nodes[muted].type}){via}, which does not run",
            f"un-mute node {muted} or disconnect it from node {dst}",
        )
    return None
