"""Independent branches on 1 vs 2 local workers (and on Ray), in one run.

    python benchmarks/parallel.py [--seconds 0.5] [--no-ray]

A graph of B independent branches (B = 2 and 8), each one node of pure-Python CPU work
(``--seconds`` long, the GIL held: what torch's intra-op threads cannot spread), runs through
the engine (``Graph.run``) on a pool of 1 worker and on a pool of 2 (``workers/parallel.py``
spreads the branches). Each figure is the best of 3 runs, each run with new seeds so nothing
is cached (the graphs and timing are ``parallel_ray.py``'s, whose Ray rows reuse the 1-worker
times measured here). Target on a 2-core machine: 2 workers >= 1.7x one worker.

With Ray installed (``pip install vortex-jupyter[ray]``) and without ``--no-ray``, the same
graphs run on ``executor="ray"`` with 2 CPUs, and Ray's per-task overhead is printed beside a
bare ``ray.get(f.remote())`` (``benchmarks/parallel_ray.py``).
"""

from __future__ import annotations

import argparse
import functools

import parallel_ray  # the branch graphs and the timing, shared with the Ray rows (imports no Ray)
from parallel_ray import best, busy

from vortex_jupyter.workers.pool import WorkerExecutor


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=0.5)
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()
    one = WorkerExecutor(devices=["cpu"], warm_start=True)
    two = WorkerExecutor(devices=["cpu", "cpu"], warm_start=True)
    best(one, lambda: busy(1, 0.01), 1)  # start the workers and ship the node's code
    best(two, lambda: busy(2, 0.01), 1)
    print(f"{'branches of ' + format(args.seconds, 'g') + ' s':<22}{'1 worker s':>12}{'2 workers s':>13}"
          f"{'speed-up':>10}  target")
    baseline: dict[int, float] = {}
    for count in (2, 8):
        make = functools.partial(busy, count, args.seconds)
        t1 = baseline[count] = best(one, make, 3)
        t2 = best(two, make, 3)
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
    print()
    parallel_ray.main_rows(args.seconds, baseline=baseline)


if __name__ == "__main__":
    main()
