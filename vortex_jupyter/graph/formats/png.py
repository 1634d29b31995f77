"""PNG text chunks, read and written in pure Python (``struct`` + ``zlib``; no Pillow).

ComfyUI embeds the graph in the PNGs it saves: text chunk ``"prompt"`` holds the API format
and ``"workflow"`` the UI format. ``graph_from_png`` prefers the workflow (it has the layout
and the frontend-only nodes) and falls back to the prompt.

Reading accepts ``tEXt`` (Latin-1), ``zTXt`` (zlib, Latin-1) and ``iTXt`` (UTF-8, optionally
zlib). Decompression is bounded, CRCs are checked, and every malformation is a ``FormatError``.
Writing uses ``tEXt`` when key and text are Latin-1 and ``iTXt`` otherwise (as Pillow does, so
ComfyUI reads our files), placed right after ``IHDR`` and replacing chunks with the same key.

>>> png = add_png_text_chunks(tiny_png(), {"workflow": "{}"})
>>> png_text_chunks(png)
{'workflow': '{}'}
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterator
from typing import Any

from ...errors import FormatError
from ..model import GraphModel
from ._common import loads

__all__ = ["add_png_text_chunks", "graph_from_png", "png_text_chunks", "tiny_png"]

SIGNATURE = b"\x89PNG\r\n\x1a\n"
TEXT_TYPES = (b"tEXt", b"zTXt", b"iTXt")
#: Largest text a compressed chunk may expand to (a zip bomb must not eat the kernel's memory).
MAX_TEXT = 64 * 1024 * 1024


def _chunks(data: bytes) -> Iterator[tuple[bytes, bytes, int, int]]:
    """(type, payload, start, end) of each chunk; ``FormatError`` on any malformation."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise FormatError(f"expected PNG bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data.startswith(SIGNATURE):
        raise FormatError("not a PNG file (bad signature)", hint="pass the bytes of a .png file")
    pos = len(SIGNATURE)
    while pos < len(data):
        if pos + 12 > len(data):
            raise FormatError(f"PNG is truncated at byte {pos} (incomplete chunk header)")
        length, ctype = struct.unpack(">I4s", data[pos:pos + 8])
        end = pos + 12 + length
        if end > len(data):
            raise FormatError(f"PNG chunk {ctype!r} at byte {pos} claims {length} bytes; the file is truncated")
        if pos == len(SIGNATURE) and ctype != b"IHDR":
            raise FormatError(f"PNG starts with a {ctype!r} chunk instead of IHDR (the file is corrupt)")
        payload = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[end - 4:end])
        if zlib.crc32(ctype + payload) != crc:
            raise FormatError(f"PNG chunk {ctype!r} at byte {pos} has a bad CRC (the file is corrupt)")
        yield ctype, payload, pos, end
        if ctype == b"IEND":
            return
        pos = end
    raise FormatError("PNG has no IEND chunk (the file is truncated)")


def _inflate(blob: bytes, where: str) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(blob, MAX_TEXT)
    except zlib.error as exc:
        raise FormatError(f"{where}: compressed text is corrupt ({exc})") from None
    if inflater.unconsumed_tail:
        raise FormatError(f"{where}: compressed text expands beyond {MAX_TEXT} bytes")
    return out


def _decode(ctype: bytes, payload: bytes) -> tuple[str, str]:
    key_raw, sep, rest = payload.partition(b"\0")
    if not sep or not 1 <= len(key_raw) <= 79:
        raise FormatError(f"PNG {ctype.decode()} chunk has a malformed keyword")
    key = key_raw.decode("latin-1")
    where = f"PNG {ctype.decode()} chunk {key!r}"
    if ctype == b"tEXt":
        return key, rest.decode("latin-1")
    if ctype == b"zTXt":
        if not rest or rest[0] != 0:
            raise FormatError(f"{where}: unknown compression method")
        return key, _inflate(rest[1:], where).decode("latin-1")
    if len(rest) < 2:
        raise FormatError(f"{where}: chunk is truncated")
    compressed, method, tail = rest[0], rest[1], rest[2:]
    _lang, sep1, tail = tail.partition(b"\0")
    _translated, sep2, text = tail.partition(b"\0")
    if not (sep1 and sep2) or compressed not in (0, 1) or (compressed and method != 0):
        raise FormatError(f"{where}: malformed iTXt header")
    raw = _inflate(text, where) if compressed else text
    try:
        return key, raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"{where}: text is not UTF-8 ({exc.reason})") from None


def png_text_chunks(png_bytes: bytes) -> dict[str, str]:
    """Every text chunk of a PNG as ``{key: text}`` (a later chunk with the same key wins)."""
    return {k: v for k, v in (_decode(t, p) for t, p, _, _ in _chunks(png_bytes) if t in TEXT_TYPES)}


def _chunk(ctype: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", len(payload), ctype) + payload + struct.pack(">I", zlib.crc32(ctype + payload))


def _encode(key: str, text: str) -> bytes:
    try:
        key_raw = key.encode("latin-1")
    except UnicodeEncodeError:
        raise FormatError(f"PNG text key {key!r} must be Latin-1") from None
    if not 1 <= len(key_raw) <= 79 or b"\0" in key_raw:
        raise FormatError(f"PNG text key {key!r} must be 1 to 79 characters without NUL")
    try:
        return _chunk(b"tEXt", key_raw + b"\0" + text.encode("latin-1"))
    except UnicodeEncodeError:
        return _chunk(b"iTXt", key_raw + b"\0\0\0\0\0" + text.encode("utf-8"))


def add_png_text_chunks(png_bytes: bytes, texts: dict[str, str]) -> bytes:
    """The PNG with ``texts`` added as text chunks (existing chunks with those keys replaced)."""
    new = b"".join(_encode(k, v) for k, v in texts.items())
    out = [SIGNATURE]
    for ctype, payload, start, end in _chunks(png_bytes):
        if ctype in TEXT_TYPES and _decode(ctype, payload)[0] in texts:
            continue
        out.append(bytes(png_bytes[start:end]))
        if ctype == b"IHDR":
            out.append(new)
    return b"".join(out)


def graph_from_png(png_bytes: bytes, lookup: Callable[[str], Any]) -> GraphModel:
    """The graph a PNG carries: the "workflow" chunk (UI format), else the "prompt" (API)."""
    from .comfy_api import from_comfy_api
    from .comfy_ui import from_comfy_ui

    texts = png_text_chunks(png_bytes)
    if "workflow" in texts:
        return from_comfy_ui(loads(texts["workflow"]), lookup)
    if "prompt" in texts:
        return from_comfy_api(loads(texts["prompt"]), lookup)
    found = ", ".join(sorted(texts)) or "none"
    raise FormatError(f"PNG carries no graph: no 'workflow' or 'prompt' text chunk (text chunks: {found})",
                      hint="load a PNG saved by ComfyUI or vortex SaveImage")


def tiny_png(width: int = 1, height: int = 1) -> bytes:
    """A valid black 8-bit RGB PNG (for tests and docs)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = b"".join(b"\0" + b"\0" * (3 * width) for _ in range(height))
    return SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(rows)) + _chunk(b"IEND", b"")
