"""The run queue in the history file: order, priorities, pause, cancel, persistence across restarts."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import vortex_jupyter as vx
from vortex_jupyter.history.db import History
from vortex_jupyter.history.queue import Queue

ROOT = Path(__file__).resolve().parents[2]


@vx.node(category="test")
def queue_sleeper(seconds: float = 0.0, tag: int = 0) -> int:
    time.sleep(seconds)
    return tag


@pytest.fixture
def q(tmp_path: Path) -> Iterator[Queue]:
    queue = Queue(History(tmp_path / "h.sqlite"))
    yield queue
    queue.clear()
    queue.stop()


def _graph(tag: int, seconds: float = 0.0) -> vx.Graph:
    g = vx.Graph()
    g.add("queue_sleeper", seconds=seconds, tag=tag)
    return g


def _run_order(q: Queue, items: list) -> list[int]:
    started = {r["id"]: r["started"] for r in q.history.query("SELECT id, started FROM runs")}
    done = [q.item(i.id) for i in items]
    return [i.id for i in sorted((d for d in done if d.run_id), key=lambda d: started[d.run_id])]


def test_priority_then_submission_order_with_reorder_and_pause(q: Queue) -> None:
    q.pause()
    items = [q.submit(_graph(i), priority=5 if i == 2 else 0) for i in range(4)]
    q.move(items[3], before=items[0])
    assert [i.id for i in q.items()] == [items[2].id, items[3].id, items[0].id, items[1].id]
    time.sleep(0.6)  # paused: nothing starts
    assert {i.status for i in q.items()} == {"queued"} and q.paused
    q.set_priority(items[1], 9)
    q.resume()
    finished = [q.wait(i, 120) for i in items]
    assert {f.status for f in finished} == {"ok"}
    assert _run_order(q, items) == [items[1].id, items[2].id, items[3].id, items[0].id]
    assert vx.history(q.history.path).filter(origin="queue").rows  # the runs are in the history


def test_cancel_a_queued_item_and_the_running_one(q: Queue) -> None:
    long = q.submit(_graph(1, seconds=60))
    waiting = q.submit(_graph(2))
    after = q.submit(_graph(3))
    deadline = time.monotonic() + 60
    while q.item(long.id).status != "running" or not q.item(long.id).run_id:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert q.cancel(waiting).status == "cancelled"
    t0 = time.monotonic()
    q.cancel(long)
    assert q.wait(long, 30).status == "cancelled" and time.monotonic() - t0 < 20
    assert q.wait(after, 60).status == "ok"
    assert q.item(waiting.id).run_id is None  # never ran
    assert [i.id for i in q.items(pending=False)][:3] == [after.id, waiting.id, long.id]


def test_a_graph_is_queued_as_it_was(q: Queue) -> None:
    q.pause()
    g = _graph(1)
    first = q.submit(g)
    next(iter(g.nodes.values())).params["tag"] = 2  # edited after queueing
    second = q.submit(g)
    q.resume()
    runs = [q.wait(i, 60) for i in (first, second)]
    outputs = [vx.history(q.history.path).graph(r.run_id).to_json()["nodes"] for r in runs]
    tags = [o[0]["params"]["tag"] for o in outputs]
    assert tags == [1, 2]


def test_a_queued_run_of_some_outputs_runs_only_what_they_need(q: Queue, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VORTEX_HISTORY", str(q.history.path))
    g = vx.Graph()
    first, second = g.add("queue_sleeper", tag=11), g.add("queue_sleeper", tag=12)
    with pytest.raises(vx.VortexError, match="no node 'nope'"):
        g.queue(outputs=["nope"])
    item = g.queue(outputs=[second])
    done = q.wait(item, 60)
    assert done.status == "ok"
    ran = {r["node"] for r in q.history.query("SELECT node FROM nodes WHERE run_id = ?", (done.run_id,))}
    assert ran == {second.id} and first.id not in ran


def test_the_queue_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    code = textwrap.dedent("""
        import vortex_jupyter as vx
        q = vx.queue()
        q.pause()
        for tag, prio in [(1, 0), (2, 3), (3, 0)]:
            g = vx.Graph()
            g.add("IntAdd", a=tag, b=100)
            g.queue(priority=prio)
        print(",".join(str(i.id) for i in q.items()), flush=True)
    """)
    env = {**os.environ, "VORTEX_HISTORY": str(path),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    order = [int(i) for i in out.stdout.strip().split(",")]
    q = Queue(History(path))  # "the next kernel": it finds them queued, in order, and still paused
    try:
        assert [i.id for i in q.items()] == order and q.paused
        q.resume()
        done = [q.wait(i, 60) for i in order]
        assert {d.status for d in done} == {"ok"}
        assert _run_order(q, done) == order
    finally:
        q.stop()


def test_a_running_item_is_cancelled_from_another_kernel(q: Queue) -> None:
    long = q.submit(_graph(1, seconds=60))
    deadline = time.monotonic() + 60
    while q.item(long.id).status != "running" or not q.item(long.id).run_id:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    other = Queue(q.history, autostart=False)  # another kernel's view of the same file
    assert other.running() is None
    t0 = time.monotonic()
    other.cancel(long)
    assert q.wait(long, 30).status == "cancelled" and time.monotonic() - t0 < 20
