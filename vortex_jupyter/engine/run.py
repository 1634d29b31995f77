"""The run loop: validate, key, plan, hand one batch to the executor, collect the results.

Responsibilities of ``Engine`` (one per graph):

- keep the graph's incremental state: the key index (``keys.py``), the memoised topological
  order (``plan.py``) and what validation has already accepted (``_ValidationMemo``: after a
  param edit only the edited nodes are re-validated, after a structural edit everything);
- for each run: compute the missing keys, split the needed nodes into planned and cached,
  build the tasks (wired: params with defaults filled and ComfyUI hidden inputs, links to
  source nodes resolved through the batch's ``Wiring``, which holds the executor's references
  of cached sources; ``Task.args`` gives the ``Lit``/``Ref`` form), hand them to the
  executor as ONE batch, store each result in the output cache as it arrives, and stream
  events to listeners. Cached output nodes get their stored final previews re-emitted.
- muted and bypassed nodes (ComfyUI modes, ``graph/modes.py``) are keyed but never planned;
  the key index resolves links through bypassed nodes, so consumers get the passed-through
  value. Only ``model.modes`` is tested when no node has a mode: no extra walk.

Speed (the cold path of a 10k-node graph is the budget): validation hands over the
topological order its cycle check found; a whole-graph run with many keys to compute takes
keys, plan and tasks in one walk of that order (``_plan_in_one_pass``; warm runs and runs with
``outputs`` take the separate steps, which are cheaper when few keys are missing); the cyclic
GC is paused while planning and planning's objects are then promoted (``_planning_gc``).

A failing node fails only its descendants (the executor reports them as VE-505); everything
else finishes and stays cached. A run that announced ``RunStarted`` always ends with
``RunFinished``, also when it is interrupted (``KeyboardInterrupt``: status "cancelled", the
interrupt re-raised) or the executor raises (status "failed", the error re-raised). Events may be dispatched from an executor's thread; a
listener that raises is logged and ignored. Runs of one graph are serialised by a lock that is
held while planning (not while executing), so canvas edits during a run only wait for the
planning step.

Concurrent runs (``g.start()`` then ``g.run()``, the canvas while a cell runs, two threads) do
not compute a key twice: each run claims the keys it plans, and a run that plans a key another
run in flight claimed awaits it instead (``inflight.py``: the outcomes, timeouts, why no two runs
can wait on each other for good), executing the rest around it in waves (``sharing.py``). A run
with nothing to await runs exactly as before: one batch.

Switching executors (``g.run()`` on the worker pool, then ``g.run(executor="inline")``) re-runs
what the other one holds: outputs are cached per executor (``cache.py``) as references only it
can read. Such a run says why: a ``RunNote`` right after ``RunStarted`` ("re-running N nodes:
cached outputs belong to the workers executor") and ``stats["reason"]`` (see ``_switch_note``).

Example: ``a -> b`` with a cached: ``RunStarted(planned=("b",), cached=("a",))``,
``NodeCached(a)``, ``NodeQueued(b)``, ``NodeStarted(b)``, ``NodeFinished(b)``, ``RunFinished``.
"""

from __future__ import annotations

import gc
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ..errors import ExecutionError, Problem, RunCancelledError, UpstreamFailedError, VortexError
from ..graph.model import GraphModel
from ..graph.modes import skipped
from ..graph.queue import QueueView
from ..graph.textsub import SUBSTITUTED
from .cache import OutputCache, cache_for
from .events import (
    Event,
    NodeCached,
    NodeFailed,
    NodePreview,
    NodeQueued,
    RunFinished,
    RunNote,
    RunStarted,
)
from .executor import BatchCallbacks, CancelToken, Executor, Task, Wiring
from .executors import executor_name
from .inflight import Claim
from .keys import KeyIndex, Link, Lookup
from .plan import Plan, Planner, make_plan
from .sharing import SharedRun
from .state import RunState
from .validation import ValidationMemo

__all__ = ["Engine", "Listener", "RunState"]

log = logging.getLogger("vortex_jupyter.engine")
Listener = Callable[[Event], None]
Validator = Callable[[GraphModel, Lookup], list[Problem]]


def _default_timeout() -> float | None:
    value = os.environ.get("VORTEX_NODE_TIMEOUT")
    return _checked_timeout(value, "VORTEX_NODE_TIMEOUT") if value else None


def _checked_timeout(value: Any, source: str) -> float | None:
    """``value`` as seconds; ``VortexError`` for anything that is not a positive finite number
    (a zero, negative or NaN timeout would fail every node of the run as "timed out")."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if isinstance(value, bool) or not (0 < seconds < math.inf):
        raise VortexError(f"{source} = {value!r} is not a timeout: it must be a positive number of seconds",
                          hint=f"give {source} a number of seconds > 0, or leave it unset for no timeout")
    return seconds


class Engine:
    """Incremental execution state of one ``GraphModel``."""

    def __init__(self, model: GraphModel, lookup: Lookup, validator: Validator | None = None) -> None:
        self.model = model
        self.lookup = lookup
        self.lock = threading.RLock()
        self.keys = KeyIndex(model, lookup, self.lock)
        #: ``(model, keys, lookup) -> dict``: what output files record of a run (PNG ``vortex``
        #: chunk); set by the front door (``history/provenance.record``), None: nothing.
        self.provenance: Callable[..., dict[str, Any]] | None = None
        self.planner = Planner(model)
        self.memo = ValidationMemo(model, validator, self.lock)
        #: The executor and cache of this graph's last run (see ``_switch_note``).
        self._last: tuple[Executor, OutputCache] | None = None

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
            needed, always = self._needed(None if outputs is None else list(outputs), run_id)
            keymap = self.keys.ensure(needed)
            return make_plan(needed, keymap, cache.index, always, self.model.predecessors, outputs)

    def _needed(self, outputs: list[str] | None, run_id: str) -> tuple[list[str], set[str]]:
        """Validate (memoised), then the needed nodes in order and the always-run ones."""
        keys = self.keys
        if outputs is not None:
            missing = [o for o in outputs if o not in self.model.nodes]
            if missing:
                raise KeyError(f"outputs {missing} are not nodes of this graph")
        specs_changed = keys.refresh_specs()
        self.memo.check(self.lookup, full=bool(specs_changed))
        order = self.planner.order(keys.structure_version, self.memo.take_order())
        keys.refresh_volatile(run_id)
        needed = self.planner.needed(order, outputs)
        if self.model.modes:
            needed = self._running(needed)
        always = {n for n in keys.volatile_nodes() if keys.spec(n).always_run}  # type: ignore[union-attr]
        return needed, always

    def _running(self, needed: list[str]) -> list[str]:
        """``needed`` without muted and bypassed nodes (graph/modes.py). Their keys are computed
        first, all of ``needed`` in order: the key invariant (a node has a key only if its
        ancestors do) must hold through them, so that an edit above one reaches its consumers."""
        off = skipped(self.model)
        if not off:
            return needed
        self.keys.ensure(needed)
        return [n for n in needed if n not in off]

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
        node_timeout = _checked_timeout(node_timeout, "node_timeout")
        cache = cache if cache is not None else cache_for(executor)
        _forget_lost_outputs(executor, cache)
        cancel = cancel or CancelToken()
        state = state or RunState(run_id or uuid.uuid4().hex[:12], executor, cache)
        out_list = None if outputs is None else [str(o) for o in outputs]
        t0 = time.perf_counter()
        inflight = cache.inflight
        seen = inflight.ended
        with self.lock, _planning_gc(len(self.model.nodes) - len(self.keys.keys) >= _PROMOTE_AT):
            plan, tasks, held, planned = self._prepare(state, cache, out_list, node_timeout)
            state.note = self._switch_note(state, plan, executor)
            self._last = (executor, cache)
            awaited = inflight.claim(state, planned, tasks, seen)
        try:
            self._execute(state, plan, tasks, held, awaited, executor, cancel, listeners, t0)
        finally:
            inflight.release(state.claim)  # done already by _close, unless announcing raised
        return state

    def _execute(self, state: RunState, plan: Plan, tasks: list[Task], held: list[str], awaited: dict[str, Claim],
                 executor: Executor, cancel: CancelToken, listeners: Sequence[Listener], t0: float) -> None:
        """Announce, execute (one batch, or waves around awaited keys), account, ``RunFinished``."""
        cache = state.cache
        emit = _dispatcher(state, listeners)
        self._announce(state, plan, emit, bool(listeners))
        callbacks = BatchCallbacks(emit, state.on_result, cache.drop, detail=bool(listeners))
        try:
            if awaited:
                SharedRun(state, tasks, awaited, executor, callbacks, cancel, held).run()
            elif tasks:
                executor.execute(tasks, callbacks, cancel)
        except BaseException as exc:
            # Jupyter's interrupt (KeyboardInterrupt while a worker runs a node, or between two
            # inline nodes) or an executor failure: the run still ends with RunFinished, or the
            # canvas, which saw RunStarted, kept its Run button disabled for good.
            if not isinstance(exc, Exception):
                cancel.cancel()
            self._close(state, plan, tasks, cancel, emit, t0)
            raise
        finally:
            cache.unpin(held)
        self._close(state, plan, tasks, cancel, emit, t0)

    def _close(self, state: RunState, plan: Plan, tasks: list[Task], cancel: CancelToken,
               emit: Callable[[Event], None], t0: float) -> None:
        """Release the run's claim (runs waiting for its keys go on), account for every node, then
        ``RunFinished``; the run is done even if a listener raises."""
        state.cache.inflight.release(state.claim)
        try:
            self._finish(state, plan, tasks, cancel, emit)
            state.elapsed = time.perf_counter() - t0
            emit(RunFinished(state.run_id, state.status, dict(state.stats), state.elapsed))
        finally:
            state.mark_done()

    # ---- planning ------------------------------------------------------------------------
    def _prepare(
        self, state: RunState, cache: OutputCache, outputs: list[str] | None, node_timeout: float | None
    ) -> tuple[Plan, list[Task], list[str], dict[str, str]]:
        """Plan, tasks, the cached keys pinned for them, and the planned keys (key -> node id)."""
        needed, always = self._needed(outputs, state.run_id)
        keymap = self.keys.keys
        for _attempt in range(3):
            held: list[str] = []
            make = _TaskMaker(self, keymap, cache, state.run_id, node_timeout, held)
            try:
                if outputs is None and _ONE_PASS_FROM * (len(self.model.nodes) - len(keymap)) > len(needed):
                    plan, tasks = self._plan_in_one_pass(needed, always, cache, make)
                else:
                    self.keys.ensure(needed)
                    plan = make_plan(needed, keymap, cache.index, always, self.model.predecessors, outputs)
                    make.planned_keys = {keymap[n]: n for n in plan.planned}
                    tasks = [make(n, keymap[n]) for n in plan.planned]
                break
            except _Evicted:  # another run evicted an input between plan and pin: plan again
                cache.unpin(held)
        else:  # pragma: no cover - needs another thread evicting in a tight loop
            raise RuntimeError("the output cache kept evicting this run's inputs; raise its bounds")
        keys = dict(keymap)  # a snapshot: edits during the run must not change the batch's keys
        make.wiring.keys = keys
        # a skipped (muted/bypassed) node has a key but is no part of the run
        state.begin(plan, {n: keys[n] for n in _all_nodes(plan)} if outputs or self.model.modes else keys)
        state.set_tasks(tasks)
        planned = make.planned_keys
        assert isinstance(planned, dict)
        return plan, tasks, held, planned

    def _plan_in_one_pass(
        self, order: list[str], always: set[str], cache: OutputCache, make: _TaskMaker
    ) -> tuple[Plan, list[Task]]:
        """Keys, plan and tasks of a whole-graph run, in one walk of the topological order.

        The decisions of ``KeyIndex.ensure`` + ``make_plan`` + one ``_TaskMaker`` call per
        planned node (the path of warm runs and of runs with ``outputs``), taken while each
        node's record is at hand: at 10k nodes every extra walk re-reads node records spread
        over the heap, which costs more than the work done (measured ~2 us a node).
        """
        keymap = self.keys.keys
        compute = self.keys.compute
        index = cache.index
        plan = Plan()
        first: dict[str, str] = {}  # key -> the planned node computing it
        make.planned_keys = first
        # Until a node is cached, every node before this one in the order (its sources
        # included) is planned or shared: no link of a task can read a cached output.
        make.sources_planned = True
        tasks: list[Task] = []
        for n in order:
            k = keymap.get(n) or compute(n)
            if k in index and n not in always:
                plan.cached.append(n)
                make.sources_planned = False
            elif k in first:
                plan.shared[n] = first[k]  # same key as a planned node: computed once
            else:
                first[k] = n
                plan.planned.append(n)
                tasks.append(make(n, k))
        return plan, tasks

    def _switch_note(self, state: RunState, plan: Plan, executor: Executor) -> RunNote | None:
        """Why a run on another executor than this graph's last one recomputes nodes: outputs
        stay with the executor that computed them (in this process, or in a worker), so the
        cache is one per executor and holds references only that executor can read. Moving
        them across (fetching a worker's tensors into the kernel, shipping the kernel's values
        and loaded models into a worker) would cost about what recomputing costs, so they are
        recomputed, and the run says so. None when nothing planned is held by the last one."""
        last = self._last
        if last is None or last[0] is executor or not plan.planned:
            return None
        held, keys, spec = last[1].index, state.node_keys, self.keys.spec
        n = sum(1 for node in plan.planned
                if keys[node] in held and not getattr(spec(node), "always_run", False))
        if not n:
            return None
        old = executor_name(last[0])
        return RunNote(state.run_id, f"re-running {n} node{'s' if n != 1 else ''}: cached outputs belong to the "
                       f"{old} executor", "executor",
                       f"outputs stay with the executor that computed them; run with executor={old!r} to reuse them")

    # ---- events --------------------------------------------------------------------------
    @staticmethod
    def _announce(state: RunState, plan: Plan, emit: Callable[[Event], None], detail: bool) -> None:
        """``RunStarted``, the run's ``RunNote`` if it has one, then per cached node
        ``NodeCached`` (with listeners only) and its stored final previews (always, like a node
        that ran: the canvas and ``run.images`` show output images of cached nodes too), then
        ``NodeQueued`` per planned node."""
        run_id = state.run_id
        emit(RunStarted(run_id, tuple(plan.planned), tuple(plan.cached)))
        if state.note is not None:
            emit(state.note)
        node_keys = state.node_keys
        state.cache.touch(map(node_keys.__getitem__, plan.cached))
        previewed = state.cache.previewed
        if detail:
            for n in plan.cached:
                emit(NodeCached(run_id, n))
                if previewed and node_keys[n] in previewed:
                    _replay_previews(state, n, emit)
            for n in plan.planned:
                emit(NodeQueued(run_id, n))
        elif previewed:  # a few keys: checking each cached node against them is a set lookup
            for n in plan.cached:
                if node_keys[n] in previewed:
                    _replay_previews(state, n, emit)

    def _finish(
        self, state: RunState, plan: Plan, tasks: list[Task], cancel: CancelToken, emit: Callable[[Event], None]
    ) -> None:
        """Account for nodes without an outcome (cancelled / not reported) and shared keys."""
        # ``finished`` and ``served`` hold nodes of this run's tasks only: all of them there
        # means none is missing
        served = state.served
        for task in tasks if len(state.finished) + len(served) < len(tasks) else ():
            n = task.node_id
            if n not in state.finished and n not in state.errors and n not in served:
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
                if state.node_keys[n] in state.cache.previewed:
                    _replay_previews(state, n, emit)
        state.status = "cancelled" if cancel.cancelled else ("failed" if state.errors else "ok")


#: A whole-graph run keys, plans and builds tasks in one walk when more than 1/N of the
#: nodes need a key (a cold run, an edit near the sources): the walk costs ~0.2 us more than
#: ``make_plan``'s filter for a node whose key is known, and saves ~1 us for one it keys.
_ONE_PASS_FROM = 4
#: Runs with at least this many keys to compute (so about as many tasks to build) have their
#: planning objects promoted (see ``_planning_gc``); warm runs make too few to matter.
_PROMOTE_AT = 1000


@contextmanager
def _planning_gc(promote: bool) -> Iterator[None]:
    """No cyclic GC while planning: it allocates ~10 objects a node and none of them form
    cycles, yet each collection would walk the whole graph (measurable at 10k+ nodes).
    Node code never runs inside this block.

    With ``promote``, the objects planning made (tasks, refs, key records: they live as long
    as the run) then go straight to the oldest generation: otherwise the first young
    collections of the run would walk them all twice (gen 0, then gen 1) for nothing, ~2 us
    a node, 10% of a cold 10k-node run. ``gc.freeze(); gc.unfreeze()`` is that move, O(1).
    Young objects from before the run are collected first (a cheap gen-1 collection), so
    only planning's objects are promoted; skipped when someone else froze objects (unfreeze
    would thaw theirs).
    """
    was_enabled = gc.isenabled()
    promote = promote and was_enabled and gc.get_freeze_count() == 0
    if promote:
        gc.collect(1)
    gc.disable()
    try:
        yield
    finally:
        if promote:
            gc.freeze()
            gc.unfreeze()
        if was_enabled:
            gc.enable()


class _Evicted(Exception):
    """A cached input vanished between planning and pinning."""


class _TaskMaker:
    """Builds the wired ``Task`` of one planned node (engine/executor.py): its params with
    defaults filled (the node record's own dict, plus ComfyUI hidden inputs), its links, and
    the timeout. Links resolve through the batch's ``wiring``: a source whose key no task of
    this batch computes (not in ``planned_keys``) is a cached output, pinned, listed in
    ``held`` and put in ``wiring.held``; ``wiring.keys`` is filled once the batch is planned."""

    def __init__(self, engine: Engine, keymap: dict[str, str], cache: OutputCache, run_id: str,
                 node_timeout: float | None, held: list[str]) -> None:
        self.engine = engine
        self.infos = engine.keys._info
        self.keymap = keymap
        self.cache = cache
        self.run_id = run_id
        # run(node_timeout=...) is this run's explicit choice and wins over a node's declared
        # timeout (so error hints can say "raise it with run(node_timeout=...)"); the env
        # default only fills in for nodes that declare none.
        self.override = node_timeout
        self.default = _default_timeout()
        self.held = held
        self.held_refs: dict[str, tuple[Any, ...]] = {}
        self.wiring = Wiring(held=self.held_refs)
        self.planned_keys: Container[str] = ()
        #: True while the caller knows every source of the next tasks is in ``planned_keys``.
        self.sources_planned = False
        self._hidden: _Hidden | None = None
        self._queue: QueueView | None = None

    def _queue_view(self) -> QueueView:
        """Queue-time text substitution (``%date:...%``, ``%Node.widget%``) as ComfyUI's frontend
        applies it, one clock per run; made only when a planned node has such a param."""
        if self._queue is None:
            self._queue = QueueView(self.engine.model, self.engine.lookup)
        return self._queue

    def __call__(self, n: str, key: str) -> Task:
        info = self.infos.get(n) or self.engine.keys.info(n)
        spec = info.spec
        assert spec is not None  # validation rejected unknown types
        links = info.links
        if links and not self.sources_planned:
            self._pin_cached(links)
        params = info.args
        if spec.type in SUBSTITUTED:  # a save node's prefix, a PrimitiveNode: see graph/queue.py
            params = self._queue_view().params(n, params)
        if spec.hidden:
            if self._hidden is None:
                self._hidden = _Hidden(self.engine.model, self.engine.lookup, self.engine.provenance, self.keymap)
            params = {**params, **self._hidden.values(n, spec.hidden)}
        timeout = self.override
        if timeout is None:
            timeout = spec.timeout if spec.timeout is not None else self.default
        return Task.wired(n, key, spec, params, links, self.wiring, timeout, self.run_id)

    def _pin_cached(self, links: tuple[Link, ...]) -> None:
        keymap, planned, held_refs = self.keymap, self.planned_keys, self.held_refs
        for _name, src, _index in links:
            k = keymap[src]
            if k in planned or k in held_refs:
                continue
            entry = self.cache.get_pinned(k)
            if entry is None:
                raise _Evicted(k)
            self.held.append(k)
            held_refs[k] = entry.refs


def _all_nodes(plan: Plan) -> list[str]:
    return [*plan.planned, *plan.cached, *plan.shared]


def _replay_previews(state: RunState, node: str, emit: Callable[[Event], None]) -> None:
    """Emit the final previews the cache kept for ``node``'s key, as its run did."""
    entry = state.cache.get(state.node_keys[node])
    for mime, data in entry.previews if entry is not None else ():
        emit(NodePreview(state.run_id, node, mime, data, True))


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
    """ComfyUI hidden inputs, computed once per run and only when a planned node needs them.
    ``extra_pnginfo`` also carries ``vortex``: the run's provenance record (``Engine.provenance``,
    injected by the front door: ``history/provenance.py``), with the writing node's id."""

    def __init__(self, model: GraphModel, lookup: Lookup, provenance: Any = None,
                 keys: dict[str, str] | None = None) -> None:
        self.model = model
        self.lookup = lookup
        self.provenance, self.keys = provenance, keys or {}
        self._prompt: dict[str, Any] | None = None
        self._workflow: dict[str, Any] | None = None
        self._record: dict[str, Any] | None = None

    def values(self, node: str, names: Iterable[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in names:
            if name == "unique_id":
                out[name] = node
            elif name == "prompt":
                out[name] = self.prompt()
            elif name == "extra_pnginfo":
                out[name] = {"workflow": self.workflow()}
                if self.provenance is not None:
                    if self._record is None:
                        try:
                            self._record = self.provenance(self.model, dict(self.keys), self.lookup)
                        except Exception:  # a record that cannot be made never fails the save
                            log.exception("the provenance record of this run could not be made")
                            self._record = {}
                    if self._record:
                        out[name]["vortex"] = {**self._record, "node": node}
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


def _forget_lost_outputs(executor: Executor, cache: OutputCache) -> None:
    """Drop cache entries whose outputs died with their worker since the last run, so this
    run's plan recomputes them instead of handing a dead reference to a task. Executors that
    can lose outputs between runs (the worker pool) offer ``drain_lost() -> [cache keys]``."""
    drain = getattr(executor, "drain_lost", None)
    if drain is not None:
        lost = drain()
        if lost:
            cache.drop(lost)
