"""Cheap sampler step previews: a linear map from SD1 latents to RGB, no VAE involved.

Decoding with the VAE every step would cost as much as a sampling step on a GPU. A 4x3
linear map of the latent (plus a bias) gives a recognisable thumbnail for almost nothing;
these are the widely published SD1.x latent->RGB factors (ComfyUI's ``latent_formats.SD15``
uses the same numbers). Previews are rate-limited (``VORTEX_PREVIEW_INTERVAL`` seconds,
default 0.2), and on a GPU the latent is copied to pinned host memory asynchronously and
shown one step later, once the copy is done: the sampling loop never waits for the device
(a synchronous copy would stall the GPU every preview while the CPU queues the next step).
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

#: rows: latent channels 0..3; columns: R, G, B.
SD1_LATENT_RGB = np.array([
    [0.3512, 0.2297, 0.3227],
    [0.3250, 0.4974, 0.2350],
    [-0.2829, 0.1762, 0.2721],
    [-0.2120, -0.2616, -0.7177],
], dtype=np.float32)
#: Small images are scaled up to at least this many pixels on their short side.
MIN_SIDE = 64


def _factors(channels: int) -> np.ndarray:
    """SD1's map for 4 channels; for other latents (SD3/Flux: 16) a rough stand-in: the channels
    in three consecutive groups, each group's mean is one colour (recognisable shapes, wrong hues)."""
    if channels == 4:
        return SD1_LATENT_RGB
    out = np.zeros((channels, 3), dtype=np.float32)
    for c in range(channels):
        out[c, min(2, c * 3 // channels)] = 3.0 / channels
    return out


def latent_to_rgb(latent: Any) -> np.ndarray:
    """The first image of a ``[B,C,h,w]`` latent as an ``h x w x 3`` uint8 array."""
    import torch

    first = latent[0].detach().to(device="cpu", dtype=torch.float32).numpy()
    rgb = np.einsum("chw,cr->hwr", first, _factors(first.shape[0]))
    img = np.clip((rgb + 1.0) * 127.5, 0, 255).astype(np.uint8)
    scale = max(1, -(-MIN_SIDE // max(1, min(img.shape[:2]))))
    return img.repeat(scale, axis=0).repeat(scale, axis=1) if scale > 1 else img


class PreviewThrottle:
    """Says when the next preview is due: the first step, the last, and every ``interval`` s."""

    def __init__(self, interval: float | None = None) -> None:
        env = os.environ.get("VORTEX_PREVIEW_INTERVAL")
        self.interval = interval if interval is not None else float(env) if env else 0.2
        self._last = -float("inf")

    def due(self, step: int, total: int) -> bool:
        now = time.monotonic()
        if step == 0 or step == total - 1 or now - self._last >= self.interval:
            self._last = now
            return True
        return False


class AsyncPreviews:
    """Sends step previews without blocking a GPU loop (CPU latents are shown at once)."""

    def __init__(self, ctx: Any, throttle: PreviewThrottle) -> None:
        self.ctx, self.throttle = ctx, throttle
        self._pending: tuple[Any, Any] | None = None  # (host copy, CUDA event)

    def step(self, i: int, total: int, latent: Any) -> None:
        self._poll()
        if not self.throttle.due(i, total):
            return
        if latent.device.type != "cuda":
            self.ctx.preview(latent_to_rgb(latent))
        elif self._pending is None:  # one copy in flight at a time; a busy GPU skips previews
            import torch

            host = torch.empty(latent[:1].shape, dtype=latent.dtype, pin_memory=True)
            host.copy_(latent[:1], non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            self._pending = (host, event)

    def _poll(self, wait: bool = False) -> None:
        if self._pending is None:
            return
        host, event = self._pending
        if wait:
            event.synchronize()
        elif not event.query():
            return
        self._pending = None
        self.ctx.preview(latent_to_rgb(host))

    def flush(self) -> None:
        """Show the preview still in flight (the loop is over; waiting costs nothing now)."""
        self._poll(wait=True)
