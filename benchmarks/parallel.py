"""Independent branches on 1 vs 2 local workers (and on Ray), in one run.

    python benchmarks/parallel.py [--seconds 0.5] [--no-ray] [--no-grid]
    python benchmarks/parallel.py --gpu      # on a CUDA machine: the GPU rows only

A graph of B independent branches (B = 2 and 8), each one node of pure-Python CPU work
(``--seconds`` long, the GIL held: what torch's intra-op threads cannot spread), runs through
the engine (``Graph.run``) on a pool of 1 worker and on a pool of 2 (``workers/parallel.py``
spreads the branches). Each figure is the best of 3 runs, each run with new seeds so nothing
is cached (the graphs and timing are ``parallel_ray.py``'s, whose Ray rows reuse the 1-worker
times measured here). Target on a 2-core machine: 2 workers >= 1.7x one worker.

With Ray installed (``pip install vortex-jupyter[ray]``) and without ``--no-ray``, the same
graphs run on ``executor="ray"`` with 2 CPUs, and Ray's per-task overhead is printed beside a
bare ``ray.get(f.remote())`` (``benchmarks/parallel_ray.py``).

Then a seed grid of 4 KSamplers on one model: 1 worker vs 2 workers, with the model on one of
them (the default on one device) and on both (``model_copies=2``); with ``--gpu``, on one GPU
(an SD1.5-shaped fp16 model, 512x512, 20 steps) and a 1 GiB CUDA tensor between two workers on
that GPU by CUDA IPC vs through host memory (``benchmarks/parallel_grid.py``).
"""

from __future__ import annotations

import argparse
import functools

import parallel_grid  # the seed grid and CUDA IPC rows
import parallel_ray  # the branch graphs and the timing, shared with the Ray rows (imports no Ray)
from parallel_ray import best, busy

from vortex_jupyter.workers.executor import WorkerExecutor


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=0.5)
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--no-grid", action="store_true")
    ap.add_argument("--gpu", action="store_true", help="the GPU rows: a seed grid and CUDA IPC on one GPU")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if args.gpu:
        parallel_grid.rows(True, args.repeat)
        return
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
    if not args.no_grid:
        print()
        parallel_grid.rows(False, args.repeat)
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
