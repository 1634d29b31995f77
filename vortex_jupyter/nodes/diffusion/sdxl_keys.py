"""SDXL's single-file key layout <-> diffusers/transformers names (issue 11, first family).

An original SDXL checkpoint (what ComfyUI's CheckpointLoaderSimple reads) holds four parts:

- ``model.diffusion_model.*``: the UNet in the ldm layout of ``ldm.py``, plus ``label_emb.0.0/2``
  (the size-and-pooled-text embedding, diffusers' ``add_embedding.linear_1/2``);
- ``conditioner.embedders.0.transformer.text_model.*``: CLIP-L, transformers names unchanged;
- ``conditioner.embedders.1.model.*``: OpenCLIP-G in open_clip's own names: one fused
  ``attn.in_proj_weight`` per layer (q, k, v stacked), ``ln_1/ln_2``, ``mlp.c_fc/c_proj``,
  ``token_embedding``, ``positional_embedding`` (a bare tensor), ``ln_final`` and
  ``text_projection`` stored as ``[hidden, projection]`` (used as ``x @ P``; transformers'
  Linear holds the transpose);
- ``first_stage_model.*``: the KL VAE, as for SD1.

Torch is used only through tensor methods, except ``torch.cat`` for the fused projection.
"""

from __future__ import annotations

from typing import Any

from . import ldm

CLIP_L_PREFIX = "conditioner.embedders.0.transformer."
CLIP_G_PREFIX = "conditioner.embedders.1.model."
#: The SDXL refiner's only text encoder, OpenCLIP-G, is its first embedder.
REFINER_G_PREFIX = "conditioner.embedders.0.model."

_LAYER = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "self_attn.out_proj": "attn.out_proj",
          "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}
_TOP = {"embeddings.token_embedding.weight": "token_embedding.weight",
        "embeddings.position_embedding.weight": "positional_embedding",
        "final_layer_norm.weight": "ln_final.weight", "final_layer_norm.bias": "ln_final.bias"}
_QKV = ("q_proj", "k_proj", "v_proj")
_G_PROBE = "transformer.resblocks.0.attn.in_proj_weight"


def _strip(key: str) -> str:
    return key[len("text_model."):] if key.startswith("text_model.") else key


def clip_g_to_open_clip(state: dict[str, Any]) -> dict[str, Any]:
    """A ``CLIPTextModelWithProjection`` state dict -> open_clip names (without prefix)."""
    import torch

    out: dict[str, Any] = {}
    fused: dict[tuple[str, str], dict[str, Any]] = {}
    for key, value in state.items():
        name = _strip(key)
        if name.endswith("position_ids"):
            continue
        if name == "text_projection.weight":
            out["text_projection"] = value.t().contiguous()
        elif name in _TOP:
            out[_TOP[name]] = value
        else:  # encoder.layers.N.<module>.<weight|bias>
            _, _, n, rest = name.split(".", 3)
            module, param = rest.rsplit(".", 1)
            if module.startswith("self_attn.") and module.split(".")[1] in _QKV:
                fused.setdefault((n, param), {})[module.split(".")[1]] = value
            else:
                out[f"transformer.resblocks.{n}.{_LAYER[module]}.{param}"] = value
    for (n, param), parts in fused.items():
        out[f"transformer.resblocks.{n}.attn.in_proj_{param}"] = torch.cat([parts[q] for q in _QKV])
    return out


def open_clip_to_clip_g(state: dict[str, Any]) -> dict[str, Any]:
    """open_clip names (without prefix) -> ``CLIPTextModelWithProjection`` names
    (``text_model.*`` and ``text_projection.weight``); unknown keys (``logit_scale``) dropped."""
    top = {v: k for k, v in _TOP.items()}
    layer = {v: k for k, v in _LAYER.items()}
    out: dict[str, Any] = {}
    for name, value in state.items():
        if name == "text_projection":
            out["text_projection.weight"] = value.t().contiguous()
        elif name in top:
            out["text_model." + top[name]] = value
        elif name.startswith("transformer.resblocks."):
            _, _, n, rest = name.split(".", 3)
            module, param = rest.rsplit(".", 1)
            if module == "attn" and param.startswith("in_proj_"):
                for q, chunk in zip(_QKV, value.chunk(3, 0), strict=True):
                    out[f"text_model.encoder.layers.{n}.self_attn.{q}.{param[len('in_proj_'):]}"] = chunk
            elif module in layer:
                out[f"text_model.encoder.layers.{n}.{layer[module]}.{param}"] = value
    return out


def sdxl_to_single_file(parts: dict[str, Any], configs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """diffusers state dicts (``unet``, ``vae``, ``text_encoder``, ``text_encoder_2``) -> one
    state dict in SDXL's original layout."""
    state: dict[str, Any] = {}
    state.update(ldm.unet_to_ldm(parts["unet"], configs["unet"]))
    state.update(ldm.vae_to_ldm(parts["vae"], configs["vae"]))
    state.update({f"{CLIP_L_PREFIX}text_model.{_strip(k)}": v
                  for k, v in parts["text_encoder"].items() if not k.endswith("position_ids")})
    state.update({CLIP_G_PREFIX + k: v for k, v in clip_g_to_open_clip(parts["text_encoder_2"]).items()})
    return {k: v.detach().contiguous() for k, v in state.items()}


PREFIXES = {"unet": ldm.UNET_PREFIX, "vae": ldm.VAE_PREFIX, "text_encoder": CLIP_L_PREFIX,
            "text_encoder_2": CLIP_G_PREFIX}
REFINER_PREFIXES = {"unet": ldm.UNET_PREFIX, "vae": ldm.VAE_PREFIX, "text_encoder_2": REFINER_G_PREFIX}


def refiner_to_single_file(parts: dict[str, Any], configs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The refiner's diffusers state dicts (``unet``, ``vae``, ``text_encoder_2``) -> its original
    layout (``sd_xl_refiner_1.0.safetensors``: G under ``conditioner.embedders.0.model.``)."""
    state: dict[str, Any] = {}
    state.update(ldm.unet_to_ldm(parts["unet"], configs["unet"]))
    state.update(ldm.vae_to_ldm(parts["vae"], configs["vae"]))
    state.update({REFINER_G_PREFIX + k: v for k, v in clip_g_to_open_clip(parts["text_encoder_2"]).items()})
    return {k: v.detach().contiguous() for k, v in state.items()}


def part_from_single_file(part: str, state: dict[str, Any], configs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One component's diffusers state dict out of an SDXL single-file state dict (CLIP-L named
    as ``CLIPTextModel`` names it in transformers 5: without ``text_model.``)."""
    prefix = PREFIXES[part] if part != "text_encoder_2" or CLIP_G_PREFIX + _G_PROBE in state else REFINER_G_PREFIX
    own = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if part == "text_encoder":
        return {_strip(k): v for k, v in own.items() if not k.endswith("position_ids")}
    if part == "text_encoder_2":
        return open_clip_to_clip_g(own)
    names = (ldm.unet_names if part == "unet" else ldm.vae_names)(_diffusers_keys(configs[part], part), configs[part])
    return ldm.from_ldm(own, names)[0]


def sdxl_from_single_file(state: dict[str, Any], configs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The inverse of ``sdxl_to_single_file``: diffusers state dicts per component."""
    return {part: part_from_single_file(part, state, configs) for part in PREFIXES}


def _diffusers_keys(config: dict[str, Any], kind: str) -> list[str]:
    """Every parameter name of the diffusers module ``config`` describes (built on the meta
    device: no memory, no init)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel

    cls: Any = UNet2DConditionModel if kind == "unet" else AutoencoderKL
    with torch.device("meta"):
        module = cls(**config)
    return list(module.state_dict())
