"""Fault isolation with real worker processes: each failure mode fails exactly one node, says
what happened, keeps the other results, and leaves a pool that runs the next batch as is."""

from __future__ import annotations

import threading
import time

import pytest

from vortex_jupyter.engine.executor import CancelToken
from vortex_jupyter.workers.executor import WorkerExecutor

from . import nodes_lib as n
from .conftest import Recorder, ref, run, shm_names, task


def _independent_and_next_run_ok(ex, rec) -> None:
    """The independent node's result is kept, and a fresh batch works without user action."""
    assert "indep" in rec.finished()
    assert ex.fetch(rec.results["indep"][0]) == 42
    again = run(ex, [task("next", n.add, a=1, b=1)])
    assert ex.fetch(again.results["next"][0]) == 2


def test_a_node_that_raises_fails_with_the_workers_traceback(ex):
    rec = run(ex, [task("bad", n.raises, a=5), task("child", n.add, a=ref("bad"), b=1),
                   task("indep", n.const, value=42)])
    failed = rec.failed("bad")
    assert failed.code == "VE-500" and failed.error_type == "ValueError"
    assert "node 'bad' (raises) raised ValueError: bad value 5" in failed.message
    assert "nodes_lib.py" in failed.traceback and "in raises" in failed.traceback
    assert rec.failed("child").code == "VE-505" and "'bad' failed" in rec.failed("child").message
    _independent_and_next_run_ok(ex, rec)


@pytest.mark.parametrize("fn, args, code", [
    (n.saves_under, {"root": "/tmp", "name": "../etc/x.png"}, "VE-700"),
    (n.missing_checkpoint, {"name": "sd15.safetensors"}, "VE-800"),
])
def test_a_vortex_error_keeps_its_code_message_and_fix_as_inline(ex, fn, args, code):
    from vortex_jupyter.engine.inprocess import InProcessExecutor

    inline = Recorder()
    InProcessExecutor().execute([task("bad", fn, **args)], inline.callbacks, CancelToken())
    rec = run(ex, [task("bad", fn, **args), task("indep", n.const, value=42)])
    worker, local = rec.failed("bad"), inline.failed("bad")
    assert worker.code == local.code == code
    assert worker.message == local.message and worker.error_type == local.error_type
    assert "raised" not in worker.message and "[VE-" not in worker.message
    assert "fix: " in worker.message and fn.__name__ in (worker.traceback or "")
    _independent_and_next_run_ok(ex, rec)


def test_a_segfault_is_reported_as_a_crash_naming_the_signal_and_node(ex, pool):
    before = pool.worker(0)
    rec = run(ex, [task("indep", n.const, value=42), task("crash", n.segfault, a=1),
                   task("child", n.add, a=ref("crash"), b=1)])
    failed = rec.failed("crash")
    assert failed.code == "VE-502" and failed.error_type == "WorkerCrashedError"
    assert "worker crashed with SIGSEGV while running node 'crash' (segfault)" in failed.message
    assert "Segmentation fault" in (failed.traceback or "")  # faulthandler's dump from the log
    assert rec.failed("child").code == "VE-505"
    assert pool.worker(0).pid != before.pid
    _independent_and_next_run_ok(ex, rec)


def test_os_exit_is_reported_with_its_exit_code(ex):
    rec = run(ex, [task("indep", n.const, value=42), task("quit", n.exit3, a=1)])
    assert "worker exited with code 3 while running node 'quit'" in rec.failed("quit").message
    _independent_and_next_run_ok(ex, rec)


def test_a_node_past_its_timeout_is_interrupted_and_the_worker_survives(ex, pool):
    pid = pool.worker(0).pid
    t0 = time.monotonic()
    rec = run(ex, [task("slow", n.sleeps, timeout=0.3, seconds=30), task("indep", n.const, value=42)])
    assert time.monotonic() - t0 < 5
    failed = rec.failed("slow")
    assert failed.code == "VE-501" and "did not finish within 0.3 s and was stopped" in failed.message
    assert pool.worker(0).pid == pid  # a polite stop: no respawn needed
    _independent_and_next_run_ok(ex, rec)


def test_a_lone_node_that_stops_when_its_timeout_passes_keeps_its_worker(ex, pool):
    """The last (here: only) node of a batch: no next task moves the kernel's watch on, and the
    expired deadline once kept the batch loop from reading the worker's polite VE-501."""
    pid = pool.worker(0).pid
    rec = run(ex, [task("slow", n.sleeps, timeout=0.3, seconds=30)])
    failed = rec.failed("slow")
    assert failed.code == "VE-501" and "did not finish within 0.3 s and was stopped" in failed.message
    assert pool.worker(0).pid == pid
    again = run(ex, [task("quick", n.sleeps, timeout=0.3, seconds=0.05)])
    assert ex.fetch(again.results["quick"][0]) == 0.05


def test_a_timeout_counts_from_when_the_worker_starts_the_node_not_from_the_send(make_pool, tmp_path,
                                                                                  monkeypatch):
    """A fresh or respawned worker imports its late_preload before it takes a batch up; the
    run after a timeout (on the respawned worker) must not fail a quick node for that wait."""
    (tmp_path / "vx_slow_preload.py").write_text("import time\ntime.sleep(1.5)\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # inherited by spawned workers
    pool = make_pool(use_forkserver=False, late_preload=("vx_slow_preload",), kill_grace=0.5)
    ex = WorkerExecutor(pool)
    first = run(ex, [task("deaf", n.hangs_deaf, timeout=0.5, seconds=30)])
    assert first.failed("deaf").code == "VE-501"
    assert "did not stop when asked; its worker was killed" in first.failed("deaf").message
    pool.worker(0)  # the respawned worker is up ...
    time.sleep(0.3)  # ... and busy with its 1.5 s import when the next batch arrives
    again = run(ex, [task("quick", n.sleeps, timeout=0.5, seconds=0.2)])
    assert "quick" in again.finished(), again.events
    assert ex.fetch(again.results["quick"][0]) == 0.2


def test_a_run_cancelled_while_its_worker_still_imports_is_cancelled_without_a_kill(make_pool, tmp_path,
                                                                                      monkeypatch):
    (tmp_path / "vx_slow_preload2.py").write_text("import time\ntime.sleep(1.5)\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    pool = make_pool(use_forkserver=False, late_preload=("vx_slow_preload2",), kill_grace=10.0)
    ex = WorkerExecutor(pool)
    pid = pool.worker(0).pid
    time.sleep(0.3)  # the worker is inside its import
    cancel = CancelToken()
    threading.Timer(0.2, cancel.cancel).start()
    t0 = time.monotonic()
    rec = run(ex, [task("slow", n.sleeps, seconds=30), task("after", n.const, value=1)], cancel)
    assert time.monotonic() - t0 < 5  # not the 10 s grace, not the 30 s node
    assert rec.failed("slow").code == rec.failed("after").code == "VE-504"
    assert pool.worker(0).pid == pid  # the cancel was honoured, nobody was killed


def test_a_node_that_ignores_its_timeout_gets_its_worker_killed(make_pool):
    from vortex_jupyter.workers.executor import WorkerExecutor

    pool = make_pool(kill_grace=0.3)
    ex = WorkerExecutor(pool)
    pid = pool.worker(0).pid
    t0 = time.monotonic()
    rec = run(ex, [task("indep", n.const, value=42), task("deaf", n.hangs_deaf, timeout=0.3, seconds=60)])
    assert time.monotonic() - t0 < 5
    failed = rec.failed("deaf")
    assert failed.code == "VE-501"
    assert "did not finish within its timeout of 0.3 s" in failed.message
    assert pool.worker(0).pid != pid
    _independent_and_next_run_ok(ex, rec)


def test_run_wide_timeout_applies_when_the_node_has_none(ex):
    slow = task("slow", n.sleeps, seconds=30)
    slow = type(slow)(slow.node_id, slow.key, slow.spec, slow.args, timeout=0.2, run_id="r")
    rec = run(ex, [slow])
    assert rec.failed("slow").code == "VE-501"


def test_a_node_over_the_memory_limit_fails_with_out_of_memory(make_pool):
    from vortex_jupyter.workers.executor import WorkerExecutor

    pool = make_pool()
    base = pool.worker(0).hello.memory["rss"]
    pool.config.memory_limit = base + 200 * 2**20
    ex = WorkerExecutor(pool)
    rec = run(ex, [task("indep", n.const, value=42), task("hog", n.allocates, mib=2000)])
    failed = rec.failed("hog")
    assert failed.code == "VE-503" and failed.error_type == "NodeOutOfMemoryError"
    assert "node 'hog' (allocates) ran out of memory" in failed.message and "limit" in failed.message
    _independent_and_next_run_ok(ex, rec)


def test_fifty_megabytes_on_stdout_neither_hang_nor_break_the_protocol(ex, pool):
    t0 = time.monotonic()
    rec = run(ex, [task("chatty", n.prints, mib=50), task("indep", n.const, value=42)])
    assert time.monotonic() - t0 < 30
    assert ex.fetch(rec.results["chatty"][0]) == 50
    assert "the end" in pool.worker(0).log_tail()
    _independent_and_next_run_ok(ex, rec)


def test_cancel_stops_the_running_node_and_skips_the_rest(ex):
    cancel = CancelToken()
    rec_holder = {}

    def go():
        rec_holder["rec"] = run(ex, [task("long", n.steps, n=100), task("after", n.const, value=1)], cancel)

    import threading

    th = threading.Thread(target=go)
    th.start()
    time.sleep(0.5)
    cancel.cancel()
    th.join(10)
    assert not th.is_alive()
    rec = rec_holder["rec"]
    assert rec.failed("long").code == "VE-504" and rec.failed("after").code == "VE-504"
    again = run(ex, [task("next", n.add, a=1, b=1)])
    assert ex.fetch(again.results["next"][0]) == 2


def test_a_crash_loses_exactly_the_outputs_the_worker_held(ex, pool):
    first = run(ex, [task("big", n.arange, n=1000), task("small", n.const, value=7)])
    big, small = first.results["big"][0], first.results["small"][0]
    prefix = pool.worker(0).prefix
    rec = run(ex, [task("crash", n.segfault, a=1)])
    assert rec.lost == ["key-big"]
    assert ex.fetch(small) == 7  # inline values live in the kernel
    with pytest.raises(Exception, match="no longer running"):
        ex.fetch(big)
    assert shm_names(prefix) == []


def test_outputs_of_earlier_tasks_in_a_crashed_batch_are_recomputed_for_later_tasks(ex):
    rec = run(ex, [task("big", n.arange, n=10), task("crash", n.segfault, a=1),
                   task("sum", n.total, x=ref("big"))])
    # "big" may have been reported (then lost) or still in the worker's outbox (then re-run)
    assert set(rec.lost) <= {"key-big"}
    assert "crash" in rec.failed("crash").message
    assert ex.fetch(rec.results["sum"][0]) == 45.0
    assert ex.fetch(rec.results["big"][0])[9] == 9


def test_the_log_tail_keeps_the_fatal_signal_header_when_many_threads_are_dumped(tmp_path):
    # A real process with 40 threads segfaults: faulthandler's dump of every thread is far
    # longer than the default tail, and the header naming the signal must still lead it.
    import subprocess
    import sys

    from vortex_jupyter.workers.process import WorkerProcess

    log = tmp_path / "worker.log"
    code = (
        "import ctypes, faulthandler, sys, threading, time\n"
        "faulthandler.enable(file=sys.stderr, all_threads=True)\n"
        "ev = threading.Event()\n"
        "ts = [threading.Thread(target=ev.wait, daemon=True) for _ in range(40)]\n"
        "[t.start() for t in ts]\n"
        "print('x' * 5000, flush=True)\n"
        "ctypes.string_at(0)\n"
    )
    with open(log, "wb") as out:
        proc = subprocess.run([sys.executable, "-c", code], stdout=out, stderr=out, timeout=60)
    assert proc.returncode < 0
    assert log.stat().st_size > 3000
    tail = WorkerProcess(0, "t", "cpu", "p", str(log)).log_tail()
    assert tail.startswith("Fatal Python error: Segmentation fault")
    assert "Current thread" in tail and "string_at" in tail
    assert tail.index("Current thread") < tail.index("\nThread 0x")  # the crashing one first
