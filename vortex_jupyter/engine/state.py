"""``RunState``: what one run did, built from the events it streamed.

The run loop feeds every event through ``observe`` (the bookkeeping listener that always
runs first) and every result through ``on_result`` (which stores it in the output cache).
Both may be called from an executor's thread. Outputs are not copied here: ``output(node)``
looks the node's key up in the cache and fetches through the executor, so a worker's tensors
cross into the kernel only when Python asks for them.

Final previews (``NodePreview(final=True)``: output images) are collected per node; executors
emit them before the node's result, so ``on_result`` stores them with the cache entry and a
later run that serves the node from the cache emits them again (see ``Engine._announce``).

While a run is in flight, ``claim`` holds the keys it computes (``inflight.py``): ``on_result``
tells the runs waiting for a key (one dict test when none waits), ``observe`` records the
failures of its nodes for them. Nodes another run computed for this one are ``served``.

``run.outputs`` is a read-only mapping of exactly the nodes that have outputs (they ran or were
served from the cache, and are still cached); failed nodes are in ``run.errors`` instead, and
``run.outputs[node]`` of a node without outputs raises a ``KeyError`` that says why.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ERROR_CLASSES, ExecutionError
from .cache import OutputCache, Preview
from .events import Event, NodeFailed, RunNote
from .executor import CancelToken, Executor, Task

if TYPE_CHECKING:
    from .inflight import Claim
    from .plan import Plan

__all__ = ["MissingOutputError", "Run", "RunState", "error_from_event"]


def error_from_event(event: NodeFailed, node_type: str | None = None) -> ExecutionError:
    """Rebuild the exception of a ``NodeFailed`` event (its class chosen by the VE code)."""
    cls = ERROR_CLASSES.get(event.code, ExecutionError)
    if not issubclass(cls, ExecutionError):
        cls = ExecutionError
    err = cls(event.message, node=event.node, node_type=node_type, traceback=event.traceback,
              error_type=event.error_type)
    if event.code != err.code:
        err.code = event.code  # e.g. VE-700 raised by a node keeps its own code
    return err


class RunState:
    """The record of one run; ``done`` is set once ``RunFinished`` was emitted."""

    def __init__(self, run_id: str, executor: Executor, cache: OutputCache) -> None:
        self.run_id = run_id
        self.executor = executor
        self.cache = cache
        self.status = "pending"  # -> "running" -> "ok" | "failed" | "cancelled"
        self.events: list[Event] = []
        self.errors: dict[str, ExecutionError] = {}
        self.finished: set[str] = set()
        self.shared_ok = 0
        self.timings: dict[str, float] = {}
        self.ui: dict[str, dict[str, Any]] = {}
        #: node id -> its final previews of this run (also those re-emitted for cached nodes).
        self.previews: dict[str, list[Preview]] = {}
        self.node_keys: dict[str, str] = {}
        self.planned: list[str] = []
        self.cached: list[str] = []
        self.elapsed = 0.0
        self.error: BaseException | None = None  # set when the run itself raised
        #: Why this run recomputed nodes an earlier run had computed, if it did (see Engine.run).
        self.note: RunNote | None = None
        #: The keys this run computes, while it is in flight (see ``inflight.py``).
        self.claim: Claim | None = None
        #: ``claim.waiters``: non-empty while another run waits for one of this run's keys.
        self.watched: dict[str, Any] = {}
        #: Nodes another run in flight computed for this one (reported as cached).
        self.served: set[str] = set()
        self._tasks: Sequence[Task] = ()
        self._types: dict[str, str] | None = None
        self._done = threading.Event()

    # ---- lifecycle -----------------------------------------------------------------------
    def begin(self, plan: Plan, node_keys: dict[str, str]) -> None:
        self.status = "running"
        self.planned = plan.planned
        self.cached = plan.cached
        self.node_keys = node_keys

    def set_tasks(self, tasks: Sequence[Task]) -> None:
        self._tasks = tasks

    def mark_done(self) -> None:
        self._done.set()

    def fail(self, exc: BaseException) -> None:
        """The run could not start or crashed outside any node (e.g. a ValidationError)."""
        self.error = exc
        self.status = "failed"
        self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    @property
    def stats(self) -> dict[str, Any]:
        """Counts of nodes ran / cached / failed, and the ``reason`` nodes ran again, if any."""
        out: dict[str, Any] = {"ran": len(self.finished), "cached": len(self.cached) + self.shared_ok,
                               "failed": len(self.errors)}
        if self.note is not None:
            out["reason"] = self.note.message
        return out

    # ---- callbacks -----------------------------------------------------------------------
    def on_result(self, task: Task, refs: tuple[Any, ...], pin: bool = False) -> None:
        node = task.node_id
        self.cache.put(task.key, refs, self.previews.get(node) if self.previews else None, pin)
        self.finished.add(node)
        if self.watched:  # another run waits for a key of this one
            self.cache.inflight.produced(self.claim, task.key)  # type: ignore[arg-type]

    def observe(self, event: Event) -> None:
        self.events.append(event)
        kind = event.kind
        if kind == "node_finished":
            node = event.node  # type: ignore[attr-defined]
            self.timings[node] = event.elapsed  # type: ignore[attr-defined]
            ui = event.ui  # type: ignore[attr-defined]
            if ui:
                self.ui[node] = ui
                self.cache.annotate(self.node_keys[node], ui)
        elif kind == "node_failed":
            assert isinstance(event, NodeFailed)
            self.errors[event.node] = error_from_event(event, self._type_of(event.node))
            if self.claim is not None:  # runs waiting for this node's key fail alike
                self.cache.inflight.failed(self.claim, self.node_keys.get(event.node), event)
        elif kind == "node_preview" and event.final:  # type: ignore[attr-defined]
            self.previews.setdefault(event.node, []).append((event.mime, event.data))  # type: ignore[attr-defined]

    def _type_of(self, node: str) -> str | None:
        if self._types is None:
            self._types = {t.node_id: t.spec.type for t in self._tasks}
        return self._types.get(node)

    # ---- outputs -------------------------------------------------------------------------
    def has_output(self, node: str) -> bool:
        """Whether ``node`` has outputs to read: it ran or was served, and is still cached."""
        key = self.node_keys.get(node)
        return key is not None and node not in self.errors and key in self.cache.index

    def output(self, node: str) -> tuple[Any, ...]:
        """The outputs of ``node``, fetched through the executor; ``MissingOutputError`` (a
        ``KeyError``) saying why when it has none."""
        key = self.node_keys.get(node)
        entry = None if key is None or node in self.errors else self.cache.get(key)
        if entry is None:
            raise self._missing(node, key)
        fetch = self.executor.fetch
        return tuple(fetch(r) for r in entry.refs)

    def _missing(self, node: str, key: str | None) -> MissingOutputError:
        err = self.errors.get(node)
        if err is not None:
            first = err.message.splitlines()[0] if err.message else type(err).__name__
            missing = MissingOutputError(
                f"node {node!r} has no outputs: it failed with {err.code} ({first}); "
                f"its error is run.errors[{node!r}]")
            missing.__cause__ = err
            return missing
        if key is None:
            return MissingOutputError(
                f"node {node!r} was not part of this run, so it did not run and has no outputs (not a node "
                "of the graph, muted or bypassed, or not needed by outputs=...); run.outputs.keys() lists "
                "the nodes with outputs")
        if not self.done:
            return MissingOutputError(f"node {node!r} has no outputs yet: the run is still running "
                                      "(run.wait() first)")
        return MissingOutputError(f"the outputs of node {node!r} are no longer cached (evicted or their "
                                  "worker died); run the graph again")

    def final_previews(self) -> list[tuple[str, Preview]]:
        """(node, (mime, bytes)) of every output image: from this run, or from cached nodes."""
        out: list[tuple[str, Preview]] = []
        for node, key in self.node_keys.items():
            if node in self.previews:
                out.extend((node, p) for p in self.previews[node])
            elif key in self.cache.previewed:
                entry = self.cache.get(key)
                if entry is not None:
                    out.extend((node, p) for p in entry.previews)
        return out


class MissingOutputError(KeyError):
    """``run.outputs[node]`` of a node that has no outputs (it failed, did not run, or its outputs
    were evicted). A ``KeyError``, so ``run.outputs.get(node)`` and ``node in run.outputs`` work;
    the message says which case it is (a failed node's error is its ``__cause__``)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class _Outputs(Mapping[str, tuple[Any, ...]]):
    """``run.outputs``: node id -> its outputs, for exactly the nodes that have them (see
    ``RunState.has_output``); values are fetched through the executor when read, so ``in``,
    ``len`` and ``keys()`` fetch nothing. Failed nodes are in ``run.errors`` instead.

    >>> # run.outputs[y.id] -> (8,); run.outputs.get(failed_node) -> None
    """

    def __init__(self, state: RunState) -> None:
        self._state = state

    def __getitem__(self, node: Any) -> tuple[Any, ...]:
        return self._state.output(_node_id(node))

    def __contains__(self, node: object) -> bool:
        return self._state.has_output(_node_id(node))

    def __iter__(self) -> Iterator[str]:
        has = self._state.has_output
        return (n for n in list(self._state.node_keys) if has(n))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"<outputs of {len(self)} nodes (fetched when read)>"


def _node_id(node: Any) -> str:
    return str(getattr(node, "id", node))


class Run:
    """One run of a graph. ``g.run()`` returns it finished; ``g.start()`` while it runs."""

    def __init__(self, state: RunState, cancel: CancelToken, thread: threading.Thread | None = None) -> None:
        self._state = state
        self._cancel = cancel
        self._thread = thread
        self.outputs = _Outputs(state)

    run_id = property(lambda self: self._state.run_id)
    status = property(lambda self: self._state.status, doc='"running", "ok", "failed" or "cancelled"')
    events = property(lambda self: self._state.events, doc=(
        "the events of this run, in order. Per-node detail (queued/started/finished/cached, "
        "progress, step previews) is produced only when the graph has listeners (g.on_event): "
        "without them a 10k-node run skips ~30k event objects. Failures, output images and "
        "run_started/run_finished are always there."))
    timings = property(lambda self: self._state.timings,
                       doc="node id -> seconds it ran (filled when the graph has listeners)")
    planned = property(lambda self: self._state.planned, doc=(
        "node ids that were to run: this run computed them, or another run in flight computed "
        "them for it (those end with a node_cached event and count as cached in stats)"))
    cached = property(lambda self: self._state.cached, doc="node ids served from the cache")
    elapsed = property(lambda self: self._state.elapsed)

    @property
    def stats(self) -> dict[str, Any]:
        """``{"ran", "cached", "failed"}`` counts, plus ``"reason"`` when nodes ran again for a
        reason worth knowing (e.g. their cached outputs belong to another executor)."""
        return self._state.stats

    @property
    def note(self) -> RunNote | None:
        """Why this run recomputed what an earlier run had computed (message, reason, hint), if it did."""
        return self._state.note

    @property
    def errors(self) -> dict[str, ExecutionError]:
        """node id -> the error it failed with (VE-505 for nodes whose upstream failed)."""
        return self._state.errors

    @property
    def done(self) -> bool:
        return self._state.done

    def wait(self, timeout: float | None = None) -> Run:
        """Block until the run finished; re-raises an error that stopped it from starting."""
        if self._thread is not None:
            self._thread.join(timeout)
        else:
            self._state.wait(timeout)
        if self._state.error is not None:
            raise self._state.error
        return self

    def cancel(self) -> None:
        """Stop after the running node (nodes see it through ``ctx.raise_if_cancelled()``)."""
        self._cancel.cancel()

    def raise_for_errors(self) -> Run:
        """Raise the first node error, if any (for scripts that want exceptions)."""
        for err in self._state.errors.values():
            raise err
        return self

    @property
    def images(self) -> list[Any]:
        """Output images (SaveImage/PreviewImage) as PIL images, also from cached nodes."""
        import io

        from PIL import Image

        return [Image.open(io.BytesIO(data)) for _, (_mime, data) in self._state.final_previews()]

    def _repr_html_(self) -> str:
        import base64
        import html

        imgs = "".join(
            f'<img src="data:{mime};base64,{base64.b64encode(d).decode()}" style="max-width:256px;margin:2px">'
            for _, (mime, d) in self._state.final_previews()[:16])
        return f"<div><code>{html.escape(repr(self))}</code></div>{imgs}"

    def __repr__(self) -> str:
        s = self.stats
        text = (f"<Run {self.run_id} {self.status}: ran {s['ran']}, cached {s['cached']}, "
                f"failed {s['failed']} in {self._state.elapsed * 1e3:.1f} ms>")
        note = self._state.note
        if note is not None:
            text += f"\n  note: {note.message} ({note.hint})"
        for node, err in list(self.errors.items())[:3]:
            text += f"\n  {node}: [{err.code}] {err.message.splitlines()[0]}"
        return text
