"""Ray's per-task overhead and its speed-up on independent branches, beside local workers, in one run.

    python benchmarks/parallel_ray.py [--seconds 0.5] [--nodes 50]

Needs Ray (``pip install vortex-jupyter[ray]``); starts a local one with 2 CPUs.

1. Overhead: a graph of ``--nodes`` trivial nodes, as a chain (each waits for the one before:
   latency) and as independent nodes, through ``Graph.run`` on ``executor="ray"`` and on a
   pool of 1 local worker, in ms per node (best of 5 runs, new seeds so nothing is cached).
   Baselines measured first, in the same run: a bare ``ray.get(f.remote())`` loop (a Ray task's
   round trip) and a bare actor call ``ray.get(a.f.remote())`` (what a node costs Ray at least).
2. Branches: 2 and 8 independent branches of ``--seconds`` of pure-Python CPU work each, on 1
   local worker vs Ray with 2 CPUs (best of 3, nothing cached).

``ray_overhead_rows()`` and ``ray_branch_rows()`` return the rows; ``main_rows()`` prints both
tables (``benchmarks/parallel.py`` calls it).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import cloudpickle

import vortex_jupyter as vx
from vortex_jupyter.workers.executor import WorkerExecutor

if __name__ != "__main__":  # imported by parallel.py: actors and workers get these nodes by value
    cloudpickle.register_pickle_by_value(sys.modules[__name__])

_SEEDS = itertools.count(1)


@vx.node(category="benchmark")
def bench_ray_step(x: int = 0, seed: int = 0) -> int:
    return x + 1


@vx.node(category="benchmark")
def bench_ray_busy(seconds: float = 0.5, seed: int = 0) -> int:
    """About ``seconds`` of single-threaded Python work (the GIL held)."""
    end = time.perf_counter() + seconds
    acc = seed
    while time.perf_counter() < end:
        for i in range(2000):
            acc = (acc * 31 + i) % 1_000_003
    return acc


def start_ray(cpus: int = 2) -> Any:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    return ray


def chain(n: int) -> vx.Graph:
    g = vx.Graph()
    prev = g.add("bench_ray_step", x=0, seed=next(_SEEDS))
    for _ in range(n - 1):
        prev = g.add("bench_ray_step", x=prev.out(0), seed=next(_SEEDS))
    return g


def fan(n: int) -> vx.Graph:
    g = vx.Graph()
    for _ in range(n):
        g.add("bench_ray_step", x=0, seed=next(_SEEDS))
    return g


def busy(count: int, seconds: float) -> vx.Graph:
    g = vx.Graph()
    for _ in range(count):
        g.add("bench_ray_busy", seconds=seconds, seed=next(_SEEDS))
    return g


def best(executor: Any, make: Callable[[], vx.Graph], reps: int) -> float:
    times = []
    for _ in range(reps):
        g = make()
        t0 = time.perf_counter()
        run = g.run(executor=executor)
        times.append(time.perf_counter() - t0)
        if run.status != "ok":
            raise SystemExit(f"the run failed: {run.errors}")
    return min(times)


def _bare(ray: Any, reps: int = 300) -> tuple[float, float]:
    """(ms per ``ray.get(f.remote())``, ms per ``ray.get(actor.f.remote())``)."""

    @ray.remote(num_cpus=0)
    def f() -> int:
        return 1

    @ray.remote(num_cpus=0)
    class A:
        def f(self) -> int:
            return 1

    a = A.remote()
    out = []
    for call in (f.remote, a.f.remote):
        for _ in range(20):
            ray.get(call())
        t0 = time.perf_counter()
        for _ in range(reps):
            ray.get(call())
        out.append((time.perf_counter() - t0) / reps * 1e3)
    ray.kill(a)
    return out[0], out[1]


def ray_overhead_rows(nodes: int = 50) -> list[tuple[str, float, float]]:
    """Rows ``(what, ms per node on 1 worker or the bare call, ms per node on Ray)``."""
    ray = start_ray()
    task_ms, actor_ms = _bare(ray)  # before the node actors take the CPUs
    one = WorkerExecutor(devices=["cpu"], warm_start=True)
    try:
        rows: list[tuple[str, float, float]] = [("bare ray.get(f.remote())", float("nan"), task_ms),
                                                ("bare ray.get(actor.f.remote())", float("nan"), actor_ms)]
        for label, make in ((f"chain of {nodes}", functools.partial(chain, nodes)),
                            (f"{nodes} independent", functools.partial(fan, nodes))):
            best(one, make, 1)  # workers/actors started, node code shipped
            best("ray", make, 1)
            w = best(one, make, 5) / nodes * 1e3
            r = best("ray", make, 5) / nodes * 1e3
            rows.append((label, w, r))
    finally:
        one.close()
    return rows


def ray_branch_rows(branches: Sequence[int] = (2, 8), seconds: float = 0.5,
                    baseline: dict[int, float] | None = None) -> list[tuple[int, float, float]]:
    """Rows ``(branches, s on 1 local worker, s on Ray with 2 CPUs)``; ``baseline``: the 1-worker
    times already measured in this run (``parallel.py``), by branch count."""
    start_ray()
    one = WorkerExecutor(devices=["cpu"], warm_start=True)
    try:
        best(one, lambda: busy(1, 0.01), 1)
        best("ray", lambda: busy(2, 0.01), 1)
        rows = []
        for count in branches:
            make = functools.partial(busy, count, seconds)
            local = baseline[count] if baseline and count in baseline else best(one, make, 3)
            rows.append((count, local, best("ray", make, 3)))
        return rows
    finally:
        one.close()


def main_rows(seconds: float = 0.5, nodes: int = 50, baseline: dict[int, float] | None = None) -> None:
    print(f"{'per-node overhead':<32}{'1 worker ms':>12}{'ray ms':>9}{'ray/worker':>12}")
    for label, w, r in ray_overhead_rows(nodes):
        ratio = "" if w != w else f"{r / w:.1f}x"  # (nan: a baseline row)
        print(f"{label:<32}{'' if w != w else format(w, '.2f'):>12}{r:>9.2f}{ratio:>12}")
    print()
    print(f"{'branches of ' + format(seconds, 'g') + ' s':<22}{'1 worker s':>12}{'ray 2 CPUs s':>14}{'speed-up':>10}")
    for count, t1, tr in ray_branch_rows((2, 8), seconds, baseline):
        print(f"{count:<22}{t1:>12.2f}{tr:>14.2f}{t1 / tr:>9.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=0.5)
    ap.add_argument("--nodes", type=int, default=50)
    args = ap.parse_args()
    main_rows(args.seconds, args.nodes)


if __name__ == "__main__":
    main()
