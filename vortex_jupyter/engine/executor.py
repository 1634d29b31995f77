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

The run loop builds its tasks "wired" (``Task.wired``): plain param values plus links to
source nodes, resolved through a ``Wiring`` the whole batch shares. ``Task.args`` builds the
``Lit``/``Ref`` form from them on first use, so every executor may read it as above; an
executor in this process may read ``params``/``links``/``wiring`` instead and skip the wrapping
(the in-process executor does: ~4 objects a node fewer on a cold run, ~2 us a node).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
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


class Wiring:
    """What the wired tasks of one batch share to resolve their links: ``keys`` (node id ->
    cache key, a snapshot taken when the batch was planned) and ``held`` (cache key -> the
    executor's references, one per output, of a cached result the batch reads, pinned by the
    run loop; a key that is not there is computed by a task of the batch)."""

    __slots__ = ("held", "keys")

    def __init__(self, keys: Mapping[str, str] | None = None,
                 held: Mapping[str, tuple[Any, ...]] | None = None) -> None:
        self.keys: Mapping[str, str] = keys if keys is not None else {}
        self.held: Mapping[str, tuple[Any, ...]] = held if held is not None else {}


class Task(_Record):
    """One node to run: its id, key, spec, arguments, timeout and the run it belongs to.

    Built with ``args`` (``Lit``/``Ref`` by input name), or ``wired`` by the run loop, where
    ``args`` is derived on first use from ``params``, ``links`` and ``wiring`` (see the module
    docstring). ``params`` and ``links`` are None on a task built with ``args``.
    """

    __slots__ = ("_args", "key", "links", "node_id", "params", "run_id", "spec", "timeout", "wiring")
    _FIELDS = ("node_id", "key", "spec", "args", "timeout", "run_id")

    def __init__(self, node_id: str, key: str, spec: NodeSpec, args: dict[str, Lit | Ref],
                 timeout: float | None = None, run_id: str = "") -> None:
        self.node_id = node_id
        self.key = key
        self.spec = spec
        self._args: dict[str, Lit | Ref] | None = args
        self.timeout = timeout
        self.run_id = run_id
        #: Plain param values by input name (shared with the engine's node record: read only).
        self.params: Mapping[str, Any] | None = None
        #: (input name, source node id, source output index), sorted by input name.
        self.links: tuple[tuple[str, str, int], ...] | None = None
        self.wiring: Wiring | None = None

    @classmethod
    def wired(cls, node_id: str, key: str, spec: NodeSpec, params: Mapping[str, Any],
              links: tuple[tuple[str, str, int], ...], wiring: Wiring, timeout: float | None,
              run_id: str) -> Task:
        """A task whose ``args`` are built only if an executor asks for them."""
        task = cls.__new__(cls)
        task.node_id = node_id
        task.key = key
        task.spec = spec
        task._args = None
        task.timeout = timeout
        task.run_id = run_id
        task.params = params
        task.links = links
        task.wiring = wiring
        return task

    @property
    def args(self) -> dict[str, Lit | Ref]:
        """Arguments by input name: params as ``Lit``, links as ``Ref`` (built once)."""
        args = self._args
        if args is None:
            assert self.params is not None and self.links is not None and self.wiring is not None
            args = {name: Lit(value) for name, value in self.params.items()}
            keys, held = self.wiring.keys, self.wiring.held
            for name, src, index in self.links:
                k = keys[src]
                refs = held.get(k)
                args[name] = Ref(k, index) if refs is None else Ref(k, index, refs[index])
            self._args = args
        return args


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
