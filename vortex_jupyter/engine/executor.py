"""The Executor seam: how the run loop hands work to whatever runs nodes.

The run loop (``engine/run.py``) decides WHAT runs; an Executor decides HOW. It receives a
whole plan segment at once (a batch of ``Task``s in topological order), runs it, and reports
through ``emit`` the node events: ``NodeStarted``, ``NodeProgress``, ``NodePreview``,
``NodeFinished`` (after ``on_result``), ``NodeFailed``. A task whose input came from a task
that failed in the same batch is not run: the executor emits ``NodeFailed`` with code
``VE-505`` (upstream failed) for it.

Values stay where they were made. ``on_result(task, refs)`` gives the run loop one opaque
reference per output; the in-process executor's references are the values themselves, the
worker pool's are handles into a worker. ``fetch`` turns a reference into a value in this
process; ``release`` frees what the engine's cache evicted.

Arguments of a task are ``Lit`` (a param value) or ``Ref`` (output ``index`` of the node
whose cache key is ``key``; either run earlier in this batch, or a cached output the engine
passes in ``Ref.held``, one of this executor's own references).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..nodes.spec import NodeSpec
from .events import Event


class _Record:
    """Base of ``Lit``, ``Ref`` and ``Task``: plain ``__slots__`` classes, immutable by convention.

    They used to be frozen dataclasses, whose ``__init__`` sets every field through
    ``object.__setattr__`` (about 0.3 us a field). A cold run of a 10k-node graph builds ~50k
    of them, which was ~4 us a node: a fifth of the engine's own cost. These keep what the
    dataclasses gave (the constructor, attributes, ``==``, ``hash``, ``repr``, pickling);
    nothing in the package assigns to their fields after construction, and nothing may.
    """

    __slots__ = ()
    #: Field names in constructor order (``__slots__`` is kept sorted).
    _FIELDS: tuple[str, ...] = ()

    def _fields(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._FIELDS)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._fields() == other._fields()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((self.__class__.__name__, *self._fields()))

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._FIELDS)
        return f"{self.__class__.__name__}({inner})"


class Lit(_Record):
    """A param value passed to the node as is."""

    __slots__ = ("value",)
    _FIELDS = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class Ref(_Record):
    """Output ``index`` of the node whose cache key is ``key``."""

    __slots__ = ("held", "index", "key")
    _FIELDS = ("key", "index", "held")

    def __init__(self, key: str, index: int, held: Any = None) -> None:
        self.key = key
        self.index = index
        #: The executor reference of a cached output (None: produced earlier in the same batch).
        self.held = held


class Task(_Record):
    """One node to run: its id, key, spec, arguments, timeout and the run it belongs to."""

    __slots__ = ("args", "key", "node_id", "run_id", "spec", "timeout")
    _FIELDS = ("node_id", "key", "spec", "args", "timeout", "run_id")

    def __init__(self, node_id: str, key: str, spec: NodeSpec, args: dict[str, Lit | Ref],
                 timeout: float | None = None, run_id: str = "") -> None:
        self.node_id = node_id
        self.key = key
        self.spec = spec
        self.args = args
        self.timeout = timeout
        self.run_id = run_id


class CancelToken:
    """Set by ``Run.cancel()``; executors check it between nodes (and nodes between steps)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)


@dataclass(slots=True)
class BatchCallbacks:
    emit: Callable[[Event], None]
    on_result: Callable[[Task, tuple[Any, ...]], None]
    #: Keys whose held references became invalid (e.g. their worker died).
    on_lost: Callable[[Sequence[str]], None] = field(default=lambda keys: None)
    #: False when nobody listens to per-node detail: an executor may then skip NodeStarted,
    #: NodeProgress, step previews and NodeFinished without ``ui`` (NodeFailed, final previews
    #: and NodeFinished with ``ui`` are always emitted). Saves ~3 us a node on big graphs.
    detail: bool = True


class Executor(Protocol):
    name: str

    def execute(self, batch: Sequence[Task], callbacks: BatchCallbacks, cancel: CancelToken) -> None:
        """Run ``batch`` in order; returns when every task finished, failed or was skipped."""

    def fetch(self, ref: Any) -> Any:
        """The value behind one output reference, in this process."""

    def release(self, refs: Sequence[Any]) -> None:
        """The engine no longer needs these references."""

    def size_of(self, ref: Any) -> int:
        """Approximate bytes behind a reference, for the cache's size bound."""

    def close(self) -> None: ...
