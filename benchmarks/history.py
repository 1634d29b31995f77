"""The run history at 10,000 runs: listing and filtering vs a plain SELECT; recording's cost per run.

    python benchmarks/history.py [--runs 10000] [--repeat 5]

A history file gets ``--runs`` recorded runs (each with 8 nodes, a seed and a prompt; the
real write path: ``begin_run``/``add_nodes``/``finish_run``), then each query is timed through
``vx.history()``'s table (rows as ``RunRow``s, seeds/prompts decoded) beside the same rows by a
plain ``sqlite3`` ``SELECT ... fetchall()`` in the same run. Targets: each under 50 ms. Last, a
graph of 10 nodes runs with and without the recorder (median of ``--repeat`` runs, all cached
but one node) to show what recording adds to a run.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vortex_jupyter.history.db import History
from vortex_jupyter.history.table import HistoryTable

TYPES = ("CheckpointLoaderSimple", "CLIPTextEncode", "CLIPTextEncode", "EmptyLatentImage", "KSampler",
         "VAEDecode", "SaveImage", "LoraLoader")


def fill(hist: History, runs: int) -> None:
    t0 = 1_700_000_000.0
    graph = {"schema_version": 1, "nodes": [{"id": str(i), "type": t} for i, t in enumerate(TYPES)]}
    for i in range(runs):
        rid = f"run{i:06d}"
        status = "failed" if i % 17 == 0 else "ok"
        hist.begin_run(rid, graph, origin=("notebook", "cli", "canvas")[i % 3], started=t0 + i * 60,
                       seeds={"4": i}, prompts={"6": f"a red circle {i}"})
        types = TYPES if i % 5 else (*TYPES[:-1], "UpscaleModelLoader")
        hist.add_nodes(rid, [(str(n), t, "ok", 0.01, None, None, None, None) for n, t in enumerate(types)])
        hist.finish_run(rid, status, elapsed=0.5, stats={"ran": 8, "failed": int(status == "failed")})


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        n = fn()
        times.append(time.perf_counter() - t)
    assert n > 0
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "h.sqlite"
        hist = History(path)
        t = time.perf_counter()
        fill(hist, args.runs)
        fill_s = time.perf_counter() - t
        table = HistoryTable(hist)
        raw = sqlite3.connect(path)
        cols = "id, started, finished, status, who, origin, elapsed, ran, cached, failed, seeds, prompts"
        since = 1_700_000_000.0 + args.runs * 30
        cases = [
            ("all runs", lambda: len(table.filter().rows),
             f"SELECT {cols} FROM runs ORDER BY started DESC", ()),
            ("status=failed", lambda: len(table.filter(status="failed").rows),
             f"SELECT {cols} FROM runs WHERE status IN (?) ORDER BY started DESC", ("failed",)),
            ("node_type=UpscaleModelLoader", lambda: len(table.filter(node_type="UpscaleModelLoader").rows),
             f"SELECT {cols} FROM runs WHERE id IN (SELECT run_id FROM nodes WHERE type = ?) ORDER BY started DESC",
             ("UpscaleModelLoader",)),
            ("since (newest half), origin=cli", lambda: len(table.filter(since=since, origin="cli").rows),
             f"SELECT {cols} FROM runs WHERE started >= ? AND origin = ? ORDER BY started DESC", (since, "cli")),
            ("newest 50", lambda: len(table.filter(limit=50).rows),
             f"SELECT {cols} FROM runs ORDER BY started DESC LIMIT 50", ()),
        ]
        print(f"history of {args.runs} runs ({fill_s:.1f} s to record them, {path.stat().st_size / 2**20:.1f} MiB)")
        print(f"{'query':<34} {'vx.history() ms':>16} {'plain SELECT ms':>16} {'ratio':>7} {'< 50 ms':>8}")
        for name, ours, sql, qargs in cases:
            a = best(ours, args.repeat)
            b = best(lambda sql=sql, qargs=qargs: len(raw.execute(sql, qargs).fetchall()), args.repeat)
            print(f"{name:<34} {a * 1000:16.1f} {b * 1000:16.1f} {a / b:7.2f} {'yes' if a < 0.05 else 'NO':>8}")
        os.environ["VORTEX_HISTORY"] = str(Path(tmp) / "runs.sqlite")
        os.environ.setdefault("VORTEX_EXECUTOR", "inline")
        import vortex_jupyter as vx

        g = vx.Graph()
        prev = g.add("IntAdd", a=1, b=1)
        for _ in range(8):
            prev = g.add("IntAdd", a=prev.out(0), b=1)
        head = next(iter(g.nodes.values()))

        def timed(origin_history: object) -> float:
            samples = []
            for i in range(max(args.repeat, 5) * 4):
                head.params["b"] = i + 2  # the whole chain re-runs
                t = time.perf_counter()
                if origin_history is None:
                    g.engine.run(vx._api.get_executor("inline"))
                else:
                    g.run(executor="inline")
                samples.append(time.perf_counter() - t)
            return statistics.median(samples)

        plain, recorded = timed(None), timed(True)
        print(f"\n{'a 9-node run (inline)':<34} {'recorded ms':>16} {'not recorded ms':>16} {'ratio':>7}")
        print(f"{'':<34} {recorded * 1000:16.2f} {plain * 1000:16.2f} {recorded / plain:7.2f}")


if __name__ == "__main__":
    main()
