"""The built-in tiny SD3 and Flux models: diffusers pipelines of those shapes with seeded weights.

Built like ``vortex-tiny`` and ``vortex-tiny-sdxl`` (seeded, offline, under the models root,
a file lock, a temporary sibling renamed into place). Real sizes in brackets:

- ``vortex-tiny-sd3`` (``StableDiffusion3Pipeline``): an ``SD3Transformer2DModel`` (MMDiT,
  2x2 patches, 2 joint blocks [24], width 32 [1536]) on 16-channel latents; three text
  encoders: CLIP-L [768] and OpenCLIP-G [1280] (both with projection) and a T5 v1.1-shaped
  encoder of width 128 [4096]: CLIP-L + G hidden states (32 + 64) are padded to T5's width
  and joined with T5's tokens, pooled L + G = 96 [2048]; a 16-channel VAE with SD3's
  scaling 1.5305 and shift 0.0609; flow matching with shift 3.
- ``vortex-tiny-flux`` (``FluxPipeline``): a ``FluxTransformer2DModel`` (1 double and 2 single
  blocks [19 + 38], width 32 [3072], rotary axes (4, 6, 6) [(16, 56, 56)], guidance embedding
  as Flux dev), CLIP-L for the pooled vector [768], T5 [4096], a 16-channel VAE with Flux's
  scaling 0.3611 and shift 0.1159; flow matching with Flux's resolution-dependent shift.

Both tokenize CLIP with the package's offline BPE (``tokenizer.py``) and T5 with its offline
Unigram tokenizer (``t5.py``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import models
from .t5 import tiny_t5_config, write_t5_tokenizer
from .tokenizer import write_tokenizer

TINY_SD3_NAME = "vortex-tiny-sd3"
TINY_FLUX_NAME = "vortex-tiny-flux"
NAMES = {TINY_SD3_NAME: "sd3", TINY_FLUX_NAME: "flux"}
#: Bump when the configs or the build change: old caches are rebuilt, never reused.
BUILD_VERSION = 1
T5_WIDTH = 128
_L, _G = 32, 64


def _clip(vocab: int, width: int, act: str) -> dict[str, Any]:
    return {"vocab_size": vocab, "hidden_size": width, "intermediate_size": width * 4, "projection_dim": width,
            "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 77,
            "bos_token_id": vocab - 2, "eos_token_id": vocab - 1, "pad_token_id": vocab - 1, "hidden_act": act}


def _vae(scaling: float, shift: float) -> dict[str, Any]:
    return dict(models.tiny_configs()["vae"], latent_channels=16, scaling_factor=scaling, shift_factor=shift,
                use_quant_conv=False, use_post_quant_conv=False)


def tiny_flow_configs(family: str, clip_vocab: int = 770, t5_vocab: int = 279) -> dict[str, dict[str, Any]]:
    """The diffusers configs of the tiny SD3 (``family="sd3"``) or Flux (``"flux"``) model."""
    t5 = tiny_t5_config(t5_vocab, T5_WIDTH)
    transformer: dict[str, Any]
    if family == "sd3":
        transformer = {"sample_size": 8, "patch_size": 2, "in_channels": 16, "out_channels": 16,
                       "num_layers": 2, "attention_head_dim": 16, "num_attention_heads": 2,
                       "joint_attention_dim": T5_WIDTH, "caption_projection_dim": 32,
                       "pooled_projection_dim": _L + _G, "pos_embed_max_size": 64}
        return {"transformer": transformer, "vae": _vae(1.5305, 0.0609),
                "text_encoder": _clip(clip_vocab, _L, "quick_gelu"), "text_encoder_2": _clip(clip_vocab, _G, "gelu"),
                "text_encoder_3": t5,
                "scheduler": {"num_train_timesteps": 1000, "shift": 3.0}}
    if family == "flux":
        transformer = {"patch_size": 1, "in_channels": 64, "num_layers": 1, "num_single_layers": 2,
                       "attention_head_dim": 16, "num_attention_heads": 2, "joint_attention_dim": T5_WIDTH,
                       "pooled_projection_dim": _L, "guidance_embeds": True, "axes_dims_rope": [4, 6, 6]}
        return {"transformer": transformer, "vae": _vae(0.3611, 0.1159),
                "text_encoder": _clip(clip_vocab, _L, "quick_gelu"), "text_encoder_2": t5,
                "scheduler": {"num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": True,
                              "base_shift": 0.5, "max_shift": 1.15, "base_image_seq_len": 256,
                              "max_image_seq_len": 4096}}
    raise ValueError(f"no tiny model for family {family!r}")


def tiny_flow(family: str, cache_dir: str | os.PathLike[str] | None = None, *, seed: int = 0) -> Path:
    """The tiny SD3 or Flux model's diffusers folder, built (with its single file) on first use."""
    name = TINY_SD3_NAME if family == "sd3" else TINY_FLUX_NAME
    root = Path(cache_dir) if cache_dir is not None else models.models_root()

    def make(tmp: Path, single: Path) -> None:
        from .flow_files import write_flow_single_file

        write_flow_single_file(single, family, build_flow_components(tmp, family, seed=seed))

    return models.build_once(root / (name if seed == 0 else f"{name}-s{seed}"),
                             {"version": BUILD_VERSION, "family": family, "seed": seed}, make,
                             f"the tiny {family} model")


def tiny_flow_single_file(family: str, cache_dir: str | os.PathLike[str] | None = None, *, seed: int = 0) -> Path:
    """The tiny model as one ``.safetensors`` in ComfyUI's checkpoint layout (``flow_files``)."""
    folder = tiny_flow(family, cache_dir, seed=seed)
    return folder.with_name(folder.name + ".safetensors")


def build_flow_components(folder: Path, family: str, *, seed: int,
                          reshape: Callable[[dict[str, dict[str, Any]]], dict[str, dict[str, Any]]] | None = None,
                          dtype: Any = None) -> dict[str, Any]:
    """Create the modules with seeded random weights and save them as a diffusers folder;
    ``reshape`` changes the configs (the GPU benchmark's real sizes), ``dtype`` the stored dtype."""
    import torch
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxTransformer2DModel,
        SD3Transformer2DModel,
    )
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTextModelWithProjection,
        T5Config,
        T5EncoderModel,
    )

    from .components import quiet_progress

    quiet_progress()
    clip_vocab = write_tokenizer(folder / "tokenizer")
    t5_sub = "tokenizer_3" if family == "sd3" else "tokenizer_2"
    if family == "sd3":
        write_tokenizer(folder / "tokenizer_2")
    t5_vocab = write_t5_tokenizer(folder / t5_sub)
    configs = tiny_flow_configs(family, clip_vocab, t5_vocab)
    if reshape is not None:
        configs = reshape(configs)
    t5_key = "text_encoder_3" if family == "sd3" else "text_encoder_2"
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
        torch.manual_seed(seed)
        cls = SD3Transformer2DModel if family == "sd3" else FluxTransformer2DModel
        transformer = cls(**configs["transformer"])
        torch.manual_seed(seed + 1)
        vae = AutoencoderKL(**configs["vae"])
        torch.manual_seed(seed + 2)
        clip_cls = CLIPTextModelWithProjection if family == "sd3" else CLIPTextModel
        clip_l = clip_cls(CLIPTextConfig(**configs["text_encoder"]))
        mods: dict[str, Any] = {"transformer": transformer, "vae": vae, "text_encoder": clip_l}
        if family == "sd3":
            torch.manual_seed(seed + 3)
            mods["text_encoder_2"] = CLIPTextModelWithProjection(CLIPTextConfig(**configs["text_encoder_2"]))
        torch.manual_seed(seed + 4)
        mods[t5_key] = T5EncoderModel(T5Config(**configs[t5_key]))
    for name, module in mods.items():
        if dtype is not None:
            module.to(dtype)
        module.save_pretrained(folder / name, safe_serialization=True)
    scheduler: Any = FlowMatchEulerDiscreteScheduler(**configs["scheduler"])
    scheduler.save_pretrained(folder / "scheduler")
    index: dict[str, Any] = {
        "_class_name": "StableDiffusion3Pipeline" if family == "sd3" else "FluxPipeline",
        "_diffusers_version": "0.42.0",
        "transformer": ["diffusers", cls.__name__], "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", clip_cls.__name__], "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        t5_key: ["transformers", "T5EncoderModel"], t5_sub: ["transformers", "T5TokenizerFast"],
    }
    if family == "sd3":
        index["text_encoder_2"] = ["transformers", "CLIPTextModelWithProjection"]
        index["tokenizer_2"] = ["transformers", "CLIPTokenizer"]
    (folder / "model_index.json").write_text(json.dumps(index, indent=1, sort_keys=True))
    return mods
