"""One batch on Ray: submit every task at once, then hand the engine what comes back, in order.

Policy:

- Submission: tasks go out in plan order, each an actor call whose inputs are the ObjectRefs
  of its upstream outputs (Ray starts it when they exist, and resolves them on the actor), with
  ``num_returns = outputs + 1``: the outputs stay in the object store, the last value is the
  report (``ray_actor.NodeActor.run``). Nothing waits, so independent tasks on different actors
  run in parallel.
- Placement: the actor of a task's class that holds most of its resident inputs (cached models:
  10 points each), then most of its upstream tasks in this batch (1 point each); with no points,
  the actor with the fewest tasks of this batch, a new one while the class has room.
- Handling order: a report is handled after those of the task's upstream tasks (so a failure
  upstream is known: VE-505). A report saying the task's actor died is handled after every
  earlier task of that actor: an actor runs its calls in order, so the earliest of them that
  died with it is the node that killed it (VE-502); the later ones were only queued behind it
  and are submitted again (with the tasks that read their outputs) to the restarted actor.
- Events: with listeners (``detail``), busy actors are drained every ``POLL`` s (started,
  progress, step previews); an actor's drain is taken before its next report, and a report
  carries the rest of its node's events, so each node's events come in order and its final
  previews before its ``NodeFinished``.
- Cancel (the token, or Jupyter's interrupt while waiting): every actor with work stops the
  batch's running node and fails its queued ones at once (``interrupt_batch``); what finished
  before stays, the rest fails with VE-504.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from typing import Any

from ..engine.events import NodeFailed, NodeFinished, NodePreview, NodeProgress, NodeStarted
from ..engine.executor import BatchCallbacks, CancelToken, Lit, Ref, Task
from ..errors import PackError
from .deaths import task_timeout, where
from .pool import spec_id
from .protocol import FORWARDED_ENV
from .ray_executor import RayActor, RayExecutor, RayRef

__all__ = ["RayBatch"]

#: Seconds between two drains of one busy actor's events (with listeners only).
POLL = 0.1
#: Submissions of one task, at most (it is resubmitted when it was queued behind a crash).
TRIES = 3
#: Seconds to wait for Ray to restart a dead actor before its queued tasks are sent again.
RESTART = 60.0


@dataclass(eq=False)
class _Call:
    """One submitted task, until its report is handled."""

    task: Task
    actor: RayActor
    epoch: int
    report: Any
    upstream: tuple[str, ...]
    tries: int = 1
    ready: bool = False
    value: Any = None
    error: BaseException | None = None


class RayBatch:
    def __init__(self, ex: RayExecutor, tasks: list[Task], callbacks: BatchCallbacks, cancel: CancelToken,
                 batch_id: int) -> None:
        self.ex, self.ray, self.tasks = ex, ex.ray, tasks
        self.callbacks, self.cancel, self.batch_id = callbacks, cancel, batch_id
        self.emit, self.detail = callbacks.emit, callbacks.detail
        self.calls: list[_Call] = []
        self.outs: dict[str, list[Any]] = {}  # key -> ObjectRefs of its outputs (latest submission)
        self.failed: dict[str, str] = {}  # key -> the node that failed first
        self.open: set[str] = set()  # keys submitted and not handled yet
        self.load: dict[str, int] = {}  # actor name -> tasks of this batch placed there
        self.placed: dict[str, str] = {}  # key -> the actor name its task was placed on
        self.drains: dict[str, Any] = {}  # actor name -> ObjectRef of a drain in flight
        self.drained: dict[str, float] = {}
        #: ObjectRefs holding errors nobody reads (Ray logs "Unhandled error" for those unread)
        self.discarded: list[Any] = []
        self.run_ids = {t.node_id: t.run_id for t in tasks}
        self.env = tuple(os.environ.get(name, "") for name in FORWARDED_ENV)
        self.cancelling = False
        self.started: set[str] = set()  # nodes whose NodeStarted was emitted

    def run(self) -> None:
        try:
            for task in self.tasks:
                if self.cancel.cancelled:
                    self._fail(task, "VE-504", "RunCancelledError", f"node {task.node_id!r} did not run: the run "
                               "was cancelled")
                    continue
                self._submit(task, None, 1)
            self._collect()
        except KeyboardInterrupt:  # Jupyter's interrupt: cancel, keep what finished
            self.cancel.cancel()
            self._collect()
        self._settle()

    # -- submission -----------------------------------------------------------------------------
    def _submit(self, task: Task, actor: RayActor | None, tries: int) -> None:
        lits: dict[str, Any] = {}
        names: list[str] = []
        refs: list[Any] = []
        upstream: list[str] = []
        for name, arg in task.args.items():
            if isinstance(arg, Lit):
                lits[name] = arg.value
                continue
            held = arg.held
            if held is None:
                if arg.key in self.failed:
                    self._fail(task, "VE-505", "UpstreamFailedError", f"node {task.node_id!r} did not run "
                               f"because its input node {self.failed[arg.key]!r} failed")
                    return
                refs.append(self.outs[arg.key][arg.index])
                upstream.append(arg.key)
            else:
                refs.append(held.ref if isinstance(held, RayRef) else held)
            names.append(name)
        try:
            actor = actor or self._place(task, upstream)
            spec = task.spec
            meta = (task.node_id, task.key, spec_id(spec), [self.ex.spec_ref(spec, spec_id(spec))],
                    task_timeout(task) or 0.0, self.batch_id, self.detail, self.env, len(spec.outputs))
            result = actor.handle.run.options(num_returns=len(spec.outputs) + 1).remote(meta, lits, tuple(names), *refs)
        except PackError as exc:
            self._fail(task, exc.code, type(exc).__name__, f"{where(task)}, pack {task.spec.pack!r}, could not "
                       f"run: {exc.message}" + (f" (fix: {exc.hint})" if exc.hint else ""))
            return
        except Exception as exc:  # a param that cannot be pickled, a spec that cannot be...
            self._fail(task, "VE-500", type(exc).__name__, f"{where(task)} could not be sent to Ray: {exc}")
            return
        outs = list(result[:-1]) if spec.outputs else []
        report = result[-1] if spec.outputs else result
        self.outs[task.key] = outs
        self.open.add(task.key)
        self.load[actor.name] = self.load.get(actor.name, 0) + 1
        self.placed[task.key] = actor.name
        self.calls.append(_Call(task, actor, actor.epoch, report, tuple(upstream), tries))

    def _place(self, task: Task, upstream: list[str]) -> RayActor:
        cls = self.ex.class_of(task.spec)
        mine = self.ex.actors.get(cls, [])
        points: dict[str, int] = {}
        for arg in task.args.values():
            held = getattr(arg, "held", None)
            if isinstance(held, RayRef) and held.resident:
                points[held.resident] = points.get(held.resident, 0) + 10
        for key in upstream:
            name = self.placed.get(key)
            if name is not None:
                points[name] = points.get(name, 0) + 1
        scored = [a for a in mine if points.get(a.name)]
        if scored:
            return max(scored, key=lambda a: points[a.name])
        idle = min(mine, key=lambda a: self.load.get(a.name, 0), default=None)
        if idle is None or (self.load.get(idle.name, 0) and len(mine) < self.ex.room(cls)):
            return self.ex.new_actor(cls)
        return idle

    # -- collecting -----------------------------------------------------------------------------
    def _collect(self) -> None:
        ray = self.ray
        while self.calls:
            if self.cancel.cancelled and not self.cancelling:
                self._cancel_all()
            waiting = [c.report for c in self.calls if not c.ready] + list(self.drains.values())
            if waiting:
                ready, _ = ray.wait(waiting, num_returns=1, timeout=POLL)
                if ready:
                    ready, _ = ray.wait(waiting, num_returns=len(waiting), timeout=0)
                self._take(set(ready))
            self._handle_ready()
            if self.detail:
                self._drain_busy()

    def _take(self, ready: set[Any]) -> None:
        ray = self.ray
        for name, ref in list(self.drains.items()):
            if ref in ready:
                self._drain_result(name)
        for c in self.calls:
            if not c.ready and c.report in ready:
                c.ready = True
                try:
                    c.value = ray.get(c.report)
                except Exception as exc:
                    c.error = exc

    def _handle_ready(self) -> None:
        """Handle every ready report whose turn it is (module docstring), until none is."""
        progress = True
        while progress:
            progress = False
            before: set[str] = set()  # actors with an earlier call not handled
            for c in list(self.calls):
                if c not in self.calls:
                    continue
                turn = c.ready and not any(k in self.open for k in c.upstream)
                if turn and self._died(c) and c.actor.name in before:
                    turn = False
                if turn:
                    self._handle(c)
                    progress = True
                else:
                    before.add(c.actor.name)

    def _died(self, c: _Call) -> bool:
        """Whether ``c``'s own actor died under it (not an upstream's: that is a RayTaskError)."""
        ex = self.ray.exceptions
        return isinstance(c.error, ex.RayActorError) and not isinstance(c.error, ex.RayTaskError)

    def _handle(self, c: _Call) -> None:
        self.calls.remove(c)
        task = c.task
        self.open.discard(task.key)  # (a resubmission opens it again)
        if c.actor.name in self.drains:
            self._drain_result(c.actor.name)  # its events first (they may be this node's)
        self.drained[c.actor.name] = time.monotonic()
        if c.error is not None:
            self.discarded.extend(self.outs.get(task.key, ()))
        up = next((self.failed[k] for k in c.upstream if k in self.failed), None)
        if up is not None and self.cancelling:  # as the other executors: after a cancel, VE-504
            self._fail(task, "VE-504", "RunCancelledError", f"node {task.node_id!r} did not run: the run was cancelled")
        elif up is not None:
            self._fail(task, "VE-505", "UpstreamFailedError",
                       f"node {task.node_id!r} did not run because its input node {up!r} failed")
        elif c.error is not None:
            self._handle_error(c, c.error)
        else:
            self._report(c, c.value)

    def _report(self, c: _Call, report: dict[str, Any]) -> None:
        task = c.task
        self._events(report.get("events", ()))
        self._incarnation(c.actor, str(report.get("inc", "")))
        if not report.get("ok"):
            if report.get("lost"):
                self.callbacks.on_lost(list(report["lost"]))
            self._fail(task, str(report["code"]), str(report["error_type"]), str(report["message"]),
                       report.get("traceback") or None)
            return
        refs = tuple(RayRef(ref, task.node_id, i, kind[1], int(kind[2]), task.key,
                            c.actor.name if kind[0] == "r" else "", str(report["inc"]) if kind[0] == "r" else "")
                     for i, (ref, kind) in enumerate(zip(self.outs[task.key], report["outputs"])))
        self.ex.hold(refs)
        self.callbacks.on_result(task, refs)
        ui = report.get("ui") or {}
        if self.detail or ui:
            self.emit(NodeFinished(task.run_id, task.node_id, float(report.get("elapsed", 0.0)), ui,
                                   c.actor.name, c.actor.device))

    def _handle_error(self, c: _Call, exc: BaseException) -> None:
        task, ex = c.task, self.ray.exceptions
        if self.cancelling or isinstance(exc, ex.TaskCancelledError):
            self._fail(task, "VE-504", "RunCancelledError", f"node {task.node_id!r} did not run: the run was cancelled")
        elif self._died(c) and _never_arrived(exc) and c.tries < TRIES:  # sent while its actor restarted
            self._await_restart(c.actor)
            self._resubmit(c)
        elif self._died(c) and c.epoch == c.actor.epoch:  # the first call of its actor to die: the culprit
            c.actor.epoch += 1
            self._lost_with(c.actor)
            self._await_restart(c.actor)
            if self.detail and task.node_id not in self.started:  # it ran, though no drain said so
                self._events([(task.node_id, "started")])
            self._fail(task, "VE-502", "WorkerCrashedError",
                       f"Ray actor {c.actor.name} died while running {where(task)} (a crash, os._exit or out of "
                       f"memory; Ray: {type(exc).__name__}); the actor was restarted and the other nodes went on",
                       str(exc))
        elif self._died(c) and c.tries < TRIES:
            self._resubmit(c)
        elif isinstance(exc, ex.ObjectLostError):
            keys = [a.key for a in task.args.values() if isinstance(a, Ref) and isinstance(a.held, RayRef)]
            self.callbacks.on_lost(keys)
            self._fail(task, "VE-502", "WorkerCrashedError", f"{where(task)} could not run: an input was lost from "
                       f"Ray's object store ({_first_line(exc)}); it will be recomputed on the next run")
        else:
            self._fail(task, "VE-502" if self._died(c) else "VE-500", type(exc).__name__,
                       f"{where(task)} failed on Ray: {_first_line(exc)}", str(exc))

    def _resubmit(self, c: _Call) -> None:
        """Submit ``c`` again, with every call not handled that reads its outputs (they read
        the dead call's outputs: Ray fails them without running them)."""
        keys = {c.task.key}
        again = [c]
        for other in list(self.calls):
            if any(k in keys for k in other.upstream):
                again.append(other)
                keys.add(other.task.key)
                self.calls.remove(other)  # (its old call fails in Ray, unrun: never cancel it, see _cancel_all)
                self.discarded += [other.report, *self.outs.get(other.task.key, ())]
        for call in again:
            self.open.discard(call.task.key)
            self._submit(call.task, call.actor, call.tries + 1)

    def _settle(self) -> None:
        """Read the errors of calls that died or were replaced, so Ray does not log them."""
        if self.discarded:
            ready, _ = self.ray.wait(self.discarded, num_returns=len(self.discarded), timeout=1.0)
            for ref in ready:
                with contextlib.suppress(Exception):
                    self.ray.get(ref)

    def _lost_with(self, actor: RayActor) -> None:
        """``actor`` died: what the engine holds in it is gone."""
        lost = self.ex.forget_incarnations(actor, "")
        if lost:
            self.callbacks.on_lost(lost)

    def _await_restart(self, actor: RayActor) -> None:
        """Wait until Ray restarted ``actor``: a call sent while it restarts fails at once."""
        inc = self.ex.await_actor(actor, RESTART)
        if inc:
            self._incarnation(actor, inc)

    def _incarnation(self, actor: RayActor, inc: str) -> None:
        if inc and inc != actor.incarnation:
            lost = self.ex.forget_incarnations(actor, inc)  # it restarted while idle
            if lost:
                self.callbacks.on_lost(lost)

    def _fail(self, task: Task, code: str, error_type: str, message: str, tb: str | None = None) -> None:
        self.failed.setdefault(task.key, task.node_id)
        self.emit(NodeFailed(task.run_id, task.node_id, code, message, error_type, tb))

    # -- events and cancel ----------------------------------------------------------------------
    def _drain_busy(self) -> None:
        now = time.monotonic()
        busy = {c.actor.name: c.actor for c in self.calls if not c.ready}
        for name, actor in busy.items():
            if name not in self.drains and now - self.drained.get(name, 0.0) >= POLL:
                self.drains[name] = actor.handle.drain.options(concurrency_group="io").remote()
                self.drained[name] = now

    def _drain_result(self, name: str) -> None:
        ref = self.drains.pop(name)
        try:
            _inc, events = self.ray.get(ref)
        except Exception:  # the actor died: its reports say so
            return
        self._events(events)

    def _events(self, events: Any) -> None:
        for node, kind, *fields in events:
            run_id = self.run_ids.get(node)
            if run_id is None:
                continue
            if kind == "started":
                self.started.add(node)
                self.emit(NodeStarted(run_id, node))
            elif kind == "progress":
                self.emit(NodeProgress(run_id, node, *fields))
            elif kind == "preview":
                self.emit(NodePreview(run_id, node, *fields))

    def _cancel_all(self) -> None:
        """Not ``ray.cancel``: cancelling a queued call of an actor can stall the calls the
        actor gets after it (Ray 2.60: the next run's first call never started). The actors
        stop the batch's running node and fail its queued ones at once instead."""
        self.cancelling = True
        for actor in {c.actor.name: c.actor for c in self.calls}.values():
            actor.handle.interrupt_batch.options(concurrency_group="io").remote(self.batch_id, "cancel")


def _never_arrived(exc: BaseException) -> bool:
    """Ray's word that a call met an actor being restarted ("is restarting", "was restarted": it
    died while idle, or was killed from outside) rather than dying under it ("Socket closed"):
    not to blame, so it is sent again (``TRIES`` bounds it). Ray 2.60 has no exception type for it."""
    text = str(exc)
    return "actor is restarting" in text or "actor was restarted" in text


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200]}" if text else type(exc).__name__
