"""The built-in tiny upscale model: an ESRGAN (RRDBNet) with seeded weights, 4x, offline.

``tiny_upscale()`` returns the path of ``vortex-tiny-upscale-x4.safetensors``, building it on
first use under the models root (``models.models_root()``), like ``vortex-tiny``: under a file
lock (concurrent builders wait, then reuse), written to a temporary sibling and renamed into
place, so a crash never leaves half a file. UpscaleModelLoader lists the name first and
resolves it here (``upscale.model_path``).

The file is in the ORIGINAL ESRGAN key layout (``model.0`` first conv, ``model.1.sub.<i>.RDB<r>.
conv<k>.0`` the residual-in-residual dense blocks, ``model.1.sub.<nb>`` the trunk conv, then
``model.3`` / ``model.6`` the two upsampling convs, ``model.8`` the HR conv, ``model.10`` the
last conv), which spandrel recognises as ESRGAN, scale 4, from the keys and shapes alone.

The weights are not pure noise: an RGB path runs through the net (centre taps of 1 on the
first three channels; the upsampling convs carry a 3x3 binomial blur after spandrel's nearest
upsampling), so the output is a smooth 4x enlargement of the input plus the seeded random
residual of the dense blocks and the other channels. A picture stays recognisable after it,
and tiling seams would show. 8 features, 1 block, growth 32 (spandrel's fixed growth): ~0.23M
params, ~0.9 MB; a 64x64 image upscales to 256x256 in a fraction of a second on one CPU thread.

Byte-identical on every machine: weights from a seeded ``torch.Generator`` in a fixed key
order, and ONE metadata key with sorted JSON (safetensors writes several in random order).

>>> tiny_upscale().name                 # doctest: +SKIP
'vortex-tiny-upscale-x4.safetensors'
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from . import models

__all__ = ["TINY_UPSCALE_NAME", "is_builtin", "tiny_upscale", "tiny_upscale_state"]

TINY_UPSCALE_NAME = "vortex-tiny-upscale-x4.safetensors"
#: Bump when the weights or the layout change: an older file is rebuilt, never reused.
BUILD_VERSION = 1
FEATURES, BLOCKS, GROWTH, SCALE = 8, 1, 32, 4
_META_KEY = "vortex_upscale"


def is_builtin(name: object) -> bool:
    return name == TINY_UPSCALE_NAME


def _marker(seed: int) -> dict[str, Any]:
    return {"version": BUILD_VERSION, "arch": "ESRGAN", "features": FEATURES, "blocks": BLOCKS,
            "scale": SCALE, "seed": seed}


def _path(root: Path, seed: int) -> Path:
    return root / (TINY_UPSCALE_NAME if seed == 0 else TINY_UPSCALE_NAME.replace("-x4", f"-s{seed}-x4"))


def _is_built(path: Path, seed: int) -> bool:
    from ...errors import ModelError
    from .families import read_header

    try:
        meta = read_header(path)[1]
        return bool(json.loads(meta.get(_META_KEY, "null")) == _marker(seed))
    except (ModelError, OSError, ValueError):
        return False


def tiny_upscale(cache_dir: str | os.PathLike[str] | None = None, *, seed: int = 0) -> Path:
    """The tiny 4x ESRGAN file, built on first use (see the module docstring)."""
    root = Path(cache_dir) if cache_dir is not None else models.models_root()
    path = _path(root, seed)
    if path.is_file() and _is_built(path, seed):
        return path
    from filelock import FileLock

    try:
        root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path.with_suffix(".lock"))):
            if not (path.is_file() and _is_built(path, seed)):  # another process may have built it
                write(path, seed)
    except OSError as exc:
        from ...errors import ModelError

        raise ModelError(f"cannot build the tiny upscale model in {str(root)!r}: {exc}",
                         hint="point VORTEX_MODELS_DIR at a writable folder") from exc
    return path


def write(path: Path, seed: int = 0) -> None:
    """Write the file atomically: a temporary sibling, then ``os.replace``."""
    from safetensors.torch import save_file

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        meta = {_META_KEY: json.dumps(_marker(seed), sort_keys=True)}
        save_file(tiny_upscale_state(seed), str(tmp), metadata=meta)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _shapes() -> list[tuple[str, tuple[int, ...]]]:
    """Every conv of the net, in file order: (key prefix, weight shape)."""
    nf, gc = FEATURES, GROWTH
    convs: list[tuple[str, tuple[int, ...]]] = [("model.0", (nf, 3, 3, 3))]
    for block in range(BLOCKS):
        for rdb in (1, 2, 3):
            for k in range(1, 6):
                out = gc if k < 5 else nf
                convs.append((f"model.1.sub.{block}.RDB{rdb}.conv{k}.0", (out, nf + (k - 1) * gc, 3, 3)))
    convs.append((f"model.1.sub.{BLOCKS}", (nf, nf, 3, 3)))
    convs += [("model.3", (nf, nf, 3, 3)), ("model.6", (nf, nf, 3, 3)), ("model.8", (nf, nf, 3, 3)),
              ("model.10", (3, nf, 3, 3))]
    return convs


def tiny_upscale_state(seed: int = 0) -> dict[str, Any]:
    """The state dict: seeded uniform weights (``1/sqrt(fan_in)`` bounds, the dense blocks x0.1
    as ESRGAN initialises them, the rest x0.05), zero biases, and the RGB path on top."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    blur = torch.tensor([1.0, 2.0, 1.0])
    blur = (blur[:, None] * blur[None, :]) / 16.0
    state: dict[str, Any] = {}
    for prefix, shape in _shapes():
        fan_in = shape[1] * shape[2] * shape[3]
        gain = 0.1 if ".sub." in prefix else 0.05
        weight = (torch.rand(shape, generator=gen) * 2 - 1) * (gain / fan_in ** 0.5)
        if prefix in ("model.0", "model.8", "model.10"):
            for c in range(3):
                weight[c, c, 1, 1] += 1.0
        elif prefix in ("model.3", "model.6"):  # after a nearest 2x: blur the RGB channels
            for c in range(3):
                weight[c, c] += blur
        state[f"{prefix}.weight"] = weight.contiguous()
        state[f"{prefix}.bias"] = torch.zeros(shape[0])
    return state
