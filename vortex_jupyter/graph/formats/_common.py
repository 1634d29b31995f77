"""Shared checks for the format readers: every malformed input becomes a ``FormatError`` that
names the JSON path (``nodes[3].pos``), never a ``KeyError``/``TypeError`` from deep inside.

Policy on values: structural fields (ids, types, positions, slots) are checked here and fail the
load; param values are loaded as they are and judged by validation (VE-104/105/106/114), so a
NaN or a 10 MB string in a widget shows up as a problem on the right node and port.
"""

from __future__ import annotations

import gc
import json
import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

from ...errors import FormatError

#: Longest id, type name, input name accepted in structural fields.
MAX_NAME = 1024
#: Longest title accepted.
MAX_TITLE = 64 * 1024
#: Largest JSON text ``loads`` accepts.
MAX_JSON_BYTES = 256 * 1024 * 1024


def fail(path: str, message: str, hint: str | None = None) -> NoReturn:
    raise FormatError(f"{path}: {message}" if path else message, hint=hint)


def short(value: Any) -> str:
    """A value for an error message, cut short (it may be a 10 MB string)."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:50]}... ({len(text)} characters)"


def kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    if type(value) in names:
        return names[type(value)]
    return "a number" if isinstance(value, (int, float)) else type(value).__name__


def obj(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        fail(path, f"expected an object, got {kind(value)} {short(value)}")
    return value


def lst(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        fail(path, f"expected a list, got {kind(value)} {short(value)}")
    return value


def only_keys(d: dict[str, Any], allowed: Iterable[str], path: str) -> None:
    allowed = tuple(allowed)
    for key in d:
        if key not in allowed:
            fail(f"{path}.{key}" if path else str(key), "unknown field",
                 f"remove it; known fields here: {', '.join(allowed)}")


def name(value: Any, path: str, *, limit: int = MAX_NAME, empty: bool = False) -> str:
    if not isinstance(value, str):
        fail(path, f"expected a string, got {kind(value)} {short(value)}")
    if len(value) > limit:
        fail(path, f"string of {len(value)} characters is too long (the limit is {limit})")
    if not value and not empty:
        fail(path, "must not be empty")
    return value


def opt_title(value: Any, path: str) -> str | None:
    return None if value is None else name(value, path, limit=MAX_TITLE, empty=True)


def integer(value: Any, path: str, *, lo: int = 0, hi: int = (1 << 53)) -> int:
    """A JSON integer (not a bool, not a float) between ``lo`` and ``hi``."""
    if not isinstance(value, int) or isinstance(value, bool):
        fail(path, f"expected an integer, got {kind(value)} {short(value)}")
    if not lo <= value <= hi:
        fail(path, f"integer {short(value)} is out of range ({lo}..{hi})")
    return value


def number(value: Any, path: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        fail(path, f"expected a number, got {kind(value)} {short(value)}")
    try:
        out = float(value)
    except OverflowError:
        fail(path, f"number {short(value)} is too large")
    if not math.isfinite(out):
        fail(path, f"expected a finite number, got {value!r}")
    return out


def pair(value: Any, path: str) -> tuple[float, float]:
    """``[x, y]``, or ``{"0": x, "1": y, ...}`` as some ComfyUI versions write it (a typed
    array serialised as an object, possibly with more keys; the writer keeps the form)."""
    if isinstance(value, dict) and "0" in value and "1" in value:
        return number(value["0"], f"{path}.0"), number(value["1"], f"{path}.1")
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        fail(path, f"expected [x, y], got {kind(value)} {short(value)}")
    return number(value[0], f"{path}[0]"), number(value[1], f"{path}[1]")


def node_id(value: Any, path: str) -> str:
    """Node ids are strings in the model; JSON may hold ints (ComfyUI UI) or strings."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(integer(value, path, lo=-(1 << 53)))
    return name(value, path)


def loads(text: str | bytes) -> dict[str, Any]:
    """Parse JSON text into a dict: bounded size, an object on top. ``NaN``/``Infinity`` load
    as ComfyUI's Python loader reads them; where they land, the readers or validation name
    the node and input (a param: VE-106; a position: a ``FormatError`` with its path)."""
    if len(text) > MAX_JSON_BYTES:
        fail("", f"JSON text of {len(text)} bytes is larger than the limit of {MAX_JSON_BYTES}")
    try:
        data = json.loads(text)
    except RecursionError:
        fail("", "JSON is nested too deeply", "flatten the document")
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, int digit limit, bad UTF-8
        fail("", f"not valid JSON: {exc}", "check the file is a complete JSON document")
    if not isinstance(data, dict):
        fail("", f"expected a JSON object at the top level, got {kind(data)}")
    return data


GROUP_BOX = ("x", "y", "w", "h")


def group_box(group: dict[str, Any]) -> list[float]:
    """A group's [x, y, w, h]: its own x/y/w/h keys (groups made in Python or on the canvas)
    over ComfyUI's ``bounding`` list, 0 for what neither gives."""
    raw = group.get("bounding")
    bounding = raw if isinstance(raw, (list, tuple)) and len(raw) == 4 else (0, 0, 0, 0)
    return [float(group.get(key, b) or 0) for key, b in zip(GROUP_BOX, bounding, strict=True)]


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic GC while reading or writing a big workflow: it allocates many small dicts that
    form no garbage cycles, yet each young collection would walk them all (~20% of a 10k-node
    load). On exit what was made is promoted to the oldest generation (``gc.freeze();
    gc.unfreeze()``, O(1)), as the engine's planning does: otherwise the next young collections
    walk it all again (measured: +200 ms after a 10k-node load). Skipped when someone else froze
    objects (unfreeze would thaw theirs)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            if gc.get_freeze_count() == 0:
                gc.freeze()
                gc.unfreeze()
            gc.enable()
