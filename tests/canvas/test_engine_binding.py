"""Browser edits through the relay invalidate exactly the affected cache keys of a real ``vx.Graph``."""

from __future__ import annotations

import vortex_jupyter as vx
from vortex_jupyter.canvas.session import session_for
from vortex_jupyter.engine.events import NodePreview

from .conftest import Replica


def _graph() -> tuple[vx.Graph, str, str, str]:
    g = vx.Graph()
    a = g.add("IntAdd", a=1, b=2)
    b = g.add("IntAdd", a=a.out(0), b=5)
    c = g.add("IntMultiply", a=3, b=4)
    return g, a.id, b.id, c.id


def _view(g: vx.Graph, name: str) -> Replica:
    view = Replica(session_for(g).relay, name)
    view.connect()
    return view


def test_a_param_edit_in_a_view_reruns_only_that_node_and_its_descendants() -> None:
    g, a, b, _c = _graph()
    g.run(executor="inline")
    view = _view(g, "A")
    view.nodes[b]["params"]["b"] = 10.0  # a float on the wire, INT in the spec
    run = g.run(executor="inline")
    assert run.stats == {"ran": 1, "cached": 2, "failed": 0}
    assert run.outputs[b] == (13,)
    view.nodes[a]["params"]["a"] = 2.0
    run = g.run(executor="inline")
    assert run.stats == {"ran": 2, "cached": 1, "failed": 0} and run.outputs[b] == (14,)


def test_moving_or_retitling_a_node_in_a_view_invalidates_nothing() -> None:
    g, a, _b, c = _graph()
    g.run(executor="inline")
    view = _view(g, "A")
    view.nodes[a]["x"] = 500.0
    view.nodes[c]["title"] = "product"
    assert g.nodes[a].pos == (500.0, 0.0) and g.nodes[c].title == "product"
    assert g.run(executor="inline").stats == {"ran": 0, "cached": 3, "failed": 0}


def test_an_edge_made_in_a_view_reruns_the_destination() -> None:
    g, a, _b, c = _graph()
    g.run(executor="inline")
    view = _view(g, "A")
    view.edges[f"{c}:a"] = {"src": a, "src_output": 0, "dst": c, "dst_input": "a"}
    run = g.run(executor="inline")
    assert run.stats == {"ran": 1, "cached": 2, "failed": 0} and run.outputs[c] == (12,)


def test_python_edits_and_runs_reach_the_view() -> None:
    g, _a, _b, c = _graph()
    view = _view(g, "A")
    g.nodes[c].params["b"] = 7
    assert view.nodes[c]["params"]["b"] == 7
    events: list[str] = []
    session_for(g).attach("E", lambda msg, bufs: events.append(msg.get("event", {}).get("kind", msg["t"])), y=False)
    g.run(executor="inline")
    assert events[0] == "state" and "run_started" in events and events[-2:] == ["run_finished", "state"]
    assert events.count("node_finished") + events.count("node_cached") == 3  # the cache is process-wide
    assert NodePreview.kind not in events  # no images in a math graph


def _start_from_the_canvas(g: vx.Graph) -> list[dict]:
    """Press Run on a view of ``g``; what the views and the reply got once the run is over."""
    import time

    sent: list[dict] = []
    session = session_for(g)
    session.attach("A", lambda msg, bufs: sent.append(msg))
    session.start(None, lambda msg, bufs: sent.append(msg))
    deadline = time.monotonic() + 10
    while session.running and time.monotonic() < deadline:
        time.sleep(0.01)
    return sent


def test_a_run_that_cannot_start_is_reported_to_the_views_and_the_toolbar_resets() -> None:
    g = vx.Graph()
    g.add("PreviewImage", id="p")  # its required image input is missing
    sent = _start_from_the_canvas(g)
    errors = [m for m in sent if m["t"] == "error"]
    assert errors and errors[0]["code"] == "VE-100" and "p.images" in errors[0]["message"]
    assert [m["running"] for m in sent if m["t"] == "state"] == [True, False]


def test_a_refused_run_sends_its_problems_for_the_nodes_and_a_short_toast() -> None:
    g = vx.Graph()
    g.model.add_node("NotARealNode", {"foo": 1}, id="ghost")
    g.add("KSampler", id="k")  # four required links missing
    sent = _start_from_the_canvas(g)
    error = next(m for m in sent if m["t"] == "error")
    assert {(p["code"], p["node"]) for p in error["problems"]} >= {("VE-101", "ghost"), ("VE-102", "k")}
    assert len([p for p in error["problems"] if p["node"] == "k"]) == 4
    assert "5 problems, marked on the nodes" in error["message"]
    assert "\n" not in error["message"] and len(error["message"]) < 300  # was the whole list, one toast over the canvas


def _image_graph(tmp_path, monkeypatch) -> vx.Graph:  # type: ignore[no-untyped-def]
    import numpy as np
    from PIL import Image

    inp = tmp_path / "input"
    inp.mkdir()
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(inp / "square.png")
    monkeypatch.setenv("VORTEX_INPUT_DIR", str(inp))
    monkeypatch.setenv("VORTEX_OUTPUT_DIR", str(tmp_path / "output"))
    g = vx.Graph()
    load = g.add("LoadImage", id="load", image="square.png")
    g.add("PreviewImage", id="show", images=load.out(0))
    g.add("IntDivide", id="bad", a=1, b=0)  # fails: division by zero
    g.add("IntAdd", id="ok", a=1, b=2)
    return g


def test_a_run_made_before_the_canvas_opened_is_shown_when_it_opens(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # g.run() with no listener records no per-node detail; the canvas fills states in from the plan
    g = _image_graph(tmp_path, monkeypatch)
    run = g.run(executor="inline")
    assert set(run.errors) == {"bad"} and g.last_run is run
    sent: list[tuple[dict, list[bytes]]] = []
    session = session_for(g)
    session.attach("A", lambda msg, bufs: sent.append((msg, bufs)))
    session.hello("A")
    kinds = {(m["event"]["kind"], m["event"].get("node")) for m, _ in sent if m["t"] == "event"}
    assert {("node_finished", "load"), ("node_finished", "show"), ("node_failed", "bad")} <= kinds
    assert {("node_finished", "ok"), ("node_cached", "ok")} & kinds  # the cache is process-wide
    events = [m["event"]["kind"] for m, _ in sent if m["t"] == "event"]
    assert events[0] == "run_started" and events[-1] == "run_finished"
    assert all(m.get("replay") for m, _ in sent if m["t"] == "event")
    images = [(m, bufs) for m, bufs in sent if m["t"] == "image"]
    assert [m["node"] for m, _ in images] == ["show"] and images[0][1][0][:8] == b"\x89PNG\r\n\x1a\n"


def test_a_run_still_going_when_the_canvas_opens_is_shown_once_it_ends(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import threading
    import time

    gate = threading.Event()

    @vx.node(category="test", always_run=True)
    def waits_for_gate(value: int = 0) -> int:
        gate.wait(10)
        return value

    g = vx.Graph()
    g.add("waits_for_gate", id="slow", value=3)
    run = g.start(executor="inline")
    sent: list[dict] = []
    session = session_for(g)
    session.attach("A", lambda msg, bufs: sent.append(msg))
    assert not run.done and not session.history  # nothing to show yet
    gate.set()
    run.wait()
    deadline = time.monotonic() + 10
    while not any(m["t"] == "event" and m["event"]["kind"] == "run_finished" for m in sent):
        assert time.monotonic() < deadline, sent
        time.sleep(0.01)
    assert ("node_finished", "slow") in {(m["event"]["kind"], m["event"].get("node")) for m in sent if m["t"] == "event"}


def test_a_newer_run_seen_by_the_canvas_is_not_replaced_by_an_older_one() -> None:
    g, _a, _b, c = _graph()
    first = g.run(executor="inline")
    session = session_for(g)
    assert session.history[0]["run_id"] == first.run_id
    g.nodes[c].params["b"] = 9
    second = g.run(executor="inline")
    assert session.history[0]["run_id"] == second.run_id
    assert not session._adopt(first)  # a late adoption of an older run changes nothing
    assert session.history[0]["run_id"] == second.run_id

