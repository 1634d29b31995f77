"""The built-in tiny model: an SD1-shaped diffusers pipeline with seeded random weights.

``tiny()`` returns the folder of a Stable Diffusion 1-shaped pipeline (UNet2DConditionModel,
AutoencoderKL with 8x downscale, CLIPTextModel, a CLIPTokenizer whose byte-level BPE vocab
the package learns offline, and an Euler scheduler with SD1's config), building it on first
use. The weights are random but seeded, so every machine builds the same bytes; nothing is
ever downloaded. Later loads use ``from_pretrained(..., local_files_only=True)``.

State on disk (``models_root()``: env ``VORTEX_MODELS_DIR``, default
``~/.cache/vortex-jupyter/models``)::

    vortex-tiny/                 the diffusers folder (model_index.json, unet/, vae/, ...)
    vortex-tiny.safetensors      the same weights as ONE file in the original SD key layout
    vortex-tiny.lock             a file lock: concurrent builders wait, then reuse
    vortex-tiny-unet.safetensors the same weights as split files in ComfyUI's layouts, written
    vortex-tiny-clip.safetensors by ``tiny_split_files()`` (on first use of their names in
    vortex-tiny-vae.safetensors  UNETLoader / CLIPLoader / VAELoader): UNet and VAE in the ldm
                                 layout without prefix, the text encoder as ``text_model.*``

A build happens in a temporary sibling folder that is renamed into place, so a crash never
leaves a half-written model behind. ``seed``/``width`` make variants (``vortex-tiny-s1``) for
tests that need two different checkpoints.

>>> import vortex_jupyter as vx
>>> path = vx.models.tiny()          # doctest: +SKIP
>>> (path / "model_index.json").exists()  # doctest: +SKIP
True
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .tokenizer import write_tokenizer

__all__ = ["TINY_NAME", "TINY_SPLIT_NAMES", "models_root", "sd15_configs", "tiny", "tiny_configs",
           "tiny_single_file", "tiny_split_files"]

TINY_NAME = "vortex-tiny"
#: The built-in split files, by part, as UNETLoader / CLIPLoader / VAELoader list them.
TINY_SPLIT_NAMES = {part: f"{TINY_NAME}-{part}.safetensors" for part in ("unet", "clip", "vae")}
#: Bump when the configs or the build change: old caches are rebuilt, never reused.
BUILD_VERSION = 2
_MARKER = "vortex_build.json"

_SCHEDULER = {  # SD1's own scheduler config (ComfyUI's "normal" overrides the spacing)
    "_class_name": "EulerDiscreteScheduler", "num_train_timesteps": 1000, "beta_start": 0.00085,
    "beta_end": 0.012, "beta_schedule": "scaled_linear", "prediction_type": "epsilon",
    "timestep_spacing": "leading", "steps_offset": 1, "interpolation_type": "linear",
}


def models_root() -> Path:
    """Where models live: ``$VORTEX_MODELS_DIR`` or ``~/.cache/vortex-jupyter/models``."""
    env = os.environ.get("VORTEX_MODELS_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "vortex-jupyter" / "models"


def tiny_configs(width: int = 32, vocab_size: int = 770) -> dict[str, dict[str, Any]]:
    """Small SD1-shaped configs (~6M params at width 32): 2 UNet levels, 4 VAE levels (8x)."""
    w = width
    unet = {
        "sample_size": 8, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
        "block_out_channels": [w * 2, w * 4], "norm_num_groups": 16,
        "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
        "cross_attention_dim": w * 2, "attention_head_dim": 8,
    }
    vae = {
        "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 1,
        "block_out_channels": [w // 2, w // 2, w, w], "norm_num_groups": 8, "sample_size": 64,
        "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
        "scaling_factor": 0.18215,
    }
    text = {
        "vocab_size": vocab_size, "hidden_size": w * 2, "intermediate_size": w * 4,
        "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 77,
        "projection_dim": w * 2, "bos_token_id": vocab_size - 2, "eos_token_id": vocab_size - 1,
        "pad_token_id": vocab_size - 1, "hidden_act": "quick_gelu",
    }
    return {"unet": unet, "vae": vae, "text_encoder": text, "scheduler": dict(_SCHEDULER)}


def sd15_configs(vocab_size: int = 770) -> dict[str, dict[str, Any]]:
    """Stable Diffusion 1.5's real shapes (860M-param UNet), for the GPU benchmark."""
    unet = {
        "sample_size": 64, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
        "block_out_channels": [320, 640, 1280, 1280], "cross_attention_dim": 768,
        "attention_head_dim": 8,
        "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
        "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
    }
    vae = {
        "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2,
        "block_out_channels": [128, 256, 512, 512], "sample_size": 512, "scaling_factor": 0.18215,
        "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
    }
    text = {
        "vocab_size": max(vocab_size, 49408), "hidden_size": 768, "intermediate_size": 3072,
        "num_hidden_layers": 12, "num_attention_heads": 12, "max_position_embeddings": 77,
        "projection_dim": 768, "bos_token_id": vocab_size - 2, "eos_token_id": vocab_size - 1,
        "pad_token_id": vocab_size - 1, "hidden_act": "quick_gelu",
    }
    return {"unet": unet, "vae": vae, "text_encoder": text, "scheduler": dict(_SCHEDULER)}


def _folder_name(seed: int, width: int) -> str:
    name = TINY_NAME if seed == 0 else f"{TINY_NAME}-s{seed}"
    return name if width == 32 else f"{name}-w{width}"


def build_once(folder: Path, marker: dict[str, Any], make: Callable[[Path, Path], None], what: str) -> Path:
    """``folder``, built once: when its marker file does not say ``marker`` (never built, or by an
    older build), ``make(tmp, single)`` writes the diffusers folder into ``tmp`` and the single
    file at ``single``, under a file lock (concurrent builders wait, then reuse), and both are
    renamed into place (``folder`` and ``folder.safetensors``), so a crash never leaves half a model."""

    def built() -> bool:
        try:
            return bool(json.loads((folder / _MARKER).read_text()) == marker)
        except (OSError, ValueError):
            return False

    if built():
        return folder
    from filelock import FileLock  # a diffusers/huggingface_hub dependency

    root = folder.parent
    try:
        root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(root / f"{folder.name}.lock")):
            if not built():  # another process may have built it meanwhile
                tmp = root / f".{folder.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
                single = tmp.with_suffix(".safetensors")
                try:
                    make(tmp, single)
                    (tmp / _MARKER).write_text(json.dumps(marker))
                    if folder.exists():  # a stale build: move it out of the way
                        shutil.rmtree(folder)
                    os.replace(single, folder.with_name(folder.name + ".safetensors"))
                    os.replace(tmp, folder)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
                    single.unlink(missing_ok=True)
    except OSError as exc:
        from ...errors import ModelError

        raise ModelError(f"cannot build {what} in {str(root)!r}: {exc}",
                         hint="point VORTEX_MODELS_DIR at a writable folder") from exc
    return folder


def tiny(cache_dir: str | os.PathLike[str] | None = None, *, seed: int = 0, width: int = 32) -> Path:
    """The tiny model's diffusers folder, built (and its single file written) on first use."""
    root = Path(cache_dir) if cache_dir is not None else models_root()

    def make(tmp: Path, single: Path) -> None:
        write_single_file(single, build_components(tmp, tiny_configs(width), seed=seed))

    return build_once(root / _folder_name(seed, width), {"version": BUILD_VERSION, "seed": seed, "width": width},
                      make, "the tiny model")


def tiny_single_file(cache_dir: str | os.PathLike[str] | None = None, *, seed: int = 0,
                     width: int = 32) -> Path:
    """The tiny model as one ``.safetensors`` file in the original SD key layout."""
    folder = tiny(cache_dir, seed=seed, width=width)
    return folder.with_name(folder.name + ".safetensors")


def tiny_split_files(cache_dir: str | os.PathLike[str] | None = None, *, seed: int = 0,
                     width: int = 32) -> dict[str, Path]:
    """The tiny model as three files in ComfyUI's split layouts: ``{"unet": ..., "clip": ...,
    "vae": ...}`` (next to its single file), cut from the single file without changing a
    tensor, so split loaders and CheckpointLoaderSimple give bit-identical images.

    >>> sorted(tiny_split_files())  # doctest: +SKIP
    ['clip', 'unet', 'vae']
    """
    single = tiny_single_file(cache_dir, seed=seed, width=width)
    paths = {part: single.with_name(f"{single.stem}-{part}.safetensors") for part in TINY_SPLIT_NAMES}
    if _split_fresh(single, paths):
        return paths
    from filelock import FileLock

    with FileLock(str(single.with_suffix(".lock"))):
        if not _split_fresh(single, paths):
            write_split_files(single, paths)
    return paths


def _split_fresh(single: Path, paths: dict[str, Path]) -> bool:
    """Split files exist and are not older than the single file (a rebuild rewrites them)."""
    try:
        stamp = single.stat().st_mtime_ns
        return all(p.stat().st_mtime_ns >= stamp for p in paths.values())
    except OSError:
        return False


def write_split_files(single: Path, paths: dict[str, Path]) -> None:
    """Cut a single file of ours into UNet / text encoder / VAE files (ComfyUI's layouts); each
    carries its own diffusers config in ``vortex_configs`` metadata (one key: byte-stable)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from .ldm import CLIP_PREFIX, UNET_PREFIX, VAE_PREFIX

    parts = {"unet": (UNET_PREFIX, "unet"), "clip": (CLIP_PREFIX, "text_encoder"), "vae": (VAE_PREFIX, "vae")}
    with safe_open(str(single), framework="pt") as f:
        configs = json.loads((f.metadata() or {})["vortex_configs"])
        keys = list(f.keys())
        for part, (prefix, config_key) in parts.items():
            state = {k[len(prefix):]: f.get_tensor(k) for k in keys if k.startswith(prefix)}
            meta = {"vortex_configs": json.dumps({config_key: configs[config_key]}, sort_keys=True)}
            tmp = paths[part].with_name(f".{paths[part].name}.{uuid.uuid4().hex[:8]}")
            try:
                save_file(state, str(tmp), metadata=meta)
                os.replace(tmp, paths[part])
            finally:
                tmp.unlink(missing_ok=True)


def build_components(folder: Path, configs: dict[str, dict[str, Any]], *, seed: int,
                     dtype: Any = None) -> dict[str, Any]:
    """Create the modules with seeded random weights and save them as a diffusers folder."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from .components import quiet_progress

    quiet_progress()  # no "Writing model shards" bars in notebooks and logs
    vocab = write_tokenizer(folder / "tokenizer")
    text_cfg = dict(configs["text_encoder"], vocab_size=max(vocab, configs["text_encoder"]["vocab_size"]),
                    bos_token_id=vocab - 2, eos_token_id=vocab - 1, pad_token_id=vocab - 1)
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**configs["unet"])
        torch.manual_seed(seed + 1)
        vae = AutoencoderKL(**configs["vae"])
        torch.manual_seed(seed + 2)
        text = CLIPTextModel(CLIPTextConfig(**text_cfg))
    scheduler = EulerDiscreteScheduler.from_config(configs["scheduler"])
    mods: dict[str, Any] = {"unet": unet, "vae": vae, "text_encoder": text}
    for name, module in mods.items():
        if dtype is not None:
            module.to(dtype)
        module.save_pretrained(folder / name, safe_serialization=True)
    scheduler.save_pretrained(folder / "scheduler")
    index = {"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.42.0",
             "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
             "text_encoder": ["transformers", "CLIPTextModel"],
             "tokenizer": ["transformers", "CLIPTokenizer"],
             "scheduler": ["diffusers", "EulerDiscreteScheduler"],
             "safety_checker": [None, None], "feature_extractor": [None, None],
             "requires_safety_checker": False}
    (folder / "model_index.json").write_text(json.dumps(index, indent=1))
    return mods


def write_single_file(path: Path, components: dict[str, Any]) -> None:
    """One ``.safetensors`` in the SD layout; the diffusers configs ride in its metadata."""
    from safetensors.torch import save_file

    from .ldm import clip_to_ldm, unet_to_ldm, vae_to_ldm

    unet, vae, text = components["unet"], components["vae"], components["text_encoder"]
    state: dict[str, Any] = {}
    state.update(unet_to_ldm(unet.state_dict(), dict(unet.config)))
    state.update(vae_to_ldm(vae.state_dict(), dict(vae.config)))
    state.update(clip_to_ldm(text.state_dict()))
    state = {k: v.detach().contiguous() for k, v in state.items()}
    configs = {"unet": _plain(unet.config), "vae": _plain(vae.config), "text_encoder": text.config.to_dict()}
    # One metadata key (safetensors writes several in random order) with sorted JSON keys:
    # the file is byte-identical on every machine.
    meta = {"vortex_configs": json.dumps(configs, sort_keys=True)}
    save_file(state, str(path), metadata=meta)


def _plain(config: Any) -> dict[str, Any]:
    return {k: v for k, v in dict(config).items() if not k.startswith("_")}
