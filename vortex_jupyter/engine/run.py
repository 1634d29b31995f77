"""The run loop: validate, key, plan, hand one batch to the executor, collect the results.

Responsibilities of ``Engine`` (one per graph):

- keep the graph's incremental state: the key index (``keys.py``), the memoised topological
  order (``plan.py``) and what validation has already accepted (``_ValidationMemo``: after a
  param edit only the edited nodes are re-validated, after a structural edit everything);
- for each run: compute the missing keys, split the needed nodes into planned and cached,
  build the tasks (params with defaults filled as ``Lit``, links as ``Ref`` holding the
  executor's reference when the source is cached, ComfyUI hidden inputs), hand them to the
  executor as ONE batch, store each result in the output cache as it arrives, and stream
  events to listeners.

A failing node fails only its descendants (the executor reports them as VE-505); everything
else finishes and stays cached. Events may be dispatched from an executor's thread; a
listener that raises is logged and ignored. Runs of one graph are serialised by a lock that is
held while planning (not while executing), so canvas edits during a run only wait for the
planning step.

Example: ``a -> b`` with a cached: ``RunStarted(planned=("b",), cached=("a",))``,
``NodeCached(a)``, ``NodeQueued(b)``, ``NodeStarted(b)``, ``NodeFinished(b)``, ``RunFinished``.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ..errors import ExecutionError, Problem, RunCancelledError, UpstreamFailedError
from ..graph.model import GraphModel
from .cache import OutputCache, cache_for
from .events import (
    Event,
    NodeCached,
    NodeFailed,
    NodeQueued,
    RunFinished,
    RunStarted,
)
from .executor import BatchCallbacks, CancelToken, Executor, Lit, Ref, Task
from .keys import KeyIndex, Lookup
from .plan import Plan, Planner, make_plan
from .state import RunState
from .validation import ValidationMemo

__all__ = ["Engine", "Listener", "RunState"]

log = logging.getLogger("vortex_jupyter.engine")
Listener = Callable[[Event], None]
Validator = Callable[[GraphModel, Lookup], list[Problem]]


def _default_timeout() -> float | None:
    value = os.environ.get("VORTEX_NODE_TIMEOUT")
    return float(value) if value else None


class Engine:
    """Incremental execution state of one ``GraphModel``."""

    def __init__(self, model: GraphModel, lookup: Lookup, validator: Validator | None = None) -> None:
        self.model = model
        self.lookup = lookup
        self.lock = threading.RLock()
        self.keys = KeyIndex(model, lookup, self.lock)
        self.planner = Planner(model)
        self.memo = ValidationMemo(model, validator, self.lock)

    def close(self) -> None:
        self.keys.close()
        self.memo.close()

    def validate(self) -> list[Problem]:
        """All problems of the graph (full validation, not memoised)."""
        with self.lock:
            self.keys.refresh_specs()
            return self.memo.problems(self.lookup)

    def plan(self, cache: OutputCache, outputs: Iterable[str] | None = None, run_id: str = "plan") -> Plan:
        """What a run would do now (validates and computes keys; runs nothing)."""
        with self.lock:
            needed, keymap, always = self._keyed(None if outputs is None else list(outputs), run_id)
            return make_plan(needed, keymap, cache.index, always, self.model.predecessors, outputs)

    def _keyed(self, outputs: list[str] | None, run_id: str) -> tuple[list[str], dict[str, str], set[str]]:
        """Validate (memoised), then the needed nodes in order, their keys, the always-run ones."""
        keys = self.keys
        if outputs is not None:
            missing = [o for o in outputs if o not in self.model.nodes]
            if missing:
                raise KeyError(f"outputs {missing} are not nodes of this graph")
        specs_changed = keys.refresh_specs()
        self.memo.check(self.lookup, full=bool(specs_changed))
        order = self.planner.order(keys.structure_version)
        keys.refresh_volatile(run_id)
        needed = self.planner.needed(order, outputs)
        keymap = keys.ensure(needed)
        always = {n for n in keys.volatile_nodes() if keys.spec(n).always_run}  # type: ignore[union-attr]
        return needed, keymap, always

    def run(
        self,
        executor: Executor,
        *,
        outputs: Iterable[str] | None = None,
        node_timeout: float | None = None,
        cancel: CancelToken | None = None,
        listeners: Sequence[Listener] = (),
        run_id: str | None = None,
        cache: OutputCache | None = None,
        state: RunState | None = None,
    ) -> RunState:
        """Run the graph (or what ``outputs`` need); raises ``ValidationError`` before running."""
        cache = cache if cache is not None else cache_for(executor)
        cancel = cancel or CancelToken()
        state = state or RunState(run_id or uuid.uuid4().hex[:12], executor, cache)
        out_list = None if outputs is None else [str(o) for o in outputs]
        t0 = time.perf_counter()
        with self.lock, _gc_paused():
            plan, tasks, held = self._prepare(state, cache, out_list, node_timeout)
        emit = _dispatcher(state, listeners)
        self._announce(state, plan, emit, bool(listeners))
        callbacks = BatchCallbacks(emit, state.on_result, cache.drop, detail=bool(listeners))
        try:
            if tasks:
                executor.execute(tasks, callbacks, cancel)
        finally:
            cache.unpin(held)
        self._finish(state, plan, tasks, cancel, emit)
        state.elapsed = time.perf_counter() - t0
        emit(RunFinished(state.run_id, state.status, dict(state.stats), state.elapsed))
        state.mark_done()
        return state

    # ---- planning ------------------------------------------------------------------------
    def _prepare(
        self, state: RunState, cache: OutputCache, outputs: list[str] | None, node_timeout: float | None
    ) -> tuple[Plan, list[Task], list[str]]:
        needed, keymap, always = self._keyed(outputs, state.run_id)
        for _attempt in range(3):
            plan = make_plan(needed, keymap, cache.index, always, self.model.predecessors, outputs)
            held: list[str] = []
            try:
                tasks = self._tasks(plan, keymap, cache, state.run_id, node_timeout, held)
                break
            except _Evicted:  # another run evicted an input between plan and pin: plan again
                cache.unpin(held)
        else:  # pragma: no cover - needs another thread evicting in a tight loop
            raise RuntimeError("the output cache kept evicting this run's inputs; raise its bounds")
        state.begin(plan, {n: keymap[n] for n in _all_nodes(plan)} if outputs else dict(keymap))
        state.set_tasks(tasks)
        return plan, tasks, held

    def _tasks(
        self, plan: Plan, keymap: dict[str, str], cache: OutputCache, run_id: str,
        node_timeout: float | None, held: list[str],
    ) -> list[Task]:
        """One ``Task`` per planned node; cached inputs are pinned (listed in ``held``)."""
        infos = self.keys._info
        info_of = self.keys.info
        planned = {keymap[n] for n in plan.planned}
        default_timeout = node_timeout if node_timeout is not None else _default_timeout()
        hidden: _Hidden | None = None
        tasks: list[Task] = []
        append = tasks.append
        for n in plan.planned:
            info = infos.get(n) or info_of(n)
            spec = info.spec
            assert spec is not None  # validation rejected unknown types
            lits = info.lits
            if lits is None:
                lits = info.lits = {name: Lit(v) for name, v in info.args.items()}
            args: dict[str, Lit | Ref] = {**lits}
            for name, src, index in info.links:
                k = keymap[src]
                if k in planned:
                    args[name] = Ref(k, index)
                else:
                    entry = cache.get_pinned(k)
                    if entry is None:
                        raise _Evicted(k)
                    held.append(k)
                    args[name] = Ref(k, index, entry.refs[index])
            if spec.hidden:
                hidden = hidden or _Hidden(self.model, self.lookup)
                args.update(hidden.args(n, spec.hidden))
            timeout = spec.timeout if spec.timeout is not None else default_timeout
            append(Task(n, keymap[n], spec, args, timeout, run_id))
        return tasks

    # ---- events --------------------------------------------------------------------------
    @staticmethod
    def _announce(state: RunState, plan: Plan, emit: Callable[[Event], None], detail: bool) -> None:
        run_id = state.run_id
        emit(RunStarted(run_id, tuple(plan.planned), tuple(plan.cached)))
        state.cache.touch(map(state.node_keys.__getitem__, plan.cached))
        if detail:
            for n in plan.cached:
                emit(NodeCached(run_id, n))
            for n in plan.planned:
                emit(NodeQueued(run_id, n))

    def _finish(
        self, state: RunState, plan: Plan, tasks: list[Task], cancel: CancelToken, emit: Callable[[Event], None]
    ) -> None:
        """Account for nodes without an outcome (cancelled / not reported) and shared keys."""
        for task in tasks:
            n = task.node_id
            if n not in state.finished and n not in state.errors:
                cls = RunCancelledError if cancel.cancelled else ExecutionError
                why = "the run was cancelled" if cancel.cancelled else "the executor did not report it"
                emit(NodeFailed(state.run_id, n, cls.code, f"node {n!r} did not run: {why}", cls.__name__))
        for n, src in plan.shared.items():
            if src in state.errors:
                emit(NodeFailed(state.run_id, n, UpstreamFailedError.code,
                                f"node {n!r} did not run: node {src!r} with the same inputs failed",
                                "UpstreamFailedError"))
            else:
                state.shared_ok += 1
                emit(NodeCached(state.run_id, n))
        state.status = "cancelled" if cancel.cancelled else ("failed" if state.errors else "ok")


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic GC while planning: it allocates ~10 objects a node and none of them form
    cycles, yet each collection would walk the whole graph (measurable at 10k+ nodes).
    Node code never runs inside this block."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class _Evicted(Exception):
    """A cached input vanished between planning and pinning."""


def _all_nodes(plan: Plan) -> list[str]:
    return [*plan.planned, *plan.cached, *plan.shared]


def _dispatcher(state: RunState, listeners: Sequence[Listener]) -> Callable[[Event], None]:
    """The ``emit`` of one run: bookkeeping first, then every listener, errors logged."""
    observe = state.observe
    if not listeners:
        return observe
    fns = list(listeners)

    def emit(event: Event) -> None:
        observe(event)
        for fn in fns:
            try:
                fn(event)
            except Exception:
                log.exception("event listener %r raised on %s; the run goes on", fn, event.kind)

    return emit


class _Hidden:
    """ComfyUI hidden inputs, computed once per run and only when a planned node needs them."""

    def __init__(self, model: GraphModel, lookup: Lookup) -> None:
        self.model = model
        self.lookup = lookup
        self._prompt: dict[str, Any] | None = None
        self._workflow: dict[str, Any] | None = None

    def args(self, node: str, names: Iterable[str]) -> dict[str, Lit]:
        out: dict[str, Lit] = {}
        for name in names:
            if name == "unique_id":
                out[name] = Lit(node)
            elif name == "prompt":
                out[name] = Lit(self.prompt())
            elif name == "extra_pnginfo":
                out[name] = Lit({"workflow": self.workflow()})
        return out

    def prompt(self) -> dict[str, Any]:
        if self._prompt is None:
            from ..graph.formats import to_comfy_api

            self._prompt = to_comfy_api(self.model, self.lookup)
        return self._prompt

    def workflow(self) -> dict[str, Any]:
        if self._workflow is None:
            from ..graph.formats import to_comfy_ui

            self._workflow = to_comfy_ui(self.model, self.lookup)
        return self._workflow
