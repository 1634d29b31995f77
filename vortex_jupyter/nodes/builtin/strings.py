"""String nodes: concatenate, replace, length, and a safe ``StringFormat`` (ComfyUI's names).

``StringFormat`` (ComfyUI's: a ``f_string`` widget and growing inputs ``values.a``,
``values.b``, ...) fills ``{a}``-style placeholders (also ``{}`` / ``{0}``, taken in input
order) from the connected values. It is NOT ``str.format``: field names must be exactly an
input name or index (no ``{a.__class__}`` or ``{a[0]}`` attribute/item access, which would let
a hostile graph read internals), nested specs are rejected, and widths/precisions and the
result are capped so a template cannot allocate gigabytes.
"""

from __future__ import annotations

import re
import string
from typing import Annotated, Any

from ..decorator import Multiline, node
from .dynamic import autogrow, letters

CATEGORY = "text"  # ComfyUI's category of its string nodes
_SLOTS = tuple(letters())
_MAX_NUMBER_IN_SPEC = 10_000
_MAX_RESULT = 1_000_000


@node(name="StringConcatenate", category=CATEGORY, register=False)
def string_concatenate(string_a: Annotated[str, Multiline()] = "", string_b: Annotated[str, Multiline()] = "",
                       delimiter: str = "") -> str:
    """string_a + delimiter + string_b (ComfyUI's inputs)."""
    return f"{string_a}{delimiter}{string_b}"


@node(name="StringReplace", category=CATEGORY, register=False)
def string_replace(string: Annotated[str, Multiline()] = "", find: str = "", replace: str = "") -> str:
    """Every occurrence of ``find`` replaced by ``replace`` (Python's ``str.replace``, as in
    ComfyUI: an empty ``find`` puts ``replace`` between every two characters)."""
    if not find and len(replace) * (len(string) + 1) > _MAX_RESULT:
        raise ValueError(f"StringReplace: an empty 'find' would put {len(replace)} characters between every "
                         f"two of {len(string)} (fix: set 'find')")
    return string.replace(find, replace)


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
                            "use {a}..{z} (or {} / {0}, in input order); attribute and item access are not allowed")
    if index >= len(_SLOTS):
        raise _format_error(template, f"placeholder #{index} has no input (there are {len(_SLOTS)})",
                            f"use at most {len(_SLOTS)} placeholders")
    return _SLOTS[index]


def safe_format(template: str, values: dict[str, Any]) -> str:
    """Fill ``template``'s placeholders from ``values`` (keys ``a``..``z``) without ``str.format``."""
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


class StringFormat:
    """ComfyUI's StringFormat: ``f_string`` filled from the inputs ``values.a``, ``values.b``, ..."""

    CATEGORY = CATEGORY
    RETURN_TYPES = ("STRING",)
    FUNCTION = "execute"
    DESCRIPTION = "Fill {a}, {b}, ... in f_string from the inputs a, b, ... (format specs like {a:.2f} work)."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"f_string": ("STRING", {"default": "{a}", "multiline": True})},
                "optional": autogrow("values", _SLOTS, ("*", {}))}

    def execute(self, f_string: str, **values: Any) -> tuple[str]:
        given = {key.removeprefix("values."): v for key, v in values.items() if v is not ...}
        return (safe_format(f_string, given),)


NODES = [string_concatenate, string_replace, string_length]
NODE_CLASS_MAPPINGS: dict[str, type] = {"StringFormat": StringFormat}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {"StringFormat": "Format String"}
