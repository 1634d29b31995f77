"""Built-in, torch-free node families, registered lazily by ``nodes.registry.REGISTRY``.

- ``primitives``: PrimitiveInt/Float/String/StringMultiline/Boolean (ComfyUI's names);
- ``math``: IntAdd ... FloatDivide, IntToFloat, FloatToInt (no expression evaluation);
- ``strings``: StringConcatenate, StringReplace, StringLength, StringFormat (safe placeholders);
- ``image``: LoadImage, SaveImage, PreviewImage, ImageScale, ImageInvert as ComfyUI classes.

Function nodes are declared with ``@node(register=False)`` and listed in ``FUNCTION_NODES``;
class nodes in ``NODE_CLASS_MAPPINGS``. Importing this package registers nothing by itself, so
the registry decides precedence (a user's earlier registration of the same name wins).
"""

from __future__ import annotations

from . import image, math, primitives, strings

FUNCTION_NODES = [*primitives.NODES, *math.NODES, *strings.NODES]
NODE_CLASS_MAPPINGS = dict(image.NODE_CLASS_MAPPINGS)
NODE_DISPLAY_NAME_MAPPINGS = dict(image.NODE_DISPLAY_NAME_MAPPINGS)

__all__ = ["FUNCTION_NODES", "NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
