"""Engine benchmark: validate, plan, cold run, warm re-run and a one-param edit, in-process.

Graphs of trivial nodes (``(a + b + c + k) % 1000003``), three shapes:

- ``dag``: node i reads up to 3 earlier nodes chosen at random (seeded);
- ``chain``: node i reads node i-1;
- ``wide``: one source feeding every other node.

Each figure stands beside a baseline measured in the same run: the same node functions
called in a plain Python loop in topological order (no keys, no cache, no events). The
one-param edit changes node ``n{N/2}`` (the middle one by creation order); for a chain that
re-runs half the graph, for a random DAG whatever descends from it. Each figure is the best of
``--repeat`` runs (the machine is shared; the minimum is the stable part).

Targets at 10k nodes: cold validate+plan+run <= 100 ms, warm <= 30 ms, one edit <= 10 ms.

A second table times two runs of one 1k-node DAG started together (two threads, as a canvas
run and a cell's ``g.run()`` would): a key the first run computes is awaited by the second,
not computed again (``engine/inflight.py``). Its nodes do a little work each (~20 us), and the
baseline is one cold run of the same graph in the same process: node executions and wall time
of both runs, as multiples of one run's (best of ``--repeat``).

Run: ``python benchmarks/engine.py`` (1k, 10k, 100k) or ``--quick`` (1k, 10k);
``--concurrent`` for the second table only.
"""

from __future__ import annotations

import argparse
import gc
import random
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from vortex_jupyter.engine.cache import OutputCache
from vortex_jupyter.engine.inprocess import InProcessExecutor
from vortex_jupyter.engine.plan import topo_order
from vortex_jupyter.engine.run import Engine
from vortex_jupyter.graph.model import GraphModel
from vortex_jupyter.graph.validate import validate
from vortex_jupyter.nodes.spec import NodeSpec, OutputSpec, PortSpec


def _sum3(a: int = 0, b: int = 0, c: int = 0, k: int = 0) -> tuple[int]:
    return ((a + b + c + k) % 1000003,)


SPEC = NodeSpec(
    "Sum3",
    tuple(PortSpec(n, "INT", default=0) for n in ("a", "b", "c", "k")),
    (OutputSpec("INT", "INT"),),
    fn=_sum3,
)
LOOKUP: Callable[[str], NodeSpec | None] = {"Sum3": SPEC}.get


def build(shape: str, n: int, seed: int = 0, node_type: str = "Sum3") -> GraphModel:
    rng = random.Random(seed)
    m = GraphModel()
    ids = [m.add_node(node_type, {"k": i}, id=f"n{i}") for i in range(n)]
    for i in range(1, n):
        if shape == "chain":
            srcs = [i - 1]
        elif shape == "wide":
            srcs = [0]
        else:
            srcs = rng.sample(range(i), min(i, 3))
        for port, s in zip("abc", srcs):
            m.connect(ids[s], 0, ids[i], port)
    return m


def baseline(m: GraphModel) -> float:
    """The same functions called in a plain loop in topological order."""
    t0 = time.perf_counter()
    values: dict[str, int] = {}
    for nid in topo_order(m):
        kwargs: dict[str, Any] = dict(m.nodes[nid].params)
        for name, edges in m.inputs_of(nid).items():
            kwargs[name] = values[edges[0].src]
        values[nid] = _sum3(**kwargs)[0]
    return time.perf_counter() - t0


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _best(fn: Callable[[], float], repeat: int) -> float:
    return min(fn() for _ in range(repeat))


def measure(shape: str, n: int, repeat: int) -> dict[str, float]:
    """Best of ``repeat`` for each figure (the machine is shared: minima are the stable part)."""
    m = build(shape, n)
    ex = InProcessExecutor()
    mid = f"n{n // 2}"
    gc.collect()
    out = {"base": _best(lambda: baseline(m), repeat)}
    out["validate"] = _best(lambda: _timed(lambda: validate(m, LOOKUP))[0], repeat)

    def plan_once() -> float:
        eng = Engine(m, LOOKUP)
        t, plan = _timed(lambda: eng.plan(OutputCache(ex)))
        assert len(plan.planned) == n
        eng.close()
        return t

    out["plan"] = _best(plan_once, repeat)
    cold, warm, edit = [], [], []
    for i in range(repeat):
        eng, cache = Engine(m, LOOKUP), OutputCache(ex)
        t, st = _timed(partial(eng.run, ex, cache=cache))
        assert st.stats["ran"] == n, st.stats
        cold.append(t)
        t, st = _timed(partial(eng.run, ex, cache=cache))
        assert st.stats["ran"] == 0, st.stats
        warm.append(t)
        m.set_param(mid, "k", -1 - i)
        t, st = _timed(partial(eng.run, ex, cache=cache))
        edit.append(t)
        out["edit_ran"] = st.stats["ran"]
        eng.close()
    out.update(cold=min(cold), warm=min(warm), edit=min(edit))
    return out


def phases(shape: str, n: int, repeat: int) -> None:
    """Where a cold run's time goes (best of ``repeat`` per phase).

    A run walks the graph once for keys, plan and tasks ("one pass"); the three rows above it
    time the same work done in separate walks, as runs with ``outputs=`` and warm runs do.
    The cyclic GC is paused around planning, as in a run.
    """
    from vortex_jupyter.engine.executor import BatchCallbacks, CancelToken
    from vortex_jupyter.engine.plan import make_plan
    from vortex_jupyter.engine.run import _planning_gc, _TaskMaker
    from vortex_jupyter.engine.state import RunState

    m = build(shape, n)
    ex = InProcessExecutor()
    best: dict[str, float] = {}
    for _ in range(repeat):
        t: dict[str, float] = {}
        eng, cache = Engine(m, LOOKUP), OutputCache(ex)
        order = eng.planner.order(0)
        with _planning_gc(True):  # the separate walks, on an engine of their own
            t["keys"], keymap = _timed(lambda: eng.keys.ensure(order))  # noqa: B023
            t["plan"], plan = _timed(lambda: make_plan(list(keymap), keymap, cache.index, set()))  # noqa: B023
            make = _TaskMaker(eng, keymap, cache, "r", None, [])
            make.planned_keys = set(keymap.values())
            t["tasks"], _ = _timed(lambda: [make(n, keymap[n]) for n in plan.planned])  # noqa: B023
        eng.close()
        eng, cache = Engine(m, LOOKUP), OutputCache(ex)
        with _planning_gc(True):
            t["validate+order"], order = _timed(lambda: (eng.memo.check(LOOKUP),  # noqa: B023
                                                         eng.planner.order(0, eng.memo.take_order()))[1])  # noqa: B023
            make = _TaskMaker(eng, eng.keys.keys, cache, "r", None, [])
            t["one pass"], (plan, tasks) = _timed(
                lambda: eng._plan_in_one_pass(order, set(), cache, make))  # noqa: B023
            make.wiring.keys = dict(eng.keys.keys)  # the run's key snapshot, as in Engine._prepare
        state = RunState("r", ex, cache)
        state.begin(plan, dict(eng.keys.keys))
        cb = BatchCallbacks(state.observe, state.on_result, cache.drop, detail=False)
        t["execute"], _ = _timed(lambda: ex.execute(tasks, cb, CancelToken()))  # noqa: B023
        for k, v in t.items():
            best[k] = min(best.get(k, 1e9), v)
        eng.close()
    base = min(baseline(m) for _ in range(repeat))
    print(f"cold run of a {n:,}-node {shape}, by phase (best of {repeat}); baseline {base * 1e3:.1f} ms")
    for k in ("validate+order", "keys", "plan", "tasks", "one pass", "execute"):
        v = best[k]
        note = "  (separate walk)" if k in ("keys", "plan", "tasks") else ""
        print(f"  {k:<15}{v * 1e3:>8.1f} ms {v / n * 1e6:>6.2f} us/node{note}")
    total = best["validate+order"] + best["one pass"] + best["execute"]
    print(f"  {'run total':<15}{total * 1e3:>8.1f} ms {total / n * 1e6:>6.2f} us/node  (validate+order, one pass, execute)")


_EXECUTED = [0]


def _work3(a: int = 0, b: int = 0, c: int = 0, k: int = 0) -> tuple[int]:
    _EXECUTED[0] += 1
    for _ in range(300):  # ~20 us of work, so that computing a node twice shows
        k = (k * 31 + 7) % 1000003
    return ((a + b + c + k) % 1000003,)


WORK = NodeSpec("Work3", SPEC.inputs, SPEC.outputs, fn=_work3)
WORK_LOOKUP: Callable[[str], NodeSpec | None] = {"Work3": WORK}.get


def _together(m: GraphModel, runs: int) -> tuple[float, int]:
    """Wall time and node executions of ``runs`` cold runs of ``m`` started together."""
    ex = InProcessExecutor()
    eng, cache = Engine(m, WORK_LOOKUP), OutputCache(ex)
    threads = [threading.Thread(target=eng.run, args=(ex,), kwargs={"cache": cache}) for _ in range(runs)]
    gc.collect()
    _EXECUTED[0] = 0
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    eng.close()
    return elapsed, _EXECUTED[0]


def _after(m: GraphModel) -> tuple[float, int]:
    """Two runs of ``m``, the second started when the first finished (it finds all cached)."""
    ex = InProcessExecutor()
    eng, cache = Engine(m, WORK_LOOKUP), OutputCache(ex)
    _EXECUTED[0] = 0
    t0 = time.perf_counter()
    eng.run(ex, cache=cache)
    eng.run(ex, cache=cache)
    elapsed = time.perf_counter() - t0
    eng.close()
    return elapsed, _EXECUTED[0]


def concurrent(n: int, repeat: int) -> None:
    """Two runs of one ``n``-node DAG at once vs one run (see the module docstring)."""
    m = build("dag", n, node_type="Work3")
    rows = {"1 run (baseline)": lambda: _together(m, 1), "2 runs together": lambda: _together(m, 2),
            "2 runs, one after the other": lambda: _after(m)}
    best: dict[str, tuple[float, int]] = {}
    for _ in range(repeat):  # interleaved, so that the machine's moods hit every row alike
        for name, fn in rows.items():
            t, executed = fn()
            if name not in best or t < best[name][0]:
                best[name] = (t, executed)
    base_t, base_n = best["1 run (baseline)"]
    head = f"{'runs of a ' + format(n, ',') + '-node dag':<30}{'wall':>9}{'(x 1 run)':>10}{'node executions':>17}{'(x 1 run)':>10}"
    print(head)
    print("-" * len(head))
    for name, (t, executed) in best.items():
        print(f"{name:<30}{t * 1e3:>8.1f}m{t / base_t:>9.2f}x{executed:>17,}{executed / base_n:>9.2f}x")
    print(f"best of {repeat}, in-process executor; each node ~20 us of work; two runs in threads started together")


def profile(shape: str, n: int) -> None:
    import cProfile
    import pstats

    m = build(shape, n)
    ex = InProcessExecutor()
    eng = Engine(m, LOOKUP)
    prof = cProfile.Profile()
    prof.runcall(eng.run, ex, cache=OutputCache(ex))
    pstats.Stats(prof).sort_stats("tottime").print_stats(20)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1k and 10k nodes only")
    ap.add_argument("--repeat", type=int, default=3, help="best of N (100k: always 1)")
    ap.add_argument("--phases", action="store_true", help="break a cold 10k DAG run down by phase")
    ap.add_argument("--profile", action="store_true", help="cProfile a cold 10k DAG run")
    ap.add_argument("--concurrent", action="store_true", help="only the table of two runs at once")
    args = ap.parse_args()
    if args.concurrent:
        concurrent(1_000, args.repeat)
        return
    if args.phases or args.profile:
        if args.phases:
            phases("dag", 10_000, args.repeat)
        if args.profile:
            profile("dag", 10_000)
        return
    sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]
    head = (f"{'graph':<14}{'baseline':>10}{'validate':>10}{'plan':>9}{'cold run':>10}{'(x base)':>9}"
            f"{'warm':>9}{'(x base)':>9}{'1 edit':>9}{'ran':>7}{'(x base)':>9}")
    print(head)
    print("-" * len(head))
    for n in sizes:
        for shape in ("dag", "chain", "wide"):
            r = measure(shape, n, 1 if n >= 100_000 else args.repeat)
            ms = {k: v * 1e3 for k, v in r.items() if k != "edit_ran"}
            print(f"{shape + ' ' + format(n, ','):<14}{ms['base']:>9.1f}m{ms['validate']:>9.1f}m"
                  f"{ms['plan']:>8.1f}m{ms['cold']:>9.1f}m{r['cold'] / r['base']:>8.2f}x"
                  f"{ms['warm']:>8.1f}m{r['warm'] / r['base']:>8.2f}x{ms['edit']:>8.1f}m"
                  f"{int(r['edit_ran']):>7}{r['edit'] / r['base']:>8.2f}x")
    print("times in ms (m), best of --repeat; 'plan' = a fresh engine's validate + topological order + keys\n"
          "+ planned/cached split; 'cold run' = plan + tasks + execute; 'warm' = nothing changed;\n"
          "'1 edit' = one param of the middle node changed ('ran' nodes re-ran); baseline = the same\n"
          "functions called in a plain loop in topological order (no keys, cache or events)")
    print()
    concurrent(1_000, args.repeat)


if __name__ == "__main__":
    main()
