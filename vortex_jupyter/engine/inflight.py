"""Runs in flight and the keys they compute: a key one run is computing is awaited by the others.

Two runs of one graph started close together (``g.start()`` then ``g.run()``, the canvas's Run
button while a cell runs, two threads) used to compute every node twice: each planned against
the cache, and neither had put anything there yet. Here, as in ComfyUI's cache and Dask's
scheduler, a key being computed is computed once.

Policy:

- Every run *claims* the keys it plans to compute (``InFlight.claim``), in the registry of its
  output cache: runs on one executor share it, whichever graph they run (keys do not depend on
  node ids, so a copy of a graph shares too). A planned key another run in flight has claimed is
  *awaited* instead (``engine/sharing.py`` runs the rest of the run around it). Its outcome:
  - **produced**: it reached the cache; the waiting run pins it and serves its node like a
    cached one (``NodeCached``, stored previews); its dependents read the producer's outputs;
  - **failed**: the producer's node failed (its own error, not VE-504 cancelled nor VE-505
    upstream failed); the waiting run fails its node with the same code, type, message and
    traceback, and its dependents with VE-505;
  - **abandoned**: the producer ended without either (cancelled, interrupted, its executor
    raised, its node failed only because of a cancel or an upstream failure, or timed out under
    another timeout than the waiting run's): the waiting run claims the key and computes it
    itself, or awaits a run that claimed it meanwhile.
- Timeouts: a run awaits a key only when the producer's timeout for it is no laxer than its own
  (its own is None, or the producer's is set and not longer): otherwise waiting could outlast
  the bound the run was given, and it computes the key itself.
- A run planned while a claim ended (the registry's ``ended`` moved since the run looked) also
  checks its planned keys against the cache: a run that finished while this one planned has put
  them there.

State: the claims of the runs in flight, oldest first; per claim its keys (key -> node id), the
failures recorded so far and the inboxes of the runs waiting for each key. The producer's
result callback looks at ``Claim.waiters`` (empty unless someone waits): that one test per
result is all a run pays when no other run is in flight, plus O(1) to claim and release.

No deadlock: a run waits only when it has nothing left to execute, and only for keys other
runs claimed; a run claims only keys it computes itself, and releasing a claim (when its run
ends, however it ends) resolves every key it still held. Suppose every run in flight waited.
Take an unresolved claimed key K with no unresolved claimed key among its ancestors: one exists,
because keys are Merkle hashes of their sources' keys (``keys.py``), so the key graph is a
finite DAG. Each source of K is then cached, produced or failed, so K's claimer can run K (or
fail it with VE-505) without waiting: a contradiction. Batches never wait on claims (a batch
holds only tasks whose sources are available), so an executor slot a run waits for is freed.

Example: ``a -> b``; run 1 computes both; run 2 starts while ``b`` runs: ``a`` is cached for
run 2, ``b`` awaited; when run 1 stores ``b``, run 2 emits ``NodeCached(b)`` and finishes with
``stats == {"ran": 0, "cached": 2, "failed": 0}``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import RunCancelledError, UpstreamFailedError
from .events import NodeFailed
from .executor import Task

if TYPE_CHECKING:
    from .state import RunState

__all__ = ["ABANDONED", "FAILED", "PRODUCED", "Claim", "InFlight", "Inbox", "may_await"]

PRODUCED, FAILED, ABANDONED = "produced", "failed", "abandoned"
#: Failures that say nothing about the node itself: a waiting run computes such a key again.
_NOT_THE_NODES = frozenset({RunCancelledError.code, UpstreamFailedError.code})

#: (key, outcome, the producer's NodeFailed for FAILED)
Outcome = tuple[str, str, NodeFailed | None]


def may_await(mine: float | None, theirs: float | None) -> bool:
    """Whether a run whose node timeout is ``mine`` may wait for a producer running it under
    ``theirs``: the producer gives up no later than this run would."""
    return mine is None or (theirs is not None and theirs <= mine)


class Claim:
    """The keys one run in flight computes (key -> node id) and what became of them."""

    __slots__ = ("_tasks", "_timeouts", "done", "failures", "keys", "run_id", "waiters")

    def __init__(self, run_id: str, keys: dict[str, str], tasks: Sequence[Task] = ()) -> None:
        self.run_id = run_id
        self.keys = keys
        self.done = False
        #: key -> the producer's NodeFailed, for failures of the node itself
        self.failures: dict[str, NodeFailed] = {}
        #: key -> inboxes of the runs waiting for it (removed once delivered)
        self.waiters: dict[str, list[Inbox]] = {}
        self._tasks = tasks
        self._timeouts: dict[str, float | None] | None = None

    def timeout_of(self, key: str) -> float | None:
        """The node timeout the producer runs ``key`` under (the map is built on first use:
        only runs that overlap another need it)."""
        if self._timeouts is None:
            self._timeouts = {t.key: t.timeout for t in self._tasks}
        return self._timeouts.get(key)

    def __repr__(self) -> str:
        return f"<Claim of run {self.run_id}: {len(self.keys)} keys{' (ended)' if self.done else ''}>"


#: Stands for a run that ended before this one claimed: its keys are in the cache or nowhere.
_ENDED = Claim("", {})
_ENDED.done = True


class Inbox:
    """Outcomes of the keys one run awaits, delivered from the producers' threads."""

    def __init__(self) -> None:
        self._items: list[Outcome] = []
        self._cond = threading.Condition(threading.Lock())

    def put(self, item: Outcome) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify()

    def take(self, timeout: float) -> list[Outcome]:
        """What arrived, waiting up to ``timeout`` seconds for something if nothing did."""
        with self._cond:
            if not self._items and timeout > 0:
                self._cond.wait(timeout)
            items, self._items = self._items, []
        return items


class InFlight:
    """The claims of the runs in flight on one output cache (``OutputCache.inflight``)."""

    def __init__(self, index: Mapping[str, Any]) -> None:
        self._index = index  # the cache's entries: a key there is produced
        self._lock = threading.Lock()
        self._claims: list[Claim] = []
        #: Claims released so far: a run reads it before planning and passes it to ``claim``.
        self.ended = 0

    def __len__(self) -> int:
        return len(self._claims)

    def claim(self, state: RunState, keys: dict[str, str], tasks: Sequence[Task], seen: int) -> dict[str, Claim]:
        """Register the keys (key -> node id) ``state``'s run plans to compute, sets
        ``state.claim``, and returns the keys it must await instead: key -> the claim that
        computes it (an ended one when the key was produced while this run planned)."""
        awaited: dict[str, Claim] = {}
        with self._lock:
            if self._claims or self.ended != seen:
                awaited = self._taken(keys, tasks, self.ended != seen)
                if awaited:
                    keys = {k: n for k, n in keys.items() if k not in awaited}
            claim = Claim(state.run_id, keys, tasks)
            self._claims.append(claim)
        state.claim = claim
        state.watched = claim.waiters
        return awaited

    def _taken(self, keys: dict[str, str], tasks: Sequence[Task], check_cache: bool) -> dict[str, Claim]:
        """The keys of ``keys`` that runs in flight compute (or that were produced meanwhile)."""
        awaited: dict[str, Claim] = {}
        index, others = self._index, self._claims
        mine = {t.key: t.timeout for t in tasks} if others else {}
        for k in keys:
            if check_cache and k in index:
                awaited[k] = _ENDED
                continue
            for other in others:
                if k in other.keys and may_await(mine.get(k), other.timeout_of(k)):
                    awaited[k] = other
                    break
        return awaited

    def take(self, claim: Claim, key: str, node: str, timeout: float | None) -> Claim | None:
        """An abandoned ``key`` becomes ``claim``'s (None), unless another run in flight claimed it
        meanwhile or it was produced: then the claim to await (an ended one if produced)."""
        with self._lock:
            if key in self._index:
                return _ENDED
            for other in self._claims:
                if other is not claim and key in other.keys and may_await(timeout, other.timeout_of(key)):
                    return other
            claim.keys[key] = node
        return None

    def watch(self, claim: Claim, keys: Iterable[str], inbox: Inbox) -> None:
        """Deliver the outcome of each of ``keys`` (computed by ``claim``'s run) to ``inbox``, at
        once for those already known."""
        with self._lock:
            known = []
            for key in keys:
                if not claim.done:
                    claim.waiters.setdefault(key, []).append(inbox)
                outcome = self._outcome(claim, key)
                if outcome is not None:
                    known.append(outcome)
        for outcome in known:
            inbox.put(outcome)

    def unwatch(self, inbox: Inbox, watched: Sequence[tuple[Claim, str]]) -> None:
        with self._lock:
            for claim, key in watched:
                boxes = claim.waiters.get(key)
                if boxes is not None and inbox in boxes:
                    boxes.remove(inbox)
                    if not boxes:
                        del claim.waiters[key]

    def _outcome(self, claim: Claim, key: str) -> Outcome | None:
        if key in self._index:
            return (key, PRODUCED, None)
        failure = claim.failures.get(key)
        if failure is not None:
            return (key, FAILED, failure)
        return (key, ABANDONED, None) if claim.done else None

    # ---- the producer's side ----------------------------------------------------------------
    def produced(self, claim: Claim, key: str) -> None:
        """``key`` reached the cache (called only while someone waits on ``claim``)."""
        with self._lock:
            boxes = claim.waiters.pop(key, None)
        for inbox in boxes or ():
            inbox.put((key, PRODUCED, None))

    def failed(self, claim: Claim, key: str | None, event: NodeFailed) -> None:
        """The node computing ``key`` for ``claim``'s run failed (cancels and upstream failures
        are not recorded: waiting runs compute such keys again when the claim is released)."""
        if key is None or claim.done or event.code in _NOT_THE_NODES or claim.keys.get(key) != event.node:
            return
        with self._lock:
            claim.failures[key] = event
            boxes = claim.waiters.pop(key, None)
        for inbox in boxes or ():
            inbox.put((key, FAILED, event))

    def release(self, claim: Claim | None) -> None:
        """The run ended: every key it still held is resolved for its waiters (idempotent)."""
        if claim is None:
            return
        with self._lock:
            if claim.done:
                return
            claim.done = True
            self._claims.remove(claim)
            self.ended += 1
            waiting = list(claim.waiters.items())
            claim.waiters.clear()
            outcomes = [(self._outcome(claim, key), boxes) for key, boxes in waiting]
        for outcome, boxes in outcomes:
            for inbox in boxes:
                inbox.put(outcome)  # type: ignore[arg-type]  # a done claim always has one
