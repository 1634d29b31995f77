"""Preview images: one encoder for every executor (in-process and worker).

``encode_image(image, final=...)`` turns what a node hands to ``ctx.preview`` into
``(mime, bytes)``:

- ``bytes`` that already are a PNG or JPEG pass through (the mime is read from the magic);
- a PIL image, a numpy array or a torch tensor (duck-typed through ``detach``, so this module
  never imports torch) is encoded: arrays may be HxW, HxWxC or BxHxWxC (the first image of a
  batch is shown), uint8 or float in [0, 1] (clipped, NaN -> 0);
- final images (outputs, ``final=True``) become PNG at a fast compression level; step
  previews become JPEG, which is ~5x smaller and what a sampler streams several times a second.

Pillow is imported on the first encode, not at import (``import vortex_jupyter`` stays light).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

__all__ = ["encode_image", "to_uint8"]

_JPEG_MAGIC = b"\xff\xd8"
#: zlib level 1: previews are shown once and thrown away; level 6 costs ~3x the time for ~10 %.
PNG_LEVEL = 1
JPEG_QUALITY = 80


def to_uint8(image: Any) -> np.ndarray:
    """A contiguous uint8 HxW or HxWxC array of ``image`` (the first one of a batch)."""
    if hasattr(image, "detach"):  # a torch tensor, maybe on the GPU or needing grad
        image = image.detach().cpu()
        if "bfloat16" in str(image.dtype):  # numpy has no bfloat16
            image = image.float()
    arr = np.asarray(image)
    while arr.ndim > 3:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3):
        raise ValueError(f"a preview image must be HxW, HxWxC or BxHxWxC, not shape {tuple(arr.shape)}")
    if arr.dtype != np.uint8:
        arr = (np.clip(np.nan_to_num(arr.astype(np.float32)), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.ascontiguousarray(arr)


def encode_image(image: Any, final: bool = True) -> tuple[str, bytes]:
    """``(mime, bytes)`` of a preview: PNG for final images, JPEG for step previews."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        return ("image/jpeg" if data[:2] == _JPEG_MAGIC else "image/png"), data
    from PIL import Image

    if not isinstance(image, Image.Image):
        image = Image.fromarray(to_uint8(image))
    buf = io.BytesIO()
    if final:
        image.save(buf, format="PNG", compress_level=PNG_LEVEL)
        return "image/png", buf.getvalue()
    if image.mode != "RGB":
        image = image.convert("RGB")
    image.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return "image/jpeg", buf.getvalue()
