"""Evaluation of a parsed Math Expression (``mathexpr.parse``): Python's semantics, with limits.

The tree is walked, never compiled: each operator is Python's own (``operator.add`` ...), so
``7 // -2``, ``-7 % 3``, ``True + 1`` and ``round(2.5)`` give what ComfyUI (``simpleeval``) gives.
Size guards run before an operation: ``**`` refuses operands above 4,000,000 (simpleeval's
limit) and integer results beyond 100,000 bits, ``<<`` shifts beyond 10,000, lists repeated to
more than 100,000 items. Python's errors become ``ExpressionError`` at the operator's position:
division by zero, overflow, a bitwise operator on a float, ``sqrt(-1)``, an index out of range.

>>> evaluate("a % b if b > 0 else 0", {"a": 7, "b": 0})
0
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

from .mathexpr import FUNCTIONS, ExpressionError, Node, parse

__all__ = ["as_number", "evaluate", "names_of"]

MAX_POWER = 4_000_000  # simpleeval's limit on both operands of **
MAX_BITS = 100_000
MAX_SHIFT = 10_000
MAX_ITEMS = 100_000

_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv, "//": operator.floordiv,
    "%": operator.mod, "**": operator.pow, "<<": operator.lshift, ">>": operator.rshift, "&": operator.and_,
    "|": operator.or_, "^": operator.xor,
}
_COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    "<": operator.lt, ">": operator.gt, "==": operator.eq, ">=": operator.ge, "<=": operator.le,
    "!=": operator.ne, "in": lambda a, b: a in b, "not in": lambda a, b: a not in b,
    "is": operator.is_, "is not": operator.is_not,
}
_UNARY: dict[str, Callable[[Any], Any]] = {"+": operator.pos, "-": operator.neg, "~": operator.invert}


_FIXES = {
    TypeError: "check the operand types: bitwise operators need integers (wrap with int(...))",
    ValueError: "keep the arguments in the function's domain (e.g. sqrt and log of positive numbers)",
    IndexError: "use an index within values (0 is the first connected input, -1 the last)",
}


def _bits(value: Any) -> int:
    return abs(value).bit_length() if isinstance(value, int) else 0


def _guard_binary(op: str, a: Any, b: Any) -> str | None:
    """Why ``a op b`` is refused (too costly), or None."""
    if op == "**":
        if _is_number(a) and _is_number(b) and (abs(a) > MAX_POWER or abs(b) > MAX_POWER):
            return f"{a!r} ** {b!r} is beyond the allowed size (operands up to {MAX_POWER})"
        if isinstance(a, int) and isinstance(b, int) and b > 0 and _bits(a) * b > MAX_BITS:
            return f"{a!r} ** {b!r} would have more than {MAX_BITS} bits"
    if op == "<<" and isinstance(b, int) and (b > MAX_SHIFT or _bits(a) + b > MAX_BITS):
        return f"shifting by {b} is beyond the allowed size (at most {MAX_SHIFT})"
    if op == "*" and isinstance(a, int) and isinstance(b, int) and _bits(a) + _bits(b) > MAX_BITS:
        return f"the product would have more than {MAX_BITS} bits"
    if op == "*" and any(isinstance(v, list) for v in (a, b)):
        count = [v for v in (a, b) if isinstance(v, int)]
        items = [len(v) for v in (a, b) if isinstance(v, list)]
        if count and items and count[0] * items[0] > MAX_ITEMS:
            return f"the repeated list would have more than {MAX_ITEMS} items"
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float))


def _type_name(value: Any) -> str:
    return "None" if value is None else type(value).__name__


class _Evaluator:
    def __init__(self, text: str, names: dict[str, Any]) -> None:
        self.text, self.names = text, names

    def fail(self, node: Node, problem: str, fix: str) -> ExpressionError:
        return ExpressionError(self.text, node[1], problem, fix)

    def run(self, node: Node) -> Any:
        kind = node[0]
        if kind == "num":
            return node[2]
        if kind == "name":
            return self.name(node)
        if kind == "and":
            return self.logic(node, stop_when=False)
        if kind == "or":
            return self.logic(node, stop_when=True)
        if kind == "not":
            return not self.run(node[2])
        if kind == "if":
            return self.run(node[2]) if self.run(node[3]) else self.run(node[4])
        if kind == "cmp":
            return self.compare(node)
        if kind == "call":
            return self.call(node)
        if kind in ("index", "slice"):
            return self.subscript(node)
        return self.operation(node)

    def name(self, node: Node) -> Any:
        if node[2] in self.names:
            return self.names[node[2]]
        given = ", ".join(k for k in self.names if k != "values") or "none"
        raise self.fail(node, f"{node[2]!r} is not defined (connected inputs: {given})",
                        f"connect a value to input {node[2]!r}, or use one of the connected inputs")

    def logic(self, node: Node, stop_when: bool) -> Any:
        value = None
        for operand in node[2]:
            value = self.run(operand)
            if bool(value) is stop_when:
                return value
        return value

    def compare(self, node: Node) -> Any:
        ops, operands = node[2], node[3]
        left = self.run(operands[0])
        for (op, pos), operand in zip(ops, operands[1:]):
            right = self.run(operand)
            if not self.apply(("cmp", pos), op, _COMPARISONS[op], left, right):
                return False
            left = right
        return True

    def operation(self, node: Node) -> Any:
        if node[0] == "unary":
            value = self.run(node[3])
            return self.apply(node, node[2], _UNARY[node[2]], value)
        left = self.run(node[2])
        for op, pos, operand in node[3]:
            right = self.run(operand)
            refused = _guard_binary(op, left, right)
            if refused:
                raise ExpressionError(self.text, pos, refused, "use smaller numbers")
            left = self.apply(("chain", pos), op, _BINARY[op], left, right)
        return left

    def call(self, node: Node) -> Any:
        args = [self.run(arg) for arg in node[3]]
        return self.apply(node, f"{node[2]}()", FUNCTIONS[node[2]], *args)

    def subscript(self, node: Node) -> Any:
        target = self.run(node[2])
        if node[0] == "index":
            return self.apply(node, "[]", operator.getitem, target, self.run(node[3]))
        bounds = [None if part is None else self.run(part) for part in node[3:6]]
        return self.apply(node, "[:]", lambda t, *b: t[slice(*b)], target, *bounds)

    def apply(self, node: Node, what: str, func: Callable[..., Any], *args: Any) -> Any:
        try:
            return func(*args)
        except ZeroDivisionError:
            raise self.fail(node, f"division by zero in {what}", "make sure the divisor is not 0, "
                            "e.g. a / b if b != 0 else 0") from None
        except OverflowError:
            raise self.fail(node, f"{what} overflowed", "use smaller numbers") from None
        except (TypeError, ValueError, IndexError) as exc:
            kinds = ", ".join(_type_name(a) for a in args)
            raise self.fail(node, f"{what} failed on ({kinds}): {exc}", _FIXES[type(exc)]) from None


def evaluate(text: str, names: dict[str, Any]) -> Any:
    """The value of ``text`` with ``names`` bound (e.g. ``{"a": 2, "values": [2]}``)."""
    tree = parse(text)
    try:
        return _Evaluator(text, names).run(tree)
    except RecursionError:
        raise ExpressionError(text, 0, "the expression nests too deeply", "simplify it") from None


def as_number(value: Any) -> Any:
    """A connected input as a Python number (numpy/torch scalars are unwrapped)."""
    if isinstance(value, (bool, int, float)):
        return value
    item = getattr(value, "item", None)
    if callable(item):
        try:
            value = item()
        except (TypeError, ValueError):
            return value
    return value


def names_of(values: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    """The names an expression sees: each connected input by letter, and ``values`` (a list)."""
    names = {letter: as_number(value) for letter, value in values}
    names["values"] = [names[letter] for letter, _ in values]
    return names
