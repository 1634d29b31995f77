"""What the loader nodes offer in their combo boxes (torch-free; never builds or loads a model).

``<models>/checkpoints`` and ``<models>/loras`` (``models.models_root()``) are listed with
relative ``/`` paths, as ComfyUI lists its ``models/`` folders. The built-in ``vortex-tiny`` is
always first, so a fresh install has a working default.
"""

from __future__ import annotations

from pathlib import Path

from .models import TINY_NAME, models_root

CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth")
LORA_SUFFIXES = (".safetensors",)


def _files(folder: Path, suffixes: tuple[str, ...]) -> list[str]:
    if not folder.is_dir():
        return []
    names = []
    for path in folder.rglob("*"):
        rel = path.relative_to(folder).as_posix()
        if rel.startswith(".") or "/." in rel:
            continue
        if (path.is_file() and path.suffix in suffixes) or (path.is_dir() and (path / "model_index.json").is_file()):
            names.append(rel)
    return sorted(names)


def checkpoint_names() -> list[str]:
    return [TINY_NAME] + [n for n in _files(models_root() / "checkpoints", CHECKPOINT_SUFFIXES) if n != TINY_NAME]


def lora_names() -> list[str]:
    return _files(models_root() / "loras", LORA_SUFFIXES)
