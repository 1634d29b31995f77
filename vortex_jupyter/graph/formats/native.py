"""The native JSON format: the model written out field for field, with a schema version.

::

    {"schema_version": 1,
     "nodes": [{"id": "1", "type": "Add", "params": {"a": 1}, "pos": [0, 0],
                "size": null, "title": null, "extra": {}}],
     "edges": [{"src": "1", "src_output": 0, "dst": "2", "dst_input": "a"}],
     "groups": [], "extra": {}}

Policy: strict. Unknown fields and wrong types are ``FormatError`` naming the JSON path, so a
typo (``"parms"``) is caught instead of silently dropped. Broken graphs that the model can hold
(edges from missing nodes, two edges into one input) load as they are, for validation to
report. Param values are not judged here (validation does that).

>>> d = {"schema_version": 1, "nodes": [{"id": "a", "type": "T", "params": {"x": 1}}]}
>>> to_native(from_native(d))["nodes"][0]["params"]
{'x': 1}
"""

from __future__ import annotations

from typing import Any

from ..model import GraphModel
from ._common import fail, integer, lst, name, obj, only_keys, opt_title, pair

__all__ = ["SCHEMA_VERSION", "from_native", "to_native"]

SCHEMA_VERSION = 1
_TOP = ("schema_version", "nodes", "edges", "groups", "extra")
_NODE = ("id", "type", "params", "pos", "size", "title", "extra")
_EDGE = ("src", "src_output", "dst", "dst_input")


def from_native(d: Any) -> GraphModel:
    """Read a native graph dict. Raises ``FormatError`` naming the bad field."""
    d = obj(d, "(top level)")
    only_keys(d, _TOP, "")
    if "schema_version" not in d:
        fail("schema_version", "missing", f"add \"schema_version\": {SCHEMA_VERSION}")
    version = integer(d["schema_version"], "schema_version", lo=1, hi=1 << 31)
    if version != SCHEMA_VERSION:
        fail("schema_version", f"version {version} is not supported (this release reads {SCHEMA_VERSION})",
             "upgrade vortex-jupyter or re-export the graph")
    model = GraphModel()
    for i, raw in enumerate(lst(d.get("nodes", []), "nodes")):
        _add_node(model, raw, f"nodes[{i}]")
    for i, raw in enumerate(lst(d.get("edges", []), "edges")):
        _add_edge(model, raw, f"edges[{i}]")
    for i, group in enumerate(lst(d.get("groups", []), "groups")):
        model.groups.append(dict(obj(group, f"groups[{i}]")))
    model.extra = dict(obj(d.get("extra", {}), "extra"))
    return model


def _add_node(model: GraphModel, raw: Any, path: str) -> None:
    raw = obj(raw, path)
    only_keys(raw, _NODE, path)
    for key in ("id", "type"):
        if key not in raw:
            fail(f"{path}.{key}", "missing")
    nid = name(raw["id"], f"{path}.id")
    if nid in model.nodes:
        fail(f"{path}.id", f"node id {nid!r} is used twice", "give every node its own id")
    size = raw.get("size")
    model.add_node(
        name(raw["type"], f"{path}.type"),
        dict(obj(raw.get("params", {}), f"{path}.params")),
        id=nid,
        pos=pair(raw.get("pos", (0, 0)), f"{path}.pos"),
        size=None if size is None else pair(size, f"{path}.size"),
        title=opt_title(raw.get("title"), f"{path}.title"),
        extra=dict(obj(raw.get("extra", {}), f"{path}.extra")),
    )


def _add_edge(model: GraphModel, raw: Any, path: str) -> None:
    raw = obj(raw, path)
    only_keys(raw, _EDGE, path)
    for key in _EDGE:
        if key not in raw:
            fail(f"{path}.{key}", "missing")
    dst = name(raw["dst"], f"{path}.dst")
    if dst not in model.nodes:
        fail(f"{path}.dst", f"node {dst!r} does not exist", "link into a node listed in \"nodes\"")
    # a missing *source* is kept: validation reports it as VE-107 with the input it feeds
    model.connect(
        name(raw["src"], f"{path}.src"),
        integer(raw["src_output"], f"{path}.src_output", hi=1 << 31),
        dst,
        name(raw["dst_input"], f"{path}.dst_input"),
        replace=False,
    )


def to_native(model: GraphModel) -> dict[str, Any]:
    """The model as a native dict (JSON-ready as long as the param values are)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "nodes": [
            {
                "id": n.id,
                "type": n.type,
                "params": dict(n.params),
                "pos": [n.pos[0], n.pos[1]],
                "size": None if n.size is None else [n.size[0], n.size[1]],
                "title": n.title,
                "extra": dict(n.extra),
            }
            for n in model.nodes.values()
        ],
        "edges": [
            {"src": e.src, "src_output": e.src_output, "dst": e.dst, "dst_input": e.dst_input}
            for e in model.edges()
        ],
        "groups": [dict(g) for g in model.groups],
        "extra": dict(model.extra),
    }
