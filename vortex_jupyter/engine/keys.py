"""Incremental Merkle keys: re-hash only what an edit can have changed.

State, kept per graph and updated by the model's change notifications:

- ``_keys``: node id -> cache key, for nodes whose key is known to be current;
- ``_info``: node id -> ``NodeInfo``: its spec, its widget params with the spec's defaults
  filled and linked inputs removed (what the node is called with), their canonical bytes and
  its links sorted by input name. One record per node, so the hot loops do one dict lookup
  per node instead of one per fact (it matters at 100k nodes);
- ``_specs``: the spec each node type was hashed with, to notice a redefined ``@vx.node``.

Invariant: a node has a key only if all its ancestors do. So invalidating an edited node walks
its descendants and stops at nodes already without a key: the cost of an edit is proportional
to the keys it really drops, never to the graph. Layout and meta changes invalidate nothing.
Keys are recomputed lazily, in topological order, by ``ensure`` (or node by node with
``compute``, from the run loop's one-walk planning).

Muted and bypassed nodes (``model.modes``, see ``graph/modes.py``) keep their keys (so the
invariant holds and an edit above them still reaches their consumers) but never run; a link
from a bypassed node is resolved to the source it passes through, so the consumer's key hashes
that source's key. A mode change, or an edge change into a bypassed node, drops the link
records and keys of the consumers reached through it (``_drop_through``). With no node muted
or bypassed this costs one empty-dict test per node record.

Volatile nodes (``always_run`` or a ``fingerprint``) are refreshed once per run by
``refresh_volatile``: an always-run node gets a new token each run, a fingerprinted node the
canonical bytes of ``fingerprint(**params)``; when a token changes the node and its descendants
lose their keys (their inputs may have changed).

Example: in ``a -> b -> c`` plus an unrelated ``d``, editing a param of ``b`` drops the keys
of ``b`` and ``c`` (two dict pops); ``a`` and ``d`` keep theirs, and the next ``ensure``
re-hashes exactly ``b`` and ``c``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import HashError
from ..graph.model import Change, GraphModel
from ..graph.modes import BYPASSED, resolve
from ..nodes.spec import NodeSpec
from .hashing import encode_known, fingerprint_blob, head_blob, inputs_blob, key_from_blobs, params_blob

log = logging.getLogger("vortex_jupyter.engine")
Lookup = Callable[[str], "NodeSpec | None"]
#: One link into a node: (input name, source node, source output index).
Link = tuple[str, str, int]
_NO_INPUTS = inputs_blob(())
_EXACT = 1 << 53  # ints a float holds exactly; larger ones are left for validation to report


class TypeFacts:
    """What all nodes of one type share, computed once per type (again if it is redefined):
    the spec, the key's head bytes, the widget defaults and their key encoding. A param left
    at its default is the spec's own value object, so an ``is`` test finds it and its
    encoding is reused instead of made again for each node."""

    __slots__ = ("defaults", "encoded", "floats", "head", "spec")

    def __init__(self, type_name: str, spec: NodeSpec | None) -> None:
        self.spec = spec
        #: FLOAT widget inputs: an int given for one (``7`` from a UI workflow or the canvas for
        #: ``7.0``) is the same value, so it is passed and hashed as a float (same cache key).
        self.floats = tuple(p.name for p in spec.inputs if p.type == "FLOAT") if spec is not None else ()
        self.head = head_blob(type_name, spec.version if spec is not None else "?")
        self.defaults = _defaults(spec)
        self.encoded = encode_known(self.defaults)


class NodeInfo:
    """What the engine needs of one node, derived from the model and the spec (immutable)."""

    __slots__ = ("args", "head", "links", "pblob", "spec")

    def __init__(self, facts: TypeFacts, args: dict[str, Any], pblob: bytes, links: tuple[Link, ...]) -> None:
        self.spec = facts.spec
        self.head = facts.head
        self.args = args
        self.pblob = pblob
        self.links = links


class KeyIndex:
    """Cache keys of one ``GraphModel``'s nodes, maintained incrementally."""

    def __init__(self, model: GraphModel, lookup: Lookup, lock: threading.RLock | None = None) -> None:
        self.model = model
        self.lookup = lookup
        self.lock = lock or threading.RLock()
        self._keys: dict[str, str] = {}
        self._info: dict[str, NodeInfo] = {}
        self._fp: dict[str, bytes] = {}
        self._by_type: dict[str, set[str]] = {}
        self._specs: dict[str, NodeSpec | None] = {}
        #: type -> its ``TypeFacts``: one lookup per node in the hot loop.
        self._types: dict[str, TypeFacts] = {}
        #: Bumped on every structural change (nodes or edges added/removed).
        self.structure_version = 0
        for node in model.nodes.values():
            self._by_type.setdefault(node.type, set()).add(node.id)
        model.add_listener(self._on_change)

    def close(self) -> None:
        self.model.remove_listener(self._on_change)

    # ---- change tracking -------------------------------------------------------------------
    def _on_change(self, change: Change) -> None:
        kind = change.kind
        if kind == "layout" or kind == "meta":
            return
        with self.lock:
            node = change.node
            if kind == "param_set" or kind == "param_deleted":
                self._info.pop(node, None)  # type: ignore[arg-type]
                self.invalidate(node)
            elif kind == "edge_added" or kind == "edge_removed":
                self.structure_version += 1
                self._info.pop(node, None)  # type: ignore[arg-type]
                self.invalidate(node)
                if self.model.modes.get(node) == BYPASSED:  # type: ignore[arg-type]
                    self._drop_through(node)  # what it passes through changed
            elif kind == "mode":
                self._drop_through(node)
            elif kind == "node_added":
                self.structure_version += 1
                self._by_type.setdefault(self.model.nodes[node].type, set()).add(node)  # type: ignore[index,arg-type]
            elif kind == "node_removed":
                self.structure_version += 1
                self._drop_node(node)

    def _drop_node(self, node: str | None) -> None:
        self._keys.pop(node, None)  # type: ignore[arg-type]
        self._info.pop(node, None)  # type: ignore[arg-type]
        self._fp.pop(node, None)  # type: ignore[arg-type]
        for ids in self._by_type.values():
            ids.discard(node)  # type: ignore[arg-type]

    def _drop_through(self, node: str | None) -> None:
        """Forget the link records and keys of ``node``'s consumers, and past bypassed ones,
        of theirs: their links resolve through ``node`` (graph/modes.py)."""
        out = self.model._out
        modes = self.model.modes
        stack = [node]
        seen: set[str | None] = set()
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            for e in out.get(n, ()):  # type: ignore[arg-type]
                self._info.pop(e.dst, None)
                self.invalidate(e.dst)
                if modes.get(e.dst) == BYPASSED:
                    stack.append(e.dst)

    def invalidate(self, node: str | None) -> int:
        """Drop the keys of ``node`` and its descendants; returns how many were dropped."""
        keys = self._keys
        if node not in keys:
            return 0  # by the invariant its descendants have no key either
        out = self.model._out
        stack = [node]
        dropped = 0
        while stack:
            n = stack.pop()
            if keys.pop(n, None) is None:
                continue
            dropped += 1
            for e in out.get(n, ()):
                if e.dst in keys:
                    stack.append(e.dst)
        return dropped

    # ---- specs and volatile nodes ----------------------------------------------------------
    def refresh_specs(self) -> list[str]:
        """Notice redefined node types; drops their nodes' keys. Returns the changed types."""
        changed = []
        for type_name, ids in self._by_type.items():
            if not ids:
                continue
            spec = self.lookup(type_name)
            if type_name in self._specs and spec is self._specs[type_name]:
                continue
            self._specs[type_name] = spec
            self._types.pop(type_name, None)
            changed.append(type_name)
            for n in ids:
                self._info.pop(n, None)
                self.invalidate(n)
        return changed

    def _spec_of(self, type_name: str) -> NodeSpec | None:
        if type_name not in self._specs:
            self._specs[type_name] = self.lookup(type_name)
        return self._specs[type_name]

    def spec(self, node: str) -> NodeSpec | None:
        return self._spec_of(self.model.nodes[node].type)

    def volatile_nodes(self) -> list[str]:
        out: list[str] = []
        for type_name, ids in self._by_type.items():
            spec = self._specs.get(type_name)
            if ids and spec is not None and (spec.always_run or spec.fingerprint is not None):
                out.extend(ids)
        return out

    def refresh_volatile(self, run_token: str) -> None:
        """Recompute always-run tokens and fingerprints; a changed one drops descendants' keys."""
        for n in self.volatile_nodes():
            spec = self.spec(n)
            assert spec is not None
            blob = fingerprint_blob(run_token)
            if not spec.always_run:
                blob = self._fingerprint(n, spec, blob)
            if self._fp.get(n) != blob:
                self._fp[n] = blob
                self.invalidate(n)

    def _fingerprint(self, node: str, spec: NodeSpec, changed: bytes) -> bytes:
        """``spec.fingerprint(**params)`` as key bytes; ``changed`` (this run's token) when it
        raises or is unhashable: ComfyUI's IS_CHANGED returns NaN to mean "always changed",
        and a failing fingerprint must not stop the run (the node then reports the error)."""
        assert spec.fingerprint is not None
        try:
            return fingerprint_blob(spec.fingerprint(**self.args(node)), node=node)
        except Exception as exc:
            if not isinstance(exc, HashError) or "NaN" not in exc.message:
                log.warning("fingerprint of node %r (%s) failed: %s; running it", node, spec.type, exc)
            return changed

    # ---- per-node facts --------------------------------------------------------------------
    def info(self, node: str) -> NodeInfo:
        info = self._info.get(node)
        if info is None:
            info = self._info[node] = self._make_info(node)
        return info

    def _type_facts(self, type_name: str) -> TypeFacts:
        facts = self._types.get(type_name)
        if facts is None:
            facts = self._types[type_name] = TypeFacts(type_name, self._spec_of(type_name))
        return facts

    def _make_info(self, node: str) -> NodeInfo:
        data = self.model.nodes[node]
        type_name = data.type
        facts = self._types.get(type_name) or self._type_facts(type_name)
        args = {**facts.defaults, **data.params}
        for name in facts.floats:
            value = args.get(name)
            if type(value) is int and -_EXACT < value < _EXACT:
                args[name] = float(value)
        linked = self.model._in.get(node)
        links = _take_links(linked, args) if linked else ()
        if links and self.model.modes:
            links = self._through_bypassed(links)
        pblob = params_blob(args, node=node, node_type=type_name, known=facts.encoded)
        return NodeInfo(facts, args, pblob, links)

    def _through_bypassed(self, links: tuple[Link, ...]) -> tuple[Link, ...]:
        """Links from bypassed nodes replaced by the source they pass through; a link with
        nothing to pass is dropped (validation reports VE-115, so such a node never runs)."""
        out: list[Link] = []
        for name, src, index in links:
            found = resolve(self.model, self._spec_of, src, index)
            if found is not None:
                out.append((name, found[0], found[1]))
        return tuple(out)

    def args(self, node: str) -> dict[str, Any]:
        """Widget params with defaults filled, minus inputs fed by a link (do not mutate)."""
        return self.info(node).args

    def links(self, node: str) -> tuple[Link, ...]:
        """The links into ``node`` sorted by input name (first edge of each input)."""
        return self.info(node).links

    # ---- keys ------------------------------------------------------------------------------
    def get(self, node: str) -> str | None:
        return self._keys.get(node)

    @property
    def keys(self) -> dict[str, str]:
        """Current keys (read only; missing entries need ``ensure``)."""
        return self._keys

    def ensure(self, order: Iterable[str]) -> dict[str, str]:
        """Compute the missing keys of ``order`` (topological, ancestors included)."""
        keys = self._keys
        if len(keys) == len(self.model.nodes):
            return keys  # every node has its key (keys of removed nodes are dropped)
        compute = self.compute
        for n in order:
            if n not in keys:
                compute(n)
        return keys

    def compute(self, n: str) -> str:
        """Compute and store the key of ``n``; its sources' keys must be current (walk the
        graph in topological order, as ``ensure`` and the run loop's planning pass do)."""
        keys = self._keys
        info = self._info.get(n)
        if info is None:
            info = self._info[n] = self._make_info(n)
        links = info.links
        if links:
            # Same bytes as hashing.inputs_blob (links are sorted by name already);
            # built as text and encoded once (cheaper than encoding each piece).
            ib = (f"I{len(links)}:" + "".join(
                [f"{name}\0{keys[src]}\0{i}\0" for name, src, i in links]
            )).encode("utf-8", "surrogatepass")
        else:
            ib = _NO_INPUTS
        fps = self._fp
        key = keys[n] = key_from_blobs(info.head, info.pblob, ib, fps.get(n, b"") if fps else b"")
        return key


def _take_links(linked: dict[str, list[Any]], args: dict[str, Any]) -> tuple[Link, ...]:
    """The links of ``linked`` (input -> edges) sorted by input name, first edge of each; the
    linked inputs are removed from ``args`` (a link wins over a stored widget value)."""
    found = []
    for name in sorted(linked) if len(linked) > 1 else linked:
        args.pop(name, None)
        edges = linked[name]
        if edges:
            e = edges[0]
            found.append((name, e.src, e.src_output))
    return tuple(found)


def _defaults(spec: NodeSpec | None) -> dict[str, Any]:
    if spec is None:
        return {}
    return {p.name: p.default for p in spec.inputs if p.has_default and p.widget}
