"""SD3 and Flux diffusers folders -> MODEL / CLIP / VAE handles.

``loaders._folder_handles`` sends a folder here when its ``model_index.json`` names a
``StableDiffusion3Pipeline`` or a ``FluxPipeline``. Every module is its own ``Component`` (the
transformer, each text encoder, the VAE), so the memory arbiter can hold and evict them part
by part. The handles:

- MODEL: the transformer as ``unet`` (the denoiser slot), ``family`` "sd3"/"flux" and a flow
  scheduler config (``flow_sampling.flow_config``): SD3 with the folder's shift (3.0); Flux dev
  (with a guidance embedding) with ModelSamplingFlux's default mu 1.15; Flux schnell (without)
  a plain flow model with shift 1, as ComfyUI's model configs choose;
- CLIP: ``kind`` "sd3" (CLIP-L, OpenCLIP-G, T5) or "flux" (CLIP-L, T5) with the T5 tokenizer;
- VAE: the 16-channel VAE with its scaling and shift factors.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...errors import ModelError
from ...workers.arbiter import MemoryArbiter
from .components import ClipHandle, Component, ModelHandle, VaeHandle, device_and_dtype, quiet_progress
from .flow_sampling import flow_config

PIPELINES = {"StableDiffusion3Pipeline": "sd3", "FluxPipeline": "flux"}


def folder_family(where: Path) -> str | None:
    """"sd3" / "flux" for a diffusers folder of those pipelines, else None."""
    try:
        index = json.loads((where / "model_index.json").read_text())
    except (OSError, ValueError):
        return None
    return PIPELINES.get(str(index.get("_class_name", "")))


def _read(where: Path, sub: str) -> dict[str, Any]:
    try:
        return dict(json.loads((where / sub / "config.json").read_text()))
    except (OSError, ValueError) as exc:
        raise ModelError(f"checkpoint folder {str(where)!r} has no readable {sub}/config.json: {exc}",
                         hint="the download is incomplete; fetch the folder again") from exc


def scheduler_for(family: str, transformer: dict[str, Any], scheduler: dict[str, Any] | None = None
                  ) -> dict[str, Any]:
    if family == "sd3":
        return flow_config("sd3", float((scheduler or {}).get("shift", 3.0)))
    if transformer.get("guidance_embeds", True):
        return flow_config("flux")
    return flow_config("flow", 1.0, 1.0)  # Flux schnell


def folder_handles(name: str, where: Path, family: str, arbiter: MemoryArbiter | None
                   ) -> tuple[ModelHandle, ClipHandle, VaeHandle]:
    from diffusers import AutoencoderKL, FluxTransformer2DModel, SD3Transformer2DModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer, T5EncoderModel

    from . import t5
    from .loaders import _load_module

    quiet_progress()
    src = str(where)
    kw: dict[str, Any] = {"local_files_only": True}
    t5_sub = "text_encoder_3" if family == "sd3" else "text_encoder_2"
    tok_sub = "tokenizer_3" if family == "sd3" else "tokenizer_2"
    try:
        tokenizer = CLIPTokenizer.from_pretrained(src, subfolder="tokenizer", **kw)
    except (OSError, ValueError) as exc:
        raise ModelError(f"checkpoint {name!r} ({src}) has no readable CLIP tokenizer: {exc}",
                         hint="the download is incomplete; fetch the folder again") from exc
    t5_tokenizer = t5.load_tokenizer(where / tok_sub)
    device, dtype = device_and_dtype(family)
    key = f"{src}|{device}|{dtype}"
    sizes = _sizes(where, dtype)

    def part(sub: str, cls: Any) -> Component:
        load: Callable[[], Any] = lambda: _load_module(  # noqa: E731
            name, lambda: cls.from_pretrained(src, subfolder=sub, **kw), device, dtype)
        return Component(f"{key}|{sub}", load, sizes.get(sub, 0), arbiter)

    transformer_cfg = _read(where, "transformer")
    denoiser = part("transformer", SD3Transformer2DModel if family == "sd3" else FluxTransformer2DModel)
    sched = scheduler_for(family, transformer_cfg, _scheduler(where))
    clip_l = part("text_encoder", CLIPTextModelWithProjection if family == "sd3" else CLIPTextModel)
    clip_g = part("text_encoder_2", CLIPTextModelWithProjection) if family == "sd3" else None
    vae_cfg = _read(where, "vae")
    model = ModelHandle(name, denoiser, sched, family=family)
    clip = ClipHandle(name, clip_l, tokenizer, encoder_2=clip_g, t5=part(t5_sub, T5EncoderModel),
                      t5_tokenizer=t5_tokenizer, kind=family)
    vae = VaeHandle(name, part("vae", AutoencoderKL), float(vae_cfg.get("scaling_factor", 1.0)),
                    shift_factor=float(vae_cfg.get("shift_factor") or 0.0))
    return model, clip, vae


def _scheduler(where: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((where / "scheduler" / "scheduler_config.json").read_text()))
    except (OSError, ValueError):
        return {}


def _sizes(where: Path, dtype: Any) -> dict[str, int]:
    import torch

    scale = 0.5 if dtype in (torch.float16, torch.bfloat16) else 1.0
    out: dict[str, int] = {}
    for sub in ("transformer", "text_encoder", "text_encoder_2", "text_encoder_3", "vae"):
        files = list((where / sub).glob("*.safetensors")) + list((where / sub).glob("*.bin"))
        out[sub] = int(sum(f.stat().st_size for f in files) * scale)
    return out
