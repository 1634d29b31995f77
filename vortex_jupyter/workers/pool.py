"""The worker pool: what lives in which worker (the engine's executor over it is ``executor.py``).

Responsibilities:
- ``WorkerPool`` wraps a ``Supervisor`` and keeps the kernel's bookkeeping of what lives in
  which worker: ``WorkerRef``s (one per output the engine holds), which node specs each worker
  has been sent, and the kernel's views of worker memory.
- A ``WorkerRef`` of a small output carries the value inline (it survives its worker); any
  other ref names ``(worker uid, key, index)`` and is fetched on access: tensors come back
  as zero-copy views of the worker's arena, objects that cannot leave the worker (models) as
  ``WorkerObject`` placeholders.
- A worker's copy of an output is released (``Release``) only when the engine released
  every ref of that key AND no fetched view of it is alive in the kernel, so a view never
  points at recycled memory.
- When a worker dies, the refs it held become invalid; their keys are recorded when the
  death is seen (monitor thread, a batch, or ``drain_lost``'s own liveness check) and handed
  out once: by ``WorkerExecutor.drain_lost()`` (the engine calls it before planning, so the
  next run recomputes exactly those outputs) or, for a death during a batch or between
  planning and the batch, by the batch's ``on_lost`` callback.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import cloudpickle
import msgpack

from ..engine.executor import Task
from ..errors import WorkerCrashedError
from ..nodes.spec import NodeSpec
from . import protocol as p
from .arbiter import env_budgets
from .codefiles import code_files
from .copies import Copies
from .process import WorkerProcess, process_running
from .shm import Attachments
from .supervisor import PoolConfig, Supervisor
from .tensors import TensorHandle, to_torch, wrap


@dataclass(frozen=True)
class WorkerObject:
    """An output that cannot leave its worker (a model, a tokenizer...): what it is, not it.

    ``type`` is the real type's ``module.qualname``. ``worker_object`` makes instances of a
    subclass *named* like the real type (e.g. ``ModelHandle``), so whatever shows
    ``type(value).__name__`` (the CLI's timings table, a notebook's repr) names the model,
    not "WorkerObject"; ``isinstance(value, WorkerObject)`` still holds."""

    type: str
    repr: str
    nbytes: int

    def __repr__(self) -> str:
        return f"<{self.type} in a vortex worker: {self.repr}>"

    def __reduce__(self) -> tuple[Any, ...]:  # the named subclasses are not importable by name
        return worker_object, (self.type, self.repr, self.nbytes)


_NAMED: dict[str, type[WorkerObject]] = {}


def worker_object(type_name: str, text: str, nbytes: int) -> WorkerObject:
    """A ``WorkerObject`` whose class is named after ``type_name``'s last part."""
    cls = _NAMED.get(type_name)
    if cls is None:
        short = type_name.rpartition(".")[2]
        short = short if short.isidentifier() else "WorkerObject"
        cls = type(short, (WorkerObject,), {"__module__": __name__, "__qualname__": short,
                                            "__doc__": f"A {type_name} that lives in a vortex worker."})
        if len(_NAMED) < 1024:  # type names come from node code: keep the memo bounded
            _NAMED[type_name] = cls
    return cls(type_name, text, nbytes)


@dataclass(eq=False, slots=True)
class WorkerRef:
    """The engine's reference to output ``index`` of task ``key``."""

    worker: str
    key: str
    index: int
    inline: bool
    value: Any = None
    type_name: str = ""
    nbytes: int = 0
    node: str = ""
    #: another worker can take it by arena handle (arrays, tensors, lists/dicts of them); a
    #: model cannot leave the worker that made it
    movable: bool = False

    def __repr__(self) -> str:
        where = "inline" if self.inline else f"worker {self.worker}"
        return f"<WorkerRef {self.node or self.key[:8]}[{self.index}] {self.type_name} {where}>"


@dataclass
class _KeyState:
    refs: int = 0
    views: int = 0


@dataclass
class WorkerPool:
    config: PoolConfig = field(default_factory=PoolConfig)

    def __post_init__(self) -> None:
        env_budgets()  # a bad VORTEX_RAM_BUDGET is one error now, not a failure in every node
        self.attachments = Attachments()
        self.supervisor = Supervisor(self.config, self.attachments.adopt)
        self.lost: dict[str, str] = {}  # key -> why (deaths nobody has reported to the engine yet)
        self._keys: dict[tuple[str, str], _KeyState] = {}
        self._lock = threading.Lock()
        self._batch_ids = iter(range(1, 2**62))
        self._slot_locks = [threading.Lock() for _ in self.config.devices]
        #: inputs that crossed from one worker to another (by arena handle, or copied to or from
        #: a sandboxed worker): what the parallel scheduler's locality keeps low
        self.moves = 0
        #: models run again on other workers so their samplers can spread (``copies.py``)
        self.copies = Copies(self.config.model_copies or len(set(self.config.devices)))
        self._pack_locks: dict[int, threading.Lock] = {}
        self.supervisor.death_listeners.append(self._on_death)

    # -- workers ------------------------------------------------------------------------------
    def worker(self, slot: int = 0) -> WorkerProcess:
        return self.supervisor.worker(slot)

    def acquire_slot(self, tasks: Sequence[Task]) -> int:
        """A worker slot for a batch: the one holding most of its cached inputs if free, else
        any free one, else wait for the preferred one."""
        owners: dict[str, int] = {}
        for t in tasks:
            for arg in t.args.values():
                held = getattr(arg, "held", None)
                if isinstance(held, WorkerRef) and not held.inline:
                    owners[held.worker] = owners.get(held.worker, 0) + 1
        slots = range(len(self.config.devices))
        by_uid = {w.uid: s for s, w in self.supervisor.workers.items()}
        ranked = sorted(slots, key=lambda s: -max((c for u, c in owners.items() if by_uid.get(u) == s), default=0))
        for slot in ranked:
            if self._slot_locks[slot].acquire(blocking=False):
                return slot
        self._slot_locks[ranked[0]].acquire()
        return ranked[0]

    def general_slots(self) -> list[int]:
        """The slots of the general (not node pack) workers: one per ``config.devices`` entry."""
        return list(range(len(self.config.devices)))

    def slot_taken(self, slot: int) -> bool:
        """Whether a batch runs on ``slot`` now (a hint: it may change at once)."""
        return self._slot_locks[slot].locked()

    def try_slot(self, slot: int) -> bool:
        """Take ``slot`` for one segment if no other batch has it."""
        return self._slot_locks[slot].acquire(blocking=False)

    def release_slot(self, slot: int) -> None:
        self._slot_locks[slot].release()

    def pack_slot(self, pack: str) -> int:
        """The slot of node pack ``pack``'s worker (``Supervisor.pack_slot``; raises ``PackError``)."""
        return self.supervisor.pack_slot(pack)

    @contextlib.contextmanager
    def holding(self, slot: int) -> Iterator[None]:
        """Hold a pack worker's slot for one segment (concurrent runs take turns)."""
        with self._pack_locks.setdefault(slot, threading.Lock()):
            yield

    def next_batch_id(self) -> int:
        return next(self._batch_ids)

    def define(self, w: WorkerProcess, specs: Sequence[NodeSpec]) -> dict[str, str]:
        """Ship the specs ``w`` lacks (cloudpickle, kernel -> worker only); spec id per type.

        Returns ``{spec_id: error}`` for specs that cannot be pickled."""
        fresh: list[list[Any]] = []
        errors: dict[str, str] = {}
        unique = {id(s): s for s in specs}.values()
        for spec in unique:
            sid = spec_id(spec)
            if sid in w.defined or any(sid == f[0] for f in fresh):
                continue
            try:
                fresh.append([sid, cloudpickle.dumps(spec), code_files(spec.fn)])
            except Exception as exc:
                errors[sid] = f"{type(exc).__name__}: {exc}"
        if fresh and w.send(p.DefineNodes(fresh, [] if w.pack else kernel_path())):
            w.defined.update(f[0] for f in fresh)
        return errors

    def _on_death(self, w: WorkerProcess) -> None:
        gone: list[str] = []
        with self._lock:
            for (uid, key) in [k for k in self._keys if k[0] == w.uid]:
                state = self._keys.pop((uid, key))
                if state.refs > self.copies.held(uid, key):  # a copy alone is not the engine's loss
                    self.lost[key] = f"worker {uid} {w.death or 'died'}"
                    gone.append(key)
        self.copies.drop_worker(w.uid)
        for key in gone:  # an original died: its copies go with it
            self.release(self.copies.pop_key(key))
        self.attachments.forget([n for n in list(self.attachments._segments) if n.startswith("/" + w.prefix)])

    def take_lost(self) -> list[str]:
        with self._lock:
            keys = list(self.lost)
            self.lost.clear()
        return keys

    def drain_lost(self) -> list[str]:
        """Keys of the outputs that lived in workers which died since the last call.

        Checks liveness now (EOF on the socket, the fork server's exit report) instead of
        trusting the monitor thread to have noticed already: a worker killed a moment ago
        is buried here, and what it held is in the answer."""
        for w in list(self.supervisor.workers.values()):
            if w.alive:
                w.poll()  # reads the EOF of a dead worker (no-op while a batch reads its socket)
                # its process is gone but the EOF not read yet (the monitor held the socket a
                # moment): read again, briefly, rather than report a dead worker's outputs alive
                deadline = time.monotonic() + 1.0
                while w.alive and w.pid and not process_running(w.pid) and time.monotonic() < deadline:
                    time.sleep(0.002)
                    w.poll()
            if not w.alive and not w.buried:
                self.supervisor.bury(w)  # -> _on_death records its keys; starts the replacement
        return self.take_lost()

    # -- refs -----------------------------------------------------------------------------------
    def make_refs(self, w: WorkerProcess, key: str, node: str, summaries: list[Any]) -> tuple[WorkerRef, ...]:
        if len(summaries) == 1 and type(summaries[0]) is list and len(summaries[0]) == 2 and summaries[0][0] == "v":
            value = summaries[0][1]  # the common case: one small output, nothing to track
            return (WorkerRef(w.uid, key, 0, True, value, type(value).__name__, 0, node),)
        refs = []
        for index, item in enumerate(summaries):
            if isinstance(item, list) and len(item) == 2 and item[0] == "v":
                refs.append(WorkerRef(w.uid, key, index, True, item[1], type(item[1]).__name__, 0, node))
            elif isinstance(item, list) and len(item) in (3, 4) and item[0] == "h":
                refs.append(WorkerRef(w.uid, key, index, False, None, str(item[1]), int(item[2]), node,
                                      len(item) == 4 and item[3] is True))
            else:
                raise p.ProtocolError(f"malformed output summary from worker {w.uid}: {str(item)[:80]}")
        held = sum(1 for r in refs if not r.inline)
        if held:  # all-inline outputs: the worker drops them itself after the batch
            with self._lock:
                state = self._keys.setdefault((w.uid, key), _KeyState())
                state.refs += held
        return tuple(refs)

    def release(self, refs: Sequence[Any]) -> None:
        for ref in refs:
            if isinstance(ref, WorkerRef) and not ref.inline:
                with self._lock:
                    state = self._keys.get((ref.worker, ref.key))
                    if state is None:
                        continue
                    state.refs -= 1
                self._maybe_release(ref.worker, ref.key)

    def _maybe_release(self, uid: str, key: str) -> None:
        with self._lock:
            state = self._keys.get((uid, key))
            if state is None or state.refs > 0 or state.views > 0:
                return
            del self._keys[(uid, key)]
        w = self._live(uid)
        if w is not None:
            w.send(p.Release([key]))
        if not self.copies.is_copy(uid, key):  # the original is gone: so are its copies
            self.release(self.copies.pop_key(key))

    def _live(self, uid: str) -> WorkerProcess | None:
        for w in self.supervisor.workers.values():
            if w.uid == uid and w.alive:
                return w
        return None

    def holds(self, ref: WorkerRef) -> bool:
        return ref.inline or (self._live(ref.worker) is not None and (ref.worker, ref.key) in self._keys)

    # -- fetch ----------------------------------------------------------------------------------
    def fetch(self, ref: WorkerRef, timeout: float = 120.0) -> Any:
        if ref.inline:
            return ref.value
        w = self._live(ref.worker)
        if w is not None and (ref.worker, ref.key) not in self._keys:
            raise WorkerCrashedError(f"output {ref.index} of node {ref.node!r} was released (the engine's "
                                     "cache evicted it)", node=ref.node, hint="run the graph again")
        if w is None:
            raise WorkerCrashedError(
                f"output {ref.index} of node {ref.node!r} is gone: it lived in worker {ref.worker}, which "
                "is no longer running", node=ref.node, hint="run the graph again to recompute it")
        reply = w.request(lambda req: p.Fetch(req, ref.key, ref.index), timeout)
        assert isinstance(reply, p.Fetched)
        if reply.error is not None:
            raise WorkerCrashedError(f"fetching output {ref.index} of node {ref.node!r} failed: {reply.error}",
                                     node=ref.node, hint="run the graph again to recompute it")
        return self._unwrap(reply.value, ref, 0)

    def _unwrap(self, tree: Any, ref: WorkerRef, depth: int) -> Any:
        if isinstance(tree, msgpack.ExtType):
            if tree.code == p.EXT_TENSOR:
                handle = TensorHandle.from_ext(tree.data)
                with self._lock:
                    self._keys[(ref.worker, ref.key)].views += 1
                view = wrap(handle, self.attachments, lambda: self._view_dead(ref.worker, ref.key))
                return to_torch(view, handle) if handle.kind == "torch" else view
            try:
                type_name, text, nbytes = msgpack.unpackb(tree.data)
                return worker_object(str(type_name), str(text), int(nbytes))
            except Exception as exc:
                raise p.ProtocolError(f"malformed object description: {exc}") from None
        if depth > 32:
            raise p.ProtocolError("fetched value nests deeper than 32 levels")
        if isinstance(tree, list):
            return [self._unwrap(v, ref, depth + 1) for v in tree]
        if isinstance(tree, dict):
            return {k: self._unwrap(v, ref, depth + 1) for k, v in tree.items()}
        return tree

    def _view_dead(self, uid: str, key: str) -> None:
        with self._lock:
            state = self._keys.get((uid, key))
            if state is None:
                return
            state.views -= 1
        self._maybe_release(uid, key)

    def close(self) -> None:
        self.supervisor.close()


def kernel_path() -> list[str]:
    """The kernel's ``sys.path`` for the workers (``""``, the current directory, made absolute):
    a node module next to the kernel's script imports there too, whatever the worker's cwd."""
    return [os.path.abspath(entry) if entry in ("", ".") else entry for entry in sys.path if isinstance(entry, str)]


_SPEC_IDS: dict[int, tuple[NodeSpec, str]] = {}


def spec_id(spec: NodeSpec) -> str:
    """Identifies a spec (and the exact function object) across redefinitions in a notebook."""
    hit = _SPEC_IDS.get(id(spec))
    if hit is not None and hit[0] is spec:
        return hit[1]
    sid = f"{spec.type}@{spec.version}#{id(spec.fn):x}"
    if len(_SPEC_IDS) > 10_000:  # notebooks redefine nodes; keep the memo bounded
        _SPEC_IDS.clear()
    _SPEC_IDS[id(spec)] = (spec, sid)
    return sid
