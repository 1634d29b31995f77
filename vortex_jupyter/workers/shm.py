"""POSIX shared memory: the worker's arena and the kernel's read side.

Policy:
- Each worker owns an ``Arena``: one large segment (``VORTEX_ARENA_BYTES``, default 256 MiB,
  sparse until touched) plus more segments when an allocation does not fit. Allocations are
  64-byte aligned and come from a first-fit free list with coalescing, so freed blocks are
  reused and their pages stay faulted in.
- Segment names are ``/vx<kernel pid>-<worker uid>-<n>``; the supervisor unlinks every name
  with a dead worker's prefix (``unlink_prefix``), so a crash leaks nothing in ``/dev/shm``.
- We never use ``multiprocessing.shared_memory``: on Python < 3.13 merely attaching registers
  the segment with the resource tracker, which unlinks it when the attaching process exits
  (CPython gh-82300). ``_posixshmem.shm_open`` + ``mmap`` has no tracker at all.
- Sandboxed workers (``VORTEX_SANDBOX=strict``) make their segments with ``memfd_create``:
  no name in ``/dev/shm`` at all. The worker sends each segment's descriptor to the kernel
  (``SegmentFd`` + ``SCM_RIGHTS``), which maps it and closes it; no other process is ever
  given it, and a non-dumpable worker's ``/proc/<pid>/fd`` is closed to its peers.
- The kernel maps segments copy-on-write (``ACCESS_COPY``): reads are zero-copy views of the
  worker's pages, and a user writing into a fetched array changes only the kernel's private
  copy of that page, never the worker's cached output (and never segfaults).
"""

from __future__ import annotations

import bisect
import mmap
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

try:  # CPython's own shm_open without the resource tracker (see module docstring)
    import _posixshmem
except ImportError:  # pragma: no cover - non-CPython
    _posixshmem = None

ALIGN = 64
CONTROL_BYTES = 64
DEFAULT_SEGMENT = int(os.environ.get("VORTEX_ARENA_BYTES", 256 * 1024 * 1024))
_GROW_ROUND = 2 * 1024 * 1024


def _round(n: int, to: int) -> int:
    return (n + to - 1) // to * to


def _open(name: str, create: bool) -> int:
    flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
    if _posixshmem is not None:
        return int(_posixshmem.shm_open(name, flags, 0o600))
    return os.open("/dev/shm" + name, flags, 0o600)  # pragma: no cover


def shm_unlink(name: str) -> bool:
    try:
        if _posixshmem is not None:
            _posixshmem.shm_unlink(name)
        else:  # pragma: no cover
            os.unlink("/dev/shm" + name)
        return True
    except FileNotFoundError:
        return False


def unlink_prefix(prefix: str) -> list[str]:
    """Unlink every segment whose name starts with ``prefix`` (e.g. a dead worker's)."""
    gone: list[str] = []
    start = prefix.lstrip("/")
    try:  # (not glob: it caches a compiled pattern per distinct prefix, one per dead worker)
        names = os.listdir("/dev/shm")
    except OSError:
        return gone
    for name in names:
        if name.startswith(start) and shm_unlink("/" + name):
            gone.append("/dev/shm/" + name)
    return gone


class Segment:
    """One mapped shared-memory segment; ``address`` is where it starts in this process."""

    def __init__(self, name: str, size: int, *, create: bool, private: bool = False, fd: int | None = None,
                 memfd: bool = False) -> None:
        """Open (or ``create``) segment ``name``; ``fd``: map this descriptor instead (closed
        here); ``memfd``: create it without a name in ``/dev/shm`` (``self.fd`` stays open for
        whoever sends it on, then ``close_fd()``)."""
        self.fd = -1
        if fd is None:
            fd = os.memfd_create(name.lstrip("/"), os.MFD_CLOEXEC) if memfd else _open(name, create)
        try:
            if create:
                os.ftruncate(fd, size)
            else:
                size = os.fstat(fd).st_size
            access = mmap.ACCESS_COPY if private else mmap.ACCESS_WRITE
            self.mmap = mmap.mmap(fd, size, access=access)
        except BaseException:
            os.close(fd)
            raise
        if memfd:
            self.fd = fd
        else:
            os.close(fd)
        self.name = name
        self.size = size
        self.address = int(np.frombuffer(self.mmap, np.uint8, count=1).ctypes.data)

    def close_fd(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def view(self, offset: int, nbytes: int) -> np.ndarray:
        """A uint8 array over ``[offset, offset+nbytes)``: the base every typed view hangs off."""
        if offset < 0 or nbytes < 0 or offset + nbytes > self.size:
            raise ValueError(f"range {offset}+{nbytes} outside segment {self.name} of {self.size} bytes")
        return np.frombuffer(self.mmap, np.uint8, count=nbytes, offset=offset)


class FreeList:
    """First-fit allocator over one segment: sorted free blocks, coalesced on free."""

    def __init__(self, size: int) -> None:
        self.starts: list[int] = [0]
        self.sizes: dict[int, int] = {0: size}
        self.used: dict[int, int] = {}

    def alloc(self, nbytes: int) -> int | None:
        need = _round(max(nbytes, 1), ALIGN)
        for i, start in enumerate(self.starts):
            size = self.sizes[start]
            if size >= need:
                del self.starts[i], self.sizes[start]
                if size > need:
                    self.starts.insert(i, start + need)
                    self.sizes[start + need] = size - need
                self.used[start] = need
                return start
        return None

    def free(self, start: int) -> None:
        size = self.used.pop(start)
        i = bisect.bisect_left(self.starts, start)
        nxt = self.starts[i] if i < len(self.starts) else None
        if nxt == start + size:  # merge with the following block
            size += self.sizes.pop(nxt)
            del self.starts[i]
        if i > 0 and self.starts[i - 1] + self.sizes[self.starts[i - 1]] == start:
            self.sizes[self.starts[i - 1]] += size  # merge with the preceding block
            return
        self.starts.insert(i, start)
        self.sizes[start] = size

    @property
    def free_bytes(self) -> int:
        return sum(self.sizes.values())


class Arena:
    """A worker's shared memory. ``empty()`` returns arrays that free their block when the last
    view of them dies; ``locate()`` tells whether an address lies inside the arena."""

    def __init__(self, prefix: str, segment_bytes: int = DEFAULT_SEGMENT,
                 on_segment: Callable[[Segment], None] | None = None, memfd: bool = False) -> None:
        self.prefix = prefix
        #: segments are memfds (sandboxed worker): ``on_segment`` sends each one's fd on
        self.memfd = memfd
        self.segment_bytes = _round(segment_bytes, _GROW_ROUND)
        self.segments: list[Segment] = []
        self._lists: list[FreeList] = []
        self._lock = threading.Lock()
        self._on_segment = on_segment
        self._closed = False
        self._add_segment(self.segment_bytes)
        # The first 64 bytes of segment 0 are the worker's status words, read by the kernel
        # without a message: [batch id, index of the task running in it] (see batch.py).
        assert self._lists[0].alloc(CONTROL_BYTES) == 0
        self.control = self.segments[0].view(0, CONTROL_BYTES).view(np.int64)
        self.control[:] = -1

    def _add_segment(self, size: int) -> int:
        seg = Segment(f"/{self.prefix}{len(self.segments)}", size, create=True, memfd=self.memfd)
        self.segments.append(seg)
        self._lists.append(FreeList(size))
        if self._on_segment is not None:
            self._on_segment(seg)
        return len(self.segments) - 1

    def alloc(self, nbytes: int) -> tuple[int, int]:
        """(segment index, offset) of a fresh block; adds a segment when none fits."""
        with self._lock:
            for i, free in enumerate(self._lists):
                offset = free.alloc(nbytes)
                if offset is not None:
                    return i, offset
            i = self._add_segment(max(self.segment_bytes, _round(nbytes, _GROW_ROUND)))
            offset = self._lists[i].alloc(nbytes)
            assert offset is not None
            return i, offset

    def free(self, index: int, offset: int) -> None:
        with self._lock:
            if not self._closed:
                self._lists[index].free(offset)

    def raw(self, nbytes: int) -> np.ndarray:
        """A uint8 block of ``nbytes`` owned by the returned array (freed when it dies)."""
        index, offset = self.alloc(nbytes)
        base = self.segments[index].view(offset, nbytes)
        weakref.finalize(base, self.free, index, offset)
        return base

    def empty(self, shape: Any, dtype: Any = np.float32) -> np.ndarray:
        """A numpy array in shared memory: produce outputs here and they cross for free."""
        dt = np.dtype(dtype)
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        count = int(np.prod(shape, dtype=np.int64))
        return self.raw(count * dt.itemsize).view(dt).reshape(shape)

    def locate(self, address: int, nbytes: int) -> tuple[Segment, int] | None:
        for seg in self.segments:
            if seg.address <= address and address + nbytes <= seg.address + seg.size:
                return seg, address - seg.address
        return None

    @property
    def stats(self) -> dict[str, int]:
        total = sum(s.size for s in self.segments)
        return {"segments": len(self.segments), "bytes": total,
                "free": sum(f.free_bytes for f in self._lists)}

    def close(self) -> None:
        """Unlink the names (mappings stay valid while arrays use them)."""
        with self._lock:
            self._closed = True
            for seg in self.segments:
                if not self.memfd:
                    shm_unlink(seg.name)


class Attachments:
    """The kernel's copy-on-write mappings of worker segments, by name."""

    def __init__(self) -> None:
        self._segments: dict[str, Segment] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Segment:
        with self._lock:
            seg = self._segments.get(name)
            if seg is None:
                seg = self._segments[name] = Segment(name, 0, create=False, private=True)
            return seg

    def adopt(self, name: str, fd: int) -> Segment:
        """Map segment ``name`` from a descriptor its worker sent (closed here)."""
        seg = Segment(name, 0, create=False, private=True, fd=fd)
        with self._lock:
            self._segments[name] = seg
        return seg

    def locate(self, address: int) -> tuple[Segment, int] | None:
        """Which mapped segment (and offset) holds ``address``: proof that a view is no copy."""
        with self._lock:
            for seg in self._segments.values():
                if seg.address <= address < seg.address + seg.size:
                    return seg, address - seg.address
        return None

    def forget(self, names: list[str] | None = None) -> None:
        """Drop our reference to segments (the mapping lives on while views exist)."""
        with self._lock:
            for name in list(self._segments) if names is None else names:
                self._segments.pop(name, None)


_ARENA: Arena | None = None


def set_worker_arena(arena: Arena | None) -> None:
    global _ARENA
    _ARENA = arena


def worker_arena() -> Arena | None:
    """The arena of this worker process (``None`` in the kernel or outside a worker)."""
    return _ARENA


def empty(shape: Any, dtype: Any = np.float32) -> np.ndarray:
    """Allocate an output array in the worker's shared memory (plain ``np.empty`` elsewhere).

    A node that builds its result here hands it to the kernel with no copy at all::

        out = vortex_jupyter.workers.shm.empty((1, 512, 512, 3))
        out[...] = ...
        return (out,)
    """
    return _ARENA.empty(shape, dtype) if _ARENA is not None else np.empty(shape, dtype)
