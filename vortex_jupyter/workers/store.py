"""The worker's object store: task key -> the outputs that task produced.

Outputs stay here, as the Python objects the node returned (tensors, models, latents); the
kernel holds only their keys. ``summary`` tells the kernel, at ``Finished`` time, what each
output is: a small msgpack-able value is sent inline (the kernel keeps it even if this worker
dies), anything else is ``["h", type_name, nbytes]`` and fetched on demand.

``export`` turns an output into msgpack with extension leaves: arrays/tensors become
``EXT_TENSOR`` handles into the arena (copied there once, then cached with the entry, or not
copied at all if the node produced them with ``shm.empty``), objects that cannot leave the
worker become ``EXT_OPAQUE`` descriptions. The kernel's ``Release(keys)`` drops entries.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

from . import cuda_ipc
from .protocol import EXT_OPAQUE
from .shm import Arena
from .tensors import export_array, export_torch

#: Inline values up to this many bytes travel in ``Finished`` and live in the kernel.
INLINE_LIMIT = 64 * 1024
_SCALARS = (bool, int, float, str, bytes, type(None))


@dataclass
class Entry:
    outputs: tuple[Any, ...]
    exports: dict[int, Any] = field(default_factory=dict)
    #: Arena blocks copied for exports; alive as long as the entry.
    keep: list[Any] = field(default_factory=list)


def _is_torch(value: Any) -> bool:
    mod = type(value).__module__
    return mod.startswith("torch") and type(value).__name__ in ("Tensor", "Parameter")


def nbytes_of(value: Any, depth: int = 0) -> int:
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if _is_torch(value):
        return int(value.numel() * value.element_size())
    if depth < 3 and isinstance(value, (list, tuple)):
        return sum(nbytes_of(v, depth + 1) for v in value[:1000])
    if depth < 3 and isinstance(value, dict):
        return sum(nbytes_of(v, depth + 1) for v in list(value.values())[:1000])
    try:
        return sys.getsizeof(value)
    except TypeError:
        return 64


def _small(value: Any, budget: list[int], depth: int = 0) -> bool:
    """True if ``value`` is plain msgpack data within the inline budget."""
    if depth > 8:
        return False
    if isinstance(value, _SCALARS):
        if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
            return False
        budget[0] -= len(value) if isinstance(value, (str, bytes)) else 8
        return budget[0] >= 0
    if isinstance(value, (list, tuple)):
        return all(_small(v, budget, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _small(v, budget, depth + 1) for k, v in value.items())
    return False


def movable(value: Any, cpu_only: bool = False, depth: int = 0) -> bool:
    """Whether ``value`` is plain data that can leave the process that made it: arrays, tensors,
    PIL images, scalars, and lists/dicts of them (at most 10,000 items each). Another worker takes
    it by arena handle (``to_wire`` leaves no opaque object in it); ``cpu_only``: CUDA tensors
    stay put too (Ray's object store, ``ray_actor``)."""
    if isinstance(value, (*_SCALARS, np.generic)):
        return True
    if isinstance(value, np.ndarray):
        return not value.dtype.hasobject
    if _is_torch(value):
        return not cpu_only or value.device.type == "cpu"
    if type(value).__module__.startswith("PIL."):
        return True
    if depth >= 16:
        return False
    if isinstance(value, (list, tuple)):
        return len(value) <= 10_000 and all(movable(v, cpu_only, depth + 1) for v in value)
    if isinstance(value, dict):
        return len(value) <= 10_000 and all(isinstance(k, str) and movable(v, cpu_only, depth + 1)
                                            for k, v in value.items())
    return False


def summary(value: Any) -> list[Any]:
    """``["v", value]`` (small: it travels inline) or ``["h", type name, bytes, movable]``."""
    if _small(value, [INLINE_LIMIT]):
        return ["v", value]
    return ["h", type(value).__name__, nbytes_of(value), movable(value)]


def opaque(value: Any) -> msgpack.ExtType:
    text = repr(value) if type(value).__repr__ is not object.__repr__ else f"<{type(value).__name__}>"
    desc = [f"{type(value).__module__}.{type(value).__qualname__}", text[:200], nbytes_of(value)]
    return msgpack.ExtType(EXT_OPAQUE, msgpack.packb(desc))


def to_wire(value: Any, arena: Arena, keep: list[Any], depth: int = 0, cuda: bool = False) -> Any:
    """``value`` as msgpack-able data with EXT_TENSOR / EXT_OPAQUE leaves; ``cuda``: CUDA
    tensors as EXT_CUDA IPC handles (for a worker on the same GPU, ``cuda_ipc``)."""
    if isinstance(value, _SCALARS) and _small(value, [INLINE_LIMIT * 256]):
        return value
    if isinstance(value, np.ndarray) and not value.dtype.hasobject:
        return export_array(value, arena, keep=keep).ext()
    if isinstance(value, np.generic):
        return value.item()
    if _is_torch(value):
        if cuda and value.device.type == "cuda":
            with contextlib.suppress(Exception):  # a tensor torch cannot share: via the host
                return cuda_ipc.export(value)
        return export_torch(value, arena, keep).ext()
    if depth < 16 and isinstance(value, (list, tuple)):
        return [to_wire(v, arena, keep, depth + 1, cuda) for v in value]
    if depth < 16 and isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: to_wire(v, arena, keep, depth + 1, cuda) for k, v in value.items()}
    if type(value).__module__.startswith("PIL."):
        return export_array(np.asarray(value), arena, keep=keep).ext()
    return opaque(value)


class ObjectStore:
    """Thread-safe: the executing thread puts, the control thread fetches and releases."""

    def __init__(self, arena: Arena) -> None:
        self.arena = arena
        self._entries: dict[str, Entry] = {}
        self._lock = threading.Lock()

    def put(self, key: str, outputs: tuple[Any, ...]) -> None:
        with self._lock:
            self._entries[key] = Entry(outputs)

    def get(self, key: str, index: int) -> Any:
        with self._lock:
            entry = self._entries.get(key)
        if entry is None:
            raise KeyError(f"output {key[:12]}…[{index}] is not in this worker (released or lost)")
        return entry.outputs[index]

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def export(self, key: str, index: int, cuda: bool = False) -> Any:
        with self._lock:
            entry = self._entries.get(key)
        if entry is None:
            raise KeyError(f"output {key[:12]}…[{index}] is not in this worker (released or lost)")
        if not 0 <= index < len(entry.outputs):
            raise KeyError(f"output index {index} out of range: the task has {len(entry.outputs)} outputs")
        if cuda:  # a new IPC handle per receiver: each has its own reference counter
            return to_wire(entry.outputs[index], self.arena, entry.keep, cuda=True)
        cached = entry.exports.get(index)
        if cached is None:
            cached = entry.exports[index] = to_wire(entry.outputs[index], self.arena, entry.keep)
        return cached

    def release(self, keys: list[str]) -> None:
        with self._lock:
            for key in keys:
                self._entries.pop(key, None)
