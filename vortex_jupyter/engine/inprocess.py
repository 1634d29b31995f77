"""``InProcessExecutor``: runs node functions in this process, one after another.

For tests, debugging and tiny graphs (``executor="inline"``). References are the output
values themselves, so ``fetch`` is the identity and ``release`` only drops them.

Policy:

- Tasks run in the batch order (the plan is topological). Before each task the cancel token
  is checked; after a cancel the remaining tasks are reported as cancelled (VE-504).
- A task whose input came from a task that failed in this batch is not run: it fails with
  VE-505 naming the node that failed first. Independent tasks keep running.
- Exceptions are caught into ``NodeFailed`` with the formatted traceback; a ``VortexError``
  keeps its own code (e.g. VE-700 for an unsafe path) and its fix, anything else is VE-500.
  ``SystemExit`` from node code is a failure like any other (the kernel lives on); a
  ``KeyboardInterrupt`` (Jupyter's interrupt button) fails the node with VE-504 and cancels
  the rest of the run, which then returns normally with what finished.
- A ``NodeContext`` is installed per task: progress and previews become events (encoded to
  PNG by ``nodes.images.encode_image``, the encoder the workers use too; they send step
  previews as JPEG), ``raise_if_cancelled`` sees the run's cancel token.
- Timeouts are cooperative here (a thread cannot be killed): after the deadline
  ``ctx.cancelled`` is true and ``raise_if_cancelled`` raises VE-501; a result that arrives
  late is discarded as a timeout. The worker pool enforces timeouts for real.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Sequence
from typing import Any

from ..errors import NodeTimeoutError, RunCancelledError, VortexError
from ..nodes import context as node_context
from ..nodes.images import encode_image
from ..nodes.spec import NodeResult
from .events import NodeFailed, NodeFinished, NodePreview, NodeProgress, NodeStarted
from .executor import BatchCallbacks, CancelToken, Lit, Ref, Task

__all__ = ["InProcessExecutor", "encode_preview", "failure_message"]

_perf = time.perf_counter


class _Context(node_context.NodeContext):
    """One context per batch, pointed at the running task (cheaper than one per node)."""

    def __init__(self, emit: Any, cancel: CancelToken, detail: bool = True) -> None:
        self._emit = emit
        self._cancel = cancel
        self._detail = detail
        self.start(None, None)

    def start(self, task: Task | None, deadline: float | None) -> None:
        self.node_id = None if task is None else task.node_id
        self._run_id = "" if task is None else task.run_id
        self._timeout = None if task is None else task.timeout
        self._deadline = deadline

    @property
    def timed_out(self) -> bool:
        return self._deadline is not None and _perf() > self._deadline

    @property
    def cancelled(self) -> bool:
        return self._cancel.cancelled or self.timed_out

    def raise_if_cancelled(self) -> None:
        if self.timed_out:
            raise NodeTimeoutError(
                f"node {self.node_id!r} ran longer than its timeout of {self._timeout} s",
                node=self.node_id, hint="raise the node's timeout or g.run(node_timeout=...)",
            )
        if self._cancel.cancelled:
            raise RunCancelledError("run cancelled", node=self.node_id)

    def progress(self, value: float, total: float | None = None, text: str | None = None) -> None:
        if not self._detail:
            return
        self._emit(NodeProgress(self._run_id, self.node_id or "", float(value),
                                None if total is None else float(total), text))

    def preview(self, image: Any, *, final: bool = False) -> None:
        if not (final or self._detail):
            return  # nobody watches step previews: skip the encoding
        mime, data = encode_image(image)  # PNG even for steps: the inline executor's contract
        self._emit(NodePreview(self._run_id, self.node_id or "", mime, data, final))


def encode_preview(image: Any, final: bool = True) -> tuple[str, bytes]:
    """(mime, bytes) of a preview; see ``nodes.images.encode_image`` (shared with the workers)."""
    return encode_image(image, final)


def failure_message(node_id: str, node_type: str, exc: BaseException) -> tuple[str, str]:
    """``(code, message)`` of a node that raised ``exc``; the worker runner uses it too, so a
    node fails alike inline and in a worker. A ``VortexError`` keeps its own code and its fix
    (the event has no hint field: the fix goes in the text); anything else is VE-500."""
    if isinstance(exc, VortexError):
        message = f"node {node_id!r} ({node_type}) failed: {exc.message}"
        return exc.code, message + (f" (fix: {exc.hint})" if exc.hint else "")
    return "VE-500", f"node {node_id!r} ({node_type}) raised {type(exc).__name__}: {exc}"


def _failure(task: Task, exc: BaseException) -> NodeFailed:
    code, message = failure_message(task.node_id, task.spec.type, exc)
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return NodeFailed(task.run_id, task.node_id, code, message, type(exc).__name__, tb)


def _normalize(task: Task, result: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if type(result) is tuple:
        outputs, ui = result, {}
    elif isinstance(result, NodeResult):
        outputs, ui = tuple(result.outputs), dict(result.ui)
    elif result is None and not task.spec.outputs:
        outputs, ui = (), {}
    elif isinstance(result, dict) and ("ui" in result or "result" in result):  # ComfyUI style
        outputs, ui = tuple(result.get("result", ())), dict(result.get("ui", {}))
    else:
        outputs, ui = (result,), {}
    n = len(task.spec.outputs)
    if len(outputs) != n and not (n == 0 and task.spec.output_node):
        raise TypeError(
            f"{task.spec.type} returned {len(outputs)} value(s) but declares {n} output(s); "
            "return a tuple with one item per output"
        )
    return outputs, ui


_NO_UI: dict[str, Any] = {}
_FIXED_SIZES: dict[type, int] = {int: 32, float: 24, bool: 28, type(None): 16}


def _cancel_rest(rest: Sequence[Task], emit: Any) -> None:
    for task in rest:
        emit(NodeFailed(task.run_id, task.node_id, RunCancelledError.code,
                        f"node {task.node_id!r} did not run: the run was cancelled", "RunCancelledError"))


def _resolve(
    task: Task, results: dict[str, tuple[Any, ...]], failed: dict[str, str]
) -> tuple[dict[str, Any], str | None]:
    """Keyword arguments of a task, or the node that failed upstream of it. A wired task's
    params and links are read as they are (no ``Lit``/``Ref`` built: see engine/executor.py)."""
    params, wiring = task.params, task.wiring
    if params is None or wiring is None:
        return _resolve_args(task.args, results, failed)
    kwargs = {**params}
    keys = wiring.keys
    for name, src, index in task.links:  # type: ignore[union-attr]
        k = keys[src]
        produced = results.get(k)
        if produced is None:
            if k in failed:
                return kwargs, failed[k]
            produced = wiring.held[k]
        kwargs[name] = produced[index]
    return kwargs, None


def _resolve_args(
    args: dict[str, Lit | Ref], results: dict[str, tuple[Any, ...]], failed: dict[str, str]
) -> tuple[dict[str, Any], str | None]:
    kwargs: dict[str, Any] = {}
    for name, arg in args.items():
        if type(arg) is Lit:
            kwargs[name] = arg.value
            continue
        k = arg.key  # type: ignore[union-attr]
        produced = results.get(k)
        if produced is not None:
            kwargs[name] = produced[arg.index]  # type: ignore[union-attr]
        elif k in failed:
            return kwargs, failed[k]
        else:
            kwargs[name] = arg.held  # type: ignore[union-attr]
    return kwargs, None


class InProcessExecutor:
    """Runs a batch of tasks in the calling thread."""

    name = "inline"

    def execute(self, batch: Sequence[Task], callbacks: BatchCallbacks, cancel: CancelToken) -> None:
        ctx = _Context(callbacks.emit, cancel, callbacks.detail)
        token = node_context.activate(ctx)
        try:
            self._execute(batch, callbacks, cancel, ctx)
        finally:
            node_context.deactivate(token)

    def _execute(self, batch: Sequence[Task], callbacks: BatchCallbacks, cancel: CancelToken, ctx: _Context) -> None:
        results: dict[str, tuple[Any, ...]] = {}
        failed: dict[str, str] = {}  # key -> node id that failed first
        emit = callbacks.emit
        on_result = callbacks.on_result
        detail = callbacks.detail
        for i, task in enumerate(batch):
            if cancel.cancelled:
                _cancel_rest(batch[i:], emit)
                return
            kwargs, upstream = _resolve(task, results, failed)
            if upstream is not None:
                failed[task.key] = upstream
                emit(NodeFailed(task.run_id, task.node_id, "VE-505",
                                f"node {task.node_id!r} did not run: upstream node {upstream!r} failed",
                                "UpstreamFailedError"))
                continue
            if detail:
                emit(NodeStarted(task.run_id, task.node_id))
            spec = task.spec
            t0 = _perf()
            deadline = None if task.timeout is None else t0 + task.timeout
            ctx.start(task, deadline)
            try:
                raw = spec.fn(**kwargs)  # type: ignore[misc]
                if type(raw) is tuple and len(raw) == len(spec.outputs):
                    outputs, ui = raw, _NO_UI  # the common case, without a call
                else:
                    outputs, ui = _normalize(task, raw)
                if deadline is not None and _perf() > deadline:
                    ctx.raise_if_cancelled()
            except (Exception, SystemExit) as exc:  # sys.exit() in node code must not end the kernel
                failed[task.key] = task.node_id
                emit(_failure(task, exc))
                continue
            except KeyboardInterrupt:  # Jupyter's interrupt: cancel the run, keep what finished
                cancel.cancel()
                failed[task.key] = task.node_id
                emit(NodeFailed(task.run_id, task.node_id, RunCancelledError.code,
                                f"node {task.node_id!r} ({spec.type}) was interrupted; the run was cancelled",
                                "RunCancelledError"))
                continue
            results[task.key] = outputs
            on_result(task, outputs)  # before NodeFinished, as the Executor contract says
            if detail or ui:
                emit(NodeFinished(task.run_id, task.node_id, _perf() - t0, ui))

    def fetch(self, ref: Any) -> Any:
        return ref

    def release(self, refs: Sequence[Any]) -> None:
        """Nothing to free: dropping the cache's reference lets Python collect the value."""

    def size_of(self, ref: Any) -> int:
        fixed = _FIXED_SIZES.get(type(ref))
        if fixed is not None:
            return fixed
        if type(ref) is str or type(ref) is bytes:
            return 49 + len(ref)
        nbytes = getattr(ref, "nbytes", None)  # numpy arrays, torch tensors
        if isinstance(nbytes, int):
            return nbytes
        if isinstance(ref, dict):
            return 64 + sum(self.size_of(v) for v in ref.values())
        if isinstance(ref, (list, tuple)):
            return 56 + sum(self.size_of(v) for v in ref)
        return sys.getsizeof(ref)

    def close(self) -> None:
        """Nothing to close."""
