"""The tiny SD3 and Flux models as split files, in the layouts ComfyUI's split loaders read.

Like ``models.tiny_split_files`` for SD1: cut from the tiny models' single files
(``tiny_flow.tiny_flow_single_file``) without changing a tensor, so UNETLoader + the CLIP
loaders + VAELoader render bit for bit what CheckpointLoaderSimple renders. Next to the single
files under the models root::

    vortex-tiny-sd3-transformer.safetensors   the MMDiT, Stability's names, no prefix
    vortex-tiny-flux-transformer.safetensors  the Flux transformer, Black Forest Labs' names
    vortex-tiny-clip-l.safetensors            CLIP-L (``text_model.*`` + ``text_projection``)
    vortex-tiny-clip-g.safetensors            OpenCLIP-G (transformers' names)
    vortex-tiny-t5.safetensors                the tiny T5 (``shared.weight``, ``encoder.*``)
    vortex-tiny-sd3-vae.safetensors           the 16-channel VAEs in ldm names; SD3's and
    vortex-tiny-flux-ae.safetensors           Flux's differ only in scaling and shift

The tiny SD3 and Flux models are seeded alike, so their CLIP-L, T5 and VAE weights are the
same tensors: one CLIP-L and one T5 file serve both (the writer checks this). Each file carries
its diffusers config in ``vortex_configs`` (sorted JSON, one key: byte-identical builds), under
the key that names its role (``flow_families.CONFIG_KEY``), with ``"tokenizers": "builtin"``
on the text encoders. Written on first use under a file lock, each through a temporary file
renamed into place; rebuilt when a single file is newer.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

#: name -> (split part, the tiny model it is cut from, its config key in that single file)
FILES: dict[str, tuple[str, str, str]] = {
    "vortex-tiny-sd3-transformer.safetensors": ("unet", "sd3", "transformer"),
    "vortex-tiny-flux-transformer.safetensors": ("unet", "flux", "transformer"),
    "vortex-tiny-clip-l.safetensors": ("clip", "sd3", "text_encoder"),
    "vortex-tiny-clip-g.safetensors": ("clip", "sd3", "text_encoder_2"),
    "vortex-tiny-t5.safetensors": ("clip", "sd3", "t5"),
    "vortex-tiny-sd3-vae.safetensors": ("vae", "sd3", "vae"),
    "vortex-tiny-flux-ae.safetensors": ("vae", "flux", "vae"),
}
#: The role of each built-in text encoder file (SD1's CLIP-L too), known before it is built.
CLIP_ROLES = {"vortex-tiny-clip.safetensors": "clip_l", "vortex-tiny-clip-l.safetensors": "clip_l",
              "vortex-tiny-clip-g.safetensors": "clip_g", "vortex-tiny-t5.safetensors": "t5"}


def names(part: str) -> list[str]:
    """The built-in names a loader of ``part`` ("unet", "clip", "vae") lists."""
    return [name for name, (p, _, _) in FILES.items() if p == part]


def tiny_flow_split_files(cache_dir: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """Every file of ``FILES`` by name, built on first use.

    >>> tiny_flow_split_files()["vortex-tiny-t5.safetensors"].name  # doctest: +SKIP
    'vortex-tiny-t5.safetensors'
    """
    from .tiny_flow import tiny_flow_single_file

    singles = {family: tiny_flow_single_file(family, cache_dir) for family in ("sd3", "flux")}
    paths = {name: singles["sd3"].with_name(name) for name in FILES}
    if _fresh(singles, paths):
        return paths
    from filelock import FileLock

    with FileLock(str(singles["sd3"].with_name("vortex-tiny-flow-split.lock"))):
        if not _fresh(singles, paths):
            _write(singles, paths)
    return paths


def _fresh(singles: dict[str, Path], paths: dict[str, Path]) -> bool:
    try:
        stamp = max(p.stat().st_mtime_ns for p in singles.values())
        return all(p.stat().st_mtime_ns >= stamp for p in paths.values())
    except OSError:
        return False


def _write(singles: dict[str, Path], paths: dict[str, Path]) -> None:
    from safetensors.torch import save_file

    from .flow_files import TEXT, TRANSFORMER, VAE

    prefixes = {"transformer": TRANSFORMER, **TEXT}
    states = {family: _read(path) for family, path in singles.items()}
    _check_shared(states)
    for name, (_, family, key) in FILES.items():
        tensors, configs = states[family]
        prefix = VAE[family] if key == "vae" else prefixes[key]
        state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        meta: dict[str, Any] = {key: configs[key]}
        if key in ("transformer", "vae"):
            meta["family"] = family
        else:
            meta["tokenizers"] = "builtin"
        tmp = paths[name].with_name(f".{name}.{uuid.uuid4().hex[:8]}")
        try:
            save_file(state, str(tmp), metadata={"vortex_configs": json.dumps(meta, sort_keys=True)})
            os.replace(tmp, paths[name])
        finally:
            tmp.unlink(missing_ok=True)


def _read(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        configs = json.loads((f.metadata() or {})["vortex_configs"])
        return {k: f.get_tensor(k) for k in f.keys()}, configs  # noqa: SIM118  (safe_open is no dict)


def _check_shared(states: dict[str, tuple[dict[str, Any], dict[str, Any]]]) -> None:
    """The Flux model's CLIP-L (without SD3's projection), T5 and VAE weights are SD3's."""
    import torch

    from .flow_files import TEXT, VAE

    def part(family: str, prefix: str) -> dict[str, Any]:
        return {k[len(prefix):].removeprefix("text_model."): v for k, v in states[family][0].items()
                if k.startswith(prefix) and "text_projection" not in k}

    for sd3_prefix, flux_prefix in ((TEXT["text_encoder"],) * 2, (TEXT["t5"],) * 2, (VAE["sd3"], VAE["flux"])):
        a, b = part("sd3", sd3_prefix), part("flux", flux_prefix)
        if a.keys() != b.keys() or not all(torch.equal(a[k], b[k]) for k in a):
            raise RuntimeError(f"the tiny SD3 and Flux models no longer share {flux_prefix!r}: give each "
                               "family its own split file")
