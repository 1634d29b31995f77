"""ComfyUI's API ("prompt") format: what ComfyUI's ``/prompt`` endpoint executes.

::

    {"3": {"class_type": "KSampler",
           "inputs": {"seed": 5, "model": ["4", 0], ...},
           "_meta": {"title": "KSampler"}}}

An input value is either a widget value or a link ``[source_id, output_index]``. A widget may
itself hold a 2-element list, so a value is read as a link only when it is ``[id, int]`` with
``id`` (a string, or an int) naming a node of the same file; anything else stays a param.

The format holds no layout, so positions are not written; keys other than ``class_type``,
``inputs`` and ``_meta`` are kept in ``NodeData.extra["comfy_api"]`` and written back, and a
missing ``_meta`` stays missing, so API -> graph -> API is lossless.

ComfyUI's frontend writes its upload button as an input (``"upload": "image"`` on LoadImage,
``"choose file to upload"`` in older versions); the backend ignores inputs a node does not
declare. They are kept in the extra and written back, not made params (so they validate),
unless the node's spec (given ``lookup``) really has an input of that name. A list value the
frontend wrapped as ``{"__value__": [...]}`` is read as the list.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from ..model import Edge, GraphModel, NodeData
from ..modes import resolve, skipped
from ..queue import QueueView
from ..textsub import PRIMITIVE
from ._common import fail, name, obj, opt_title

__all__ = ["from_comfy_api", "is_link", "to_comfy_api"]

_EXTRA = "comfy_api"
_NO_META = "_no_meta"
_FRONTEND = "_frontend_inputs"
_BARE = "_bare_lists"
#: Widgets of ComfyUI's frontend only (the upload button, named differently over the years);
#: the backend ignores inputs its node does not declare.
_FRONTEND_INPUTS = ("upload", "choose file to upload")


def is_link(value: Any, node_ids: Any) -> bool:
    """Whether an API input value is a link ``[id, output_index]`` to a node in ``node_ids``."""
    if not isinstance(value, list) or len(value) != 2:
        return False
    src, index = value
    if isinstance(src, bool) or not isinstance(src, (str, int)):
        return False
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < (1 << 31):
        return False
    return str(src) in node_ids


def from_comfy_api(d: Any, lookup: Callable[[str], Any] | None = None) -> GraphModel:
    """Read an API-format prompt. Raises ``FormatError`` naming the bad field."""
    d = obj(d, "(top level)")
    ids = {str(k) for k in d}
    model = GraphModel()
    links: list[tuple[str, int, str, str]] = []
    for key, raw in d.items():
        nid = name(str(key), f"[{key!r}]")
        path = f"{nid}"
        raw = obj(raw, path)
        if "class_type" not in raw:
            fail(f"{path}.class_type", "missing", "every node needs a class_type")
        params: dict[str, Any] = {}
        frontend: dict[str, Any] = {}
        bare: list[str] = []
        ntype = name(raw["class_type"], f"{path}.class_type")
        for input_name, value in obj(raw.get("inputs", {}), f"{path}.inputs").items():
            name(input_name, f"{path}.inputs")
            if is_link(value, ids):
                links.append((str(value[0]), value[1], nid, input_name))
            elif input_name in _FRONTEND_INPUTS and isinstance(value, str) and not _has_input(lookup, ntype, input_name):
                frontend[input_name] = value
            elif isinstance(value, dict) and list(value) == ["__value__"] and isinstance(value["__value__"], list):
                params[input_name] = value["__value__"]  # how the frontend sends list values
            else:
                if isinstance(value, list):
                    bare.append(input_name)
                params[input_name] = value
        title = _title(raw, path)  # checks _meta is an object before _extra reads it
        extra = _extra(raw)
        if frontend:
            extra.setdefault(_EXTRA, {})[_FRONTEND] = frontend
        if bare:
            extra.setdefault(_EXTRA, {})[_BARE] = bare
        model.add_node(ntype, params, id=nid, title=title, extra=extra)
    for src, index, dst, input_name in links:
        model.connect(src, index, dst, input_name, replace=False)
    return model


def _has_input(lookup: Callable[[str], Any] | None, ntype: str, input_name: str) -> bool:
    spec = lookup(ntype) if lookup is not None else None
    return spec is not None and spec.input(input_name) is not None


def _title(raw: dict[str, Any], path: str) -> str | None:
    meta = obj(raw.get("_meta", {}), f"{path}._meta")
    return opt_title(meta.get("title"), f"{path}._meta.title")


def _extra(raw: dict[str, Any]) -> dict[str, Any]:
    kept = {k: v for k, v in raw.items() if k not in ("class_type", "inputs", "_meta")}
    if "_meta" not in raw:
        kept[_NO_META] = True
    else:
        meta_rest = {k: v for k, v in raw["_meta"].items() if k != "title"}
        if meta_rest:
            kept["_meta"] = meta_rest
    return {_EXTRA: kept} if kept else {}


def to_comfy_api(model: GraphModel, lookup: Callable[[str], Any] | None = None, *,
                 now: datetime | None = None) -> dict[str, Any]:
    """The model as an API-format prompt, as ComfyUI's frontend (``graphToPrompt``) makes it.

    With ``lookup`` (``REGISTRY.lookup``), inputs are written in the spec's order, required
    widget inputs without a value get their default (ComfyUI rejects prompts missing them),
    and a node without a title gets its type's display name in ``_meta``.

    As the frontend does: muted and bypassed nodes are left out, a link from a bypassed node
    is rewired to what it passes through (``graph/modes.py``) and an input left with nothing
    is left out; PrimitiveNodes are left out and their value written into the inputs they
    feed; text substitution runs (``graph/queue.py``, ``now`` is the clock); a list value is
    sent as ``{"__value__": [...]}`` (the backend unwraps it) unless it came bare from an API
    file. A node of an unknown type read from a UI file sends the values the file names
    (``widgets_values_named``), if it has them.
    """
    view = QueueView(model, lookup if lookup is not None else _no_spec, now)
    out: dict[str, Any] = {}
    off = skipped(model) if model.modes else set()
    for node in model.nodes.values():
        if node.id in off or node.type == PRIMITIVE:
            continue
        spec = lookup(node.type) if lookup is not None else None
        inputs = _inputs(model, view, node, spec, off)
        entry: dict[str, Any] = {"inputs": inputs, "class_type": node.type}
        kept = dict(node.extra.get(_EXTRA) or {}) if isinstance(node.extra.get(_EXTRA), dict) else {}
        frontend = kept.pop(_FRONTEND, None)
        kept.pop(_BARE, None)
        if isinstance(frontend, dict):
            inputs.update((k, v) for k, v in frontend.items() if k not in inputs)
        if not kept.pop(_NO_META, False):
            title = node.title or (getattr(spec, "display_name", "") or node.type)
            entry["_meta"] = {"title": title, **kept.pop("_meta", {})}
        entry.update(kept)
        out[node.id] = entry
    for nid, entry in out.items():  # as graphToPrompt: inputs linked to nodes not sent are dropped
        for input_name in model.inputs_of(nid):
            value = entry["inputs"].get(input_name)
            if type(value) is list and value[0] not in out:
                del entry["inputs"][input_name]
    return out


def _inputs(model: GraphModel, view: QueueView, node: NodeData, spec: Any, off: set[str]) -> dict[str, Any]:
    linked = model.inputs_of(node.id)
    kept = node.extra.get(_EXTRA)
    bare = kept.get(_BARE, ()) if isinstance(kept, dict) else ()
    params = node.params if node.params or spec is not None else _unknown_widgets(node)
    inputs: dict[str, Any] = {}
    for port_name in _input_order(spec, params, linked):
        if _hidden_setting(spec, port_name, params):
            continue  # a DynamicCombo setting of another option: the frontend sends none
        edges = linked.get(port_name)
        if edges:
            source = _source(model, view, edges[0], off)
            if source is None:
                continue  # ComfyUI sends no value for this input either
            if source[0] == "value":
                inputs[port_name] = _wrap(view.value(node, port_name, source[1]), port_name, bare)
            else:
                inputs[port_name] = [source[1], source[2]]
        elif port_name in params:
            inputs[port_name] = _wrap(view.value(node, port_name, params[port_name]), port_name, bare)
        else:
            port = spec.input(port_name) if spec is not None else None
            shown = getattr(port, "shown_when", None) is not None and getattr(port, "widget", False)
            if port is not None and (port.required or shown) and getattr(port, "has_default", False):
                inputs[port_name] = _wrap(view.value(node, port_name, port.default), port_name, bare)
    return inputs


def _hidden_setting(spec: Any, name: str, params: dict[str, Any]) -> bool:
    """Whether ``name`` is a DynamicCombo setting (``shown_when``) its combo does not show now."""
    port = spec.input(name) if spec is not None else None
    cond = getattr(port, "shown_when", None)
    if not cond:
        return False
    combo = spec.input(cond[0])
    value = params.get(cond[0], getattr(combo, "default", None))
    return value not in cond[1] or _hidden_setting(spec, cond[0], params)


def _source(model: GraphModel, view: QueueView, edge: Edge, off: set[str]) -> tuple[Any, ...] | None:
    """("value", v) from a PrimitiveNode, ("link", node, output), or None for nothing."""
    primitive = view.primitive(edge.src)
    if primitive is not None:
        return ("value", view.primitive_value(primitive))
    if edge.src not in off:
        return ("link", edge.src, edge.src_output)
    source = resolve(model, view.lookup, edge.src, edge.src_output)
    if source is None or source[0] in off or view.primitive(source[0]) is not None:
        return None
    return ("link", source[0], source[1])


def _wrap(value: Any, name: str, bare: Any) -> Any:
    return {"__value__": value} if isinstance(value, list) and name not in bare else value


def _unknown_widgets(node: NodeData) -> dict[str, Any]:
    """What a UI file says the widgets of an unknown node are, by name (newer files only)."""
    kept = node.extra.get("comfy_ui")
    raw = kept.get("raw") if isinstance(kept, dict) else None
    named = raw.get("widgets_values_named") if isinstance(raw, dict) else None
    if not isinstance(named, dict):
        return {}
    return {k: v for k, v in named.items() if isinstance(k, str) and k != "control_after_generate"}


def _no_spec(type_name: str) -> None:
    return None


def _input_order(spec: Any, params: dict[str, Any], linked: Any) -> list[str]:
    """Spec inputs first (widgets only when they have a value or a default), then the rest."""
    names: list[str] = []
    if spec is not None:
        names += [p.name for p in spec.inputs]
    names += [n for n in params if n not in names]
    names += [n for n in linked if n not in names]
    return names
