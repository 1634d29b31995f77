"""A seed grid on one model spread over two workers by loading the model on each
(``workers/copies.py``, ``parallel.py``): once per worker, silently, kept for the next run,
released with the original, never reported lost, and not at all where a copy cannot be made."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from vortex_jupyter.engine.events import NodeFailed, NodeFinished
from vortex_jupyter.engine.executor import Lit, Ref, Task
from vortex_jupyter.nodes.spec import NodeSpec, OutputSpec, PortSpec
from vortex_jupyter.workers.executor import WorkerExecutor
from vortex_jupyter.workers.pool import WorkerPool, WorkerRef
from vortex_jupyter.workers.supervisor import PoolConfig

from . import nodes_lib as n
from .conftest import FAST, Recorder, run
from .test_parallel import well_formed

LOADER = NodeSpec("logged_model", (), (OutputSpec("model", "MODEL"),), fn=n.logged_model)
SAMPLER = NodeSpec("samples_with", (PortSpec("m", "MODEL"), PortSpec("i", "INT"), PortSpec("seconds", "FLOAT")),
                   (OutputSpec("latent", "LATENT"),), fn=n.samples_with)


@pytest.fixture
def copying() -> Iterator[WorkerExecutor]:
    pool = WorkerPool(PoolConfig(**{**FAST, "devices": ["cpu", "cpu"], "model_copies": 2}))
    yield WorkerExecutor(pool)
    pool.close()


def grid(log: Path, seeds: range, *, held: WorkerRef | None = None, load: float = 0.3, step: float = 0.5,
         only_first: bool = False, run_id: str = "r1") -> list[Task]:
    tasks = [] if held is not None else [
        Task("m", "key-m", LOADER, {"seconds": Lit(load), "log": Lit(str(log)), "only_first": Lit(only_first)},
             run_id=run_id)]
    return tasks + [Task(f"s{i}", f"key-s{i}-{run_id}", SAMPLER,
                         {"m": Ref("key-m", 0, held), "i": Lit(i), "seconds": Lit(step)}, run_id=run_id)
                    for i in seeds]


def workers_of(rec: Recorder) -> dict[str, str]:
    return {e.node: e.worker for e in rec.events if isinstance(e, NodeFinished)}


def test_a_seed_grid_spreads_over_two_workers_by_loading_its_model_on_each(copying: WorkerExecutor,
                                                                          tmp_path: Path) -> None:
    log = tmp_path / "loads"
    t0 = time.perf_counter()
    first = run(copying, grid(log, range(4)))
    took = time.perf_counter() - t0
    where = workers_of(first)
    assert not [e for e in first.events if isinstance(e, NodeFailed)]
    assert len({where[f"s{i}"] for i in range(4)}) == 2  # the samplers ran on both workers
    well_formed(first, ["m", *(f"s{i}" for i in range(4))])  # the copy's load is not an event
    assert len(log.read_text().split()) == 2  # loaded once on each worker
    for i in range(4):  # each sampler read its own worker's model (samples_with asserts it) and gave its seed
        assert np.array_equal(copying.fetch(first.results[f"s{i}"][0]), np.full(64, float(i)))
    # one worker: 0.3 s load + 4 x 0.5 s; two: 0.3 + 0.3 (the copy) + 2 x 0.5
    assert took < 2.1, took

    model = first.results["m"][0]
    assert copying.pool.copies.count("key-m") == 1
    t0 = time.perf_counter()
    second = run(copying, grid(log, range(4, 8), held=model, run_id="r2"))
    took = time.perf_counter() - t0
    assert len({workers_of(second)[f"s{i}"] for i in range(4, 8)}) == 2
    assert len(log.read_text().split()) == 2  # the copy was kept: no load this time
    assert took < 1.6, took  # 2 x 0.5 s on each worker

    copy_uid = next(uid for uid in set(workers_of(second).values()) if uid != model.worker)
    assert (copy_uid, "key-m") in copying.pool._keys  # the copy is held on the other worker
    copying.release([model])  # the engine lets the model go: so does its copy
    assert copying.pool.copies.count("key-m") == 0
    assert "key-m" not in {k for _, k in copying.pool._keys}, copying.pool._keys


def test_a_copy_dies_with_its_worker_unreported_and_the_original_serves_on(copying: WorkerExecutor,
                                                                           tmp_path: Path) -> None:
    log = tmp_path / "loads"
    first = run(copying, grid(log, range(4), step=0.2))
    model = first.results["m"][0]
    copy_worker = next(w for w in copying.pool.supervisor.workers.values() if w.uid != model.worker)
    os.kill(copy_worker.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    lost: list[str] = []
    while copying.pool.copies.count("key-m") and time.monotonic() < deadline:
        lost += copying.drain_lost()
        time.sleep(0.02)
    assert copying.pool.copies.count("key-m") == 0
    assert "key-m" not in lost  # the engine's model is alive on its own worker
    again = run(copying, grid(log, range(4, 8), held=model, step=0.2, run_id="r2"))
    assert again.finished() == {f"s{i}" for i in range(4, 8)}
    assert len(log.read_text().split()) == 3  # the new worker loaded it again


def test_when_the_copy_cannot_load_the_grid_runs_where_the_model_is(copying: WorkerExecutor, tmp_path: Path) -> None:
    log = tmp_path / "loads"
    rec = run(copying, grid(log, range(4), step=0.1, only_first=True))
    assert not [e for e in rec.events if isinstance(e, NodeFailed)]  # the failed copy is not the run's error
    where = workers_of(rec)
    assert {where[f"s{i}"] for i in range(4)} == {where["m"]}
    assert copying.pool.copies.count("key-m") == 0 and len(log.read_text().split()) == 1


def test_one_device_copies_nothing_by_default(tmp_path: Path) -> None:
    pool = WorkerPool(PoolConfig(**{**FAST, "devices": ["cpu", "cpu"]}))
    try:
        assert pool.copies.limit == 1
        rec = run(WorkerExecutor(pool), grid(tmp_path / "loads", range(4), step=0.05))
        where = workers_of(rec)
        assert {where[f"s{i}"] for i in range(4)} == {where["m"]}
        assert len((tmp_path / "loads").read_text().split()) == 1
    finally:
        pool.close()
    for devices, setting, limit in ((["cuda:0", "cuda:1", "cuda:0"], 0, 2), (["cuda:0", "cuda:0"], 0, 1),
                                    (["cpu", "cpu"], 2, 2)):
        # one copy per device by default, VORTEX_MODEL_COPIES (model_copies) over it; nothing is started
        several = WorkerPool(PoolConfig(**{**FAST, "devices": devices, "model_copies": setting, "warm_start": False}))
        try:
            assert several.copies.limit == limit, (devices, setting)
        finally:
            several.close()


def test_a_grid_after_one_image_copies_the_cached_model_from_its_recipe(copying: WorkerExecutor,
                                                                        tmp_path: Path) -> None:
    """One image first (nothing to spread: no copy), then a grid on the cached model: the
    loader is not in that batch, so its copy runs from the recipe kept with the model."""
    log = tmp_path / "loads"
    single = run(copying, grid(log, range(1), step=0.05))
    assert copying.pool.copies.count("key-m") == 0 and len(log.read_text().split()) == 1
    model = single.results["m"][0]
    rec = run(copying, grid(log, range(1, 5), held=model, step=0.3, run_id="r2"))
    assert len({workers_of(rec)[f"s{i}"] for i in range(1, 5)}) == 2
    assert len(log.read_text().split()) == 2 and copying.pool.copies.count("key-m") == 1
    well_formed(rec, [f"s{i}" for i in range(1, 5)])
    assert "m" not in workers_of(rec)


def test_vortex_model_copies_is_read_and_a_bad_value_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    from vortex_jupyter.workers.copies import default_model_copies

    monkeypatch.setenv("VORTEX_MODEL_COPIES", "2")
    assert PoolConfig(**FAST).model_copies == 2
    monkeypatch.setenv("VORTEX_MODEL_COPIES", "two")
    with pytest.raises(Exception, match="VORTEX_MODEL_COPIES = 'two' is not a count"):
        default_model_copies()
