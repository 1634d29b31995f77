"""Nodes that compute a value for other nodes' widgets: Math Expression, Resolution Selector and
Custom Combo (ComfyUI's ``nodes_math.py``, ``nodes_resolution.py``, ``nodes_logic.py``).

- ``ComfyMathExpression`` evaluates its ``expression`` over the connected inputs ``values.a``..
  ``values.z`` with our own parser (``mathexpr``, ``mathexpr_eval``: Python's expression syntax, no ``eval``) and
  outputs the result as FLOAT, INT (``int()`` truncates) and BOOL. The result must be a finite
  number (``True``/``False`` count as 1/0, as in recent ComfyUI).
- ``ResolutionSelector`` turns an aspect ratio and a megapixel target into a width and height
  that are multiples of ``multiple`` (``round()``: halves go to the even multiple, as Python).
- ``CustomCombo`` outputs the chosen text and its index among the user's options. Its options
  are frontend widgets (``option1``, ``option2``, ...); the index is computed from them as the
  frontend does when it queues (``-1`` when the choice is not among them), else taken as given.

>>> ComfyMathExpression().execute(expression="a * b + 1", **{"values.a": 3, "values.b": 4})
(13.0, 13, True)
>>> ResolutionSelector().execute("16:9 (Widescreen)", 1.0, 8)
(1368, 768)
"""

from __future__ import annotations

import math
from typing import Any

from .dynamic import autogrow, collect, letters, numbered
from .mathexpr import ExpressionError
from .mathexpr_eval import evaluate, names_of

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]

_LETTERS = letters()
#: Option widgets of CustomCombo we model; the frontend names them option1, option2, ... (after its
#: hidden "index" widget) and adds one more whenever the last is filled.
_COMBO_OPTIONS = numbered("option", 33)[1:]


class ComfyMathExpression:
    CATEGORY = "utilities"
    RETURN_TYPES = ("FLOAT", "INT", "BOOLEAN")
    RETURN_NAMES = ("FLOAT", "INT", "BOOL")
    FUNCTION = "execute"
    DESCRIPTION = ("Evaluate a math expression over the inputs a, b, c, ... (Python syntax: + - * / // % **, "
                   "comparisons, and/or/not, x if c else y, min, max, round, floor, ceil, sqrt, log, ...).")

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        value: tuple[str, dict[str, Any]] = ("FLOAT,INT,BOOLEAN", {})
        return {"required": {"expression": ("STRING", {"default": "a + b", "multiline": True})},
                "optional": autogrow("values", _LETTERS, value)}

    def execute(self, expression: str, **values: Any) -> tuple[float, int, bool]:
        if not expression.strip():
            raise ValueError("ComfyMathExpression: the expression is empty (fix: write one, e.g. a * 2)")
        try:
            result = evaluate(expression, names_of(collect(values, "values", _LETTERS)))
        except ExpressionError as exc:
            raise ValueError(f"ComfyMathExpression: {exc}") from None
        return _numeric_outputs(expression, result)


def _numeric_outputs(expression: str, result: Any) -> tuple[float, int, bool]:
    if not isinstance(result, (int, float)):  # bool is an int: True -> 1.0, 1, True
        raise ValueError(f"ComfyMathExpression: {expression!r} gives {type(result).__name__} {result!r:.80}, "
                         "not a number (fix: make the expression compute a number)")
    try:
        as_float = float(result)
    except OverflowError:
        raise ValueError(f"ComfyMathExpression: {expression!r} gives a number too large for a float "
                         "(fix: use smaller numbers)") from None
    if not math.isfinite(as_float):
        raise ValueError(f"ComfyMathExpression: {expression!r} gives {as_float}, not a finite number "
                         "(fix: avoid inf and nan, e.g. guard divisions)")
    return as_float, int(result), bool(result)


#: ComfyUI's aspect ratios, in its order: label -> (width ratio, height ratio).
ASPECT_RATIOS = {
    "1:1 (Square)": (1, 1), "3:2 (Photo)": (3, 2), "4:3 (Standard)": (4, 3), "16:9 (Widescreen)": (16, 9),
    "21:9 (Ultrawide)": (21, 9), "2:3 (Portrait Photo)": (2, 3), "3:4 (Portrait Standard)": (3, 4),
    "9:16 (Portrait Widescreen)": (9, 16),
}


class ResolutionSelector:
    CATEGORY = "utilities"
    RETURN_TYPES = ("INT", "INT")
    RETURN_NAMES = ("width", "height")
    FUNCTION = "execute"
    DESCRIPTION = "Width and height for an aspect ratio and a megapixel target, rounded to a multiple."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {
            "aspect_ratio": (list(ASPECT_RATIOS), {"default": "1:1 (Square)"}),
            "megapixels": ("FLOAT", {"default": 1.0, "min": 0.1, "max": 16.0, "step": 0.1}),
            "multiple": ("INT", {"default": 8, "min": 8, "max": 128, "step": 4}),
        }}

    def execute(self, aspect_ratio: str, megapixels: float, multiple: int = 8) -> tuple[int, int]:
        if aspect_ratio not in ASPECT_RATIOS:
            raise ValueError(f"ResolutionSelector: aspect_ratio {aspect_ratio!r} is not one of {list(ASPECT_RATIOS)} "
                             "(fix: pick one of them)")
        if multiple < 1:
            raise ValueError(f"ResolutionSelector: multiple = {multiple} (fix: use a multiple of at least 8)")
        w_ratio, h_ratio = ASPECT_RATIOS[aspect_ratio]
        scale = math.sqrt(megapixels * 1024 * 1024 / (w_ratio * h_ratio))
        return round(w_ratio * scale / multiple) * multiple, round(h_ratio * scale / multiple) * multiple


class CustomCombo:
    CATEGORY = "utilities"
    RETURN_TYPES = ("STRING", "INT")
    RETURN_NAMES = ("STRING", "INDEX")
    FUNCTION = "execute"
    EXPERIMENTAL = True
    DESCRIPTION = "A dropdown of your own options: outputs the chosen text and its index."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        # The frontend's widgets after the combo: a hidden "index", then option1, option2, ...
        options = {name: ("STRING", {"default": ""}) for name in _COMBO_OPTIONS}
        return {"required": {"choice": ("COMBO", {"options": []})},
                "optional": {"index": ("INT", {"default": 0, "min": -1}), **options}}

    @classmethod
    def VALIDATE_INPUTS(cls, choice: Any = None, **kwargs: Any) -> bool:
        return True  # the options are the user's, not a list we could check against (as ComfyUI)

    def execute(self, choice: Any, index: int = 0, **options: Any) -> tuple[str, int]:
        given = [options[name] for name in _COMBO_OPTIONS if name in options]
        if any(given):  # the frontend queues the position of the choice among its option widgets
            index = next((i for i, text in enumerate(given) if text == choice), -1)
        return str(choice), int(index)


NODE_CLASS_MAPPINGS: dict[str, type] = {
    "ComfyMathExpression": ComfyMathExpression,
    "ResolutionSelector": ResolutionSelector,
    "CustomCombo": CustomCombo,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "ComfyMathExpression": "Math Expression",
    "ResolutionSelector": "Resolution Selector",
    "CustomCombo": "Custom Combo",
}
