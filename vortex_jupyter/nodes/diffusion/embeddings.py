"""Textual-inversion embeddings for ``embedding:name`` in prompts, from ComfyUI's ``embeddings`` folders.

Lookup (ComfyUI's ``load_embed``): every ``embeddings`` folder (``folders.folders``: the models
root's ``embeddings/`` and those of ``extra_model_paths.yaml``) and each of its sub-folders, in
order, is tried with ``name`` as given, then ``name`` + ``.safetensors`` / ``.pt`` / ``.bin``;
the first file found wins. Names are checked like every model name (relative, no ``..``).

Reading: ``.safetensors`` through safetensors; anything else ONLY through
``torch.load(weights_only=True)``, which refuses pickles that want to run code (ComfyUI then
tries reading raw floats out of the zip; we do not). The vectors are taken, in ComfyUI's order,
from ``string_to_param`` (A1111 ``.pt``), a list of dicts (rows of the encoder's width),
the ``clip_l`` key (SDXL-style files), ``bundle_emb.*.string_to_param.*`` / ``bundle_emb.*.clip_l``
(embeddings bundled in a LoRA), else the file's first tensor (``emb_params`` of A1111
``.safetensors``). A file that cannot be read is skipped with a warning, as in ComfyUI.

Warnings go to the ``vortex_jupyter.models`` logger and to the running node's progress text
(``context.current().progress(..., text=...)``), so a run's events show them.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ...errors import ModelError
from ..context import current
from . import folders

log = logging.getLogger("vortex_jupyter.models")
SUFFIXES = (".safetensors", ".pt", ".bin")
_CACHE: dict[tuple[str, int, int], Any] = {}


def warn(message: str) -> None:
    """A warning the user sees: logged (as ComfyUI does) and shown as the node's progress text."""
    log.warning(message)
    current().progress(0, None, text=message)


def search_dirs() -> list[Path]:
    """Every embeddings folder, each followed by its sub-folders (sorted, symlinks followed)."""
    out: list[Path] = []
    for base in folders.folders("embeddings", strict=False):
        if not base.is_dir():
            continue
        out.append(base)
        for dirpath, subdirs, _files in os.walk(base, followlinks=True):
            subdirs.sort()
            out.extend(Path(dirpath, d) for d in subdirs)
    return out


def find(name: str) -> Path | None:
    """The file of embedding ``name``, or None (an unsafe name is warned about and not found)."""
    try:
        folders.check_name("embeddings", name, "embedding")
    except ModelError as exc:
        warn(f"warning, embedding:{name} is not a safe name ({exc.message}), ignoring")
        return None
    for folder in search_dirs():
        path = folder / name
        if path.is_file():
            return path
        for suffix in SUFFIXES:
            candidate = folder / (name + suffix)
            if candidate.is_file():
                return candidate
    return None


def load(name: str, width: int, key: str = "clip_l") -> Any:
    """``[n, width?]`` float tensor of embedding ``name``, or None (missing or unreadable)."""
    path = find(name)
    if path is None:
        return None
    st = path.stat()
    stamp = (str(path), st.st_mtime_ns, st.st_size)
    if stamp not in _CACHE:
        _CACHE[stamp] = _read(path, name, width, key)
    return _CACHE[stamp]


def _read(path: Path, name: str, width: int, key: str) -> Any:
    import torch

    try:
        data = _load_file(path)
        vectors = _vectors(data, width, key)
    except Exception as exc:  # ComfyUI: any failure skips the embedding with a warning
        warn(f"error loading embedding {name!r} ({path}), skipping: {type(exc).__name__}: {exc}")
        return None
    if not isinstance(vectors, torch.Tensor) or vectors.ndim == 0:
        warn(f"error loading embedding {name!r} ({path}), skipping: it holds no vectors")
        return None
    return vectors.detach().to("cpu", torch.float32).reshape(-1, vectors.shape[-1])


def _load_file(path: Path) -> Any:
    import torch

    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    return torch.load(str(path), map_location="cpu", weights_only=True)


def _vectors(data: Any, width: int, key: str) -> Any:
    import torch

    if isinstance(data, list):
        rows = [t.reshape(-1, t.shape[-1]) for d in data for t in d.values() if t.shape[-1] == width]
        return torch.cat(rows, dim=0)
    if not isinstance(data, dict):
        raise ValueError(f"the file holds a {type(data).__name__}, not tensors")
    if "string_to_param" in data:
        return next(iter(data["string_to_param"].values()))
    if key in data:
        return data[key]
    for suffix in (".string_to_param.*", f".{key}"):  # "*" is A1111's token key, literally
        bundled = [v for k, v in data.items() if k.startswith("bundle_emb.") and k.endswith(suffix)]
        if bundled:
            return torch.cat(bundled, dim=0)
    return next(iter(data.values()))
