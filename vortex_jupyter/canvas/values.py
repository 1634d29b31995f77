"""Param values across the Y doc boundary (kernel Python <-> pycrdt/yjs JSON).

Policy:
- The doc holds JSON scalars only (``None``, bool, int/float, str). Python-only values
  (arrays, objects, tuples) stay in the kernel's ``GraphModel`` and are simply not mirrored.
- JS numbers are doubles, so integers beyond ``2**53 - 1`` go in as decimal strings.
- Numbers come back from pycrdt as floats; where the node spec says the port is ``INT``
  (looked up with ``REGISTRY.lookup``) integral floats and decimal strings become ``int``
  again, so a browser edit of a seed yields the same cache key as the Python ``int``.

>>> to_doc(2**60)
'1152921504606846976'
>>> from_doc(5.0, "INT"), from_doc("1152921504606846976", "INT"), from_doc(5.0, "FLOAT")
(5, 1152921504606846976, 5.0)
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from .protocol import MAX_SAFE_INT

_NOT_MIRRORED = object()
_DECIMAL = re.compile(r"-?\d{1,4000}")

Lookup = Callable[[str], Any]


def to_doc(value: Any) -> Any:
    """The doc form of a param value, or ``NOT_MIRRORED`` for values JSON cannot hold."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return str(value) if abs(value) > MAX_SAFE_INT else value
    if isinstance(value, float):
        return value if math.isfinite(value) else _NOT_MIRRORED
    # numpy scalars and friends: mirror their plain Python value
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "shape", None) == ():
        return to_doc(item())
    return _NOT_MIRRORED


NOT_MIRRORED = _NOT_MIRRORED


def from_doc(value: Any, port_type: str | None) -> Any:
    """The Python value of a doc param, given the spec's port type (``None``: unknown)."""
    if port_type in ("INT", "SEED") and not isinstance(value, bool):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
            return int(value.strip())
    return value


def port_type(lookup: Lookup | None, node_type: str, name: str) -> str | None:
    """The type of input ``name`` of ``node_type`` per the registry, or ``None``."""
    if lookup is None:
        return None
    try:
        spec = lookup(node_type)
    except Exception:  # a broken registry must not break sync; values then pass through
        return None
    port = spec.input(name) if spec is not None else None
    return getattr(port, "type", None)


def params_from_doc(lookup: Lookup | None, node_type: str, params: dict[str, Any]) -> dict[str, Any]:
    return {k: from_doc(v, port_type(lookup, node_type, k)) for k, v in params.items()}


def params_to_doc(params: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in params.items():
        dv = to_doc(v)
        if dv is not NOT_MIRRORED:
            out[str(k)] = dv
    return out


def same_value(a: Any, b: Any) -> bool:
    """Equal and of the same type (``1 == 1.0 == True`` must still count as an edit)."""
    return type(a) is type(b) and a == b
