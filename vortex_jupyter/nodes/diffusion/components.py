"""What loaders hand out: ``Component`` (a module loaded on demand through the memory arbiter)
and the MODEL / CLIP / VAE handles built from components, plus the helpers every loader shares.

The arbiter owns the only strong reference to a loaded module, so evicting it really frees the
memory; the next ``Component.use()`` loads it again. Handles are therefore cheap to keep in the
engine's cache. Handles never cross processes (``Component.__getstate__`` refuses): models stay
in the worker that loaded them.
"""

from __future__ import annotations

import copy
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ...workers.arbiter import MemoryArbiter, get_arbiter
from ..context import current

_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


#: ``VORTEX_DTYPE`` values: the compute dtype on a GPU for every model family.
DTYPES = ("fp16", "bf16", "fp32")


def device_and_dtype(family: str | None = None) -> tuple[str, Any]:
    """Where models run and in which dtype: CUDA when available (``VORTEX_DEVICE`` overrides),
    there fp16, except Flux in bf16 where the GPU has it (Flux's activations overflow fp16, as
    ComfyUI's Flux prefers bf16); ``VORTEX_DTYPE`` (fp16, bf16, fp32) overrides on a GPU. The
    CPU computes in fp32."""
    import torch

    device = os.environ.get("VORTEX_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    if not device.startswith("cuda"):
        return device, torch.float32
    chosen = os.environ.get("VORTEX_DTYPE", "").strip().lower()
    if chosen:
        if chosen not in DTYPES:
            from ...errors import ModelError

            raise ModelError(f"VORTEX_DTYPE is {chosen!r}", hint=f"set it to one of {', '.join(DTYPES)}, or unset it")
        return device, {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[chosen]
    if family == "flux" and torch.cuda.is_bf16_supported():
        return device, torch.bfloat16
    return device, torch.float16


def module_bytes(module: Any) -> int:
    tensors = list(module.parameters()) + list(module.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


class Component:
    """A module loaded on demand through the arbiter; reloaded after an eviction."""

    def __init__(self, key: str, load: Callable[[], Any], est_bytes: int,
                 arbiter: MemoryArbiter | None = None, device: str | None = None) -> None:
        self.key, self._load, self.est_bytes = key, load, est_bytes
        self._arbiter = arbiter
        #: where the module runs; None: ``device_and_dtype()`` (CLIPLoader's device="cpu" pins it)
        self.device = device
        self.loads = 0  # how often this recipe actually loaded (tests count reloads)
        #: "unet of /path/vortex-tiny|cpu|..." for errors: the component, then where it is from.
        self.label = " of ".join(reversed(key.rsplit("|", 1))) if "|" in key else key

    @property
    def arbiter(self) -> MemoryArbiter:
        return self._arbiter if self._arbiter is not None else get_arbiter()

    def get(self) -> Any:
        arb = self.arbiter
        with _lock_for(self.key):
            device = self.device or device_and_dtype()[0]
            module = arb.get(self.key)
            if module is not None and _device_kind(module) != device.split(":")[0]:
                self._track(arb, module.to(device), device)  # offloaded to the host: bring it back
            if module is not None:
                return module
            node = current().node_id
            arb.request(self.est_bytes, device, node=node, what=f"loading {self.label}")
            module = arb.run_with_oom_retry(self._load, node=node, device=device, nbytes=self.est_bytes)
            self.loads += 1
            self._track(arb, module, device)
            return module

    def _track(self, arb: MemoryArbiter, module: Any, device: str) -> None:
        holder = {"m": module}
        arb.track(self.key, module, module_bytes(module), device,
                  drop=holder.clear, move=lambda dev: holder["m"].to(dev))

    @contextmanager
    def use(self) -> Iterator[Any]:
        """The module, pinned (not evictable) while the block runs."""
        module = self.get()
        with self.arbiter.pinned(self.key):
            yield module

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("models stay in the worker that loaded them; they are not sent across processes")


def _device_kind(module: Any) -> str:
    device = getattr(module, "device", None)
    return str(getattr(device, "type", device or "cpu"))


def _lock_for(key: str) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, threading.Lock())


@dataclass
class ModelHandle:  # MODEL
    name: str
    unet: Component
    scheduler_config: dict[str, Any]
    loras: tuple[tuple[str, float], ...] = ()
    #: ComfyUI's ``model_options`` that patch nodes set on a clone (``sampler_cfg_function``:
    #: RescaleCFG); never mutated, a patch node makes a new handle with a new dict.
    options: dict[str, Any] = field(default_factory=dict)
    #: The model family (``families.py``): "sd1", "sdxl", "sd3" or "flux"; it decides how the
    #: denoiser is called (``guiders.model_apply``) and what a prompt must carry.
    family: str = "sd1"

    def __repr__(self) -> str:
        return f"<MODEL {self.name}{''.join(f' +{n}@{s:g}' for n, s in self.loras)}>"


@dataclass
class ClipHandle:  # CLIP
    name: str
    encoder: Component
    tokenizer: Any
    loras: tuple[tuple[str, float], ...] = ()
    #: CLIPSetLastLayer's ``stop_at_clip_layer`` (-1 last, -2 penultimate, ...); None: the last
    #: layer, as SD1 uses. The final layer norm is applied either way (ComfyUI's SD1 CLIP).
    layer: int | None = None
    #: SDXL's second text encoder (OpenCLIP-G, with projection); None for SD1.
    encoder_2: Component | None = None
    #: The T5 encoder of SD3 / Flux (``t5.py``) and its tokenizer; None for SD1/SDXL.
    t5: Component | None = None
    t5_tokenizer: Any = None
    #: How prompts are encoded: "" (SD1, or SDXL when ``encoder_2`` is set), "sd3" (CLIP-L,
    #: OpenCLIP-G and T5, any of them missing) or "flux" (CLIP-L pooled + T5).
    kind: str = ""

    def __repr__(self) -> str:
        return f"<CLIP {self.name}>"


@dataclass
class VaeHandle:  # VAE
    name: str
    vae: Component
    scaling_factor: float = 0.18215
    extra: dict[str, Any] = field(default_factory=dict)
    #: Subtracted before scaling when encoding (SD3: 0.0609, Flux: 0.1159; 0 for SD1/SDXL).
    shift_factor: float = 0.0

    def __repr__(self) -> str:
        return f"<VAE {self.name}>"


def oom_guard(fn: Callable[[], Any], device: Any, arbiter: MemoryArbiter | None = None) -> Any:
    """Run a node's heavy work; on OOM evict cached models, retry once, then fail with VE-503."""
    arb = arbiter if arbiter is not None else get_arbiter()
    return arb.run_with_oom_retry(fn, node=current().node_id, device=str(device))


def quiet_progress() -> None:
    """Loading bars from diffusers/transformers would spam worker logs and the notebook."""
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    dlog.disable_progress_bar()
    tlog.disable_progress_bar()
    dlog.set_verbosity_error()


def patched(handle: Any, comp_attr: str, suffix: str, patch: Callable[[Any], object]) -> Component:
    """A new Component: a deep copy of ``handle``'s module with ``patch`` applied (LoRA)."""
    base: Component = getattr(handle, comp_attr)

    def load() -> Any:
        with base.use() as module:
            clone = copy.deepcopy(module)
        patch(clone)
        return clone

    return Component(f"{base.key}{suffix}", load, base.est_bytes, base._arbiter, base.device)
