"""Nodes that exist only in ComfyUI's frontend, given a spec so that graphs using them run.

``PrimitiveNode`` (``widgetInputs.ts``): one widget value linked to the widget inputs of other
nodes ("convert to input" + a primitive). ComfyUI's frontend copies the value into each
target before it queues, so the backend never sees the node. Here it is a pass-through node
(``value`` in, the same value out): a Python edit of its value reaches every target and the
links round-trip unchanged; ``to_comfy_api`` folds it into its targets exactly as the frontend
does (``graph/formats/comfy_api.py``). Its type is whatever it feeds, hence ``*``.
"""

from __future__ import annotations

from typing import Any

from ..decorator import node

CATEGORY = "utils"


@node(name="PrimitiveNode", display_name="Primitive", category=CATEGORY, register=False)
def primitive_node(value: Any = None) -> Any:
    """The frontend's Primitive: its value, for every widget input it is linked to."""
    return value


NODES = [primitive_node]
