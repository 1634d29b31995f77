"""What an output image records about how it was made, and how ``vortex reproduce`` checks it.

Every image SaveImage writes carries, in a ``vortex`` PNG text chunk next to ComfyUI's
``prompt`` and ``workflow``::

    {"format": 1, "node": "9", "keys": {node: cache key},
     "environment": {"vortex-jupyter": ..., "python": ..., "torch": ..., "diffusers": ...,
                     "transformers": ..., "numpy": ..., "machine": "x86_64", "devices": ["cpu"],
                     "threads": 2, "dtype": "", "core_lock": sha256 of the core's pinned versions,
                     "packs": {name: {"version": ..., "lock": sha256 of its env's lock}}},
     "models": {"ckpt_name=vortex-tiny": sha256 of the file, ...}, "seeds": {node: seed}}

``compare`` lists every difference between a recorded environment and this one, in words.
Model files are hashed once per (path, size, mtime) through the history file's cache.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

FORMAT = 1
VERSIONED = ("vortex-jupyter", "torch", "diffusers", "transformers", "numpy", "safetensors", "pillow")
#: widget params that name a model file, and the folder kind they are looked up in
MODEL_PARAMS = {"ckpt_name": "checkpoints", "vae_name": "vae", "lora_name": "loras", "unet_name": "diffusion_models",
                "clip_name": "text_encoders", "clip_name1": "text_encoders", "clip_name2": "text_encoders",
                "clip_name3": "text_encoders", "control_net_name": "controlnet", "model_name": "upscale_models",
                "style_model_name": "style_models", "embedding": "embeddings"}


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return ""


@functools.lru_cache(maxsize=1)
def _static() -> dict[str, Any]:
    from ..packages.lock import core_pins

    pins = "".join(f"{n}=={v}\n" for n, v in core_pins().items())
    env = {name: _version(name) for name in VERSIONED}
    env.update(python=platform.python_version(), machine=platform.machine(), system=platform.system(),
               core_lock=hashlib.sha256(pins.encode()).hexdigest()[:16])
    return env


def environment(packs: set[str] | None = None) -> dict[str, Any]:
    """This process's environment as a record (``packs``: only those node packs; None: all)."""
    from ..workers.supervisor import default_devices

    env = dict(_static())
    threads = os.environ.get("VORTEX_WORKER_THREADS", "").strip()
    env.update(devices=default_devices(), threads=int(threads) if threads.isdigit() and int(threads) else
               (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()),
               dtype=os.environ.get("VORTEX_DTYPE", ""), device=os.environ.get("VORTEX_DEVICE", ""))
    env["packs"] = _packs(packs)
    return env


def _packs(only: set[str] | None) -> dict[str, Any]:
    if only is not None and not only:
        return {}
    try:
        from ..packages.envs import PackStore

        store = PackStore.default()
        out = {}
        for key, entry in store.packs().items():
            if only is not None and key not in only:
                continue
            lock = store.lock_path(entry["env"])
            digest = hashlib.sha256(lock.read_bytes()).hexdigest()[:16] if lock.is_file() else ""
            out[key] = {"version": entry.get("version", ""), "lock": digest}
        return out
    except Exception:
        return {}


def _hash(path: Path) -> str:
    from .db import open_history, sha256_file

    try:
        hist = open_history()
    except Exception:
        hist = None
    return hist.file_hash(path) if hist is not None else sha256_file(path)


def model_path(kind: str, name: str) -> Path | None:
    """The file a model param names (a built-in model's single file too), if it exists."""
    try:
        from ..nodes.diffusion import folders
        from ..nodes.diffusion.models import models_root
    except ImportError:
        return None
    try:
        return folders.find(kind, name, "model")
    except Exception:
        builtin = models_root() / f"{name}.safetensors"
        return builtin if builtin.is_file() else None


def model_files(model: Any) -> dict[str, str]:
    """``{"param=name": sha256}`` of every model file the graph's widgets name."""
    out: dict[str, str] = {}
    for node in model.nodes.values():
        for param, kind in MODEL_PARAMS.items():
            name = node.params.get(param)
            if isinstance(name, str) and name and f"{param}={name}" not in out:
                path = model_path(kind, name)
                if path is not None and path.is_file():
                    out[f"{param}={name}"] = _hash(path)
    return out


def record(model: Any, keys: dict[str, str], lookup: Any = None) -> dict[str, Any]:
    """The record of a run of ``model`` (without ``node``: the writing node adds it)."""
    from .recorder import seeds_and_prompts

    packs: set[str] = set()
    if lookup is not None:
        for node in model.nodes.values():
            spec = lookup(node.type)
            pack = str(getattr(spec, "pack", "") or "")
            if pack:
                packs.add(pack)
    return {"format": FORMAT, "keys": dict(keys), "environment": environment(packs),
            "models": model_files(model), "seeds": seeds_and_prompts(model)[0]}


def compare(recorded: dict[str, Any], current: dict[str, Any] | None = None) -> list[str]:
    """Every difference between a recorded environment (``record["environment"]``) and this one."""
    current = environment() if current is None else current
    diffs = []
    for key in sorted(set(recorded) | set(current)):
        if key == "packs":
            continue
        was, now = recorded.get(key), current.get(key)
        if was != now:
            diffs.append(f"{key}: recorded {was!r}, here {now!r}")
    was_packs, now_packs = recorded.get("packs", {}) or {}, current.get("packs", {}) or {}
    for name in sorted(was_packs):
        if name not in now_packs:
            diffs.append(f"node pack {name}: recorded {was_packs[name].get('version')}, not installed here "
                         f"(`vtx install` it)")
        elif was_packs[name] != now_packs[name]:
            diffs.append(f"node pack {name}: recorded {was_packs[name]}, here {now_packs[name]}")
    return diffs


def compare_models(recorded: dict[str, str], model: Any) -> list[str]:
    now = model_files(model)
    diffs = []
    for key, digest in sorted(recorded.items()):
        here = now.get(key)
        if here is None:
            diffs.append(f"model {key}: recorded sha256 {digest[:16]}..., missing here")
        elif here != digest:
            diffs.append(f"model {key}: recorded sha256 {digest[:16]}..., here {here[:16]}...")
    return diffs
