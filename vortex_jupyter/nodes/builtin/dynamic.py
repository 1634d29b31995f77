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

Known limit (a graph/formats matter): a UI file stores a DynamicCombo's widgets positionally,
and which widgets follow the combo depends on the chosen option. Our spec lists every option's
widgets once, in one order consistent with every option, so a file loads right when the
chosen option's widgets are a prefix of that order (all of Save Image (Advanced)'s options;
"scale dimensions" of Resize Image/Mask). ``OPTIONS`` on the node class records which widgets
each option shows, for a layout that follows the chosen option.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["autogrow", "collect", "letters", "numbered", "option_inputs"]


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
    declaration wins, in the order they first appear), all optional: only the chosen option's
    inputs are sent by ComfyUI's frontend."""
    out: dict[str, Any] = {}
    for inputs in options.values():
        for name, declaration in inputs:
            out.setdefault(f"{group}.{name}", declaration)
    return out
