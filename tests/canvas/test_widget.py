"""``vx.Canvas`` through its message seam: views of one graph, runs, events and images."""

from __future__ import annotations

import threading
from typing import Any

from pycrdt import Doc, Map, create_sync_message, handle_sync_message

from vortex_jupyter.canvas.protocol import MAX_SAFE_INT
from vortex_jupyter.canvas.widget import Canvas
from vortex_jupyter.engine.events import NodeFailed, NodePreview, NodeProgress, RunFinished, RunStarted
from vortex_jupyter.graph.model import GraphModel

PNG = b"\x89PNG\r\n\x1a\n fake image bytes"


class FakeRun:
    def __init__(self, graph: StandInGraph) -> None:
        self.graph, self.done, self.cancelled = graph, False, False
        self.release = threading.Event()

    def cancel(self) -> None:
        self.cancelled = True
        self.release.set()

    def wait(self) -> FakeRun:
        self.release.wait(10)
        self.done = True
        return self


class StandInGraph:
    """What the canvas uses of ``vx.Graph``: ``model``, ``start``, ``on_event``."""

    def __init__(self) -> None:
        self.model = GraphModel()
        self.model.add_node("SaveImage", {"filename_prefix": "x"}, id="save")
        self.listeners: list[Any] = []
        self.started: list[Any] = []

    def on_event(self, fn: Any) -> None:
        self.listeners.append(fn)

    def emit(self, event: Any) -> None:
        for fn in self.listeners:
            fn(event)

    def start(self, outputs: list[str] | None = None, origin: str = "") -> FakeRun:
        run = FakeRun(self)
        self.started.append((outputs, run))
        return run


def capture(canvas: Canvas) -> list[tuple[dict[str, Any], list[bytes]]]:
    sent: list[tuple[dict[str, Any], list[bytes]]] = []
    canvas.send = lambda msg, buffers=None: sent.append((msg, list(buffers or [])))  # type: ignore[method-assign]
    return sent


def test_canvases_of_one_graph_share_one_doc_and_relay_to_each_other() -> None:
    g = StandInGraph()
    c1, c2 = Canvas(g), Canvas(g)
    assert c1.session is c2.session and c1.view_id != c2.view_id
    assert c1.height == 520 and isinstance(c1.specs, dict)
    s1, s2 = capture(c1), capture(c2)
    c1._on_msg(c1, {"t": "hello"}, [])
    replica = Doc()
    for msg, bufs in s1:
        if msg["t"] == "y":
            handle_sync_message(bufs[0][1:], replica)
    assert replica.get("nodes", type=Map)["save"]["type"] == "SaveImage"
    before = replica.get_state()
    replica.get("nodes", type=Map)["save"]["x"] = 42.0
    update = bytes([0, 2]) + _varbytes(replica.get_update(before))
    c1._on_msg(c1, {"t": "y"}, [memoryview(update)])
    assert g.model.nodes["save"].pos == (42.0, 0.0)
    assert s2 and s2[-1][0] == {"t": "y"}  # relayed to the other canvas (echo: also to c1)
    assert len([m for m, _ in s1 if m.get("t") == "error"]) == 0


def test_run_and_cancel_from_a_view_and_events_reach_every_view() -> None:
    g = StandInGraph()
    c1, c2 = Canvas(g), Canvas(g)
    _s1, s2 = capture(c1), capture(c2)
    c1._on_msg(c1, {"t": "run", "outputs": ["save"]}, [])
    assert g.started[0][0] == ["save"]
    assert ({"t": "state", "running": True}, []) in s2
    c2._on_msg(c2, {"t": "run", "outputs": None}, [])  # one run at a time
    assert s2[-1][0]["t"] == "error" and "already in progress" in s2[-1][0]["message"]
    c2._on_msg(c2, {"t": "cancel"}, [])
    assert g.started[0][1].cancelled
    for _ in range(500):  # the watcher sees the run end and resets every toolbar
        if s2[-1] == ({"t": "state", "running": False}, []):
            break
        threading.Event().wait(0.01)
    assert s2[-1] == ({"t": "state", "running": False}, [])
    assert not [m for m, _ in s2 if m["t"] == "error" and "did not start" in m["message"]]


def test_run_starts_in_the_moment_after_the_last_run_said_it_finished() -> None:
    """Views enable Run when run_finished arrives; the run's thread may not have wound up
    yet (``done`` still false): a click then must start a run, not be refused."""
    g = StandInGraph()
    c = Canvas(g)
    sent = capture(c)
    c._on_msg(c, {"t": "run", "outputs": None}, [])
    first = g.started[0][1]
    first.run_id = "r1"  # as vx.Run has it
    g.emit(RunFinished("r1", status="ok", stats={"ran": 1, "cached": 0, "failed": 0}))
    assert not first.done  # the thread still winding up
    c._on_msg(c, {"t": "run", "outputs": None}, [])
    assert len(g.started) == 2
    assert not [m for m, _ in sent if m["t"] == "error"]
    first.release.set()
    g.started[1][1].release.set()


def test_python_runs_stream_progress_and_images_to_all_views() -> None:
    g = StandInGraph()
    c1, c2 = Canvas(g), Canvas(g)
    s1, s2 = capture(c1), capture(c2)
    g.emit(RunStarted("r1", planned=("save",)))
    g.emit(NodeProgress("r1", node="save", value=1, total=4))
    g.emit(NodePreview("r1", node="save", mime="image/png", data=PNG, final=True))
    g.emit(RunFinished("r1", status="ok", stats={"ran": 1, "cached": 0, "failed": 0}))
    for sent in (s1, s2):
        kinds = [m.get("event", {}).get("kind") or m["t"] for m, _ in sent]
        assert kinds == ["state", "run_started", "node_progress", "image", "node_preview", "run_finished", "state"]
        image = next((m, b) for m, b in sent if m["t"] == "image")
        assert image == ({"t": "image", "node": "save", "final": True, "mime": "image/png"}, [PNG])
        preview_event = next(m for m, _ in sent if m.get("event", {}).get("kind") == "node_preview")
        assert "data" not in preview_event["event"]
    assert c1.images == {"save": ("image/png", True, PNG)}
    # a view opening later gets the latest image with its sync
    c3 = Canvas(g)
    s3 = capture(c3)
    c3._on_msg(c3, {"t": "hello"}, [])
    assert ({"t": "image", "node": "save", "final": True, "mime": "image/png"}, [PNG]) in s3


def test_js_errors_are_kept_and_bad_messages_answered_without_raising() -> None:
    c = Canvas(GraphModel())
    sent = capture(c)
    c._on_msg(c, {"t": "log", "level": "error", "message": "TypeError: x is undefined"}, [])
    c._on_msg(c, {"t": "log", "level": "info", "message": "hi"}, [])
    assert c.js_errors == ["TypeError: x is undefined"]
    c._on_msg(c, {"t": "y"}, [])
    c._on_msg(c, {"t": "nope"}, [])
    c._on_msg(c, "not a dict", [])
    c._on_msg(c, {"t": "run"}, [])  # a bare GraphModel cannot run: told, not raised
    errors = [m for m, _ in sent if m["t"] == "error"]
    assert len(errors) == 4 and "bare GraphModel" in errors[-1]["message"]


def test_a_canvas_on_a_big_seed_shows_it_as_a_string() -> None:
    m = GraphModel()
    m.add_node("KSampler", {"seed": MAX_SAFE_INT + 2}, id="k")
    c = Canvas(m)
    sent = capture(c)
    c._on_msg(c, {"t": "y"}, [create_sync_message(Doc())])
    replica = Doc()
    handle_sync_message(sent[-1][1][0][1:], replica)
    assert replica.get("nodes", type=Map)["k"]["params"]["seed"] == str(MAX_SAFE_INT + 2)


def _varbytes(data: bytes) -> bytes:
    n, out = len(data), bytearray()
    while n > 127:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    out.append(n)
    return bytes(out) + data


def test_a_view_opening_after_a_run_gets_its_node_states_and_failures_before_its_images() -> None:
    g = StandInGraph()
    Canvas(g)  # the session exists while the run happens
    g.emit(RunStarted("r1", planned=("save",)))
    g.emit(NodeProgress("r1", node="save", value=1, total=4))
    g.emit(NodePreview("r1", node="save", mime="image/png", data=PNG, final=True))
    g.emit(NodeFailed("r1", node="other", code="VE-500", message="node 'other' (X) raised ValueError: no"))
    g.emit(RunFinished("r1", status="failed", stats={"ran": 1, "cached": 0, "failed": 1}))
    late = Canvas(g)
    sent = capture(late)
    late._on_msg(late, {"t": "hello"}, [])
    after_sync = [(m, b) for m, b in sent if m["t"] != "y"]
    kinds = [m.get("event", {}).get("kind") or m["t"] for m, _ in after_sync]
    assert kinds == ["state", "run_started", "node_failed", "run_finished", "image"]
    replayed = [m for m, _ in after_sync if m["t"] == "event"]
    assert all(m["replay"] is True for m in replayed)  # shown on the nodes, not toasted again
    assert replayed[1]["event"]["message"].endswith("ValueError: no")
    assert all("data" not in m["event"] for m in replayed)
    g.emit(RunStarted("r2", planned=("save",)))  # a new run replaces the history
    assert [e["kind"] for e in late.session.history] == ["run_started"]
