"""Workflow documents: a graph file read with its format and style, written back alike.

A document is a file a user opens and saves (a ``*.vortex.json``, a ComfyUI workflow or API
``.json``, or a PNG with the workflow in its text chunks). ``read_document`` returns the graph
and a ``DocumentInfo`` (the format, and how the JSON text was laid out); ``write_document``
writes a graph back in that format and layout, so an unedited file comes back byte for byte
and an edited one changes only where it was edited.

JSON is written with non-ASCII characters unescaped, as ComfyUI's frontend writes it. Of the
644 official ComfyUI templates, 642 come back byte for byte (two were edited by hand: an
escaped em dash, a blank line inside a list).

>>> model, info = read_document('{"schema_version": 1, "nodes": []}\\n')
>>> info.format, info.indent, info.newline
('native', None, True)
>>> write_document(model, info, lookup=None)
'{"schema_version": 1, "nodes": [], "edges": [], "groups": [], "extra": {}}\\n'
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from ...errors import FormatError
from ..model import GraphModel
from ._common import loads

__all__ = ["DocumentInfo", "dumps_js", "read_document", "write_document"]

DocFormat = Literal["native", "comfy_ui", "comfy_api", "png"]
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class DocumentInfo:
    """What a document file was, so it can be written back the same way."""

    #: ``native``, ``comfy_ui``, ``comfy_api``; ``png`` for a PNG carrying a workflow
    format: DocFormat = "native"
    #: JSON indentation: ``None`` (one line), a number of spaces, or ``"\\t"``
    indent: int | str | None = 2
    #: the text ends with a newline
    newline: bool = True
    #: a PNG's graph chunk: ``workflow`` (UI format) or ``prompt`` (API format)
    chunk: str | None = None
    #: a one-line text without spaces after ``,`` and ``:`` (``JSON.stringify(data)``)
    compact: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any) -> DocumentInfo:
        """From ``to_dict()`` output; anything unreadable falls back to the defaults."""
        if not isinstance(d, dict):
            return cls()
        fmt: DocFormat = d["format"] if d.get("format") in ("native", "comfy_ui", "comfy_api", "png") else "native"
        indent = d.get("indent")
        if not (indent is None or indent == "\t" or (type(indent) is int and 0 <= indent <= 16)):
            indent = 2
        chunk = d.get("chunk") if d.get("chunk") in ("workflow", "prompt") else None
        return cls(fmt, indent, bool(d.get("newline", True)), chunk, bool(d.get("compact", False)))


def read_document(data: str | bytes, lookup: Callable[[str], Any] | None = None) -> tuple[GraphModel, DocumentInfo]:
    """The graph in ``data`` (JSON text in any format we read, or PNG bytes) and its info.

    Raises ``FormatError`` naming what is wrong.
    """
    from . import detect, from_comfy_api, from_comfy_ui, from_native, png_text_chunks

    if isinstance(data, (bytes, bytearray)) and bytes(data[:8]) == _PNG_MAGIC:
        texts = png_text_chunks(bytes(data))
        for chunk in ("workflow", "prompt"):
            if chunk in texts:
                text = texts[chunk]
                reader = from_comfy_ui if chunk == "workflow" else from_comfy_api
                model = reader(loads(text), _need(lookup))
                return model, _info("png", text, chunk)
        raise FormatError("PNG carries no graph: no 'workflow' or 'prompt' text chunk",
                          hint="open a PNG saved by ComfyUI or vortex SaveImage")
    if isinstance(data, (bytes, bytearray)):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FormatError(f"the file is neither a PNG nor UTF-8 JSON text ({exc.reason})") from None
    else:
        text = data
    parsed = loads(text) if text.strip() else {"schema_version": 1}
    fmt = detect(parsed)
    if fmt == "native":
        model = from_native(parsed)
    elif fmt == "comfy_api":
        model = from_comfy_api(parsed, lookup)
    else:
        model = from_comfy_ui(parsed, _need(lookup))
    return model, _info(fmt, text)


def write_document(model: GraphModel, info: DocumentInfo, lookup: Callable[[str], Any] | None,
                   png: bytes | None = None) -> str:
    """The document text of ``model`` in ``info``'s format and layout.

    For a ``png`` document this is the graph chunk's text; ``png_with_graph`` puts it back
    into the image.
    """
    from . import to_comfy_api, to_comfy_ui, to_native

    if info.format == "native":
        data = to_native(model)
    elif info.format == "comfy_api" or (info.format == "png" and info.chunk == "prompt"):
        data = to_comfy_api(model, lookup)
    else:
        data = to_comfy_ui(model, _need(lookup))
    text = dumps_js(data, info.indent, info.compact)
    return text + "\n" if info.newline else text


def png_with_graph(png: bytes, text: str, info: DocumentInfo) -> bytes:
    """``png`` with its graph chunk replaced by ``text`` (the pixels are untouched)."""
    from . import add_png_text_chunks

    return add_png_text_chunks(png, {info.chunk or "workflow": text})


def dumps_js(data: Any, indent: int | str | None = None, compact: bool = False) -> str:
    """JSON text as ``JSON.stringify(data, null, indent)`` writes it (NaN/Infinity are
    refused: a document must be valid JSON). One-line text has spaces after separators
    (Python's ``json.dumps``) unless ``compact`` (JavaScript's)."""
    if indent is not None:
        separators = (",", ": ")
    else:
        separators = (",", ":") if compact else (", ", ": ")
    try:
        return json.dumps(data, indent=indent, ensure_ascii=False, allow_nan=False, separators=separators)
    except ValueError as exc:
        raise FormatError(f"the graph cannot be written as JSON: {exc}",
                          hint="replace NaN/Infinity values before saving") from None


def _info(fmt: DocFormat, text: str, chunk: str | None = None) -> DocumentInfo:
    """How JSON ``text`` is laid out: the whitespace starting its second line is the indent;
    one-line text is compact when its first ``:`` has no space after it."""
    body = text.strip()
    newline = text.endswith("\n")
    if "\n" not in body:
        colon = body.find(":")
        return DocumentInfo(fmt, None, newline, chunk, colon >= 0 and body[colon + 1:colon + 2] != " ")
    line = body[body.index("\n") + 1:]
    ws = line[: len(line) - len(line.lstrip(" \t"))]
    indent: int | str | None = "\t" if ws.startswith("\t") else (len(ws) or None)
    return DocumentInfo(fmt, indent, newline, chunk)


def _need(lookup: Callable[[str], Any] | None) -> Callable[[str], Any]:
    if lookup is not None:
        return lookup
    from ...nodes.registry import REGISTRY

    return REGISTRY.lookup
