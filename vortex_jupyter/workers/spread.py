"""Making a model copy on another worker: which tasks to run again, and running them silently.

The parallel scheduler (``parallel.py``) decides *when* a copy pays off and *where*; the
registry of copies and their lifetime is ``copies.py``. This module builds the copy's segment
(``plan``) and runs it (``make``): the producers of the models run again on the other worker
as an ordinary segment whose events nobody sees (the engine already had each node's one
report), and what they made is registered as copies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ..engine.events import Event, NodeFailed
from ..engine.executor import CancelToken, Ref, Task
from .batch import _Batch
from .pool import WorkerPool, WorkerRef

#: Input types of the nodes worth a model copy: a sampler's diffusion model. A copy made only
#: to encode a prompt or decode an image would cost more than it saves.
SPREAD_INPUTS = frozenset({"MODEL"})


def samples(tasks: Iterable[Task]) -> bool:
    """Whether one of ``tasks`` reads a diffusion model (``SPREAD_INPUTS``)."""
    return any(port.type in SPREAD_INPUTS and port.name in t.args for t in tasks for port in t.spec.inputs)


def plan(models: Sequence[WorkerRef], holds: Callable[[WorkerRef], bool], producer: Mapping[str, Task],
         done: Mapping[str, tuple[Any, ...]], recipe: Callable[[str], Task | None]) -> list[Task]:
    """The tasks that make ``models`` where ``holds`` says they are missing, with their own
    model inputs, recursively: finished tasks of this batch (``producer``, ``done``) or the
    recipes of cached models (``Copies.remember``); producers first. Empty when one of them has
    neither. Inputs the plan makes itself are read from the plan's own segment."""
    need: dict[str, Task] = {}
    stack = [r for r in models if not holds(r)]
    while stack:
        ref = stack.pop()
        if ref.key in need:
            continue
        task = producer.get(ref.key) if ref.key in done else recipe(ref.key)
        if task is None:
            return []
        need[ref.key] = task
        for arg in task.args.values():
            if arg.__class__ is not Ref:
                continue
            if arg.held is None and arg.key not in done:  # type: ignore[union-attr]
                return []
            up = arg.held if arg.held is not None else done[arg.key][arg.index]  # type: ignore[union-attr]
            if isinstance(up, WorkerRef) and not up.inline and not up.movable and not holds(up):
                stack.append(up)
    ordered: list[Task] = []
    seen: set[str] = set()

    def visit(task: Task) -> None:
        if task.key in seen:
            return
        seen.add(task.key)
        for arg in task.args.values():
            if arg.__class__ is Ref and arg.key in need:  # type: ignore[union-attr]
                visit(need[arg.key])  # type: ignore[union-attr]
        ordered.append(task)

    for task in list(need.values()):
        visit(task)
    return [Task(t.node_id, t.key, t.spec, {name: Ref(a.key, a.index) if a.__class__ is Ref and a.key in need  # type: ignore[union-attr]
                                            else a for name, a in t.args.items()}, t.timeout, t.run_id)
            for t in ordered]


def make(pool: WorkerPool, slot: int, tasks: list[Task], done: Mapping[str, tuple[Any, ...]],
         failed: Mapping[str, str], cancel: CancelToken, on_lost: Callable[[Sequence[str]], None]) -> bool:
    """Run ``tasks`` (a ``plan``) on ``slot`` silently and register what they made as copies.
    False when one failed: its error is not the run's (the chains that wanted the copy run
    where the original is), and what was made is released."""
    silent = _Silent(on_lost)
    batch = _Batch(pool, tasks, silent, cancel, slot)  # type: ignore[arg-type]
    batch.done.update(done)
    batch.failed.update(failed)
    batch.run()
    if silent.failed or len(silent.results) < len(tasks):
        pool.release([r for refs in silent.results.values() for r in refs])
        return False
    for key, refs in silent.results.items():
        held = next((r for r in refs if not r.inline), None)
        if held is None or not pool.holds(held):  # nothing to copy (all inline), or died already
            pool.release(refs)
            continue
        pool.copies.add(key, held.worker, refs)
    return True


class _Silent:
    """Callbacks of a copy's segment: the engine sees none of it (its node already reported),
    except deaths of other outputs (``on_lost``)."""

    detail = False

    def __init__(self, on_lost: Callable[[Sequence[str]], None]) -> None:
        self.on_lost = on_lost
        self.results: dict[str, tuple[Any, ...]] = {}
        self.failed = False

    def emit(self, event: Event) -> None:
        if isinstance(event, NodeFailed):
            self.failed = True

    def on_result(self, task: Task, refs: tuple[Any, ...]) -> None:
        self.results[task.key] = refs
