"""Tiled VAE decode/encode (VAEDecodeTiled, VAEEncodeTiled): ComfyUI's tiling, memory-bounded.

Policy, as ComfyUI's ``comfy.utils.tiled_scale`` and ``VAE.decode_tiled_``/``encode_tiled_``:

- One batch item at a time. An item that fits one tile goes through the VAE whole.
- Otherwise tiles start every ``tile - overlap`` input pixels (``range(0, size - overlap,
  tile - overlap)`` per axis); the last tile of a row is cut at the border, not shifted.
- Each tile's output is weighted by a feather mask: along each axis its first and last
  ``round(overlap * scale)`` output pixels ramp as ``(t + 1) / feather`` (no ramp when the
  feather is not smaller than the tile). Weighted tiles are summed and divided by the summed
  weights, so every output pixel is a convex mix of the tiles that cover it.
- Seams are hidden further by running three passes with tile shapes (h, w) =
  ``(2*ty, tx//2)``, ``(ty//2, 2*tx)`` and ``(ty, tx)`` and averaging them.

Memory: the VAE only ever sees one tile, so its activations are bounded by the tile size,
whatever the image size; what grows with the image is the output itself plus one output-sized
accumulator and a one-channel weight map per batch item.

Imported only when a tiled node runs (in a worker): it imports torch at module level.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch

from ..context import current

Fn = Callable[[Any], Any]


def starts(size: int, tile: int, overlap: int) -> list[int]:
    """Where tiles begin along one axis of ``size`` input pixels (ComfyUI's positions)."""
    if size <= tile:
        return [0]
    if tile - overlap <= 0:
        raise ValueError(f"tile of {tile} with overlap {overlap} never advances "
                         "(fix: make the overlap smaller than half the tile size)")
    return list(range(0, size - overlap, tile - overlap))


def feather(length: int, width: int) -> Any:
    """ComfyUI's 1-D tile weight: both ends ramp ``(t+1)/width`` over ``width`` pixels."""
    mask = torch.ones(length)
    if 0 < width < length:  # ComfyUI skips the ramp when it would cover the whole tile
        for t in range(width):
            a = (t + 1) / width
            mask[t] *= a
            mask[length - 1 - t] *= a
    return mask


def _tiles(h: int, w: int, tile: tuple[int, int], overlap: int) -> Iterator[tuple[int, int, int, int]]:
    for top in starts(h, tile[0], overlap):
        for left in starts(w, tile[1], overlap):
            yield top, left, min(tile[0], h - top), min(tile[1], w - left)


def tile_count(shape: tuple[int, ...], tile: tuple[int, int], overlap: int) -> int:
    h, w = shape[-2:]
    return shape[0] * len(starts(h, tile[0], overlap)) * len(starts(w, tile[1], overlap))


def tiled_map(x: Any, fn: Fn, tile: tuple[int, int], overlap: int, scale: float, channels: int,
              tick: Callable[[], None] = lambda: None) -> Any:
    """``fn`` applied to (N, C, H, W) ``x`` tile by tile, blended: ComfyUI's ``tiled_scale``.

    ``tile`` is (height, width) in input pixels; ``fn`` maps a (1, C, h, w) tile to
    (1, channels, round(h*scale), round(w*scale)). Returns a float32 CPU tensor.
    """
    n, _, h, w = x.shape
    oh, ow = round(h * scale), round(w * scale)
    out = torch.empty(n, channels, oh, ow)
    width = round(overlap * scale)
    for b in range(n):
        item = x[b:b + 1]
        if h <= tile[0] and w <= tile[1]:
            out[b:b + 1] = fn(item)
            tick()
            continue
        acc = torch.zeros(1, channels, oh, ow)
        weight = torch.zeros(1, 1, oh, ow)
        for top, left, th, tw in _tiles(h, w, tile, overlap):
            piece = fn(item[:, :, top:top + th, left:left + tw])
            y0, x0 = round(top * scale), round(left * scale)
            ph, pw = min(piece.shape[-2], oh - y0), min(piece.shape[-1], ow - x0)
            mask = feather(piece.shape[-2], width)[:, None] * feather(piece.shape[-1], width)[None, :]
            mask = mask[:ph, :pw]
            acc[:, :, y0:y0 + ph, x0:x0 + pw] += piece[:, :, :ph, :pw] * mask
            weight[:, :, y0:y0 + ph, x0:x0 + pw] += mask
            tick()
        out[b:b + 1] = acc / weight
    return out


def _check(node: str, size: tuple[int, int], shapes: list[tuple[int, int]], overlap: int) -> None:
    """Fail before any VAE work if a tiling would not advance (ComfyUI then divides 0 by 0)."""
    for shape in shapes:
        for extent, tile in zip(size, shape):
            if extent > tile and tile - overlap <= 0:
                raise ValueError(f"{node}: a {shape[0]}x{shape[1]} tile with an overlap of {overlap} would not "
                                 "advance (ComfyUI also tiles with half-size tiles; fix: lower overlap below "
                                 "half of tile_size, or raise tile_size)")


def three_pass(x: Any, fn: Fn, tx: int, ty: int, overlap: int, scale: float, channels: int,
               *, node: str, square_first: bool = False) -> Any:
    """The mean of ComfyUI's three tilings (tall, wide, square tiles) of ``x``.

    ComfyUI sums them tall, wide, square when decoding and square, wide, tall when encoding
    (``square_first``); the order only moves float rounding, but we keep it.
    """
    shapes = [(ty * 2, tx // 2), (ty // 2, tx * 2), (ty, tx)]
    if square_first:
        shapes.reverse()
    _check(node, tuple(x.shape[-2:]), shapes, overlap)
    ctx = current()
    total = sum(tile_count(tuple(x.shape), s, overlap) for s in shapes)
    done = [0]

    def tick() -> None:
        done[0] += 1
        ctx.progress(done[0], total)
        ctx.raise_if_cancelled()

    acc = tiled_map(x, fn, shapes[0], overlap, scale, channels, tick)
    for shape in shapes[1:]:
        acc += tiled_map(x, fn, shape, overlap, scale, channels, tick)
    return acc / 3.0
