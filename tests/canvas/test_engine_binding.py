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
    session_for(g).relay.views["A"] = lambda msg, bufs: events.append(msg.get("event", {}).get("kind", msg["t"]))
    g.run(executor="inline")
    assert events[0] == "state" and "run_started" in events and events[-2:] == ["run_finished", "state"]
    assert events.count("node_finished") + events.count("node_cached") == 3  # the cache is process-wide
    assert NodePreview.kind not in events  # no images in a math graph


def test_a_run_that_cannot_start_is_reported_to_the_views_and_the_toolbar_resets() -> None:
    import time

    g = vx.Graph()
    g.add("PreviewImage", id="p")  # its required image input is missing
    sent: list[dict] = []
    session = session_for(g)
    session.attach("A", lambda msg, bufs: sent.append(msg))
    session.start(None, lambda msg, bufs: sent.append(msg))
    deadline = time.monotonic() + 10
    while session.running and time.monotonic() < deadline:
        time.sleep(0.01)
    errors = [m for m in sent if m["t"] == "error"]
    assert errors and errors[0]["code"] == "VE-100" and "p.images" in errors[0]["message"]
    assert [m["running"] for m in sent if m["t"] == "state"] == [True, False]


def test_a_refused_run_sends_its_problems_for_the_nodes_and_a_short_toast() -> None:
    import time

    g = vx.Graph()
    g.model.add_node("NotARealNode", {"foo": 1}, id="ghost")
    g.add("KSampler", id="k")  # four required links missing
    sent: list[dict] = []
    session = session_for(g)
    session.attach("A", lambda msg, bufs: sent.append(msg))
    session.start(None, lambda msg, bufs: sent.append(msg))
    deadline = time.monotonic() + 10
    while session.running and time.monotonic() < deadline:
        time.sleep(0.01)
    error = next(m for m in sent if m["t"] == "error")
    assert {(p["code"], p["node"]) for p in error["problems"]} >= {("VE-101", "ghost"), ("VE-102", "k")}
    assert len([p for p in error["problems"] if p["node"] == "k"]) == 4
    assert "5 problems, marked on the nodes" in error["message"]
    assert "\n" not in error["message"] and len(error["message"]) < 300  # was the whole list, one toast over the canvas
