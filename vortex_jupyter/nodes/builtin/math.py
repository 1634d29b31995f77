"""Arithmetic on INT and FLOAT values: one small node per operation, no expression strings.

Policy: nothing here evaluates text (no ``eval``), so a graph from an untrusted PNG cannot run
code through a math node. Integers have Python's arbitrary precision; there is deliberately
no power node, since ``10 ** 10**9`` from a hostile graph would hang a worker. Division by zero
fails the node with a message that names the input.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from ..decorator import node

CATEGORY = "utils/math"


def _nonzero(node_type: str, value: float) -> None:
    if value == 0:
        raise ZeroDivisionError(f"{node_type}: input 'b' is 0; division by zero is undefined "
                                "(fix: give 'b' a non-zero value)")


@node(name="IntAdd", category=CATEGORY, register=False)
def int_add(a: int = 0, b: int = 0) -> int:
    """a + b."""
    return a + b


@node(name="IntSubtract", category=CATEGORY, register=False)
def int_subtract(a: int = 0, b: int = 0) -> int:
    """a - b."""
    return a - b


@node(name="IntMultiply", category=CATEGORY, register=False)
def int_multiply(a: int = 1, b: int = 1) -> int:
    """a * b."""
    return a * b


@node(name="IntDivide", category=CATEGORY, register=False)
def int_divide(a: int = 0, b: int = 1) -> int:
    """a // b (floor division, as Python)."""
    _nonzero("IntDivide", b)
    return a // b


@node(name="IntModulo", category=CATEGORY, register=False)
def int_modulo(a: int = 0, b: int = 1) -> int:
    """a % b (the sign follows b, as Python)."""
    _nonzero("IntModulo", b)
    return a % b


@node(name="FloatAdd", category=CATEGORY, register=False)
def float_add(a: float = 0.0, b: float = 0.0) -> float:
    """a + b."""
    return a + b


@node(name="FloatSubtract", category=CATEGORY, register=False)
def float_subtract(a: float = 0.0, b: float = 0.0) -> float:
    """a - b."""
    return a - b


@node(name="FloatMultiply", category=CATEGORY, register=False)
def float_multiply(a: float = 1.0, b: float = 1.0) -> float:
    """a * b."""
    return a * b


@node(name="FloatDivide", category=CATEGORY, register=False)
def float_divide(a: float = 0.0, b: float = 1.0) -> float:
    """a / b."""
    _nonzero("FloatDivide", b)
    return a / b


@node(name="IntToFloat", category=CATEGORY, register=False)
def int_to_float(value: int = 0) -> float:
    """The integer as a float."""
    return float(value)


@node(name="FloatToInt", category=CATEGORY, register=False)
def float_to_int(value: float = 0.0, mode: Literal["round", "floor", "ceil", "truncate"] = "round") -> int:
    """The float as an integer, rounded by ``mode`` (``round`` rounds half to even)."""
    if not math.isfinite(value):
        raise ValueError(f"FloatToInt: input 'value' is {value}; only finite numbers have an integer "
                         "value (fix: check the node that produced it)")
    rounders: dict[str, Any] = {"round": round, "floor": math.floor, "ceil": math.ceil, "truncate": math.trunc}
    return int(rounders[mode](value))


NODES = [int_add, int_subtract, int_multiply, int_divide, int_modulo, float_add, float_subtract,
         float_multiply, float_divide, int_to_float, float_to_int]
