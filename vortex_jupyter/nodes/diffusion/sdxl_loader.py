"""SDXL single-file checkpoints -> MODEL / CLIP / VAE handles (issue 11, first family).

``single_file.load_single_file_handles`` sends a ``.safetensors`` file here when
``families.is_sdxl_unet`` says its UNet is SDXL's. Configs: the file's ``vortex_configs``
metadata (our ``vortex-tiny-sdxl``), else SDXL base 1.0's real shapes (``sdxl_base_configs``).
Each component reads only its own tensors (``sdxl_keys.PREFIXES``), maps them to diffusers
names and loads them strictly into a module built from its config.

The handles: MODEL with ``family="sdxl"``; CLIP with ``encoder`` = CLIP-L and ``encoder_2`` =
OpenCLIP-G (``text.encode_text`` then gives SDXL's conditioning); VAE with SDXL's scaling.
Sampling an SDXL MODEL (its size embeddings) is not wired yet.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...errors import ModelError
from ...workers.arbiter import MemoryArbiter
from . import families, models
from .components import ClipHandle, Component, ModelHandle, VaeHandle, device_and_dtype, quiet_progress


def sdxl_base_configs() -> dict[str, dict[str, Any]]:
    """SDXL base 1.0's diffusers configs (for files without our metadata)."""
    unet = {
        "sample_size": 128, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
        "block_out_channels": [320, 640, 1280],
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        "attention_head_dim": [5, 10, 20], "transformer_layers_per_block": [1, 2, 10],
        "use_linear_projection": True, "cross_attention_dim": 2048, "addition_embed_type": "text_time",
        "addition_time_embed_dim": 256, "projection_class_embeddings_input_dim": 2816,
    }
    vae = dict(models.sd15_configs()["vae"], scaling_factor=0.13025)
    common = {"vocab_size": 49408, "max_position_embeddings": 77, "bos_token_id": 49406,
              "eos_token_id": 49407, "pad_token_id": 49407}
    clip_l = dict(common, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                  num_attention_heads=12, projection_dim=768, hidden_act="quick_gelu")
    clip_g = dict(common, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                  num_attention_heads=20, projection_dim=1280, hidden_act="gelu")
    return {"unet": unet, "vae": vae, "text_encoder": clip_l, "text_encoder_2": clip_g}


def _configs(meta: dict[str, str]) -> dict[str, dict[str, Any]]:
    raw = meta.get("vortex_configs")
    if raw is None:
        return sdxl_base_configs()
    try:
        configs = json.loads(raw)
    except ValueError as exc:
        raise ModelError(f"checkpoint metadata 'vortex_configs' is not JSON: {exc}") from exc
    return {k: dict(configs[k]) for k in ("unet", "vae", "text_encoder", "text_encoder_2")}


def build_module(part: str, state: dict[str, Any], config: dict[str, Any]) -> Any:
    """The diffusers/transformers module for ``part``, with ``state`` loaded strictly."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    module: Any
    if part in ("unet", "vae"):
        module = (UNet2DConditionModel if part == "unet" else AutoencoderKL)(**config)
    else:
        cls = CLIPTextModel if part == "text_encoder" else CLIPTextModelWithProjection
        module = cls(CLIPTextConfig.from_dict(config))
    missing, unexpected = module.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise KeyError(f"{part}: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return module


def load_sdxl_handles(name: str, path: Path, arbiter: MemoryArbiter | None
                      ) -> tuple[ModelHandle, ClipHandle, VaeHandle]:
    """MODEL/CLIP/VAE handles of an SDXL single file; modules load lazily, one part each."""

    from .single_file import config_folder

    _, meta = families.read_header(path)
    configs = _configs(meta)
    cfg = config_folder({"vortex_configs": json.dumps(configs, sort_keys=True)})
    from . import clip_tokenizer

    tokenizer = clip_tokenizer.for_file("vortex_configs" in meta, path.name)
    sched = json.loads((cfg / "scheduler" / "scheduler_config.json").read_text())
    device, dtype = device_and_dtype()
    size = path.stat().st_size
    key = f"{path.resolve()}|{path.stat().st_mtime_ns}|{device}|{dtype}"

    def component(part: str, share: float) -> Component:
        def load() -> Any:
            module = _load_part(path, part, configs)
            return module.to(device=device, dtype=dtype).eval().requires_grad_(False)
        return Component(f"{key}|{part}", load, int(size * share), arbiter)

    scaling = float(configs["vae"].get("scaling_factor", 0.13025))
    return (ModelHandle(name, component("unet", 0.7), sched, family="sdxl"),
            ClipHandle(name, component("text_encoder", 0.05), tokenizer,
                       encoder_2=component("text_encoder_2", 0.2)),
            VaeHandle(name, component("vae", 0.05), scaling))


def _load_part(path: Path, part: str, configs: dict[str, dict[str, Any]]) -> Any:
    from .sdxl_keys import PREFIXES, part_from_single_file
    from .single_file import read_state_dict

    quiet_progress()
    state, _ = read_state_dict(path, (PREFIXES[part],))
    try:
        return build_module(part, part_from_single_file(part, state, configs), configs[part])
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelError(f"checkpoint {path.name!r}: its {part} does not match the SDXL config: {exc}",
                         hint="only SDXL base-shaped single files load as SDXL") from exc


# ----------------------------------------------------------------------------- the refiner


def refiner_base_configs() -> dict[str, dict[str, Any]]:
    """SDXL refiner 1.0's diffusers configs (for files without our metadata): a 4-level UNet
    (384..1536 channels, 4 transformer layers) reading OpenCLIP-G alone (1280) and 5 size/score ids."""
    base = sdxl_base_configs()
    unet = dict(base["unet"], block_out_channels=[384, 768, 1536, 1536], attention_head_dim=[6, 12, 24, 24],
                transformer_layers_per_block=4, cross_attention_dim=1280,
                projection_class_embeddings_input_dim=2560,
                down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
                up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"])
    return {"unet": unet, "vae": base["vae"], "text_encoder_2": base["text_encoder_2"]}


def is_refiner_file(shapes: dict[str, Any]) -> bool:
    """An SDXL refiner single file: size embeddings and OpenCLIP-G as the first (only) embedder."""
    from .sdxl_keys import _G_PROBE, REFINER_G_PREFIX

    return f"{ldm_unet_prefix()}label_emb.0.0.weight" in shapes and REFINER_G_PREFIX + _G_PROBE in shapes


def ldm_unet_prefix() -> str:
    from .ldm import UNET_PREFIX

    return UNET_PREFIX


def load_refiner_handles(name: str, path: Path, arbiter: MemoryArbiter | None
                         ) -> tuple[ModelHandle, ClipHandle, VaeHandle]:
    """MODEL/CLIP/VAE handles of an SDXL refiner single file (``family="sdxl_refiner"``, a CLIP
    of G alone); each part loads lazily from its own tensors."""
    from .single_file import config_folder

    _, meta = families.read_header(path)
    raw = meta.get("vortex_configs")
    configs = refiner_base_configs() if raw is None else {k: dict(v) for k, v in json.loads(raw).items()
                                                           if k in ("unet", "vae", "text_encoder_2")}
    from . import clip_tokenizer

    tokenizer = clip_tokenizer.for_file(raw is not None, path.name)
    sched_src = config_folder({})  # SD's scheduler (the refiner's is the base model's)
    sched = json.loads((sched_src / "scheduler" / "scheduler_config.json").read_text())
    device, dtype = device_and_dtype()
    size = path.stat().st_size
    key = f"{path.resolve()}|{path.stat().st_mtime_ns}|{device}|{dtype}"

    def component(part: str, share: float) -> Component:
        def load() -> Any:
            from .sdxl_keys import REFINER_PREFIXES, part_from_single_file
            from .single_file import read_state_dict

            quiet_progress()
            state, _ = read_state_dict(path, (REFINER_PREFIXES[part],))
            try:
                module = build_module(part, part_from_single_file(part, state, configs), configs[part])
            except (OSError, ValueError, KeyError, RuntimeError) as exc:
                raise ModelError(f"checkpoint {path.name!r}: its {part} does not match the SDXL refiner config: "
                                 f"{exc}", hint="only SDXL refiner-shaped files load as a refiner") from exc
            return module.to(device=device, dtype=dtype).eval().requires_grad_(False)
        return Component(f"{key}|{part}", load, int(size * share), arbiter)

    scaling = float(configs["vae"].get("scaling_factor", 0.13025))
    return (ModelHandle(name, component("unet", 0.75), sched, family="sdxl_refiner"),
            ClipHandle(name, component("text_encoder_2", 0.2), tokenizer, kind="sdxl_refiner"),
            VaeHandle(name, component("vae", 0.05), scaling))
