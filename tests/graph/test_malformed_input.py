"""Malformed input never escapes as KeyError/TypeError: it is a FormatError (VE-200) naming the
field, or it loads and validation reports it as a problem."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vortex_jupyter.errors import FormatError
from vortex_jupyter.graph.formats import (
    detect,
    from_comfy_api,
    from_comfy_ui,
    from_native,
    load_any,
    loads,
    to_comfy_api,
    to_comfy_ui,
    to_native,
)
from vortex_jupyter.graph.validate import validate

from .conftest import load_json, lookup

BIG = "x" * 10_000_000


def native(**changes: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"schema_version": 1, "nodes": [{"id": "a", "type": "Add", "params": {"a": 1}}], "edges": []}
    d.update(changes)
    return d


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ([1, 2], "expected an object"),
        (native(schema_version=2), "schema_version"),
        (native(schema_version="1"), "schema_version"),
        (native(colour="red"), "colour: unknown field"),
        (native(nodes=[{"id": "a", "type": "Add", "parms": {}}]), r"nodes\[0\]\.parms: unknown field"),
        (native(nodes={"a": {}}), "nodes: expected a list"),
        (native(nodes=[{"id": 1, "type": "Add"}]), r"nodes\[0\]\.id: expected a string"),
        (native(nodes=[{"id": "a"}]), r"nodes\[0\]\.type: missing"),
        (native(nodes=[{"id": "a", "type": "Add", "pos": [float("nan"), 0]}]), r"nodes\[0\]\.pos\[0\]: expected a finite"),
        (native(nodes=[{"id": "a", "type": "Add", "pos": [10**400, 0]}]), r"nodes\[0\]\.pos\[0\]"),
        (native(nodes=[{"id": "a", "type": "Add", "params": [1]}]), r"nodes\[0\]\.params: expected an object"),
        (native(nodes=[{"id": "a", "type": BIG}]), r"nodes\[0\]\.type: string of 10000000 characters"),
        (native(nodes=[{"id": "a", "type": "T"}, {"id": "a", "type": "T"}]), "used twice"),
        (native(edges=[{"src": "a", "src_output": 0, "dst": "zz", "dst_input": "a"}]), r"edges\[0\]\.dst: node 'zz'"),
        (native(edges=[{"src": "a", "src_output": -1, "dst": "a", "dst_input": "a"}]), r"edges\[0\]\.src_output"),
        (native(edges=[{"src": "a", "src_output": 2**80, "dst": "a", "dst_input": "a"}]), r"edges\[0\]\.src_output"),
        (native(edges=[["a", 0, "a", "b"]]), r"edges\[0\]: expected an object"),
        (native(extra=[]), "extra: expected an object"),
    ],
)
def test_native_format_errors_name_the_json_path(data: Any, where: str) -> None:
    with pytest.raises(FormatError, match=where) as info:
        from_native(data)
    assert info.value.code == "VE-200"


def _ui(**changes: Any) -> dict[str, Any]:
    d = load_json("default_workflow.json")
    d.update(changes)
    return d


def _ui_node(index: int, **changes: Any) -> dict[str, Any]:
    d = load_json("default_workflow.json")
    d["nodes"][index].update(changes)
    return d


@pytest.mark.parametrize(
    ("data", "where"),
    [
        (_ui(links="1,2,3"), "links: expected a list"),
        (_ui(links=[{"no": "id"}]), r"links\[0\]\.id"),
        (_ui(links=[[1, 2]]), r"links\[0\]: expected \[id"),
        (_ui(nodes=[7]), r"nodes\[0\]: expected an object"),
        (_ui_node(0, id=None), r"nodes\[0\]\.id"),
        (_ui_node(0, id=True), r"nodes\[0\]\.id"),
        (_ui_node(0, type=BIG), r"nodes\[0\]\.type: string of 10000000"),
        (_ui_node(0, pos=["a", 1]), r"nodes\[0\]\.pos\[0\]: expected a number"),
        (_ui_node(0, size=[1, float("inf")]), r"nodes\[0\]\.size\[1\]"),
        (_ui_node(0, inputs="clip"), r"nodes\[0\]\.inputs: expected a list"),
        (_ui_node(0, inputs=[{"name": "clip", "link": "5"}]), r"nodes\[0\]\.inputs\[0\]\.link: expected an integer"),
        (_ui_node(0, inputs=[{"name": "clip", "link": 77}]), r"link 77 is not in \"links\""),
        (_ui_node(0, widgets_values="text"), r"nodes\[0\]\.widgets_values"),
        (_ui_node(0, title=12), r"nodes\[0\]\.title"),
        (_ui_node(1, id=7), "used twice"),
        (_ui(groups={}), "groups: expected a list"),
    ],
)
def test_comfy_ui_format_errors_name_the_json_path(data: Any, where: str) -> None:
    with pytest.raises(FormatError, match=where):
        from_comfy_ui(data, lookup)


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"3": [1]}, "3: expected an object"),
        ({"3": {"inputs": {}}}, r"3\.class_type: missing"),
        ({"3": {"class_type": 5, "inputs": {}}}, r"3\.class_type: expected a string"),
        ({"3": {"class_type": "T", "inputs": [1, 2]}}, r"3\.inputs: expected an object"),
        ({"3": {"class_type": "T", "inputs": {}, "_meta": "x"}}, r"3\._meta: expected an object"),
    ],
)
def test_comfy_api_format_errors_name_the_json_path(data: Any, where: str) -> None:
    with pytest.raises(FormatError, match=where):
        from_comfy_api(data)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("[1, 2]", "expected a JSON object"),
        ('{"a": 1', "not valid JSON"),
        ('{"a": ' + "9" * 5000 + "}", "not valid JSON"),  # over Python's int digit limit
        ("[" * 100_000 + "]" * 100_000, "nested too deeply|not valid JSON"),
        (b"\xff\xfe{", "not valid JSON"),
    ],
)
def test_loads_rejects_what_strict_json_does_not_allow(text: str | bytes, where: str) -> None:
    with pytest.raises(FormatError, match=where):
        loads(text)


@pytest.mark.parametrize("data", [{}, {"foo": 1}, {"nodes": [], "edges": []}, {"1": {"inputs": {}}}, "x", None])
def test_detect_refuses_what_is_no_graph(data: Any) -> None:
    with pytest.raises(FormatError):
        detect(data)


def test_bad_values_inside_params_load_and_become_validation_problems() -> None:
    prompt = {"1": {"class_type": "KSampler", "inputs": {"seed": 2**200, "cfg": float("nan"), "steps": "20",
                                                         "sampler_name": BIG, "scheduler": "normal"}}}
    m = from_comfy_api(prompt)
    found = {(p.code, p.port) for p in validate(m, lookup)}
    assert {("VE-114", "seed"), ("VE-106", "cfg"), ("VE-104", "steps"), ("VE-114", "sampler_name")} <= found


# ---- fuzzing: any JSON where a structure was expected is a FormatError or a loaded model --------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _replace(doc: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    doc = copy.deepcopy(doc)
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = new
    return doc


FILES = {name: load_json(name) for name in ("default_workflow.json", "rich_workflow.json", "default_prompt.json",
                                           "subgraph_workflow.json", "groupnode_workflow.json",
                                           "primitive_workflow.json")}


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(FILES)), st.data(), json_values)
def test_fuzzed_comfy_files_load_or_raise_format_error(name: str, data: st.DataObject, new: Any) -> None:
    doc = FILES[name]
    path = data.draw(st.sampled_from(_paths(doc)))
    broken = _replace(doc, path, new)
    try:
        model = load_any(broken, lookup)
    except FormatError:
        return
    validate(model, lookup)  # must not raise either
    for write in (to_native, lambda m: to_comfy_api(m, lookup), lambda m: to_comfy_ui(m, lookup)):
        json.dumps(write(model), allow_nan=True)


@settings(max_examples=200, deadline=None)
@given(st.data(), json_values)
def test_fuzzed_native_files_load_or_raise_format_error(data: st.DataObject, new: Any) -> None:
    doc = to_native(from_comfy_ui(load_json("default_workflow.json"), lookup))
    path = data.draw(st.sampled_from(_paths(doc)))
    try:
        model = from_native(_replace(doc, path, new))
    except FormatError:
        return
    validate(model, lookup)
    to_comfy_ui(model, lookup)
