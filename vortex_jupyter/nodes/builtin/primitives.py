"""Primitive value nodes, with the names and inputs of ComfyUI's ``comfy_extras/nodes_primitive.py``.

Each takes one widget ``value`` and outputs it, so a value can feed several nodes and be
edited in one place. Ranges match ComfyUI's (``±sys.maxsize``); PrimitiveInt has the
"control after generate" widget, as in ComfyUI.
"""

from __future__ import annotations

import sys
from typing import Annotated

from ..decorator import Multiline, Range, node

CATEGORY = "utils/primitive"
_BIG = sys.maxsize


@node(name="PrimitiveInt", display_name="Int", category=CATEGORY, register=False)
def primitive_int(value: Annotated[int, Range(-_BIG, _BIG, control_after_generate=True)] = 0) -> int:
    """An integer constant."""
    return value


@node(name="PrimitiveFloat", display_name="Float", category=CATEGORY, register=False)
def primitive_float(value: Annotated[float, Range(-_BIG, _BIG)] = 0.0) -> float:
    """A floating-point constant."""
    return value


@node(name="PrimitiveString", display_name="String", category=CATEGORY, register=False)
def primitive_string(value: str = "") -> str:
    """A one-line string constant."""
    return value


@node(name="PrimitiveStringMultiline", display_name="String (Multiline)", category=CATEGORY, register=False)
def primitive_string_multiline(value: Annotated[str, Multiline()] = "") -> str:
    """A multi-line string constant (prompts, templates)."""
    return value


@node(name="PrimitiveBoolean", display_name="Boolean", category=CATEGORY, register=False)
def primitive_boolean(value: bool = False) -> bool:
    """A boolean constant."""
    return value


NODES = [primitive_int, primitive_float, primitive_string, primitive_string_multiline, primitive_boolean]
