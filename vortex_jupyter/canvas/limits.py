"""Bounds on what views may put into a graph's doc: its total size, each string, param names.

Every frame from a view is capped (``MAX_UPDATE_BYTES``), but frames add up: without a total
bound, 40 frames of 7 one-MiB params grew a kernel's doc to 280 MiB and the kernel to 1.2 GB.
The relay (``sync.py``) therefore refuses an update from a view when

- **the doc would outgrow its limit**: ``Limits.max_doc_bytes`` of encoded Yjs state
  (``VORTEX_CANVAS_MAX_DOC``, default 32 MiB: a 10,000-node graph takes about 4 MiB, a
  10,000-node ComfyUI document about 17 MiB). An update that does not grow the doc is
  always taken, so a doc the kernel itself made larger (Python edits are never refused)
  can still be edited down;
- **a string is too long**: a string param over ``Limits.max_string`` characters (1 Mi), a
  title over 1,000, a node's ``keep`` over 1 Mi (``schema.py``);
- **a param is not declared** by its node's type: the node type's spec has no input of that
  name, the node does not hold it already in the kernel's graph, and no other node of that
  type does (a file's extra inputs, loaded in the kernel, stay editable and can be copied).
  Nodes of types the kernel does not know take any param name: their inputs cannot be
  checked, and a ComfyUI workflow's custom nodes must round-trip. ComfyUI's extra widget values
  (``control_after_generate``, upload buttons, values of unknown widgets) are no params:
  they ride in the node's ``keep`` (``docio.py``) and are not affected.

A document bridged to a room is the room's replica, not its authority: there the relay does
not check param names (the room's file may have inputs our specs lack).

The size is known exactly only when measured (``len(doc.get_update())``, O(doc)); between
measurements ``DocSize`` bounds it from above by adding what each update could add, so the
per-update path measures nothing until the doc nears its limit.

>>> size = DocSize()
>>> size.measured(1000); size.grew(100)
>>> size.bound(50) > 1150
True
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pycrdt import Doc, Map

from ..graph.model import GraphModel
from .protocol import ROOT_NODES
from .schema import MAX_STRING, SchemaViolation, Touched

#: environment variable with the total bound of a canvas doc, e.g. "128MiB"
ENV_MAX_DOC = "VORTEX_CANVAS_MAX_DOC"
DEFAULT_MAX_DOC_BYTES = 32 << 20
#: an update of n bytes adds at most about n bytes to a doc's encoded state (tombstones of
#: what it overwrote included); counted twice over, plus a constant, to stay an upper bound
_GROWTH_FACTOR, _GROWTH_CONSTANT = 2, 64

Lookup = Callable[[str], Any]


@dataclass(frozen=True)
class Limits:
    """What a view may add to a graph's doc."""

    max_doc_bytes: int = DEFAULT_MAX_DOC_BYTES
    max_string: int = MAX_STRING

    @classmethod
    def from_env(cls) -> Limits:
        """The limits with ``VORTEX_CANVAS_MAX_DOC`` applied (a bad value raises, naming it)."""
        from ..engine.cache import env_bound

        return cls(max_doc_bytes=env_bound(ENV_MAX_DOC, DEFAULT_MAX_DOC_BYTES, sizes=True))


class DocSize:
    """An upper bound of a doc's encoded size: exact when measured, plus what grew since."""

    def __init__(self) -> None:
        self.exact: int | None = None
        self.grown = 0

    def measured(self, nbytes: int) -> None:
        self.exact, self.grown = nbytes, 0

    def grew(self, update_bytes: int) -> None:
        self.grown += _GROWTH_FACTOR * update_bytes + _GROWTH_CONSTANT

    def bound(self, update_bytes: int = 0) -> int | None:
        """At most this many bytes once an update of ``update_bytes`` is in (None: unknown)."""
        if self.exact is None:
            return None
        return self.exact + self.grown + _GROWTH_FACTOR * update_bytes + _GROWTH_CONSTANT


def size_violation(after: int, before: int, limit: int) -> SchemaViolation | None:
    """The refusal of an update taking a doc from ``before`` to ``after`` bytes, if it is one."""
    if after <= limit or after <= before:
        return None
    return SchemaViolation(
        f"the graph would take {after:,} bytes, over the canvas limit of {limit:,} bytes ({_mib(limit)})",
        hint=f"delete nodes or long texts the graph no longer needs, or raise the limit: set {ENV_MAX_DOC} "
             f"(e.g. {ENV_MAX_DOC}=128MiB) in the kernel's environment before the canvas opens",
    )


def _mib(n: int) -> str:
    return f"{n / (1 << 20):g} MiB"


# ---- params a node type does not declare -------------------------------------------------------
def check_declared(doc: Doc, touched: Touched, model: GraphModel, lookup: Lookup | None) -> None:
    """Raise ``SchemaViolation`` for the first param an update put on a node of ``doc`` that
    the node's type does not declare (the module docstring has the exceptions)."""
    if lookup is None or not (touched.nodes or touched.params or touched.fields):
        return
    nodes = doc.get(ROOT_NODES, type=Map)
    held: dict[str, set[str]] | None = None
    for node_id, node_type, names in _param_writes(nodes, touched, model):
        spec = _spec(lookup, node_type)
        if spec is None:
            continue  # an unknown type: its params cannot be checked
        current = model.nodes.get(node_id)
        for name in names:
            if spec.input(name) is not None:
                continue
            if current is not None and name in current.params:
                continue  # the kernel's graph has it already (a file's input; a retyped node's)
            if not _set_in_doc(nodes, node_id, name):
                continue  # deleted
            if held is None:
                held = _undeclared_held(model, lookup)
            if name not in held.get(node_type, ()):
                raise _undeclared(node_id, node_type, name, spec)


def _param_writes(nodes: Map, touched: Touched, model: GraphModel) -> Iterator[tuple[str, str, list[str]]]:
    """(node, type, param names) an update wrote: every param of a node it added, retyped or
    whose params it replaced; the changed params of the others, typed as the kernel's graph
    has them (a param edit reads nothing from the doc: it is the hot path)."""
    whole = set(touched.nodes) | {n for n, f in touched.fields.items() if f & {"type", "params"}}
    for node_id in sorted(whole):
        node = nodes.get(node_id)
        params = node.get("params") if isinstance(node, Map) else None
        node_type = node.get("type") if isinstance(node, Map) else None
        if isinstance(params, Map) and isinstance(node_type, str):  # else gone, or not a node
            yield node_id, node_type, list(params.keys())
    for node_id, names in touched.params.items():
        current = model.nodes.get(node_id)
        if node_id not in whole and current is not None:
            yield node_id, current.type, sorted(names)


def _set_in_doc(nodes: Map, node_id: str, name: str) -> bool:
    node = nodes.get(node_id)
    params = node.get("params") if isinstance(node, Map) else None
    return isinstance(params, Map) and name in params


def _spec(lookup: Lookup, node_type: str) -> Any:
    try:
        return lookup(node_type)
    except Exception:  # a broken registry must not break sync: the type counts as unknown
        return None


def _undeclared_held(model: GraphModel, lookup: Lookup) -> dict[str, set[str]]:
    """Param names the kernel's graph holds that their node's type does not declare, by type
    (one pass, made only when an update brings an undeclared name)."""
    held: dict[str, set[str]] = {}
    for node in model.nodes.values():
        spec = _spec(lookup, node.type)
        if spec is not None:
            extra = [name for name in node.params if spec.input(name) is None]
            if extra:
                held.setdefault(node.type, set()).update(extra)
    return held


def _undeclared(node_id: str, node_type: str, name: str, spec: Any) -> SchemaViolation:
    names = [p.name for p in getattr(spec, "inputs", ())]
    takes = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "") if names else "no params"
    return SchemaViolation(
        f"node {node_id[:40]!r} ({node_type}) has no param {name[:80]!r}; {node_type} takes {takes}",
        hint=f"set only params that {node_type} declares (reload the view if it shows other ones)",
    )
