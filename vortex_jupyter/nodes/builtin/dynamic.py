"""ComfyUI's dynamic inputs (V3 ``Autogrow`` and ``DynamicCombo``) as plain, flat inputs.

ComfyUI's newer nodes declare inputs that grow or change with the node's state:

- **Autogrow** (``values`` of Math Expression, ``images`` of Batch Images): a template input
  repeated under generated names -- fixed names (``a``..``z``) or a prefix and a count
  (``image0``..``image49``). The frontend shows one more slot whenever the last is connected.
- **DynamicCombo** (``format`` of Save Image (Advanced), ``resize_type`` of Resize Image/Mask):
  a combo whose chosen option shows that option's own widgets right after the combo.

In both cases ComfyUI's API prompt names each concrete input ``group.name`` (``"values.a"``,
``"images.image0"``, ``"format.bit_depth"``) and the backend rebuilds the nested value from
those names. We declare exactly those flat names as ordinary optional inputs, so API files,
UI files (whose input slots carry the same names) and ``g.add(..., **{"values.a": x})`` all
line up with no special casing elsewhere; the node reassembles the group with ``collect``.

Each DynamicCombo setting carries ``shown_when = (combo, options)`` (``PortSpec.shown_when``):
which options show it. Known limit (a graph/formats matter): a UI file stores a DynamicCombo's
widgets positionally, the chosen option's settings right after the combo, so which widget a
position holds depends on the chosen option. Until the UI reader places ``shown_when`` inputs
after their combo, our spec's static order is what it reads: every option's settings once, in
an order that fits all of Save Image (Advanced)'s options and Resize Image/Mask's "scale
dimensions" (the most used); its other options load their values onto the wrong inputs
(validation then reports the mismatch).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["autogrow", "collect", "letters", "numbered", "option_inputs", "shown_when"]


def letters(count: int = 26) -> list[str]:
    """``a``, ``b``, ... (ComfyUI's ``TemplateNames`` over ``string.ascii_lowercase``)."""
    return [chr(ord("a") + i) for i in range(count)]


def numbered(prefix: str, count: int) -> list[str]:
    """``image0``, ``image1``, ... (ComfyUI's ``TemplatePrefix``)."""
    return [f"{prefix}{i}" for i in range(count)]


def autogrow(group: str, names: Iterable[str], declaration: tuple[Any, ...]) -> dict[str, tuple[Any, ...]]:
    """The flat inputs ``group.name`` of an Autogrow, each declared as ``declaration``."""
    return {f"{group}.{name}": declaration for name in names}


def collect(given: Mapping[str, Any], group: str, names: Iterable[str]) -> list[tuple[str, Any]]:
    """``(name, value)`` of the group's inputs that have a value, in template order.

    ComfyUI leaves unconnected slots out of the Autogrow dict; ``None`` (a connected input
    whose value is None) is kept, ``...`` (our "not connected") is not.
    """
    out = []
    for name in names:
        key = f"{group}.{name}"
        if key in given and given[key] is not ...:
            out.append((name, given[key]))
    return out


def option_inputs(group: str, options: Mapping[str, Iterable[tuple[str, tuple[Any, ...]]]]) -> dict[str, Any]:
    """The flat inputs ``group.name`` of a DynamicCombo's options (each name once, first
    declaration wins, in the order they first appear), each with ``shown_when`` naming the
    options that show it. Declare them optional: only the chosen option's are sent."""
    declared: dict[str, tuple[Any, ...]] = {}
    shown: dict[str, list[str]] = {}
    for key, inputs in options.items():
        for name, declaration in inputs:
            declared.setdefault(f"{group}.{name}", declaration)
            shown.setdefault(f"{group}.{name}", []).append(key)
    return {name: shown_when(declaration, group, shown[name]) for name, declaration in declared.items()}


def shown_when(declaration: tuple[Any, ...], combo: str, options: Iterable[str]) -> tuple[Any, ...]:
    """``declaration`` marked as a setting the DynamicCombo ``combo`` shows for ``options``."""
    settings = dict(declaration[1]) if len(declaration) > 1 else {}
    return (declaration[0], {**settings, "shown_when": [combo, list(options)]})
