"""``widgets_values`` <-> params, both ways (the layout is described in ``_ui_common``).

Reading fills ``params`` from the file. Writing starts from the list the file had and replaces
only the values whose param differs from what reading made of them, so an unedited node is
written back byte for byte -- legacy seed booleans, ``sample_`` sampler names, values we do
not model (upload buttons, the tail) included. A param for a widget the file had no slot for
(a node made in Python, a short list) rebuilds the whole list from the spec.
"""

from __future__ import annotations

from typing import Any

from ..model import GraphModel, NodeData
from ._ui_common import (
    DEFAULT_CONTROL,
    KEY,
    PRIMITIVE,
    Lookup,
    as_dict,
    as_list,
    layout,
    ui_order,
    widget_ports,
)

#: Node types whose pre-2023 sampler names ("sample_euler") the frontend's loader strips.
_LEGACY_SAMPLERS = ("KSampler", "KSamplerAdvanced")
_MISSING: Any = object()


def loaded(node_type: str, spec: Any, values: Any) -> dict[str, Any]:
    """Widget name -> value, as reading makes them of a file's ``widgets_values``."""
    ports = widget_ports(spec)
    if isinstance(values, dict):  # some custom nodes save widgets by name
        return {p.name: values[p.name] for p in ports if p.name in values}
    if not isinstance(values, list):
        return {}
    out = {name: values[i] for name, i in layout(ports, values).index.items()}
    sampler = out.get("sampler_name")
    if node_type in _LEGACY_SAMPLERS and isinstance(sampler, str) and sampler.startswith("sample_"):
        out["sampler_name"] = sampler[len("sample_"):]
    return out


def map_widgets(model: GraphModel, node: NodeData, lookup: Lookup) -> None:
    """Fill ``node.params`` from its raw ``widgets_values`` (linked and promoted inputs aside)."""
    kept = node.extra[KEY]
    values = as_dict(kept.get("raw")).get("widgets_values")
    if node.type == PRIMITIVE:
        if isinstance(values, list) and values:
            node.params["value"] = values[0]
        return
    spec = lookup(node.type)
    if spec is None or values is None:
        return  # unknown type: the file keeps its values (validation reports VE-101)
    kept["mapped"] = True
    skip = set(model.inputs_of(node.id)) | set(as_dict(kept.get("promoted")))
    for name, value in loaded(node.type, spec, values).items():
        if name not in skip:
            node.params[name] = value


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def widgets_out(model: GraphModel, node: NodeData, spec: Any, *, flat: bool = False) -> Any:
    """The ``widgets_values`` to write for ``node``, or ``_MISSING`` for none. Promoted inputs
    (values an instance gives) keep the file's value, unless ``flat``: the instance is gone."""
    kept = as_dict(node.extra.get(KEY))
    raw = as_dict(kept.get("raw"))
    values = raw.get("widgets_values", _MISSING)
    if node.type == PRIMITIVE:
        return _primitive_out(node, values)
    if spec is None or (values is not _MISSING and not kept.get("mapped")):
        if values is not _MISSING and isinstance(values, (list, dict)):
            return values  # as it came: an unknown type, or one that was unknown at load
        return list(node.params.values()) if node.params or not raw else _MISSING
    fixed = set(model.inputs_of(node.id))
    if not flat:
        fixed |= set(as_dict(kept.get("promoted")))
    if isinstance(values, dict):
        return _dict_out(node, spec, values, fixed)
    if isinstance(values, list):
        patched = _patched(node, spec, values, fixed)
        if patched is not None:
            return patched
    elif raw and not node.params:
        return _MISSING  # the file had none and nothing was set since
    return rebuild(node, spec, values if isinstance(values, list) else [], fixed)


def _primitive_out(node: NodeData, values: Any) -> Any:
    out = list(values) if isinstance(values, list) else []
    if "value" not in node.params:
        return values
    if out:
        if _same(out[0], node.params["value"]):
            return values
        out[0] = node.params["value"]
        return out
    return [node.params["value"]]


def _dict_out(node: NodeData, spec: Any, values: dict[str, Any], fixed: set[str]) -> dict[str, Any]:
    old = loaded(node.type, spec, values)
    out = dict(values)
    for port in widget_ports(spec):
        want = node.params.get(port.name, _MISSING)
        if port.name not in fixed and want is not _MISSING and not _same(want, old.get(port.name, _MISSING)):
            out[port.name] = want
        elif port.name not in out:
            out[port.name] = _value(port, node, {})
    return out if out != values or list(out) != list(values) else values


def _patched(node: NodeData, spec: Any, values: list[Any], fixed: set[str]) -> list[Any] | None:
    """``values`` with the edited widgets replaced; None when a widget has no slot in it."""
    old = loaded(node.type, spec, values)
    where = layout(widget_ports(spec), values).index
    out: list[Any] | None = None
    combos = {p.shown_when[0] for p in widget_ports(spec) if getattr(p, "shown_when", None)}
    for port in widget_ports(spec):
        want = node.params.get(port.name, _MISSING)
        if port.name in fixed or want is _MISSING or _same(want, old.get(port.name, _MISSING)):
            continue
        if port.name not in where or port.name in combos:  # a new choice shows other widgets
            return None
        out = list(values) if out is None else out
        out[where[port.name]] = want
    return values if out is None else out


def rebuild(node: NodeData, spec: Any, values: list[Any], fixed: set[str]) -> list[Any]:
    """The whole list from the spec: params, else the file's value, else the default."""
    ports = widget_ports(spec)
    lay = layout(ports, values)
    stale = {name: values[i] for name, i in lay.index.items()}
    by_name = {p.name: p for p in ports}
    out: list[Any] = []
    for port in ui_order(ports, lambda name: _value(by_name[name], node, stale)):
        value = _value(port, node, stale)
        out.append(stale.get(port.name, value) if port.name in fixed and port.name in stale else value)
        if getattr(port, "control_after_generate", False):
            i = lay.control.get(port.name)
            out.append(values[i] if i is not None else DEFAULT_CONTROL)
    return out + as_list(values[lay.tail:])


def _value(port: Any, node: NodeData, stale: dict[str, Any]) -> Any:
    if port.name in node.params:
        return node.params[port.name]
    if port.name in stale:
        return stale[port.name]
    return port.default if getattr(port, "has_default", False) else None


__all__ = ["loaded", "map_widgets", "rebuild", "widgets_out"]
MISSING = _MISSING
