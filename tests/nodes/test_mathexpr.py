"""ComfyMathExpression's language: Python's expression semantics (what ComfyUI's simpleeval gives),
checked against Python itself, with positions in errors and nothing but arithmetic reachable."""

from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vortex_jupyter.nodes.builtin.mathexpr import FUNCTIONS, ExpressionError, parse
from vortex_jupyter.nodes.builtin.mathexpr_eval import evaluate, names_of
from vortex_jupyter.nodes.builtin.values import ComfyMathExpression

NAMES = {"a": 100, "b": 7, "c": 3, "values": [100, 7, 3]}


def _comfy_sum(*args):
    """ComfyUI's ``_variadic_sum``: ``sum(values)`` and ``sum(a, b, c)``."""
    return sum(args[0]) if len(args) == 1 and hasattr(args[0], "__iter__") else sum(args)


REFERENCE_FUNCTIONS = {"sum": _comfy_sum, "min": min, "max": max, "abs": abs, "round": round, "pow": pow,
                       "int": int, "float": float, **{f: getattr(math, f) for f in (
                           "sqrt", "ceil", "floor", "log", "log2", "log10", "sin", "cos", "tan")}}


def python_value(expression: str, names: dict) -> object:
    """The reference: CPython evaluating the (trusted, test-authored) expression with the names
    and functions ComfyUI's node gives simpleeval."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)  # e.g. "in" with a literal
        return eval(expression, {"__builtins__": {}}, {**REFERENCE_FUNCTIONS, **names})  # the reference; test-authored text only


def outcome(func, *args):
    try:
        value = func(*args)
    except (ExpressionError, ArithmeticError, TypeError, ValueError):
        return "error"
    return (type(value).__name__, value if not isinstance(value, float) or not math.isnan(value) else "nan")


def template_expressions() -> list[str]:
    import comfyui_workflow_templates_json as corpus

    found = set()
    for path in (Path(corpus.__file__).parent / "templates").glob("*.json"):
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            continue
        nodes = list(data.get("nodes", []))
        for sub in data.get("definitions", {}).get("subgraphs", []):
            nodes += sub.get("nodes", [])
        found |= {n["widgets_values"][0] for n in nodes
                  if n.get("type") == "ComfyMathExpression" and n.get("widgets_values")}
    return sorted(found)


EXPRESSIONS = template_expressions()


def test_the_templates_use_many_distinct_expressions_and_only_our_functions():
    assert len(EXPRESSIONS) >= 30  # the corpus below is a real sample, not a handful
    assert set(REFERENCE_FUNCTIONS) == set(FUNCTIONS)


@pytest.mark.parametrize("expression", EXPRESSIONS)
@pytest.mark.parametrize("a", [100, 1537, 2.5])
def test_every_template_expression_evaluates_as_python_does(expression, a):
    names = {"a": a, "b": 7, "c": 3, "values": [a, 7, 3]}
    assert outcome(evaluate, expression, names) == outcome(python_value, expression, names)


# ----------------------------------------------------------------------------- random expressions

_leaf = st.one_of(st.integers(-20, 20).map(str), st.sampled_from(["a", "b", "c", "1.5", "0.25", "True", "0"]))
_binary = ["+", "-", "*", "/", "//", "%", "**", "&", "|", "^", "<<", ">>", "<", "<=", "==", "!=", ">", ">=",
           "and", "or", "in"]  # not "is": identity of equal constants differs between compiled
# Python (folded into one object) and tree walkers like simpleeval (two objects)


def _combine(children):
    return st.one_of(
        st.tuples(children, st.sampled_from(_binary), children).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(children, st.sampled_from(_binary), children).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
        st.tuples(st.sampled_from(["-", "+", "~", "not "]), children).map(lambda t: f"{t[0]}{t[1]}"),
        st.tuples(children, children, children).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
        st.tuples(st.sampled_from(["min", "max", "abs", "round", "int", "float", "sum"]), children, children)
        .map(lambda t: f"{t[0]}({t[1]})" if t[0] in ("abs", "int", "float") else f"{t[0]}({t[1]}, {t[2]})"),
        children.map(lambda x: f"values[{x} % 3]" if x.lstrip("-").isdigit() else f"({x})"),
    )


@settings(max_examples=400, deadline=None, database=None)
@given(st.recursive(_leaf, _combine, max_leaves=8))
def test_random_expressions_give_pythons_value_or_fail_where_python_fails(expression):
    names = {"a": 6, "b": -3, "c": 0.5, "values": [6, -3, 0.5]}
    ours = outcome(evaluate, expression, names)
    if ours == "error" and any(word in _error_text(expression, names) for word in _SIZE_GUARDS):
        return  # refused for size: CPython would grind through e.g. 20 ** 20 ** 20 (no reference)
    try:
        reference = outcome(python_value, expression, names)
    except SyntaxError:
        reference = "error"  # e.g. "0 + not 0": Python's grammar refuses it, and so do we
    except (MemoryError, RecursionError):
        return  # beyond what either side should compute
    assert ours == reference


_SIZE_GUARDS = ("beyond the allowed size", "bits", "shifting by", "more than 100000 items")


def _error_text(expression: str, names: dict) -> str:
    try:
        evaluate(expression, names)
    except ExpressionError as exc:
        return str(exc)
    except Exception as exc:  # outcome() reported an error that is not ours: show it
        return repr(exc)
    return ""


@pytest.mark.parametrize(("expression", "value"), [
    ("-2 ** 2", -4), ("2 ** -1", 0.5), ("2 ** 3 ** 2", 512), ("not 1 == 2", True), ("1 < 2 < 3 > 5", False),
    ("7 // -2", -4), ("-7 % 3", 2), ("0x1F + 0o7 + 0b11 + 1_000", 1041), (".5 + 1e-1 + 2.", 2.6),
    ("a if 0 else b or c", 7), ("0 or 0.0 or 5", 5), ("sum(values) - sum(a, b, c)", 0), ("round(2.5)", 2),
    ("values[-1] + len_ if 0 else 9", 9), ("# only\n a  # comments", 100), ("max(values[1:])", 7),
])
def test_operators_follow_pythons_precedence_and_semantics(expression, value):
    result = evaluate(expression, NAMES)
    assert result == value and type(result) is type(value)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(("expression", "position", "problem"), [
    ("", 1, "empty"),
    ("a +", 4, "expected a number"),
    ("(a + b", 7, "expected ')'"),
    ("a b", 3, "unexpected 'b'"),
    ("a = 1", 3, "unexpected character '='"),
    ("d * 2", 1, "'d' is not defined (connected inputs: a, b, c)"),
    ("1 + a / (b - 7)", 7, "division by zero"),
    ("open(a)", 1, "unknown function 'open'"),
    ("a & 1.5", 3, "& failed on (int, float)"),
    ("sqrt(-a)", 1, "sqrt() failed"),
    ("values[9]", 7, "list index out of range"),
    ("a if b", 7, "'if' without 'else'"),
    ("012", 1, "leading zeros"),
    ("3j", 1, "complex number"),
    ("'text'", 1, "unexpected character"),
])
def test_errors_name_the_expression_the_position_and_a_fix(expression, position, problem):
    with pytest.raises(ExpressionError) as caught:
        evaluate(expression, NAMES)
    message = str(caught.value)
    assert caught.value.position == position and problem in message
    assert f"expression {expression!r}" in message and "(fix: " in message


@pytest.mark.parametrize("expression", [
    "a.__class__", "().__class__.__bases__", "__import__('os')", "values.__len__()", "(lambda: 1)()",
    "[x for x in values]", "getattr(a, 'real')", "eval('1')", "a[0]()", "{}",
])
def test_nothing_but_arithmetic_is_reachable(expression):
    with pytest.raises(ExpressionError):
        evaluate(expression, NAMES)


@pytest.mark.parametrize(("expression", "problem"), [
    ("9 ** 9 ** 9", "beyond the allowed size"),
    ("2 ** 4000000", "more than 100000 bits"),
    ("1 << 100000", "shifting by 100000"),
    ("pow(2, 5000)", "exceeds the maximum allowed (4000)"),
    ("(" * 200 + "1" + ")" * 200, "nests deeper than 30"),
    ("-" * 5000 + "1", "nests deeper than 30"),
    ("1+" * 6000 + "1", "longer than 10000 characters"),
])
def test_costly_expressions_are_refused_quickly(expression, problem):
    start = time.perf_counter()
    with pytest.raises(ExpressionError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        evaluate(expression, NAMES)
    assert time.perf_counter() - start < 1.0


def test_a_long_flat_sum_evaluates_without_deep_recursion():
    expression = "+".join(["a"] * 3000)  # a left-deep tree would need 3000 nested calls
    assert evaluate(expression, NAMES) == 300_000
    assert parse(expression)[0] == "chain"


# ----------------------------------------------------------------------------- the node


def run(expression, **values):
    return ComfyMathExpression().execute(expression, **{f"values.{k}": v for k, v in values.items()})


def test_the_node_outputs_float_int_and_bool_like_comfyui():
    assert run("a / 4", a=10) == (2.5, 2, True)
    assert run("a - 2.5", a=0) == (-2.5, -2, True)  # int() truncates toward zero
    assert run("a > 2048", a=4096) == (1.0, 1, True)  # a boolean result counts as 1 / 0
    assert run("a * 0", a=3) == (0.0, 0, False)


def test_values_are_the_connected_inputs_in_letter_order_whatever_the_call_order():
    node = ComfyMathExpression()
    got = node.execute("values[0] * 100 + values[1] * 10 + values[2]", **{"values.c": 3, "values.a": 1, "values.b": 2})
    assert got[1] == 123
    assert names_of([("a", np.float32(1.5)), ("b", np.int64(2))]) == {"a": 1.5, "b": 2, "values": [1.5, 2]}


@pytest.mark.parametrize(("expression", "problem"), [
    ("   ", "the expression is empty"),
    ("a is None", None),  # False is a number: fine
    ("None", "gives NoneType None, not a number"),
    ("values", "gives list"),
    ("a * 1e308 * 10", "not a finite number"),
    ("a ** 2000", "too large for a float"),
    ("b + 1", "'b' is not defined (connected inputs: a)"),
])
def test_the_node_rejects_results_that_are_not_finite_numbers(expression, problem):
    if problem is None:
        assert run(expression, a=2) == (0.0, 0, False)
        return
    with pytest.raises(ValueError, match=problem.replace("(", r"\(").replace(")", r"\)")) as caught:
        run(expression, a=2)
    assert str(caught.value).startswith("ComfyMathExpression: ") and "(fix: " in str(caught.value)
