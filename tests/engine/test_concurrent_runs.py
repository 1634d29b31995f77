"""Two runs of one graph in flight at once compute each key once: the later run awaits what the
earlier one computes (its result, its failure, or, if that run gives up, the work itself).

Every test runs on the in-process executor and on a real worker pool. Nodes count their
executions in a log file (they may run in a worker) and wait on gate files, so a test decides
when a node finishes.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from vortex_jupyter.engine.cache import OutputCache
from vortex_jupyter.engine.events import Event, NodeCached, NodeStarted
from vortex_jupyter.engine.executor import CancelToken, Executor
from vortex_jupyter.engine.inprocess import InProcessExecutor
from vortex_jupyter.engine.run import Engine
from vortex_jupyter.engine.state import Run, RunState
from vortex_jupyter.engine.testing import renumbered
from vortex_jupyter.graph.model import GraphModel
from vortex_jupyter.nodes.spec import NodeSpec, OutputSpec, PortSpec

from . import _counting
from .helpers import no_problems

cloudpickle.register_pickle_by_value(_counting)  # the workers cannot import the tests package

FAST: dict[str, Any] = dict(preload=("numpy",), late_preload=(), devices=["cpu"], arena_bytes=64 * 2**20)
SPEC = NodeSpec(
    "Counted",
    (PortSpec("log", "STRING"), PortSpec("k", "INT"), PortSpec("a", "INT", default=0),
     PortSpec("b", "INT", default=0), PortSpec("gate", "STRING", default=""),
     PortSpec("fail", "BOOLEAN", default=False), PortSpec("delay", "FLOAT", default=0.0)),
    (OutputSpec("INT", "INT"),),
    fn=_counting.counted,
)
LOOKUP = {"Counted": SPEC}.get
WAIT = 30.0  # seconds a test waits for anything before it calls it a hang


@pytest.fixture(scope="module")
def pool() -> Iterator[Any]:
    from vortex_jupyter.workers.pool import WorkerPool
    from vortex_jupyter.workers.supervisor import PoolConfig

    p = WorkerPool(PoolConfig(**FAST))
    yield p
    p.close()


@pytest.fixture(params=["inline", "workers"])
def executor(request: pytest.FixtureRequest) -> Executor:
    if request.param == "inline":
        return InProcessExecutor()
    from vortex_jupyter.workers.executor import WorkerExecutor

    return WorkerExecutor(request.getfixturevalue("pool"))


class Started:
    """A run in a thread of its own, with its events."""

    def __init__(self, flow: Flow, engine: Engine, **kw: Any) -> None:
        self.events: list[Event] = []
        self.cancel = CancelToken()
        self.state: RunState | None = None
        self._kw = kw
        self.thread = threading.Thread(target=self._run, args=(flow, engine), daemon=True)
        self.thread.start()

    def _run(self, flow: Flow, engine: Engine) -> None:
        self.state = engine.run(flow.ex, cache=flow.cache, cancel=self.cancel, listeners=[self.events.append],
                                **self._kw)

    def started(self) -> Started:
        _until(lambda: any(e.kind == "run_started" for e in self.events), "the run to start")
        return self

    def wait(self) -> RunState:
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), "the run hangs"
        assert self.state is not None
        return self.state

    def nodes(self, kind: type[Event]) -> set[str]:
        return {e.node for e in self.events if isinstance(e, kind)}  # type: ignore[attr-defined]


class Flow:
    """A graph of ``Counted`` nodes (``n<k>``, value a + b + k), its gates and its log."""

    def __init__(self, tmp: Path, ex: Executor) -> None:
        self.tmp, self.ex = tmp, ex
        self.log = str(tmp / "log")
        self.model = GraphModel()
        self.engine = Engine(self.model, LOOKUP, no_problems)
        self.cache = OutputCache(ex)

    def node(self, k: int, *sources: str, gated: bool = False, **params: Any) -> str:
        gate = str(self.tmp / f"go{k}") if gated else ""
        n = self.model.add_node("Counted", {"log": self.log, "k": k, "gate": gate, **params}, id=f"n{k}")
        for port, src in zip("ab", sources):
            self.model.connect(src, 0, n, port)
        return n

    def open(self, k: int) -> None:
        (self.tmp / f"go{k}").touch()

    def start(self, engine: Engine | None = None, **kw: Any) -> Started:
        return Started(self, engine or self.engine, **kw)

    def counts(self) -> Counter[int]:
        path = Path(self.log)
        return Counter(int(line) for line in path.read_text().split()) if path.exists() else Counter()

    def running(self, k: int, times: int = 1) -> None:
        _until(lambda: self.counts()[k] >= times, f"node n{k} to start")

    def settled(self) -> None:
        """Nothing pinned, no claim left: the runs cleaned up after themselves."""
        assert self.cache._pins == {} and len(self.cache.inflight) == 0


def _until(cond: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def _values(state: RunState) -> dict[str, int]:
    return {n: v[0] for n, v in Run(state, CancelToken()).outputs.items()}


def test_a_run_started_while_another_computes_awaits_its_keys_and_each_node_runs_once(tmp_path, executor):
    f = Flow(tmp_path, executor)
    n0 = f.node(0, gated=True)
    n1 = f.node(1, n0)
    n2 = f.node(2, n1)
    n3 = f.node(3, n0)
    f.node(4, n2, n3)
    first = f.start()
    f.running(0)
    second = f.start().started()
    f.open(0)
    one, two = first.wait(), second.wait()
    assert f.counts() == {0: 1, 1: 1, 2: 1, 3: 1, 4: 1}
    expected = {"n0": 0, "n1": 1, "n2": 3, "n3": 3, "n4": 10}
    assert _values(one) == expected == _values(two)
    assert one.stats == {"ran": 5, "cached": 0, "failed": 0}
    assert two.stats == {"ran": 0, "cached": 5, "failed": 0} and two.status == "ok"
    # the second run reports what the first computed for it as cached, and started nothing
    assert second.nodes(NodeCached) == set(expected) and not second.nodes(NodeStarted)
    assert two.served == set(expected) and set(second.events[0].planned) == set(expected)  # type: ignore[attr-defined]
    f.settled()


def test_a_failure_in_the_run_computing_a_key_is_the_waiting_runs_failure_too(tmp_path, executor):
    f = Flow(tmp_path, executor)
    n0 = f.node(0, gated=True)
    bad = f.node(1, n0, fail=True)
    f.node(2, bad)
    f.node(3)
    first = f.start()
    f.running(0)
    second = f.start().started()
    f.open(0)
    one, two = first.wait(), second.wait()
    assert f.counts() == {0: 1, 1: 1, 3: 1}  # n2 never ran: its input failed
    mine, theirs = two.errors["n1"], one.errors["n1"]
    assert (mine.code, mine.message, mine.error_type) == (theirs.code, theirs.message, "ValueError")
    assert "boom in node 1" in mine.message and "boom in node 1" in (mine.traceback or "")
    assert two.errors["n2"].code == "VE-505" and "'n1'" in two.errors["n2"].message
    assert two.status == "failed" and _values(two) == {"n0": 0, "n3": 3}
    f.settled()


def test_cancelling_the_run_computing_a_key_makes_the_waiting_run_compute_it(tmp_path, executor):
    f = Flow(tmp_path, executor)
    n0 = f.node(0)
    n1 = f.node(1, n0, gated=True)
    n2 = f.node(2, n1, gated=True)
    f.node(3, n2)
    first = f.start()
    f.running(1)
    second = f.start().started()  # n0 is cached for it; n1, n2 and n3 are awaited
    f.open(1)
    f.running(2)  # the first run has stored n1 and computes n2
    first.cancel.cancel()
    assert first.wait().status == "cancelled"
    f.open(2)
    two = second.wait()
    assert two.status == "ok" and _values(two) == {"n0": 0, "n1": 1, "n2": 3, "n3": 6}
    # n1 came from the first run; n2 (interrupted there) and n3 were computed by the second
    assert f.counts() == {0: 1, 1: 1, 2: 2, 3: 1}
    # (n0 is cached, or still in flight when the second run planned: the worker reports n1's
    # start through its status words before n0's result has reached the kernel's cache)
    assert two.stats == {"ran": 2, "cached": 2, "failed": 0} and two.served in ({"n1"}, {"n0", "n1"})
    f.settled()


def test_a_waiting_run_recomputes_what_timed_out_under_a_shorter_timeout_than_its_own(tmp_path, executor):
    f = Flow(tmp_path, executor)
    n0 = f.node(0, gated=True)
    f.node(1, n0)
    first = f.start(node_timeout=0.5)
    f.running(0)
    second = f.start().started()  # no timeout: it may wait for a run that has one
    one = first.wait()
    assert one.errors["n0"].code == "VE-501" and one.errors["n1"].code == "VE-505"
    f.running(0, times=2)  # the second run took n0 over
    f.open(0)
    two = second.wait()
    assert two.status == "ok" and _values(two) == {"n0": 0, "n1": 1}
    assert f.counts() == {0: 2, 1: 1} and two.stats["ran"] == 2
    f.settled()


def test_a_run_with_a_timeout_does_not_wait_for_a_run_without_one(tmp_path, executor):
    f = Flow(tmp_path, executor)
    f.node(0, gated=True)
    first = f.start()
    f.running(0)
    second = f.start(node_timeout=WAIT).started()
    f.open(0)
    assert first.wait().status == "ok" and second.wait().status == "ok"
    assert f.counts() == {0: 2}  # waiting could have outlasted the second run's own bound
    f.settled()


def test_a_renumbered_copy_of_the_graph_shares_the_work_and_names_the_other_node_in_failures(tmp_path):
    f = Flow(tmp_path, InProcessExecutor())
    n0 = f.node(0, gated=True)
    f.node(1, n0, fail=True)
    copy, ids = renumbered(f.model, seed=3)
    other = Engine(copy, LOOKUP, no_problems)
    first = f.start()
    f.running(0)
    second = f.start(other).started()
    f.open(0)
    first.wait()
    two = second.wait()
    assert f.counts() == {0: 1, 1: 1}
    assert _values(two) == {ids["n0"]: 0}
    err = two.errors[ids["n1"]]
    assert err.code == "VE-500" and "boom in node 1" in err.message
    assert "node 'n1' of run" in err.message and "has the same inputs" in err.message
    f.settled()


def test_many_overlapping_runs_with_cancels_never_hang_and_compute_each_key_once_unless_interrupted(tmp_path):
    rng = random.Random(7)
    f = Flow(tmp_path, InProcessExecutor())
    ids: list[str] = []
    for k in range(24):
        srcs = rng.sample(ids, min(len(ids), rng.randint(0, 2)))
        n = f.model.add_node("Counted", {"log": f.log, "k": k, "delay": 0.01}, id=f"x{rng.randrange(10**6)}-{k}")
        for port, s in zip("ab", srcs):
            f.model.connect(s, 0, n, port)
        ids.append(n)
    expected = _expected(f.model)
    runs = []
    for i in range(8):
        outputs = None if i % 3 == 0 else rng.sample(ids, rng.randint(1, 3))
        runs.append(f.start(outputs=outputs))
        time.sleep(rng.uniform(0, 0.03))
    cancelled = rng.sample(runs, 2)
    for r in cancelled:
        r.cancel.cancel()
    states = [r.wait() for r in runs]
    for r, st in zip(runs, states):
        if r in cancelled and st.status == "cancelled":
            continue
        assert st.status == "ok", (st.status, st.errors)
        assert _values(st) == {n: expected[n] for n in st.node_keys}
    counts = f.counts()
    assert max(counts.values()) <= 1 + len(cancelled)
    assert sum(counts.values()) <= len(ids) + len(cancelled)
    f.settled()


def _expected(m: GraphModel) -> dict[str, int]:
    from vortex_jupyter.engine.plan import topo_order

    values: dict[str, int] = {}
    for n in topo_order(m):
        node = m.nodes[n]
        values[n] = node.params["k"] + sum(values[e[0].src] for e in m.inputs_of(n).values())
    return values
