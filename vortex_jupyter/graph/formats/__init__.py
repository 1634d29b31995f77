"""Reading and writing graphs: native JSON, ComfyUI API and UI formats, PNG text chunks.

``detect`` tells the formats apart by shape; ``load_any`` dispatches. Every reader raises
``FormatError`` (VE-200) naming the JSON path of what is wrong; values that are merely invalid
(NaN, out of range) load and are reported by validation instead.

>>> detect({"schema_version": 1, "nodes": []}), detect({"3": {"class_type": "T", "inputs": {}}})
('native', 'comfy_api')
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from ..model import GraphModel
from ._common import fail, kind, loads
from .comfy_api import from_comfy_api, to_comfy_api
from .comfy_ui import from_comfy_ui, to_comfy_ui
from .native import SCHEMA_VERSION, from_native, to_native
from .png import add_png_text_chunks, graph_from_png, png_text_chunks

__all__ = [
    "SCHEMA_VERSION",
    "add_png_text_chunks",
    "detect",
    "from_comfy_api",
    "from_comfy_ui",
    "from_native",
    "graph_from_png",
    "load_any",
    "loads",
    "png_text_chunks",
    "to_comfy_api",
    "to_comfy_ui",
    "to_native",
]

Format = Literal["native", "comfy_api", "comfy_ui"]


def detect(data: Any) -> Format:
    """Which format ``data`` (a parsed JSON value) is in; ``FormatError`` if none."""
    if not isinstance(data, dict):
        fail("(top level)", f"expected a JSON object, got {kind(data)}")
    if "schema_version" in data:
        return "native"
    if isinstance(data.get("nodes"), list) and ("links" in data or "last_node_id" in data or "version" in data):
        return "comfy_ui"
    if "nodes" in data and "edges" in data:
        fail("schema_version", "missing (this looks like a native graph)", f"add \"schema_version\": {SCHEMA_VERSION}")
    if data and all(isinstance(v, dict) and "class_type" in v for v in data.values()):
        return "comfy_api"
    fail("(top level)", "not a graph in any format vortex reads",
         "expected native JSON (with \"schema_version\"), a ComfyUI workflow (\"nodes\" and \"links\") "
         "or a ComfyUI API prompt ({id: {\"class_type\": ..., \"inputs\": ...}})")


def load_any(data: dict[str, Any] | str | bytes, lookup: Callable[[str], Any]) -> GraphModel:
    """Read a graph in any supported format (a dict, or JSON text)."""
    if isinstance(data, (str, bytes, bytearray)):
        data = loads(bytes(data) if isinstance(data, bytearray) else data)
    fmt = detect(data)
    if fmt == "native":
        return from_native(data)
    if fmt == "comfy_api":
        return from_comfy_api(data, lookup)
    return from_comfy_ui(data, lookup)
