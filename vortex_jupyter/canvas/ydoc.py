"""Bind a ``GraphModel`` to an authoritative ``pycrdt.Doc``, both ways.

State: one ``GraphDoc`` per graph (shared by all its canvas views) owns the kernel's Doc.

- Model -> doc: every model ``Change`` is written to the doc in a transaction, except changes
  whose ``origin`` is ``"canvas"`` (they came from the doc; writing them back would echo).
  The doc's update bytes go to ``subscribe``rs (the relay sends them to every view).
- Doc -> model: ``apply_remote`` applies an already validated update and reconciles exactly
  the touched nodes, params and edges into the model through ``GraphModel`` methods with
  ``origin="canvas"``, so the engine invalidates exactly the affected cache keys.
- Node modes (muted / bypassed) ride as the node field ``mode``, present only when not 0;
  a view's change becomes ``model.set_mode`` (a bypass changes what consumers receive).
- A node's format data and rich params ride in its ``keep`` field, the graph's extra data in
  the ``file`` root (``docio``), when the doc is a document's (``info`` given) or the model
  has any: a document's kernel replica reads them back, so the kernel writes the same file.

A lock serialises doc access: the model may be mutated from any thread (a run thread, a
comm handler), and a pycrdt Doc allows one transaction at a time.

>>> from vortex_jupyter.graph.model import GraphModel
>>> m = GraphModel(); a = m.add_node("Add", {"a": 1})
>>> gd = GraphDoc(m, lookup=None)
>>> gd.nodes[a]["params"]["a"]
1.0
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from pycrdt import Doc, Map

from ..graph.formats.document import DocumentInfo
from ..graph.model import Change, Edge, GraphModel, NodeData
from . import docio, values
from .docio import doc_mode, edge_from_value, edge_value
from .protocol import CANVAS_ORIGIN, ROOT_EDGES, ROOT_FILE, ROOT_GROUPS, ROOT_META, ROOT_NODES, edge_key
from .schema import SchemaViolation, Touched, check_edge, check_group, check_node

KERNEL_ORIGIN = "kernel"
log = logging.getLogger(__name__)
UpdateListener = Callable[[bytes, object], None]


def default_lookup() -> Callable[[str], Any] | None:
    """``REGISTRY.lookup`` when the node registry is importable (it is torch-free)."""
    try:
        from ..nodes.registry import REGISTRY
    except ImportError:
        return None
    return REGISTRY.lookup


class GraphDoc:
    """The authoritative Y doc of one graph, kept equal to its ``GraphModel``."""

    def __init__(self, model: GraphModel, lookup: Callable[[str], Any] | str | None = "registry", *,
                 info: DocumentInfo | None = None, mirror: bool = True) -> None:
        """``info``: the doc is a document's (its file data is kept in the doc too);
        ``mirror=False``: start with an empty doc that a peer fills (a document's room)."""
        self.model = model
        self.lookup: Callable[[str], Any] | None = default_lookup() if isinstance(lookup, str) else lookup
        self.info = info
        self.doc: Doc = Doc()
        self.nodes = self.doc.get(ROOT_NODES, type=Map)
        self.edges = self.doc.get(ROOT_EDGES, type=Map)
        self.groups = self.doc.get(ROOT_GROUPS, type=Map)
        self.meta = self.doc.get(ROOT_META, type=Map)
        self.file = self.doc.get(ROOT_FILE, type=Map)
        self.lock = threading.RLock()
        #: the kernel's doc is the graph's authority (False: a document's room is; this doc
        #: is a replica a peer fills, and the relay must not take back what the room holds)
        self.authoritative = mirror
        #: bumped by every kernel-side write; the relay's scratch replica is stale when it moves
        self.generation = 0
        self._listeners: list[UpdateListener] = []
        self._sender: object = None
        if mirror:
            self._mirror_all()
        self._sub = self.doc.observe(self._on_doc_update)
        model.add_listener(self._on_change)

    # ---- plumbing ------------------------------------------------------------------------
    def subscribe(self, fn: UpdateListener) -> None:
        """``fn(update, sender)`` for every doc update; ``sender`` is the view it came from."""
        self._listeners.append(fn)

    def unsubscribe(self, fn: UpdateListener) -> None:
        if fn in self._listeners:
            self._listeners.remove(fn)

    def close(self) -> None:
        if self._on_change in self.model._listeners:
            self.model.remove_listener(self._on_change)
        self._listeners.clear()

    def _on_doc_update(self, event: Any) -> None:
        for fn in list(self._listeners):
            try:
                fn(event.update, self._sender)
            except Exception:  # one broken view must not stop the others or the edit
                log.exception("canvas update listener failed")

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group several model edits into one doc transaction (one update to relay)."""
        with self.lock, self.doc.transaction(origin=KERNEL_ORIGIN):
            self.generation += 1
            yield

    def snapshot(self) -> bytes:
        with self.lock:
            return self.doc.get_update()

    # ---- model -> doc --------------------------------------------------------------------
    def _mirror_all(self) -> None:
        with self.batch():
            docio.write_model(self.doc, self.model, self.info, origin=KERNEL_ORIGIN)

    def _on_change(self, change: Change) -> None:
        if change.origin == CANVAS_ORIGIN:
            return
        with self.batch():
            self._write_change(change)

    def _write_change(self, c: Change) -> None:
        if c.kind == "meta":
            self._write_groups()
            self._write_file()
        elif c.kind == "edge_added":
            self.edges[edge_key(c.detail.dst, c.detail.dst_input)] = edge_value(c.detail)
        elif c.kind == "edge_removed":
            self._drop_edge(c.detail)
        elif c.node is not None:
            self._write_node_change(c.kind, c.node, c.detail)

    def _write_node_change(self, kind: str, node_id: str, detail: Any) -> None:
        if kind == "node_added":
            self.nodes[node_id] = docio.node_map(self.model.nodes[node_id], doc_mode(self.model, node_id))
        elif node_id not in self.nodes:
            return  # a change to a node the doc never saw: nothing to mirror
        elif kind == "node_removed":
            del self.nodes[node_id]
        elif kind in ("param_set", "param_deleted"):
            self._write_param(node_id, detail)
        elif kind == "layout":
            self._write_layout(node_id, detail)
        elif kind == "mode":
            self._write_mode(node_id)

    def _write_param(self, node_id: str, name: str) -> None:
        params = self.nodes[node_id]["params"]
        model_params = self.model.nodes[node_id].params
        value = values.to_doc(model_params[name]) if name in model_params else values.NOT_MIRRORED
        if value is values.NOT_MIRRORED:
            if name in params:
                del params[name]
        else:
            params[name] = value
        self._write_keep(node_id)

    def _write_keep(self, node_id: str) -> None:
        """The node's ``keep`` field: its format data and rich (list/dict) params."""
        ymap, keep = self.nodes[node_id], docio.node_keep(self.model.nodes[node_id])
        if keep is None:
            if "keep" in ymap:
                del ymap["keep"]
        elif ymap.get("keep") != keep:
            ymap["keep"] = keep

    def _write_file(self) -> None:
        """A document's graph-level data (``model.extra``) into the ``file`` root."""
        if self.info is None and not len(self.file):
            return  # not a document: nothing reads the graph-level data
        text = json.dumps(self.model.extra, ensure_ascii=False, allow_nan=False, default=str)
        if self.file.get("keep") != text:
            self.file["keep"] = text

    def _drop_edge(self, edge: Edge) -> None:
        key = edge_key(edge.dst, edge.dst_input)
        current = self.edges.get(key)
        # a broken graph may hold two edges into one input: drop only the one mirrored
        if current is not None and edge_from_value(current) == edge:
            remaining = self.model.inputs_of(edge.dst).get(edge.dst_input, [])
            if remaining:
                self.edges[key] = edge_value(remaining[-1])
            else:
                del self.edges[key]

    def _write_layout(self, node_id: str, what: str) -> None:
        node, ymap = self.model.nodes[node_id], self.nodes[node_id]
        if what == "pos":
            ymap["x"], ymap["y"] = node.pos
        elif what == "size" and node.size is not None:
            ymap["w"], ymap["h"] = node.size
        elif what == "title":
            if node.title:
                ymap["title"] = node.title
            elif "title" in ymap:
                del ymap["title"]
        elif what == "extra":
            self._write_keep(node_id)

    def _write_mode(self, node_id: str) -> None:
        ymap, mode = self.nodes[node_id], doc_mode(self.model, node_id)
        if mode:
            ymap["mode"] = mode
        elif "mode" in ymap:
            del ymap["mode"]

    def _write_groups(self) -> None:
        wanted = dict(docio.group_value(i, g) for i, g in enumerate(self.model.groups))
        for gid in [k for k in self.groups if k not in wanted]:
            del self.groups[gid]
        for gid, value in wanted.items():
            if self.groups.get(gid) != value:
                self.groups[gid] = value

    # ---- doc -> model --------------------------------------------------------------------
    def apply_untrusted(self, update: bytes, sender: object) -> None:
        """Apply an update that was not vetted and cannot be refused (a document's room
        already holds it): reconcile what it touched, treating parts that break the schema
        as absent, so the model never holds them."""
        with self.lock:
            with collecting(self.doc, (ROOT_NODES, ROOT_EDGES, ROOT_GROUPS, ROOT_FILE)) as (touched, failures):
                self._sender = sender
                try:
                    self.doc.apply_update(update)
                finally:
                    self._sender = None
            if failures:
                log.warning("reading a room update failed (%r); re-reading the whole graph", failures[0])
                touched = docio_everything(self.doc)
            Reconciler(self, checked=False).run(touched)

    def apply_remote(self, update: bytes, touched: Touched, sender: object) -> None:
        """Apply a validated update from ``sender`` and reconcile what it touched."""
        with self.lock:
            self._sender = sender
            try:
                self.doc.apply_update(update)
            finally:
                self._sender = None
            Reconciler(self).run(touched)


@contextmanager
def collecting(doc: Doc, roots: Iterable[str]) -> Iterator[tuple[Touched, list[BaseException]]]:
    """While inside: what changes to ``doc``'s ``roots`` touch (``Touched``), and the errors met
    reading those changes (raised by no one: the caller decides)."""
    touched, failures = Touched(), list[BaseException]()
    maps = {name: doc.get(name, type=Map) for name in roots}
    subs = {name: m.observe_deep(_collect(touched, name, failures)) for name, m in maps.items()}
    try:
        yield touched, failures
    finally:
        for name, sub in subs.items():
            maps[name].unobserve(sub)


def _collect(touched: Touched, root: str, failures: list[BaseException]) -> Callable[[Any], None]:
    def on_events(events: Any) -> None:
        try:
            touched.add_events(root, list(events))
        except BaseException as exc:  # reported after apply_update returns
            failures.append(exc)

    return on_events


def docio_everything(doc: Doc) -> Touched:
    """Everything in ``doc`` as touched (a full reconciliation)."""
    from .repair import everything

    touched = everything(doc)
    touched.file = True
    return touched


class Reconciler:
    """Bring the model in line with the doc for the parts an update touched.

    ``checked``: the relay verified the update against the schema first. A document's room
    replica cannot refuse what the room already holds, so there (``checked=False``) every
    touched part is checked here and a part that breaks the schema counts as absent.
    """

    def __init__(self, gd: GraphDoc, checked: bool = True) -> None:
        self.gd, self.model, self.checked = gd, gd.model, checked
        self.removed: set[str] = set()
        self.dangling: list[str] = []

    def run(self, t: Touched) -> None:
        for node_id in sorted(t.nodes):
            self._sync_node(node_id, full=True)
        for node_id, names in t.fields.items():
            if node_id not in t.nodes:
                self._sync_node(node_id, full=bool(names & {"type", "params", "keep"}))
        for node_id, names in t.params.items():
            if node_id not in t.nodes and node_id in self.model.nodes and self._doc_node(node_id) is not None:
                self._sync_params(node_id, names)
        for key in sorted(t.edges):
            self._sync_edge(key)
        if t.groups:
            self._sync_groups()
        if t.file:
            self._sync_file()
        if t.nodes or t.edges:  # a drag touches only fields: skip the O(edges) scan
            self._drop_orphan_edges()

    def _doc_node(self, node_id: str) -> dict[str, Any] | None:
        ymap = self.gd.nodes.get(node_id)
        if not isinstance(ymap, Map):
            return None
        if not self.checked:
            try:
                check_node(node_id, ymap)
            except SchemaViolation as exc:
                log.warning("ignoring a node that breaks the schema: %s", exc)
                return None
        return ymap.to_py()  # type: ignore[no-any-return]

    def _sync_node(self, node_id: str, full: bool) -> None:
        doc_node, model = self._doc_node(node_id), self.model
        if doc_node is None:
            if node_id in model.nodes:
                model.remove_node(node_id, origin=CANVAS_ORIGIN)
                self.removed.add(node_id)
            return
        current = model.nodes.get(node_id)
        relink: list[str] = []
        if current is not None and current.type != doc_node["type"]:
            # retyped: a new node for the engine; links the doc still has are restored below
            relink = [k for k, v in self.gd.edges.items() if isinstance(v, dict) and node_id in (v.get("src"), v.get("dst"))]
            model.remove_node(node_id, origin=CANVAS_ORIGIN)
            current = None
        if current is None:
            docio.add_node_from_doc(model, node_id, doc_node, self.gd.lookup, origin=CANVAS_ORIGIN)
            for key in relink:
                self._sync_edge(key)
            return
        if full:
            extra, rich = docio.read_keep(doc_node.get("keep"))
            if "keep" in doc_node or current.extra:
                model.set_extra(node_id, extra, origin=CANVAS_ORIGIN)
            names = set(doc_node.get("params", {})) | set(rich) | {
                k for k, v in current.params.items()
                if values.to_doc(v) is not values.NOT_MIRRORED or isinstance(v, (list, dict))
            }
            self._sync_params(node_id, names, rich)
        self._sync_layout(current, doc_node)
        self._sync_mode(node_id, doc_node)

    def _sync_params(self, node_id: str, names: set[str], rich: dict[str, Any] | None = None) -> None:
        node = self.model.nodes[node_id]
        doc_params = self.gd.nodes[node_id]["params"]
        if rich is None:
            rich = docio.read_keep(self.gd.nodes[node_id].get("keep"))[1]
        for name in sorted(names):
            if name in doc_params:
                value = docio.params_from_doc(self.gd.lookup, node.type, {name: doc_params[name]})[name]
                self.model.set_param(node_id, name, value, origin=CANVAS_ORIGIN)
            elif name in rich:
                self.model.set_param(node_id, name, rich[name], origin=CANVAS_ORIGIN)
            elif name in node.params:
                self.model.delete_param(node_id, name, origin=CANVAS_ORIGIN)

    def _sync_layout(self, node: NodeData, doc_node: dict[str, Any]) -> None:
        lay = docio.layout_of(doc_node)
        kwargs: dict[str, Any] = {}
        if lay["pos"] != node.pos:
            kwargs["pos"] = lay["pos"]
        if lay["size"] is not None and lay["size"] != node.size:
            kwargs["size"] = lay["size"]
        if (lay["title"] or None) != node.title:
            kwargs["title"] = lay["title"] or ""
        if kwargs:
            self.model.set_layout(node.id, origin=CANVAS_ORIGIN, **kwargs)

    def _sync_mode(self, node_id: str, doc_node: dict[str, Any]) -> None:
        mode = int(doc_node.get("mode") or 0)  # validated: an integral number 0..4
        if mode != doc_mode(self.model, node_id):
            self.model.set_mode(node_id, mode, origin=CANVAS_ORIGIN)

    def _sync_edge(self, key: str) -> None:
        value = self.gd.edges.get(key)
        if value is not None and not self.checked:
            try:
                check_edge(key, value)
            except SchemaViolation as exc:
                log.warning("ignoring an edge that breaks the schema: %s", exc)
                value = None
        if value is None:
            dst, dst_input = self._split_key(key)
            if dst is not None:
                self.model.disconnect(dst, dst_input, origin=CANVAS_ORIGIN)
            return
        edge = edge_from_value(value)
        if edge.dst not in self.model.nodes:
            return  # removed below as an orphan
        if edge.src not in self.model.nodes:
            self.dangling.append(key)  # removed below
            return
        if self.model.inputs_of(edge.dst).get(edge.dst_input, []) != [edge]:
            self.model.connect(edge.src, edge.src_output, edge.dst, edge.dst_input, origin=CANVAS_ORIGIN)

    def _split_key(self, key: str) -> tuple[str | None, str]:
        # node ids may contain ':' (Python users pick them): try every split point
        for i, ch in enumerate(key):
            if ch == ":" and key[:i] in self.model.nodes and key[i + 1 :] in self.model.inputs_of(key[:i]):
                return key[:i], key[i + 1 :]
        return None, ""

    def _sync_groups(self) -> None:
        """The doc's groups into ``model.groups`` in ComfyUI's shape (``bounding``), keeping
        what the doc does not carry (font size, flags, an int id, key order) from the group's
        ``keep``, else from the group it edits."""
        before = {docio.group_id(i, g): g for i, g in enumerate(self.model.groups)}
        doc = dict(self.gd.groups.items())
        groups = []
        # the model's order first (ComfyUI draws groups in list order), then new ones by id
        for gid in [*(g for g in before if g in doc), *sorted(g for g in doc if g not in before)]:
            value = doc[gid]
            if not isinstance(value, dict):
                continue
            if not self.checked:
                try:
                    check_group(gid, value)
                except SchemaViolation as exc:
                    log.warning("ignoring a group that breaks the schema: %s", exc)
                    continue
            groups.append(docio.group_from_value(gid, value, before.get(gid)))
        if groups != self.model.groups:
            self.model.groups = groups
            self.model.touch_meta(origin=CANVAS_ORIGIN)

    def _sync_file(self) -> None:
        """A document's graph-level data (``file``) into ``model.extra``."""
        self.gd.info = docio.read_info(self.gd.doc) or self.gd.info
        extra = docio.read_file_keep(self.gd.doc)
        if extra is not None and extra != self.model.extra:
            self.model.extra = extra
            self.model.touch_meta(origin=CANVAS_ORIGIN)

    def _drop_orphan_edges(self) -> None:
        """Edges whose destination left the model, or whose source left it now or was missing
        when the edge came in (an edge drawn concurrently with the deletion of its source),
        cannot live in it: drop them from the doc too."""
        nodes = self.model.nodes
        orphans = [k for k, v in self.gd.edges.items() if isinstance(v, dict) and v.get("dst") not in nodes]
        orphans += [k for k, v in self.gd.edges.items() if isinstance(v, dict) and v.get("src") in self.removed]
        orphans += [k for k in self.dangling if isinstance(v := self.gd.edges.get(k), dict) and v.get("src") not in nodes]
        if orphans:
            with self.gd.batch():
                for key in set(orphans):
                    if key in self.gd.edges:
                        del self.gd.edges[key]
            for key in set(orphans):
                dst, dst_input = self._split_key(key)
                if dst is not None:
                    self.model.disconnect(dst, dst_input, origin=CANVAS_ORIGIN)
