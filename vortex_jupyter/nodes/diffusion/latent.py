"""Latent resizing (LatentUpscale): torch interpolation modes and ComfyUI's "bislerp".

Imported only when such a node runs (in a worker): it imports torch at module level.
"""

from __future__ import annotations

from typing import Any

import torch

_MODES = {"nearest-exact": "nearest-exact", "bilinear": "bilinear", "area": "area", "bicubic": "bicubic"}


def latent_upscale(samples: dict[str, Any], method: str, width: int, height: int, crop: str) -> dict[str, Any]:
    """Resize a latent to ``width x height`` pixels (0 keeps the aspect ratio of the other side)."""
    x = samples["samples"]
    h, w = x.shape[-2:]
    if width == 0 and height == 0:
        return dict(samples)
    tw = width // 8 if width else max(1, round(w * (height // 8) / h))
    th = height // 8 if height else max(1, round(h * (width // 8) / w))
    if crop == "center":  # crop to the target aspect ratio first, as ComfyUI does
        src, dst = w / h, tw / th
        if src > dst:
            cw = round(h * dst)
            x = x[..., (w - cw) // 2:(w - cw) // 2 + cw]
        elif src < dst:
            ch = round(w / dst)
            x = x[..., (h - ch) // 2:(h - ch) // 2 + ch, :]
    out = dict(samples)
    if method == "bislerp":
        out["samples"] = bislerp(x, th, tw)
        return out
    if method not in _MODES:
        raise ValueError(f"upscale_method {method!r} is not supported; use one of {', '.join([*_MODES, 'bislerp'])}")
    kw = {"align_corners": False} if method in ("bilinear", "bicubic") else {}
    out["samples"] = torch.nn.functional.interpolate(x, size=(th, tw), mode=_MODES[method], **kw)
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
