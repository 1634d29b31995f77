"""The output cache: cache key -> the executor's references to a node's outputs.

Policy:

- A hit is a key present here: the node's outputs are still held by the executor that made
  them (in-process: the values themselves; worker pool: handles into a worker).
- Bounded by entries and by bytes (``executor.size_of`` per reference). When over either
  bound the least recently used entry is evicted and its references are released through
  ``executor.release``. Entries *pinned* by a running run (its cached inputs) are skipped, so a
  worker never loses a value a queued task is about to read.
- ``drop(keys)`` forgets entries whose references became invalid (a worker died): those nodes
  simply run again next time.
- One cache per executor, shared by every graph in the process (``cache_for``): keys do not
  depend on node ids, so a copied or renumbered graph hits the same entries.
- ``inflight`` tracks the keys runs in flight are computing, so that a run started while
  another computes a key waits for it instead of computing it again (``inflight.py``).
- An entry also keeps the node's final preview images (``(mime, bytes)``, what SaveImage and
  PreviewImage show), at most ``MAX_PREVIEWS`` of them and ``MAX_PREVIEW_BYTES`` in all,
  counted in the byte bound: a run that serves the node from the cache shows them again.

Thread safety: one lock; results arrive from executor threads while a run plans another.
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..errors import VortexError
from .executor import Executor
from .inflight import InFlight

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_ENTRIES", "Entry", "OutputCache", "Preview", "cache_for"]

_UNITS = {"": 1, "b": 1, "kb": 10**3, "kib": 2**10, "mb": 10**6, "mib": 2**20, "gb": 10**9, "gib": 2**30,
          "tb": 10**12, "tib": 2**40}


def env_bound(name: str, default: int, *, sizes: bool = False) -> int:
    """A positive bound from the environment: a count, or with ``sizes`` bytes such as
    ``"512MiB"`` / ``"2GB"``. A bad value is a ``VortexError`` naming the variable (raised
    when the engine loads, so a typo is not silently an unbounded or empty cache)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([A-Za-z]*)", raw)
    unit = _UNITS.get(match.group(2).lower()) if match and (sizes or not match.group(2)) else None
    value = int(float(match.group(1)) * unit) if match and unit else 0
    if value < 1:
        example = "'8GiB', '512MiB' or a number of bytes" if sizes else "a whole number such as 100000"
        raise VortexError(f"{name} = {raw!r} is not a positive {'size' if sizes else 'count'}",
                          hint=f"set {name} to {example}, or unset it for the default ({default})")
    return value


DEFAULT_MAX_ENTRIES = env_bound("VORTEX_CACHE_ENTRIES", 1_000_000)
DEFAULT_MAX_BYTES = env_bound("VORTEX_CACHE_BYTES", 8 * 2**30, sizes=True)
#: Bounds of the final previews kept per entry (more are shown by the run that made them only).
MAX_PREVIEWS = 64
MAX_PREVIEW_BYTES = 64 * 2**20

#: A final preview image: (mime type, PNG/JPEG bytes).
Preview = tuple[str, bytes]


class Entry:
    """One cached node result. A plain ``__slots__`` class without per-entry containers: a cold
    run of 10k nodes makes 10k entries, and every container allocated here is one more object
    for the cyclic GC to walk (a dataclass with ``default_factory`` made two per entry)."""

    __slots__ = ("nbytes", "previews", "refs", "ui")

    def __init__(self, refs: tuple[Any, ...], nbytes: int, previews: tuple[Preview, ...] = ()) -> None:
        self.refs = refs
        self.nbytes = nbytes
        #: The node's final preview images (bounded, see ``MAX_PREVIEWS``).
        self.previews = previews
        #: UI data the node returned (``NodeResult.ui``), when it returned any.
        self.ui: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"<Entry {len(self.refs)} refs, {self.nbytes} bytes, {len(self.previews)} previews>"


def _bounded(previews: Iterable[Preview] | None) -> tuple[Preview, ...]:
    kept: list[Preview] = []
    total = 0
    for mime, data in previews or ():
        total += len(data)
        if len(kept) >= MAX_PREVIEWS or total > MAX_PREVIEW_BYTES:
            break
        kept.append((mime, data))
    return tuple(kept)


class OutputCache:
    """LRU map key -> ``Entry`` with entry and byte bounds."""

    def __init__(
        self,
        executor: Executor,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.executor = executor
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.nbytes = 0
        self.evictions = 0
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        #: Keys of the entries that hold previews (few): what a run checks its cached nodes against.
        self._previewed: set[str] = set()
        self._pins: dict[str, int] = {}
        self._lock = threading.Lock()
        #: The keys runs in flight on this cache are computing.
        self.inflight = InFlight(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def get(self, key: str) -> Entry | None:
        """The entry for ``key`` (marked as recently used), or None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def get_pinned(self, key: str) -> Entry | None:
        """Like ``get``, and pin the entry (``unpin`` when done) so it is not evicted."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                self._pins[key] = self._pins.get(key, 0) + 1
            return entry

    def touch(self, keys: Iterable[str]) -> None:
        """Mark ``keys`` recently used (a run served them from the cache).

        Skipped while the cache is under half of both bounds: nothing is evicted there, and
        touching every cached node of a 100k-node graph on each run costs milliseconds.
        """
        if len(self._entries) * 2 < self.max_entries and self.nbytes * 2 < self.max_bytes:
            return
        with self._lock:
            move = self._entries.move_to_end
            entries = self._entries
            for k in keys:
                if k in entries:
                    move(k)

    @property
    def index(self) -> Mapping[str, Entry]:
        """The entries by key, for fast read-only membership tests (``key in cache.index``)."""
        return self._entries

    @property
    def previewed(self) -> set[str]:
        """Keys of the entries that hold final previews (read only)."""
        return self._previewed

    def put(self, key: str, refs: tuple[Any, ...], previews: Iterable[Preview] | None = None,
            pin: bool = False) -> None:
        """Store a node's outputs (and its final previews, bounded), evicting what is over the
        bounds; with ``pin``, pinned in the same step (``unpin`` when done), so never evicted."""
        size_of = self.executor.size_of
        nbytes = 0
        for r in refs:
            nbytes += size_of(r)
        kept = _bounded(previews) if previews else ()
        for _mime, data in kept:
            nbytes += len(data)
        victims: list[Entry] = []
        with self._lock:
            entries = self._entries
            old = entries.pop(key, None)
            if old is not None:
                self.nbytes -= old.nbytes
                if old.refs is not refs:
                    victims.append(old)
                if old.previews:
                    self._previewed.discard(key)
            entries[key] = Entry(refs, nbytes, kept)
            if pin:
                self._pins[key] = self._pins.get(key, 0) + 1
            if kept:
                self._previewed.add(key)
            self.nbytes += nbytes
            if len(entries) > self.max_entries or self.nbytes > self.max_bytes:
                victims += self._evict_locked()
        if victims:
            self._release(victims)

    def annotate(self, key: str, ui: dict[str, Any] | None) -> None:
        """Remember the UI data a node returned with its cached result."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and ui:
                entry.ui = ui

    def drop(self, keys: Sequence[str]) -> None:
        """Forget entries whose references are gone (no release: there is nothing to free)."""
        with self._lock:
            for k in keys:
                entry = self._entries.pop(k, None)
                if entry is not None:
                    self.nbytes -= entry.nbytes
                    self._previewed.discard(k)

    def clear(self) -> None:
        with self._lock:
            victims = list(self._entries.values())
            self._entries.clear()
            self._previewed.clear()
            self.nbytes = 0
        self._release(victims)

    # ---- pins ----------------------------------------------------------------------------
    def pin(self, keys: Iterable[str]) -> None:
        with self._lock:
            for k in keys:
                self._pins[k] = self._pins.get(k, 0) + 1

    def unpin(self, keys: Iterable[str]) -> None:
        with self._lock:
            for k in keys:
                c = self._pins.get(k, 0) - 1
                if c > 0:
                    self._pins[k] = c
                else:
                    self._pins.pop(k, None)
            victims = self._evict_locked()
        self._release(victims)

    # ---- eviction ------------------------------------------------------------------------
    def _evict_locked(self) -> list[Entry]:
        entries = self._entries
        if len(entries) <= self.max_entries and self.nbytes <= self.max_bytes:
            return []
        victims: list[Entry] = []
        skipped: list[tuple[str, Entry]] = []
        # The newest entry always stays (a result larger than the bound is still returned).
        while len(entries) > 1 and (len(entries) + len(skipped) > self.max_entries or self.nbytes > self.max_bytes):
            k, entry = entries.popitem(last=False)
            if k in self._pins:
                skipped.append((k, entry))
                continue
            self.nbytes -= entry.nbytes
            if entry.previews:
                self._previewed.discard(k)
            victims.append(entry)
        for k, entry in reversed(skipped):  # pinned entries keep their place at the LRU end
            entries[k] = entry
            entries.move_to_end(k, last=False)
        self.evictions += len(victims)
        return victims

    def _release(self, victims: list[Entry]) -> None:
        if victims:
            self.executor.release([r for e in victims for r in e.refs])


_caches: dict[int, tuple[Executor, OutputCache]] = {}
_caches_lock = threading.Lock()


def cache_for(executor: Executor) -> OutputCache:
    """The process-wide cache of ``executor`` (created on first use)."""
    with _caches_lock:
        hit = _caches.get(id(executor))
        if hit is None or hit[0] is not executor:
            hit = (executor, OutputCache(executor))
            _caches[id(executor)] = hit
        return hit[1]
