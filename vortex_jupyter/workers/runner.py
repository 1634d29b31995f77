"""Running one batch inside a worker: resolve args, call nodes, store outputs, report.

Policy:
- Tasks run in the order the kernel sent them (topological), on the worker's main thread.
- A task whose input came from a task that failed in this batch is not run: it fails with
  VE-505 naming the upstream node, and independent tasks go on.
- Interruption: the control thread sets ``interrupt`` and sends SIGUSR1 to the main thread;
  the handler raises ``Interrupted`` (a BaseException, so ``except Exception`` in node code
  cannot swallow it) only while a node runs. Python code and sleeps stop at once; a C loop
  that never returns is the kernel's to kill after its grace period.
- "timeout" interrupts fail that node with VE-501 and the batch continues; "cancel" fails
  the running node and every task not yet started with VE-504. A cancel of a batch this
  thread has not taken up yet (it was busy with a ``late_preload`` import) is remembered, and
  the batch fails with VE-504 as soon as it starts, instead of being ignored.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import cloudpickle
import numpy as np

from ..engine.inprocess import failure_message
from ..errors import ProtocolError, RunCancelledError
from ..nodes import context as node_context
from ..nodes.images import encode_image
from ..nodes.spec import NodeResult, NodeSpec
from ..telemetry import node_span
from . import sandbox
from .codefiles import restore_files
from .protocol import Failed, Finished, Message, Preview, Progress
from .store import ObjectStore, summary

_ARG_KINDS = ("lit", "pkl", "shm", "ref")
PREVIEW_INTERVAL = 0.05  # s between step previews of one node; finals are never dropped, nor is a
# node's last step preview (held, then sent when the node returns: a fast loop still ends on its last step)
#: Debugging aid: a directory to write one cProfile dump per node run in this worker.
PROFILE_DIR = os.environ.get("VORTEX_WORKER_PROFILE", "")


class Interrupted(BaseException):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class TaskFailed(Exception):
    def __init__(self, code: str, error_type: str, message: str, tb: str = "") -> None:
        self.code, self.error_type, self.message, self.tb = code, error_type, message, tb
        super().__init__(message)


class WorkerContext(node_context.NodeContext):
    def __init__(self, runner: Runner, batch: int, node_id: str) -> None:
        self.runner, self.batch, self.node_id = runner, batch, node_id
        self._last_preview = 0.0
        self._held: Any = None  # the latest step preview the interval dropped

    @property
    def cancelled(self) -> bool:
        return self.runner.interrupt is not None

    def progress(self, value: float, total: float | None = None, text: str | None = None) -> None:
        self.runner.send(Progress(self.batch, self.node_id or "", float(value),
                                  None if total is None else float(total), text))

    def preview(self, image: Any, *, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._last_preview < PREVIEW_INTERVAL:
            self._held = image
            return
        self._held = None
        self._last_preview = now
        mime, data = encode_image(image, final)
        self.runner.send(Preview(self.batch, self.node_id or "", mime, data, final))

    def flush(self) -> None:
        """Send the step preview the interval held back (the node returned: its last step shows)."""
        if self._held is not None:
            image, self._held = self._held, None
            mime, data = encode_image(image, False)
            self.runner.send(Preview(self.batch, self.node_id or "", mime, data, False))

    def raise_if_cancelled(self) -> None:
        if self.runner.interrupt is not None:
            raise Interrupted(self.runner.interrupt)


class Runner:
    """Executes batches; ``specs`` maps spec ids to unpickled ``NodeSpec``s."""

    def __init__(self, store: ObjectStore, send: Callable[[Message], None],
                 resolve_shm: Callable[[Any], Any], status: Any = None,
                 after_node: Callable[[], None] | None = None) -> None:
        self.store, self.send, self.resolve_shm = store, send, resolve_shm
        #: called after every node, before anything is sent: the worker checks that the node
        #: left its process usable (same pid, same socket; see ``Worker.after_node``)
        self.after_node = after_node
        #: shared status words (``protocol.ST_*``: batch, running task index, fault, culprit),
        #: read by the kernel (shm.CONTROL_BYTES)
        self.status = status if status is not None else np.full(8, -1, np.int64)
        self.specs: dict[str, NodeSpec] = {}
        self.broken: dict[str, str] = {}
        self.interrupt: str | None = None
        self.cancel_all = False
        self.current: str | None = None
        self.timeout = 0.0
        self.batch = -1
        self._in_node = False
        self._pinned: set[str] = set()
        self._inline_keys: list[str] = []
        self._deferred: list[str] = []
        self._pin_lock = threading.Lock()
        #: batches cancelled before this thread took them up (control thread adds, main reads)
        self._cancel_queued: set[int] = set()
        #: batch -> the kernel's run span (``traceparent``) for the nodes' spans (``telemetry``)
        self.traces: dict[int, str] = {}
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGUSR1, self._on_signal)

    # -- control thread ----------------------------------------------------------------------
    def define(self, specs: list[Any], path: list[Any] | None = None) -> None:
        """Unpickle node specs; one that fails (e.g. its module is missing here) is remembered
        and fails its tasks with the reason, instead of taking the worker down.

        ``path`` (the kernel's ``sys.path``) goes first in this process's, before unpickling:
        functions of importable modules arrive by reference and are imported here, so a module
        next to the kernel's script must be importable here as well."""
        for item in specs:
            if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str)
                    and isinstance(item[1], bytes) and isinstance(item[2], dict)):
                raise ProtocolError("DefineNodes entries must be [spec_id, bytes, {qualname:line: file}]")
        adopt_path(path or [])
        for sid, data, files in specs:
            try:
                spec = cloudpickle.loads(data)
                restore_files(spec.fn, {k: v for k, v in files.items() if isinstance(k, str) and isinstance(v, str)})
                self.specs[sid] = spec
            except Exception as exc:
                self.broken[sid] = f"{type(exc).__name__}: {exc}"

    def pin(self, tasks: list[Any]) -> None:
        """Called when ``Execute`` arrives (control thread), before any later ``Release``;
        also checks the shape of every task so the main thread never trips on one."""
        for t in tasks:
            if not (isinstance(t, list) and len(t) == 5 and all(isinstance(x, str) for x in t[:3])
                    and isinstance(t[3], dict) and isinstance(t[4], (int, float))
                    and all(isinstance(a, list) and a and a[0] in _ARG_KINDS for a in t[3].values())):
                raise ProtocolError(f"malformed task in Execute: {str(t)[:100]}")
            for a in t[3].values():
                if a[0] == "ref" and not (len(a) == 3 and isinstance(a[1], str) and isinstance(a[2], int)):
                    raise ProtocolError(f"malformed ref argument: {str(a)[:100]}")
                if a[0] != "ref" and len(a) != 2:
                    raise ProtocolError(f"malformed argument: {str(a)[:100]}")
        with self._pin_lock:
            self._pinned |= {a[1] for t in tasks for a in t[3].values() if a[0] == "ref"}

    def release(self, keys: list[str]) -> None:
        """Drop store entries, except those the running batch still reads (released after it)."""
        with self._pin_lock:
            now = [k for k in keys if k not in self._pinned]
            self._deferred += [k for k in keys if k in self._pinned]
        self.store.release(now)

    def cancel(self, batch: int, node: str, reason: str) -> None:
        if batch > self.batch and not node:  # queued behind a late_preload import: cancel on start
            with self._pin_lock:
                self._cancel_queued.add(batch)
            return
        if batch != self.batch:
            return
        if not node:
            self.cancel_all = True
        elif node != self.current:
            return
        self.interrupt = reason
        if self._in_node:
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGUSR1)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._in_node and self.interrupt is not None:
            raise Interrupted(self.interrupt)

    # -- main thread -------------------------------------------------------------------------
    def run(self, batch: int, feed: Any) -> None:
        """Run a batch whose chunks arrive on ``feed`` as ``(tasks, last)``."""
        self.batch, self.interrupt = batch, None
        with self._pin_lock:
            self.cancel_all = batch in self._cancel_queued
            self._cancel_queued = {b for b in self._cancel_queued if b > batch}
        self._inline_keys = []
        try:
            self._run_tasks(batch, feed)
        finally:
            self.traces.pop(batch, None)
            with self._pin_lock:
                self._pinned, deferred, self._deferred = set(), self._deferred, []
            self.store.release(deferred + self._inline_keys)

    def _run_tasks(self, batch: int, feed: Any) -> None:
        failed: dict[str, str] = {}
        status = self.status
        status[1] = -1
        status[0] = batch
        for index, (node_id, key, spec_id, args, timeout) in enumerate(_chunks(feed)):
            status[1] = index
            self.current, self.interrupt = node_id, ("cancel" if self.cancel_all else None)
            self.timeout = timeout
            try:
                self._run_one(batch, node_id, key, spec_id, args, failed)
            except TaskFailed as f:
                failed[key] = node_id
                self.send(Failed(batch, node_id, key, f.code, f.error_type, f.message, f.tb))
        self.current = None

    def _run_one(self, batch: int, node_id: str, key: str, spec_id: str, args: dict, failed: dict) -> None:
        if self.cancel_all:
            raise TaskFailed("VE-504", "RunCancelledError", f"run cancelled before node {node_id!r} started")
        for arg in args.values():
            if arg[0] == "ref" and arg[1] in failed:
                up = failed[arg[1]]
                raise TaskFailed("VE-505", "UpstreamFailedError",
                                 f"node {node_id!r} did not run because its input node {up!r} failed")
        spec = self.specs.get(spec_id)
        if spec is None or spec.fn is None:
            why = self.broken.get(spec_id, "it was never sent")
            raise TaskFailed("VE-300", "NodeDefinitionError", f"node {node_id!r}: node type {spec_id!r} "
                             f"could not be loaded in the worker: {why}")
        kwargs = self._resolve(node_id, args)
        t0 = time.perf_counter()
        trace = self.traces.get(batch, "")
        if trace:
            with node_span(trace, node_id, spec.type, key):
                result = self._call(spec, node_id, batch, kwargs)
        else:
            result = self._call(spec, node_id, batch, kwargs)
        outputs, ui = self._normalize(spec, node_id, result)
        self.store.put(key, outputs)
        summaries = [summary(v) for v in outputs]
        if all(s[0] == "v" for s in summaries):
            self._inline_keys.append(key)  # the kernel has them; dropped after the batch
        self.send(Finished(batch, node_id, key, summaries, ui, time.perf_counter() - t0))

    def _resolve(self, node_id: str, args: dict) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        for name, arg in args.items():
            kind = arg[0]
            if kind == "lit":
                kwargs[name] = arg[1]
            elif kind == "pkl":
                kwargs[name] = cloudpickle.loads(arg[1])
            elif kind == "shm":
                try:
                    kwargs[name] = self.resolve_shm(arg[1])
                except Exception as exc:  # a handle this worker cannot map: the node fails, not the worker
                    raise TaskFailed("VE-502", "WorkerCrashedError", f"node {node_id!r} input {name!r} could "
                                     f"not be taken from another worker: {exc}") from None
            else:
                try:
                    kwargs[name] = self.store.get(arg[1], arg[2])
                except KeyError as exc:
                    raise TaskFailed("VE-505", "UpstreamFailedError",
                                     f"node {node_id!r} input {name!r}: {exc.args[0]}; run again to "
                                     "recompute it") from None
        return kwargs

    def _call(self, spec: NodeSpec, node_id: str, batch: int, kwargs: dict[str, Any]) -> Any:
        ctx = WorkerContext(self, batch, node_id)
        token = node_context.activate(ctx)
        self._in_node = True
        sandbox.begin_node()
        try:
            assert spec.fn is not None
            if self.interrupt is not None:  # a cancel that arrived while args were resolved
                raise Interrupted(self.interrupt)
            result = _profiled(spec, node_id, kwargs) if PROFILE_DIR else spec.fn(**kwargs)
            ctx.flush()
            return result
        except Interrupted as exc:
            raise self._interrupted(spec, node_id, exc.reason) from None
        except RunCancelledError:
            raise self._interrupted(spec, node_id, self.interrupt or "cancel") from None
        except MemoryError as exc:
            raise TaskFailed("VE-503", "NodeOutOfMemoryError", f"node {node_id!r} ({spec.type}) ran out "
                             f"of memory: {_memory_reason(exc)}", traceback.format_exc()) from None
        except BaseException as exc:  # SystemExit from node code must not end the worker
            # a VortexError keeps its code and fix (VE-700 unsafe path, VE-800 missing model),
            # worded as the inline executor words it; a PermissionError the sandbox caused names
            # the action it blocked (VE-506)
            code, message = failure_message(node_id, spec.type, sandbox.translate(exc))
            raise TaskFailed(code, type(exc).__name__, message, traceback.format_exc()) from None
        finally:
            self._in_node = False
            node_context.deactivate(token)
            if self.after_node is not None:
                self.after_node()

    def _interrupted(self, spec: NodeSpec, node_id: str, reason: str) -> TaskFailed:
        if reason == "timeout":
            return TaskFailed("VE-501", "NodeTimeoutError", f"node {node_id!r} ({spec.type}) timed out: it "
                              f"did not finish within {self.timeout:g} s and was stopped (raise "
                              "@vx.node(timeout=...) or run(node_timeout=...) if it needs longer)",
                              traceback.format_exc())
        return TaskFailed("VE-504", "RunCancelledError", f"node {node_id!r} ({spec.type}) was cancelled")

    @staticmethod
    def _normalize(spec: NodeSpec, node_id: str, result: Any) -> tuple[tuple[Any, ...], dict]:
        ui: dict = {}
        if isinstance(result, NodeResult):
            result, ui = tuple(result.outputs), dict(result.ui)
        if not isinstance(result, tuple):
            result = (result,) if len(spec.outputs) == 1 else (() if result is None else (result,))
        if len(result) != len(spec.outputs):
            raise TaskFailed("VE-500", "ExecutionError", f"node {node_id!r} ({spec.type}) returned "
                             f"{len(result)} values but declares {len(spec.outputs)} outputs",
                             "fix: return a tuple with one item per output")
        if ui and not _plain(ui):
            ui = {"repr": repr(ui)[:2000]}
        return result, ui


def _memory_reason(exc: MemoryError) -> str:
    """What a MemoryError says, or (numpy and bytearray raise it bare) what it means."""
    text = str(exc).strip()
    if text:
        return text
    try:
        with open("/proc/self/statm") as f:
            rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        where = f" (the worker held {rss / 2**20:.0f} MiB)"
    except (OSError, ValueError, IndexError):
        where = ""
    return (f"an allocation failed{where}: the system refused more memory; use smaller images or "
            "batches, or free memory (other programs, cached models) and run again")


def adopt_path(path: list[Any]) -> None:
    """Make ``sys.path`` start with the kernel's entries (in its order), then this process's own."""
    kernel = [entry for entry in path if isinstance(entry, str)]
    if kernel and sys.path[:len(kernel)] != kernel:
        sys.path[:] = kernel + [entry for entry in sys.path if entry not in kernel]


def _profiled(spec: NodeSpec, node_id: str, kwargs: dict[str, Any]) -> Any:
    """Run the node under cProfile; stats go to ``$VORTEX_WORKER_PROFILE/<pid>-<node>-<n>.pstats``."""
    import cProfile

    prof = cProfile.Profile()
    try:
        assert spec.fn is not None
        return prof.runcall(spec.fn, **kwargs)
    finally:
        name = "".join(c if c.isalnum() else "_" for c in f"{spec.type}-{node_id}")
        path = os.path.join(PROFILE_DIR, f"{os.getpid()}-{name}-{time.monotonic_ns()}.pstats")
        prof.dump_stats(path)


def _chunks(feed: Any) -> Any:
    """The tasks of a batch, chunk after chunk, until the chunk marked last."""
    last = False
    while not last:
        tasks, last = feed.get()
        yield from tasks


def _plain(value: Any, depth: int = 0) -> bool:
    """msgpack-able without loss: scalars, lists, str-keyed dicts (no tuples, no numpy)."""
    if isinstance(value, (bool, float, str, bytes, type(None))):
        return True
    if isinstance(value, int):
        return -(2**63) <= value < 2**64
    if depth > 32:
        return False
    if type(value) is list:
        return all(_plain(v, depth + 1) for v in value)
    if type(value) is dict:
        return all(type(k) is str and _plain(v, depth + 1) for k, v in value.items())
    return False


plain = _plain
