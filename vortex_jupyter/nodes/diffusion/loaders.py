"""Checkpoint loading: ``ckpt_name`` -> MODEL, CLIP, VAE, with modules held by the memory arbiter.

Resolution of a ``ckpt_name`` (first match wins):

1. ``vortex-tiny`` (or ``vortex-tiny-s<seed>``): the built-in tiny model, built on first use;
   ``vortex-shapes``: the trained demo model shipped in the package (``shapes/``; its sha256 is
   checked first);
   ``vortex-tiny-sdxl``: the built-in tiny SDXL model (its single file, SDXL's original layout);
   ``vortex-tiny-sd3`` / ``vortex-tiny-flux``: the tiny SD3 / Flux models (``tiny_flow.py``).
2. A file or diffusers folder in ComfyUI's ``checkpoints`` folders (``folders.py``: the models
   root's ``checkpoints/`` and those of ``extra_model_paths.yaml``), then directly in the models
   root; the name must be relative (no absolute paths, no ``..``). ``.safetensors``
   and ``.ckpt`` files are single-file checkpoints in the original SD layout; a pickle
   ``.ckpt`` is read ONLY with ``torch.load(weights_only=True)``, which refuses code.
3. A hub id (``org/name``): its snapshot in the local Hugging Face cache
   (``snapshot_download(local_files_only=True)`` unless ``VORTEX_ALLOW_DOWNLOADS=1``), then
   loaded like a folder with ``from_pretrained(..., local_files_only=True)``.

Anything else is a ``ModelError`` (VE-800) saying where we looked.

Modules are wrapped in ``components.Component``s (a recipe plus an arbiter key), so MODEL/CLIP/VAE
handles are cheap to keep in the engine's cache and alternating checkpoints under a small
budget just reloads.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...errors import ModelError
from ...workers.arbiter import MemoryArbiter
from . import folders, models, shapes
from .components import ClipHandle, Component, ModelHandle, VaeHandle, device_and_dtype, quiet_progress
from .single_file import load_single_file_handles
from .tiny_flow import NAMES
from .tiny_sdxl import TINY_REFINER_NAME, TINY_SDXL_NAME

_TINY = re.compile(r"vortex-tiny(?:-s(\d+))?")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_TINY_SDXL = frozenset({TINY_SDXL_NAME, TINY_SDXL_NAME + ".safetensors"})
_TINY_FLOW = frozenset({*NAMES, *(n + ".safetensors" for n in NAMES)})


# ----------------------------------------------------------------------------- resolution


def resolve(ckpt_name: str) -> tuple[str, Path]:
    """``("folder"|"file", location)`` for a ``ckpt_name``, or ModelError."""
    if not isinstance(ckpt_name, str) or not ckpt_name.strip():
        raise ModelError(f"ckpt_name {ckpt_name!r} is empty", hint="pick a checkpoint, e.g. 'vortex-tiny'")
    tiny = _TINY.fullmatch(ckpt_name)
    if tiny:
        return "folder", models.tiny(seed=int(tiny.group(1) or 0))
    if ckpt_name in shapes.NAMES:
        return "file", shapes.single_file()
    if ckpt_name in (TINY_REFINER_NAME, TINY_REFINER_NAME + ".safetensors"):
        from .tiny_sdxl import tiny_refiner_single_file

        return "file", tiny_refiner_single_file()
    if ckpt_name in _TINY_SDXL:
        from .tiny_sdxl import tiny_sdxl_single_file

        return "file", tiny_sdxl_single_file()
    if ckpt_name in _TINY_FLOW:
        from .tiny_flow import tiny_flow_single_file

        return "file", tiny_flow_single_file(NAMES[ckpt_name.removesuffix(".safetensors")])
    local = _find_local(ckpt_name)
    if local is not None:
        return local
    return "folder", _hub_snapshot(ckpt_name)


def check_checkpoint_name(ckpt_name: str) -> None:
    """ModelError now (at validation, loading nothing) for a name ``resolve`` would certainly
    reject: empty, unsafe, or a file name in neither models folder. Hub ids are looked up
    only when the node runs (their cache lives outside the models folder)."""
    if not isinstance(ckpt_name, str) or not ckpt_name.strip():
        raise ModelError(f"ckpt_name {ckpt_name!r} is empty", hint="pick a checkpoint, e.g. 'vortex-tiny'")
    if not _TINY.fullmatch(ckpt_name) and ckpt_name not in (*_TINY_SDXL, *_TINY_FLOW, *shapes.NAMES, TINY_REFINER_NAME,
                                                               TINY_REFINER_NAME + ".safetensors"):
        _find_local(ckpt_name)


def _find_local(ckpt_name: str) -> tuple[str, Path] | None:
    """The checkpoint in ComfyUI's ``checkpoints`` folders (``folders.py``), else directly in the
    models root (ours: where older releases looked); None for a hub id; else ModelError."""
    folders.check_name("checkpoints", ckpt_name, "ckpt_name")
    searched = folders.folders("checkpoints")
    for base in (*searched, models.models_root()):
        path = base / ckpt_name
        if path.is_dir() and (path / "model_index.json").is_file():
            return "folder", path
        if path.is_file():
            return "file", path
    if _HUB_ID.fullmatch(ckpt_name) and not ckpt_name.lower().endswith(tuple(folders.PT)):
        return None
    raise folders.missing("checkpoints", ckpt_name, "ckpt_name", [*searched, models.models_root()], models.TINY_NAME)


def lora_path(lora_name: str) -> Path:
    """The LoRA file in ComfyUI's ``loras`` folders, or ModelError (torch-free: validation uses it)."""
    return folders.find("loras", lora_name, "lora_name")


def _hub_snapshot(repo_id: str) -> Path:
    """The local snapshot folder of a hub model; downloads only with VORTEX_ALLOW_DOWNLOADS=1."""
    from huggingface_hub import snapshot_download

    allow = os.environ.get("VORTEX_ALLOW_DOWNLOADS") == "1"
    try:
        folder = Path(snapshot_download(repo_id, local_files_only=not allow))
    except Exception as exc:  # huggingface_hub raises several unrelated types for "not here"
        raise ModelError(
            f"checkpoint {repo_id!r} is not a file in the models folder and not in the local "
            f"Hugging Face cache ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})",
            hint="download it once with huggingface-cli, set VORTEX_ALLOW_DOWNLOADS=1, or use 'vortex-tiny'",
        ) from exc
    if not (folder / "model_index.json").is_file():
        raise ModelError(f"hub model {repo_id!r} at {folder} is not a diffusers pipeline (no model_index.json)")
    return folder


def load_checkpoint(ckpt_name: str, arbiter: MemoryArbiter | None = None
                    ) -> tuple[ModelHandle, ClipHandle, VaeHandle]:
    kind, where = resolve(ckpt_name)
    if kind == "file":
        return load_single_file_handles(ckpt_name, where, arbiter)
    return _folder_handles(ckpt_name, where, arbiter=arbiter)


def _folder_handles(name: str, where: Path, *, arbiter: MemoryArbiter | None
                    ) -> tuple[ModelHandle, ClipHandle, VaeHandle]:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    from .flow_loader import folder_family, folder_handles

    flow = folder_family(where)
    if flow is not None:  # SD3 / Flux pipelines
        return folder_handles(name, where, flow, arbiter)
    quiet_progress()
    kw: dict[str, Any] = {"local_files_only": True}  # a local folder (hub ids: their snapshot)
    src = str(where)
    try:
        tokenizer = CLIPTokenizer.from_pretrained(src, subfolder="tokenizer" if (where / "tokenizer").is_dir()
                                                  else "tokenizer_2", **kw)
        sched = _scheduler_config(src, kw)
    except (OSError, ValueError) as exc:
        raise ModelError(f"checkpoint {name!r} ({src}) could not be opened offline: {exc}",
                         hint="download it into the Hugging Face cache first, or set VORTEX_ALLOW_DOWNLOADS=1"
                         ) from exc
    device, dtype = device_and_dtype()

    def loader(cls: Any, sub: str) -> Callable[[], Any]:
        return lambda: _load_module(name, lambda: cls.from_pretrained(src, subfolder=sub, **kw), device, dtype)

    est = _folder_sizes(where, dtype)
    key = f"{src}|{device}|{dtype}"
    unet = Component(f"{key}|unet", loader(UNet2DConditionModel, "unet"), est.get("unet", 0), arbiter)
    text = Component(f"{key}|text_encoder", loader(CLIPTextModel, "text_encoder"), est.get("text_encoder", 0), arbiter)
    vae = Component(f"{key}|vae", loader(AutoencoderKL, "vae"), est.get("vae", 0), arbiter)
    scaling = _vae_scaling(where)
    family, text_2 = "sd1", None
    if _is_refiner_folder(where):  # the SDXL refiner: OpenCLIP-G alone, aesthetic-score conditioning
        from transformers import CLIPTextModelWithProjection

        tokenizer_2 = CLIPTokenizer.from_pretrained(src, subfolder="tokenizer_2", **kw)
        clip_g = Component(f"{key}|text_encoder_2", loader(CLIPTextModelWithProjection, "text_encoder_2"),
                           est.get("text_encoder_2", 0), arbiter)
        return (ModelHandle(name, unet, sched, family="sdxl_refiner"),
                ClipHandle(name, clip_g, tokenizer_2, kind="sdxl_refiner"), VaeHandle(name, vae, _vae_scaling(where)))
    if _is_sdxl_folder(where):  # SDXL's second text encoder (OpenCLIP-G, with its projection)
        from transformers import CLIPTextModelWithProjection

        family = "sdxl"
        text_2 = Component(f"{key}|text_encoder_2", loader(CLIPTextModelWithProjection, "text_encoder_2"),
                           est.get("text_encoder_2", 0), arbiter)
    return (ModelHandle(name, unet, sched, family=family), ClipHandle(name, text, tokenizer, encoder_2=text_2),
            VaeHandle(name, vae, scaling))


def _is_refiner_folder(where: Path) -> bool:
    """A diffusers SDXL refiner: an SDXL img2img pipeline with OpenCLIP-G and no CLIP-L."""
    try:
        index = json.loads((where / "model_index.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(index.get("requires_aesthetics_score")) and (where / "text_encoder_2").is_dir() and not (
        where / "text_encoder").is_dir()


def _is_sdxl_folder(where: Path) -> bool:
    """A diffusers SDXL pipeline: a second text encoder and a UNet with SDXL's text/time embedding."""
    try:
        unet = json.loads((where / "unet" / "config.json").read_text())
    except (OSError, ValueError):
        return False
    if unet.get("addition_embed_type") != "text_time":
        return False
    if not (where / "text_encoder_2").is_dir():
        raise ModelError(f"checkpoint folder {str(where)!r} has an SDXL UNet but no text_encoder_2 (an SDXL "
                         "refiner or an incomplete download); only SDXL base pipelines are supported so far",
                         hint="use an SDXL base checkpoint (a folder with text_encoder_2, or its single file)")
    return True


def _load_module(name: str, make: Callable[[], Any], device: str, dtype: Any) -> Any:
    try:
        module = make()
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelError(f"checkpoint {name!r}: {exc}", hint="check the model files are complete") from exc
    return module.to(device=device, dtype=dtype).eval().requires_grad_(False)


def _scheduler_config(src: str, kw: dict[str, Any]) -> dict[str, Any]:
    from diffusers import EulerDiscreteScheduler

    return dict(EulerDiscreteScheduler.load_config(src, subfolder="scheduler", **kw))


def _folder_sizes(where: Path, dtype: Any) -> dict[str, int]:
    """Estimated bytes per component from the weight files (before loading them)."""
    import torch

    scale = 0.5 if dtype == torch.float16 else 1.0
    out: dict[str, int] = {}
    for sub in ("unet", "text_encoder", "text_encoder_2", "vae"):
        files = list((where / sub).glob("*.safetensors")) + list((where / sub).glob("*.bin"))
        out[sub] = int(sum(f.stat().st_size for f in files) * scale)
    return out


def _vae_scaling(where: Path) -> float:
    try:
        config = json.loads((Path(where) / "vae" / "config.json").read_text())
        return float(config.get("scaling_factor", 0.18215))
    except (OSError, ValueError, TypeError):
        return 0.18215
