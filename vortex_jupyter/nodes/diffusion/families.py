"""What a model file is, from its tensor names and shapes: layout, prefix and model family.

Torch-free. ``read_header`` parses a ``.safetensors`` header (8-byte length + JSON) without
reading any tensor, so validation can tell "this is an SDXL UNet" before a run starts; the
loaders (``split.py``) call the same ``inspect_*`` functions on the shapes of a loaded state
dict (pickles have no header).

What we load: the SD1 family (a 4-channel UNet with cross-attention on a 768-wide CLIP-L text
encoder, the 4-channel KL VAE), in any of these layouts, as ComfyUI does (SD3 / Flux
transformers and text encoders: ``flow_families.py``; their 16-channel VAEs: here):

- UNet: ldm names (``input_blocks.*``) with or without ``model.diffusion_model.`` (a full
  checkpoint works too, as in ComfyUI), or diffusers names (``down_blocks.*``, ``conv_in``);
- VAE: ldm names (``encoder.down.*``) with or without ``first_stage_model.``, or diffusers names
  (``decoder.up_blocks.*``);
- text encoder: transformers CLIP names (``text_model.*`` or without it) under any prefix
  (``cond_stage_model.transformer.``, ``clip_l.transformer.``, ...).

``inspect_checkpoint`` names the family of a full checkpoint: "sd1", or "sdxl" (issue 11's
first family: a UNet with ``label_emb`` size embeddings whose cross-attention is as wide as
CLIP-L + OpenCLIP-G, 768 + 1280 = 2048 in the real model; our files also say so in metadata).
Recognising SDXL does not make the split loaders run it yet: ``inspect_unet`` still refuses it.

Everything else (SD2's 1024-wide or SDXL's 2048-wide cross-attention, other DiTs, video VAEs,
LLM text encoders, ...) is a ``ModelError`` that names what the file looks like and says it
names a family we do not run yet. Files written by us carry
their exact diffusers config in the ``vortex_configs`` metadata; without it SD1.5's is assumed.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import ModelError

Shapes = dict[str, tuple[int, ...]]

_MAX_HEADER = 100 * 1024 * 1024
NEEDS_FAMILIES = ("vortex-jupyter's loaders run SD1, SDXL (base and refiner), SD3 and Flux files; other model "
                  "families are not supported yet")


@dataclass(frozen=True)
class Layout:
    """How a file names one component: ``kind`` is "ldm", "diffusers" or "transformers"."""

    kind: str
    prefix: str
    config: dict[str, Any] = field(default_factory=dict)  # from vortex_configs, else {}


def read_header(path: Path) -> tuple[Shapes, dict[str, str]]:
    """Tensor shapes and metadata of a ``.safetensors`` file, reading only its header."""
    try:
        with path.open("rb") as f:
            head = f.read(8)
            size = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
            if not 2 <= size <= _MAX_HEADER or size > path.stat().st_size - 8:
                raise ValueError(f"header length {size} does not fit the file")
            header = json.loads(f.read(size))
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
        meta = header.pop("__metadata__", None) or {}
        shapes = {k: tuple(int(d) for d in v["shape"]) for k, v in header.items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{path.name!r} is not a valid safetensors file: {exc}",
                         hint="the file is corrupt or truncated; download or copy it again") from exc
    return shapes, {str(k): str(v) for k, v in meta.items()}


def vortex_config(meta: dict[str, str], part: str) -> dict[str, Any]:
    """The diffusers config our writer stored for ``part`` ("unet", "vae", "text_encoder")."""
    raw = meta.get("vortex_configs")
    if raw is None:
        return {}
    try:
        cfg = json.loads(raw).get(part, {})
    except (ValueError, AttributeError) as exc:
        raise ModelError(f"metadata 'vortex_configs' is not a JSON object: {exc}") from exc
    return dict(cfg) if isinstance(cfg, dict) else {}


def _wrong(name: str, what: str, looks: str, fix: str) -> ModelError:
    return ModelError(f"{what} {name!r} {looks}; {NEEDS_FAMILIES}", hint=fix)


# ----------------------------------------------------------------------------- UNet

_UNET_OTHERS = (("double_blocks.", "a Flux-style transformer"), ("joint_blocks.", "an SD3 MMDiT"),
                ("x_embedder.", "a DiT transformer (PixArt/SD3/Flux family)"),
                ("patch_embedding.", "a video transformer (Wan family)"),
                ("transformer_blocks.", "a DiT transformer"), ("img_in.", "a transformer (Flux/Qwen family)"))


def _common_prefix(shapes: Shapes, marker: str) -> str | None:
    for key in shapes:
        at = key.find(marker)
        if at >= 0 and (at == 0 or key[at - 1] == "."):
            return key[:at]
    return None


def inspect_unet(name: str, shapes: Shapes, meta: dict[str, str]) -> Layout:
    """The layout of an SD1 UNet in ``shapes``, or ModelError saying what else it is."""
    what = "diffusion model"
    prefix = _common_prefix(shapes, "input_blocks.0.0.weight")
    if prefix is not None:
        layout = Layout("ldm", prefix, vortex_config(meta, "unet"))
        context = _first(shapes, prefix, r"(?:input|middle|output)_blocks?\..*attn2\.to_k\.weight")
        adm = any(k.startswith(prefix + "label_emb.") for k in shapes)
        conv_in = shapes[prefix + "input_blocks.0.0.weight"]
    elif "conv_in.weight" in shapes and any(k.startswith("down_blocks.") for k in shapes):
        layout = Layout("diffusers", "", vortex_config(meta, "unet"))
        context = _first(shapes, "", r"(?:down|mid|up)_blocks?\..*attn2\.to_k\.weight")
        adm = any(k.startswith("add_embedding.") for k in shapes)
        conv_in = shapes["conv_in.weight"]
    else:
        looks = next((desc for marker, desc in _UNET_OTHERS if _common_prefix(shapes, marker) is not None),
                     "an unknown model (no UNet keys: input_blocks.* or down_blocks.*)")
        raise _wrong(name, what, f"is {looks}, not an SD1 UNet", "use an SD1/SD1.5 UNet, or a checkpoint "
                     "with CheckpointLoaderSimple")
    _check_unet_shapes(name, layout, context, adm, conv_in)
    return layout


def _first(shapes: Shapes, prefix: str, pattern: str) -> tuple[int, ...] | None:
    rx = re.compile(re.escape(prefix) + pattern)
    return next((s for k, s in shapes.items() if rx.fullmatch(k)), None)


_CONTEXT_FAMILY = {1024: "SD2.x", 2048: "SDXL", 1280: "SDXL refiner"}
#: Cross-attention widths of SDXL base and refiner UNets (with class embeddings they load).
SDXL_UNET_WIDTHS = {2048: "sdxl", 1280: "sdxl_refiner"}


def _check_unet_shapes(name: str, layout: Layout, context: tuple[int, ...] | None, adm: bool,
                       conv_in: tuple[int, ...]) -> None:
    want = int(layout.config.get("cross_attention_dim", 768))
    width = context[1] if context is not None and len(context) == 2 else None
    fix = "use an SD1/SD1.5 UNet with this node for now"
    if adm:  # SDXL conditions on image size through class ("ADM") embeddings
        if width in SDXL_UNET_WIDTHS or layout.config.get("addition_embed_type") == "text_time":
            return  # an SDXL base (2048) or refiner (1280) UNet: UNETLoader loads it (split.py)
        raise _wrong(name, "diffusion model", f"is a UNet with class embeddings and cross-attention width "
                     f"{width} (not SDXL's 2048 or its refiner's 1280)", fix)
    if width is not None and width != want:
        known = _CONTEXT_FAMILY.get(width)
        looks = (f"is a UNet of the {known} family (cross-attention width {width}; SD1 uses {want})" if known
                 else f"is a UNet with cross-attention width {width}, not SD1's {want} (files without our "
                      "'vortex_configs' metadata are read as SD1.5)")
        raise _wrong(name, "diffusion model", looks, fix)
    channels = conv_in[1] if len(conv_in) == 4 else None
    if channels != int(layout.config.get("in_channels", 4)):
        raise _wrong(name, "diffusion model", f"takes {channels} input channels (an inpainting or "
                     "instruct UNet; plain SD1 takes 4)", "use a plain SD1/SD1.5 UNet")


# ----------------------------------------------------------------------------- VAE


def inspect_vae(name: str, shapes: Shapes, meta: dict[str, str]) -> Layout:
    """The layout of a KL VAE with 4 latent channels (SD1) or 16 (SD3 / Flux), or ModelError."""
    cfg = vortex_config(meta, "vae")
    if "decoder.up_blocks.0.resnets.0.norm1.weight" in shapes:  # ComfyUI's diffusers test
        layout, conv = Layout("diffusers", "", cfg), shapes.get("decoder.conv_in.weight")
    else:
        prefix = _common_prefix(shapes, "decoder.conv_in.weight")
        if prefix is None or not any(k.startswith(prefix + "decoder.up.") for k in shapes):
            looks = ("a tiny autoencoder (TAESD)" if any("taesd" in k for k in shapes)
                     else "an unknown model (no KL VAE keys: decoder.up.* or decoder.up_blocks.*)")
            raise _wrong(name, "VAE", f"is {looks}", "use an SD1/SD1.5 VAE (e.g. vae-ft-mse-840000)")
        layout, conv = Layout("ldm", prefix, cfg), shapes[prefix + "decoder.conv_in.weight"]
    wants = (int(cfg["latent_channels"]),) if "latent_channels" in cfg else (4, 16)
    if conv is None or len(conv) != 4 or conv[1] not in wants:
        dims = "a video VAE (3-D convolutions)" if conv is not None and len(conv) == 5 else \
            f"a VAE with {conv[1] if conv else '?'} latent channels (SD1 uses 4, SD3 and Flux 16)"
        raise _wrong(name, "VAE", f"is {dims}", "use an SD1/SD1.5 VAE, or SD3's / Flux's")
    return layout


# ----------------------------------------------------------------------------- text encoder

_TE_OTHERS = (("encoder.block.0.layer.0.SelfAttention.q.weight", "a T5 text encoder (SD3/Flux/Wan/...)"),
              ("shared.weight", "a T5 text encoder (SD3/Flux/Wan/...)"),
              ("embed_tokens.weight", "an LLM text encoder (Qwen/Llama/Gemma/...)"),
              ("transformer.resblocks.0.attn.in_proj_weight", "an open_clip text encoder (SD2/SDXL CLIP-G)"))


def inspect_clip(name: str, shapes: Shapes, meta: dict[str, str]) -> Layout:
    """The layout of an SD1 CLIP-L text encoder (prefix up to ``embeddings.``), or ModelError."""
    cfg = vortex_config(meta, "text_encoder")
    token = _common_prefix(shapes, "embeddings.token_embedding.weight")
    if token is None:
        looks = next((desc for marker, desc in _TE_OTHERS if _common_prefix(shapes, marker) is not None),
                     "an unknown model (no CLIP text encoder keys)")
        raise _wrong(name, "text encoder", f"is {looks}", "use an SD1 CLIP-L file (e.g. clip_l.safetensors) with "
                     "type 'stable_diffusion'; a T5-XXL or OpenCLIP-G file alone loads with type 'sd3' (SD3), "
                     "and DualCLIPLoader type 'flux' takes CLIP-L + T5-XXL")
    width = shapes[token + "embeddings.token_embedding.weight"][1]
    layers = len({k[len(token):].split(".")[2] for k in shapes if k.startswith(token + "encoder.layers.")})
    want_width, want_layers = int(cfg.get("hidden_size", 768)), int(cfg.get("num_hidden_layers", 12))
    if (width, layers) != (want_width, want_layers):
        family = "CLIP-G (SDXL/SD3)" if width == 1280 else "CLIP-H (SD2)" if width == 1024 else f"{width}-wide CLIP"
        raise _wrong(name, "text encoder", f"is a {family} text encoder ({layers} layers of width {width}; "
                     f"SD1's CLIP-L has {want_layers} of {want_width})", "use an SD1 CLIP-L file with type "
                     "'stable_diffusion'; OpenCLIP-G loads with type 'sd3', or DualCLIPLoader type 'sdxl'")
    return Layout("transformers", token, cfg)


# ----------------------------------------------------------------------------- whole checkpoints

_SDXL_CONTEXT = 2048  # CLIP-L 768 + OpenCLIP-G 1280
_OPEN_CLIP = "transformer.resblocks.0.attn.in_proj_weight"


@dataclass(frozen=True)
class Family:
    """What a full checkpoint is: ``family`` ("sd1" or "sdxl") and the ``parts`` it holds, of
    "unet", "clip_l", "clip_g" (open_clip layout) and "vae"."""

    family: str
    parts: tuple[str, ...]


def _parts(shapes: Shapes) -> tuple[str, ...]:
    found = {"unet": _common_prefix(shapes, "input_blocks.0.0.weight") is not None or "conv_in.weight" in shapes,
             "clip_l": _common_prefix(shapes, "embeddings.token_embedding.weight") is not None,
             "clip_g": _common_prefix(shapes, _OPEN_CLIP) is not None,
             "vae": _common_prefix(shapes, "decoder.conv_in.weight") is not None}
    return tuple(part for part, here in found.items() if here)


def _encoder_widths(shapes: Shapes) -> int | None:
    """CLIP-L width + open_clip width, when the file holds both encoders."""
    token = _common_prefix(shapes, "embeddings.token_embedding.weight")
    g_token = _common_prefix(shapes, _OPEN_CLIP)
    if token is None or g_token is None or g_token + "token_embedding.weight" not in shapes:
        return None
    return shapes[token + "embeddings.token_embedding.weight"][1] + shapes[g_token + "token_embedding.weight"][1]


def is_sdxl_unet(shapes: Shapes, meta: dict[str, str]) -> bool:
    """An SDXL (base) UNet: size embeddings (``label_emb``/``add_embedding``) and cross-attention
    as wide as SDXL's two encoders (2048, or the widths of the encoders in the same file)."""
    prefix = _common_prefix(shapes, "input_blocks.0.0.weight")
    if prefix is not None:
        adm = prefix + "label_emb.0.0.weight" in shapes
        context = _first(shapes, prefix, r"(?:input|middle|output)_blocks?\..*attn2\.to_k\.weight")
    else:
        adm = "add_embedding.linear_1.weight" in shapes
        context = _first(shapes, "", r"(?:down|mid|up)_blocks?\..*attn2\.to_k\.weight")
    if not adm or context is None or len(context) != 2:
        return False
    declared = _declared_family(meta)
    return declared == "sdxl" or context[1] in (_SDXL_CONTEXT, _encoder_widths(shapes))


def _declared_family(meta: dict[str, str]) -> str | None:
    try:
        family = json.loads(meta.get("vortex_configs", "{}")).get("family")
    except (ValueError, AttributeError):
        return None
    return family if isinstance(family, str) else None


_CKPT_UNET = "model.diffusion_model."  # a full checkpoint's denoiser (SD3 / Flux transformers too)


def inspect_checkpoint(name: str, shapes: Shapes, meta: dict[str, str]) -> Family:
    """The family of a full checkpoint, from its tensor names and shapes (a header is enough),
    or the ModelError ``inspect_unet`` gives for files of other families.

    >>> inspect_checkpoint("x", *read_header(Path("vortex-tiny-sdxl.safetensors")))  # doctest: +SKIP
    Family(family='sdxl', parts=('unet', 'clip_l', 'clip_g', 'vae'))
    """
    parts = _parts(shapes)
    if is_sdxl_unet(shapes, meta):
        return Family("sdxl", parts)
    flow = ("sd3" if f"{_CKPT_UNET}joint_blocks.0.x_block.attn.qkv.weight" in shapes
            else "flux" if f"{_CKPT_UNET}double_blocks.0.img_attn.qkv.weight" in shapes else None)
    if flow is not None:  # the transformer, and T5 when the file carries it
        t5 = any(k.startswith("text_encoders.t5xxl.") for k in shapes)
        return Family(flow, ("unet", *parts, *(("t5",) if t5 else ())))
    prefix = _common_prefix(shapes, "input_blocks.0.0.weight")
    if prefix is not None and prefix + "label_emb.0.0.weight" in shapes:
        context = _first(shapes, prefix, r"(?:input|middle|output)_blocks?\..*attn2\.to_k\.weight")
        if context is not None and len(context) == 2 and context[1] == 1280:
            return Family("sdxl_refiner", (*parts, *(("clip_g",) if "clip_g" not in parts and any(
                k.startswith("conditioner.embedders.0.model.") for k in shapes) else ())))
    inspect_unet(name, shapes, meta)  # raises for SD2, DiTs, video models, ... with what it looks like
    return Family("sd1", parts)
