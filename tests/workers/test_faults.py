"""Fault isolation with real worker processes: each failure mode fails exactly one node, says
what happened, keeps the other results, and leaves a pool that runs the next batch as is."""

from __future__ import annotations

import time

import pytest

from vortex_jupyter.engine.executor import CancelToken

from . import nodes_lib as n
from .conftest import ref, run, shm_names, task


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


def test_a_node_that_ignores_its_timeout_gets_its_worker_killed(make_pool):
    from vortex_jupyter.workers.pool import WorkerExecutor

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
    from vortex_jupyter.workers.pool import WorkerExecutor

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
