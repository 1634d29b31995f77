"""Calling the flow-matching transformers (SD3's MMDiT, Flux) as ComfyUI's model wrappers do.

Both take ComfyUI's ``apply(x, sigma, context, added)`` (``conds.ApplyModel``) and return the
denoised estimate, so every sampler, guider and conditioning feature works on them unchanged:

- **SD3** (diffusers ``SD3Transformer2DModel``): the latent as it is (``FlowSampling``: the
  model sees ``x`` unscaled), timestep ``sigma * 1000``, ``context`` = CLIP-L/G joined and
  padded to T5's width, then T5 (``text.encode_sd3``), ``added`` = the pooled CLIP-L + G
  vector (``pooled_output``, ComfyUI's ``y``); an SD3 ControlNet's residuals (``control``,
  ``controlnet_sd3.py``) as ``block_controlnet_hidden_states``;
- **Flux** (diffusers ``FluxTransformer2DModel``): the latent cut into 2x2 patches, one token
  per patch (``(c, ph, pw)`` order), positions ``(0, row, col)`` per patch and ``(0, 0, 0)``
  per text token, timestep ``sigma`` (the model multiplies by 1000 itself, as ComfyUI's), and
  ``added`` = the pooled CLIP-L vector followed by the guidance (FluxGuidance's value, 3.5
  when the prompt does not say, ComfyUI's default) used by guidance-distilled models.

Latents whose sides are not multiples of the patch size are padded circularly and the output
cropped back, as ComfyUI's ``pad_to_patch_size`` does.
"""

from __future__ import annotations

from typing import Any

import torch

from .conds import ApplyModel

#: ComfyUI's Flux guidance when no FluxGuidance / CLIPTextEncodeFlux set one.
FLUX_DEFAULT_GUIDANCE = 3.5
PATCH = 2


def latent_channels(family: str, module: Any) -> int:
    """The channels of the latent a denoiser works on (Flux's ``in_channels`` counts packed patches)."""
    config = module.config
    if family == "flux":
        return int(config.in_channels) // (PATCH * PATCH)
    return int(getattr(config, "out_channels", None) or config.in_channels)


def _pad(x: torch.Tensor) -> torch.Tensor:
    ph, pw = (-x.shape[-2]) % PATCH, (-x.shape[-1]) % PATCH
    if ph or pw:
        return torch.nn.functional.pad(x, (0, pw, 0, ph), mode="circular")
    return x


def _tokens(hidden: torch.Tensor, model: Any) -> torch.Tensor:
    """An empty ``[B, tokens, width]`` like the MMDiT's image tokens for ``hidden``."""
    b, _, h, w = hidden.shape
    width = int(model.config.num_attention_heads) * int(model.config.attention_head_dim)
    return hidden.new_empty(b, (h // PATCH) * (w // PATCH), width)


def sd3_apply(model: Any, ms: Any) -> ApplyModel:
    dtype = model.dtype  # once: diffusers' ``dtype`` walks the modules (about 1 ms a call)
    depth = len(model.transformer_blocks)

    def apply(x: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor,
              added: torch.Tensor | None = None, control: Any = None) -> torch.Tensor:
        if added is None:
            raise ValueError("an SD3 model needs the pooled text embedding of its CLIP (fix: encode the "
                             "prompt with an SD3 CLIP: TripleCLIPLoader, or the checkpoint's CLIP)")
        h, w = x.shape[-2:]
        hidden = _pad(ms.calculate_input(sigma, x)).to(dtype)
        kwargs: dict[str, Any] = {}
        blocks = None if control is None else control.blocks(x, sigma, context, added, depth)
        if blocks:  # an SD3 ControlNet (``controlnet_sd3.py``): residuals after the joint blocks
            from .controlnet_sd3 import per_block

            kwargs["block_controlnet_hidden_states"] = per_block(blocks, depth, _tokens(hidden, model))
        out = model(hidden_states=hidden, encoder_hidden_states=context.to(dtype), pooled_projections=added.to(dtype),
                    timestep=ms.timestep(sigma).to(dtype), return_dict=False, **kwargs)[0]
        return ms.calculate_denoised(sigma, out[..., :h, :w].float(), x)

    return apply


def pack(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B, (H/2)(W/2), C*4]`` (H and W even)."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // PATCH, PATCH, w // PATCH, PATCH).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // PATCH) * (w // PATCH), c * PATCH * PATCH)


def unpack(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The inverse of ``pack`` for a latent of (even) size ``h x w``."""
    b, _, d = tokens.shape
    c = d // (PATCH * PATCH)
    x = tokens.reshape(b, h // PATCH, w // PATCH, c, PATCH, PATCH).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, c, h, w)


def image_ids(h: int, w: int, device: Any) -> torch.Tensor:
    """Flux's position ids of the patches of an ``h x w`` latent: ``(0, row, col)``."""
    rows = torch.arange(h // PATCH, device=device, dtype=torch.float32)
    cols = torch.arange(w // PATCH, device=device, dtype=torch.float32)
    ids = torch.zeros(h // PATCH, w // PATCH, 3, device=device)
    ids[..., 1] = rows[:, None]
    ids[..., 2] = cols[None, :]
    return ids.reshape(-1, 3)


def flux_apply(model: Any, ms: Any) -> ApplyModel:
    dtype = model.dtype  # once (see sd3_apply)
    guidance_embeds = bool(getattr(model.config, "guidance_embeds", False))
    ids: dict[tuple[int, int, int, Any], tuple[torch.Tensor, torch.Tensor]] = {}  # per latent/text size, not per step

    def apply(x: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor,
              added: torch.Tensor | None = None, control: Any = None) -> torch.Tensor:
        if added is None:
            raise ValueError("a Flux model needs the pooled CLIP-L embedding (fix: encode the prompt with a "
                             "Flux CLIP: DualCLIPLoader type flux, or the checkpoint's CLIP)")
        h, w = x.shape[-2:]
        xp = _pad(ms.calculate_input(sigma, x))
        hp, wp = xp.shape[-2:]
        key = (hp, wp, context.shape[1], x.device)
        if key not in ids:
            ids[key] = (image_ids(hp, wp, x.device), torch.zeros(context.shape[1], 3, device=x.device))
        positions = ids[key]
        kwargs: dict[str, Any] = {}
        if guidance_embeds:
            kwargs["guidance"] = added[:, -1].to(dtype)
        out = model(hidden_states=pack(xp).to(dtype), encoder_hidden_states=context.to(dtype),
                    pooled_projections=added[:, :-1].to(dtype), timestep=ms.timestep(sigma).to(dtype),
                    img_ids=positions[0], txt_ids=positions[1], return_dict=False, **kwargs)[0]
        out = unpack(out.float(), hp, wp)[..., :h, :w]
        return ms.calculate_denoised(sigma, out, x)

    return apply


def model_inputs(c: dict[str, Any], family: str, side: str) -> torch.Tensor:
    """The ``added`` vector of one conditioning entry for SD3 (pooled) or Flux (pooled, guidance)."""
    pooled = c.get("pooled_output")
    if not isinstance(pooled, torch.Tensor):
        name, which = ("an SD3", "CLIP-L + OpenCLIP-G") if family == "sd3" else ("a Flux", "CLIP-L")
        raise ValueError(f"input {side!r}: {name} model needs the pooled {which} text embedding (fix: encode the "
                         f"prompt with the checkpoint's CLIP or a CLIP loader of type {family!r})")
    pooled = pooled.reshape(pooled.shape[0], -1).float()
    if family == "sd3":
        return pooled
    guidance = c.get("guidance", FLUX_DEFAULT_GUIDANCE)
    guidance = FLUX_DEFAULT_GUIDANCE if guidance is None else float(guidance)
    return torch.cat([pooled, torch.full((pooled.shape[0], 1), guidance)], dim=1)
