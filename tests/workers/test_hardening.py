"""Faults that once cost more than one node, each with real worker processes (issue 10).

Every test here failed on the code before the fix: an idle worker's death blamed the next
run's first node; a node that broke the worker's socket got every node of its batch blamed;
what nodes started outlived their worker and the kernel; an OOM kill was "crashed with
SIGKILL"; a bare MemoryError said "ran out of memory: " and nothing else.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from vortex_jupyter.workers import procs
from vortex_jupyter.workers.executor import WorkerExecutor

from . import nodes_lib as n
from .conftest import ref, run, task


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[0] not in (b"Z", b"X")
    except OSError:
        return False


def _gone_within(pids: list[int], seconds: float) -> list[int]:
    """The pids still running after ``seconds`` (polling)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        left = [p for p in pids if _alive(p)]
        if not left:
            return []
        time.sleep(0.05)
    return [p for p in pids if _alive(p)]


def _ok(ex: WorkerExecutor, rec, nodes: dict[str, object]) -> None:
    """These nodes finished with these values."""
    for node, value in nodes.items():
        assert node in rec.finished(), f"{node} did not finish: {rec.events}"
        assert ex.fetch(rec.results[node][0]) == value


def _failed_only(rec, node: str) -> None:
    failed = {e.node for e in rec.events if type(e).__name__ == "NodeFailed"}
    assert failed == {node}, f"failed: {failed}, expected only {node}: {rec.events}"


# -- 1. a worker that died while idle ------------------------------------------------------------
def test_a_worker_killed_while_idle_costs_the_next_run_nothing_20_of_20(ex, pool):
    for round_ in range(20):
        w = pool.worker(0)
        os.kill(w.pid, signal.SIGKILL)  # the OOM killer, between runs
        rec = run(ex, [task("a", n.const, value=round_), task("b", n.add, a=ref("a"), b=1),
                       task("c", n.const, value=7)])
        assert not [e for e in rec.events if type(e).__name__ == "NodeFailed"], (round_, rec.events)
        _ok(ex, rec, {"a": round_, "b": round_ + 1, "c": 7})


def test_a_worker_that_dies_on_arrival_every_time_fails_the_batch_saying_so(make_pool, monkeypatch):
    pool = make_pool()
    ex = WorkerExecutor(pool)
    real = pool.supervisor.worker

    def doomed(slot: int = 0):
        w = real(slot)
        os.kill(w.pid, signal.SIGKILL)
        w.exited.wait(5)
        return w
    monkeypatch.setattr(pool.supervisor, "worker", doomed)
    rec = run(ex, [task("a", n.const, value=1)])
    failed = rec.failed("a")
    assert failed.code == "VE-502" and "before it started, three times in a row" in failed.message
    monkeypatch.undo()
    again = run(ex, [task("a", n.const, value=1)])
    _ok(ex, again, {"a": 1})


# -- 2. blame --------------------------------------------------------------------------------------
def test_a_node_that_closes_fds_0_to_10_is_the_only_one_blamed_and_a_rerun_repeats_that(ex, pool):
    tasks = lambda: [task("i1", n.const, value=1), task("closer", n.closes_fds, a=5),  # noqa: E731
                     task("i2", n.const, value=2), task("child", n.add, a=ref("i1"), b=10),
                     task("after", n.add, a=ref("closer"), b=1)]
    for _ in range(2):
        rec = run(ex, tasks())
        failed = rec.failed("closer")
        assert failed.code == "VE-502"
        assert "node 'closer' (closes_fds) closed or replaced its worker's connection" in failed.message
        assert rec.failed("after").code == "VE-505"  # its input failed: not blamed for the crash
        assert {e.node for e in rec.events if type(e).__name__ == "NodeFailed"} == {"closer", "after"}
        _ok(ex, rec, {"i1": 1, "i2": 2, "child": 11})
    _ok(ex, run(ex, [task("next", n.add, a=1, b=1)]), {"next": 2})


def test_garbage_on_the_worker_socket_is_blamed_on_the_node_that_wrote_it(ex):
    quick = {f"q{i}": i for i in range(8)}
    rec = run(ex, [task("w0", n.const, value=0), task("writer", n.writes_socket, a=1),
                   *[task(k, n.const, value=v) for k, v in quick.items()]])
    _failed_only(rec, "writer")
    failed = rec.failed("writer")
    assert failed.code == "VE-502" and "for the second time" in failed.message
    assert "malformed message" in failed.message
    _ok(ex, rec, {"w0": 0, **quick})


def test_a_node_that_execs_a_sleeper_is_failed_alone_after_running_alone(ex):
    rec = run(ex, [task("a", n.const, value=1), task("exec", n.execs_sleeper, seconds=30),
                   task("b", n.const, value=2)])
    _failed_only(rec, "exec")
    assert "for the second time" in rec.failed("exec").message
    _ok(ex, rec, {"a": 1, "b": 2})


def test_a_node_that_execs_the_worker_command_again_is_blamed(ex):
    rec = run(ex, [task("a", n.const, value=1), task("exec", n.execs_itself, a=1), task("b", n.const, value=2)])
    _failed_only(rec, "exec")
    assert rec.failed("exec").code == "VE-502"
    _ok(ex, rec, {"a": 1, "b": 2})


def test_a_fork_whose_child_returns_from_the_node_reports_once(ex, pool):
    pid = pool.worker(0).pid
    rec = run(ex, [task("fork", n.forks_child_returns, a=4), task("b", n.const, value=2)])
    _ok(ex, rec, {"fork": 8, "b": 2})
    assert pool.worker(0).pid == pid  # the child left silently; the worker is fine
    _ok(ex, run(ex, [task("next", n.add, a=1, b=1)]), {"next": 2})


def test_a_node_that_forks_and_exits_is_blamed_for_the_exit_and_its_child_stays_silent(ex):
    rec = run(ex, [task("a", n.const, value=1), task("forker", n.forks_and_exits, a=1),
                   task("b", n.const, value=2)])
    _failed_only(rec, "forker")
    assert "worker exited with code 0 while running node 'forker'" in rec.failed("forker").message
    _ok(ex, rec, {"a": 1, "b": 2})


def test_a_node_that_ignores_sigterm_is_killed_at_its_timeout_and_only_it_fails(make_pool):
    pool = make_pool(kill_grace=0.3)
    ex = WorkerExecutor(pool)
    rec = run(ex, [task("a", n.const, value=1), task("deaf", n.ignores_sigterm, timeout=0.3, seconds=60),
                   task("b", n.const, value=2)])
    _failed_only(rec, "deaf")
    assert rec.failed("deaf").code == "VE-501"
    _ok(ex, rec, {"a": 1, "b": 2})


def test_a_worker_killed_from_outside_mid_node_blames_exactly_the_running_node(ex, pool):
    import threading

    w = pool.worker(0)
    killer = threading.Timer(0.5, lambda: os.kill(w.pid, signal.SIGKILL))
    killer.start()
    rec = run(ex, [task("a", n.const, value=1), task("slow", n.slow_add, a=1, b=2, seconds=3),
                   task("b", n.const, value=2)])
    killer.join()
    _failed_only(rec, "slow")
    assert "crashed with SIGKILL while running node 'slow'" in rec.failed("slow").message
    _ok(ex, rec, {"a": 1, "b": 2})


# -- 3. orphans ------------------------------------------------------------------------------------
@pytest.mark.parametrize("forkserver", [True, False], ids=["forkserver", "spawned"])
def test_what_a_node_started_dies_with_its_worker(make_pool, forkserver):
    pool = make_pool(use_forkserver=forkserver)
    ex = WorkerExecutor(pool)
    rec = run(ex, [task("spawn", n.starts_sleeps, seconds=137)])
    pids = ex.fetch(rec.results["spawn"][0])
    assert all(_alive(p) for p in pids)
    crash = run(ex, [task("crash", n.segfault, a=1)])
    assert crash.failed("crash").code == "VE-502"
    left = _gone_within(pids, 5)
    assert left == [], f"still running after their worker died: {left}"


def test_a_worker_death_spares_what_another_pools_worker_started(make_pool):
    """Workers of two pools (two kernels, or two owners) have the same slot names; the marker
    that finds a dead worker's processes must not match the other pool's."""
    a, b = make_pool(), make_pool()
    ex_a, ex_b = WorkerExecutor(a), WorkerExecutor(b)
    assert a.worker(0).uid == b.worker(0).uid  # "0g0" in both
    kept = ex_b.fetch(run(ex_b, [task("spawn", n.starts_sleeps, seconds=137)]).results["spawn"][0])
    assert run(ex_a, [task("crash", n.segfault, a=1)]).failed("crash").code == "VE-502"
    time.sleep(1.0)
    assert all(_alive(p) for p in kept), [p for p in kept if not _alive(p)]
    os.kill(b.worker(0).pid, signal.SIGKILL)  # now b's worker dies: its processes go with it
    assert _gone_within(kept, 5) == []


KERNEL = textwrap.dedent("""
    import sys, time, cloudpickle
    sys.path.insert(0, {tests!r})
    from workers import nodes_lib
    cloudpickle.register_pickle_by_value(nodes_lib)
    from workers.conftest import FAST, run, task
    from vortex_jupyter.workers.pool import WorkerPool
    from vortex_jupyter.workers.executor import WorkerExecutor
    from vortex_jupyter.workers.supervisor import PoolConfig
    pool = WorkerPool(PoolConfig(**FAST, use_forkserver={forkserver}))
    ex = WorkerExecutor(pool)
    rec = run(ex, [task("spawn", nodes_lib.starts_sleeps, seconds=137)])
    launcher = getattr(pool.supervisor.launcher, "proc", None)
    print(*ex.fetch(rec.results["spawn"][0]), pool.worker(0).pid, *([launcher.pid] if launcher else []), flush=True)
    time.sleep(600)
""")


@pytest.mark.parametrize("forkserver", [True, False], ids=["forkserver", "spawned"])
def test_nothing_a_node_started_survives_a_sigkilled_kernel(forkserver):
    tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = KERNEL.format(tests=tests, forkserver=forkserver)
    kernel = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                              text=True, start_new_session=True)
    try:
        line = kernel.stdout.readline()  # type: ignore[union-attr]
        pids = [int(x) for x in line.split()]
        assert len(pids) == (5 if forkserver else 4) and all(_alive(p) for p in pids), line
        kernel.send_signal(signal.SIGKILL)
        kernel.wait(10)
        left = _gone_within(pids, 10)
        assert left == [], f"still running 10 s after the kernel was SIGKILLed: {left}"
    finally:
        kernel.kill()
        kernel.wait()


# -- 6. honest memory errors -----------------------------------------------------------------------
def test_a_bare_memory_error_says_what_happened(ex):
    rec = run(ex, [task("mem", n.bare_memory_error, a=1), task("indep", n.const, value=3)])
    failed = rec.failed("mem")
    assert failed.code == "VE-503"
    reason = failed.message.split("ran out of memory:", 1)[1].strip()
    assert reason.startswith("an allocation failed (the worker held") and "MiB" in reason
    _ok(ex, rec, {"indep": 3})


def test_touching_30_gib_is_out_of_memory_naming_the_node_not_a_crash(make_pool):
    """With the default limit (90% of this machine's memory) the monitor stops the node; had
    the system's OOM killer come first, its evidence makes it VE-503 all the same."""
    pool = make_pool(memory_limit=procs.physical_memory() * 9 // 10)
    ex = WorkerExecutor(pool)
    rec = run(ex, [task("indep", n.const, value=42), task("hog", n.touches, gib=30)])
    failed = rec.failed("hog")
    assert failed.code == "VE-503" and failed.error_type == "NodeOutOfMemoryError", failed.message
    assert "node 'hog' (touches) ran out of memory" in failed.message
    assert "SIGKILL" not in failed.message
    _ok(ex, rec, {"indep": 42})
    _ok(ex, run(ex, [task("next", n.add, a=1, b=1)]), {"next": 2})


def test_the_system_oom_killer_is_reported_as_out_of_memory_with_what_the_worker_had(make_pool):
    if procs.oom_kills() is None:
        pytest.skip("this kernel does not count OOM kills in /proc/vmstat")
    pool = make_pool(memory_limit=None)  # nothing of ours stops it: the kernel's OOM killer does
    ex = WorkerExecutor(pool)
    rec = run(ex, [task("indep", n.const, value=42), task("hog", n.touches, gib=64)])
    failed = rec.failed("hog")
    assert failed.code == "VE-503", failed.message
    assert "out-of-memory killer" in failed.message and "MiB resident" in failed.message
    _ok(ex, rec, {"indep": 42})


def test_the_default_memory_limit_is_most_of_this_machine_and_can_be_set(monkeypatch):
    from vortex_jupyter.errors import VortexError
    from vortex_jupyter.workers.supervisor import default_memory_limit

    monkeypatch.delenv("VORTEX_WORKER_MEMORY", raising=False)
    assert default_memory_limit() == int(procs.physical_memory() * 0.9)
    monkeypatch.setenv("VORTEX_WORKER_MEMORY", "1.5G")
    assert default_memory_limit() == int(1.5 * 2**30)
    monkeypatch.setenv("VORTEX_WORKER_MEMORY", "off")
    assert default_memory_limit() is None
    monkeypatch.setenv("VORTEX_WORKER_MEMORY", "lots")
    with pytest.raises(VortexError, match="VORTEX_WORKER_MEMORY"):
        default_memory_limit()


def test_a_pool_keeps_only_the_last_logs_of_its_dead_workers(make_pool):
    from vortex_jupyter.workers.supervisor import KEEP_LOGS

    pool = make_pool()
    ex = WorkerExecutor(pool)
    for _ in range(KEEP_LOGS + 4):
        run(ex, [task("crash", n.segfault, a=1)])
    logs = [f for f in os.listdir(pool.supervisor.tmpdir) if f.startswith("worker-")]
    assert len(logs) <= KEEP_LOGS + 1, logs  # the kept ones and the live worker's
