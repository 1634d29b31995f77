"""Tensor handles: how an array in a worker's arena is named on the wire and wrapped in the kernel.

A ``TensorHandle`` is ``(segment, offset, nbytes, dtype, shape, strides, kind)``; it travels
as msgpack extension ``EXT_TENSOR``. ``dtype`` is a numpy dtype string (``"<f4"``) or, for
dtypes numpy lacks, ``"torch.bfloat16"``-style names. ``kind`` says what the node returned
("numpy" or "torch") so the kernel hands back the same kind of object.

Worker side, ``export_array`` names an array that already lives in the arena (zero copy) or
copies it there once. Kernel side, ``wrap`` builds a numpy view over the copy-on-write mapping,
and ``to_torch``/``to_arrow_tensor``/``to_fixed_shape_tensor_array``/``to_dlpack`` re-wrap it
without copying. The uint8 base array of every view carries a finalizer (``on_dead``) so the
pool knows when the kernel dropped its last view of a worker's block.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from ..errors import ProtocolError
from .protocol import EXT_TENSOR
from .shm import Arena, Attachments, Segment


@dataclass(frozen=True, slots=True)
class TensorHandle:
    segment: str
    offset: int
    nbytes: int
    dtype: str
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    kind: str = "numpy"

    def ext(self) -> msgpack.ExtType:
        data = [self.segment, self.offset, self.nbytes, self.dtype, list(self.shape),
                list(self.strides), self.kind]
        return msgpack.ExtType(EXT_TENSOR, msgpack.packb(data))

    @classmethod
    def from_ext(cls, data: bytes) -> TensorHandle:
        try:
            seg, off, nbytes, dtype, shape, strides, kind = msgpack.unpackb(data)
            handle = cls(str(seg), int(off), int(nbytes), str(dtype), tuple(int(x) for x in shape),
                         tuple(int(x) for x in strides), str(kind))
        except Exception as exc:
            raise ProtocolError(f"malformed tensor handle ({type(exc).__name__}: {exc})") from None
        if not handle.segment.startswith("/vx") or "/" in handle.segment[1:] or handle.nbytes < 0:
            raise ProtocolError(f"tensor handle names segment {handle.segment!r}, not a worker arena")
        return handle


# ---- dtypes ---------------------------------------------------------------------------------
def _torch_only(dtype_name: str) -> Any:
    import torch

    return getattr(torch, dtype_name.removeprefix("torch."))


def _itemsize(dtype: str) -> int:
    if dtype.startswith("torch."):
        return int(_torch_only(dtype).itemsize)
    return np.dtype(dtype).itemsize


def _extent(shape: tuple[int, ...], strides: tuple[int, ...], itemsize: int) -> int:
    if any(s == 0 for s in shape):
        return 0
    return sum((n - 1) * st for n, st in zip(shape, strides)) + itemsize


# ---- worker side ----------------------------------------------------------------------------
def export_array(arr: np.ndarray, arena: Arena, kind: str = "numpy",
                 dtype: str | None = None, keep: list[Any] | None = None) -> TensorHandle:
    """Name ``arr`` by a handle, copying it into ``arena`` unless it already lives there.

    ``keep`` receives the copy (if one was made) so the caller keeps the block alive."""
    if arr.dtype.hasobject:
        raise TypeError("object arrays cannot live in shared memory")
    ptr = int(arr.__array_interface__["data"][0])
    strides = tuple(int(s) for s in arr.strides)
    extent = _extent(arr.shape, strides, arr.itemsize)
    found = arena.locate(ptr, extent) if min(strides, default=0) >= 0 else None
    if found is None:
        copy = arena.raw(arr.nbytes).view(arr.dtype).reshape(arr.shape)
        copy[...] = arr
        if keep is not None:
            keep.append(copy)
        return export_array(copy, arena, kind, dtype)
    seg, offset = found
    return TensorHandle(seg.name, offset, extent, dtype or arr.dtype.str, tuple(arr.shape), strides, kind)


def export_torch(t: Any, arena: Arena, keep: list[Any]) -> TensorHandle:
    import torch

    t = t.detach()
    if t.device.type != "cpu":  # one device->host copy, straight into the arena
        block = arena.raw(t.numel() * t.element_size())
        host = torch.from_numpy(block).view(t.dtype).view(t.shape)
        host.copy_(t)
        keep.append(block)
        t = host
    try:
        return export_array(t.numpy(), arena, "torch", keep=keep)
    except TypeError:  # bfloat16 & co.: export the raw bits, name the torch dtype
        bits = t.view(torch.int16 if t.element_size() == 2 else torch.uint8).numpy()
        return export_array(bits, arena, "torch", dtype=str(t.dtype), keep=keep)


# ---- kernel side ----------------------------------------------------------------------------
def wrap(handle: TensorHandle, attachments: Attachments,
         on_dead: Callable[[], None] | None = None) -> np.ndarray:
    """A zero-copy numpy view of ``handle`` (raw bits for torch-only dtypes)."""
    seg: Segment = attachments.get(handle.segment)
    itemsize = _itemsize(handle.dtype)
    if len(handle.shape) != len(handle.strides) or _extent(handle.shape, handle.strides, itemsize) > handle.nbytes:
        raise ProtocolError(f"tensor handle shape {handle.shape}/strides {handle.strides} exceed its "
                            f"{handle.nbytes} bytes")
    base = seg.view(handle.offset, handle.nbytes)
    if on_dead is not None:
        weakref.finalize(base, on_dead)
    dt = np.dtype(f"V{itemsize}") if handle.dtype.startswith("torch.") else np.dtype(handle.dtype)
    if handle.nbytes == 0:
        return np.empty(handle.shape, dt)
    return np.lib.stride_tricks.as_strided(base.view(np.uint8)[:itemsize].view(dt), handle.shape,
                                           handle.strides, writeable=True)


def to_torch(view: np.ndarray, handle: TensorHandle) -> Any:
    import torch

    if not handle.dtype.startswith("torch."):
        return torch.from_numpy(view)
    raw = view.view(np.uint8) if view.flags.c_contiguous else np.ascontiguousarray(view).view(np.uint8)
    return torch.from_numpy(raw).view(_torch_only(handle.dtype)).view(handle.shape)


def to_arrow_tensor(arr: np.ndarray) -> Any:
    import pyarrow as pa

    return pa.Tensor.from_numpy(arr)


def to_fixed_shape_tensor_array(arr: np.ndarray) -> Any:
    """The first axis becomes the array's rows, the rest the fixed tensor shape (C order)."""
    import pyarrow as pa

    if not arr.flags.c_contiguous:
        raise ValueError("FixedShapeTensorArray needs a C-contiguous array; pass np.ascontiguousarray(x)")
    return pa.FixedShapeTensorArray.from_numpy_ndarray(arr)


def to_dlpack(arr: Any) -> Any:
    """A DLPack capsule of a fetched numpy array or torch tensor (no copy)."""
    return arr.__dlpack__()


def buffer_address(obj: Any) -> int:
    """Address of the first element of a numpy array, torch tensor or pyarrow tensor/array."""
    if hasattr(obj, "data_ptr"):
        return int(obj.data_ptr())
    if hasattr(obj, "__array_interface__"):
        return int(obj.__array_interface__["data"][0])
    if hasattr(obj, "buffers"):
        return int(obj.buffers()[-1].address)
    if hasattr(obj, "to_numpy"):
        return int(obj.to_numpy().__array_interface__["data"][0])
    raise TypeError(f"no buffer address for {type(obj).__name__}")


def register_pinned(seg: Segment) -> bool:
    """Page-lock ``seg`` with CUDA so host->device copies run at full speed (no-op without CUDA)."""
    try:
        import torch
    except ImportError:
        return False
    if not torch.cuda.is_available():
        return False
    err = torch.cuda.cudart().cudaHostRegister(seg.address, seg.size, 0)
    return int(err) == 0


def unregister_pinned(seg: Segment) -> None:
    import torch

    torch.cuda.cudart().cudaHostUnregister(seg.address)
