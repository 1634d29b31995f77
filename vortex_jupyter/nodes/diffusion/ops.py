"""What the non-sampling diffusion nodes do (text encoding, VAE, latent resize, LoRA).

Imported only when such a node runs (in a worker): it imports torch at module level.
Outputs that cross to other nodes live on the CPU (LATENT and CONDITIONING tensors travel
through shared memory); modules run wherever the loader put them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ...errors import ModelError
from . import lora as lora_mod
from .loaders import ClipHandle, ModelHandle, VaeHandle, lora_path, oom_guard, patched


def token_chunks(tokenizer: Any, text: str) -> Any:
    """``[n, 77]`` token ids: the prompt cut into 75-token pieces, each wrapped in BOS/EOS and
    padded with EOS (SD1's padding), as ComfyUI does for prompts longer than CLIP's window."""
    window = int(getattr(tokenizer, "model_max_length", 77) or 77)
    if window > 10_000:  # tokenizers without a limit report a huge sentinel
        window = 77
    body = window - 2
    ids = tokenizer(text, add_special_tokens=False, truncation=False).input_ids
    pieces = [ids[i:i + body] for i in range(0, len(ids), body)] or [[]]
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    rows = [[bos, *p, eos] + [eos] * (body - len(p)) for p in pieces]
    return torch.tensor(rows, dtype=torch.long)


def encode_text(clip: ClipHandle, text: str) -> list[list[Any]]:
    """CONDITIONING for ``text``: the last hidden state (after the final layer norm), as SD1 uses.

    Long prompts are encoded in 77-token windows whose states are concatenated
    (``[1, 77 * n, dim]``); ``pooled_output`` comes from the first window.
    """
    ids = token_chunks(clip.tokenizer, text)
    with clip.encoder.use() as encoder, torch.inference_mode():
        out = encoder(ids.to(encoder.device))
    hidden = out.last_hidden_state.to("cpu", torch.float32).reshape(1, -1, out.last_hidden_state.shape[-1])
    pooled = out.pooler_output[:1].to("cpu", torch.float32)
    return [[hidden, {"pooled_output": pooled}]]


def vae_decode(vae: VaeHandle, samples: dict[str, Any]) -> np.ndarray:
    latent = samples["samples"]
    with vae.vae.use() as module, torch.inference_mode():
        z = latent.to(module.device, module.dtype) / vae.scaling_factor
        images = oom_guard(lambda: module.decode(z, return_dict=False)[0], module.device)
    images = (images.to("cpu", torch.float32) / 2 + 0.5).clamp(0, 1)
    return images.permute(0, 2, 3, 1).contiguous().numpy()


def vae_encode(vae: VaeHandle, pixels: Any) -> dict[str, Any]:
    """LATENT of an IMAGE (numpy or torch ``[B,H,W,C]``); H and W are cropped to multiples of 8."""
    if isinstance(pixels, torch.Tensor):  # any device (np.asarray would fail on CUDA tensors)
        arr = pixels.detach().to("cpu", torch.float32)
    else:
        arr = torch.as_tensor(np.asarray(pixels, dtype=np.float32))
    if arr.ndim == 3:
        arr = arr[None]
    h, w = (arr.shape[1] // 8) * 8, (arr.shape[2] // 8) * 8
    if h == 0 or w == 0:
        raise ValueError(f"pixels are {tuple(arr.shape[1:3])}; VAEEncode needs at least 8x8")
    x = arr[:, :h, :w, :3].permute(0, 3, 1, 2) * 2 - 1
    with vae.vae.use() as module, torch.inference_mode():
        dist = oom_guard(lambda: module.encode(x.to(module.device, module.dtype)).latent_dist, module.device)
        latent = dist.mode() * vae.scaling_factor  # the mean: deterministic, as ComfyUI's encode
    return {"samples": latent.to("cpu", torch.float32)}


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


def load_lora(model: ModelHandle, clip: ClipHandle, lora_name: str, strength_model: float,
              strength_clip: float) -> tuple[ModelHandle, ClipHandle]:
    """Patched copies of MODEL and CLIP; a strength of 0 returns that input unchanged."""
    if strength_model == 0 and strength_clip == 0:
        return model, clip
    path = lora_path(lora_name)
    state, alphas = lora_mod.read_lora(path)
    tag = f"+lora:{path}:{path.stat().st_mtime_ns}"
    new_model, new_clip = model, clip
    unet_delta = lora_mod.deltas(state, alphas, "unet")
    if strength_model != 0 and unet_delta:
        comp = patched(model, "unet", f"{tag}@{strength_model}",
                       lambda m: lora_mod.apply(m, unet_delta, strength_model, f"{lora_name} (unet)"))
        new_model = ModelHandle(model.name, comp, model.scheduler_config,
                                (*model.loras, (lora_name, strength_model)))
    text_delta = lora_mod.deltas(state, alphas, "text_encoder")
    if strength_clip != 0 and text_delta:
        comp = patched(clip, "encoder", f"{tag}@{strength_clip}",
                       lambda m: lora_mod.apply(m, text_delta, strength_clip, f"{lora_name} (text encoder)"))
        new_clip = ClipHandle(clip.name, comp, clip.tokenizer, (*clip.loras, (lora_name, strength_clip)))
    if not unet_delta and not text_delta:
        raise ModelError(f"LoRA {lora_name!r} has no UNet or text encoder weights we recognise",
                         hint="use a diffusers/peft or kohya LoRA for SD1 models")
    return new_model, new_clip
