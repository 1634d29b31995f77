"""PreviewAny and ComfySwitchNode, ComfyUI's utility nodes (``nodes_preview_any.py``, ``nodes_logic.py``).

PreviewAny turns any value into text and shows it: strings as they are, numbers and booleans
by ``str``, anything JSON can encode as JSON, the rest by ``str`` (a numpy image shows its
summary). The text is both the "ui" result (``{"text": (value,)}``, what ComfyUI's frontend
reads) and the STRING output recent ComfyUI added.

ComfySwitchNode outputs ``on_true`` when ``switch`` is true, else ``on_false``; both are
optional (recent ComfyUI), and with only one connected that one is passed through whatever
``switch`` says. **Not lazy here**: ComfyUI evaluates only the selected branch
(``check_lazy_status``); our engine has no lazy inputs yet, so both connected branches run
and the node picks one. The output is the same; the cost is running the unused branch.

>>> PreviewAny().main({"a": 1})["result"]
('{"a": 1}',)
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "as_text"]

#: Text longer than this is cut (a huge array's repr would flood the node and the cell).
MAX_TEXT = 100_000


def as_text(source: Any) -> str:
    """PreviewAny's rendering of ``source`` (ComfyUI's order of attempts)."""
    if isinstance(source, str):
        value = source
    elif isinstance(source, (bool, int, float)):
        value = str(source)
    elif source is None:
        value = "None"
    else:
        try:
            value = json.dumps(source)
        except (TypeError, ValueError):
            try:
                value = str(source)
            except Exception:
                value = "source exists, but could not be serialized."
    return value if len(value) <= MAX_TEXT else value[:MAX_TEXT] + f"... ({len(value) - MAX_TEXT} more characters)"


class PreviewAny:
    CATEGORY = "utils"
    RETURN_TYPES = ("STRING",)
    FUNCTION = "main"
    OUTPUT_NODE = True
    DESCRIPTION = "Show any value as text on the node (and pass the text on)."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"source": ("*", {})}}

    def main(self, source: Any = None) -> dict[str, Any]:
        value = as_text(source)
        return {"ui": {"text": (value,)}, "result": (value,)}


class ComfySwitchNode:
    CATEGORY = "logic"
    RETURN_TYPES = ("*",)
    RETURN_NAMES = ("output",)
    FUNCTION = "switch"
    EXPERIMENTAL = True
    DESCRIPTION = ("Output on_true when switch is on, else on_false (one connected input passes through). "
                   "Both connected inputs are computed: inputs are not lazy in vortex.")

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"switch": ("BOOLEAN", {})},
                "optional": {"on_false": ("*", {}), "on_true": ("*", {})}}

    def switch(self, switch: bool, on_false: Any = ..., on_true: Any = ...) -> tuple[Any]:
        # Ellipsis marks "not connected" (as ComfyUI does): a connected input may carry None
        if on_false is ... and on_true is ...:
            raise ValueError("ComfySwitchNode: neither on_false nor on_true is connected "
                             "(fix: connect at least one of them)")
        if on_true is ...:
            return (on_false,)
        if on_false is ...:
            return (on_true,)
        return (on_true if switch else on_false,)


NODE_CLASS_MAPPINGS: dict[str, type] = {"PreviewAny": PreviewAny, "ComfySwitchNode": ComfySwitchNode}
NODE_DISPLAY_NAME_MAPPINGS = {"PreviewAny": "Preview as Text", "ComfySwitchNode": "Switch"}
