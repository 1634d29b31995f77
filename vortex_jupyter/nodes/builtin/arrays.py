"""Turning node inputs into the numpy arrays the image and mask nodes compute on.

Values: IMAGE is float32 ``[B, H, W, C]``, MASK float32 ``[B, H, W]`` (ComfyUI's layouts).
Inputs may be numpy arrays, nested lists or torch tensors on any device (duck-typed through
``detach``, so nothing here imports torch). Masks are accepted in every shape ComfyUI's mask
nodes accept, because they all start with ``mask.reshape((-1, H, W))``: ``[H, W]``,
``[B, H, W]`` or ``[B, 1, H, W]``.

Shape problems raise ``ValueError`` naming the node, the input, the shape and the fix.

>>> as_mask([[0.0, 1.0]], "InvertMask", "mask").shape
(1, 1, 2)
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["as_image", "as_mask", "repeat_to_batch"]


def _numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, maybe on the GPU or needing grad
        value = value.detach().cpu()
        if "bfloat16" in str(value.dtype):  # numpy has no bfloat16
            value = value.float()
    return np.asarray(value, dtype=np.float32)


def as_image(value: Any, node: str, name: str = "image") -> np.ndarray:
    """``value`` as float32 ``[B, H, W, C]``; a single ``[H, W, C]`` image gets a batch axis."""
    array = _numpy(value)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or 0 in array.shape:
        raise ValueError(f"{node}: input {name!r} has shape {tuple(array.shape)}; an IMAGE is "
                         "[batch, height, width, channels] (fix: connect an IMAGE output, not a MASK or LATENT)")
    return array


def as_mask(value: Any, node: str, name: str = "mask") -> np.ndarray:
    """``value`` as float32 ``[B, H, W]`` (ComfyUI's ``mask.reshape((-1, H, W))``)."""
    array = _numpy(value)
    if array.ndim < 2 or 0 in array.shape or (array.ndim == 4 and array.shape[1] != 1) or array.ndim > 4:
        raise ValueError(f"{node}: input {name!r} has shape {tuple(array.shape)}; a MASK is [height, width] "
                         "or [batch, height, width] (fix: connect a MASK output, or convert an image "
                         "with ImageToMask)")
    return array.reshape((-1, *array.shape[-2:]))


def repeat_to_batch(array: np.ndarray, batch: int) -> np.ndarray:
    """``array`` cut or tiled along axis 0 to ``batch`` items (``comfy.utils.repeat_to_batch_size``)."""
    have = array.shape[0]
    if have > batch:
        return array[:batch]
    if have < batch:
        reps = -(-batch // have)
        return np.concatenate([array] * reps, axis=0)[:batch]
    return array
