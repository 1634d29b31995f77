"""Diffusers -> original Stable Diffusion ("ldm") key layout, for writing single-file checkpoints.

diffusers can READ original SD checkpoints (``from_single_file``) but ships no writer; the
package needs one so the single-file path is tested on a real file that round-trips to the
same weights as the diffusers folder. The mapping below is the SD1 layout:

- UNet (``model.diffusion_model.``): ``input_blocks.N`` = conv_in, then per down block
  ``layers_per_block`` (resnet[, attention]) entries and one downsampler; ``middle_block.0/1/2``
  = resnet, attention, resnet; ``output_blocks.N`` = per up block ``layers_per_block + 1``
  entries, the last one also holding the upsampler (after the attention, if any). SDXL's
  size/pooled-text embedding (diffusers ``add_embedding.linear_1/2``) is ``label_emb.0.0/2``.
- VAE (``first_stage_model.``): ``encoder.down.B.block.L``; the decoder's ``up`` list is in
  reverse order of diffusers' ``up_blocks``; mid attention uses 1x1 convs (q/k/v/proj_out).
- CLIP (``cond_stage_model.transformer.``): the transformers names, unchanged.

Torch is used only through tensor methods of the values passed in.
"""

from __future__ import annotations

from typing import Any

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."

_UNET_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
                "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
_VAE_RESNET = {"conv_shortcut": "nin_shortcut"}
_VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _rename(rest: str, table: dict[str, str]) -> str:
    for old, new in table.items():
        if rest == old or rest.startswith(old + "."):
            return new + rest[len(old):]
    return rest


def _unet_block_prefixes(cfg: dict[str, Any]) -> dict[str, str]:
    """diffusers module prefix -> ldm module prefix for every resnet/attention/sampler."""
    layers = int(cfg["layers_per_block"])
    down = list(cfg["down_block_types"])
    up = list(cfg["up_block_types"])
    out: dict[str, str] = {"conv_in": "input_blocks.0.0", "time_embedding.linear_1": "time_embed.0",
                           "time_embedding.linear_2": "time_embed.2", "conv_norm_out": "out.0",
                           "conv_out": "out.2", "mid_block.resnets.0": "middle_block.0",
                           "mid_block.attentions.0": "middle_block.1",
                           "mid_block.resnets.1": "middle_block.2",
                           "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2"}
    for b, kind in enumerate(down):
        for j in range(layers):
            n = 1 + b * (layers + 1) + j
            out[f"down_blocks.{b}.resnets.{j}"] = f"input_blocks.{n}.0"
            if "CrossAttn" in kind:
                out[f"down_blocks.{b}.attentions.{j}"] = f"input_blocks.{n}.1"
        if b < len(down) - 1:
            out[f"down_blocks.{b}.downsamplers.0.conv"] = f"input_blocks.{1 + b * (layers + 1) + layers}.0.op"
    for b, kind in enumerate(up):
        attn = "CrossAttn" in kind
        for j in range(layers + 1):
            n = b * (layers + 1) + j
            out[f"up_blocks.{b}.resnets.{j}"] = f"output_blocks.{n}.0"
            if attn:
                out[f"up_blocks.{b}.attentions.{j}"] = f"output_blocks.{n}.1"
        if b < len(up) - 1:
            last = b * (layers + 1) + layers
            out[f"up_blocks.{b}.upsamplers.0.conv"] = f"output_blocks.{last}.{2 if attn else 1}.conv"
    return out


def _map_key(key: str, prefixes: dict[str, str]) -> tuple[str, str]:
    """(ldm prefix, rest) for a diffusers key, by the longest matching module prefix."""
    best = max((p for p in prefixes if key.startswith(p + ".")), key=len, default=None)
    if best is None:
        raise KeyError(f"no ldm mapping for diffusers key {key!r}")
    return prefixes[best], key[len(best) + 1:]


def unet_names(keys: Any, cfg: dict[str, Any]) -> dict[str, str]:
    """diffusers UNet key -> its ldm name (without ``model.diffusion_model.``)."""
    prefixes = _unet_block_prefixes(cfg)
    out: dict[str, str] = {}
    for key in keys:
        target, rest = _map_key(key, prefixes)
        if ".resnets." in key or key.startswith("mid_block.resnets"):
            rest = _rename(rest, _UNET_RESNET)
        out[key] = f"{target}.{rest}"
    return out


def unet_to_ldm(state: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    names = unet_names(state, cfg)
    return {f"{UNET_PREFIX}{names[k]}": v for k, v in state.items()}


def _vae_prefixes(cfg: dict[str, Any]) -> dict[str, str]:
    n = len(cfg["block_out_channels"])
    layers = int(cfg["layers_per_block"])
    out: dict[str, str] = {}
    for side in ("encoder", "decoder"):
        for name in ("conv_in", "conv_out"):
            out[f"{side}.{name}"] = f"{side}.{name}"
        out[f"{side}.conv_norm_out"] = f"{side}.norm_out"
        out[f"{side}.mid_block.resnets.0"] = f"{side}.mid.block_1"
        out[f"{side}.mid_block.resnets.1"] = f"{side}.mid.block_2"
        out[f"{side}.mid_block.attentions.0"] = f"{side}.mid.attn_1"
    for b in range(n):
        for j in range(layers):
            out[f"encoder.down_blocks.{b}.resnets.{j}"] = f"encoder.down.{b}.block.{j}"
        out[f"encoder.down_blocks.{b}.downsamplers.0.conv"] = f"encoder.down.{b}.downsample.conv"
        for j in range(layers + 1):
            out[f"decoder.up_blocks.{b}.resnets.{j}"] = f"decoder.up.{n - 1 - b}.block.{j}"
        out[f"decoder.up_blocks.{b}.upsamplers.0.conv"] = f"decoder.up.{n - 1 - b}.upsample.conv"
    out["quant_conv"] = "quant_conv"
    out["post_quant_conv"] = "post_quant_conv"
    return out


def vae_names(keys: Any, cfg: dict[str, Any]) -> dict[str, str]:
    """diffusers VAE key -> its ldm name (without ``first_stage_model.``)."""
    prefixes = _vae_prefixes(cfg)
    out: dict[str, str] = {}
    for key in keys:
        target, rest = _map_key(key, prefixes)
        rest = _rename(rest, _VAE_ATTN if ".attn_1" in target else _VAE_RESNET)
        out[key] = f"{target}.{rest}"
    return out


def _is_attn_matrix(ldm_name: str) -> bool:
    """The mid-block attention projections: Linear in diffusers, 1x1 convs in ldm."""
    return ".attn_1." in ldm_name and ldm_name.endswith(".weight") and not ldm_name.endswith("norm.weight")


def vae_to_ldm(state: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    names = vae_names(state, cfg)
    out: dict[str, Any] = {}
    for key, value in state.items():
        name = names[key]
        if _is_attn_matrix(name) and value.ndim == 2:
            value = value.reshape(*value.shape, 1, 1)  # ldm uses 1x1 convs here
        out[f"{VAE_PREFIX}{name}"] = value
    return out


def from_ldm(state: dict[str, Any], names: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    """The inverse of ``unet_names``/``vae_names``: an ldm state dict (no prefix) renamed to
    diffusers keys, plus the ldm keys the model has no place for. VAE attention 1x1 conv
    weights become the Linear matrices diffusers uses."""
    to_diffusers = {v: k for k, v in names.items()}
    out: dict[str, Any] = {}
    unused: list[str] = []
    for name, value in state.items():
        key = to_diffusers.get(name)
        if key is None:
            unused.append(name)
            continue
        if _is_attn_matrix(name) and value.ndim == 4:
            value = value.reshape(value.shape[0], value.shape[1])
        out[key] = value
    return out, unused


def clip_to_ldm(state: dict[str, Any]) -> dict[str, Any]:
    """SD1.5's layout: ``cond_stage_model.transformer.text_model.*`` (transformers 5 drops the
    ``text_model.`` level from its own names; the file keeps it)."""
    return {f"{CLIP_PREFIX}text_model.{_strip_text_model(k)}": v
            for k, v in state.items() if not k.endswith("position_ids")}


def _strip_text_model(key: str) -> str:
    return key[len("text_model."):] if key.startswith("text_model.") else key


def clip_from_ldm(state: dict[str, Any], *, text_model_prefix: bool) -> dict[str, Any]:
    """The text encoder's weights out of a full checkpoint, named as the target model names
    them (with or without ``text_model.``; old SD1 files lack it too)."""
    out: dict[str, Any] = {}
    lead = "text_model." if text_model_prefix else ""
    for key, value in state.items():
        if key.startswith(CLIP_PREFIX) and not key.endswith("position_ids"):
            out[lead + _strip_text_model(key[len(CLIP_PREFIX):])] = value
    return out


def split_kind(state: dict[str, Any]) -> dict[str, int]:
    """How many keys a checkpoint has per component (to tell a full SD checkpoint apart)."""
    counts = {"unet": 0, "vae": 0, "clip": 0, "other": 0}
    for key in state:
        kind = ("unet" if key.startswith(UNET_PREFIX) else "vae" if key.startswith(VAE_PREFIX)
                else "clip" if key.startswith(CLIP_PREFIX) else "other")
        counts[kind] += 1
    return counts
