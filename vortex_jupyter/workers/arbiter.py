"""The memory arbiter: byte budgets per device, and who gets evicted when they run out.

Responsibilities:
- Keep a byte budget per device (``"cpu"`` host RAM, ``"cuda"`` VRAM), from the constructor,
  the env (``VORTEX_RAM_BUDGET`` / ``VORTEX_VRAM_BUDGET``: bytes or ``"2GiB"``, ``"512MB"``)
  or a default (half the host RAM; 90 % of the GPU). With several workers
  (``VORTEX_WORKERS``) a budget is the device's: each worker gets its share (``SHARE_ENV``).
- Track entries (models, cached outputs): key, measured size, device, use count, and two
  callbacks: ``move(device)`` (GPU -> host offload) and ``drop()`` (free; the owner reloads
  or recomputes on demand).
- ``request(nbytes, device)`` makes room before something is loaded: entries are evicted
  least-frequently-used first (ties: least recently used). On ``cuda`` an evicted entry moves
  to the host if it has a ``move`` and the host has room, else it is dropped. Pinned entries
  (in use right now) are never evicted; if the rest cannot make room the request fails with
  ``NodeOutOfMemoryError`` saying how many bytes were needed and how many were free.
- ``run_with_oom_retry(fn, ...)``: a real OOM (``torch.OutOfMemoryError``, ``MemoryError``)
  evicts everything unpinned on that device and retries once, then fails with a clear error
  naming the node and the bytes needed.
- ``peak(device)``: the highest tracked total seen, so tests and metrics can check that the
  budget was never exceeded.

State is a dict of entries behind one lock; the arbiter never imports torch itself except to
recognise torch's OOM type, so the kernel can import this module cheaply.

>>> arb = MemoryArbiter({"cpu": 100})
>>> arb.track("a", object(), 60, "cpu", drop=lambda: None)
>>> arb.request(60, "cpu")          # evicts "a" to make room
>>> arb.used("cpu"), "a" in arb
(0, False)
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..errors import NodeOutOfMemoryError, VortexError

__all__ = ["MemoryArbiter", "env_budgets", "format_bytes", "get_arbiter", "parse_bytes"]

T = TypeVar("T")

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_ENV = {"cpu": "VORTEX_RAM_BUDGET", "cuda": "VORTEX_VRAM_BUDGET"}


def parse_bytes(text: str | int) -> int:
    """``"2GiB"`` -> 2147483648; plain integers are bytes. Raises ValueError with the accepted forms."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", text)
    unit = m.group(2).lower() if m else ""
    if not m or unit not in _UNITS:
        raise ValueError(f"memory budget {text!r} is not a size; use bytes or e.g. '512MiB', '2GiB', '1.5GB'")
    return int(float(m.group(1)) * _UNITS[unit])


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def env_budgets() -> dict[str, int]:
    """The budgets set in the env (``VORTEX_RAM_BUDGET``, ``VORTEX_VRAM_BUDGET``); a bad value is
    one ``VortexError`` naming the variable and the accepted forms. The pool calls this when it
    starts, so a typo fails the run once, up front, not every node that loads a model."""
    budgets = {}
    for device, name in _ENV.items():
        raw = os.environ.get(name, "").strip()
        if not raw:
            continue
        try:
            budgets[device] = parse_bytes(raw)
        except ValueError:
            raise VortexError(f"{name} = {raw!r} is not a memory size",
                              hint=f"set {name} to a number of bytes or a size such as '2GiB', '512MiB' "
                              "or '1.5GB' (units B, KB/KiB, MB/MiB, GB/GiB, TB/TiB), or unset it for "
                              "the default") from None
    return budgets


#: Set in each worker by the supervisor: how many general workers share the host's RAM / this
#: worker's GPU (``VORTEX_WORKERS``); a budget (set or default) is divided by it.
SHARE_ENV = {"cpu": "VORTEX_RAM_SHARE", "cuda": "VORTEX_VRAM_SHARE"}


def _share(device: str) -> int:
    raw = os.environ.get(SHARE_ENV.get(device, ""), "")
    return max(1, int(raw)) if raw.isdigit() else 1


def _default_budget(device: str) -> int:
    env = env_budgets().get(device)
    if env is not None:
        return env // _share(device)
    if device == "cuda":
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            return int(torch.cuda.mem_get_info()[1] * 0.9) // _share(device)
        return 0
    import psutil

    return int(psutil.virtual_memory().total * 0.5) // _share(device)


@dataclass
class _Entry:
    key: str
    value: Any
    nbytes: int
    device: str
    drop: Callable[[], None] | None = None
    move: Callable[[str], None] | None = None
    uses: int = 1
    last: float = field(default_factory=time.monotonic)
    pins: int = 0


class MemoryArbiter:
    """Byte budgets per device and LFU eviction; thread-safe."""

    def __init__(self, budgets: dict[str, int | str] | None = None) -> None:
        self._budgets = {k: parse_bytes(v) for k, v in (budgets or {}).items()}
        self._entries: dict[str, _Entry] = {}
        self._peak: dict[str, int] = {}
        self._lock = threading.RLock()
        self.evictions = 0

    # -- budgets and accounting ---------------------------------------------------------------
    def budget(self, device: str) -> int:
        device = _kind(device)
        if device not in self._budgets:
            self._budgets[device] = _default_budget(device)
        return self._budgets[device]

    def set_budget(self, device: str, nbytes: int | str) -> None:
        with self._lock:
            self._budgets[_kind(device)] = parse_bytes(nbytes)

    def used(self, device: str) -> int:
        device = _kind(device)
        with self._lock:
            return sum(e.nbytes for e in self._entries.values() if e.device == device)

    def peak(self, device: str) -> int:
        return self._peak.get(_kind(device), 0)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> Any:
        """The tracked value (counting a use), or None if it is not resident."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._use(entry)
            return entry.value

    def touch(self, key: str) -> None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._use(entry)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"entries": {k: {"bytes": e.nbytes, "device": e.device, "uses": e.uses}
                                for k, e in self._entries.items()},
                    "used": {d: self.used(d) for d in self._budgets}, "peak": dict(self._peak),
                    "budgets": dict(self._budgets), "evictions": self.evictions}

    # -- tracking -----------------------------------------------------------------------------
    def track(self, key: str, value: Any, nbytes: int, device: str = "cpu", *,
              drop: Callable[[], None] | None = None, move: Callable[[str], None] | None = None) -> None:
        """Account ``nbytes`` of ``value`` on ``device``, evicting others first if needed."""
        device = _kind(device)
        with self._lock:
            old = self._entries.pop(key, None)
            self.request(nbytes, device, node=key)
            entry = _Entry(key, value, int(nbytes), device, drop, move)
            if old is not None:
                entry.uses, entry.pins = old.uses + 1, old.pins
            self._entries[key] = entry
            self._note_peak(device)

    def release(self, key: str) -> None:
        """Forget an entry without calling its ``drop`` (the owner freed it)."""
        with self._lock:
            self._entries.pop(key, None)

    @contextmanager
    def pinned(self, key: str) -> Iterator[None]:
        """Keep ``key`` resident while the block runs (e.g. a UNet during sampling)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                entry.pins += 1
                self._use(entry)
        try:
            yield
        finally:
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None:
                    entry.pins = max(0, entry.pins - 1)

    # -- eviction -----------------------------------------------------------------------------
    def request(self, nbytes: int, device: str, *, node: str | None = None, what: str = "") -> None:
        """Make room for ``nbytes`` on ``device`` by evicting LFU entries, or raise VE-503.

        ``node`` is the graph node asking (for the error), ``what`` the thing being loaded."""
        device = _kind(device)
        why = f" for {what}" if what else ""
        with self._lock:
            budget = self.budget(device)
            if nbytes > budget:
                raise self._oom(node, nbytes, device, f"that is more than the whole {device} budget{why}")
            for victim in self._victims(device):
                if self.used(device) + nbytes <= budget:
                    return
                self._evict(victim)
            if self.used(device) + nbytes > budget:
                raise self._oom(node, nbytes, device, f"the rest is pinned by running nodes{why}")

    def evict_all(self, device: str) -> int:
        """Evict every unpinned entry on ``device``; returns the bytes freed."""
        device = _kind(device)
        with self._lock:
            before = self.used(device)
            for victim in self._victims(device):
                self._evict(victim)
            return before - self.used(device)

    def run_with_oom_retry(self, fn: Callable[[], T], *, node: str | None = None,
                           device: str = "cpu", nbytes: int = 0) -> T:
        """Run ``fn``; on an OOM evict everything unpinned on ``device`` and retry once."""
        try:
            return fn()
        except BaseException as exc:
            if not _is_oom(exc):
                raise
        self.evict_all(device)
        _empty_cache(device)
        try:
            return fn()
        except BaseException as exc:
            if not _is_oom(exc):
                raise
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise self._oom(node, nbytes or _requested_bytes(str(exc)), device,
                            f"out of memory even after evicting every cached model ({first_line})") from exc

    def _victims(self, device: str) -> list[_Entry]:
        cands = [e for e in self._entries.values() if e.device == device and e.pins == 0]
        return sorted(cands, key=lambda e: (e.uses, e.last))

    def _evict(self, entry: _Entry) -> None:
        self.evictions += 1
        if entry.device == "cuda" and entry.move is not None and _fits(self, entry.nbytes, "cpu"):
            self.request(entry.nbytes, "cpu", node=entry.key, what="offloading to the host")
            entry.move("cpu")
            entry.device = "cpu"
            self._note_peak("cpu")
            return
        del self._entries[entry.key]
        if entry.drop is not None:
            entry.drop()

    def _use(self, entry: _Entry) -> None:
        entry.uses += 1
        entry.last = time.monotonic()

    def _note_peak(self, device: str) -> None:
        self._peak[device] = max(self._peak.get(device, 0), self.used(device))

    def _oom(self, node: str | None, nbytes: int, device: str, why: str) -> NodeOutOfMemoryError:
        free = self.budget(device) - self.used(device)
        return NodeOutOfMemoryError(
            f"node {node or '?'} needs {format_bytes(nbytes)} on {device} but only {format_bytes(free)} "
            f"of the {format_bytes(self.budget(device))} budget is free: {why}",
            node=node, hint=f"raise {_ENV.get(device, 'the budget')} or use smaller models/images")


def _kind(device: Any) -> str:
    return str(device).split(":", 1)[0]


def _fits(arb: MemoryArbiter, nbytes: int, device: str) -> bool:
    return nbytes <= arb.budget(device)


def _requested_bytes(message: str) -> int:
    """The allocation a torch OOM message names ("Tried to allocate 2.00 GiB"), or 0."""
    m = re.search(r"Tried to allocate ([0-9.]+) ?([KMGT]i?B)", message)
    return parse_bytes(f"{m.group(1)}{m.group(2)}") if m else 0


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    torch = sys.modules.get("torch")
    oom = getattr(torch, "OutOfMemoryError", None) if torch is not None else None
    return oom is not None and isinstance(exc, oom)


def _empty_cache(device: str) -> None:
    torch = sys.modules.get("torch")
    if device == "cuda" and torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


_ARBITER: MemoryArbiter | None = None
_ARBITER_LOCK = threading.Lock()


def get_arbiter() -> MemoryArbiter:
    """The process-wide arbiter (budgets from the env, read on first use)."""
    global _ARBITER
    with _ARBITER_LOCK:
        if _ARBITER is None:
            _ARBITER = MemoryArbiter()
        return _ARBITER
