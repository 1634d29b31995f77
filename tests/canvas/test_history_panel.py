"""The canvas's history panel and Queue button, at the message level: real messages into a
``CanvasSession``, a real history file (``VORTEX_HISTORY``), real runs and the real queue."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import vortex_jupyter as vx
from vortex_jupyter.canvas.session import CanvasSession, session_for

from .conftest import Replica

BIG_SEED = 2**60 + 7  # past JS's 2**53 - 1: travels as text


@vx.node(category="test")
def panel_seeded(seed: int = 0, text: str = "", a: int = 1) -> int:
    return (seed + a) % 1000


@pytest.fixture(autouse=True)
def history_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "history.sqlite"
    monkeypatch.setenv("VORTEX_HISTORY", str(path))
    monkeypatch.setenv("VORTEX_EXECUTOR", "inline")  # the queue's runs, too: test nodes live here
    monkeypatch.setenv("VORTEX_OUTPUT_DIR", str(tmp_path / "output"))
    yield path
    from vortex_jupyter.history import queue as queue_module

    q = queue_module._QUEUES.pop(str(path), None)  # the runner this test started
    if q is not None:
        q.clear()
        q.stop()


class View:
    """One view at the message level: what it sends, and what it got back."""

    def __init__(self, session: CanvasSession, name: str) -> None:
        self.session, self.name = session, name
        self.inbox: list[tuple[dict[str, Any], list[bytes]]] = []
        session.attach(name, lambda msg, bufs: self.inbox.append((msg, list(bufs))), y=False)

    def send(self, msg: dict[str, Any]) -> None:
        self.session.receive(self.name, msg, [])

    def got(self, kind: str) -> list[dict[str, Any]]:
        return [m for m, _ in self.inbox if m["t"] == kind]

    def ask(self, msg: dict[str, Any], kind: str) -> tuple[dict[str, Any], list[bytes]]:
        """Send ``msg``; the one reply of type ``kind`` (or the error it got instead)."""
        self.inbox.clear()
        self.send(msg)
        replies = [(m, b) for m, b in self.inbox if m["t"] in (kind, "error")]
        assert len(replies) == 1, self.inbox
        return replies[0]

    def error(self, msg: dict[str, Any]) -> dict[str, Any]:
        reply, _ = self.ask(msg, "error")
        assert reply["t"] == "error", reply
        return reply


def wait_for(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
    return value


def canvas_run(session: CanvasSession) -> str:
    """Press Run on the canvas and wait until it is over; the run's id."""
    session.start(None, lambda msg, bufs: None)
    run = session.run
    run.wait()
    wait_for(lambda: not session.running)
    return str(run.run_id)


def _graph() -> tuple[vx.Graph, str, str]:
    g = vx.Graph()
    a = g.add("IntAdd", id="a", a=1, b=2)
    g.add("IntAdd", id="b", a=a.out(0), b=3)
    s = g.add("panel_seeded", id="s", seed=BIG_SEED, text="a red fox", a=2)
    return g, a.id, s.id


def test_history_lists_runs_newest_first_with_origin_counts_and_seeds() -> None:
    g, a, s = _graph()
    session = session_for(g)
    view = View(session, "A")
    first = canvas_run(session)
    g.nodes[a].params["b"] = 20
    second = g.run().run_id  # from Python: origin "notebook"
    reply, buffers = view.ask({"t": "history"}, "runs")
    rows = reply["rows"]
    assert [r["id"] for r in rows[:2]] == [second, first] and buffers == []
    newest, older = rows[0], rows[1]
    assert (older["origin"], older["status"], older["ran"], older["cached"], older["failed"]) == ("canvas", "ok", 3, 0, 0)
    assert (newest["origin"], newest["ran"], newest["cached"]) == ("notebook", 2, 1)
    assert older["elapsed"] > 0 and older["started"] <= newest["started"]
    assert older["seeds"] == {s: str(BIG_SEED)} and older["prompts"] == {s: "a red fox"}
    json.dumps(reply)  # plain JSON all through


def test_history_filters_and_limits() -> None:
    g, a, _s = _graph()
    session = session_for(g)
    view = View(session, "A")
    canvas_run(session)
    g.run()
    g.nodes[a].params["b"] = 7
    latest = canvas_run(session)
    rows = view.ask({"t": "history", "filter": {"origin": "canvas"}, "limit": 1}, "runs")[0]["rows"]
    assert [r["id"] for r in rows] == [latest]
    rows = view.ask({"t": "history", "filter": {"status": ["failed"], "since": 0}}, "runs")[0]["rows"]
    assert rows == []
    rows = view.ask({"t": "history", "filter": {"node_type": "panel_seeded", "origin": "notebook"}}, "runs")[0]["rows"]
    assert [r["origin"] for r in rows] == ["notebook"]


def test_diff_shows_what_a_restore_would_change_and_restore_brings_the_graph_back_for_every_view() -> None:
    g, a, _s = _graph()
    session = session_for(g)
    view = View(session, "A")
    replica = Replica(session.relay, "R")  # a browser's replica of the doc
    replica.connect()
    recorded = canvas_run(session)
    replica.nodes[a]["params"]["b"] = 20.0  # an edit made in a browser
    g.disconnect("b", "a")
    assert g.nodes[a].params["b"] == 20
    diff, _ = view.ask({"t": "diff", "run_id": recorded}, "run_diff")
    assert diff == {"t": "run_diff", "run_id": recorded, "errors": [],
                    "lines": [f"node {a} (IntAdd): b 2 -> 20", f"removed link {a}.0 -> b.a"]}
    restored, _ = view.ask({"t": "restore", "run_id": recorded}, "restored")
    assert restored == {"t": "restored", "run_id": recorded, "edits": 2}
    assert g.nodes[a].params["b"] == 2
    assert [(e.src, e.dst, e.dst_input) for e in g.model.edges()] == [(a, "b", "a")]
    assert replica.nodes[a]["params"]["b"] == 2  # the doc followed: every view sees it
    assert "b:a" in replica.edges
    assert view.ask({"t": "diff", "run_id": recorded}, "run_diff")[0]["lines"] == []
    assert g.run().stats["ran"] == 0  # the restored version is the cached one


def test_a_failed_runs_diff_carries_its_node_errors() -> None:
    g = vx.Graph()
    g.add("IntDivide", id="bad", a=1, b=0)
    session = session_for(g)
    view = View(session, "A")
    run_id = canvas_run(session)
    diff, _ = view.ask({"t": "diff", "run_id": run_id}, "run_diff")
    assert diff["lines"] == [] and len(diff["errors"]) == 1
    assert diff["errors"][0].startswith("bad (IntDivide): VE-5") and "division" in diff["errors"][0]
    rows = view.ask({"t": "history"}, "runs")[0]["rows"]
    assert (rows[0]["status"], rows[0]["failed"]) == ("failed", 1)


def test_the_gallery_sends_thumbnails_as_buffers_with_their_seed_and_prompt() -> None:
    g = vx.Graph()
    g.add("panel_seeded", id="s", seed=42, text="a blue square")
    img = g.add("EmptyImage", id="img", width=32, height=16, batch_size=1, color=0x0000FF)
    g.add("SaveImage", id="save", images=img.out(0), filename_prefix="panel")
    session = session_for(g)
    view = View(session, "A")
    run_id = canvas_run(session)
    reply, buffers = view.ask({"t": "gallery", "limit": 5}, "gallery_items")
    [item] = reply["items"]
    assert (item["run_id"], item["node"], item["thumb"]) == (run_id, "save", 0)
    assert item["seeds"] == {"s": 42} and item["prompts"] == {"s": "a blue square"}
    assert Path(item["path"]).name.startswith("panel") and len(item["sha256"]) == 64
    assert len(buffers) == 1 and buffers[0][:8] == b"\x89PNG\r\n\x1a\n"
    text = json.dumps(reply)  # the JSON holds no image: the bytes ride as a buffer
    assert len(text) < 1000 and "iVBOR" not in text


def test_clicking_a_thumbnail_restores_that_images_graph() -> None:
    g = vx.Graph()
    img = g.add("EmptyImage", id="img", width=8, height=8, batch_size=1, color=0xFF0000)
    g.add("SaveImage", id="save", images=img.out(0), filename_prefix="red")
    session = session_for(g)
    view = View(session, "A")
    canvas_run(session)
    g.nodes["img"].params["color"] = 0x00FF00
    canvas_run(session)
    items = view.ask({"t": "gallery"}, "gallery_items")[0]["items"]
    assert len(items) == 2
    oldest = items[-1]["run_id"]
    view.ask({"t": "restore", "run_id": oldest}, "restored")
    assert g.nodes["img"].params["color"] == 0xFF0000


@pytest.mark.parametrize(("msg", "code", "words"), [
    ({"t": "restore", "run_id": "no-such-run"}, "VE-000", "no run 'no-such-run'"),
    ({"t": "diff", "run_id": "no-such-run"}, "VE-000", "no run 'no-such-run'"),
    ({"t": "restore"}, "VE-600", "run_id has to be"),
    ({"t": "diff", "run_id": 12}, "VE-600", "run_id has to be"),
    ({"t": "history", "limit": "ten"}, "VE-600", "limit has to be an integer from 1 to 500"),
    ({"t": "history", "limit": 0}, "VE-600", "limit has to be an integer"),
    ({"t": "history", "filter": {"colour": "red"}}, "VE-600", "filter has no key 'colour'"),
    ({"t": "history", "filter": {"origin": 3}}, "VE-600", "filter origin = 3 is not a string"),
    ({"t": "history", "filter": {"since": "last tuesday"}}, "VE-000", "since='last tuesday' is not a time"),
    ({"t": "history", "filter": ["canvas"]}, "VE-600", "filter has to be an object"),
    ({"t": "gallery", "limit": 10_000}, "VE-600", "limit has to be an integer from 1 to 200"),
    ({"t": "queue", "priority": "high"}, "VE-600", "priority has to be an integer"),
    ({"t": "queue_cancel"}, "VE-600", "item has to be an integer"),
    ({"t": "queue_cancel", "item": 987654}, "VE-000", "no queue item 987654"),
])
def test_bad_requests_are_answered_with_an_error_and_change_nothing(msg: dict[str, Any], code: str, words: str) -> None:
    g, _a, _s = _graph()
    session = session_for(g)
    view = View(session, "A")
    before = g.to_json()
    error = view.error(msg)
    assert error["code"] == code and words in error["message"], error
    assert g.to_json() == before


def test_the_queue_button_queues_the_graph_and_every_view_sees_the_pending_count() -> None:
    g, a, _s = _graph()
    session = session_for(g)
    first, second = View(session, "A"), View(session, "B")
    first.send({"t": "queue_pause"})
    assert first.got("queue_items")[-1] == second.got("queue_items")[-1] == {"t": "queue_items", "items": [],
                                                                              "paused": True}
    first.send({"t": "queue", "priority": 2})
    g.nodes[a].params["b"] = 11  # queued as it was: a later edit does not change the item
    first.send({"t": "queue"})
    state = second.got("queue_items")[-1]
    assert [(i["status"], i["priority"], i["origin"]) for i in state["items"]] == [
        ("queued", 2, "canvas"), ("queued", 0, "canvas")]
    assert state["paused"] is True
    listed, _ = second.ask({"t": "queue_list"}, "queue_items")
    assert listed == state and first.got("queue_items")[-1] == state  # a list is the asker's only
    late = View(session, "C")
    session.hello("C")
    assert late.got("queue_items") == [state]  # a view that opens later shows the count
    cancelled = state["items"][1]["id"]
    first.send({"t": "queue_cancel", "item": cancelled})
    assert [i["id"] for i in second.got("queue_items")[-1]["items"]] == [state["items"][0]["id"]]
    first.send({"t": "queue_resume"})
    # the item runs on the queue's thread; the session's poll tells every view it is done
    wait_for(lambda: second.got("queue_items")[-1]["items"] == [])
    assert second.got("queue_items")[-1]["paused"] is False
    rows = first.ask({"t": "history", "filter": {"origin": "canvas"}}, "runs")[0]["rows"]
    assert len(rows) == 1 and rows[0]["status"] == "ok" and rows[0]["ran"] == 3


def test_a_graph_with_problems_is_not_queued_and_its_problems_are_marked() -> None:
    g = vx.Graph()
    g.add("PreviewImage", id="p")  # its required image input is missing
    session = session_for(g)
    view = View(session, "A")
    error = view.error({"t": "queue"})
    assert error["code"] == "VE-100" and error["message"].startswith("the graph was not queued")
    assert [(p["node"], p["code"]) for p in error["problems"]] == [("p", "VE-102")]
    assert view.got("queue_items") == []  # nothing was queued
