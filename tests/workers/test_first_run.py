"""A first run in a worker is not slower than in the kernel: torch computes as fast after the
fork server's fork as in-process, and the slow imports (``late_preload``: diffusers and
transformers in the default config) happen while the worker is idle, and before the fork of
later workers, instead of inside the first nodes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from . import nodes_lib as n
from .conftest import run, task

torch = pytest.importorskip("torch")
ROOT = Path(__file__).resolve().parents[2]


def _best_in_worker(ex, reps: int, times: int) -> tuple[float, float]:
    """(first, best) node-measured seconds of the workload in the worker."""
    got = []
    for i in range(times):
        rec = run(ex, [task(f"w{i}", n.torch_workload, reps=reps)])
        assert f"w{i}" in rec.finished(), rec.events
        got.append(rec.results[f"w{i}"][0].value)
    return got[0], min(got)


def _in_a_fresh_interpreter(reps: int, times: int) -> tuple[float, float]:
    """(first, best) of the same workload in a new process: the in-process baseline, measured
    apart from this pytest process (whose own torch threads, once used, would compete)."""
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); from tests.workers import nodes_lib as n; "
            f"print(json.dumps([n.torch_workload({reps})[0] for _ in range({times})]))")
    out = subprocess.run([sys.executable, "-c", code, str(ROOT)], capture_output=True, text=True, timeout=120)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    return got[0], min(got)


def test_a_torch_workload_runs_as_fast_in_a_worker_as_in_process(make_pool):
    """Rounds of (fresh worker, fresh interpreter), best of each kept: on a shared 2-core
    machine one round can land in someone else's burst, eight rounds all in a row cannot
    (it returns at the first good round, so the extra rounds cost only on a bad day)."""
    from vortex_jupyter.workers.executor import WorkerExecutor

    firsts, bests, base_firsts, bases = [], [], [], []
    for _ in range(8):
        first, best = _best_in_worker(WorkerExecutor(make_pool(preload=("numpy", "torch"))), 10, 4)
        base_first, base = _in_a_fresh_interpreter(10, 4)
        firsts.append(first), bests.append(best), base_firsts.append(base_first), bases.append(base)
        # Generous bounds; the regression they guard was ~3x on every run.
        if min(bests) <= 1.6 * min(bases) + 0.02 and min(firsts) <= 2.0 * min(base_firsts) + 0.1:
            return
    raise AssertionError(f"a torch workload is slower in a worker: best {min(bests) * 1e3:.1f} ms vs "
                         f"{min(bases) * 1e3:.1f} ms in process; first run {min(firsts) * 1e3:.1f} ms vs "
                         f"{min(base_firsts) * 1e3:.1f} ms")


def test_the_worker_thread_pool_matches_a_fresh_interpreters(make_pool):
    """torch's intra-op threads after the fork server's fork: as many as a fresh interpreter
    gets (not this pytest process, whose count other tests may have pinned)."""
    import subprocess
    import sys

    from vortex_jupyter.workers.executor import WorkerExecutor

    fresh = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                           capture_output=True, text=True, check=True, timeout=120)
    ex = WorkerExecutor(make_pool(preload=("numpy", "torch")))
    rec = run(ex, [task("t", n.torch_threads)])
    assert rec.results["t"][0].value == int(fresh.stdout)


@pytest.fixture
def probe_module(tmp_path, monkeypatch):
    """A module recording which process imported it, importable by the fork server and workers."""
    (tmp_path / "vx_w2_probe.py").write_text("import os\nIMPORTED_BY = os.getpid()\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    return "vx_w2_probe"


def _probe(ex, name: str) -> tuple[bool, int | None, int]:
    rec = run(ex, [task("probe", n.modules_loaded, names=[name])])
    loaded, by, pid = ex.fetch(rec.results["probe"][0])[name]
    return loaded, by, pid


def test_late_preload_is_imported_by_an_idle_worker_and_inherited_by_respawned_ones(make_pool, probe_module):
    from vortex_jupyter.workers.executor import WorkerExecutor

    pool = make_pool(late_preload=(probe_module, "json:dumps"))
    ex = WorkerExecutor(pool)
    first = pool.worker(0)
    time.sleep(0.5)  # idle: it imports its late_preload now, not inside its first node
    loaded, by, pid = _probe(ex, probe_module)
    assert loaded and pid == first.pid
    server = pool.supervisor.launcher.proc.pid  # type: ignore[union-attr]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # the fork server imports it in the background after its first fork
        w = pool.worker(0)
        os.kill(w.pid, signal.SIGKILL)
        w.dead.wait(5)
        loaded, by, pid = _probe(ex, probe_module)
        if by == server:
            break
    assert loaded and by == server and pid != server, "respawned workers do not inherit the late preload"


def test_vortex_worker_threads_pins_the_workers_torch_threads(make_pool, monkeypatch):
    from vortex_jupyter.errors import VortexError
    from vortex_jupyter.workers.executor import WorkerExecutor
    from vortex_jupyter.workers.supervisor import PoolConfig

    monkeypatch.setenv("VORTEX_WORKER_THREADS", "1")
    ex = WorkerExecutor(make_pool(preload=("numpy", "torch")))
    rec = run(ex, [task("t", n.torch_threads)])
    assert rec.results["t"][0].value == 1
    monkeypatch.setenv("VORTEX_WORKER_THREADS", "two")
    with pytest.raises(VortexError, match="VORTEX_WORKER_THREADS = 'two' is not a thread count"):
        PoolConfig()
