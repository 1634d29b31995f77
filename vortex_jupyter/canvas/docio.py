"""A whole graph into a Y doc and back: the doc as a document's shared state.

``ydoc.GraphDoc`` keeps a live model and its doc equal edit by edit; this module converts
wholesale, for the places that hold no live model: the Jupyter server's shared document
(``vortex_jupyter.lab.ydoc``), which loads a file into a doc and saves a doc into a file.

Schema additions over ``schema.py`` (all optional, views neither read nor write them):

- node field ``keep``: JSON text ``{"extra": ..., "params": ...}``: the node's format data
  kept for exact round trips (``NodeData.extra``) and its params that are JSON but not a
  scalar (lists, objects), which the canvas does not edit;
- group value key ``keep``: JSON text of the whole group as the model holds it (ComfyUI's
  ``id``, ``font_size``, ``flags``, key order ...); title, box and color are read from the doc;
- root ``file``: ``info`` (the ``DocumentInfo`` as JSON text), ``keep`` (``GraphModel.extra``
  as JSON text) and ``order`` (JSON text ``{"nodes": [...], "groups": [...]}``: Y maps have
  no order, files do).

``write_model`` makes a doc equal a model with the fewest changes (a file changed on disk
updates only what changed, so concurrent edits elsewhere survive); on an empty doc it is the
initial load, deterministic for a given model. ``read_model`` is its inverse; a doc part that
breaks the schema (``schema.check_*``) is skipped there, never trusted.

>>> from pycrdt import Doc
>>> m = GraphModel(); a = m.add_node("KSampler", {"seed": 5, "tags": [1, 2]}, extra={"k": 1})
>>> doc = Doc(); write_model(doc, m)
>>> back, info = read_model(doc, lookup=None)
>>> back.nodes[a].params == {"seed": 5, "tags": [1, 2]}, back.nodes[a].extra
(True, {'k': 1})
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

from pycrdt import Doc, Map

from ..graph.formats._common import GROUP_BOX, group_box
from ..graph.formats._ui_common import PRIMITIVE
from ..graph.formats.document import DocumentInfo
from ..graph.model import Edge, GraphModel, NodeData
from . import values
from .protocol import ROOT_EDGES, ROOT_FILE, ROOT_GROUPS, ROOT_META, ROOT_NODES, edge_key
from .schema import MAX_FILE_TEXT as MAX_FILE_KEEP
from .schema import MAX_KEEP, NODE_MODES, SchemaViolation, check_edge, check_group, check_node

log = logging.getLogger(__name__)

KEEP = "keep"
Lookup = Callable[[str], Any]


# ---- model -> doc values ---------------------------------------------------------------------
def node_fields(node: NodeData, mode: int = 0) -> dict[str, Any]:
    """The doc fields of ``node`` (``params`` as a plain dict of scalars)."""
    fields: dict[str, Any] = {"type": node.type, "x": node.pos[0], "y": node.pos[1]}
    if node.size is not None:
        fields["w"], fields["h"] = node.size
    if node.title:
        fields["title"] = node.title
    if mode:
        fields["mode"] = mode
    keep = node_keep(node)
    if keep is not None:
        fields[KEEP] = keep
    fields["params"] = values.params_to_doc(node.params)
    return fields


def node_map(node: NodeData, mode: int = 0) -> Map:
    fields = node_fields(node, mode)
    fields["params"] = Map(fields["params"])
    return Map(fields)


def node_keep(node: NodeData) -> str | None:
    """``keep`` text of a node, or ``None`` when it has nothing to keep."""
    rich = {k: v for k, v in node.params.items()
            if values.to_doc(v) is values.NOT_MIRRORED and isinstance(v, (list, dict))}
    if not node.extra and not rich:
        return None
    data: dict[str, Any] = {}
    if node.extra:
        data["extra"] = node.extra
    if rich:
        data["params"] = rich
    try:
        return json.dumps(data, ensure_ascii=False, allow_nan=False, default=_unjsonable)
    except ValueError:  # NaN somewhere: keep what JSON can hold
        return None


def _unjsonable(value: Any) -> Any:
    raise ValueError(f"not JSON: {type(value).__name__}")


def read_keep(text: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(extra, rich params) from a ``keep`` text; garbage reads as nothing kept."""
    data = _json(text, MAX_KEEP)
    if not isinstance(data, dict):
        return {}, {}
    extra, rich = data.get("extra"), data.get("params")
    rich = {k: v for k, v in rich.items() if isinstance(v, (list, dict))} if isinstance(rich, dict) else {}
    return (extra if isinstance(extra, dict) else {}), rich


def doc_mode(model: GraphModel, node_id: str) -> int:
    """The mode the doc shows: a mode the schema does not know (a corrupt file's) reads as 0
    there, so the doc stays valid and a view's unrelated edit does not reset it."""
    mode = model.mode(node_id)
    return mode if mode in NODE_MODES else 0


def edge_value(edge: Edge) -> dict[str, Any]:
    return {"src": edge.src, "src_output": edge.src_output, "dst": edge.dst, "dst_input": edge.dst_input}


def edge_from_value(value: dict[str, Any]) -> Edge:
    return Edge(str(value["src"]), int(value["src_output"]), str(value["dst"]), str(value["dst_input"]))


def group_id(index: int, group: dict[str, Any]) -> str:
    return str(group.get("id", f"g{index}"))


def group_value(index: int, group: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The doc value of a model group; ``keep`` holds the whole group as the file had it."""
    value: dict[str, Any] = {"title": str(group.get("title", ""))}
    value.update(zip(GROUP_BOX, group_box(group), strict=True))
    if group.get("color"):
        value["color"] = str(group["color"])
    with contextlib.suppress(ValueError):  # NaN somewhere: the doc's fields are all there is
        value[KEEP] = json.dumps(group, ensure_ascii=False, allow_nan=False, default=_unjsonable)
    return group_id(index, group), value


def group_from_value(gid: str, value: dict[str, Any], before: dict[str, Any] | None = None) -> dict[str, Any]:
    """A model group (ComfyUI's shape: ``bounding``) from its doc value. It starts from the
    group as kept (``keep``, else ``before``: the group it edits), so fields the doc does not
    carry, key order and number types survive; title, box and color come from the doc."""
    kept = _json(value.get(KEEP), MAX_KEEP)
    base = kept if isinstance(kept, dict) else dict(before or {})
    group = {k: v for k, v in base.items() if k not in GROUP_BOX}
    if not base:  # a group drawn on the canvas: its doc id becomes its id
        group["id"] = gid
    group["title"] = value.get("title", "")
    old = group_box(base) if base else None
    box = [_num(value.get(k, 0.0)) for k in GROUP_BOX]
    raw = base.get("bounding")
    if old is not None and isinstance(raw, list) and len(raw) == 4 and old == [float(b) for b in box]:
        box = list(raw)  # unchanged: keep the file's numbers as they were (ints stay ints)
    group["bounding"] = box
    if value.get("color"):
        group["color"] = value["color"]
    else:
        group.pop("color", None)
    return group


# ---- whole model -> doc ----------------------------------------------------------------------
def write_model(doc: Doc, model: GraphModel, info: DocumentInfo | None = None, origin: str = "load") -> None:
    """Make ``doc`` hold ``model`` (and ``info``), changing only what differs, in one
    transaction. Deterministic: the same model on an empty doc gives the same update."""
    nodes = doc.get(ROOT_NODES, type=Map)
    edges = doc.get(ROOT_EDGES, type=Map)
    groups = doc.get(ROOT_GROUPS, type=Map)
    meta = doc.get(ROOT_META, type=Map)
    with doc.transaction(origin=origin):
        for node_id in [k for k in nodes if k not in model.nodes]:
            del nodes[node_id]
        for node in model.nodes.values():
            _write_node(nodes, node, doc_mode(model, node.id))
        wanted = {edge_key(e.dst, e.dst_input): edge_value(e) for e in model.edges()}
        for key in [k for k in edges if k not in wanted]:
            del edges[key]
        for key, value in wanted.items():
            if edges.get(key) != value:
                edges[key] = value
        wanted_groups = dict(group_value(i, g) for i, g in enumerate(model.groups))
        for gid in [k for k in groups if k not in wanted_groups]:
            del groups[gid]
        for gid, value in wanted_groups.items():
            if groups.get(gid) != value:
                groups[gid] = value
        if meta.get("schema") != 1:
            meta["schema"] = 1
        if info is not None:
            _write_file(doc, model, info)


def _write_node(nodes: Map, node: NodeData, mode: int) -> None:
    fields = node_fields(node, mode)
    current = nodes.get(node.id)
    if not isinstance(current, Map) or current.get("type") != node.type or not isinstance(current.get("params"), Map):
        nodes[node.id] = node_map(node, mode)
        return
    params = fields.pop("params")
    for key in [k for k in current.keys() if k != "params" and k not in fields]:  # noqa: SIM118
        del current[key]
    for key, value in fields.items():
        if current.get(key) != value:
            current[key] = value
    yparams = current["params"]
    for name in [k for k in yparams if k not in params]:
        del yparams[name]
    for name, value in params.items():
        if name not in yparams or not values.same_value(_as_model_number(yparams[name], value), value):
            yparams[name] = value


def _as_model_number(doc_value: Any, model_value: Any) -> Any:
    """A doc number compared with the model's: pycrdt gives floats back for ints."""
    if type(model_value) is int and isinstance(doc_value, float) and doc_value.is_integer():
        return int(doc_value)
    return doc_value


def _write_file(doc: Doc, model: GraphModel, info: DocumentInfo) -> None:
    file = doc.get(ROOT_FILE, type=Map)
    order = {"nodes": list(model.nodes), "groups": [group_id(i, g) for i, g in enumerate(model.groups)]}
    texts = {
        "info": json.dumps(info.to_dict()),
        "keep": json.dumps(model.extra, ensure_ascii=False, allow_nan=False, default=str),
        "order": json.dumps(order, ensure_ascii=False),
    }
    for key, text in texts.items():
        if file.get(key) != text:
            file[key] = text


# ---- doc -> whole model ----------------------------------------------------------------------
def read_info(doc: Doc) -> DocumentInfo | None:
    """The document info a doc carries, or ``None`` (a kernel-only doc)."""
    text = doc.get(ROOT_FILE, type=Map).get("info")
    return DocumentInfo.from_dict(_json(text, MAX_KEEP)) if text is not None else None


def read_file_keep(doc: Doc) -> dict[str, Any] | None:
    """The graph-level data (``GraphModel.extra``) a document's doc keeps, or ``None``."""
    extra = _json(doc.get(ROOT_FILE, type=Map).get("keep"), MAX_FILE_KEEP)
    return extra if isinstance(extra, dict) else None


def _schema_ok(check: Callable[[str, Any], Any], key: str, value: Any, what: str) -> bool:
    """``check(key, value)`` passed; else the part is skipped, with a warning naming it."""
    try:
        check(key, value)
    except SchemaViolation as exc:
        log.warning("skipping a %s that breaks the schema: %s", what, exc)
        return False
    return True


def read_model(doc: Doc, lookup: Lookup | None) -> tuple[GraphModel, DocumentInfo | None]:
    """The model a doc holds. Parts breaking the schema are skipped (and logged), so a doc a
    hostile client scribbled on still gives a model; edges into missing nodes are dropped."""
    model = GraphModel()
    info = read_info(doc)
    order = _json(doc.get(ROOT_FILE, type=Map).get("order"), MAX_FILE_KEEP)
    order = order if isinstance(order, dict) else {}
    nodes = doc.get(ROOT_NODES, type=Map)
    for node_id in _ordered(list(nodes.keys()), order.get("nodes")):
        ymap = nodes[node_id]
        if not _schema_ok(check_node, node_id, ymap, "node"):
            continue
        add_node_from_doc(model, node_id, ymap.to_py(), lookup, js_numbers=True)
    edges = doc.get(ROOT_EDGES, type=Map)
    for key in sorted(edges.keys()):
        value = edges[key]
        if not _schema_ok(check_edge, key, value, "edge"):
            continue
        edge = edge_from_value(value)
        if edge.dst in model.nodes and edge.src in model.nodes:
            model.connect(edge.src, edge.src_output, edge.dst, edge.dst_input)
    groups = doc.get(ROOT_GROUPS, type=Map)
    for gid in _ordered(list(groups.keys()), order.get("groups")):
        value = groups[gid]
        if not _schema_ok(check_group, gid, value, "group"):
            continue
        model.groups.append(group_from_value(gid, value))
    model.extra = read_file_keep(doc) or {}
    return model, info


def add_node_from_doc(model: GraphModel, node_id: str, fields: dict[str, Any], lookup: Lookup | None,
                      origin: str | None = None, js_numbers: bool = False) -> None:
    """Add the node a (schema-checked) doc node describes (``js_numbers``: see
    ``params_from_doc``)."""
    extra, rich = read_keep(fields.get(KEEP))
    params = params_from_doc(lookup, str(fields["type"]), fields.get("params") or {}, js_numbers)
    for name, value in rich.items():
        params.setdefault(name, value)
    model.add_node(str(fields["type"]), params, id=node_id, origin=origin, extra=extra, **layout_of(fields))
    if fields["type"] == PRIMITIVE:  # as the UI reader has it: a primitive always applies
        model.modes.pop(node_id, None)
        return
    mode = int(fields.get("mode") or 0)
    if mode != model.mode(node_id):
        model.set_mode(node_id, mode, origin=origin)


def params_from_doc(lookup: Lookup | None, node_type: str, params: dict[str, Any],
                    js_numbers: bool = False) -> dict[str, Any]:
    """Doc params as Python values: by the spec's port types where the type is known; for
    unknown types an integral number is an int (the doc keeps no int/float distinction and
    an unknown node's widgets are most often counts and sizes). ``js_numbers``: every
    integral number is an int, as JavaScript writes JSON (a document saved from a doc
    writes ``8``, not ``8.0``, like the ComfyUI frontend)."""
    out = {}
    for name, value in params.items():
        ptype = values.port_type(lookup, node_type, name)
        integral = isinstance(value, float) and value.is_integer() and abs(value) <= values.MAX_SAFE_INT
        if integral and (ptype is None or js_numbers):
            out[name] = int(value)
        else:
            out[name] = values.from_doc(value, ptype)
    return out


def layout_of(fields: dict[str, Any]) -> dict[str, Any]:
    w, h = fields.get("w"), fields.get("h")
    return {
        "pos": (float(fields.get("x", 0.0)), float(fields.get("y", 0.0))),
        "size": (float(w), float(h)) if w is not None and h is not None else None,
        "title": fields.get("title"),
    }


def _ordered(keys: list[str], order: Any) -> list[str]:
    """``keys`` in the recorded ``order`` first, then the rest in a stable natural order."""
    present = set(keys)
    first = [k for k in order if isinstance(k, str) and k in present] if isinstance(order, list) else []
    seen = set(first)
    return first + sorted((k for k in keys if k not in seen), key=_natural)


def _natural(key: str) -> tuple[Any, ...]:
    return (0, int(key), "") if key.isdigit() else (1, 0, key)


def _num(value: Any) -> Any:
    """A doc number as the model keeps box values: integral ones as ints (as files hold them)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _json(text: Any, limit: int) -> Any:
    if not isinstance(text, str) or len(text) > limit:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None
