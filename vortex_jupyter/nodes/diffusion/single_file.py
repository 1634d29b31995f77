"""Single-file checkpoints (original SD key layout) -> diffusers modules, offline and safely.

Reading: ``.safetensors`` through safetensors (a corrupt or truncated header is a
``ModelError``); ``.ckpt``/``.pt`` ONLY through ``torch.load(weights_only=True)``, which refuses
to run code hidden in a pickle (that refusal becomes a ``ModelError`` too).

Configs: the UNet/VAE layout cannot be read from the weights alone, so diffusers'
``from_single_file`` takes ``config=<a local diffusers folder>``. We build that folder from
the configs the file carries in its metadata (files written by ``models.write_single_file``),
else from SD1.5's configs; it is written once per config hash under
``<models>/.configs/<hash>/`` together with the package's offline tokenizer.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ...errors import ModelError
from ...workers.arbiter import MemoryArbiter
from . import families, ldm, models
from .components import ClipHandle, Component, ModelHandle, VaeHandle, device_and_dtype, quiet_progress

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl")
SAFETENSORS_SUFFIXES = (".safetensors", ".sft")  # .sft: the same format, a shorter name


def read_state_dict(path: Path, prefixes: tuple[str, ...] = ("",)) -> tuple[dict[str, Any], dict[str, str]]:
    """Tensors (those whose names start with one of ``prefixes``; pickles: all) and metadata of
    a checkpoint file; ModelError if missing, corrupt or unsafe."""
    if not path.is_file():
        raise ModelError(f"checkpoint file {str(path)!r} does not exist", hint="check the file name")
    if path.suffix.lower() in SAFETENSORS_SUFFIXES:
        return _read_safetensors(path, prefixes)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return _read_pickle(path)
    raise ModelError(f"checkpoint {path.name!r} has an unknown suffix {path.suffix!r}",
                     hint="use a .safetensors file (or a .ckpt, loaded with weights_only=True)")


def _read_safetensors(path: Path, prefixes: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            all_names = list(f.keys())  # safe_open is not a dict: no `in` over it
            names = [k for k in all_names if k.startswith(prefixes)]
            return {k: f.get_tensor(k) for k in names}, meta
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"checkpoint {path.name!r} is not a valid safetensors file: {exc}",
                         hint="the file is corrupt or truncated; download or copy it again") from exc


def _read_pickle(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    import pickle

    import torch

    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ModelError(f"checkpoint {path.name!r} is a pickle that wants to run code or build "
                         f"objects other than tensors, which we refuse: {str(exc).splitlines()[0]}",
                         hint="convert it to .safetensors with a trusted tool, or get a .safetensors release"
                         ) from exc
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise ModelError(f"checkpoint {path.name!r} could not be read: {exc}",
                         hint="the file is corrupt or not a PyTorch checkpoint") from exc
    meta: dict[str, str] = {}
    while isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        if isinstance(data.get("vortex_configs"), str):  # our configs, as in safetensors metadata
            meta["vortex_configs"] = data["vortex_configs"]
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise ModelError(f"checkpoint {path.name!r} holds a {type(data).__name__}, not a state dict")
    return data, meta


def config_folder(meta: dict[str, str]) -> Path:
    """A local diffusers config folder for the file's configs (metadata, else SD1.5)."""
    configs: dict[str, Any]
    if "vortex_configs" in meta:
        try:
            configs = json.loads(meta["vortex_configs"])
        except ValueError as exc:
            raise ModelError(f"checkpoint metadata 'vortex_configs' is not JSON: {exc}") from exc
    else:
        sd15 = models.sd15_configs()
        configs = {"unet": sd15["unet"], "vae": sd15["vae"], "text_encoder": sd15["text_encoder"]}
    digest = hashlib.sha256(json.dumps(configs, sort_keys=True).encode()).hexdigest()[:16]
    folder = models.models_root() / ".configs" / digest
    if not (folder / "model_index.json").is_file():
        _write_config_folder(folder, configs)
    return folder


def _write_config_folder(folder: Path, configs: dict[str, Any]) -> None:
    import contextlib
    import os
    import shutil
    import uuid

    from .tokenizer import write_tokenizer

    tmp = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}")
    try:
        for sub in ("unet", "vae", "text_encoder"):
            (tmp / sub).mkdir(parents=True)
            cfg = dict(configs[sub])
            if sub == "text_encoder":
                cfg.setdefault("architectures", ["CLIPTextModel"])
                cfg.setdefault("model_type", "clip_text_model")
            (tmp / sub / "config.json").write_text(json.dumps(cfg))
        write_tokenizer(tmp / "tokenizer")
        (tmp / "scheduler").mkdir()
        (tmp / "scheduler" / "scheduler_config.json").write_text(json.dumps(models.tiny_configs()["scheduler"]))
        (tmp / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
        with contextlib.suppress(OSError):  # another process won the race; same content
            os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_layout(name: str, state: dict[str, Any]) -> None:
    counts = ldm.split_kind(state)
    missing = [k for k in ("unet", "vae", "clip") if counts[k] == 0]
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing:
        raise ModelError(f"checkpoint {name!r} is not a full SD1 checkpoint: no {', '.join(missing)} weights "
                         f"(keys under {ldm.UNET_PREFIX!r}, {ldm.VAE_PREFIX!r}, {ldm.CLIP_PREFIX!r})",
                         hint="CheckpointLoaderSimple needs UNet, VAE and text encoder in one file")


PARTS = ("unet", "vae", "text_encoder")
_PREFIX = {"unet": ldm.UNET_PREFIX, "vae": ldm.VAE_PREFIX, "text_encoder": ldm.CLIP_PREFIX}


def load_modules(path: Path, parts: tuple[str, ...] = PARTS) -> dict[str, Any]:
    """The requested modules of a single file, on CPU in fp32 (only their tensors are read)."""
    quiet_progress()
    names, _ = _peek(path)
    _check_layout(path.name, dict.fromkeys(names))
    state, meta = read_state_dict(path, tuple(_PREFIX[p] for p in parts))
    cfg = config_folder(meta)
    out: dict[str, Any] = {}
    for part in parts:
        sub = {k: v for k, v in state.items() if k.startswith(_PREFIX[part])}
        try:
            out[part] = _build(part, sub, cfg)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise ModelError(f"checkpoint {path.name!r}: its {part} does not match the SD1 config: {exc}",
                             hint="only SD1-family single files are supported; use a diffusers folder otherwise"
                             ) from exc
    return out


def _build(part: str, state: dict[str, Any], cfg: Path) -> Any:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    if part in ("unet", "vae"):
        cls = UNet2DConditionModel if part == "unet" else AutoencoderKL
        return cls.from_single_file(state, config=str(cfg), subfolder=part, local_files_only=True)
    text = CLIPTextModel(CLIPTextConfig.from_pretrained(str(cfg / "text_encoder")))
    prefixed = any(k.startswith("text_model.") for k in text.state_dict())
    missing, _ = text.load_state_dict(ldm.clip_from_ldm(state, text_model_prefix=prefixed), strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing:
        raise KeyError(f"text encoder weights missing: {missing[:3]}")
    return text


def load_single_file_handles(name: str, path: Path, arbiter: MemoryArbiter | None
                             ) -> tuple[ModelHandle, ClipHandle, VaeHandle]:
    """MODEL/CLIP/VAE handles for a single file; each component reads only its own tensors
    (safetensors reads lazily, so the file's other parts are never loaded for it)."""

    if path.suffix.lower() in SAFETENSORS_SUFFIXES:
        from .flow_files import checkpoint_family, load_flow_single_file

        shapes, header_meta = families.read_header(path)
        flow = checkpoint_family(shapes)
        if flow is not None:  # SD3 / Flux
            return load_flow_single_file(name, path, flow, arbiter)
        from .sdxl_loader import is_refiner_file, load_refiner_handles

        if is_refiner_file(shapes):
            return load_refiner_handles(name, path, arbiter)
        if families.is_sdxl_unet(shapes, header_meta):
            from .sdxl_loader import load_sdxl_handles

            return load_sdxl_handles(name, path, arbiter)
    from . import clip_tokenizer

    _, meta = _peek(path)
    cfg = config_folder(meta)
    tokenizer = clip_tokenizer.for_file("vortex_configs" in meta, path.name)
    sched = json.loads((cfg / "scheduler" / "scheduler_config.json").read_text())
    device, dtype = device_and_dtype()
    size = path.stat().st_size
    key = f"{path.resolve()}|{path.stat().st_mtime_ns}|{device}|{dtype}"

    def part(name: str) -> Any:
        def load() -> Any:
            module = load_modules(path, (name,))[name]
            return module.to(device=device, dtype=dtype).eval().requires_grad_(False)
        return load

    unet = Component(f"{key}|unet", part("unet"), size, arbiter)
    vae = Component(f"{key}|vae", part("vae"), size // 10, arbiter)
    text = Component(f"{key}|text_encoder", part("text_encoder"), size // 10, arbiter)
    scaling = float(json.loads((cfg / "vae" / "config.json").read_text()).get("scaling_factor", 0.18215))
    return ModelHandle(name, unet, sched), ClipHandle(name, text, tokenizer), VaeHandle(name, vae, scaling)


def _peek(path: Path) -> tuple[list[str], dict[str, str]]:
    """Key names and metadata without reading tensors (validates the header early)."""
    if path.suffix.lower() not in SAFETENSORS_SUFFIXES:
        state, meta = read_state_dict(path)
        return list(state), meta
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return list(f.keys()), f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"checkpoint {path.name!r} is not a valid safetensors file: {exc}",
                         hint="the file is corrupt or truncated; download or copy it again") from exc
