"""What the UI-format reader (``comfy_ui``) and writer (``_ui_write``) share: names of the
frontend-only node types, the link table, slot names and the layout of ``widgets_values``.

Widget layout (ComfyUI's frontend assigns ``widgets_values[i]`` to its i-th widget): the spec's
widget inputs in order; after a port with ``control_after_generate`` (seeds) comes one more
widget, the control ("fixed", "increment", "decrement", "randomize"). Files written before
that widget existed have no control value, so one is consumed only when the next value looks
like one: a control string, or a boolean -- legacy files store ``true`` for "randomize" and
``false`` for "fixed" (the frontend's ``loadGraphData`` maps them so for KSampler,
KSamplerAdvanced and PrimitiveNode). Values beyond the known widgets form the tail (e.g.
LoadImage's upload button). A DynamicCombo's settings (ports with ``shown_when``) sit right
after the combo, those of the chosen option only (``ui_order``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._common import fail, integer, lst, node_id

KEY = "comfy_ui"
CONTROL_VALUES = ("fixed", "increment", "decrement", "randomize")
#: The control value written for seeds of nodes that never had one (reproducible runs).
DEFAULT_CONTROL = "fixed"
FRONTEND_NOTES = ("Note", "MarkdownNote")
REROUTE = "Reroute"
#: The frontend's PrimitiveNode: one widget value fed to the widget inputs it links to.
PRIMITIVE = "PrimitiveNode"
#: Its property that runs text substitution on its value (``widgetInputs.ts``).
PRIMITIVE_REPLACE = "Run widget replace on values"
LINK_KEYS = ("id", "origin_id", "origin_slot", "target_id", "target_slot", "type")
#: Ids must stay exact in JavaScript numbers, which the ComfyUI frontend uses.
MAX_ID = 1 << 53

Lookup = Callable[[str], Any]
Link = tuple[int, str, int, str, int, Any]  # id, src, src_slot, dst, dst_slot, type


def is_control(value: Any) -> bool:
    """A control_after_generate value as files hold it (legacy booleans included)."""
    return type(value) is bool or (isinstance(value, str) and value in CONTROL_VALUES)


def link_table(value: Any, path: str) -> tuple[dict[int, Any], str]:
    """A link table by id (raw entries) and its form: "list" (``[id, ...]``) or "object"."""
    table: dict[int, Any] = {}
    form = "list"
    for i, raw in enumerate(lst(value, path)):
        where = f"{path}[{i}]"
        if isinstance(raw, dict):
            form = "object"
            lid = integer(raw.get("id"), f"{where}.id")
        elif isinstance(raw, list) and len(raw) >= 5:
            lid = integer(raw[0], f"{where}[0]")
        else:
            fail(where, f"expected [id, src, src_slot, dst, dst_slot, type], got {raw!r}"[:200])
        if lid in table:
            fail(where, f"link id {lid} is used twice")
        table[lid] = raw
    return table, form


_MAX_SLOT = 1 << 31


def parse_link(raw: Any, path: str) -> Link:
    """One link table entry, checked; node ids may be negative (a subgraph's IO nodes)."""
    if type(raw) is list and len(raw) >= 5:  # the common forms, checked in one go
        lid, src, src_slot, dst, dst_slot = raw[:5]
    elif type(raw) is dict:
        lid, src, src_slot, dst, dst_slot = (raw.get(k) for k in LINK_KEYS[:5])
    else:
        lid = src = src_slot = dst = dst_slot = None
    if (type(lid) is int and type(src) is int and type(src_slot) is int and type(dst) is int
            and type(dst_slot) is int and 0 <= lid <= MAX_ID and -MAX_ID <= src <= MAX_ID
            and -MAX_ID <= dst <= MAX_ID and 0 <= src_slot <= _MAX_SLOT and 0 <= dst_slot <= _MAX_SLOT):
        kind = raw.get("type") if type(raw) is dict else (raw[5] if len(raw) > 5 else None)
        return lid, str(src), src_slot, str(dst), dst_slot, kind
    if isinstance(raw, dict):
        values = [raw.get(k) for k in LINK_KEYS]
        names = [f"{path}.{k}" for k in LINK_KEYS]
    else:
        values = [*raw[:5], raw[5] if len(raw) > 5 else None]
        names = [f"{path}[{i}]" for i in range(6)]
    return (integer(values[0], names[0]), node_id(values[1], names[1]), integer(values[2], names[2], hi=1 << 31),
            node_id(values[3], names[3]), integer(values[4], names[4], hi=1 << 31), values[5])


def readable_link(raw: Any) -> Link | None:
    """A kept link entry, parsed, if it would load again (garbage in a native file's extra is
    dropped)."""
    from ...errors import FormatError

    if not isinstance(raw, (list, dict)) or (isinstance(raw, list) and len(raw) < 5):
        return None
    try:
        return parse_link(raw, "links")
    except FormatError:
        return None


def slot_name(slot: dict[str, Any]) -> str:
    """An input slot's input name: its widget's name (a converted widget), else its name."""
    widget = slot.get("widget")
    if isinstance(widget, dict) and isinstance(widget.get("name"), str):
        return str(widget["name"])
    name = slot.get("name", "")
    return name if isinstance(name, str) else ""


def widget_ports(spec: Any) -> list[Any]:
    return [p for p in spec.inputs if getattr(p, "widget", False)] if spec is not None else []


@dataclass
class Layout:
    """Where each widget input sits in a positional ``widgets_values`` list."""

    index: dict[str, int] = field(default_factory=dict)
    control: dict[str, int] = field(default_factory=dict)
    tail: int = 0


def ui_order(ports: Sequence[Any], value_of: Callable[[str], Any]) -> Iterator[Any]:
    """``ports`` in the order ComfyUI's frontend lays out their widgets: a DynamicCombo setting
    (a port with ``shown_when = (combo, options)``) comes right after its combo's widget, and
    only while ``value_of(combo)`` is one of ``options``; nested combos recurse. Lazy, so a
    reader can look the combo's value up at the position it just assigned."""
    settings: dict[str, list[Any]] = {}
    for port in ports:
        cond = getattr(port, "shown_when", None)
        if cond:
            settings.setdefault(cond[0], []).append(port)
    if not settings:
        yield from ports
        return
    stack = [p for p in reversed(ports) if not getattr(p, "shown_when", None)]
    while stack:  # depth first, iteratively: a combo, then its shown settings, then the rest
        port = stack.pop()
        yield port
        shown = [s for s in settings.get(port.name, ()) if value_of(port.name) in s.shown_when[1]]
        stack.extend(reversed(shown))


def layout(ports: Sequence[Any], values: Sequence[Any]) -> Layout:
    out = Layout()
    i = 0

    def value_of(name: str) -> Any:
        j = out.index.get(name)
        return values[j] if j is not None else None

    for port in ui_order(ports, value_of):
        if i >= len(values):
            break
        out.index[port.name] = i
        i += 1
        if getattr(port, "control_after_generate", False) and i < len(values) and is_control(values[i]):
            out.control[port.name] = i
            i += 1
    out.tail = i
    return out


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def slots(value: Any) -> list[dict[str, Any]] | None:
    """A kept input/output slot list (copied), or None when there is none or it is malformed."""
    if isinstance(value, list) and all(isinstance(s, dict) for s in value):
        return [dict(s) for s in value]
    return None


def as_id(value: Any) -> int:
    """An id-like int, else 0 (garbage, bools and ids the format cannot hold count as absent)."""
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < MAX_ID
    return value if ok else 0
