"""Copies of a model on other workers, so the samplers of one model can spread over them.

A model cannot leave the worker that loaded it (``WorkerRef.movable``). To spread a seed grid
over several workers, the parallel scheduler (``parallel.py``) runs the model's producers
(the loader, a LoRA, the prompt encoders) again on another worker, silently: no events, and
the result is not in the engine's cache. It is registered here as a *copy* of the original
key, and a node on that worker then reads the copy as if it were the original.

Policy:
- **How many.** At most ``limit`` workers hold one key, the original's included:
  ``VORTEX_MODEL_COPIES``, by default one per device of the general workers. So with several
  GPUs a model is loaded once per GPU when its samplers would wait otherwise; on one GPU or a
  CPU nothing is copied, since two workers on one device share its compute and its memory
  (set ``VORTEX_MODEL_COPIES=2`` to try it there; ``benchmarks/parallel.py --gpu`` measures it).
- **How long.** A copy lives as long as its original: when the engine releases the original's
  last ref, or the original's worker dies, its copies are released too. A copy kept between
  runs is why the second run of a seed grid spreads at once.
- **Recipes.** The task that made a model is remembered with its inputs resolved (``remember``,
  for as long as the model is held), so a later run whose model comes from the cache -- one
  image first, then a grid of seeds -- can still copy it: the loader runs again from its recipe.
- **Deaths.** A copy that dies with its worker is dropped, never reported lost: the engine
  never held it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..engine.executor import Ref, Task

if TYPE_CHECKING:
    from .pool import WorkerRef


def default_model_copies() -> int:
    """``VORTEX_MODEL_COPIES`` (0: one per device of the general workers)."""
    raw = os.environ.get("VORTEX_MODEL_COPIES", "").strip()
    if not raw:
        return 0
    if not raw.isdigit():
        from ..errors import VortexError

        raise VortexError(f"VORTEX_MODEL_COPIES = {raw!r} is not a count of workers",
                          hint="set it to a whole number >= 1 (1: never copy a model; unset: one per device)")
    return int(raw)


class Copies:
    """Which workers hold a copy of which key (thread-safe)."""

    def __init__(self, limit: int) -> None:
        #: most workers that may hold one key, the original's included
        self.limit = max(1, limit)
        self._by_key: dict[str, dict[str, tuple[WorkerRef, ...]]] = {}
        #: key -> the task that made it, its inputs resolved to refs (``remember``)
        self._recipes: dict[str, Task] = {}
        self._lock = threading.Lock()

    def remember(self, task: Task, done: Mapping[str, tuple[Any, ...]]) -> None:
        """Keep how ``task`` (which made a model) can run again: its in-batch inputs resolved
        from ``done``, as the cache would hand them to a later batch."""
        args = {}
        for name, arg in task.args.items():
            if arg.__class__ is Ref and arg.held is None:  # type: ignore[union-attr]
                refs = done.get(arg.key)  # type: ignore[union-attr]
                if refs is None:
                    return
                arg = Ref(arg.key, arg.index, refs[arg.index])  # type: ignore[union-attr]
            args[name] = arg
        with self._lock:
            self._recipes.setdefault(task.key, Task(task.node_id, task.key, task.spec, args, task.timeout, task.run_id))

    def recipe(self, key: str) -> Task | None:
        return self._recipes.get(key)

    def add(self, key: str, uid: str, refs: tuple[WorkerRef, ...]) -> None:
        with self._lock:
            self._by_key.setdefault(key, {})[uid] = refs

    def ref_on(self, key: str, index: int, uid: str) -> WorkerRef | None:
        """Worker ``uid``'s copy of output ``index`` of ``key``, if it has one."""
        refs = self._by_key.get(key, {}).get(uid)
        return refs[index] if refs is not None and index < len(refs) else None

    def count(self, key: str) -> int:
        return len(self._by_key.get(key, ()))

    def held(self, uid: str, key: str) -> int:
        """How many of the pool's refs of ``(uid, key)`` are this copy's (not the engine's)."""
        refs = self._by_key.get(key, {}).get(uid, ())
        return sum(1 for r in refs if not r.inline)

    def is_copy(self, uid: str, key: str) -> bool:
        return uid in self._by_key.get(key, {})

    def pop_key(self, key: str) -> list[WorkerRef]:
        """Forget every copy of ``key``; their refs, for the pool to release."""
        with self._lock:
            copies = self._by_key.pop(key, {})
            self._recipes.pop(key, None)
        return [r for refs in copies.values() for r in refs]

    def drop_worker(self, uid: str) -> None:
        """Forget the copies that died with worker ``uid``."""
        with self._lock:
            for key in [k for k, by_uid in self._by_key.items() if uid in by_uid]:
                del self._by_key[key][uid]
                if not self._by_key[key]:
                    del self._by_key[key]
