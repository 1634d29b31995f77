"""Workflow documents in a kernel (``lab/document.py``) and canvas MIME views (``lab/views.py``),
driven through fake comms by browser-like panels (``conftest.Panel``)."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Doc

import vortex_jupyter as vx
from vortex_jupyter.graph.formats import add_png_text_chunks, png_text_chunks
from vortex_jupyter.graph.formats.png import tiny_png
from vortex_jupyter.lab import document, views
from vortex_jupyter.lab.ydoc import YVortex

from .conftest import Panel

FLOW = {"schema_version": 1, "nodes": [
    {"id": "a", "type": "IntAdd", "params": {"a": 1, "b": 2}, "pos": [0, 0]},
    {"id": "b", "type": "IntAdd", "params": {"b": 10}, "pos": [300, 0]}],
    "edges": [{"src": "a", "src_output": 0, "dst": "b", "dst_input": "a"}]}


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A server root holding flows/flow.vortex.json; the "kernel" was started for a notebook
    in flows/ (so it can tell the root), and knows no document yet."""
    folder = tmp_path / "flows"
    folder.mkdir()
    (folder / "flow.vortex.json").write_text(json.dumps(FLOW, indent=2) + "\n")
    monkeypatch.chdir(folder)
    monkeypatch.setenv("JPY_SESSION_NAME", "flows/nb.ipynb")
    monkeypatch.setattr(document, "_DOCS", {})
    monkeypatch.setattr(document, "PUSH_DELAY", 0.01)
    return tmp_path


def wait_for(fn: Any, timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.01)


def file_panel(root: Path, path: str = "flows/flow.vortex.json") -> Panel:
    text = (root / path).read_text()
    return Panel().open(document.open_panel, {"path": path, "rtc": False, "content": text, "format": "text"})


def test_a_panel_without_collaboration_edits_the_kernels_graph_and_gets_the_file_text(root: Path) -> None:
    panel = file_panel(root)
    assert panel.messages("document") == [{"t": "document", "mode": "file", "format": "native"}]
    assert panel.messages("specs") and "IntAdd" in panel.messages("specs")[0]["specs"]
    assert sorted(panel.nodes.keys()) == ["a", "b"]  # the kernel's graph, synced to the panel
    g = vx.open(root / "flows" / "flow.vortex.json")
    assert g is document._DOCS[(root / "flows" / "flow.vortex.json").resolve()].graph  # one graph per file
    panel.nodes["b"]["params"]["b"] = 11  # edit on the canvas
    assert g.nodes["b"].params["b"] == 11
    files = wait_for(lambda: panel.messages("file"))
    saved = json.loads(files[-1]["content"])
    assert files[-1]["format"] == "text" and saved["nodes"][1]["params"]["b"] == 11
    assert files[-1]["content"].startswith('{\n  "schema_version": 1')  # the file's own layout
    g.nodes["a"].params["a"] = 5  # edit in Python: the panel's canvas and file text follow
    assert panel.nodes["a"]["params"]["a"] == 5
    assert wait_for(lambda: json.loads(panel.messages("file")[-1]["content"])["nodes"][0]["params"]["a"] == 5)
    g.save()  # Python asks the open panels to save (JupyterLab writes the file)
    assert panel.messages("save") == [{"t": "save"}]


def test_a_second_panel_of_the_same_file_converges_with_the_first(root: Path) -> None:
    one, two = file_panel(root), file_panel(root)
    one.nodes["a"]["params"]["b"] = 7
    assert two.nodes["a"]["params"]["b"] == 7
    two.edges.pop("b:a")
    assert "b:a" not in one.edges
    g = vx.open(root / "flows" / "flow.vortex.json")
    assert list(g.model.edges()) == []
    one.close()
    g.nodes["b"].params["b"] = 1
    assert two.nodes["b"]["params"]["b"] == 1  # the closed panel is gone, the other still syncs


def test_under_collaboration_the_kernel_fills_its_graph_from_the_panels_room_doc(root: Path) -> None:
    text = (root / "flows" / "flow.vortex.json").read_text()
    room = YVortex()
    room.set(text)  # what jupyter-collaboration loads into the room
    a, b = Panel(doc=Doc()), Panel(doc=Doc())
    for panel in (a, b):
        panel.doc.apply_update(room.ydoc.get_update())  # each user's panel has the room's doc
    a.open(document.open_panel, {"path": "flows/flow.vortex.json", "rtc": True})
    assert a.messages("document")[0]["mode"] == "bridge"
    g = vx.open(root / "flows" / "flow.vortex.json")
    assert {n: (x.type, x.params) for n, x in g.model.nodes.items()} == {
        "a": ("IntAdd", {"a": 1, "b": 2}), "b": ("IntAdd", {"b": 10})}
    b.open(document.open_panel, {"path": "flows/flow.vortex.json", "rtc": True})  # a second user bridges too
    g.nodes["a"].params["a"] = 4  # Python's edit reaches both users' docs (hence their room)
    assert a.nodes["a"]["params"]["a"] == 4 and b.nodes["a"]["params"]["a"] == 4
    room.ydoc.apply_update(a.doc.get_update(room.ydoc.get_state()))
    assert json.loads(room.get())["nodes"][0]["params"]["a"] == 4  # and the server would save it


def test_a_png_opens_and_its_file_text_is_the_png_with_the_new_workflow(root: Path) -> None:
    workflow = {"last_node_id": 1, "last_link_id": 0, "nodes": [
        {"id": 1, "type": "IntAdd", "pos": [0, 0], "size": [200, 80], "flags": {}, "order": 0, "mode": 0,
         "inputs": [], "outputs": [], "properties": {}, "widgets_values": [1, 2]}],
        "links": [], "groups": [], "config": {}, "extra": {}, "version": 0.4}
    png = add_png_text_chunks(tiny_png(2, 2), {"workflow": json.dumps(workflow)})
    (root / "flows" / "out.png").write_bytes(png)
    panel = Panel().open(document.open_panel, {"path": "flows/out.png", "rtc": False,
                                               "content": base64.b64encode(png).decode(), "format": "base64"})
    assert panel.messages("document")[0]["format"] == "png"
    panel.nodes["1"]["params"]["b"] = 9
    last = wait_for(lambda: panel.messages("file"))[-1]
    assert last["format"] == "base64"
    out = base64.b64decode(last["content"])
    assert json.loads(png_text_chunks(out)["workflow"])["nodes"][0]["widgets_values"] == [1, 9]


def test_a_file_that_cannot_be_read_closes_the_panel_comm_with_the_reason(root: Path) -> None:
    panel = Panel().open(document.open_panel, {"path": "flows/bad.json", "rtc": False, "content": "{nope"})
    assert panel.comm is not None and panel.comm.closed
    (error,) = panel.messages("error")
    assert error["code"] == "VE-200" and "bad.json" in error["message"] and "not valid JSON" in error["message"]


def test_vx_open_outside_jupyter_reads_the_file_and_save_writes_it_in_its_format(root: Path) -> None:
    path = root / "flows" / "flow.vortex.json"
    g = vx.open(path)
    assert g.run(executor="inline").outputs["b"] == (13,)
    g.nodes["b"].params["b"] = 20
    assert g.save() == path.resolve()
    data = json.loads(path.read_text())
    assert data["nodes"][1]["params"]["b"] == 20 and path.read_text().startswith('{\n  "schema_version"')
    assert vx.open(str(path)) is g
    with pytest.raises(vx.FormatError, match="no such file"):
        vx.open(root / "missing.vortex.json")
    with pytest.raises(vx.VortexError, match="needs a path"):
        vx.Graph().save()


def test_a_notebook_canvas_view_joins_the_graphs_session_through_its_comm() -> None:
    g = vx.Graph()
    g.add("IntAdd", id="x", a=1)
    bundle = g._repr_mimebundle_()
    data = bundle[views.MIME]
    view = Panel().open(views._open_canvas, data)
    assert sorted(view.nodes.keys()) == ["x"] and view.messages("state")
    other = Panel().open(views._open_canvas, data)  # a second user's view of the same output
    view.nodes["x"]["params"]["b"] = 3
    assert g.nodes["x"].params["b"] == 3 and other.nodes["x"]["params"]["b"] == 3
    stale = Panel().open(views._open_canvas, {"graph": "from-a-kernel-that-restarted"})
    assert stale.comm is not None and stale.comm.closed
    assert "run the cell again" in stale.messages("error")[0]["message"]
