"""One engine batch on several workers at once: independent branches run in parallel.

``run_batch`` (the executor's entry) comes here when the pool has more than one general worker
(``VORTEX_WORKERS=N``, or one per GPU) and the batch has branches that do not depend on each
other. Each piece still runs as an ordinary segment (``batch._Batch``), so events, timeouts,
cancel, failure isolation, death handling and ``drain_lost`` keep their meaning; this module
only decides what goes where and when.

Policy:

- **Chains.** The batch's tasks (topological order) are cut into chains: a task joins the
  chain whose last task is one of its producers in this batch, when all of its producers in this
  batch are in that chain; otherwise it starts a chain. A chain runs in order on one worker, and
  a chain depends on other chains only through its first task, whose producers are in older
  chains: no cycle, and a linear chain never moves its tensors between workers.
- **Ready.** A chain is ready when every producer of its first task outside it has reported
  (finished or failed). A failed producer's dependents then fail VE-505 in their own segment.
- **Affinity.** A value that cannot leave its worker (a model; by port type: anything but
  IMAGE, LATENT, MASK, scalars and other plain data, see ``MOVABLE_TYPES``) ties the chain that
  consumes it to the chain that makes it: such chains form one group. The chains of a run's
  groups that make models without reading one (loaders) run on one worker, the run's *model
  worker*: the one holding most of the run's cached models, else one no other run is using
  (concurrent runs spread over the GPUs), else the first. So one run's models are never split
  over two workers (a LoRA node needing a model from one and a CLIP from another could run
  nowhere). A chain that reads models runs on a worker holding all of them.
- **Copies: a seed grid over several workers.** When two or more samplers (chains with a
  ``MODEL`` input, ``SPREAD_INPUTS``) would wait for the worker holding their model while
  another is free, the free one gets a copy: the model's producers (loader, LoRA...) run
  there again, silently, before its chains (``copies.py``: how many copies, how long they
  live, recipes for cached models). A copy that fails (out of memory) hands its chains back
  to the model's worker; nothing is reported. By default one copy per device: on one GPU or a
  CPU nothing is copied (``VORTEX_MODEL_COPIES`` changes that).
- **Placement: data locality first** (as Dask's and Ray's schedulers place a task where its
  inputs are). A cached input the worker reports as immovable (``WorkerRef.movable``) pins the
  chain to the workers holding it (original or copy), which it waits for; a loader, to its
  group's slot. Models that earlier runs left on two workers, read by one node, are copied
  to one of them where copies are allowed; else that node fails VE-502 (a clear error, not a
  crashed worker). Otherwise the chain goes to the free worker holding most of its inputs'
  bytes (ties: the lowest slot); an input on another worker crosses by arena handle, not by
  copy, and is counted (``WorkerPool.moves``).
- **Balance.** When several chains are ready at once, each free worker takes its share of them
  (ready chains / free workers, rounded up) as one segment, so a wide graph of small chains
  costs a few segments, not one per chain. Chains that become ready later go to whichever
  worker frees first.
- **Deaths.** A worker dying under a segment is that segment's business (``batch._Batch``
  re-runs its own lost producers on the respawned worker; other workers' segments go on). A
  chain about to start whose input died with another worker gets that input's producer (and,
  recursively, those producers' lost inputs) put in front of it: only what died runs again.
- **Cancel.** Chains not started yet fail VE-504; running segments stop as a single one does.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from typing import Any

from ..engine.events import Event, NodeFailed
from ..engine.executor import BatchCallbacks, CancelToken, Ref, Task
from . import spread
from .batch import _Batch
from .pool import WorkerPool, WorkerRef


def run_batch(pool: WorkerPool, tasks: list[Task], callbacks: BatchCallbacks, cancel: CancelToken) -> None:
    """Run ``tasks`` on one worker slot; concurrent runs use other slots or wait their turn
    (a worker's event stream belongs to one batch at a time). With several general workers,
    independent branches run on several at once (``Parallel``)."""
    slots = pool.general_slots()
    if len(slots) > 1 and len(tasks) > 1:
        Parallel(pool, tasks, callbacks, cancel, slots).run()
        return
    slot = pool.acquire_slot(tasks)
    try:
        _Batch(pool, tasks, callbacks, cancel, slot).run()
    finally:
        pool.release_slot(slot)

#: Port types whose values can cross between workers by arena handle (tensors, arrays, plain
#: data; ``"*"``: the worker tells at run time). Any other output (MODEL, CLIP, VAE, CONDITIONING,
#: which may hold a ControlNet...) ties its consumer's chain to its producer's worker.
MOVABLE_TYPES = frozenset({"IMAGE", "LATENT", "MASK", "INT", "FLOAT", "STRING", "BOOLEAN", "SIGMAS", "AUDIO",
                           "*", "int", "float", "str", "bool", "ndarray", "Tensor", "array", "list", "dict"})


class Chain:
    __slots__ = ("heavy", "needs", "parent", "tasks")

    def __init__(self, first: Task, needs: list[str]) -> None:
        self.tasks = [first]
        #: a task of it makes a value that cannot leave its worker (see ``MOVABLE_TYPES``)
        self.heavy = False
        #: keys of the first task's producers in this batch but in other chains
        self.needs = needs
        #: union-find link: chains passing each other immovable values form one affinity group
        self.parent: Chain = self

    def group(self) -> Chain:
        root = self
        while root.parent is not root:
            root = root.parent
        self.parent = root
        return root


def _movable_output(task: Task, index: int) -> bool:
    outputs = task.spec.outputs
    return index < len(outputs) and outputs[index].type in MOVABLE_TYPES


def _producers(task: Task, in_batch: dict[str, Task]) -> list[str]:
    return [a.key for a in task.args.values() if a.__class__ is Ref and a.held is None and a.key in in_batch]


def cut(tasks: Sequence[Task]) -> list[Chain]:
    """The batch's chains, oldest first (see the module's policy)."""
    in_batch = {t.key: t for t in tasks}
    chain_of: dict[str, Chain] = {}
    chains: list[Chain] = []
    for task in tasks:
        ups = _producers(task, in_batch)
        home = chain_of.get(ups[0]) if ups else None
        if home is not None and home.tasks[-1].key in ups and all(chain_of.get(k) is home for k in ups):
            home.tasks.append(task)
        else:
            home = Chain(task, list(dict.fromkeys(ups)))
            chains.append(home)
        chain_of[task.key] = home
        if not home.heavy and any(o.type not in MOVABLE_TYPES for o in task.spec.outputs):
            home.heavy = True
        for arg in task.args.values():  # an immovable value: consumer and producer share a worker
            if arg.__class__ is Ref and arg.held is None and arg.key in in_batch:
                producer = chain_of.get(arg.key)
                if producer is not None and producer is not home and not _movable_output(in_batch[arg.key],
                                                                                         arg.index):
                    producer.group().parent = home.group()
    return chains


class _Shared:
    """The run's callbacks, shared by the segments running at once: serialised, and noting
    what finished or failed so the scheduler knows which chains are ready."""

    def __init__(self, callbacks: BatchCallbacks, scheduler: Parallel) -> None:
        self.callbacks, self.scheduler = callbacks, scheduler
        self.detail = getattr(callbacks, "detail", True)
        self._lock = threading.Lock()

    def emit(self, event: Event) -> None:
        with self._lock:
            self.callbacks.emit(event)
        if isinstance(event, NodeFailed):
            self.scheduler.failed_node(event.node)

    def on_result(self, task: Task, refs: tuple[Any, ...]) -> None:
        with self._lock:
            self.callbacks.on_result(task, refs)
        self.scheduler.finished(task, refs)

    def on_lost(self, keys: Sequence[str]) -> None:
        with self._lock:
            self.callbacks.on_lost(keys)
        self.scheduler.lost(keys)


class Parallel:
    """Runs one batch's chains on the pool's general worker slots (``slots``)."""

    def __init__(self, pool: WorkerPool, tasks: list[Task], callbacks: BatchCallbacks, cancel: CancelToken,
                 slots: Sequence[int]) -> None:
        self.pool, self.cancel, self.slots = pool, cancel, list(slots)
        self.tasks = tasks
        self.producer = {t.key: t for t in tasks}
        self.key_of = {t.node_id: t.key for t in tasks}
        self.shared = _Shared(callbacks, self)
        self.done: dict[str, tuple[Any, ...]] = {}
        self.reported: set[str] = set()  # keys that finished at least once (``done`` forgets lost ones)
        self.failed: dict[str, str] = {}  # key -> node id
        self.cond = threading.Condition()
        self.busy: set[int] = set()
        #: the slot of each affinity group (by its root chain's id), once its first chain is placed
        self.home: dict[int, int] = {}
        #: chains not placed yet (``run``'s list), and chains handed back when a copy failed
        self.waiting: list[Chain] = []
        self.returned: list[Chain] = []
        #: slots where a model copy failed in this run (out of memory...): no second try
        self.nocopy: set[int] = set()
        self.uid_slot: dict[str, int] = {}
        self.errors: list[BaseException] = []

    # -- reports from the segments (any thread) ---------------------------------------------------
    def finished(self, task: Task, refs: tuple[Any, ...]) -> None:
        with self.cond:
            self.done[task.key] = refs
            self.reported.add(task.key)
            self.failed.pop(task.key, None)
            self.cond.notify_all()

    def failed_node(self, node: str) -> None:
        key = self.key_of.get(node)
        if key is not None:
            with self.cond:
                if key not in self.done:
                    self.failed[key] = node
                self.cond.notify_all()

    def lost(self, keys: Sequence[str]) -> None:
        with self.cond:
            for key in keys:
                self.done.pop(key, None)

    # -- scheduling -------------------------------------------------------------------------------
    def run(self) -> None:
        waiting = cut(self.tasks)
        heavy = [c for c in waiting if c.heavy]
        if heavy:  # one worker for the run's models: its cached ones never end up apart
            home = self._model_slot(waiting)
            for chain in heavy:
                self.home[id(chain.group())] = home
        threads: list[threading.Thread] = []
        with self.cond:
            while waiting or self.busy or self.returned:
                if self.returned:  # a copy of their models could not be made: back in line
                    waiting, self.returned = self.returned + waiting, []
                self.waiting = waiting
                if self.cancel.cancelled and waiting:
                    self._fail([t for c in waiting for t in c.tasks], "VE-504", "RunCancelledError",
                               "run cancelled before node {node!r} started")
                    waiting = []
                    continue
                ready = [c for c in waiting if all(k in self.reported or k in self.failed for k in c.needs)]
                placed, copy = self._place(ready) if ready else ({}, {})
                for slot, chains in placed.items():
                    waiting = [c for c in waiting if not any(c is p for p in chains)]
                    self.busy.add(slot)
                    thread = threading.Thread(target=self._segment, args=(slot, chains, copy.get(slot, [])),
                                              name=f"vortex-parallel-{slot}", daemon=True)
                    threads.append(thread)
                    thread.start()
                if not placed and not self.busy and waiting:
                    if not ready:  # nothing can ever make them ready: a producer outside the batch
                        self._fail([t for c in waiting for t in c.tasks], "VE-505", "UpstreamFailedError",
                                   "node {node!r} did not run: an input of its branch was never produced")
                        waiting = []
                        continue
                    self.cond.wait(0.05)  # every slot is taken by other runs: look again soon
                else:
                    self.cond.wait(0.5)
        for thread in threads:
            thread.join()
        if self.errors:
            raise self.errors[0]

    def _fail(self, tasks: list[Task], code: str, error_type: str, message: str) -> None:
        for t in tasks:
            self.shared.emit(NodeFailed(t.run_id, t.node_id, code, message.format(node=t.node_id), error_type, None))

    def _place(self, ready: list[Chain]) -> tuple[dict[int, list[Chain]], dict[int, list[Task]]]:
        """Chains for free slots (``self.cond`` held), and the model copies to make on each
        before its chains: chains that read a model go where it is loaded (or copied), the rest
        by locality, each slot taking its share."""
        free = [s for s in self.slots if s not in self.busy]
        if not free:
            return {}, {}
        self.uid_slot = {w.uid: s for s, w in self.pool.supervisor.workers.items()}
        share = math.ceil(len(ready) / len(free))
        placed: dict[int, list[Chain]] = {}
        copy: dict[int, list[Task]] = {}
        taken: set[int] = set()
        for chain in ready:
            order, plan = self._order(chain, [s for s in free if s not in taken], placed, copy, len(free))
            slot = None
            for candidate in order:
                if candidate in placed or self.pool.try_slot(candidate):
                    slot = candidate
                    break
                free.remove(candidate)  # another run holds it
            if slot is None:
                continue
            if plan:
                known = {t.key for t in copy.get(slot, [])}
                copy.setdefault(slot, []).extend(t for t in plan if t.key not in known)
            self.home.setdefault(id(chain.group()), slot)
            placed.setdefault(slot, []).append(chain)
            if len(placed[slot]) >= share:
                taken.add(slot)
        return placed, copy

    def _order(self, chain: Chain, open_: list[int], placed: dict[int, list[Chain]], copy: dict[int, list[Task]],
               free: int) -> tuple[list[int], list[Task]]:
        """The slots ``chain`` may take now, best first, and the model copy it needs there."""
        models, weights = self._inputs(chain)
        if models:
            holders = [s for s in self.slots if all(self._holds(r, s, copy) for r in models)]
            order = [s for s in holders if s in open_]
            if (not order and free > 1 and self.pool.copies.limit > 1
                    and (not holders or (spread.samples(chain.tasks) and self._demand(models) > 1))):
                order, plan = self._copy_slot(models, open_, weights, copy)
                if order:
                    return order, plan
            if not order and not holders:  # models on two workers, no copy: fails VE-502 there
                first = self.uid_slot.get(models[0].worker)
                order = [first] if first in open_ else []
            return order, []
        home = self.home.get(id(chain.group()))
        if home is not None:
            return ([home] if home in open_ else []), []
        return sorted(open_, key=lambda s: (-weights.get(s, 0), len(placed.get(s, [])), s)), []

    def _holds(self, ref: WorkerRef, slot: int, copy: dict[int, list[Task]]) -> bool:
        """Whether ``slot``'s worker has (or is about to copy) model output ``ref``."""
        if self.uid_slot.get(ref.worker) == slot:
            return True
        w = self.pool.supervisor.workers.get(slot)
        return ((w is not None and self.pool.copies.ref_on(ref.key, ref.index, w.uid) is not None)
                or any(t.key == ref.key for t in copy.get(slot, ())))

    def _demand(self, models: list[WorkerRef]) -> int:
        """Samplers not started yet that read any of ``models``: a copy pays its load off when
        two or more would otherwise wait for the same worker."""
        keys = {r.key for r in models}
        return sum(1 for c in self.waiting if spread.samples(c.tasks)
                   and any(a.__class__ is Ref and a.key in keys for t in c.tasks for a in t.args.values()))

    def _copy_slot(self, models: list[WorkerRef], open_: list[int], weights: dict[int, int],
                   copy: dict[int, list[Task]]) -> tuple[list[int], list[Task]]:
        """A free slot where the producers of ``models`` can run again (``copies.py``), and
        those producers; ``([], [])`` when none can."""
        limit = self.pool.copies.limit
        for slot in sorted(open_, key=lambda s: (len(copy.get(s, ())), -weights.get(s, 0), s)):
            if slot in self.nocopy:
                continue
            plan = spread.plan(models, lambda r, slot=slot: self._holds(r, slot, copy),  # type: ignore[misc]
                               self.producer, self.done, self.pool.copies.recipe)
            if plan and all(self.pool.copies.count(t.key) + 1 < limit for t in plan):
                return [slot], plan
        return [], []

    def _model_slot(self, chains: list[Chain]) -> int:
        """The worker for this run's models: the one holding most of its cached immovable
        inputs, else a worker no other run is using (so concurrent runs spread over GPUs),
        else the first."""
        self.uid_slot = {w.uid: s for s, w in self.pool.supervisor.workers.items()}
        held: dict[int, int] = {}
        for chain in chains:
            for ref in self._inputs(chain)[0]:
                slot = self.uid_slot.get(ref.worker)
                if slot is not None:
                    held[slot] = held.get(slot, 0) + 1
        if held:
            return max(held, key=lambda s: (held[s], -s))
        return next((s for s in self.slots if not self.pool.slot_taken(s)), self.slots[0])

    def _inputs(self, chain: Chain) -> tuple[list[WorkerRef], dict[int, int]]:
        """The model inputs of ``chain`` (refs that cannot leave their worker) from outside it,
        and its input bytes per slot."""
        weights: dict[int, int] = {}
        models: list[WorkerRef] = []
        for task in chain.tasks:
            for arg in task.args.values():
                if arg.__class__ is not Ref:
                    continue
                ref = arg.held
                if ref is None and arg.key in self.done:
                    ref = self.done[arg.key][arg.index]
                if not isinstance(ref, WorkerRef) or ref.inline or ref.worker not in self.uid_slot:
                    continue
                slot = self.uid_slot[ref.worker]
                if not ref.movable:
                    models.append(ref)
                weights[slot] = weights.get(slot, 0) + max(1, ref.nbytes)
        return models, weights

    def _revive(self, tasks: list[Task]) -> list[Task]:
        """``tasks`` with the producers of their lost inputs (another worker died) in front."""
        out: list[Task] = []
        queued = {t.key for t in tasks}
        stack = list(tasks)
        while stack:
            task = stack.pop()
            for arg in task.args.values():
                if (arg.__class__ is not Ref or arg.held is not None or arg.key in queued
                        or arg.key not in self.producer or arg.key in self.failed):
                    continue
                refs = self.done.get(arg.key)
                if refs is None or any(isinstance(r, WorkerRef) and not self.pool.holds(r) for r in refs):
                    queued.add(arg.key)
                    self.done.pop(arg.key, None)
                    out.append(self.producer[arg.key])
                    stack.append(self.producer[arg.key])
        if not out:
            return tasks
        order = {id(t): i for i, t in enumerate(self.tasks)}
        return sorted(out, key=lambda t: order[id(t)]) + tasks

    def _segment(self, slot: int, chains: list[Chain], copy: list[Task]) -> None:
        try:
            if copy and not self._copy(slot, copy):
                with self.cond:
                    self.nocopy.add(slot)
                    self.returned.extend(chains)
                return
            with self.cond:
                tasks = self._revive([t for c in chains for t in c.tasks])
                done, failed = dict(self.done), dict(self.failed)
            batch = _Batch(self.pool, tasks, self.shared, self.cancel, slot)  # type: ignore[arg-type]
            batch.done.update(done)
            batch.failed.update(failed)
            batch.run()
        except BaseException as exc:  # e.g. KeyboardInterrupt: re-raised by run() after the others stop
            self.cancel.cancel()
            self.errors.append(exc)
        finally:
            self.pool.release_slot(slot)
            with self.cond:
                self.busy.discard(slot)
                self.cond.notify_all()

    def _copy(self, slot: int, tasks: list[Task]) -> bool:
        with self.cond:
            keys = {t.key for t in tasks}
            done = {k: v for k, v in self.done.items() if k not in keys}  # the plan's own are made there
            failed = dict(self.failed)
        return spread.make(self.pool, slot, tasks, done, failed, self.cancel, self.shared.on_lost)
