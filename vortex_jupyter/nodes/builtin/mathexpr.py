"""The language of ComfyUI's Math Expression node (``comfy_extras/nodes_math.py``): a safe parser.

ComfyUI evaluates the expression with ``simpleeval``: Python's expression syntax, the input
names ``a``..``z`` and ``values`` (the connected inputs, in order), and the functions ``sum min
max abs round pow sqrt ceil floor log log2 log10 sin cos tan int float``. This module parses
that same syntax itself -- a tokenizer and a precedence-climbing parser, no ``eval``, ``exec``,
``compile`` or ``ast`` -- so a hostile graph can do nothing but arithmetic:

- numbers (``12``, ``0x1F``, ``1_000``, ``2.5e-3``), ``True``/``False``/``None``, names, calls of
  the functions above, ``values[i]`` and ``values[i:j]``, ``(...)``, ``# comments``;
- Python's operators with Python's precedence and semantics: ``**`` (right-associative),
  unary ``+ - ~``, ``* / // %``, ``+ -``, ``<< >>``, ``& ^ |``, chained comparisons and
  ``in``/``is`` (``not in``/``is not``), ``not``, short-circuit ``and``/``or``, and
  ``x if cond else y`` (only the chosen branch is evaluated, so ``a % b if b > 0 else 0`` is safe);
- limits, as simpleeval's: ``**`` refuses operands above 4,000,000, ``pow()`` exponents above
  4,000 (ComfyUI's own cap); besides, integer results beyond 100,000 bits, shifts by more than
  10,000 and expressions longer than 10,000 characters or nested deeper than 30 are refused.

Not supported (simpleeval allows them, ComfyUI's numeric result makes them useless): string
literals, attribute access, keyword arguments, list/dict literals, comprehensions, lambdas.

``parse`` gives a tree of tuples that ``mathexpr_eval.evaluate`` walks. Every error is an
``ExpressionError`` naming the expression, the 1-based position and a fix.

>>> parse("2 ** -a")[0]
'chain'
>>> str(ExpressionError("a +", 3, "expected a number", "complete it"))
"expression 'a +': expected a number at position 4 (fix: complete it)"
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from typing import Any

__all__ = ["FUNCTIONS", "ExpressionError", "Node", "parse"]

MAX_LENGTH = 10_000
MAX_DEPTH = 30  # each level costs ~17 Python frames while parsing
MAX_POW_EXPONENT = 4_000  # ComfyUI's cap on pow()'s exponent


class ExpressionError(ValueError):
    """A problem with an expression, at a 1-based character position."""

    def __init__(self, expression: str, position: int, problem: str, fix: str) -> None:
        shown = expression if len(expression) <= 200 else expression[:200] + "..."
        super().__init__(f"expression {shown!r}: {problem} at position {position + 1} (fix: {fix})")
        self.expression, self.position, self.problem = expression, position + 1, problem


# ----------------------------------------------------------------------------- the functions



def _variadic_sum(*args: Any) -> Any:
    """``sum(values)`` and ``sum(a, b, c)`` both work, as in ComfyUI."""
    if len(args) == 1 and hasattr(args[0], "__iter__"):
        return sum(args[0])
    return sum(args)


def _limited_pow(base: Any, exp: Any, *mod: Any) -> Any:
    if abs(exp) > MAX_POW_EXPONENT:
        raise ValueError(f"exponent {exp} exceeds the maximum allowed ({MAX_POW_EXPONENT})")
    return pow(base, exp, *mod)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sum": _variadic_sum, "min": min, "max": max, "abs": abs, "round": round, "pow": _limited_pow,
    "sqrt": math.sqrt, "ceil": math.ceil, "floor": math.floor, "log": math.log, "log2": math.log2,
    "log10": math.log10, "sin": math.sin, "cos": math.cos, "tan": math.tan, "int": int, "float": float,
}
_FUNCTION_LIST = ", ".join(FUNCTIONS)

# ----------------------------------------------------------------------------- tokens

_NUMBER = re.compile(r"0[xX](?:_?[0-9a-fA-F])+|0[oO](?:_?[0-7])+|0[bB](?:_?[01])+"
                     r"|(?:\d(?:_?\d)*)?\.\d(?:_?\d)*(?:[eE][+-]?\d(?:_?\d)*)?"
                     r"|\d(?:_?\d)*\.?(?:[eE][+-]?\d(?:_?\d)*)?")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS = ("**", "//", "<<", ">>", "<=", ">=", "==", "!=",
              "+", "-", "*", "/", "%", "&", "|", "^", "~", "<", ">", "(", ")", "[", "]", ",", ":")
_DIGITS = frozenset("0123456789")
_NAME_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_KEYWORDS = frozenset({"and", "or", "not", "if", "else", "in", "is", "True", "False", "None"})
_CONSTANTS = {"True": True, "False": False, "None": None}

Token = tuple[str, Any, int]  # kind ("num", "name", "op", "kw", "end"), value, position


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in " \t\r\n\f":
            i += 1
        elif ch == "#":
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
        elif ch in _DIGITS or (ch == "." and text[i + 1:i + 2] in _DIGITS and i + 1 < len(text)):
            i = _number(text, i, tokens)
        elif ch in _NAME_START:
            word = _NAME.match(text, i).group()  # type: ignore[union-attr]  # ch starts a name
            tokens.append(("kw" if word in _KEYWORDS else "name", word, i))
            i += len(word)
        else:
            i = _operator(text, i, tokens)
    tokens.append(("end", None, len(text)))
    return tokens


def _number(text: str, i: int, tokens: list[Token]) -> int:
    match = _NUMBER.match(text, i)
    word = match.group() if match else text[i]
    after = text[i + len(word):i + len(word) + 1]
    if after in ("j", "J"):
        raise ExpressionError(text, i, f"complex number {word + after!r}", "use real numbers only")
    if after.isalnum() or after == "_":
        raise ExpressionError(text, i, f"malformed number {word + after!r}", "write a plain number like 12 or 2.5")
    if re.fullmatch(r"0\d+", word.replace("_", "")) and word.strip("0_"):
        raise ExpressionError(text, i, f"number {word!r} has leading zeros", f"write {int(word)}")
    value: int | float = int(word, 0) if not re.search(r"[.eE]", word) or word[:2].lower() == "0x" else float(word)
    tokens.append(("num", value, i))
    return i + len(word)


def _operator(text: str, i: int, tokens: list[Token]) -> int:
    for op in _OPERATORS:
        if text.startswith(op, i):
            tokens.append(("op", op, i))
            return i + len(op)
    ch = text[i]
    hints = {"=": "use == to compare (keyword arguments are not supported)", "'": "text is not supported; use numbers",
             '"': "text is not supported; use numbers", ".": "attribute access is not allowed",
             "@": "matrix products are not supported"}
    raise ExpressionError(text, i, f"unexpected character {ch!r}", hints.get(ch, "remove it"))


# ----------------------------------------------------------------------------- parser
# A node is a tuple (kind, position, *children): ("num", p, v), ("name", p, n), ("unary", p, op, x),
# ("chain", p, x, [(op, p, y), ...]) for x op y op ..., ("cmp", p, [(op, p)], [operands]),
# ("and"/"or", p, [operands]), ("not", p, x),
# ("if", p, body, cond, orelse), ("call", p, name, [args]), ("index", p, x, i), ("slice", p, x, lo, hi, step).

Node = tuple[Any, ...]
_BINARY_LEVELS: list[tuple[str, ...]] = [("|",), ("^",), ("&",), ("<<", ">>"), ("+", "-"), ("*", "/", "//", "%")]
_COMPARE = ("<", ">", "==", ">=", "<=", "!=")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text, self.tokens, self.i, self.depth = text, tokenize(text), 0, 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def fail(self, problem: str, fix: str, position: int | None = None) -> ExpressionError:
        return ExpressionError(self.text, self.tok[2] if position is None else position, problem, fix)

    def take(self, kind: str, value: Any = None) -> bool:
        if self.tok[0] == kind and (value is None or self.tok[1] == value):
            self.i += 1
            return True
        return False

    def expect(self, value: str, what: str) -> None:
        if not self.take("op", value):
            raise self.fail(f"expected {value!r} {what}, found {_describe(self.tok)}", f"add the missing {value!r}")

    def parse(self) -> Node:
        if self.tok[0] == "end":
            raise self.fail("the expression is empty", "write an expression such as a + b", 0)
        node = self.ternary()
        if self.tok[0] != "end":
            raise self.fail(f"unexpected {_describe(self.tok)}", "remove it, or join it with an operator")
        return node

    def nested(self, parse: Callable[[], Node]) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"the expression nests deeper than {MAX_DEPTH} levels", "simplify it")
        try:
            return parse()
        finally:
            self.depth -= 1

    def ternary(self) -> Node:
        body = self.boolean("or")
        pos = self.tok[2]
        if not self.take("kw", "if"):
            return body
        cond = self.boolean("or")
        if not self.take("kw", "else"):
            raise self.fail(f"'if' without 'else', found {_describe(self.tok)}", "write: x if condition else y")
        return ("if", pos, body, cond, self.nested(self.ternary))

    def boolean(self, word: str) -> Node:
        sub = (lambda: self.boolean("and")) if word == "or" else self.negation
        pos = self.tok[2]
        operands = [sub()]
        while self.take("kw", word):
            operands.append(sub())
        return operands[0] if len(operands) == 1 else (word, pos, operands)

    def negation(self) -> Node:
        pos = self.tok[2]
        if self.take("kw", "not"):
            return ("not", pos, self.nested(self.negation))
        return self.comparison()

    def comparison(self) -> Node:
        pos = self.tok[2]
        operands, ops = [self.binary(0)], []
        while (op := self._compare_op()) is not None:
            ops.append(op)
            operands.append(self.binary(0))
        return operands[0] if not ops else ("cmp", pos, ops, operands)

    def _compare_op(self) -> tuple[str, int] | None:
        kind, value, pos = self.tok
        if kind == "op" and value in _COMPARE:
            self.i += 1
            return value, pos
        if kind == "kw" and value == "in":
            self.i += 1
            return "in", pos
        if kind == "kw" and value == "is":
            self.i += 1
            return ("is not", pos) if self.take("kw", "not") else ("is", pos)
        if kind == "kw" and value == "not" and self.tokens[self.i + 1][1] == "in":
            self.i += 2
            return "not in", pos
        return None

    def binary(self, level: int) -> Node:
        """A left-associative run of one precedence level, kept flat (``a+b+...`` in a loop)."""
        if level == len(_BINARY_LEVELS):
            return self.unary()
        first = self.binary(level + 1)
        rest: list[tuple[str, int, Node]] = []
        while self.tok[0] == "op" and self.tok[1] in _BINARY_LEVELS[level]:
            op, pos = self.tok[1], self.tok[2]
            self.i += 1
            rest.append((op, pos, self.binary(level + 1)))
        return ("chain", first[1], first, rest) if rest else first

    def unary(self) -> Node:
        kind, value, pos = self.tok
        if kind == "op" and value in ("+", "-", "~"):
            self.i += 1
            return ("unary", pos, value, self.nested(self.unary))
        return self.power()

    def power(self) -> Node:
        base = self.postfix()
        pos = self.tok[2]
        if self.take("op", "**"):
            return ("chain", pos, base, [("**", pos, self.nested(self.unary))])  # right-assoc: nests
        return base

    def postfix(self) -> Node:
        node = self.atom()
        while True:
            pos = self.tok[2]
            if self.take("op", "["):
                node = self.nested(functools.partial(self.subscript, node, pos))
            elif self.tok[:2] == ("op", "("):
                raise self.fail("only the functions of Math Expression can be called", "call one of: " + _FUNCTION_LIST)
            else:
                return node

    def subscript(self, target: Node, pos: int) -> Node:
        parts: list[Node | None] = [None]
        while True:
            if self.tok[:2] not in (("op", ":"), ("op", "]")):
                parts[-1] = self.ternary()
            if self.take("op", "]"):
                break
            self.expect(":", "in the subscript")
            if len(parts) == 3:
                raise self.fail("a slice takes at most start:stop:step", "remove the extra ':'")
            parts.append(None)
        if len(parts) == 1:
            if parts[0] is None:
                raise self.fail("empty subscript []", "put an index inside, e.g. values[0]", pos)
            return ("index", pos, target, parts[0])
        return ("slice", pos, target, *(parts + [None] * (3 - len(parts))))

    def atom(self) -> Node:
        kind, value, pos = self.tok
        self.i += 1
        if kind == "num":
            return ("num", pos, value)
        if kind == "kw" and value in _CONSTANTS:
            return ("num", pos, _CONSTANTS[value])
        if kind == "name":
            return self.call(value, pos) if self.tok[:2] == ("op", "(") else ("name", pos, value)
        if kind == "op" and value == "(":
            node = self.nested(self.ternary)
            self.expect(")", "to close the '(' at position " + str(pos + 1))
            return node
        self.i -= 1
        raise self.fail(f"expected a number, a name or '(', found {_describe(self.tok)}", "complete the expression")

    def call(self, name: str, pos: int) -> Node:
        if name not in FUNCTIONS:
            raise self.fail(f"unknown function {name!r}", "use one of: " + _FUNCTION_LIST, pos)
        self.i += 1  # "("
        args: list[Node] = []
        while not self.take("op", ")"):
            args.append(self.nested(self.ternary))
            if not self.take("op", ","):
                self.expect(")", f"to close the call of {name}()")
                break
        return ("call", pos, name, args)


def _describe(tok: Token) -> str:
    kind, value, _ = tok
    return "the end of the expression" if kind == "end" else f"{value!r}"


def parse(text: str) -> Node:
    """The syntax tree of ``text``; raises ``ExpressionError`` for anything not allowed."""
    if len(text) > MAX_LENGTH:
        raise ExpressionError(text, MAX_LENGTH, f"the expression is longer than {MAX_LENGTH} characters", "shorten it")
    try:
        return _Parser(text).parse()
    except RecursionError:  # a deep stack around us; MAX_DEPTH normally stops far earlier
        raise ExpressionError(text, 0, "the expression nests too deeply", "simplify it") from None
