"""Validation reports every problem with its VE code, node, port, the value and a fix."""

from __future__ import annotations

import math
import time
from dataclasses import replace

import pytest

from vortex_jupyter.errors import PROBLEM_CODES, Problem, ValidationError
from vortex_jupyter.graph.formats import from_comfy_ui
from vortex_jupyter.graph.model import GraphModel
from vortex_jupyter.graph.validate import MAX_STRING, check, check_value, validate
from vortex_jupyter.nodes.spec import PortSpec

from .conftest import SPECS, TABLE, chain, lookup

CODES_TESTED: set[str] = set()


def only(problems: list[Problem], code: str) -> Problem:
    """The single problem of ``problems``, which must have ``code`` (and a hint)."""
    assert [p.code for p in problems] == [code], [str(p) for p in problems]
    CODES_TESTED.add(code)
    assert problems[0].hint
    return problems[0]


def add_node(**params: object) -> GraphModel:
    g = GraphModel()
    g.add_node("Add", {"a": 1, **params}, id="n1")
    return g


def sampler_graph(**params: object) -> GraphModel:
    """A valid KSampler with all its links, then ``params`` applied."""
    g = GraphModel()
    g.add_node("CheckpointLoaderSimple", {"ckpt_name": "tiny-sd.safetensors"}, id="ckpt")
    g.add_node("CLIPTextEncode", {"text": "a cat"}, id="pos")
    g.add_node("CLIPTextEncode", {"text": ""}, id="neg")
    g.add_node("EmptyLatentImage", {}, id="lat")
    values = {"seed": 1, "steps": 4, "cfg": 7.5, "sampler_name": "euler", "scheduler": "normal", **params}
    g.add_node("KSampler", values, id="ks")
    for src, out, dst, name in (("ckpt", 1, "pos", "clip"), ("ckpt", 1, "neg", "clip"), ("ckpt", 0, "ks", "model"),
                                ("pos", 0, "ks", "positive"), ("neg", 0, "ks", "negative"), ("lat", 0, "ks", "latent_image")):
        g.connect(src, out, dst, name)
    return g


def test_a_valid_graph_has_no_problems() -> None:
    assert validate(sampler_graph(), lookup) == []
    check(sampler_graph(), lookup)  # does not raise


def test_VE_101_unknown_type_suggests_close_names_from_the_registry() -> None:
    g = GraphModel()
    g.add_node("KSamplr", id="7")
    p = only(validate(g, TABLE.lookup), "VE-101")
    assert (p.node, p.port) == ("7", None)
    assert "'KSamplr'" in p.message and "'KSampler'" in p.hint


def test_VE_101_takes_known_types_explicitly_too() -> None:
    g = GraphModel()
    g.add_node("Ad", id="1")
    p = only(validate(g, lambda t: None, known_types=["Add", "Mul"]), "VE-101")
    assert "'Add'" in p.hint


def test_VE_102_missing_required_input_without_link_param_or_default() -> None:
    g = sampler_graph()
    g.disconnect("ks", "model")
    p = only(validate(g, lookup), "VE-102")
    assert (p.node, p.port) == ("ks", "model")
    assert "'model'" in p.message and "MODEL" in p.message


def test_VE_103_port_type_mismatch_names_both_types() -> None:
    g = sampler_graph()
    g.connect("ckpt", 2, "ks", "model")  # VAE into MODEL
    p = only(validate(g, lookup), "VE-103")
    assert (p.node, p.port) == ("ks", "model")
    assert "MODEL" in p.message and "VAE" in p.message and "'ckpt'" in p.message


@pytest.mark.parametrize("value", [True, 2.5, "3", None, [1]])
def test_VE_104_wrong_type_for_an_INT_param_including_bool(value: object) -> None:
    p = only(validate(add_node(b=value), lookup), "VE-104")
    assert (p.node, p.port) == ("n1", "b")
    assert f"b = {value!r}" in p.message and "integer" in p.message


def test_VE_104_string_for_FLOAT_and_non_bool_for_BOOLEAN() -> None:
    g = GraphModel()
    g.add_node("Scale", {"x": "1.5", "enabled": 1}, id="s")
    problems = validate(g, lookup)
    assert [(p.code, p.port) for p in problems] == [("VE-104", "x"), ("VE-104", "enabled")]
    assert "'1.5'" in problems[0].message and "1" in problems[1].message


def test_an_int_is_accepted_for_a_FLOAT_param() -> None:
    g = GraphModel()
    g.add_node("Scale", {"x": 3}, id="s")
    assert validate(g, lookup) == []


def test_VE_105_out_of_range_names_value_and_bounds() -> None:
    p = only(validate(sampler_graph(steps=0), lookup), "VE-105")
    assert (p.node, p.port) == ("ks", "steps")
    assert "steps = 0" in p.message and "1" in p.message and "10000" in p.hint


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_VE_106_nan_and_infinity(value: float) -> None:
    p = only(validate(sampler_graph(cfg=value), lookup), "VE-106")
    assert (p.node, p.port) == ("ks", "cfg")
    assert f"cfg = {value!r}" in p.message


def test_VE_107_edge_from_a_missing_node() -> None:
    g = sampler_graph()
    g.connect("ghost", 0, "ks", "model")
    p = only(validate(g, lookup), "VE-107")
    assert (p.node, p.port) == ("ks", "model")
    assert "'ghost'" in p.message


def test_VE_107_a_link_shaped_param_on_a_wired_input() -> None:
    g = sampler_graph()
    g.disconnect("ks", "model")
    g.set_param("ks", "model", ["99", 0])  # what an API file links to a node it lacks
    p = only(validate(g, lookup), "VE-107")
    assert (p.node, p.port) == ("ks", "model") and "'99'" in p.message


@pytest.mark.parametrize("value", [["pos"], ["pos", "0"], ["pos", 0, 1]])
def test_VE_104_a_malformed_link_on_a_wired_input_is_caught_before_running(value: list) -> None:
    g = sampler_graph()
    g.disconnect("ks", "positive")
    g.set_param("ks", "positive", value)  # an API file's broken link: it would crash the node later
    p = only(validate(g, lookup), "VE-104")
    assert (p.node, p.port) == ("ks", "positive") and "malformed link" in p.message and "CONDITIONING" in p.hint


def test_VE_108_output_index_the_source_does_not_have() -> None:
    g = sampler_graph()
    g.connect("ckpt", 5, "ks", "model")
    p = only(validate(g, lookup), "VE-108")
    assert (p.node, p.port) == ("ks", "model")
    assert "output 5" in p.message and "3 outputs" in p.message


def test_VE_109_two_edges_into_one_input() -> None:
    g = sampler_graph()
    g.connect("pos", 0, "ks", "negative", replace=False)
    p = only(validate(g, lookup), "VE-109")
    assert (p.node, p.port) == ("ks", "negative")
    assert "neg[0]" in p.message and "pos[0]" in p.message


def test_VE_110_self_loop() -> None:
    g = add_node()
    g.connect("n1", 0, "n1", "a")
    p = only(validate(g, lookup), "VE-110")
    assert (p.node, p.port) == ("n1", "a")
    assert "'n1'" in p.message


def test_VE_111_cycle_message_shows_the_path() -> None:
    g = chain(3)
    g.connect("2", 0, "0", "a", replace=True)
    p = only(validate(g, lookup), "VE-111")
    assert p.node == "0"
    assert p.message == "cycle: 0 -> 1 -> 2 -> 0"


def test_VE_111_reports_each_cycle_once_and_is_bounded() -> None:
    g = GraphModel()
    for i in range(30):  # 30 separate two-node cycles
        g.add_node("Add", id=f"a{i}")
        g.add_node("Add", id=f"b{i}")
        g.connect(f"a{i}", 0, f"b{i}", "a")
        g.connect(f"b{i}", 0, f"a{i}", "a")
    cycles = [p for p in validate(g, lookup) if p.code == "VE-111"]
    assert len(cycles) == 21  # 20 described + one "more than 20" summary
    assert cycles[0].message == "cycle: a0 -> b0 -> a0"
    assert len({p.message for p in cycles}) == 21


def test_VE_112_unknown_input_and_param_names_suggest_close_ones() -> None:
    g = sampler_graph(stepz=4)
    g.connect("lat", 0, "ks", "latent")
    problems = validate(g, lookup)
    assert [(p.code, p.port) for p in problems] == [("VE-112", "latent"), ("VE-112", "stepz")]
    CODES_TESTED.add("VE-112")
    assert "'steps'" in problems[1].hint and "= 4" in problems[1].message
    assert "'latent_image'" in problems[0].hint


def test_VE_113_value_not_among_choices_lists_them_truncated() -> None:
    p = only(validate(sampler_graph(sampler_name="eulerr"), lookup), "VE-113")
    assert (p.node, p.port) == ("ks", "sampler_name")
    assert "'eulerr'" in p.message and "'euler'" in p.message and "(and 2 more)" in p.message


def test_VE_113_an_empty_choice_list_says_so() -> None:
    g = GraphModel()
    g.add_node("LoadImage", {"image": "cat.png"}, id="li")
    empty = {**SPECS, "LoadImage": replace(SPECS["LoadImage"], inputs=(PortSpec("image", "COMBO", choices=()),))}
    p = only(validate(g, empty.get), "VE-113")
    assert p.port == "image" and "'cat.png'" in p.message and "no choices" in p.message


def test_VE_114_ten_megabyte_string_and_huge_ints() -> None:
    big = "x" * 10_000_000
    g = sampler_graph()
    g.set_param("pos", "text", big)
    p = only(validate(g, lookup), "VE-114")
    assert (p.node, p.port) == ("pos", "text")
    assert "10000000 characters" in p.message and str(MAX_STRING) in p.message
    assert len(p.message) < 300  # the value is named, not pasted
    p = only(validate(add_node(b=2**70), lookup), "VE-114")
    assert "b = " in p.message and "64-bit" in p.message


def test_seed_may_use_the_full_unsigned_64_bit_range_it_declares() -> None:
    assert validate(sampler_graph(seed=2**64 - 1), lookup) == []
    p = only(validate(sampler_graph(seed=2**64), lookup), "VE-114")
    assert p.port == "seed"


def test_VE_116_from_the_spec_check() -> None:
    p = only(validate(sampler_graph(sampler_name="lcm", scheduler="karras"), lookup), "VE-116")
    assert (p.node, p.port) == ("ks", "scheduler")
    assert "'karras'" in p.message and "sgm_uniform" in p.hint


def test_VE_116_a_crashing_check_becomes_a_problem() -> None:
    g = GraphModel()
    g.add_node("BadCheck", id="b")
    p = only(validate(g, lookup), "VE-116")
    assert p.node == "b" and "ZeroDivisionError" in p.message


def test_VE_117_a_missing_file_from_the_spec_check_and_only_check_codes_pass() -> None:
    g = GraphModel()
    g.add_node("LoadFile", {"file": "gone.png"}, id="f")
    p = only(validate(g, lookup), "VE-117")
    assert (p.node, p.port) == ("f", "file") and "'gone.png' not found" in p.message and p.hint == "put it there"
    g.set_param("f", "file", "odd.png")
    assert only(validate(g, lookup), "VE-116").port == "file"  # a check cannot invent codes
    g.set_mode("f", 2)
    g.set_param("f", "file", "gone.png")
    assert validate(g, lookup) == []  # a muted node's missing file is moot


def _add_chain(modes: dict[str, int]) -> GraphModel:
    """p (PrimitiveInt) -> b (Add) -> c (Add), with ``modes`` set."""
    g = GraphModel()
    g.add_node("PrimitiveInt", {"value": 3}, id="p")
    g.add_node("Add", {"b": 1}, id="b")
    g.add_node("Add", {"b": 1}, id="c")
    g.connect("p", 0, "b", "a")
    g.connect("b", 0, "c", "a")
    for n, mode in modes.items():
        g.set_mode(n, mode)
    return g


def test_VE_115_input_fed_by_a_muted_node_names_it_and_the_fix() -> None:
    p = only(validate(_add_chain({"b": 2}), lookup), "VE-115")
    assert (p.node, p.port) == ("c", "a")
    assert "muted node b (Add)" in p.message and p.hint.startswith("un-mute node b or disconnect it")


def test_VE_115_muted_node_reached_through_a_bypassed_one() -> None:
    p = only(validate(_add_chain({"p": 2, "b": 4}), lookup), "VE-115")
    assert (p.node, p.port) == ("c", "a") and "muted node p" in p.message and "bypassed node b" in p.message


def test_VE_115_bypassed_node_with_no_linked_input_of_the_type() -> None:
    g = _add_chain({"b": 4})
    g.disconnect("b", "a")
    p = only(validate(g, lookup), "VE-115")
    assert "no linked INT input" in p.message and "un-bypass node b" in p.hint


def test_skipped_nodes_own_param_problems_are_not_reported() -> None:
    g = _add_chain({"b": 4})
    g.set_param("b", "b", 10_000)  # out of range, but b does not run
    assert validate(g, lookup) == []
    g.set_mode("b", 0)
    assert [p.code for p in validate(g, lookup)] == ["VE-105"]


def test_every_problem_code_has_a_test() -> None:
    # runs last in this file (pytest keeps definition order)
    assert set(PROBLEM_CODES) <= CODES_TESTED


def test_all_problems_are_collected_not_just_the_first() -> None:
    g = sampler_graph(steps=-1, cfg=math.nan, sampler_name="nope", bogus=1)
    g.add_node("Nope", id="x")
    g.connect("ghost", 0, "pos", "clip", replace=False)
    codes = sorted(p.code for p in validate(g, lookup))
    assert codes == ["VE-101", "VE-105", "VE-106", "VE-107", "VE-109", "VE-112", "VE-113"]


def test_check_raises_validation_error_carrying_every_problem() -> None:
    with pytest.raises(ValidationError) as info:
        check(sampler_graph(steps=0, denoise=2.0), lookup)
    assert [(p.code, p.port) for p in info.value.problems] == [("VE-105", "steps"), ("VE-105", "denoise")]
    assert "ks.steps" in str(info.value)


def test_a_linked_widget_input_ignores_its_stale_value() -> None:
    g = sampler_graph(seed="stale, would be VE-104")
    g.add_node("PrimitiveInt", {"value": 5}, id="p")
    g.connect("p", 0, "ks", "seed")
    assert validate(g, lookup) == []


def test_star_inputs_take_any_link_and_any_value() -> None:
    g = sampler_graph()
    g.add_node("Passthrough", id="pt")
    g.connect("ckpt", 0, "pt", "value")
    g.add_node("Passthrough", {"value": [1, 2, 3]}, id="pt2")
    assert validate(g, lookup) == []


def test_check_value_is_usable_on_its_own() -> None:
    port = SPECS["KSampler"].input("steps")
    assert check_value("n", port, 5) is None
    problem = check_value("n", port, 0)
    assert problem is not None and problem.code == "VE-105"


def test_the_default_comfy_workflow_validates(default_workflow: dict) -> None:
    assert validate(from_comfy_ui(default_workflow, lookup), lookup) == []


def test_a_100k_node_chain_validates_quickly() -> None:
    g = chain(100_000)
    start = time.perf_counter()
    problems = validate(g, lookup)
    elapsed = time.perf_counter() - start
    assert problems == []
    assert elapsed < 1.5  # ~0.25 s measured on the 2-core dev box under load; target < 0.3 s


def test_a_cycle_in_a_100k_node_chain_is_reported_with_a_short_message() -> None:
    g = chain(100_000)
    g.connect("99999", 0, "0", "a")
    (p,) = validate(g, lookup)
    assert p.code == "VE-111" and p.message.startswith("cycle: 0 -> 1 -> ")
    assert "(99989 more nodes)" in p.message and p.message.endswith("99999 -> 0")
