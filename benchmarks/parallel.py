"""Independent branches on 1 vs 2 local workers (and on Ray), in one run.

    python benchmarks/parallel.py [--seconds 0.5] [--no-ray]

A graph of B independent branches (B = 2 and 8), each one node of pure-Python CPU work
(``--seconds`` long, the GIL held: what torch's intra-op threads cannot spread), runs through
the engine (``Graph.run``) on a pool of 1 worker and on a pool of 2 (``workers/parallel.py``
spreads the branches). Each figure is the best of 3 runs, each run with new seeds so nothing
is cached. Target on a 2-core machine: 2 workers >= 1.7x one worker.

With Ray installed (``pip install vortex-jupyter[ray]``) and without ``--no-ray``, the same
graphs run on ``executor="ray"`` with 2 CPUs, and Ray's per-task overhead is printed beside a
bare ``ray.get(f.remote())`` (``benchmarks/parallel_ray.py``).
"""

from __future__ import annotations

import argparse
import itertools
import time

import vortex_jupyter as vx
from vortex_jupyter.workers.pool import WorkerExecutor

_SEEDS = itertools.count(1)


@vx.node(category="benchmark")
def bench_busy(seconds: float = 0.5, seed: int = 0) -> int:
    """About ``seconds`` of single-threaded Python work."""
    end = time.perf_counter() + seconds
    acc = seed
    while time.perf_counter() < end:
        for i in range(2000):
            acc = (acc * 31 + i) % 1_000_003
    return acc


def branches(count: int, seconds: float) -> vx.Graph:
    g = vx.Graph()
    for _ in range(count):
        g.add("bench_busy", seconds=seconds, seed=next(_SEEDS))
    return g


def best(executor: object, count: int, seconds: float, reps: int = 3) -> float:
    times = []
    for _ in range(reps):
        g = branches(count, seconds)
        t0 = time.perf_counter()
        run = g.run(executor=executor)
        times.append(time.perf_counter() - t0)
        if run.status != "ok":
            raise SystemExit(f"the run failed: {run}")
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=0.5)
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()
    one = WorkerExecutor(devices=["cpu"], warm_start=True)
    two = WorkerExecutor(devices=["cpu", "cpu"], warm_start=True)
    best(one, 1, 0.01, 1)  # start the workers and ship the node's code
    best(two, 2, 0.01, 1)
    print(f"{'branches of ' + format(args.seconds, 'g') + ' s':<22}{'1 worker s':>12}{'2 workers s':>13}"
          f"{'speed-up':>10}  target")
    for count in (2, 8):
        t1 = best(one, count, args.seconds)
        t2 = best(two, count, args.seconds)
        print(f"{count:<22}{t1:>12.2f}{t2:>13.2f}{t1 / t2:>9.2f}x  >= 1.7x")
    one.close()
    two.close()
    if args.no_ray:
        return
    try:
        import ray  # noqa: F401
    except ImportError:
        print("\nRay is not installed (pip install vortex-jupyter[ray]): its rows are left out")
        return
    import parallel_ray

    print()
    parallel_ray.main_rows(args.seconds)


if __name__ == "__main__":
    main()
