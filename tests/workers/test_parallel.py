"""Independent branches of one batch on several workers (``workers/parallel.py``): same outputs
as one worker, locality (a chain never moves its tensors), overlap, failures and deaths."""

from __future__ import annotations

import collections
import os
import signal
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from vortex_jupyter.engine.events import NodeFailed, NodeFinished, NodeStarted
from vortex_jupyter.engine.executor import BatchCallbacks, CancelToken, Lit
from vortex_jupyter.workers.executor import WorkerExecutor
from vortex_jupyter.workers.parallel import cut
from vortex_jupyter.workers.pool import WorkerPool
from vortex_jupyter.workers.supervisor import PoolConfig, default_devices, threads_for

from . import nodes_lib as n
from .conftest import FAST, Recorder, ref, run, task


@pytest.fixture(scope="module")
def two() -> Iterator[WorkerExecutor]:
    pool = WorkerPool(PoolConfig(**{**FAST, "devices": ["cpu", "cpu"]}))
    yield WorkerExecutor(pool)
    pool.close()


@pytest.fixture(scope="module")
def one() -> Iterator[WorkerExecutor]:
    pool = WorkerPool(PoolConfig(**FAST))
    yield WorkerExecutor(pool)
    pool.close()


def wide(k: int, size: int = 50_000) -> list:
    """k independent chains: arange -> scaled -> scaled -> total."""
    tasks = []
    for i in range(k):
        tasks += [task(f"a{i}", n.arange, n=size + i), task(f"b{i}", n.scaled, x=ref(f"a{i}"), k=2.0),
                  task(f"c{i}", n.scaled, x=ref(f"b{i}"), k=0.5 + i), task(f"d{i}", n.total, x=ref(f"c{i}"))]
    return tasks


def well_formed(rec: Recorder, nodes: list[str]) -> None:
    """Each node: exactly one NodeStarted, then exactly one NodeFinished or NodeFailed."""
    seen: dict[str, list[str]] = collections.defaultdict(list)
    for e in rec.events:
        if isinstance(e, (NodeStarted, NodeFinished, NodeFailed)):
            seen[e.node].append(type(e).__name__)
    for node in nodes:
        assert seen[node] in (["NodeStarted", "NodeFinished"], ["NodeStarted", "NodeFailed"], ["NodeFailed"]), (
            node, seen[node])


def test_chains_are_cut_where_branches_split_and_join() -> None:
    diamond = [task("a", n.arange, n=10), task("b", n.total, x=ref("a")), task("c", n.scaled, x=ref("a")),
               task("d", n.add, a=ref("b"), b=ref("c"))]
    chains = cut(diamond)
    assert [[t.node_id for t in c.tasks] for c in chains] == [["a", "b"], ["c"], ["d"]]
    assert [c.needs for c in chains] == [[], ["key-a"], ["key-b", "key-c"]]
    assert len(cut(wide(3))) == 3


def test_a_wide_graph_on_two_workers_gives_one_worker_s_outputs_and_never_moves_a_chain_s_tensors(
        one: WorkerExecutor, two: WorkerExecutor) -> None:
    tasks = wide(6)
    ref_rec = run(one, tasks)
    moves = two.pool.moves
    rec = run(two, tasks)
    for i in range(6):
        assert two.fetch(rec.results[f"d{i}"][0]) == one.fetch(ref_rec.results[f"d{i}"][0])
        np.testing.assert_array_equal(two.fetch(rec.results[f"c{i}"][0]), one.fetch(ref_rec.results[f"c{i}"][0]))
    well_formed(rec, [t.node_id for t in tasks])
    where = {e.node: e.worker for e in rec.events if isinstance(e, NodeFinished)}
    for i in range(6):  # a chain stays on one worker
        assert len({where[f"{s}{i}"] for s in "abcd"}) == 1
    assert len(set(where.values())) == 2  # both workers took chains
    assert two.pool.moves == moves  # no tensor crossed between workers


def test_independent_branches_overlap_in_time(two: WorkerExecutor) -> None:
    run(two, [task("w0", n.sleeps, seconds=0.01), task("w1", n.sleeps, seconds=0.01)])  # both warm
    t0 = time.perf_counter()
    rec = run(two, [task("s0", n.sleeps, seconds=0.6), task("s1", n.sleeps, seconds=0.6)])
    took = time.perf_counter() - t0
    assert rec.finished() == {"s0", "s1"} and took < 1.0, took


def test_a_join_of_two_branches_takes_its_inputs_across_workers(two: WorkerExecutor) -> None:
    tasks = [task("a", n.arange, n=100_000), task("b", n.scaled, x=ref("a"), k=3.0, seconds=0.3),
             task("c", n.scaled, x=ref("a"), k=-1.0, seconds=0.3), task("d", n.add, a=ref("b"), b=ref("c")),
             task("e", n.total, x=ref("d"))]
    rec = run(two, tasks)
    assert two.fetch(rec.results["e"][0]) == pytest.approx(2.0 * np.arange(100_000, dtype=np.float32).sum())
    well_formed(rec, ["a", "b", "c", "d", "e"])


def test_a_failing_branch_costs_its_own_nodes_only(two: WorkerExecutor) -> None:
    tasks = [task("x", n.raises, a=1), task("y", n.total, x=ref("x")), task("z", n.add, a=ref("y"), b=ref("q")),
             task("p", n.arange, n=1000), task("q", n.total, x=ref("p"))]
    rec = run(two, tasks)
    assert rec.failed("x").code == "VE-500" and rec.failed("y").code == "VE-505" and rec.failed("z").code == "VE-505"
    assert two.fetch(rec.results["q"][0]) == float(np.arange(1000, dtype=np.float32).sum())
    well_formed(rec, ["x", "y", "z", "p", "q"])


def test_cancel_fails_the_branches_not_started(two: WorkerExecutor) -> None:
    cancel = CancelToken()
    tasks = [task("s0", n.sleeps, seconds=5), task("s1", n.sleeps, seconds=5),
             task("t", n.add, a=ref("s0"), b=ref("s1"))]
    threading.Timer(0.5, cancel.cancel).start()
    t0 = time.perf_counter()
    rec = run(two, tasks, cancel)
    assert time.perf_counter() - t0 < 4
    assert {rec.failed(x).code for x in ("s0", "s1", "t")} == {"VE-504"}


def test_a_worker_killed_mid_run_costs_its_own_tasks_and_only_its_lost_outputs_run_again(
        two: WorkerExecutor) -> None:
    """Chain X (p -> s -> t) and chain Y (y1 -> y2) start together; X's worker is SIGKILLed while
    s sleeps. s is blamed (it was running), t fails as its dependent, Y is untouched, and z
    (needs p and y2: it starts after the death) gets p run again, on a live worker."""
    tasks = [task("p", n.arange, n=200_000), task("s", n.scaled, x=ref("p"), seconds=3.0),
             task("t", n.total, x=ref("s")),
             task("y1", n.sleeps, seconds=1.5), task("y2", n.sleeps, seconds=0.01),
             task("z", n.add, a=ref("p"), b=ref("y2"))]
    rec = Recorder()
    pool = two.pool
    killed: list[str] = []

    def emit(event: object) -> None:
        rec.events.append(event)  # type: ignore[arg-type]
        if isinstance(event, NodeFinished) and event.node == "p" and not killed:  # not p's second run
            killed.append(event.worker)
            pid = next(w.pid for w in pool.supervisor.workers.values() if w.uid == event.worker)
            threading.Timer(0.4, os.kill, (pid, signal.SIGKILL)).start()

    callbacks = BatchCallbacks(emit, lambda t, refs: rec.results.__setitem__(t.node_id, refs), rec.lost.extend)
    two.execute(tasks, callbacks, CancelToken())
    assert rec.failed("s").code == "VE-502" and rec.failed("t").code == "VE-505"
    starts = collections.Counter(e.node for e in rec.events if isinstance(e, NodeStarted))
    assert starts["p"] == 2 and starts["y1"] == 1 and starts["y2"] == 1 and starts["z"] == 1
    expected = np.arange(200_000, dtype=np.float32) + 0.01
    np.testing.assert_allclose(two.fetch(rec.results["z"][0]), expected)
    second_p = [e.worker for e in rec.events if isinstance(e, NodeFinished) and e.node == "p"][1]
    assert second_p != killed[0]  # p ran again on a live worker, not the dead one's uid


def test_vortex_workers_sets_the_worker_count_and_cpu_workers_share_the_cores(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VORTEX_WORKER_DEVICES", raising=False)
    monkeypatch.setenv("VORTEX_WORKERS", "3")
    devices = default_devices()
    assert len(devices) == 3
    if devices[0] == "cpu":
        assert threads_for(devices, "cpu", 0) == max(1, (os.cpu_count() or 1) // 3)
    assert threads_for(devices, "cpu", 5) == 5 and threads_for(["cpu"], "cpu", 0) == 0
    monkeypatch.setenv("VORTEX_WORKERS", "zero")
    with pytest.raises(Exception, match="VORTEX_WORKERS"):
        default_devices()


def test_chains_passing_a_model_share_its_worker_and_tensor_branches_still_spread(two: WorkerExecutor) -> None:
    """A MODEL output cannot leave its worker: its consumers' chains run where it was made,
    whether it comes from this batch (affinity by port type) or from the cache (the worker's
    report); chains that pass only tensors are free to go elsewhere."""
    from vortex_jupyter.engine.executor import Task
    from vortex_jupyter.nodes.spec import NodeSpec, OutputSpec

    loader = NodeSpec("model", (), (OutputSpec("model", "MODEL"),), fn=n.model)
    loads = Task("m", "key-m", loader, {}, run_id="r1")
    users = [task(f"u{i}", n.uses_model, m=ref("m"), i=i) for i in range(3)]
    tensors = [task(f"t{i}", n.arange, n=10_000 + i) for i in range(3)]
    rec = run(two, [loads, *users, *tensors])
    where = {e.node: e.worker for e in rec.events if isinstance(e, NodeFinished)}
    assert not [e for e in rec.events if isinstance(e, NodeFailed)]
    assert {where[f"u{i}"] for i in range(3)} == {where["m"]}
    assert len(set(where.values())) == 2
    model_ref = rec.results["m"][0]
    assert not model_ref.movable and rec.results["t0"][0].movable
    cached = run(two, [task(f"v{i}", n.uses_model, m=ref("m", held=model_ref), i=i) for i in range(4)])
    assert {e.worker for e in cached.events if isinstance(e, NodeFinished)} == {where["m"]}


def test_workers_sharing_a_device_share_its_memory_budget(one: WorkerExecutor, two: WorkerExecutor) -> None:
    alone = one.fetch(run(one, [task("b", n.ram_budget)]).results["b"][0])
    shared = run(two, [task("b0", n.ram_budget), task("b1", n.sleeps, seconds=0.2), task("b2", n.ram_budget)])
    budgets = {two.fetch(shared.results[k][0]) for k in ("b0", "b2")}
    assert budgets == {alone // 2}


def test_concurrent_runs_with_models_take_different_workers(two: WorkerExecutor) -> None:
    """Each run's models live on one worker, but a run that starts while another holds a worker
    takes the free one instead of queueing behind it."""
    from vortex_jupyter.engine.executor import Task
    from vortex_jupyter.nodes.spec import NodeSpec, OutputSpec

    loader = NodeSpec("slow_model", (), (OutputSpec("model", "MODEL"),), fn=n.slow_model)
    recs: dict[str, Recorder] = {}

    def go(tag: str) -> None:
        recs[tag] = run(two, [Task(f"m{tag}", f"key-m{tag}", loader, {"seconds": Lit(0.6)}, run_id=tag),
                              task(f"u{tag}", n.uses_model, m=ref(f"m{tag}"), i=0)])

    run(two, [task("w0", n.sleeps, seconds=0.01), task("w1", n.sleeps, seconds=0.01)])
    first = threading.Thread(target=go, args=("A",))
    t0 = time.perf_counter()
    first.start()
    deadline = time.monotonic() + 10
    while not any(two.pool.slot_taken(s) for s in two.pool.general_slots()) and time.monotonic() < deadline:
        time.sleep(0.005)
    go("B")
    first.join(30)
    took = time.perf_counter() - t0
    homes = {tag: {e.worker for e in rec.events if isinstance(e, NodeFinished)} for tag, rec in recs.items()}
    assert all(len(h) == 1 for h in homes.values()) and homes["A"] != homes["B"], homes
    assert took < 1.1, took  # side by side, not one after the other
