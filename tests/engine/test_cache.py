"""The output cache: LRU bounds by entries and bytes, release on eviction, pins, drops."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vortex_jupyter.engine.cache import OutputCache, cache_for
from vortex_jupyter.engine.inprocess import InProcessExecutor
from vortex_jupyter.engine.run import Engine
from vortex_jupyter.graph.model import GraphModel

from .helpers import math_specs, no_problems


class Recording(InProcessExecutor):
    """The in-process executor, remembering what the cache released."""

    def __init__(self) -> None:
        self.released: list[Any] = []

    def release(self, refs: Sequence[Any]) -> None:
        self.released.extend(refs)


def test_entry_bound_evicts_least_recently_used_and_releases_it():
    ex = Recording()
    cache = OutputCache(ex, max_entries=2)
    cache.put("a", ("A",))
    cache.put("b", ("B",))
    assert cache.get("a") is not None  # a is now more recent than b
    cache.put("c", ("C",))
    assert "b" not in cache and "a" in cache and "c" in cache
    assert ex.released == ["B"]
    assert cache.evictions == 1


def test_byte_bound_uses_the_executor_size():
    ex = Recording()
    cache = OutputCache(ex, max_bytes=200)
    cache.put("small", (b"x" * 10,))
    cache.put("big", (b"y" * 100,))
    assert cache.nbytes <= 200 and "small" not in cache and "big" in cache
    assert ex.released == [b"x" * 10]


def test_the_newest_entry_stays_even_when_larger_than_the_bound():
    cache = OutputCache(Recording(), max_bytes=10)
    cache.put("huge", (b"z" * 1000,))
    assert "huge" in cache


def test_pinned_entries_survive_eviction_until_unpinned():
    ex = Recording()
    cache = OutputCache(ex, max_entries=1)
    cache.put("a", (1,))
    cache.pin(["a"])
    cache.put("b", (2,))
    assert "a" in cache and "b" in cache  # over the bound while a is pinned
    cache.unpin(["a"])
    assert "a" not in cache and "b" in cache and len(cache) == 1


def test_drop_forgets_without_releasing():
    ex = Recording()
    cache = OutputCache(ex)
    cache.put("a", (1,))
    cache.drop(["a", "missing"])
    assert "a" not in cache and ex.released == [] and cache.nbytes == 0


def test_a_small_cache_bound_makes_evicted_nodes_run_again():
    specs = math_specs()
    m = GraphModel()
    for i in range(5):
        m.add_node("add", {"a": i}, id=f"n{i}")
    ex = Recording()
    cache = OutputCache(ex, max_entries=3)
    eng = Engine(m, specs.lookup, no_problems)
    first = eng.run(ex, cache=cache)
    assert first.stats["ran"] == 5 and len(cache) == 3 and len(ex.released) == 2
    again = eng.run(ex, cache=cache)
    assert again.stats == {"ran": 2, "cached": 3, "failed": 0}


def test_cache_for_returns_one_cache_per_executor():
    a, b = InProcessExecutor(), InProcessExecutor()
    assert cache_for(a) is cache_for(a)
    assert cache_for(a) is not cache_for(b)


def test_cache_bounds_from_the_environment_accept_sizes_and_refuse_junk_by_name(monkeypatch):
    import pytest

    from vortex_jupyter.engine.cache import env_bound
    from vortex_jupyter.errors import VortexError

    monkeypatch.delenv("VORTEX_CACHE_BYTES", raising=False)
    assert env_bound("VORTEX_CACHE_BYTES", 7, sizes=True) == 7
    for raw, want in (("1024", 1024), ("2GiB", 2 * 2**30), ("1.5 MB", 1_500_000), ("512mib", 512 * 2**20)):
        monkeypatch.setenv("VORTEX_CACHE_BYTES", raw)
        assert env_bound("VORTEX_CACHE_BYTES", 7, sizes=True) == want
    for junk in ("lots", "0", "-5", "2XB", "1e9"):
        monkeypatch.setenv("VORTEX_CACHE_BYTES", junk)
        with pytest.raises(VortexError, match=r"VORTEX_CACHE_BYTES = .* is not a positive size"):
            env_bound("VORTEX_CACHE_BYTES", 7, sizes=True)
    monkeypatch.setenv("VORTEX_CACHE_ENTRIES", "10GiB")  # a count takes no unit
    with pytest.raises(VortexError, match="VORTEX_CACHE_ENTRIES"):
        env_bound("VORTEX_CACHE_ENTRIES", 7)
