"""The built-in tiny SDXL model: an SDXL-shaped diffusers pipeline with seeded random weights.

``tiny_sdxl()`` returns the folder of a ``StableDiffusionXLPipeline`` built like ``vortex-tiny``
(``models.py``): seeded, offline, under the same cache root and file-lock discipline, in a
temporary sibling renamed into place. What makes it SDXL-shaped (real sizes in brackets):

- the UNet conditions on size through ``addition_embed_type="text_time"``: 6 time ids
  (original size, crop corner, target size) each embedded in ``addition_time_embed_dim``
  [256] channels, concatenated with the pooled, projected output of the second text encoder
  [1280]: ``projection_class_embeddings_input_dim = 6 * 8 + 64`` here [2816];
- cross-attention reads both encoders' hidden states side by side: CLIP-L [768] + OpenCLIP-G
  [1280] = ``cross_attention_dim`` 32 + 64 here [2048];
- ``text_encoder`` is a ``CLIPTextModel`` (quick_gelu, as CLIP-L), ``text_encoder_2`` a
  ``CLIPTextModelWithProjection`` (gelu, with projection, as OpenCLIP-G); both tokenizers are
  the package's offline BPE (``tokenizer.py``);
- the 4-channel KL VAE with SDXL's ``scaling_factor`` 0.13025.

On disk, next to ``vortex-tiny``::

    vortex-tiny-sdxl/              the diffusers folder (model_index.json, unet/, text_encoder_2/, ...)
    vortex-tiny-sdxl.safetensors   the same weights in SDXL's original single-file layout
                                   (``sdxl_keys.py``), configs in ``vortex_configs`` metadata
    vortex-tiny-sdxl.lock          concurrent builders wait, then reuse

>>> path = tiny_sdxl()                       # doctest: +SKIP
>>> (path / "text_encoder_2").is_dir()       # doctest: +SKIP
True
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from . import models
from .tokenizer import write_tokenizer

__all__ = ["TINY_REFINER_NAME", "TINY_SDXL_NAME", "tiny_refiner_single_file", "tiny_sdxl", "tiny_sdxl_configs",
           "tiny_sdxl_refiner", "tiny_sdxl_single_file"]

TINY_SDXL_NAME = "vortex-tiny-sdxl"
#: Bump when the configs or the build change: old caches are rebuilt, never reused.
BUILD_VERSION = 1
_TIME_IDS = 6  # SDXL's micro-conditioning: original (h, w), crop (top, left), target (h, w)


def tiny_sdxl_configs(vocab_size: int = 770) -> dict[str, dict[str, Any]]:
    """SDXL-shaped configs at toy width: 2 UNet levels (SDXL: 3), 1 and 2 transformer layers."""
    l_width, g_width, g_proj, time_dim = 32, 64, 64, 8
    unet = {
        "sample_size": 8, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
        "block_out_channels": [32, 64], "norm_num_groups": 16,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
        "attention_head_dim": [2, 4], "transformer_layers_per_block": [1, 2],
        "use_linear_projection": True, "cross_attention_dim": l_width + g_width,
        "addition_embed_type": "text_time", "addition_time_embed_dim": time_dim,
        "projection_class_embeddings_input_dim": _TIME_IDS * time_dim + g_proj,
    }
    vae = dict(models.tiny_configs()["vae"], scaling_factor=0.13025)
    common = {"vocab_size": vocab_size, "num_hidden_layers": 2, "num_attention_heads": 4,
              "max_position_embeddings": 77, "bos_token_id": vocab_size - 2,
              "eos_token_id": vocab_size - 1, "pad_token_id": vocab_size - 1}
    clip_l = dict(common, hidden_size=l_width, intermediate_size=l_width * 4, projection_dim=l_width,
                  hidden_act="quick_gelu")
    clip_g = dict(common, hidden_size=g_width, intermediate_size=g_width * 4, projection_dim=g_proj,
                  hidden_act="gelu")
    scheduler = models.tiny_configs()["scheduler"]  # SDXL's is SD1's (scaled_linear, leading)
    return {"unet": unet, "vae": vae, "text_encoder": clip_l, "text_encoder_2": clip_g, "scheduler": scheduler}


def tiny_sdxl(cache_dir: str | os.PathLike[str] | None = None, *, seed: int = 0) -> Path:
    """The tiny SDXL model's diffusers folder, built (and its single file written) on first use."""
    root = Path(cache_dir) if cache_dir is not None else models.models_root()

    def make(tmp: Path, single: Path) -> None:
        write_sdxl_single_file(single, build_sdxl_components(tmp, tiny_sdxl_configs(), seed=seed))

    return models.build_once(root / (TINY_SDXL_NAME if seed == 0 else f"{TINY_SDXL_NAME}-s{seed}"),
                             {"version": BUILD_VERSION, "family": "sdxl", "seed": seed}, make, "the tiny SDXL model")


def tiny_sdxl_single_file(cache_dir: str | os.PathLike[str] | None = None, *, seed: int = 0) -> Path:
    """The tiny SDXL model as one ``.safetensors`` in SDXL's original key layout."""
    folder = tiny_sdxl(cache_dir, seed=seed)
    return folder.with_name(folder.name + ".safetensors")


def build_sdxl_components(folder: Path, configs: dict[str, dict[str, Any]], *, seed: int) -> dict[str, Any]:
    """Create the four modules with seeded random weights and save them as a diffusers folder."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from .components import quiet_progress

    quiet_progress()  # no "Writing model shards" bars in notebooks and logs
    vocab = write_tokenizer(folder / "tokenizer")
    write_tokenizer(folder / "tokenizer_2")
    ids = {"bos_token_id": vocab - 2, "eos_token_id": vocab - 1, "pad_token_id": vocab - 1}
    texts = {k: dict(configs[k], vocab_size=max(vocab, configs[k]["vocab_size"]), **ids)
             for k in ("text_encoder", "text_encoder_2")}
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**configs["unet"])
        torch.manual_seed(seed + 1)
        vae = AutoencoderKL(**configs["vae"])
        torch.manual_seed(seed + 2)
        clip_l = CLIPTextModel(CLIPTextConfig(**texts["text_encoder"]))
        torch.manual_seed(seed + 3)
        clip_g = CLIPTextModelWithProjection(CLIPTextConfig(**texts["text_encoder_2"]))
    mods: dict[str, Any] = {"unet": unet, "vae": vae, "text_encoder": clip_l, "text_encoder_2": clip_g}
    for name, module in mods.items():
        module.save_pretrained(folder / name, safe_serialization=True)
    EulerDiscreteScheduler.from_config(configs["scheduler"]).save_pretrained(folder / "scheduler")
    index = {"_class_name": "StableDiffusionXLPipeline", "_diffusers_version": "0.42.0",
             "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
             "text_encoder": ["transformers", "CLIPTextModel"],
             "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
             "tokenizer": ["transformers", "CLIPTokenizer"], "tokenizer_2": ["transformers", "CLIPTokenizer"],
             "scheduler": ["diffusers", "EulerDiscreteScheduler"],
             "image_encoder": [None, None], "feature_extractor": [None, None],
             "force_zeros_for_empty_prompt": True}
    (folder / "model_index.json").write_text(json.dumps(index, indent=1))
    return mods


def write_sdxl_single_file(path: Path, mods: dict[str, Any]) -> None:
    """One ``.safetensors`` in SDXL's layout; configs (and ``"family": "sdxl"``) ride in ONE
    metadata key with sorted JSON keys, so the file is byte-identical on every machine."""
    from safetensors.torch import save_file

    from .sdxl_keys import sdxl_to_single_file

    configs: dict[str, Any] = {"unet": models._plain(mods["unet"].config),
                               "vae": models._plain(mods["vae"].config),
                               "text_encoder": mods["text_encoder"].config.to_dict(),
                               "text_encoder_2": mods["text_encoder_2"].config.to_dict()}
    state = sdxl_to_single_file({k: m.state_dict() for k, m in mods.items()}, configs)
    meta = {"vortex_configs": json.dumps(dict(configs, family="sdxl"), sort_keys=True)}
    save_file(state, str(path), metadata=meta)


# ----------------------------------------------------------------------------- the refiner

TINY_REFINER_NAME = "vortex-tiny-sdxl-refiner"
_REFINER_IDS = 5  # original (h, w), crop (top, left), aesthetic score


def tiny_refiner_configs(vocab_size: int = 770) -> dict[str, dict[str, Any]]:
    """The tiny SDXL refiner: OpenCLIP-G alone (cross-attention as wide as G [1280]) and five
    size/score ids [2560 = 5 * 256 + 1280]; the base model's VAE and G shapes."""
    base = tiny_sdxl_configs(vocab_size)
    g = base["text_encoder_2"]
    time_dim = int(base["unet"]["addition_time_embed_dim"])
    unet = dict(base["unet"], cross_attention_dim=g["hidden_size"],
                projection_class_embeddings_input_dim=_REFINER_IDS * time_dim + g["projection_dim"])
    return {"unet": unet, "vae": base["vae"], "text_encoder_2": g, "scheduler": base["scheduler"]}


def tiny_sdxl_refiner(cache_dir: str | os.PathLike[str] | None = None, *, seed: int = 0) -> Path:
    """The tiny SDXL refiner's diffusers folder (``StableDiffusionXLImg2ImgPipeline``), built on first use."""
    root = Path(cache_dir) if cache_dir is not None else models.models_root()

    def make(tmp: Path, single: Path) -> None:
        _write_refiner_single_file(single, _build_refiner(tmp, seed))

    marker = {"version": BUILD_VERSION + 1, "family": "sdxl_refiner", "seed": seed}  # +1: with its single file
    return models.build_once(root / TINY_REFINER_NAME, marker, make, "the tiny SDXL refiner")


def tiny_refiner_single_file(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The tiny refiner as one ``.safetensors`` in the refiner's original layout."""
    folder = tiny_sdxl_refiner(cache_dir)
    return folder.with_name(folder.name + ".safetensors")


def _write_refiner_single_file(path: Path, mods: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    from .sdxl_keys import refiner_to_single_file

    configs: dict[str, Any] = {"unet": models._plain(mods["unet"].config), "vae": models._plain(mods["vae"].config),
                               "text_encoder_2": mods["text_encoder_2"].config.to_dict()}
    state = refiner_to_single_file({k: m.state_dict() for k, m in mods.items()}, configs)
    meta = {"vortex_configs": json.dumps(dict(configs, family="sdxl_refiner"), sort_keys=True)}
    save_file(state, str(path), metadata=meta)


def _build_refiner(folder: Path, seed: int) -> dict[str, Any]:
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    from .components import quiet_progress

    quiet_progress()
    vocab = write_tokenizer(folder / "tokenizer_2")
    configs = tiny_refiner_configs(vocab)
    g = dict(configs["text_encoder_2"], vocab_size=vocab, bos_token_id=vocab - 2, eos_token_id=vocab - 1,
             pad_token_id=vocab - 1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 10)
        mods: dict[str, Any] = {"unet": UNet2DConditionModel(**configs["unet"])}
        torch.manual_seed(seed + 1)  # the base model's VAE weights (same seed and config)
        mods["vae"] = AutoencoderKL(**configs["vae"])
        torch.manual_seed(seed + 13)
        mods["text_encoder_2"] = CLIPTextModelWithProjection(CLIPTextConfig(**g))
    for name, module in mods.items():
        module.save_pretrained(folder / name, safe_serialization=True)
    scheduler: Any = EulerDiscreteScheduler.from_config(configs["scheduler"])
    scheduler.save_pretrained(folder / "scheduler")
    index = {"_class_name": "StableDiffusionXLImg2ImgPipeline", "_diffusers_version": "0.42.0",
             "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
             "text_encoder": [None, None], "tokenizer": [None, None],
             "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
             "tokenizer_2": ["transformers", "CLIPTokenizer"], "scheduler": ["diffusers", "EulerDiscreteScheduler"],
             "image_encoder": [None, None], "feature_extractor": [None, None],
             "requires_aesthetics_score": True, "force_zeros_for_empty_prompt": False}
    (folder / "model_index.json").write_text(json.dumps(index, indent=1))
    return mods
