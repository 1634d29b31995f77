"""``SharedRun``: a run's tasks executed around the keys other runs in flight compute.

A run with no awaited key hands its whole batch to the executor at once (``Engine.run``). A run
with awaited keys (``inflight.py``) runs in *waves*: each wave is one batch of every task that
can run now (each source cached, produced, or computed earlier in the same wave), in the plan's
order. Between waves the run takes the outcomes of its awaited keys from its inbox, and blocks
on the inbox only when nothing can run (checking its cancel token every ``_POLL`` seconds).

State, by cache key (a run plans one task per key; ``plan.shared`` covers duplicates):

- ``todo``: tasks not resolved yet; ``pending``: the awaited ones, with the claim computing them;
- ``missing``: per task, how many of its sources are in ``todo`` and not yet in a wave;
  ``dependents``: the reverse; ``ready``: tasks whose ``missing`` reached 0 (not pending);
- ``failed``: key -> the node named as the upstream failure of its dependents.

Each source decrements its dependents' ``missing`` once: when it enters a wave or is served. A
source that fails fails its dependents at once (VE-505), except awaited ones: their producers
decide, and a run that takes one over finds the failed source then.

Outputs read across waves are pinned in the cache until the run ends (results of its waves:
``OutputCache.put(pin=True)``; keys served by other runs: ``get_pinned``) and their references
go into the batch's shared ``Wiring.held``, as for cached inputs.

Example: ``x -> b -> c`` and ``y``, with ``x`` cached and ``b`` computed by another run: wave 1
is ``[y]``; when ``b`` is produced it is served (``NodeCached``), and wave 2 is ``[c]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import NodeTimeoutError, UpstreamFailedError
from .cache import Entry
from .events import NodeCached, NodeFailed, NodePreview
from .executor import BatchCallbacks, CancelToken, Executor, Task
from .inflight import FAILED, PRODUCED, Claim, Inbox
from .state import RunState

__all__ = ["SharedRun"]

#: Seconds between two looks at the cancel token while a run waits for other runs.
_POLL = 0.05


class SharedRun:
    """Executes ``tasks`` (topological) except ``awaited`` keys, which other runs compute."""

    def __init__(self, state: RunState, tasks: Sequence[Task], awaited: dict[str, Claim], executor: Executor,
                 callbacks: BatchCallbacks, cancel: CancelToken, held: list[str]) -> None:
        assert state.claim is not None and tasks and tasks[0].wiring is not None
        self.state, self.claim, self.executor, self.cancel, self.held = state, state.claim, executor, cancel, held
        self.cache = state.cache
        self.inflight = state.cache.inflight
        self.emit = callbacks.emit
        self.callbacks = BatchCallbacks(callbacks.emit, self._on_result, callbacks.on_lost, callbacks.detail)
        wiring = tasks[0].wiring
        self.keys = wiring.keys
        self.held_refs: dict[str, tuple[Any, ...]] = wiring.held  # type: ignore[assignment]  # the run's dict
        self.todo = {t.key: t for t in tasks}
        self.order = {t.key: i for i, t in enumerate(tasks)}
        self.pending: dict[str, Claim] = {}
        self.failed: dict[str, str] = {}
        self.missing: dict[str, int] = {}
        self.dependents: dict[str, list[str]] = {}
        self.produced: dict[str, tuple[Any, ...]] = {}
        self.inbox = Inbox()
        self.watched: list[tuple[Claim, str]] = []
        for t in tasks:
            sources = self._sources(t) & self.todo.keys()
            self.missing[t.key] = len(sources)
            for s in sources:
                self.dependents.setdefault(s, []).append(t.key)
        by_claim: dict[int, tuple[Claim, list[str]]] = {}
        for key, claim in awaited.items():
            self.pending[key] = claim
            self.watched.append((claim, key))
            by_claim.setdefault(id(claim), (claim, []))[1].append(key)
        for claim, keys in by_claim.values():
            self.inflight.watch(claim, keys, self.inbox)
        self.ready = [k for k, n in self.missing.items() if n == 0 and k not in self.pending]

    def run(self) -> None:
        """Waves until every task is resolved or the run is cancelled (``Engine._finish``
        reports what is left as cancelled)."""
        try:
            while self.todo and not self.cancel.cancelled:
                wave = self._wave()
                if wave:
                    self._execute(wave)
                elif not self.pending:
                    break  # cannot happen: a task that is not ready waits on an awaited key
                for key, outcome, event in self.inbox.take(0 if wave else _POLL):
                    self._resolve(key, outcome, event)
        finally:
            self.inflight.unwatch(self.inbox, self.watched)

    # ---- waves -----------------------------------------------------------------------------
    def _wave(self) -> list[Task]:
        """The ready tasks and every task that only they and available outputs feed."""
        queue, self.ready = self.ready, []
        todo, pending, missing, dependents = self.todo, self.pending, self.missing, self.dependents
        chosen: list[str] = []
        seen: set[str] = set()
        while queue:
            k = queue.pop()
            if k in seen or k not in todo or k in pending:
                continue
            seen.add(k)
            chosen.append(k)
            for d in dependents.get(k, ()):
                missing[d] -= 1
                if missing[d] == 0 and d not in pending:
                    queue.append(d)
        chosen.sort(key=self.order.__getitem__)
        return [todo[k] for k in chosen]

    def _execute(self, wave: list[Task]) -> None:
        self.executor.execute(wave, self.callbacks, self.cancel)
        errors, produced, held_refs = self.state.errors, self.produced, self.held_refs
        lost = []
        for t in wave:
            del self.todo[t.key]
            refs = produced.pop(t.key, None)
            if refs is not None and t.node_id not in errors:
                held_refs[t.key] = refs
            else:  # failed, cancelled, or not reported (Engine._finish says which)
                lost.append(t)
        if self.cancel.cancelled:
            return  # the rest is reported as cancelled, not as failed upstream
        for t in lost:
            self.failed[t.key] = t.node_id
            self._fail_dependents(t.key, t.node_id)

    def _on_result(self, task: Task, refs: tuple[Any, ...]) -> None:
        self.state.on_result(task, refs, True)  # pinned: a later wave may read it
        self.held.append(task.key)
        self.produced[task.key] = refs

    # ---- awaited keys ----------------------------------------------------------------------
    def _await(self, key: str, claim: Claim) -> None:
        self.pending[key] = claim
        self.watched.append((claim, key))
        self.inflight.watch(claim, (key,), self.inbox)

    def _resolve(self, key: str, outcome: str, event: NodeFailed | None) -> None:
        claim = self.pending.pop(key, None)
        if claim is None:
            return  # delivered twice (known when watched, then again at the release)
        task = self.todo[key]
        if outcome == FAILED and event is not None:
            if event.code != NodeTimeoutError.code or claim.timeout_of(key) == task.timeout:
                self._fail_like(task, event)
                return
        elif outcome == PRODUCED:
            entry = self.cache.get_pinned(key)
            if entry is not None:
                self._serve(task, entry)
                return
        self._take_over(task)  # abandoned, timed out under another bound, or evicted already

    def _serve(self, task: Task, entry: Entry) -> None:
        """Another run produced ``task``'s key: the node is served, as a cached one is."""
        key, node, state = task.key, task.node_id, self.state
        del self.todo[key]
        self.held.append(key)
        self.held_refs[key] = entry.refs
        state.served.add(node)
        state.shared_ok += 1
        self.emit(NodeCached(state.run_id, node))
        for mime, data in entry.previews:
            self.emit(NodePreview(state.run_id, node, mime, data, True))
        for d in self.dependents.get(key, ()):
            self.missing[d] -= 1
            if self.missing[d] == 0 and d not in self.pending and d in self.todo:
                self.ready.append(d)

    def _fail_like(self, task: Task, event: NodeFailed) -> None:
        """Another run's node with ``task``'s key failed: so does this node, with that error."""
        node = task.node_id
        message = event.message if event.node == node else (
            f"{event.message} (node {event.node!r} of run {event.run_id} has the same inputs and failed so)")
        del self.todo[task.key]
        self.emit(NodeFailed(self.state.run_id, node, event.code, message, event.error_type, event.traceback))
        self.failed[task.key] = node
        self._fail_dependents(task.key, node)

    def _take_over(self, task: Task) -> None:
        """Compute an abandoned key here, unless another run took it meanwhile."""
        key = task.key
        other = self.inflight.take(self.claim, key, task.node_id, task.timeout)
        if other is not None:
            self._await(key, other)
            return
        upstream = next((self.failed[s] for s in self._sources(task) if s in self.failed), None)
        if upstream is not None:
            self._upstream_failed(key, upstream)
            self._fail_dependents(key, upstream)
        elif self.missing[key] == 0:
            self.ready.append(key)

    # ---- failures --------------------------------------------------------------------------
    def _fail_dependents(self, key: str, culprit: str) -> None:
        stack = [key]
        while stack:
            for d in self.dependents.get(stack.pop(), ()):
                if d in self.todo and d not in self.pending:
                    self._upstream_failed(d, culprit)
                    stack.append(d)

    def _upstream_failed(self, key: str, culprit: str) -> None:
        node = self.todo.pop(key).node_id
        self.failed[key] = culprit
        self.emit(NodeFailed(self.state.run_id, node, UpstreamFailedError.code,
                             f"node {node!r} did not run: upstream node {culprit!r} failed", "UpstreamFailedError"))

    def _sources(self, task: Task) -> set[str]:
        keys = self.keys
        return {keys[src] for _name, src, _index in task.links or ()}
