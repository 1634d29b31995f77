"""Queue-time text substitution, as ComfyUI's frontend applies it (pure; the clock is passed in).

Where (``saveImageExtraOutput.ts``, ``widgetInputs.ts``):

- the ``filename_prefix`` widget of the save nodes in ``SAVE_TYPES``;
- a ``PrimitiveNode``'s value when its property "Run widget replace on values" is on (the
  value then lands in the widgets it feeds; a save node's prefix is substituted once more).

How (``searchAndReplace.ts``): every ``%...%`` is looked at. ``%date:FORMAT%`` is the local
time with ``d``/``dd`` day, ``M``/``MM`` month, ``h``/``hh`` hour (0-23), ``m``/``mm`` minute,
``s``/``ss`` second, ``yy`` and ``yyyy`` year (``yyyy-MM-dd`` -> ``2024-03-05``). ``%A.B%`` is
the value of widget ``B`` of the first top-level node whose "Node name for S&R" property is
``A`` (else whose title is ``A``), as text, with ``/ ? < > \\ : * | "`` and control characters
made ``_``. Anything else (``%width%``, an unknown node or widget) stays as written. A pattern
is split at dots like the frontend does: ``%date:yyyy.MM%`` formats only ``yyyy`` (sic).

Cost: nothing is looked at unless a string holds a ``%``.

>>> from datetime import datetime
>>> substitute("img_%date:yyyy-MM-dd%", {}.get, datetime(2024, 3, 5))
'img_2024-03-05'
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

SAVE_TYPES = frozenset({
    "SaveImage", "SaveVideo", "SaveAnimatedWEBP", "SaveWEBM", "SaveAudio", "SaveGLB", "SaveAnimatedPNG",
    "CLIPSave", "VAESave", "ModelSave", "LoraSave", "SaveLatent",
})
PREFIX = "filename_prefix"
PRIMITIVE = "PrimitiveNode"
PRIMITIVE_REPLACE = "Run widget replace on values"
#: Node types with a substituted param: the engine checks ``type in SUBSTITUTED`` per task.
SUBSTITUTED = SAVE_TYPES | {PRIMITIVE}

_PATTERN = re.compile(r"%([^%]+)%")
_DATE = re.compile(r"dd?|MM?|hh?|mm?|ss?|yyy?y?")
_UNSAFE = re.compile(r'[/?<>\\:*|"\x00-\x1f\x7f]')
#: (node name or title, widget name) -> the widget's value, or ``MISSING``.
Resolve = Callable[[str, str], Any]
MISSING: Any = object()


def substitute(text: str, resolve: Resolve, now: datetime) -> str:
    """``text`` with its ``%...%`` patterns replaced (see the module docstring)."""
    if "%" not in text:
        return text

    def one(match: re.Match[str]) -> str:
        parts = match.group(1).split(".")
        if len(parts) != 2:
            return format_date(parts[0][5:], now) if parts[0].startswith("date:") else match.group(0)
        value = resolve(parts[0], parts[1])
        return match.group(0) if value is MISSING else _UNSAFE.sub("_", js_text(value))

    return _PATTERN.sub(one, text)


def format_date(text: str, now: datetime) -> str:
    def one(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "yy":
            return str(now.year)[2:]
        if token == "yyyy":
            return str(now.year)
        part = {"d": now.day, "M": now.month, "h": now.hour, "m": now.minute, "s": now.second}.get(token[0])
        return token if part is None else str(part).rjust(len(token), "0")

    return _DATE.sub(one, text)


def js_text(value: Any) -> str:
    """``(value ?? '') + ''`` in JavaScript: how the frontend turns a widget value into text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _js_number(value)
    if isinstance(value, list):
        return ",".join("" if v is None else js_text(v) for v in value)
    if isinstance(value, dict):
        return "[object Object]"
    return str(value)


def _js_number(x: float) -> str:
    if x != x:
        return "NaN"
    if x in (float("inf"), float("-inf")):
        return "Infinity" if x > 0 else "-Infinity"
    if x.is_integer() and abs(x) < 1e21:
        return str(int(x))
    mantissa, _, exp = repr(x).partition("e")
    if not exp:
        return mantissa
    e = int(exp)
    if -7 < e < 21:  # JavaScript writes these without an exponent
        return format(Decimal(repr(x)), "f")
    return f"{mantissa}e{'+' if e > 0 else '-'}{abs(e)}"


__all__ = ["MISSING", "PREFIX", "PRIMITIVE", "SAVE_TYPES", "SUBSTITUTED", "format_date", "js_text", "substitute"]
