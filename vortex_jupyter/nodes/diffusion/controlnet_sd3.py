"""SD3 ControlNets at sampling time, as ComfyUI's ``load_controlnet_mmdit`` path runs them
(``comfy/controlnet.py``, ``comfy/cldm/mmdit.py``, the MMDiT's ``forward_core_with_concat``).

Policy, per model call of a batch sharing one control (``RunControl.blocks``):

- the hint image is resized to the latent's size x 8 (nearest-exact, centre crop: ComfyUI's
  ``compression_ratio`` 1 times the VAE's 8) and VAE-encoded (the distribution's mean), then
  multiplied by the VAE's scaling factor WITHOUT its shift (ComfyUI sets the SD3 latent
  format's ``shift_factor`` to 0 for these ControlNets, "SD3 controlnet weirdness"; diffusers'
  pipeline does the same when ``force_zeros_for_pooled_projection``). An inpainting ControlNet
  (``extra_conditioning_channels`` 1) gets a channel of ones (ComfyUI's ``concat_mask``).
  Encoded once per latent size, then broadcast over the batch like SD1's hints;
- the net sees the same input, timestep and context as the transformer, and a pooled vector
  of zeros (ComfyUI zeroes ``y``; diffusers' ``force_zeros_for_pooled_projection``);
- its ``n`` block outputs, times ``strength``, are spread over the transformer's ``depth``
  joint blocks as ComfyUI's ControlNet does: each repeated ``depth // n`` times, the last one
  once less, and the i-th entry is added to the tokens after joint block i (blocks past the
  list get nothing). Chained controls add up entry by entry (``control_merge``).

State: the encoded hint lives in the ``RunControl``'s cache for one run.
"""

from __future__ import annotations

from typing import Any

import torch

from .transformer_apply import _pad  # the transformer's circular padding to whole patches

Blocks = list[torch.Tensor | None]


def control_blocks(run: Any, x: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor,
                   added: torch.Tensor | None, depth: int) -> Blocks | None:
    """The residuals of ``run``'s control chain (a ``controlnet.RunControl``) for ``depth`` joint
    blocks at ``x`` (raw latents) and ``sigma``, or None when no control of the chain is active."""
    prev = None if run.previous is None else control_blocks(run.previous, x, sigma, context, added, depth)
    s = float(sigma[0])
    if s > run.sigma_start or s < run.sigma_end:
        return prev
    with run.applied.net.module.use() as module:
        weight = next(module.parameters())
        dtype = weight.dtype
        hint = _hint_for(run, x, module, weight.device)
        pooled = _pooled(module, x.shape[0], added)
        outs = module(hidden_states=_pad(run.ms.calculate_input(sigma, x)).to(dtype), controlnet_cond=hint,
                      conditioning_scale=run.applied.strength, encoder_hidden_states=context.to(dtype),
                      pooled_projections=pooled.to(device=weight.device, dtype=dtype),
                      timestep=run.ms.timestep(sigma).to(dtype), return_dict=False)[0]
    return merge(spread(list(outs), depth), prev)


def _pooled(module: Any, batch: int, added: torch.Tensor | None) -> torch.Tensor:
    if added is not None and not module.config.force_zeros_for_pooled_projection:
        return added
    return torch.zeros(batch, int(module.config.pooled_projection_dim))


def spread(outs: list[torch.Tensor], depth: int) -> Blocks:
    """ComfyUI's ``cldm.mmdit.ControlNet`` output list: each block output ``depth // len(outs)``
    times, the last once less (``depth`` being the MMDiT's number of joint blocks)."""
    count = depth // len(outs) if outs else 0
    out: Blocks = []
    for i, o in enumerate(outs):
        out.extend([o] * (count - 1 if i == len(outs) - 1 else count))
    return out


def merge(out: Blocks, prev: Blocks | None) -> Blocks:
    """ComfyUI's ``control_merge`` for the "output" list: entry-wise sums, the longer list's tail."""
    if prev is None:
        return out
    merged: Blocks = list(out)
    for i, p in enumerate(prev):
        if i >= len(merged):
            merged.append(p)
        elif p is not None:
            o = merged[i]
            merged[i] = p if o is None else p + o
    return merged


def per_block(blocks: Blocks, depth: int, like: torch.Tensor) -> list[torch.Tensor]:
    """``blocks`` as diffusers' ``block_controlnet_hidden_states`` for a transformer of ``depth``
    joint blocks: one entry per block (zeros where ComfyUI adds nothing), so diffusers' interval
    is 1 and block i gets entry i."""
    zeros = torch.zeros_like(like)
    return [b.to(like.dtype) if i < len(blocks) and (b := blocks[i]) is not None else zeros for i in range(depth)]


def _hint_for(run: Any, x: torch.Tensor, module: Any, device: Any) -> torch.Tensor:
    dtype = next(module.parameters()).dtype
    key = ("sd3", x.shape[2], x.shape[3], device, dtype)
    hint = run._hints.get(key)
    if hint is None:
        hint = _pad(encode_hint(run.applied.hint, run.applied.vae, x.shape[2], x.shape[3],
                                int(module.config.extra_conditioning_channels))).to(device=device, dtype=dtype)
        run._hints = {key: hint}
    from .controlnet import broadcast_hint

    return broadcast_hint(hint, x.shape[0], max(1, x.shape[0] // run.batch))


def encode_hint(hint: torch.Tensor, vae: Any, height: int, width: int, extra: int = 0) -> torch.Tensor:
    """The hint (``[B, 3, H, W]`` in [0, 1]) as the ControlNet's latent input for a latent of
    ``height x width`` (module docstring): ``[B, 16 + extra, height, width]`` float32."""
    from .controlnet import COMPRESSION
    from .latent import common_upscale

    pixels = common_upscale(hint, width * COMPRESSION, height * COMPRESSION, "nearest-exact", "center")
    with vae.vae.use() as module, torch.no_grad():
        mean = module.encode((pixels * 2 - 1).to(module.device, module.dtype)).latent_dist.mode()
    latent = mean.to("cpu", torch.float32) * vae.scaling_factor  # no shift: ComfyUI's SD3 ControlNet rule
    if extra:
        latent = torch.cat([latent, torch.ones(latent.shape[0], extra, *latent.shape[2:])], dim=1)
    return latent
