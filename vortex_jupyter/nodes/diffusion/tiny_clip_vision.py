"""The built-in tiny CLIP vision model: a transformers ``CLIPVisionModelWithProjection`` with
seeded random weights, as one ``.safetensors`` in ComfyUI's ``clip_vision`` layout.

Built like the tiny models (``models.py``): seeded, offline, under the models root, behind a
file lock, written to a temporary sibling renamed into place, byte-identical on every machine::

    vortex-tiny-clip-vision.safetensors   ``vision_model.*`` + ``visual_projection.weight`` (the
                                          names ComfyUI's ``clip_vision.load`` reads), its config
                                          in ONE ``vortex_configs`` metadata key
    vortex-tiny-clip-vision.lock

CLIPVisionLoader lists ``TINY_CLIP_VISION_NAME`` first. Sizes (ViT-H/14 of SD2.1-unclip in
brackets): 32x32 images [224], 8x8 patches [14], width 32 [1280], 3 layers [32], 32-wide
image embeddings [1024].

>>> tiny_clip_vision().name  # doctest: +SKIP
'vortex-tiny-clip-vision.safetensors'
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from . import models

__all__ = ["TINY_CLIP_VISION_NAME", "tiny_clip_vision", "tiny_clip_vision_config"]

TINY_CLIP_VISION_NAME = "vortex-tiny-clip-vision.safetensors"
#: Bump when the config or the build change: old files are rebuilt, never reused.
BUILD_VERSION = 1


def tiny_clip_vision_config() -> dict[str, Any]:
    """The tiny model's ``CLIPVisionConfig`` arguments (ComfyUI's clip_vision json keys)."""
    return {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 4,
            "image_size": 32, "patch_size": 8, "projection_dim": 32, "hidden_act": "quick_gelu",
            "num_channels": 3, "layer_norm_eps": 1e-5}


def _is_built(path: Path) -> bool:
    from .families import read_header

    try:
        _, meta = read_header(path)
        return bool(json.loads(meta.get("vortex_configs", "{}")).get("build") == BUILD_VERSION)
    except Exception:  # missing, half-written or foreign: rebuild
        return False


def tiny_clip_vision(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The tiny CLIP vision file, built on first use."""
    root = Path(cache_dir) if cache_dir is not None else models.models_root()
    path = root / TINY_CLIP_VISION_NAME
    if _is_built(path):
        return path
    from filelock import FileLock

    try:
        root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path.with_suffix(".lock"))):
            if not _is_built(path):
                _build(path)
    except OSError as exc:
        from ...errors import ModelError

        raise ModelError(f"cannot build the tiny CLIP vision model in {str(root)!r}: {exc}",
                         hint="point VORTEX_MODELS_DIR at a writable folder") from exc
    return path


def _build(path: Path) -> None:
    import torch
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    config = tiny_clip_vision_config()
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
        torch.manual_seed(20)
        model = CLIPVisionModelWithProjection(CLIPVisionConfig(**config))
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items() if not k.endswith("position_ids")}
    meta = {"vortex_configs": json.dumps({"clip_vision": config, "build": BUILD_VERSION}, sort_keys=True)}
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    try:
        save_file(state, str(tmp), metadata=meta)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
