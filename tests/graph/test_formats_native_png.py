"""Native JSON format round trips, and the graph carried in PNG text chunks."""

from __future__ import annotations

import copy
import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from vortex_jupyter.errors import FormatError
from vortex_jupyter.graph.formats import (
    add_png_text_chunks,
    from_comfy_ui,
    from_native,
    graph_from_png,
    png_text_chunks,
    to_comfy_api,
    to_comfy_ui,
    to_native,
)
from vortex_jupyter.graph.formats.png import tiny_png
from vortex_jupyter.graph.model import GraphModel

from .conftest import lookup

NATIVE = {
    "schema_version": 1,
    "nodes": [
        {"id": "a", "type": "Add", "params": {"a": 1, "b": 2}, "pos": [10.5, -3], "size": [200, 80],
         "title": "first", "extra": {"color": "#123"}},
        {"id": "b", "type": "Add", "params": {"b": 5}, "pos": [300, 0], "size": None, "title": None, "extra": {}},
    ],
    "edges": [{"src": "a", "src_output": 0, "dst": "b", "dst_input": "a"}],
    "groups": [{"title": "math", "bounding": [0, 0, 500, 200]}],
    "extra": {"author": "me"},
}


def test_native_round_trip_is_lossless() -> None:
    original = copy.deepcopy(NATIVE)
    m = from_native(NATIVE)
    assert m.nodes["a"].params == {"a": 1, "b": 2} and m.nodes["a"].title == "first"
    assert [(e.src, e.dst, e.dst_input) for e in m.edges()] == [("a", "b", "a")]
    assert to_native(m) == original
    assert json.loads(json.dumps(to_native(m))) == original


def test_native_keeps_broken_graphs_for_validation_to_report() -> None:
    d = copy.deepcopy(NATIVE)
    d["edges"] += [{"src": "ghost", "src_output": 0, "dst": "b", "dst_input": "a"}]
    m = from_native(d)
    assert len(m.inputs_of("b")["a"]) == 2  # not silently replaced
    assert to_native(m) == d


@st.composite
def models(draw: st.DrawFn) -> GraphModel:
    g = GraphModel()
    n = draw(st.integers(0, 12))
    scalars = st.one_of(st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False, allow_infinity=False),
                        st.text(max_size=20), st.booleans(), st.none())
    for _ in range(n):
        g.add_node(draw(st.sampled_from(["Add", "Scale", "Unknown"])),
                   draw(st.dictionaries(st.text(min_size=1, max_size=8), scalars, max_size=4)),
                   id=draw(st.text(min_size=1, max_size=6).filter(lambda s: s not in g.nodes)),
                   pos=(draw(st.integers(-5000, 5000)), draw(st.floats(-1e6, 1e6))),
                   title=draw(st.none() | st.text(max_size=10)))
    ids = list(g.nodes)
    for dst in ids:
        for k in range(draw(st.integers(0, 2))):
            g.connect(draw(st.sampled_from(ids)), draw(st.integers(0, 3)), dst, f"in{k}", replace=False)
    return g


@settings(max_examples=80, deadline=None)
@given(models())
def test_native_round_trip_holds_for_random_models(g: GraphModel) -> None:
    d = json.loads(json.dumps(to_native(g)))
    again = from_native(d)
    assert to_native(again) == to_native(g)


# ---- PNG ----------------------------------------------------------------------------------------
def _pil_png_with_text(texts: dict[str, str]) -> bytes:
    info = PngImagePlugin.PngInfo()
    for k, v in texts.items():
        info.add_text(k, v)
    buf = io.BytesIO()
    Image.new("RGB", (4, 3), (200, 10, 10)).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def test_png_chunks_round_trip_and_replace_same_keys() -> None:
    png = add_png_text_chunks(tiny_png(2, 2), {"prompt": "{}", "workflow": '{"café": "ünïcode ✓"}'})
    assert png_text_chunks(png) == {"prompt": "{}", "workflow": '{"café": "ünïcode ✓"}'}
    png = add_png_text_chunks(png, {"prompt": '{"x": 1}'})
    assert png_text_chunks(png) == {"prompt": '{"x": 1}', "workflow": '{"café": "ünïcode ✓"}'}
    assert Image.open(io.BytesIO(png)).size == (2, 2)  # still a PNG Pillow decodes


def test_png_chunks_we_write_are_read_by_pillow_and_the_other_way_round() -> None:
    texts = {"prompt": '{"1": {}}', "workflow": "ascii", "comment": "✓ unicode"}
    ours = add_png_text_chunks(tiny_png(), texts)
    assert Image.open(io.BytesIO(ours)).text == texts
    assert png_text_chunks(_pil_png_with_text(texts)) == texts


def test_png_reads_compressed_ztxt_and_itxt_chunks() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("workflow", "x" * 5000, zip=True)           # zTXt
    info.add_itxt("prompt", "ü" * 3000, zip=True)             # compressed iTXt
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, format="PNG", pnginfo=info)
    assert png_text_chunks(buf.getvalue()) == {"workflow": "x" * 5000, "prompt": "ü" * 3000}


def test_graph_from_png_prefers_the_workflow_then_the_prompt(default_workflow: dict, default_prompt: dict) -> None:
    both = add_png_text_chunks(_pil_png_with_text({}), {"prompt": json.dumps(default_prompt),
                                                       "workflow": json.dumps(default_workflow)})
    m = graph_from_png(both, lookup)
    assert to_comfy_ui(m, lookup) == default_workflow  # layout came along: it was the workflow
    only_prompt = add_png_text_chunks(tiny_png(), {"prompt": json.dumps(default_prompt)})
    assert to_comfy_api(graph_from_png(only_prompt, lookup), lookup) == default_prompt
    assert from_comfy_ui(default_workflow, lookup).nodes.keys() == m.nodes.keys()


def test_graph_from_png_without_a_graph_says_which_chunks_it_found() -> None:
    with pytest.raises(FormatError, match=r"no .workflow. or .prompt.*parameters"):
        graph_from_png(add_png_text_chunks(tiny_png(), {"parameters": "a1111 style"}), lookup)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b"GIF89a" + b[6:], "bad signature"),
        (lambda b: b[:-6], "truncated"),
        (lambda b: b[:40] + bytes([b[40] ^ 0xFF]) + b[41:], "bad CRC"),
        (lambda b: b[:8] + b"\xff\xff\xff\xff" + b[12:], "truncated"),
    ],
)
def test_malformed_png_is_a_format_error(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    png = add_png_text_chunks(tiny_png(), {"prompt": "{}"})
    with pytest.raises(FormatError, match=message):
        png_text_chunks(mutate(png))


def test_png_zip_bomb_is_refused() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("workflow", "0" * (70 * 1024 * 1024), zip=True)
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, format="PNG", pnginfo=info)
    with pytest.raises(FormatError, match="expands beyond"):
        png_text_chunks(buf.getvalue())


def test_png_text_that_is_not_json_is_a_format_error() -> None:
    with pytest.raises(FormatError, match="not valid JSON"):
        graph_from_png(add_png_text_chunks(tiny_png(), {"workflow": "{nope"}), lookup)
