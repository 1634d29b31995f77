"""What an SD3 / Flux split file is, from its tensor names and shapes (a header is enough).

Torch-free: validation runs these in the kernel. ``split.py`` and ``flow_split.py`` ask:

- ``transformer``: is this diffusion-model file an SD3 MMDiT or a Flux transformer, in the
  original layout (Stability's / Black Forest Labs' names, bare or under
  ``model.diffusion_model.``, as ComfyUI's ``unet_prefix_from_state_dict`` strips) or in
  diffusers' names (ComfyUI's ``convert_diffusers_mmdit`` tests: ``x_embedder.weight`` for Flux,
  ``pos_embed.proj.weight`` with joint attention for SD3)? Its diffusers config comes from our
  ``vortex_configs`` metadata, else from the shapes (``flow_keys``);
- ``text_encoder``: which encoder a text-encoder file holds: CLIP-L, OpenCLIP-G (transformers'
  names, or open_clip's, which ComfyUI converts too) or T5-XXL. ComfyUI's ``detect_te_model``
  decides by depth: a 31st CLIP layer is OpenCLIP-G, a 23rd CLIP-H (SD2), fewer CLIP-L; a
  gated T5 whose 24th block is 4096 wide T5-XXL. Our tiny files are too small for that and say
  their role in metadata instead (``vortex_configs`` with one of the keys of ``CONFIG_KEY``);
- ``vae_config``: the scaling of a 16-channel VAE. Shapes cannot tell SD3's VAE from Flux's,
  and ComfyUI needs not to (its latents are unscaled; the MODEL's latent format scales them).
  Ours scale in the VAE, so the file's ``vortex_configs`` decides, else its name: one naming
  "sd3" gets SD3's factors (1.5305, shift 0.0609), any other Flux's (0.3611, shift 0.1159), the
  16-channel VAE most often loaded on its own (``ae.safetensors``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ...errors import ModelError
from .families import Shapes, _common_prefix

ROLES = {"clip_l": "CLIP-L", "clip_g": "OpenCLIP-G", "t5": "T5-XXL"}
#: The ``vortex_configs`` key that names each role (the keys of ``flow_files``' checkpoints).
CONFIG_KEY = {"clip_l": "text_encoder", "clip_g": "text_encoder_2", "t5": "t5"}
EXAMPLES = {"clip_l": "clip_l.safetensors", "clip_g": "clip_g.safetensors", "t5": "t5xxl_fp16.safetensors"}
CKPT_PREFIX = "model.diffusion_model."
_CLIP_TOKEN = "embeddings.token_embedding.weight"
_OPEN_CLIP = "transformer.resblocks.0.attn.in_proj_weight"
_T5 = "encoder.block.0.layer.0.SelfAttention.q.weight"
SD3_VAE, FLUX_VAE = (1.5305, 0.0609), (0.3611, 0.1159)


def configs_of(meta: dict[str, str]) -> dict[str, Any]:
    """The file's ``vortex_configs`` metadata as a dict ({} without it)."""
    raw = meta.get("vortex_configs")
    if raw is None:
        return {}
    try:
        configs = json.loads(raw)
    except ValueError as exc:
        raise ModelError(f"metadata 'vortex_configs' is not JSON: {exc}") from exc
    return configs if isinstance(configs, dict) else {}


# ----------------------------------------------------------------------------- transformers


@dataclass(frozen=True)
class Transformer:
    """An SD3 / Flux transformer file: ``layout`` "original" or "diffusers", names under ``prefix``."""

    family: str
    layout: str
    prefix: str
    config: dict[str, Any] = field(default_factory=dict)


def transformer(name: str, shapes: Shapes, meta: dict[str, str]) -> Transformer | None:
    """The file's SD3 / Flux transformer, or None when it holds neither (then it may be a UNet)."""
    from . import flow_keys

    prefix = CKPT_PREFIX if any(k.startswith(CKPT_PREFIX) for k in shapes) else ""
    if f"{prefix}joint_blocks.0.x_block.attn.qkv.weight" in shapes:
        found = Transformer("sd3", "original", prefix)
    elif f"{prefix}img_in.weight" in shapes and any(k.startswith((f"{prefix}double_blocks.", f"{prefix}single_blocks."))
                                                   for k in shapes):
        found = Transformer("flux", "original", prefix)
    elif "x_embedder.weight" in shapes and "context_embedder.weight" in shapes:
        found = Transformer("flux", "diffusers", "")
    elif "pos_embed.proj.weight" in shapes and "transformer_blocks.0.attn.add_q_proj.weight" in shapes:
        found = Transformer("sd3", "diffusers", "")
    else:
        return None
    config = configs_of(meta).get("transformer")
    if not isinstance(config, dict):
        original = shapes
        if found.layout == "diffusers":
            convert = flow_keys.sd3_shapes_from_diffusers if found.family == "sd3" else flow_keys.flux_shapes_from_diffusers
            original = convert(shapes)
        infer = flow_keys.sd3_config_from_original if found.family == "sd3" else flow_keys.flux_config_from_original
        try:
            config = infer(original, prefix=found.prefix)
        except ModelError as exc:
            what = "an SD3 MMDiT" if found.family == "sd3" else "a Flux transformer"
            raise ModelError(f"diffusion model {name!r} looks like {what} but is not a complete one: {exc.message}",
                             hint="the file is truncated or of another architecture; download it again") from exc
    return Transformer(found.family, found.layout, found.prefix, dict(config))


# ----------------------------------------------------------------------------- text encoders


@dataclass(frozen=True)
class TextEncoder:
    """One text encoder in a file: its ``role`` (a key of ``ROLES``), ``layout`` ("transformers",
    "open_clip" or "t5"), the ``prefix`` of its names and its config; ``builtin_tokenizer``: our
    tiny files, which use the package's offline T5 tokenizer."""

    role: str
    layout: str
    prefix: str
    config: dict[str, Any]
    builtin_tokenizer: bool = False


def _prefixes(shapes: Shapes, marker: str) -> list[str]:
    return sorted({k[:-len(marker)] for k in shapes if k.endswith(marker) and (k == marker or k[-len(marker) - 1] == ".")})


def _found(shapes: Shapes) -> list[tuple[str, str]]:
    """(layout, prefix) of every text encoder in the file. A CLIP's prefix stops before
    ``text_model.`` so that ``text_projection.weight`` sits under it too."""
    out = [("transformers", p.removesuffix("text_model.")) for p in _prefixes(shapes, _CLIP_TOKEN)]
    out += [("open_clip", p) for p in _prefixes(shapes, _OPEN_CLIP)]
    return out + [("t5", p) for p in _prefixes(shapes, _T5)]


def text_encoder(field_name: str, name: str, shapes: Shapes, meta: dict[str, str]) -> TextEncoder:
    """The one text encoder ``name`` holds, or a ModelError that says what the file is instead."""
    found = _found(shapes)
    if len(found) != 1:
        raise _not_one(field_name, name, shapes, meta, len(found))
    layout, prefix = found[0]
    configs = configs_of(meta)
    declared = [role for role, key in CONFIG_KEY.items() if isinstance(configs.get(key), dict)]
    builtin = configs.get("tokenizers") == "builtin"
    if len(declared) == 1 and (declared[0] == "t5") == (layout == "t5"):
        return TextEncoder(declared[0], layout, prefix, dict(configs[CONFIG_KEY[declared[0]]]), builtin)
    if layout == "t5":
        return TextEncoder("t5", layout, prefix, _t5_config(field_name, name, shapes, prefix), builtin)
    return _clip(field_name, name, shapes, layout, prefix)


def _clip(field_name: str, name: str, shapes: Shapes, layout: str, prefix: str) -> TextEncoder:
    from .flow_files import real_text_config

    if layout == "open_clip":
        layers = {k[len(prefix):].split(".")[2] for k in shapes if k.startswith(prefix + "transformer.resblocks.")}
    else:
        layers = {k.split("encoder.layers.", 1)[1].split(".")[0] for k in shapes
                  if k.startswith(prefix) and "encoder.layers." in k}
    depth = len(layers)
    if 23 <= depth < 31:  # ComfyUI's CLIP-H test: a 23rd layer but no 31st
        raise ModelError(f"{field_name} {name!r} is a CLIP-H text encoder (SD2, {depth} layers), which no SD3 / "
                         "Flux / SDXL CLIP uses", hint=f"pick a {ROLES['clip_l']} or {ROLES['clip_g']} file")
    role = "clip_g" if depth >= 31 else "clip_l"
    if role == "clip_l" and layout == "open_clip":
        raise ModelError(f"{field_name} {name!r} is an open_clip text encoder of {depth} layers, not OpenCLIP-G",
                         hint="pick a CLIP-L file in transformers' names, or an OpenCLIP-G file")
    config = real_text_config(CONFIG_KEY[role])
    token = shapes.get(prefix + ("token_embedding.weight" if layout == "open_clip" else "text_model." + _CLIP_TOKEN),
                       shapes.get(prefix + _CLIP_TOKEN))
    width = token[1] if token is not None and len(token) == 2 else None
    if width != config["hidden_size"]:
        raise ModelError(f"{field_name} {name!r} is a {width}-wide CLIP of {depth} layers; a real "
                         f"{ROLES[role]} is {config['hidden_size']} wide (files without our 'vortex_configs' "
                         "metadata are read as the real encoders)", hint=f"pick a {ROLES[role]} file, e.g. "
                         f"{EXAMPLES[role]!r}")
    return TextEncoder(role, layout, prefix, config)


def _t5_config(field_name: str, name: str, shapes: Shapes, prefix: str) -> dict[str, Any]:
    from .flow_files import real_text_config

    width = shapes[prefix + _T5][1]
    gated = any(k.startswith(prefix) and k.endswith("DenseReluDense.wi_1.weight") for k in shapes)
    looks = (None if gated and width == 4096 else "an old T5-XXL without gated feed-forward (Cosmos)"
             if width == 4096 else "T5-XL (AuraFlow)" if width == 2048 else f"a {width}-wide T5 (e.g. T5-base, "
             "Stable Audio; umT5 for Wan)")
    if looks is not None:
        raise ModelError(f"{field_name} {name!r} is {looks}, not the T5-XXL v1.1 encoder SD3 and Flux use",
                         hint=f"pick a T5-XXL file, e.g. {EXAMPLES['t5']!r} (fp16 or fp8)")
    blocks = {k[len(prefix):].split(".")[2] for k in shapes if k.startswith(prefix + "encoder.block.")}
    return real_text_config("t5", len(blocks))


def _not_one(field_name: str, name: str, shapes: Shapes, meta: dict[str, str], count: int) -> ModelError:
    if count > 1:
        return ModelError(f"{field_name} {name!r} holds {count} text encoders (a whole checkpoint?); a CLIP "
                          "loader reads one encoder per file", hint="load a checkpoint with CheckpointLoaderSimple, "
                          "or pick single text-encoder files")
    unet = transformer(name, shapes, meta) if any("blocks." in k for k in shapes) else None
    if unet is not None or _common_prefix(shapes, "input_blocks.0.0.weight") is not None:
        looks = "an SD3 MMDiT" if unet and unet.family == "sd3" else "a Flux transformer" if unet else "a UNet"
        return ModelError(f"{field_name} {name!r} is a diffusion model ({looks}), not a text encoder",
                          hint="load it with UNETLoader (unet_name, from the diffusion_models folder), and pick "
                               "text encoder files here")
    if _common_prefix(shapes, "decoder.conv_in.weight") is not None:
        return ModelError(f"{field_name} {name!r} is a VAE, not a text encoder",
                          hint="load it with VAELoader (vae_name), and pick text encoder files here")
    from .families import _TE_OTHERS

    looks = next((desc for marker, desc in _TE_OTHERS if _common_prefix(shapes, marker) is not None),
                 "an unknown model (no CLIP or T5 text encoder keys)")
    return ModelError(f"{field_name} {name!r} is {looks}", hint="pick a CLIP-L, OpenCLIP-G or T5-XXL file")


# ----------------------------------------------------------------------------- 16-channel VAEs


def vae_config(name: str, meta: dict[str, str]) -> dict[str, Any]:
    """The diffusers config of a 16-channel VAE file without its own (module docstring: the
    family from metadata, else from the name; Flux's scaling by default)."""
    from .flow_files import real_vae_config

    declared = configs_of(meta).get("family")
    family = declared if declared in ("sd3", "flux") else "sd3" if "sd3" in name.lower() else "flux"
    return real_vae_config(str(family))
