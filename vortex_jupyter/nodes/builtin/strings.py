"""String nodes: concatenate, replace, length, and a safe ``StringFormat``.

``StringFormat`` fills ``{}`` / ``{0}`` / ``{a}`` placeholders of a template from the inputs
``a``..``d`` (any type, wired or given). It is NOT ``str.format``: field names must be exactly
an input name or index (no ``{a.__class__}`` or ``{a[0]}`` attribute/item access, which would
let a hostile graph read internals), nested specs are rejected, and widths/precisions and the
result are capped so a template cannot allocate gigabytes.
"""

from __future__ import annotations

import re
import string
from typing import Annotated, Any

from ..decorator import Multiline, Port, node

CATEGORY = "utils/string"
_SLOTS = ("a", "b", "c", "d")
_MAX_NUMBER_IN_SPEC = 10_000
_MAX_RESULT = 1_000_000


@node(name="StringConcatenate", category=CATEGORY, register=False)
def string_concatenate(string_a: Annotated[str, Multiline()] = "", string_b: Annotated[str, Multiline()] = "",
                       delimiter: str = "") -> str:
    """string_a + delimiter + string_b (ComfyUI's inputs)."""
    return f"{string_a}{delimiter}{string_b}"


@node(name="StringReplace", category=CATEGORY, register=False)
def string_replace(string: Annotated[str, Multiline()] = "", find: str = "", replace: str = "") -> str:
    """Every occurrence of ``find`` replaced by ``replace`` (an empty ``find`` changes nothing)."""
    return string.replace(find, replace) if find else string


@node(name="StringLength", category=CATEGORY, register=False)
def string_length(string: Annotated[str, Multiline()] = "") -> int:
    """Number of characters."""
    return len(string)


def _format_error(template: str, problem: str, fix: str) -> ValueError:
    return ValueError(f"StringFormat: template {template[:80]!r}: {problem} (fix: {fix})")


def _field_key(template: str, field: str, auto: list[int]) -> str:
    if field == "":
        index, auto[0] = auto[0], auto[0] + 1
    elif field.isdigit():
        index = int(field)
    elif field in _SLOTS:
        return field
    else:
        raise _format_error(template, f"placeholder {{{field}}} is not an input",
                            "use {}, {0}..{3} or {a}..{d}; attribute and item access are not allowed")
    if index >= len(_SLOTS):
        raise _format_error(template, f"placeholder #{index} has no input (there are {len(_SLOTS)})",
                            "use at most four placeholders")
    return _SLOTS[index]


def safe_format(template: str, values: dict[str, Any]) -> str:
    """Fill ``template``'s placeholders from ``values`` (keys ``a``..``d``) without ``str.format``."""
    parts: list[str] = []
    auto = [0]
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise _format_error(template, str(exc), "balance the braces; write {{ and }} for literal braces") from exc
    for literal, field, spec, conversion in parsed:
        parts.append(literal)
        if field is None:
            continue
        key = _field_key(template, field, auto)
        spec = spec or ""
        if "{" in spec or any(int(n) > _MAX_NUMBER_IN_SPEC for n in re.findall(r"\d+", spec)):
            raise _format_error(template, f"format spec {spec!r} of {{{field}}} is nested or too large",
                                f"use a literal spec with numbers up to {_MAX_NUMBER_IN_SPEC}")
        value = values.get(key)
        if value is None:
            raise _format_error(template, f"placeholder {{{field}}} uses input {key!r}, which has no value",
                                f"connect or set input {key!r}")
        if conversion:
            convert: dict[str, Any] = {"r": repr, "s": str, "a": ascii}
            value = convert[conversion](value)
        try:
            parts.append(format(value, spec))
        except (ValueError, TypeError) as exc:
            raise _format_error(template, f"{{{field}}} cannot format {value!r:.40} with {spec!r}: {exc}",
                                "match the spec to the input's type, e.g. {a:.2f} for a FLOAT") from exc
        if sum(map(len, parts)) > _MAX_RESULT:
            raise _format_error(template, f"the result is longer than {_MAX_RESULT} characters", "shorten it")
    return "".join(parts)


_AnyIn = Annotated[Any, Port("*")]


@node(name="StringFormat", category=CATEGORY, register=False)
def string_format(template: Annotated[str, Multiline()] = "{}", a: _AnyIn = None, b: _AnyIn = None,
                  c: _AnyIn = None, d: _AnyIn = None) -> str:
    """The template with ``{}``, ``{0}`` or ``{a}`` placeholders filled from inputs a..d."""
    return safe_format(template, {"a": a, "b": b, "c": c, "d": d})


NODES = [string_concatenate, string_replace, string_length, string_format]
