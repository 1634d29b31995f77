"""The actor side of the Ray executor: ``NodeActor`` runs nodes inside a Ray actor process.

Responsibilities (the driver side, what runs where and when, is ``ray_executor.py``):

- ``run`` calls one node the way a worker does (``runner.WorkerContext`` installed, so
  ``context.current().progress/preview`` work in node code; outputs checked by
  ``Runner._normalize``; errors worded by ``failure_message``) and returns one value per
  output plus a *report* (a small dict: ok or the failure's code/message/traceback, ``ui``,
  what each output is, the node's buffered events). Its inputs arrive as Ray resolved them
  from upstream ObjectRefs: numpy arrays are zero-copy, read-only views of the object store.
- What goes to Ray's object store: values that are plain data (scalars, strings, numpy arrays,
  CPU torch tensors, PIL images, and lists/dicts of them). Anything else (a loaded model, a
  CUDA tensor) stays in this actor, in ``self.store``, and the object store gets a
  ``Resident`` placeholder: a later node on this actor uses the object itself (a GPU actor
  keeps its models loaded), a node on another actor copies it through ``export``.
- A task whose input is ``Unavailable`` (its upstream failed) does not run: VE-505.
- Events (started, progress, step previews) go into a buffer the driver drains while the
  node runs (``drain``); whatever is left goes back in the report, so a node's final previews
  always arrive, before its ``NodeFinished``.
- Cancel and timeouts: ``interrupt_batch`` (which also fails the batch's queued calls at once)
  and a per-node timer for the node's timeout set the reason (``self.interrupt``) that the
  context's ``cancelled``/``raise_if_cancelled`` see, and raise ``Interrupted`` in the node's
  thread (``PyThreadState_SetAsyncExc``): Python code stops at its next bytecode;
  a C call that never returns is not stopped (the worker pool's processes can be killed; an
  actor's node thread cannot, short of killing the actor).

``drain``, ``interrupt_batch``, ``export``, ``release`` and ``ping`` are called in the actor's "io"
concurrency group, so they answer while a node runs. The actor keeps no state the driver
cannot lose: a restarted actor (``max_restarts``) has a new ``incarnation`` and an empty store.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from typing import Any, cast

import cloudpickle

from ..engine.inprocess import failure_message
from ..errors import RunCancelledError
from ..nodes import context as node_context
from ..nodes.spec import NodeSpec
from .codefiles import restore_files
from .protocol import FORWARDED_ENV, Message, Preview, Progress
from .runner import Interrupted, Runner, TaskFailed, WorkerContext, adopt_path
from .store import movable, nbytes_of

__all__ = ["NodeActor", "Resident", "Unavailable"]


@dataclass(frozen=True)
class Resident:
    """In the object store instead of an output that stays in actor ``actor`` (its handle)."""

    actor: Any
    incarnation: str
    key: str
    index: int
    type_name: str
    text: str
    nbytes: int


@dataclass(frozen=True)
class Unavailable:
    """In the object store instead of the outputs of node ``node``, which failed."""

    node: str


class _Stop(Interrupted):
    """What a stop raises in the node's thread (the reason is ``NodeActor.interrupt``)."""

    def __init__(self) -> None:
        super().__init__("interrupt")


class _ActorContext(WorkerContext):
    """A worker's node context, sending into the actor's buffer; without listeners (``detail``
    off) progress and step previews are dropped before they are encoded."""

    def progress(self, value: float, total: float | None = None, text: str | None = None) -> None:
        if cast(NodeActor, self.runner).detail:
            super().progress(value, total, text)

    def preview(self, image: Any, *, final: bool = False) -> None:
        if final or cast(NodeActor, self.runner).detail:
            super().preview(image, final=final)


def portable(value: Any) -> bool:
    """Whether ``value`` may live in Ray's object store (and so in the kernel): plain data on the CPU."""
    return movable(value, cpu_only=True)


def _describe(value: Any) -> tuple[str, str, int]:
    """(module.qualname, repr, nbytes) of an object that does not leave its actor."""
    text = repr(value) if type(value).__repr__ is not object.__repr__ else f"<{type(value).__name__}>"
    return f"{type(value).__module__}.{type(value).__qualname__}", text[:200], nbytes_of(value)


class NodeActor:
    """Runs nodes for ``RayExecutor``; wrapped by ``ray.remote`` on the driver (see module docs)."""

    def __init__(self, device: str, pack: str = "", paths: list[str] | None = None, threads: int = 0,
                 env: dict[str, str] | None = None) -> None:
        self.incarnation = uuid.uuid4().hex
        self.device = device
        for name, value in (env or {}).items():
            os.environ[name] = value
        if threads > 0:
            os.environ["OMP_NUM_THREADS"] = str(threads)  # torch reads it on import
            if "torch" in sys.modules:
                sys.modules["torch"].set_num_threads(threads)
        if pack:  # as a pack's worker does (workers/worker.py main): its code imports here only
            sys.path[:0] = [p for p in paths or [] if p not in sys.path]
            os.environ["VORTEX_WORKER_PACK"] = pack
        else:
            adopt_path(list(paths or []))
        self.specs: dict[str, NodeSpec] = {}
        self.store: dict[str, tuple[Any, ...]] = {}
        self.interrupt: str | None = None
        self.detail = True
        self.timeout = 0.0
        self._events: list[tuple[Any, ...]] = []
        self._lock = threading.Lock()
        self._env: tuple[str, ...] = ()
        self._batch = -1
        self._cancelled: set[int] = set()
        self._node_thread = 0
        self._in_node = False
        self._me: Any = None

    # -- the node thread (the actor's default concurrency group) -----------------------------
    def run(self, meta: tuple[Any, ...], lits: dict[str, Any], names: tuple[str, ...], *values: Any) -> Any:
        """One node; returns its outputs and the report (one value when it has no outputs)."""
        node_id, key, n_out = meta[0], meta[1], meta[8]
        report: dict[str, Any] = {"inc": self.incarnation}
        try:
            outputs, report["ui"], report["elapsed"] = self._run(meta, lits, names, values)
            report["ok"], report["outputs"] = True, self._keep(key, outputs)
            results: tuple[Any, ...] = self._placed(key, outputs, report["outputs"])
        except (TaskFailed, Interrupted) as exc:  # Interrupted: a stop that came as the node returned
            f = exc if isinstance(exc, TaskFailed) else TaskFailed(
                "VE-504", "RunCancelledError", f"node {node_id!r} was stopped ({self.interrupt or 'cancel'})")
            report.update(ok=False, code=f.code, error_type=f.error_type, message=f.message, traceback=f.tb)
            report["lost"] = getattr(f, "lost", [])
            results = (Unavailable(node_id),) * n_out
        with self._lock:
            report["events"], self._events = self._events, []
        return (*results, report) if n_out else report

    def _run(self, meta: tuple[Any, ...], lits: dict[str, Any], names: tuple[str, ...],
             values: tuple[Any, ...]) -> tuple[tuple[Any, ...], dict[str, Any], float]:
        node_id, _key, sid, spec_box, timeout, batch, detail, env, _n = meta
        self._forward_env(env)
        self._batch, self.interrupt, self.detail = batch, None, detail
        kwargs = dict(lits)
        lost: list[str] = []
        for name, value in zip(names, values):
            kwargs[name] = self._input(node_id, name, value, lost)
        spec = self._spec(node_id, sid, spec_box)
        t0 = time.perf_counter()
        result = self._call(spec, node_id, batch, kwargs, timeout)
        outputs, ui = Runner._normalize(spec, node_id, result)
        return outputs, ui, time.perf_counter() - t0

    def _input(self, node_id: str, name: str, value: Any, lost: list[str]) -> Any:
        if isinstance(value, Unavailable):
            raise TaskFailed("VE-505", "UpstreamFailedError",
                             f"node {node_id!r} did not run because its input node {value.node!r} failed")
        if not isinstance(value, Resident):
            return value
        try:
            if value.incarnation == self.incarnation:
                return self._stored(value.incarnation, value.key, value.index)
            import ray

            return ray.get(value.actor.export.options(concurrency_group="io").remote(
                value.key, value.index, False, value.incarnation))
        except Exception as exc:
            failed = TaskFailed("VE-502", "WorkerCrashedError",
                                f"node {node_id!r} could not run: its input {name!r} ({value.type_name}) lived in a "
                                f"Ray actor that restarted or released it ({type(exc).__name__}); it will be "
                                "recomputed on the next run")
            failed.lost = [value.key]  # type: ignore[attr-defined]
            raise failed from None

    def _spec(self, node_id: str, sid: str, spec_box: list[Any]) -> NodeSpec:
        spec = self.specs.get(sid)
        if spec is None:
            try:
                import ray

                data, files = ray.get(spec_box[0])
                spec = cloudpickle.loads(data)
                restore_files(spec.fn, files)
            except Exception as exc:
                raise TaskFailed("VE-300", "NodeDefinitionError", f"node {node_id!r}: node type {sid!r} could "
                                 f"not be loaded in the Ray actor: {type(exc).__name__}: {exc}") from None
            self.specs[sid] = spec
        return spec

    def _call(self, spec: NodeSpec, node_id: str, batch: int, kwargs: dict[str, Any], timeout: float) -> Any:
        ctx = _ActorContext(cast(Runner, self), batch, node_id)
        token = node_context.activate(ctx)
        timer = threading.Timer(timeout, self._expire, (batch,)) if timeout else None
        self.timeout = timeout
        try:
            if timer is not None:
                timer.daemon = True
                timer.start()
            return self._guarded(spec, node_id, batch, kwargs, ctx)
        except TaskFailed:
            raise
        except (Interrupted, RunCancelledError):
            raise self._interrupted(spec, node_id) from None
        except BaseException as exc:  # SystemExit from node code must not end the actor
            code, message = failure_message(node_id, spec.type, exc)
            if isinstance(exc, MemoryError):
                code = "VE-503"
            raise TaskFailed(code, type(exc).__name__, message, traceback.format_exc()) from None
        finally:
            self._leave()  # again: a stop raised as ``_guarded`` left may have skipped its own
            if timer is not None:
                timer.cancel()
            node_context.deactivate(token)

    def _guarded(self, spec: NodeSpec, node_id: str, batch: int, kwargs: dict[str, Any], ctx: _ActorContext) -> Any:
        """The node's call, the only stretch ``interrupt_batch``/``_expire`` may raise into."""
        with self._lock:
            if batch in self._cancelled:  # cancelled before this node started
                raise TaskFailed("VE-504", "RunCancelledError", f"node {node_id!r} did not run: the run was cancelled")
            self._node_thread, self._in_node = threading.get_ident(), True
            if self.detail:
                self._events.append((node_id, "started"))
        try:
            assert spec.fn is not None
            result = spec.fn(**kwargs)
            ctx.flush()
            return result
        finally:
            self._leave()

    def _leave(self) -> None:
        with self._lock:
            if self._in_node:
                self._in_node = False
                _async_raise(self._node_thread, None)  # a stop that came as the node returned

    def _interrupted(self, spec: NodeSpec, node_id: str) -> TaskFailed:
        if self.interrupt == "timeout":
            return TaskFailed("VE-501", "NodeTimeoutError", f"node {node_id!r} ({spec.type}) timed out: it did "
                              f"not finish within {self.timeout:g} s and was stopped (raise @vx.node(timeout=...) "
                              "or run(node_timeout=...) if it needs longer)", traceback.format_exc())
        return TaskFailed("VE-504", "RunCancelledError", f"node {node_id!r} ({spec.type}) was cancelled")

    def _keep(self, key: str, outputs: tuple[Any, ...]) -> list[tuple[str, str, int]]:
        """What each output is: ``("v" | "r", type name, nbytes)``; "r" (resident) stays here."""
        kinds = [("v" if portable(v) else "r", type(v).__name__, nbytes_of(v)) for v in outputs]
        if any(k[0] == "r" for k in kinds):
            with self._lock:
                self.store[key] = outputs
        return kinds

    def _placed(self, key: str, outputs: tuple[Any, ...], kinds: list[tuple[str, str, int]]) -> tuple[Any, ...]:
        if all(k[0] == "v" for k in kinds):
            return outputs
        if self._me is None:
            import ray

            self._me = ray.get_runtime_context().current_actor
        return tuple(v if k[0] == "v" else Resident(self._me, self.incarnation, key, i, k[1], _describe(v)[1], k[2])
                     for i, (v, k) in enumerate(zip(outputs, kinds)))

    def _forward_env(self, env: tuple[str, ...]) -> None:
        """The kernel's ``FORWARDED_ENV`` values (``""``: unset), as workers get them (``SetEnv``)."""
        if env == self._env:
            return
        for name, value in zip(FORWARDED_ENV, env):
            if value:
                os.environ[name] = value
            else:
                os.environ.pop(name, None)
        self._env = env

    # -- what WorkerContext calls -----------------------------------------------------------
    def send(self, msg: Message) -> None:
        if isinstance(msg, Progress):
            self._push(msg.node, "progress", msg.value, msg.total, msg.text)
        elif isinstance(msg, Preview):
            self._push(msg.node, "preview", msg.mime, msg.data, msg.final)

    def _push(self, node: str, kind: str, *fields: Any) -> None:
        with self._lock:
            self._events.append((node, kind, *fields))

    # -- the "io" concurrency group ---------------------------------------------------------
    def drain(self) -> tuple[str, list[tuple[Any, ...]]]:
        """The events buffered since the last drain (of the node running now)."""
        with self._lock:
            events, self._events = self._events, []
        return self.incarnation, events

    def ping(self) -> str:
        return self.incarnation

    def interrupt_batch(self, batch: int, reason: str = "cancel") -> None:
        """Stop the node of ``batch`` running now; its tasks not started yet fail with VE-504."""
        with self._lock:
            self._cancelled.add(batch)
            if len(self._cancelled) > 1024:
                self._cancelled = {b for b in self._cancelled if b >= batch - 64}
            if batch == self._batch and self._in_node:
                self.interrupt = reason
                _async_raise(self._node_thread, _Stop)

    def _expire(self, batch: int) -> None:
        with self._lock:
            if batch == self._batch and self._in_node:
                self.interrupt = "timeout"
                _async_raise(self._node_thread, _Stop)

    def export(self, key: str, index: int, for_kernel: bool, incarnation: str = "") -> Any:
        """Output ``index`` of ``key``: for another actor as it is, for the kernel as plain data
        (CUDA tensors copied to the host) or ``("opaque", type, repr, nbytes)``."""
        value = self._stored(incarnation or self.incarnation, key, index)
        if not for_kernel:
            return value
        if type(value).__module__.startswith("torch") and hasattr(value, "device"):
            return ("value", value.detach().cpu())
        if portable(value):
            return ("value", value)
        return ("opaque", *_describe(value))

    def _stored(self, incarnation: str, key: str, index: int) -> Any:
        with self._lock:
            outputs = self.store.get(key) if incarnation == self.incarnation else None
        if outputs is None:
            raise LookupError(f"output {key[:12]}…[{index}] is not in this actor (released, or the actor restarted)")
        return outputs[index]

    def release(self, keys: list[str]) -> None:
        with self._lock:
            for key in keys:
                self.store.pop(key, None)


def _async_raise(thread_id: int, exc: type[BaseException] | None) -> None:
    """Raise ``exc`` in thread ``thread_id`` at its next bytecode (None: forget a pending one)."""
    if thread_id:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id),
                                                   ctypes.py_object(exc) if exc is not None else None)
