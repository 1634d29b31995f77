"""Latent resizing (LatentUpscale, LatentUpscaleBy and the resizes other latent nodes do).

``common_upscale`` is ComfyUI's ``comfy.utils.common_upscale``: an optional centre crop to the
target aspect ratio, then torch interpolation (``mode`` = the method name, torch's defaults,
so bilinear/bicubic use ``align_corners=False``) or ComfyUI's "bislerp". Sizes are in latent
pixels. Keys other than ``samples`` (``noise_mask``, ``batch_index``) pass through unchanged,
as in ComfyUI: the sampler resizes a noise mask to the latent it gets.

Imported only when such a node runs (in a worker): it imports torch at module level.
"""

from __future__ import annotations

from typing import Any

import torch

UPSCALE_METHODS = ("nearest-exact", "bilinear", "area", "bicubic", "bislerp")


def common_upscale(x: Any, width: int, height: int, method: str, crop: str) -> Any:
    """Resize an (N, C, H, W) tensor to ``height x width`` the way ComfyUI does."""
    if method not in UPSCALE_METHODS:
        raise ValueError(f"upscale_method {method!r} is not supported "
                         f"(fix: use one of {', '.join(UPSCALE_METHODS)})")
    if crop == "center":
        old_w, old_h = x.shape[-1], x.shape[-2]
        old_aspect, new_aspect = old_w / old_h, width / height
        left = top = 0
        if old_aspect > new_aspect:
            left = round((old_w - old_w * (new_aspect / old_aspect)) / 2)
        elif old_aspect < new_aspect:
            top = round((old_h - old_h * (old_aspect / new_aspect)) / 2)
        x = x[..., top:old_h - top, left:old_w - left]
    if method == "bislerp":
        return bislerp(x, height, width)
    return torch.nn.functional.interpolate(x, size=(height, width), mode=method)


def latent_upscale(samples: dict[str, Any], method: str, width: int, height: int, crop: str) -> dict[str, Any]:
    """LatentUpscale: to ``width x height`` pixels; 0 on one side keeps the aspect ratio.

    As ComfyUI: both 0 returns the input; each side is at least 64 pixels; the side left at 0
    is ``round(other_side * aspect)`` in pixels, then both are floored to latent pixels (/8).
    """
    if width == 0 and height == 0:
        return samples
    h, w = samples["samples"].shape[-2:]
    if width == 0:
        height = max(64, height)
        width = max(64, round(w * height / h))
    elif height == 0:
        width = max(64, width)
        height = max(64, round(h * width / w))
    else:
        width, height = max(64, width), max(64, height)
    out = dict(samples)
    out["samples"] = common_upscale(samples["samples"], width // 8, height // 8, method, crop)
    return out


def latent_upscale_by(samples: dict[str, Any], method: str, scale_by: float) -> dict[str, Any]:
    """LatentUpscaleBy: each latent side times ``scale_by``, rounded (no crop)."""
    h, w = samples["samples"].shape[-2:]
    width, height = round(w * scale_by), round(h * scale_by)
    if width < 1 or height < 1:
        raise ValueError(f"LatentUpscaleBy: scale_by {scale_by} shrinks the {w}x{h} latent to {width}x{height} "
                         "(fix: use a larger scale_by)")
    out = dict(samples)
    out["samples"] = common_upscale(samples["samples"], width, height, method, "disabled")
    return out


def bislerp(x: Any, height: int, width: int) -> Any:
    """ComfyUI's "bislerp" resize of an (N, C, H, W) latent: bilinear sampling positions, but
    each pair of neighbouring pixels is blended by spherical interpolation of their channel
    vectors (direction slerped, length lerped) instead of a straight mix; width first, then
    height. Pixels pointing the same way keep the first one; opposite ones are mixed linearly."""
    dtype = x.dtype
    x = x.to(torch.float32)
    x = _slerp_axis(x, width, axis=3)
    return _slerp_axis(x, height, axis=2).to(dtype)


def _slerp_axis(x: Any, size: int, axis: int) -> Any:
    old = x.shape[axis]
    # bilinear source positions (half-pixel centres), clamped to the image
    src = ((torch.arange(size, dtype=torch.float32, device=x.device) + 0.5) * (old / size) - 0.5).clamp(0, old - 1)
    lo = src.floor().to(torch.int64)
    hi = (lo + 1).clamp(max=old - 1)
    r = src - lo.to(torch.float32)
    a, b = x.index_select(axis, lo), x.index_select(axis, hi)
    shape = [1, 1, 1, 1]
    shape[axis] = size
    r = r.reshape(shape)
    na, nb = a.norm(dim=1, keepdim=True), b.norm(dim=1, keepdim=True)
    ua = torch.where(na == 0, torch.zeros_like(a), a / na)
    ub = torch.where(nb == 0, torch.zeros_like(b), b / nb)
    dot = (ua * ub).sum(dim=1, keepdim=True)
    omega = torch.acos(dot.clamp(-1.0, 1.0))
    so = torch.sin(omega)
    res = (torch.sin((1 - r) * omega) / so) * ua + (torch.sin(r * omega) / so) * ub
    res = res * (na * (1 - r) + nb * r)
    res = torch.where(dot > 1 - 1e-5, a, res)
    return torch.where(dot < 1e-5 - 1, a * (1 - r) + b * r, res)
