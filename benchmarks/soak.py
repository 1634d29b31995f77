"""Soak benchmark of the worker pool (issue 10): thousands of runs with random faults, nothing lost.

One pool (a fork server and one CPU worker; kill grace 0.2 s; memory limit = the worker's
resident memory at start + 200 MiB) runs ``--runs`` batches through ``WorkerExecutor.execute``,
each of 3-8 nodes: constants, sums chained by refs, arrays held in the worker's arena and
their totals, all with outputs known in advance. A ``--fault-rate`` share of the runs (seeded
RNG) also get one fault, sometimes two, placed anywhere in the batch and sometimes wired
below or above good nodes (``_soak_nodes.py`` holds the nodes and builds the batches):

  fails its node, the worker lives     raises (VE-500), a bare MemoryError (VE-503)
  kills its worker (VE-502)            segfault, os._exit(3), closes fds 0-10, garbage on its
                                       socket, fork + the worker exits, exec of itself or of a
                                       sleeper, starts 3 processes then segfaults, SIGKILL to
                                       the worker from outside while the node runs
  the kernel kills the worker          ignores SIGTERM and the interrupt past a 0.2 s timeout
                                       (VE-501), touches memory past the limit (VE-503)
  must finish, the worker lives        fork whose child returns from the node; starts 3
                                       processes (plain, own session, double-forked daemon)
  before the run                       SIGKILL to the idle worker: nobody may be blamed

Checked after every run: each node expected to finish did, with the exact value (else a
*result lost*; an array whose worker died since must be reported through ``on_lost``); each
``NodeFailed`` is a fault's own node with its code, or a node below a failed one with VE-505
(else a *wrong blame*; so is a node that fails twice, or fails and finishes). A fault's node
that finishes although the policy fails it is counted on its own line (what is below it is
then expected to finish, with values computed from its output): it happens when a
worker SIGKILLed from outside mid-node is judged an *uncertain* death and the node runs again
alone (found by this benchmark: the monitor's ``bury`` kills the exiting worker too, which sets
``killed_alive``; or its exit status comes later than ``describe_death``'s 0.5 s wait).
The processes a node started must be gone within 5 s of its worker's death being seen.

Leaks: after a warm-up and at the end -- both right after the idle worker is SIGKILLed and one
good run, then a settle wait -- the kernel's open fds and threads (``/proc/self``), its
resident memory, ``/dev/shm`` entries with the pool's prefix, stray processes (everything that
carries this run's environment token or is a child of the kernel or of the fork server, but
the fork server and the live worker), and the fork server's fds and memory.

Crash -> next success: from the moment a worker died (the fault node's own timestamp just
before it broke the worker, the moment of our SIGKILL, or for the kernel's own kills the
``NodeFailed``) to the next node that finished on a newer worker. Baseline, interleaved in the
same run: the time of the all-good runs.

Run: ``python benchmarks/soak.py`` (10,000 runs, at most 600 s; it stops early, says so and
prints the table), ``--runs 500`` for a quick look. Exits 1 if anything that must be 0 is not.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import queue
import random
import re
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import _soak_nodes
import cloudpickle
import numpy as np
from _soak_nodes import FAULTS, Node, Plan, expect, pick_faults, plan_run

from vortex_jupyter.engine.events import NodeFailed
from vortex_jupyter.engine.executor import BatchCallbacks, CancelToken, Task
from vortex_jupyter.workers import procs
from vortex_jupyter.workers.executor import WorkerExecutor
from vortex_jupyter.workers.pool import WorkerPool
from vortex_jupyter.workers.supervisor import PoolConfig

cloudpickle.register_pickle_by_value(_soak_nodes)

MIB = 2**20
#: every process this benchmark starts inherits it: how strays are found
TOKEN = f"VX_SOAK={os.getpid()}-{uuid.uuid4().hex[:8]}"
SLEEPERS_GONE_WITHIN = 5.0
HANG_SECONDS = 60.0


# ---- executing a plan ---------------------------------------------------------------------------
def _gen(uid: str) -> int:
    """A worker's generation (a respawn has a higher one) from its uid (``"0g12"``) or from the
    marker its nodes see (its shm prefix, ``"vx<pid>p<pool>-0g12-"``)."""
    found = re.search(r"\d+g(\d+)-?$", uid)
    return int(found.group(1)) if found else -1


@dataclass
class Record:
    """BatchCallbacks that timestamp what they receive."""

    failed: list[tuple[float, NodeFailed]] = field(default_factory=list)
    results: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    all_refs: list[Any] = field(default_factory=list)
    #: (time, worker generation) of each result
    timeline: list[tuple[float, int]] = field(default_factory=list)
    finished: Counter[str] = field(default_factory=Counter)
    lost: set[str] = field(default_factory=set)
    #: (time, worker uid, fault) of our own SIGKILLs
    kills: list[tuple[float, str, str]] = field(default_factory=list)

    def emit(self, event: Any) -> None:
        if isinstance(event, NodeFailed):
            self.failed.append((time.monotonic(), event))

    def on_result(self, task: Task, refs: tuple[Any, ...]) -> None:
        self.timeline.append((time.monotonic(), _gen(refs[0].worker)))
        self.results[task.node_id] = refs
        self.all_refs.extend(refs)
        self.finished[task.node_id] += 1

    @property
    def callbacks(self) -> BatchCallbacks:
        return BatchCallbacks(self.emit, self.on_result, self.lost.update)


def _kill_when_flagged(mark: str, rec: Record, stop: threading.Event) -> None:
    """SIGKILL the worker (from outside) as soon as the ``kill_running`` node says it runs."""
    while not stop.wait(0.002):
        with open(mark) as f:
            lines = [line.split() for line in f if line.startswith("kill_running ")]
        if lines:
            _, _, uid, pid = lines[0]
            rec.kills.append((time.monotonic(), uid, "kill_running"))
            os.kill(int(pid), signal.SIGKILL)
            return


class Runner:
    """One thread that runs every batch, as the engine's run loop would: per-run threads would
    churn the allocator's per-thread arenas and blur the kernel's memory figure."""

    def __init__(self, ex: WorkerExecutor) -> None:
        self.ex = ex
        self.jobs: queue.Queue[tuple[list[Task], Record, CancelToken] | None] = queue.Queue()
        self.done: queue.Queue[BaseException | None] = queue.Queue()
        self.thread = threading.Thread(target=self._loop, name="soak-runner", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while (job := self.jobs.get()) is not None:
            tasks, rec, cancel = job
            try:
                self.ex.execute(tasks, rec.callbacks, cancel)
                self.done.put(None)
            except BaseException as exc:  # reported as a failed run
                self.done.put(exc)

    def run(self, tasks: list[Task], rec: Record) -> str:
        """"" when the batch returned; else what went wrong (it hung, or execute raised)."""
        cancel = CancelToken()
        self.jobs.put((tasks, rec, cancel))
        try:
            exc = self.done.get(timeout=HANG_SECONDS)
        except queue.Empty:
            cancel.cancel()
            try:
                self.done.get(timeout=10)
            except queue.Empty:
                return f"hung for {HANG_SECONDS + 10:.0f} s, even after a cancel"
            return f"hung for {HANG_SECONDS:.0f} s, returned after a cancel"
        return "" if exc is None else f"execute raised {type(exc).__name__}: {exc}"

    def close(self) -> None:
        self.jobs.put(None)


def execute(runner: Runner, pool: WorkerPool, plan: Plan) -> tuple[Record, float, str]:
    """Run the plan; (record, seconds, "" or what went wrong)."""
    rec = Record()
    open(plan.mark, "w").close()
    stop = threading.Event()
    killer = None
    if plan.fires("kill_running"):
        killer = threading.Thread(target=_kill_when_flagged, args=(plan.mark, rec, stop), daemon=True)
        killer.start()
    if "kill_idle" in plan.faults:
        w = pool.worker(0)
        rec.kills.append((time.monotonic(), w.uid, "kill_idle"))
        os.kill(w.pid, signal.SIGKILL)
    t0 = time.perf_counter()
    trouble = runner.run([n.task for n in plan.nodes], rec)
    elapsed = time.perf_counter() - t0
    stop.set()
    if killer is not None:
        killer.join()
    return rec, elapsed, trouble


# ---- checking a run -----------------------------------------------------------------------------
@dataclass
class Crash:
    t0: float
    gen: int
    fault: str


@dataclass
class Stats:
    runs: int = 0
    lost: int = 0
    wrong: int = 0
    unblamed: int = 0
    hung: int = 0
    leaked_procs: int = 0
    anomalies: list[str] = field(default_factory=list)
    by_fault: dict[str, Counter[str]] = field(default_factory=dict)
    good_times: list[float] = field(default_factory=list)
    fault_times: dict[str, list[float]] = field(default_factory=dict)
    recoveries: list[float] = field(default_factory=list)
    pending: list[Crash] = field(default_factory=list)
    #: (pids, worker uid, when its death was first seen or None) of processes nodes started
    sleepers: list[tuple[list[int], str, float | None]] = field(default_factory=list)
    sleepers_gone: list[float] = field(default_factory=list)
    #: the kernel's fds by target after the last settle (``fd_targets``)
    fds: Counter[str] = field(default_factory=Counter)
    #: the kernel's resident bytes after every 1,000 runs
    rss_series: list[int] = field(default_factory=list)
    checked: Counter[str] = field(default_factory=Counter)

    def note(self, plan: Plan, what: str) -> None:
        if len(self.anomalies) < 20:
            self.anomalies.append(f"run {plan.index} {plan.faults}: {what}")


def _value_ok(ex: WorkerExecutor, pool: WorkerPool, node: Node, want: Any, rec: Record) -> bool | None:
    """Whether the node's output is ``want`` (None: held by a worker that died, reported lost)."""
    ref = rec.results[node.task.node_id][0]
    if not node.array:
        value = ex.fetch(ref)
        return type(value) is type(want) and value == want
    if not pool.holds(ref):
        return None if node.task.key in rec.lost else False
    view = ex.fetch(ref)
    ok = bool(np.array_equal(view, np.arange(want)))
    del view
    return ok


def _unblamed(plan: Plan, rec: Record, failures: dict[str, list[NodeFailed]], stats: Stats) -> frozenset[str]:
    """Fault nodes the policy fails that finished instead (they ran again): counted, and what
    is below them is then expected to finish too."""
    out = frozenset(n.task.node_id for n in plan.nodes if n.fault and FAULTS[n.fault].code
                    and rec.finished[n.task.node_id] and n.task.node_id not in failures)
    for node in plan.nodes:
        if node.task.node_id in out:
            stats.unblamed += 1
            stats.note(plan, f"{node.task.node_id} ({node.fault}) expected {plan.expected[node.task.node_id]}, "
                       "but it ran again and finished")
    return out


def check(ex: WorkerExecutor, pool: WorkerPool, plan: Plan, rec: Record, stats: Stats) -> None:
    failures: dict[str, list[NodeFailed]] = {}
    for _, event in rec.failed:
        failures.setdefault(event.node, []).append(event)
    finished = _unblamed(plan, rec, failures, stats)
    expected = expect(plan, finished) if finished else plan.expected
    for node in plan.nodes:
        nid = node.task.node_id
        kind, want = expected[nid]
        fails, done = failures.get(nid, []), rec.finished[nid]
        label = f"{nid} ({node.fault or node.task.spec.type}) expected {kind} {want!r}"
        if fails and (kind == "ok" or len(fails) > 1 or fails[0].code != want or done):
            stats.wrong += 1
            stats.note(plan, f"{label}, got {[f.code for f in fails]} finished={done}: {fails[0].message[:200]}")
        elif kind == "fail" and done:
            stats.wrong += 1  # finished although its input failed
            stats.note(plan, f"{label}, but it finished")
        elif kind == "ok" and not done:
            stats.lost += 1
            stats.note(plan, f"{label}: no result, no failure")
        elif kind == "fail" and not fails:
            stats.lost += 1
            stats.note(plan, f"{label}: no failure reported, no result")
        elif kind == "ok" and _value_ok(ex, pool, node, want, rec) is False:
            stats.lost += 1
            stats.note(plan, f"{label}: wrong or silently lost output")
        stats.checked["505" if want == "VE-505" else kind] += 1
        if node.fault:
            outcome = fails[-1].code if fails else ("finished" if done else "nothing")
            stats.by_fault.setdefault(node.fault, Counter())[outcome] += 1
    ex.release(rec.all_refs)


def _marks(path: str) -> dict[str, list[str]]:
    """The first line each fault wrote (a suspect that ran again wrote a second)."""
    out: dict[str, list[str]] = {}
    with open(path) as f:
        for line in f:
            words = line.split()
            if len(words) >= 3:
                out.setdefault(words[0], words)
    return out


def track_deaths(plan: Plan, rec: Record, stats: Stats) -> None:
    """Crash records (for crash -> next success) and the processes nodes started."""
    marks = _marks(plan.mark)
    failed_at = {e.node: t for t, e in rec.failed}
    for t, uid, fault in rec.kills:
        stats.pending.append(Crash(t, _gen(uid), fault))
    for node in plan.nodes:
        words = marks.get(node.fault)
        if not node.fault or words is None:
            continue
        death = FAULTS[node.fault].death
        if death == "node":
            stats.pending.append(Crash(float(words[1]), _gen(words[2]), node.fault))
        elif death == "kernel" and node.task.node_id in failed_at:
            stats.pending.append(Crash(failed_at[node.task.node_id], _gen(words[2]), node.fault))
        if node.fault in ("spawn", "spawn_crash"):
            stats.sleepers.append(([int(p) for p in words[3:]], words[2], None))
    left = []
    for crash in stats.pending:  # resolved by the first result of a newer worker
        after = [t for t, g in rec.timeline if t >= crash.t0 and g > crash.gen]
        if after:
            stats.recoveries.append(min(after) - crash.t0)
        else:
            left.append(crash)
    stats.pending = left


def _alive_marked(pid: int, uid: str) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rpartition(b")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X") and procs.marker_of(pid) == uid


def watch_sleepers(pool: WorkerPool, stats: Stats) -> None:
    """Processes a node started must be gone within 5 s of their worker's death being seen."""
    live = pool.supervisor.workers.get(0)
    live_gen = _gen(live.uid) if live is not None and live.alive else 1 << 62
    now, keep = time.monotonic(), []
    for pids, uid, seen in stats.sleepers:
        if seen is None and _gen(uid) < live_gen:
            seen = now
        if seen is not None:
            left = [p for p in pids if _alive_marked(p, uid)]
            if not left:
                stats.sleepers_gone.append(now - seen)
                continue
            if now - seen > SLEEPERS_GONE_WITHIN:
                stats.leaked_procs += len(left)
                stats.anomalies.append(f"processes {left} of worker {uid} alive {now - seen:.1f} s after it died")
                continue
        keep.append((pids, uid, seen))
    stats.sleepers = keep


# ---- leaks ----------------------------------------------------------------------------------------
def _rss(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _stat(pid: int) -> tuple[int, bytes] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rpartition(b")")[2].split()
        return int(fields[1]), fields[0]
    except (OSError, IndexError, ValueError):
        return None


def strays(pool: WorkerPool) -> list[int]:
    """Processes of this run but the fork server and the live worker: carrying the token, or
    children (zombies too) of the kernel or of the fork server."""
    me = os.getpid()
    server = pool.supervisor.launcher.proc.pid  # type: ignore[union-attr]
    live = pool.supervisor.workers.get(0)
    keep = {me, server, live.pid if live is not None else 0}
    token = TOKEN.encode() + b"\0"
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in keep:
            continue
        pid = int(name)
        st = _stat(pid)
        if st is not None and st[0] in (me, server):
            out.append(pid)
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if token in f.read():
                    out.append(pid)
        except OSError:
            pass
    return out


def snapshot(pool: WorkerPool) -> dict[str, int]:
    """Counts taken three times 0.2 s apart, the smallest kept: a leak stays, a socket being
    closed or a thread about to end does not."""
    samples = []
    for _ in range(3):
        samples.append(_sample(pool))
        time.sleep(0.2)
    return {k: min(s[k] for s in samples) for k in samples[0]}


def fd_targets() -> Counter[str]:
    """What the kernel's fds point at (pipes and sockets by kind), to name a leak."""
    out: Counter[str] = Counter()
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            out[os.readlink(f"/proc/self/fd/{name}").split(":[")[0]] += 1
    return out


def _sample(pool: WorkerPool) -> dict[str, int]:
    gc.collect()
    server = pool.supervisor.launcher.proc.pid  # type: ignore[union-attr]
    prefix = pool.supervisor.shm_prefix
    return {
        "fds": len(os.listdir("/proc/self/fd")),
        "threads": len(os.listdir("/proc/self/task")),
        "rss": _rss(),
        "shm": sum(1 for n in os.listdir("/dev/shm") if n.startswith(prefix)),
        "procs": len(strays(pool)),
        "server_fds": len(os.listdir(f"/proc/{server}/fd")),
        "server_rss": _rss(server),
        "logs": len(os.listdir(pool.supervisor.tmpdir)),
        "logs_kib": sum(e.stat().st_size for e in os.scandir(pool.supervisor.tmpdir) if e.is_file()) // 1024,
    }


@dataclass
class Bench:
    """What every run needs: the pool, its executor, the runner thread, the mark file."""

    pool: WorkerPool
    ex: WorkerExecutor
    runner: Runner
    mark: str

    def run(self, plan: Plan, stats: Stats) -> bool:
        """Run, check and account one plan; False when it hung or raised (the loop stops)."""
        rec, elapsed, trouble = execute(self.runner, self.pool, plan)
        stats.runs += 1
        if trouble:
            stats.hung += 1
            stats.note(plan, trouble)
            return False
        check(self.ex, self.pool, plan, rec, stats)
        track_deaths(plan, rec, stats)
        watch_sleepers(self.pool, stats)
        for fault in plan.faults:
            stats.fault_times.setdefault(fault, []).append(elapsed)
        if not plan.faults:
            stats.good_times.append(elapsed)
        return True

    def settle(self, stats: Stats) -> dict[str, int]:
        """SIGKILL the idle worker, run one good batch, wait until nothing is left, snapshot.

        The batch is the same every time (its own seed): a fetched array maps its worker's
        arena, which holds an fd until that worker dies, so start and end fetch alike."""
        plan = plan_run(random.Random(1), -1, ["kill_idle"], self.mark)
        rec, _, trouble = execute(self.runner, self.pool, plan)
        if trouble:
            stats.hung += 1
            stats.note(plan, trouble)
        check(self.ex, self.pool, plan, rec, stats)
        deadline = time.monotonic() + SLEEPERS_GONE_WITHIN
        while strays(self.pool) and time.monotonic() < deadline:
            time.sleep(0.1)
        watch_sleepers(self.pool, stats)
        time.sleep(0.5)  # the monitor's and the fork server's last reports
        stats.fds = fd_targets()
        return snapshot(self.pool)


# ---- the loop and the table ---------------------------------------------------------------------
def make_pool() -> WorkerPool:
    os.environ[TOKEN.partition("=")[0]] = TOKEN.partition("=")[2]  # before the fork server starts
    pool = WorkerPool(PoolConfig(devices=["cpu"], preload=("numpy",), late_preload=(), arena_bytes=64 * MIB,
                                 kill_grace=0.2, memory_limit=None))
    base = pool.worker(0).hello.memory["rss"]  # type: ignore[union-attr]
    pool.config.memory_limit = base + 200 * MIB
    return pool


def loop(bench: Bench, args: argparse.Namespace, rng: random.Random, stats: Stats, t_start: float) -> str:
    """The measured runs; returns why it stopped early ("" if it did not)."""
    for index in range(args.runs):
        if time.monotonic() - t_start > args.max_seconds - 30:  # leave time for the settle and table
            return f"stopped early by --max-seconds {args.max_seconds:g} after {index:,} runs"
        if not bench.run(plan_run(rng, index, pick_faults(rng, args.fault_rate), bench.mark), stats):
            return "stopped: a run hung or raised"
        if (index + 1) % 1000 == 0:
            gc.collect()
            stats.rss_series.append(_rss())
    return ""


def soak(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    t_start = time.monotonic()
    pool = make_pool()
    ex = WorkerExecutor(pool)
    bench = Bench(pool, ex, Runner(ex), os.path.join(tempfile.mkdtemp(prefix="vx-soak-"), "mark"))
    warm, stats = Stats(), Stats()
    try:
        for name in sorted(FAULTS):  # each fault once, then good runs: caches, threads, imports
            bench.run(plan_run(rng, -2, [name], bench.mark), warm)
        for _ in range(50):
            bench.run(plan_run(rng, -3, [], bench.mark), warm)
        start = bench.settle(warm)
        t0 = time.monotonic()
        stopped = loop(bench, args, rng, stats, t_start)
        loop_s = time.monotonic() - t0
        end = bench.settle(stats)
    finally:
        bench.runner.close()
        pool.close()
        os.unlink(bench.mark)
        os.rmdir(os.path.dirname(bench.mark))
    return report(args, warm, stats, start, end, loop_s, stopped)


def _ms(xs: list[float], q: float) -> str:
    if not xs:
        return "-"
    xs = sorted(xs)
    return f"{xs[min(len(xs) - 1, int(len(xs) * q))] * 1e3:.1f} ms"


def _mean(xs: list[float]) -> float:
    return statistics.fmean(xs) if xs else float("nan")


def report(args: argparse.Namespace, warm: Stats, stats: Stats, start: dict[str, int], end: dict[str, int],
           loop_s: float, stopped: str) -> int:
    faulty = sum(len(v) for v in stats.fault_times.values())
    print(f"soak: {stats.runs:,} runs in {loop_s:.0f} s (seed {args.seed}, fault rate {args.fault_rate:g}): "
          f"{len(stats.good_times):,} all good, {stats.runs - len(stats.good_times):,} with faults "
          f"({faulty:,} faults); {stats.checked['ok']:,} node results checked exact, {stats.checked['505']:,} "
          "nodes below a failed one" + (f"; {stopped}" if stopped else ""))
    print("(a fault's VE-505: it was wired below the other fault of its run, which failed first)")
    base = _pct(stats.good_times, 0.5)
    print(f"\n{'fault':<14}{'runs':>6}  {'outcome of its node':<34}{'run p50':>10}{'x all-good':>11}{'mean':>10}"
          f"{'max':>10}")
    for name in sorted(FAULTS):
        times = stats.fault_times.get(name, [])
        outcome = ", ".join(f"{k} x{v}" for k, v in sorted(stats.by_fault.get(name, Counter()).items()))
        if name == "kill_idle":
            outcome = "(no node; no failure may follow)"
        print(f"{name:<14}{len(times):>6}  {outcome:<34}{_ms(times, 0.5):>10}{_pct(times, 0.5) / base:>10.1f}x"
              f"{_mean(times) * 1e3:>7.1f} ms{_ms(times, 1.0):>10}")
    d = {k: end[k] - start[k] for k in start}
    rss_per_k = d["rss"] / MIB / max(1, stats.runs) * 1000
    rss_bad = d["rss"] > args.rss_tolerance_mib * MIB
    musts = [
        ("results lost", stats.lost + warm.lost),
        ("wrong blames", stats.wrong + warm.wrong),
        ("faults whose node finished instead of failing", stats.unblamed + warm.unblamed),
        ("runs that hung or raised", stats.hung + warm.hung),
        (f"processes alive {SLEEPERS_GONE_WITHIN:g} s after their worker died", stats.leaked_procs + warm.leaked_procs),
        ("kernel fds (end - start)", d["fds"]),
        ("kernel threads (end - start)", d["threads"]),
        ("/dev/shm entries (end - start)", d["shm"]),
        ("stray processes (end - start)", d["procs"]),
        ("fork server fds (end - start)", d["server_fds"]),
    ]
    print(f"\n{'must be 0':<52}{'count':>8}")
    for name, value in musts:
        print(f"{name:<52}{value:>8}")
    print(f"{'kernel RSS growth':<52}{d['rss'] / MIB:>+7.1f} MiB  ({rss_per_k:+.2f} MiB / 1,000 runs; "
          f"tolerance {args.rss_tolerance_mib} MiB)")
    if stats.rss_series:
        series = ", ".join(f"{(r - start['rss']) / MIB:+.1f}" for r in stats.rss_series)
        print(f"{'kernel RSS after each 1,000 runs (MiB vs start)':<52}{series}")
    print(f"{'fork server RSS growth':<52}{d['server_rss'] / MIB:>+7.1f} MiB")
    print(f"{'files in the pool tmpdir (worker logs)':<52}{d['logs']:>+8}  ({d['logs_kib'] / 1024:+.1f} MiB; kept "
          "until the pool closes)")
    gone = stats.sleepers_gone
    print(f"{'processes nodes started, gone with their worker':<52}{3 * len(gone):>8}  (slowest: gone "
          f"{_ms(gone, 1.0)} after the death was seen)")
    all_fault = [t for v in stats.fault_times.values() for t in v]
    good = stats.good_times
    print(f"\n{'timing':<34}{'value':>12}  {'baseline: all-good run':>24}{'ratio':>9}")
    for label, xs, q in (("run with faults, p50", all_fault, 0.5), ("run with faults, mean", all_fault, -1),
                         ("run with faults, p99", all_fault, 0.99)):
        v, b = (_mean(xs), _mean(good)) if q < 0 else (_pct(xs, q), _pct(good, q))
        print(f"{label:<34}{v * 1e3:>9.1f} ms  {b * 1e3:>21.1f} ms{v / b if b else float('nan'):>8.1f}x")
    rec = stats.recoveries
    print(f"{'crash -> next success, p50':<34}{_ms(rec, 0.5):>12}  ({len(rec):,} worker deaths, "
          f"{len(stats.pending)} unresolved)")
    print(f"{'crash -> next success, p99':<34}{_ms(rec, 0.99):>12}  (max {_ms(rec, 1.0)})")
    if d["fds"] > 0:
        print(f"kernel fds more at the end: {dict(stats.fds - warm.fds)}")
    if stats.anomalies or warm.anomalies:
        print("\nanomalies (first 20):")
        for line in warm.anomalies + stats.anomalies:
            print("  " + line)
    bad = any(v > 0 for _, v in musts) or rss_bad  # (fewer at the end than at the start is no leak)
    print(f"\n{'FAIL' if bad else 'OK'}: " + ("a must-be-0 count is not 0" if bad else "every must-be-0 count is 0"))
    return 1 if bad else 0


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * q))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--max-seconds", type=float, default=600.0, help="stop early (and still report) after this")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fault-rate", type=float, default=0.25, help="share of the runs that get a fault")
    ap.add_argument("--rss-tolerance-mib", type=float, default=16.0, help="kernel RSS growth allowed")
    return soak(ap.parse_args())


if __name__ == "__main__":
    sys.exit(main())
