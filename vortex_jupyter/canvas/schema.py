"""The Y doc schema (CANVAS.md) as checks, and what an update touched.

An update from a view is untrusted. ``sync.py`` applies it to a scratch replica, collects
the parts it touched from that replica's deep events (``Touched``), and asks ``check`` to
verify exactly those parts; only then does the authoritative doc see it. ``Touched`` then
tells the binding (``ydoc.py``) which nodes, params and edges to reconcile into the
``GraphModel``, so the engine invalidates exactly the affected cache keys.

Schema::

    nodes:  Map<id, Map{type: str, title?: str, x, y: num, w?, h?: num, mode?: 0..4,
                        params: Map<name, scalar>, keep?: JSON text}>
    edges:  Map<"dst:input", {src: str, src_output: int, dst: str, dst_input: str}>
    groups: Map<id, {title: str, x, y, w, h: num, color?: str, keep?: JSON text}>
    meta:   Map<str, JSON>
    file:   Map<"info" | "keep" | "order", JSON text>      (documents only; ``docio``)

``keep`` and ``file`` carry what a document file holds beyond what the canvas edits
(``docio.py``); views never write them. A document's doc also has jupyter_ydoc's ``state``
root under real-time collaboration (``FOREIGN_ROOTS``), which is not ours to check.

``mode`` is the node's ComfyUI mode (``graph/modes.py``): an integer 0..4, absent meaning 0
(always); 2 is muted, 4 bypassed. Yjs has one number type, so an integral float counts.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from pycrdt import Map

from .protocol import (
    FOREIGN_ROOTS,
    ROOT_EDGES,
    ROOT_FILE,
    ROOT_GROUPS,
    ROOT_META,
    ROOT_NODES,
    ROOTS,
    edge_key,
)

MAX_ID = 256  # characters in a node id, param name or edge key
MAX_STRING = 1 << 20  # characters in one string param (a long prompt is ~ kilobytes)
MAX_TITLE = 1_000  # characters in a node's or group's title
MAX_COORD = 1e9
MAX_NODES = 100_000
MAX_PARAMS = 1_000
MAX_OUTPUT_INDEX = 1_000
MAX_META_JSON = 1 << 16
MAX_KEEP = 1 << 20  # characters of a node's or group's kept file data
MAX_FILE_TEXT = 64 << 20  # characters of one value of the ``file`` root
NODE_FIELDS = {"type", "title", "x", "y", "w", "h", "mode", "params", "keep"}
FILE_KEYS = {"info", "keep", "order"}
NODE_MODES = range(5)  # ComfyUI: 0 always, 1 on event, 2 never (muted), 3 on trigger, 4 bypass


class SchemaViolation(ValueError):
    """The doc an update would produce breaks the schema; the message names the field,
    ``hint`` says what to do."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


@dataclass
class Touched:
    """Parts of the doc one transaction changed."""

    nodes: set[str] = field(default_factory=set)  # added, removed or replaced wholesale
    fields: dict[str, set[str]] = field(default_factory=dict)  # node -> changed fields
    params: dict[str, set[str]] = field(default_factory=dict)  # node -> changed param names
    edges: set[str] = field(default_factory=set)
    groups: bool = False
    group_ids: set[str] = field(default_factory=set)  # groups added, changed or removed
    meta: bool = False
    meta_keys: set[str] = field(default_factory=set)
    file: bool = False

    def empty(self) -> bool:
        return not (self.nodes or self.fields or self.params or self.edges or self.groups or self.meta
                    or self.file)

    def add_events(self, root: str, events: list[Any]) -> None:
        """Fold a root's ``observe_deep`` events into this set."""
        for ev in events:
            path = list(getattr(ev, "path", []))
            keys = set(getattr(ev, "keys", {}) or {})
            if root == ROOT_EDGES:
                self.edges |= keys if not path else {str(path[0])}
            elif root == ROOT_GROUPS:
                self.groups = True
                self.group_ids |= keys if not path else {str(path[0])}
            elif root == ROOT_META:
                self.meta = True
                self.meta_keys |= keys if not path else {str(path[0])}
            elif root == ROOT_FILE:
                self.file = True
            elif not path:
                self.nodes |= keys
            elif len(path) == 1:
                self.fields.setdefault(str(path[0]), set()).update(keys)
            elif len(path) == 2 and path[1] == "params":
                self.params.setdefault(str(path[0]), set()).update(keys)
            else:  # deeper than the schema allows: re-check the whole node
                self.nodes.add(str(path[0]))

    def node_ids(self) -> set[str]:
        return self.nodes | set(self.fields) | set(self.params)


def check(doc: Any, touched: Touched, max_string: int = MAX_STRING, roots: bool = True) -> None:
    """Raise ``SchemaViolation`` if a touched part of ``doc`` breaks the schema (``max_string``:
    characters of one string param; ``roots=False``: the caller checked the roots)."""
    if roots:
        check_roots(doc)
    nodes = doc.get(ROOT_NODES, type=Map)
    if len(nodes) > MAX_NODES:
        raise SchemaViolation(f"{len(nodes)} nodes exceed the limit of {MAX_NODES}")
    for node_id in touched.node_ids():
        if node_id in nodes:
            check_node(node_id, nodes[node_id], max_string)
    edges = doc.get(ROOT_EDGES, type=Map)
    for key in touched.edges:
        if key in edges:
            check_edge(key, edges[key])
    if touched.groups:
        for gid, group in doc.get(ROOT_GROUPS, type=Map).items():
            check_group(gid, group)
    if touched.meta:
        _check_meta(doc.get(ROOT_META, type=Map))
    if touched.file:
        check_file(doc.get(ROOT_FILE, type=Map))


def check_roots(doc: Any) -> None:
    """A doc has our roots (and jupyter_ydoc's) only. A root cannot be deleted again, so a doc
    that got another one stays broken: this is checked before anything else."""
    extra = set(doc.keys()) - set(ROOTS) - set(FOREIGN_ROOTS)
    if extra:
        raise SchemaViolation(f"unknown root type(s) {sorted(extra)!r}; the doc has only {list(ROOTS)}")


def check_node(node_id: str, node: Any, max_string: int = MAX_STRING) -> None:
    where = f"nodes[{node_id[:40]!r}]"
    _check_id(node_id, where)
    if not isinstance(node, Map):
        raise SchemaViolation(f"{where} must be a Y.Map, got {type(node).__name__}")
    fields = dict(node.items())
    unknown = set(fields) - NODE_FIELDS
    if unknown:
        raise SchemaViolation(f"{where} has unknown field(s) {sorted(unknown)!r}")
    _check_str(fields.get("type"), f"{where}.type", MAX_ID)
    if fields.get("title") is not None:
        _check_str(fields["title"], f"{where}.title", MAX_TITLE)
    for key in ("x", "y"):
        _check_num(fields.get(key), f"{where}.{key}")
    for key in ("w", "h"):
        if fields.get(key) is not None:
            _check_num(fields[key], f"{where}.{key}")
    if "mode" in fields:
        check_mode(fields["mode"], f"{where}.mode")
    if "keep" in fields:
        _check_str(fields["keep"], f"{where}.keep", MAX_KEEP)
    params = fields.get("params")
    if not isinstance(params, Map):
        raise SchemaViolation(f"{where}.params must be a Y.Map, got {type(params).__name__}")
    if len(params) > MAX_PARAMS:
        raise SchemaViolation(f"{where}.params has {len(params)} entries; the limit is {MAX_PARAMS}")
    for name, value in params.items():
        _check_id(name, f"{where}.params key")
        _check_scalar(value, f"{where}.params[{name[:40]!r}]", max_string)


def check_mode(value: Any, where: str) -> None:
    """A node mode is an integer 0..4; Yjs numbers are doubles, so ``4.0`` passes."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and value in NODE_MODES
    if not ok:
        raise SchemaViolation(f"{where} must be a node mode 0..4 (0 always, 2 muted, 4 bypassed), got {value!r}")


def check_edge(key: str, edge: Any) -> None:
    where = f"edges[{key[:80]!r}]"
    if not isinstance(edge, dict):
        raise SchemaViolation(f"{where} must be a plain object {{src, src_output, dst, dst_input}}")
    if set(edge) != {"src", "src_output", "dst", "dst_input"}:
        raise SchemaViolation(f"{where} must have exactly src, src_output, dst, dst_input; has {sorted(edge)}")
    for name in ("src", "dst", "dst_input"):
        _check_str(edge[name], f"{where}.{name}", MAX_ID)
    out = edge["src_output"]
    if (isinstance(out, bool) or not isinstance(out, (int, float)) or not 0 <= out < MAX_OUTPUT_INDEX
            or out != int(out)):  # range first: int() of an infinity raises
        raise SchemaViolation(f"{where}.src_output must be an output index 0..{MAX_OUTPUT_INDEX - 1}, got {out!r}")
    if key != edge_key(edge["dst"], edge["dst_input"]):
        raise SchemaViolation(f"{where} key must be '{edge_key(edge['dst'], edge['dst_input'])}'")


def check_group(gid: str, group: Any) -> None:
    where = f"groups[{gid[:40]!r}]"
    _check_id(gid, where)
    if not isinstance(group, dict):
        raise SchemaViolation(f"{where} must be a plain object {{title, x, y, w, h, color?}}")
    _check_str(group.get("title", ""), f"{where}.title", MAX_TITLE)
    for key in ("x", "y", "w", "h"):
        _check_num(group.get(key), f"{where}.{key}")
    if group.get("color") is not None:
        _check_str(group["color"], f"{where}.color", 64)
    if group.get("keep") is not None:
        _check_str(group["keep"], f"{where}.keep", MAX_KEEP)


def check_file(file: Map) -> None:
    for key, value in file.items():
        if key not in FILE_KEYS:
            raise SchemaViolation(f"file has unknown key {key[:40]!r}; it has only {sorted(FILE_KEYS)}")
        _check_str(value, f"file.{key}", MAX_FILE_TEXT)


def _check_meta(meta: Map) -> None:
    try:
        size = len(json.dumps(meta.to_py()))
    except (TypeError, ValueError) as exc:
        raise SchemaViolation(f"meta must hold JSON values: {exc}") from None
    if size > MAX_META_JSON:
        raise SchemaViolation(f"meta is {size} bytes of JSON; the limit is {MAX_META_JSON}")


def _check_id(value: Any, where: str) -> None:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID:
        raise SchemaViolation(f"{where}: ids and names must be strings of 1..{MAX_ID} characters")


def _check_str(value: Any, where: str, limit: int, hint: str = "shorten it") -> None:
    if not isinstance(value, str):
        raise SchemaViolation(f"{where} must be a string, got {type(value).__name__}")
    if len(value) > limit:
        raise SchemaViolation(f"{where} is {len(value):,} characters; the limit is {limit:,}", hint=hint)


def _check_num(value: Any, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SchemaViolation(f"{where} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or abs(value) > MAX_COORD:
        raise SchemaViolation(f"{where} must be finite and within ±{MAX_COORD:g}, got {value!r}")


def _check_scalar(value: Any, where: str, max_string: int = MAX_STRING) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise SchemaViolation(f"{where} must be finite, got {value!r}")
        return
    if isinstance(value, str):
        _check_str(value, where, max_string, hint="shorten it; Python can set a longer text (the kernel's own "
                                                   "edits are not capped)")
        return
    raise SchemaViolation(f"{where} must be a JSON scalar (null, bool, number, string), got {type(value).__name__}")
