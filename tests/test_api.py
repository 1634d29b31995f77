"""The Python API (``vx.Graph``, ``Node``, ``Run``, ``vx.load``), as the issue and README show it."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest

import vortex_jupyter as vx
from vortex_jupyter.engine.events import Event
from vortex_jupyter.errors import UnknownNodeTypeError


@vx.node(category="math")
def add(a: int, b: int = 0) -> int:
    return a + b


CALLS: list[int] = []


@vx.node(category="test")
def api_counted(a: int = 0) -> int:
    CALLS.append(a)
    return a * 10


ISSUE_EXAMPLE = """
import vortex_jupyter as vx
@vx.node(category="math")
def add(a: int, b: int = 0) -> int: return a + b
g = vx.Graph()
x = g.add("add", a=1, b=2)            # Node handle; x.id is a str; g.add(..., id="x") allowed
y = g.add("add", a=x.out(0), b=5)     # link by output index or name: x.out("INT")
g.validate()                          # raises vx.ValidationError(problems=[...]) (.code, .node, .port, .message)
run = g.run()                         # also g.run(executor="inline")
print(run.outputs[y.id])              # tuple of the node's outputs -> (8,)
print(run.stats)                      # {"ran": 2, "cached": 0, "failed": 0}
y.params["b"] = 6; print(g.run().stats)      # {"ran": 1, "cached": 1, "failed": 0}
print(type(x.id).__name__, g.run(executor="inline").outputs[y.id])
"""


def test_the_issue_example_verbatim_as_a_script_with_the_default_executor(tmp_path):
    # Run as __main__, where users define nodes (notebooks, scripts): the default executor
    # (the worker pool once it exists) must ship the node to wherever it runs.
    script = tmp_path / "example.py"
    script.write_text(ISSUE_EXAMPLE)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=240,
                          cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines() == [
        "(8,)",
        "{'ran': 2, 'cached': 0, 'failed': 0}",
        "{'ran': 1, 'cached': 1, 'failed': 0}",
        "str (9,)",
    ]


def test_the_issue_example_in_process():
    g = vx.Graph()
    x = g.add("add", a=1, b=2)
    y = g.add("add", a=x.out(0), b=5)
    g.validate()
    run = g.run(executor="inline")
    assert run.outputs[y.id] == (8,)
    assert run.stats == {"ran": 2, "cached": 0, "failed": 0}
    y.params["b"] = 6
    assert g.run(executor="inline").stats == {"ran": 1, "cached": 1, "failed": 0}


def test_inline_executor_and_links_by_output_name():
    g = vx.Graph()
    x = g.add("add", id="x", a=1, b=2)
    y = g.add("add", a=x.out("INT"), b=5)
    assert x.id == "x" and y.inputs == {"a": vx._api.OutputRef("x", 0)}
    run = g.run(executor="inline")
    assert run.outputs[y] == (8,) and run.status == "ok"


def test_validate_raises_with_every_problem_located():
    g = vx.Graph()
    g.add("add", id="n", b=5)  # a is required and missing
    g.model.set_param("n", "b", float("nan"))
    with pytest.raises(vx.ValidationError) as info:
        g.validate()
    codes = {(p.code, p.node, p.port) for p in info.value.problems}
    assert ("VE-102", "n", "a") in codes
    assert any(c == "VE-106" or c == "VE-104" for c, _, _ in codes)
    with pytest.raises(vx.ValidationError):
        g.run(executor="inline")


def test_add_rejects_unknown_types_and_inputs_with_a_hint():
    g = vx.Graph()
    with pytest.raises(UnknownNodeTypeError):
        g.add("ad")
    with pytest.raises(vx.ValidationError) as info:
        g.add("add", a=1, bb=2)
    assert info.value.problems[0].code == "VE-112" and "bb" in str(info.value)
    problem = info.value.problems[0]
    assert "a new add node" in problem.message and "did you mean 'b'?" in problem.hint
    with pytest.raises(vx.ValidationError, match=r"node 'n7' \(add\) has no input 'c'"):
        g.add("add", id="n7", c=2)


def test_redefining_a_node_invalidates_its_cached_outputs():
    global api_counted
    g = vx.Graph()
    n = g.add("api_counted", a=2)
    assert g.run(executor="inline").outputs[n.id] == (20,)
    assert g.run(executor="inline").stats["cached"] == 1

    @vx.node(category="test", name="api_counted")
    def api_counted(a: int = 0) -> int:  # same name, new body
        return a * 100

    run = g.run(executor="inline")
    assert run.stats == {"ran": 1, "cached": 0, "failed": 0}
    assert run.outputs[n.id] == (200,)


def test_failed_nodes_do_not_raise_from_run_but_are_reported():
    @vx.node(category="test")
    def api_fails(a: int = 0) -> int:
        raise RuntimeError("nope")

    g = vx.Graph()
    ok = g.add("add", a=1)
    bad = g.add("api_fails")
    below = g.add("add", a=bad.out(0))
    run = g.run(executor="inline")
    assert run.status == "failed" and run.outputs[ok.id] == (1,)
    assert run.errors[bad.id].code == "VE-500" and "nope" in str(run.errors[bad.id])
    assert run.errors[below.id].code == "VE-505"
    with pytest.raises(vx.ExecutionError):
        run.raise_for_errors()
    assert "failed" in repr(run)


def test_start_runs_in_the_background_and_cancel_stops_it():
    gate = threading.Event()

    @vx.node(category="test")
    def api_slow(a: int = 0) -> int:
        from vortex_jupyter.nodes.context import current

        gate.set()
        for _ in range(500):
            current().raise_if_cancelled()
            time.sleep(0.01)
        return a

    g = vx.Graph()
    s = g.add("api_slow")
    after = g.add("add", a=s.out(0))
    run = g.start(executor="inline")
    assert gate.wait(10) and not run.done
    run.cancel()
    run.wait(10)
    assert run.done and run.status == "cancelled"
    assert run.errors[after.id].code in ("VE-504", "VE-505")


def test_start_surfaces_validation_errors_from_wait():
    g = vx.Graph()
    g.add("add", b=1)
    run = g.start(executor="inline")
    with pytest.raises(vx.ValidationError):
        run.wait(10)


def test_on_event_sees_every_event_of_every_run_and_off_event_stops_it():
    g = vx.Graph()
    g.add("add", a=1)
    seen: list[Event] = []
    g.on_event(seen.append)
    g.run(executor="inline")
    assert seen[0].kind == "run_started" and seen[-1].kind == "run_finished"
    g.off_event(seen.append)
    count = len(seen)
    g.run(executor="inline")
    assert len(seen) == count


def test_params_mapping_writes_through_the_model():
    g = vx.Graph()
    x = g.add("add", a=1)
    y = g.add("add", a=2)
    y.params["a"] = x.out(0)  # assigning an output links the input
    assert y.inputs["a"].node == x.id
    x.params["b"] = 4
    assert dict(x.params) == {"a": 1, "b": 4}
    del x.params["b"]
    assert "b" not in x.params
    x.pos = (10, 20)
    x.title = "first"
    assert g.model.nodes[x.id].pos == (10.0, 20.0) and x.title == "first"
    assert "add" in repr(x) and "2 nodes" in repr(g)


def test_outputs_restrict_what_runs():
    g = vx.Graph()
    x = g.add("add", a=7001)  # values no other test uses: the inline cache is process-wide
    y = g.add("add", a=x.out(0), b=1)
    g.add("add", a=7100)
    run = g.run(executor="inline", outputs=[y])
    assert run.planned == [x.id, y.id] and run.outputs[y.id] == (7002,)


def test_formats_round_trip_through_load(tmp_path):
    g = vx.Graph()
    x = g.add("add", a=1, b=2)
    g.add("add", a=x.out(0), b=5)
    for doc in (g.to_json(), g.to_comfy_api(), g.to_comfy_ui()):
        g2 = vx.load(doc)
        assert g2.run(executor="inline").outputs[[n for n in g2.nodes][-1]] == (8,)
    path = g.save(tmp_path / "graph.json", format="comfy_ui")
    assert json.loads(path.read_text())["nodes"]
    assert len(vx.load(path)) == 2
    assert len(vx.load(str(path))) == 2


def test_load_reads_the_workflow_from_a_png(tmp_path):
    import io

    from PIL import Image

    from vortex_jupyter.graph.formats import add_png_text_chunks

    g = vx.Graph()
    g.add("add", a=3, b=4)
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, format="PNG")
    png = add_png_text_chunks(buf.getvalue(), {"workflow": json.dumps(g.to_comfy_ui()),
                                               "prompt": json.dumps(g.to_comfy_api())})
    (tmp_path / "out.png").write_bytes(png)
    loaded = vx.load(tmp_path / "out.png")
    assert [n.type for n in loaded.nodes.values()] == ["add"]


def test_load_reports_malformed_input_as_format_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(vx.FormatError):
        vx.load(bad)
    with pytest.raises(vx.FormatError):
        vx.load(tmp_path / "missing.json")
    with pytest.raises(vx.FormatError):
        vx.load({"neither": "format"})
    for wrong in (5, None, ["not", "a", "path"]):
        with pytest.raises(vx.FormatError, match="cannot load a graph from a"):
            vx.load(wrong)  # type: ignore[arg-type]


def test_default_graph_is_txt2img_and_validates():
    g = vx.Graph.default()
    types = {n.type for n in g.nodes.values()}
    assert {"KSampler", "VAEDecode"} <= types
    g.validate()


def test_repr_mimebundle_is_the_canvas_widget_with_a_text_repr():
    g = vx.Graph()
    g.add("add", a=1)
    bundle = g._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    # the JupyterLab extension's output, naming the graph's canvas session
    assert bundle["application/vnd.vortex.canvas.v1+json"]["graph"] == g._vx_canvas_session.public_id
    assert "1 nodes" in bundle["text/plain"]
    assert g.canvas() is g.canvas()  # one widget per graph, shared by every view


def test_repr_mimebundle_without_widget_support_keeps_the_extension_output_and_text(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "vortex_jupyter.canvas.widget", None)  # import fails
    g = vx.Graph()
    g.add("add", a=1)
    assert sorted(g._repr_mimebundle_()) == ["application/vnd.vortex.canvas.v1+json", "text/plain"]
    monkeypatch.setitem(sys.modules, "vortex_jupyter.lab.views", None)
    assert g._repr_mimebundle_() == {"text/plain": repr(g)}


def test_run_images_are_the_output_images_also_after_a_cached_rerun():
    import numpy as np

    from vortex_jupyter.nodes.context import current
    from vortex_jupyter.nodes.spec import NodeResult

    @vx.node(category="test", output_node=True)
    def api_show(level: float = 0.5) -> None:
        current().preview(np.full((1, 4, 4, 3), level, dtype=np.float32), final=True)
        return NodeResult((), {"images": []})

    g = vx.Graph()
    g.add("api_show", level=0.25)
    first = g.run(executor="inline")
    assert [im.size for im in first.images] == [(4, 4)]
    assert first.images[0].getpixel((0, 0)) == (64, 64, 64)
    again = g.run(executor="inline")
    assert again.stats["cached"] == 1 and len(again.images) == 1
    assert "<img" in again._repr_html_()


def test_ids_titles_and_positions_the_formats_cannot_load_again_are_refused_when_set():
    g = vx.Graph()
    for bad in ("", "x" * 2000, True):
        with pytest.raises(vx.FormatError, match="id"):
            g.add("add", id=bad)
    node = g.add("add", id="ok")
    with pytest.raises(vx.FormatError, match="title: string of 100000 characters is too long"):
        node.title = "t" * 100_000
    with pytest.raises(vx.FormatError, match=r"pos\[0\]: expected a finite number"):
        node.pos = (float("nan"), 0.0)
    node.title, node.pos = "Adder", (3, 4)
    again = vx.load(g.to_json())  # whatever the API accepted saves and loads back
    assert (again.nodes["ok"].title, again.nodes["ok"].pos) == ("Adder", (3.0, 4.0))
    assert g.add("add", id=5).id == "5"  # ints are ids, as in ComfyUI UI files


def test_node_mode_mutes_and_bypasses_from_python_and_rejects_unknown_modes():
    g = vx.Graph()
    a = g.add("IntAdd", id="a", a=1, b=2)
    b = g.add("IntAdd", id="b", a=a.out(0), b=10)
    g.add("IntAdd", id="c", a=b.out(0), b=100)
    assert b.mode == "always"
    assert g.run(executor="inline").outputs["c"] == (113,)
    b.mode = "bypassed"  # its input a passes through to c
    assert b.mode == "bypassed" and g.model.mode("b") == 4
    run = g.run(executor="inline")
    assert run.outputs["c"] == (103,) and "b" not in run.planned
    b.mode = "muted"
    with pytest.raises(vx.ValidationError) as info:
        g.run(executor="inline")
    assert [(p.code, p.node) for p in info.value.problems] == [("VE-115", "c")]
    with pytest.raises(vx.VortexError, match="'sleeping' is not a node mode") as bad:
        b.mode = "sleeping"
    assert "bypassed" in str(bad.value.hint)
    b.mode = 0
    assert b.mode == "always" and g.run(executor="inline").outputs["c"] == (113,)
