"""Running one engine batch on the pool: the kernel side of ``Execute``.

Policy:
- The whole batch goes to one worker as one ``Execute`` (a *segment*); the worker runs the
  tasks in order and reports each exactly once (``Finished`` or ``Failed``), so the kernel
  knows which task is running without a message per start: the first unreported one. That
  is what ``NodeStarted`` and per-node timeouts are based on.
- Timeout of a node: ``spec.timeout`` (``@vx.node(timeout=...)``), else ``Task.timeout`` (the
  run's default). When it passes the kernel sends ``Cancel(node, "timeout")``; a node that does
  not stop within ``kill_grace`` gets SIGTERM, then SIGKILL.
- Run cancel: ``Cancel(batch)``; the worker fails the running and remaining tasks with VE-504;
  a worker that does not answer within the grace period is killed the same way.
- Worker death mid-segment: every key the dead worker held is reported through ``on_lost``
  and the rest of the batch goes to the respawned worker as a new segment, re-running earlier
  producers whose outputs died with it (small outputs travel inline and survive). Who is
  blamed (``_after_death``) follows from what is *known*, never from a guess:
  * the kernel killed it for a node (timeout, memory limit, cancel): that node fails;
  * the worker's status words name a node that broke its socket (``FAULT_CHANNEL_BROKEN``):
    that node fails;
  * it died before it took the segment up (killed while idle, e.g. by the OOM killer between
    runs): nobody is blamed and the segment runs again (three such deaths in a row fail it);
  * it died by itself (a signal, an exit code) while running a node: the status words froze
    at that node, which fails (with the OOM killer's evidence: VE-503, not a crash);
  * anything else (garbage on its socket, a lost connection while the process lived on,
    an ``exec``): which node did it is uncertain -- the reports still in flight and the
    status words read later span a range -- so every node of that range becomes a *suspect*
    and runs again alone, in a segment of its own; a suspect that breaks its worker again is
    failed alone, the others finish. So only a node that was running when its worker died
    is blamed, and a node that kills its worker twice is failed alone.
  Each death fails a task, makes a new suspect or counts an arrival, so nothing loops.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import cloudpickle

from ..engine.events import Event, NodeFailed, NodeFinished, NodePreview, NodeProgress, NodeStarted
from ..engine.executor import BatchCallbacks, CancelToken, Lit, Ref, Task
from ..telemetry import traceparent
from . import protocol as p
from .cuda_ipc import same_gpu
from .deaths import Watch, judge, task_timeout
from .pool import WorkerPool, WorkerRef, spec_id
from .process import WorkerProcess
from .runner import plain

FIRST_CHUNK = 64
MAX_CHUNK = 4096


_SCALARS = frozenset({int, float, str, bool, type(None)})


def _lit(value: Any) -> list[Any]:
    if type(value) in _SCALARS or plain(value):
        return ["lit", value]
    return ["pkl", cloudpickle.dumps(value)]


class _Batch:
    def __init__(self, pool: WorkerPool, tasks: list[Task], callbacks: BatchCallbacks, cancel: CancelToken,
                 slot: int = 0) -> None:
        self.pool, self.callbacks, self.cancel, self.slot = pool, callbacks, cancel, slot
        self.order = {id(t): i for i, t in enumerate(tasks)}
        self.producer = {t.key: t for t in tasks}
        self.pending = list(tasks)
        self.done: dict[str, tuple[WorkerRef, ...]] = {}
        self.failed: dict[str, str] = {}
        #: workers that died under this batch (then producers may have to run again)
        self.deaths = 0
        #: tasks (ids) that were in flight when a worker died of an uncertain cause: each runs
        #: again in a segment of its own, and fails if it breaks that worker too
        self.suspects: set[int] = set()
        #: consecutive segments whose worker died before it started any task
        self.arrivals = 0
        #: False: nobody listens to per-node detail (see BatchCallbacks.detail)
        self.detail = getattr(callbacks, "detail", True)

    def emit(self, event: Event) -> None:
        with contextlib.suppress(Exception):  # a broken listener must not break the run
            self.callbacks.emit(event)

    def fail(self, task: Task, code: str, error_type: str, message: str, tb: str | None = None) -> None:
        self.failed[task.key] = task.node_id
        self.emit(NodeFailed(task.run_id, task.node_id, code, message, error_type, tb))

    def run(self) -> None:
        self._report_lost()
        while self.pending:
            if self.cancel.cancelled:
                for t in self.pending:
                    self.fail(t, "VE-504", "RunCancelledError", f"run cancelled before node {t.node_id!r} started")
                return
            pack = self.pending[0].spec.pack
            if pack:
                self._run_pack(pack)
                continue
            try:
                w = self.pool.worker(self.slot)
            except Exception as exc:
                for t in self.pending:
                    self.fail(t, "VE-502", "WorkerCrashedError", f"node {t.node_id!r} could not run: no worker "
                              f"process could be started ({exc})")
                return
            self._run_segment(w, self._prepare(w))

    def _run_pack(self, pack: str) -> None:
        """The next segment: the pending tasks of node pack ``pack`` up to the first task of
        another, on that pack's worker."""
        try:
            slot = self.pool.pack_slot(pack)
        except Exception as exc:  # PackError: not installed, its environment missing
            self._fail_pack(pack, getattr(exc, "code", "VE-900"), type(exc).__name__, exc)
            return
        with self.pool.holding(slot):
            try:
                w = self.pool.worker(slot)
            except Exception as exc:
                self._fail_pack(pack, "VE-502", "WorkerCrashedError", f"its pack's worker could not be started ({exc})")
                return
            self._run_segment(w, self._prepare(w))

    def _fail_pack(self, pack: str, code: str, error_type: str, why: object) -> None:
        hint = getattr(why, "hint", "")
        for t in [t for t in self.pending if t.spec.pack == pack]:
            self.fail(t, code, error_type, f"node {t.node_id!r} ({t.spec.type}, pack {pack!r}) could not run: "
                      f"{why}" + (f"; {hint}" if hint else ""))
        self.pending = [t for t in self.pending if t.spec.pack != pack]

    def _report_lost(self) -> None:
        lost = self.pool.take_lost()
        if lost:
            self.callbacks.on_lost(lost)
            for key in lost:
                self.done.pop(key, None)

    # -- building a segment -----------------------------------------------------------------
    def _prepare(self, w: WorkerProcess) -> Iterator[tuple[Task, list[Any]]]:
        """Yield each runnable pending task with its wire form (fail the others); lazily, so
        the first chunk reaches the worker before the last task is encoded."""
        if self.deaths:  # only a dead worker's segment can leave producers to re-run
            self._requeue_lost_producers()
        pack = w.pack  # a segment runs on one worker: it ends at the first task of another pack
        errors = self.pool.define(w, [t.spec for t in self.pending if t.spec.pack == pack])
        keep: list[Task] = []
        done, scalars, suspects = self.done, _SCALARS, self.suspects
        pending = list(self.pending)
        for at, task in enumerate(pending):
            if task.spec.pack != pack:
                self.pending = keep + pending[at:]
                return
            if suspects and id(task) in suspects:  # a suspect runs alone: its own segment
                if keep:
                    self.pending = keep + pending[at:]
                    return
                self.pending = pending[at + 1:]
                problem = self._blocked(task, errors) if self.failed or errors else None
                if problem is not None:
                    self.fail(task, *problem)
                    return
                try:
                    args = {name: self._arg(w, arg) for name, arg in task.args.items()}
                except _InputLost as lost:
                    self._input_lost(task, lost)
                    return
                self.pending.insert(0, task)
                yield task, [task.node_id, task.key, spec_id(task.spec), args, task_timeout(task) or 0.0]
                return
            problem = self._blocked(task, errors) if self.failed or errors else None
            if problem is not None:
                self.fail(task, *problem)
                continue
            try:  # the common args inline (10k-node batches: ~1 us a task); the rest via _arg
                args = {}
                for name, arg in task.args.items():
                    if arg.__class__ is Lit and type(arg.value) in scalars:
                        args[name] = ["lit", arg.value]
                    elif arg.__class__ is Ref and arg.held is None and arg.key not in done:
                        args[name] = ["ref", arg.key, arg.index]
                    else:
                        args[name] = self._arg(w, arg)
            except _InputLost as lost:
                self._input_lost(task, lost)
                continue
            keep.append(task)
            yield task, [task.node_id, task.key, spec_id(task.spec), args, task_timeout(task) or 0.0]
        self.pending = keep

    def _input_lost(self, task: Task, lost: _InputLost) -> None:
        if isinstance(lost, _Immovable):
            self.fail(task, "VE-502", "WorkerCrashedError",
                      f"node {task.node_id!r} could not run: {lost.args[0]}; run with one worker "
                      "(VORTEX_WORKERS=1) if this repeats", None)
            return
        self.fail(task, "VE-502", "WorkerCrashedError",
                  f"node {task.node_id!r} could not run: its input {lost.args[0]} (after this run "
                  "was planned); that output will be recomputed on the next run", None)
        self._lost_inputs(task)

    def _lost_inputs(self, task: Task) -> None:
        """Tell the engine (``on_lost``) which held inputs of ``task`` are gone, so its cache
        drops them and the next run recomputes them."""
        keys = [a.key for a in task.args.values() if isinstance(a, Ref) and isinstance(a.held, WorkerRef)
                and not self.pool.holds(a.held)]
        if keys:
            self.callbacks.on_lost(keys)

    def _blocked(self, task: Task, errors: dict[str, str]) -> tuple[str, str, str] | None:
        for arg in task.args.values():
            if isinstance(arg, Ref) and arg.held is None and arg.key in self.failed:
                up = self.failed[arg.key]
                return ("VE-505", "UpstreamFailedError",
                        f"node {task.node_id!r} did not run because its input node {up!r} failed")
        sid = spec_id(task.spec)
        if sid in errors:
            return ("VE-300", "NodeDefinitionError", f"node {task.node_id!r} ({task.spec.type}) cannot be sent to "
                    f"a worker: {errors[sid]}; define the function at module level or keep its closure "
                    "picklable, or run with executor='inline'")
        return None

    def _arg(self, w: WorkerProcess, arg: Lit | Ref) -> list[Any]:
        if isinstance(arg, Lit):
            return _lit(arg.value)
        ref = arg.held
        if ref is None:
            done = self.done.get(arg.key)
            if done is None:  # produced earlier in this segment
                return ["ref", arg.key, arg.index]
            ref = done[arg.index]
        if not isinstance(ref, WorkerRef):  # a value from another executor (e.g. in-process)
            return _lit(ref)
        if ref.inline:
            return _lit(ref.value)
        if not self.pool.holds(ref):
            raise _InputLost(f"from node {ref.node!r} was lost when worker {ref.worker} stopped")
        if ref.worker == w.uid:
            return ["ref", ref.key, ref.index]
        if not ref.movable:
            copy = self.pool.copies.ref_on(ref.key, ref.index, w.uid)
            if copy is not None and self.pool.holds(copy):  # the same model, loaded there too
                return ["ref", ref.key, ref.index]
            raise _Immovable(f"node {ref.node!r}'s output {ref.index} (a {ref.type_name}) lives in worker "
                             f"{ref.worker} and cannot be moved to worker {w.uid}")
        owner = self.pool._live(ref.worker)
        self.pool.moves += 1
        if w.sandboxed or (owner is not None and owner.sandboxed):  # no sandboxed worker maps another's
            # segment, nor is its own (a memfd, no name) mapped by another: the value travels
            try:
                return _lit(self.pool.fetch(ref))
            except Exception as exc:
                raise _InputLost(f"from node {ref.node!r} could not be copied: {exc}") from None
        return ["shm", self._export(ref, w)]

    def _export(self, ref: WorkerRef, w: WorkerProcess) -> Any:
        """Pass an output of another worker by handle: the receiving worker maps it, no copy
        (CUDA tensors between workers on one GPU: by CUDA IPC handle, ``cuda_ipc``)."""
        owner = self.pool._live(ref.worker)
        if owner is None:
            raise _InputLost(f"from node {ref.node!r} was lost")
        cuda = self.pool.config.cuda_ipc and same_gpu(owner.device, w.device)
        reply = owner.request(lambda req: p.Fetch(req, ref.key, ref.index, cuda))
        if not isinstance(reply, p.Fetched) or reply.error is not None:
            raise _InputLost(f"from node {ref.node!r} cannot be moved between workers")
        return reply.value

    def _requeue_lost_producers(self) -> None:
        """Re-run producers (in this batch) whose outputs died with a worker and are still needed."""
        queued = {t.key for t in self.pending}
        stack = list(self.pending)
        while stack:
            task = stack.pop()
            for arg in task.args.values():
                if (isinstance(arg, Ref) and arg.held is None and arg.key not in self.done
                        and arg.key not in queued and arg.key not in self.failed and arg.key in self.producer):
                    producer = self.producer[arg.key]
                    queued.add(arg.key)
                    self.pending.append(producer)
                    stack.append(producer)
        self.pending.sort(key=lambda t: self.order[id(t)])

    # -- running a segment ------------------------------------------------------------------
    def _send(self, w: WorkerProcess, bid: int, segment: Iterator[tuple[Task, list[Any]]]) -> tuple[list[Task], bool]:
        """Stream the segment in growing chunks: the worker starts on the first 64 tasks while
        the kernel encodes the rest."""
        tasks: list[Task] = []
        chunk: list[list[Any]] = []
        size, sent = FIRST_CHUNK, True
        trace = traceparent()  # the run's span, for the worker's node spans ("" without tracing)
        for task, wire in segment:
            tasks.append(task)
            chunk.append(wire)
            if len(chunk) >= size:
                sent = sent and w.send(p.Execute(bid, chunk, False, trace))
                chunk, size = [], min(size * 4, MAX_CHUNK)
        if tasks:
            sent = sent and w.send(p.Execute(bid, chunk, True, trace))
        return tasks, sent

    def _run_segment(self, w: WorkerProcess, segment: Iterator[tuple[Task, list[Any]]]) -> None:
        bid = self.pool.next_batch_id()
        with w.reading():  # this batch reads the worker's reports, not the monitor
            w.mark_batch()
            w.sync_env()  # settings changed in the kernel since the worker started (or last batch)
            tasks, sent = self._send(w, bid, segment)
            if tasks:
                self._follow_or_cancel(w, bid, tasks, sent)

    def _follow_or_cancel(self, w: WorkerProcess, bid: int, tasks: list[Task], sent: bool) -> None:
        watch = Watch(w, bid, self.pool.config.kill_grace)
        try:
            self._follow(w, bid, tasks, watch, sent)
        except BaseException:  # e.g. KeyboardInterrupt in the kernel: stop the worker's batch too
            w.send(p.Cancel(bid, "", "cancel"))
            raise

    def _follow(self, w: WorkerProcess, bid: int, tasks: list[Task], watch: Watch, sent: bool) -> None:
        """Turn the worker's reports of batch ``bid`` into engine events until it is done or dies."""
        self._started(tasks[0])
        watch.index = 0  # its clock starts when the worker starts it (see deaths.Watch)
        events, n, i = w.events, len(tasks), 0  # tasks[:i] are reported
        while sent:
            msg = events.popleft() if events else w.next_event(watch.wait_time())
            if time.monotonic() >= watch.next_check:  # also while events stream in
                j = self._running(w, bid, i, n)
                if (j != watch.index or not watch.begun) and (i > 0 or self._begun(w, bid)):
                    watch.start(j, task_timeout(tasks[j]))
                watch.check(self.cancel.cancelled, tasks[watch.index].node_id)
            kind = type(msg)
            if kind is p.Finished or kind is p.Failed:
                if msg.batch != bid:  # type: ignore[union-attr]
                    continue
                if i >= n or not self._on_report(w, tasks[i], msg):  # type: ignore[arg-type]
                    w.kill("protocol")
                    break
                i += 1
                if i < n:
                    self._started(tasks[i])
                    if i > watch.index:
                        watch.start(i, task_timeout(tasks[i]))
            elif msg is None:
                if w.dead.is_set():
                    break
            elif getattr(msg, "batch", None) == bid:
                if kind is p.BatchDone:
                    sent_ids = {id(t) for t in tasks}
                    self.pending = [t for t in self.pending if id(t) not in sent_ids]
                    self.arrivals = 0
                    return
                self._on_stream(tasks[0].run_id, msg)
        self._after_death(w, bid, tasks, i, watch)

    def _on_report(self, w: WorkerProcess, task: Task, msg: p.Finished | p.Failed) -> bool:
        """False when the report cannot be trusted (wrong task, malformed outputs)."""
        if msg.key != task.key:
            return False
        try:
            self._report(w, task, msg)
        except p.ProtocolError:
            return False
        return True

    def _on_stream(self, run_id: str, msg: p.Message) -> None:
        if isinstance(msg, p.Progress) and self.detail:
            self.emit(NodeProgress(run_id, msg.node, msg.value, msg.total, msg.text))
        elif isinstance(msg, p.Preview) and (self.detail or msg.final):
            self.emit(NodePreview(run_id, msg.node, msg.mime, msg.data, msg.final))

    @staticmethod
    def _begun(w: WorkerProcess, bid: int) -> bool:
        """Whether the worker's main thread has taken batch ``bid`` up (it may still be busy
        with a ``late_preload`` import, e.g. a respawned worker's, while the batch waits)."""
        return w.running()[0] == bid or not w.has_status

    @staticmethod
    def _running(w: WorkerProcess, bid: int, reported: int, n: int) -> int:
        """Index of the running task: the worker's status words know it even when its last
        reports are still in its outbox (or died with it)."""
        batch, index = w.running()
        return min(n - 1, max(reported, index)) if batch == bid else reported

    def _started(self, task: Task) -> None:
        if self.detail:
            self.emit(NodeStarted(task.run_id, task.node_id))

    def _report(self, w: WorkerProcess, task: Task, msg: p.Finished | p.Failed) -> None:
        if isinstance(msg, p.Failed):
            self.fail(task, msg.code, msg.error_type, msg.message, msg.traceback or None)
            return
        refs = self.pool.make_refs(w, task.key, task.node_id, msg.outputs)
        self.done[task.key] = refs
        if self.pool.copies.limit > 1 and any(r.movable is False and r.inline is False for r in refs):
            # a model that may be copied to another worker later: how to make it again
            self.pool.copies.remember(task, self.done)
        self.callbacks.on_result(task, refs)
        if self.detail or msg.ui:
            self.emit(NodeFinished(task.run_id, task.node_id, float(msg.elapsed), msg.ui, w.uid, w.device,
                                   max(w.peak_rss, w.rss()) if self.detail else 0))

    def _after_death(self, w: WorkerProcess, bid: int, tasks: list[Task], i: int, watch: Watch) -> None:
        """``tasks[:i]`` were reported: apply ``deaths.judge``'s verdict, keep the rest pending
        for the respawned worker."""
        alone_again = len(tasks) == 1 and id(tasks[0]) in self.suspects
        v = judge(w, bid, tasks, i, watch.index, alone_again, self.pool.config.memory_limit)
        if v.started:
            self.arrivals = 0
        gone = {id(t) for t in tasks[:i]}
        self.suspects.update(id(t) for t in v.suspects)
        if v.victim is not None:
            gone.add(id(v.victim))
            self.fail(v.victim, v.code, v.error_type, v.message, w.log_tail() or None)
        elif v.arrival:  # dead on arrival: killed while idle, nothing of ours ran
            self.arrivals += 1
            if self.arrivals >= 3:
                for t in self.pending:
                    self.fail(t, "VE-502", "WorkerCrashedError", f"node {t.node_id!r} could not run: its worker "
                              f"{v.how} before it started, three times in a row", w.log_tail() or None)
                self.pending = []
        self.pending = [t for t in self.pending if id(t) not in gone]
        self.deaths += 1
        self.pool.supervisor.bury(w)  # unlink its memory, start the replacement
        self.pool._on_death(w)
        self._report_lost()
        if v.reason == "cancel":
            for t in self.pending:
                self.fail(t, "VE-504", "RunCancelledError", f"run cancelled before node {t.node_id!r} started")
            self.pending = []


class _InputLost(Exception):
    pass


class _Immovable(_InputLost):
    """An input that cannot leave its worker (a model) was wanted on another worker."""
