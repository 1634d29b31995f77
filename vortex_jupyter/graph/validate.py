"""Validation: every problem of a graph, collected in one pass, before anything runs.

Policy:
- Never stop at the first problem: each node, edge and param is checked and every problem is
  returned (a ``Problem`` with VE code, node id, port, a message naming the value, a hint).
- Node types are resolved through ``lookup(type) -> spec | None`` (pass ``REGISTRY.lookup``).
  Specs are seen only by duck typing (``.inputs`` of ports with ``name``, ``type``, ``default``,
  ``required``, ``min``, ``max``, ``choices``, ``widget``; ``.outputs`` with ``type``; optional
  ``.check``), so ``graph/`` never imports ``vortex_jupyter.nodes``.
- A linked input wins over a widget value stored for it: no problem is reported for the value.
- Muted / bypassed nodes (``model.modes``): their own param checks are skipped and an input of
  a running node left empty by them is VE-115 (``graph/modes.py``); free when none is set.
- Params of inputs that are not widgets (IMAGE, MODEL, ``*`` ...) may hold values given from
  Python; only their size and finiteness are checked, and that they are not link-shaped lists
  (``["3", 0]`` to a missing node is VE-107, a broken link like ``["3"]`` is VE-104).
- Cycles: Kahn's pass finds whether any exist (linear); only then are strongly connected
  components searched, and each is reported once as ``a -> b -> a`` (bounded). That pass
  yields a topological order for free: ``validate_ordered`` returns it, so the engine does not
  sort the graph a second time.
- Speed (a 10k-node graph validates before every cold run): what depends only on node types
  is computed once per type (``_Info``, ``_Port``), a link whose (source type, output, target
  type, input) was already found fine is accepted with one set lookup, and a plain widget
  value inside its port's bounds is accepted with a type test and a comparison
  (``_Port.plain``). Anything else takes the full checks, which produce the messages.

>>> from vortex_jupyter.graph.model import GraphModel
>>> g = GraphModel(); _ = g.add_node("Nope", id="1")
>>> [p.code for p in validate(g, lambda t: None)]
['VE-101']
"""

from __future__ import annotations

import difflib
import math
import sys
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import Problem, ValidationError
from . import modes, topology
from .model import Edge, GraphModel, NodeData
from .ports import compatible
from .unknown import describe_unknown, install_hint

__all__ = ["MAX_INT", "MAX_STRING", "check", "describe", "describe_unknown", "validate", "validate_ordered"]

#: Longest string accepted in a param (characters).
MAX_STRING = 1 << 20
#: Integers must fit in signed 64 bits (what tensors, numpy and JSON tools agree on) ...
MAX_INT = (1 << 63) - 1
MIN_INT = -(1 << 63)
#: ... unless the port declares a larger max: ComfyUI's seeds go up to 2**64 - 1.
MAX_UINT = (1 << 64) - 1
#: The frontend's PrimitiveNode (``nodes/builtin/frontend.py``): its value is checked per target.
PRIMITIVE = "PrimitiveNode"
#: Choice lists are cut to this many entries in messages.
CHOICES_SHOWN = 8
#: Codes a node's own check may give a problem (anything else is VE-116, unsupported settings):
#: VE-117 a file it reads is missing, VE-700 a file name that could leave its folder (the
#: ``PathError`` the node would raise when run; ``errors.UnsafeFileName``).
_CHECK_CODES = ("VE-116", "VE-117", "VE-700")

Lookup = Callable[[str], Any]


def check(model: GraphModel, lookup: Lookup, known_types: Iterable[str] | None = None) -> None:
    """Raise ``ValidationError`` with every problem of ``model``, if it has any."""
    problems = validate(model, lookup, known_types)
    if problems:
        raise ValidationError(problems)


def validate(model: GraphModel, lookup: Lookup, known_types: Iterable[str] | None = None) -> list[Problem]:
    """Every problem of ``model``. ``known_types`` feeds "did you mean" hints for unknown types
    (default: ``lookup.__self__.types()`` when ``lookup`` is a registry's bound method)."""
    return validate_ordered(model, lookup, known_types)[0]


def validate_ordered(
    model: GraphModel, lookup: Lookup, known_types: Iterable[str] | None = None
) -> tuple[list[Problem], list[str] | None]:
    """``validate``, plus the graph's topological order (``topology.topo_order``'s order), or
    None when the graph has a cycle. The cycle check computes the order anyway."""
    problems: list[Problem] = []
    types = _TypeNames(lookup, known_types)
    infos = _Infos(lookup)
    links_ok: set[tuple[str, int, str, str]] = set()
    #: in-degree of each node (links from existing nodes), counted while checking the links
    indeg: dict[str, int] = {}
    into = model._in  # read directly: this loop runs once per node of 100k-node graphs
    for node in model.nodes.values():
        info = infos[node.type]
        if info is None:
            problems.append(_unknown_type(node, types))
        linked = into.get(node.id) or {}
        indeg[node.id] = _check_edges(model, node, info, linked, infos, problems, links_ok) if linked else 0
        if info is not None and (node.params or info.needed or info.check is not None):
            _check_node(node, info, linked, problems)
    if model.modes:
        problems = modes.problems(model, lookup, problems)
    order, leftover = topology.kahn_pass(model._out, indeg)
    if leftover:
        # self-loops are already VE-110; a cycle through more nodes is VE-111
        problems += topology.cycle_problems(model, leftover, self_loops=False)
        return problems, None
    return problems, order


class _Port:
    """What validation needs of a port, read once per node type (specs are duck-typed)."""

    __slots__ = ("choices", "float_hi", "float_lo", "hi", "int_hi", "int_lo", "lo", "name", "needed",
                 "strings", "type", "widget")

    def __init__(self, port: Any, own_check: bool = False) -> None:
        self.name: str = port.name
        self.type: str = port.type
        self.widget = bool(getattr(port, "widget", False))
        # A node that validates this input itself (ComfyUI: VALIDATE_INPUTS names it) may accept
        # values beyond its listed choices, e.g. any checkpoint file, as ComfyUI does.
        self.choices = None if own_check else getattr(port, "choices", None)
        self.lo, self.hi = getattr(port, "min", None), getattr(port, "max", None)
        self.needed = bool(getattr(port, "required", True)) and not _has_default(port)
        self._plain_bounds()

    def _plain_bounds(self) -> None:
        """Precompute what ``plain`` compares against: the range of ints and floats the full
        checks would accept for this port (empty ranges where they need a closer look), and
        the strings they would accept (any, a set of choices, or None: look closer)."""
        numeric = (self.widget and self.type in ("INT", "FLOAT") and self.choices is None
                   and _is_bound(self.lo) and _is_bound(self.hi))
        lo = -math.inf if self.lo is None else self.lo
        hi = math.inf if self.hi is None else self.hi
        self.int_lo: float = max(lo, MIN_INT) if numeric else 1
        self.int_hi: float = min(hi, MAX_INT) if numeric else 0
        # finite bounds: inf is never plain (NaN fails every comparison by itself)
        float_ok = numeric and self.type == "FLOAT"
        self.float_lo: float = max(lo, -sys.float_info.max) if float_ok else 1.0
        self.float_hi: float = min(hi, sys.float_info.max) if float_ok else 0.0
        self.strings: bool | frozenset[str] | None = None
        if self.widget and self.type == "STRING" and self.choices is None:
            self.strings = True
        elif self.widget and self.type == "COMBO" and self.choices:
            self.strings = frozenset(c for c in self.choices if type(c) is str and len(c) <= MAX_STRING)

    def plain(self, value: Any) -> bool:
        """True when ``value`` certainly passes every check of this port (a plain widget value
        in range); False means "run the full checks" (which may still accept it)."""
        kind = type(value)
        if kind is int:
            return self.int_lo <= value <= self.int_hi
        if kind is float:
            return self.float_lo <= value <= self.float_hi
        if kind is str:
            strings = self.strings
            if strings is True:
                return len(value) <= MAX_STRING
            return strings is not None and value in strings  # type: ignore[operator]
        if kind is bool:
            return self.widget and self.type == "BOOLEAN" and self.choices is None
        return False


def _is_bound(value: Any) -> bool:
    return value is None or (type(value) in (int, float) and value == value)


class _Info:
    __slots__ = ("check", "defaults", "needed", "out_types", "ports", "spec", "type")

    def __init__(self, type_name: str, spec: Any) -> None:
        self.spec, self.type = spec, type_name
        check = getattr(spec, "check", None)
        self.check = check if callable(check) else None
        own = frozenset(getattr(self.check, "inputs", ()) or ())
        self.ports = {p.name: _Port(p, p.name in own) for p in spec.inputs}
        self.needed = tuple(p for p in self.ports.values() if p.needed)
        self.out_types = tuple(o.type for o in spec.outputs)
        self.defaults = {p.name: p.default for p in spec.inputs if _has_default(p)} if self.check else {}


class _Infos(dict[str, "_Info | None"]):
    """Spec info per node type, looked up once per validation."""

    def __init__(self, lookup: Lookup) -> None:
        super().__init__()
        self._lookup = lookup

    def __missing__(self, type_name: str) -> _Info | None:
        spec = self._lookup(type_name)
        info = None if spec is None else _Info(type_name, spec)
        self[type_name] = info
        return info


class _TypeNames:
    """Known type names, fetched only when an unknown type needs suggestions."""

    def __init__(self, lookup: Lookup, known: Iterable[str] | None) -> None:
        self._lookup, self._known = lookup, known
        self._names: list[str] | None = None
        self._close: dict[str, list[str]] = {}  # difflib is slow: once per unknown type

    def close(self, type_name: str) -> list[str]:
        if type_name not in self._close:
            self._close[type_name] = difflib.get_close_matches(type_name, self.names(), n=3, cutoff=0.6)
        return self._close[type_name]

    def names(self) -> list[str]:
        if self._names is None:
            source = self._known
            if source is None:
                owner = getattr(self._lookup, "__self__", self._lookup)
                types = getattr(owner, "types", None)
                source = types() if callable(types) else ()
            self._names = [str(t) for t in source]
        return self._names


def _unknown_type(node: NodeData, types: _TypeNames) -> Problem:
    close = types.close(node.type)
    hint = f"did you mean {_or_list(close)}?" if close else "install or register the node type, or remove the node"
    install = install_hint(node)
    if install:
        hint = install + "; or " + hint
    return Problem("VE-101", node.id, None, f"unknown node type {node.type!r}: {describe_unknown(node)}", hint)


# ---- edges ---------------------------------------------------------------------------------
def _check_edges(
    model: GraphModel, node: NodeData, info: _Info | None, linked: dict[str, list[Edge]], infos: _Infos,
    out: list[Problem], links_ok: set[tuple[str, int, str, str]],
) -> int:
    """Check the links into ``node``; returns how many come from existing nodes (its in-degree
    for Kahn's pass). ``links_ok`` holds (source type, output, node type, input) combinations
    already found fine in this validation: whether such a link is fine depends on nothing
    else, so most links of a big graph are accepted with one set lookup."""
    nodes = model.nodes
    degree = 0
    for name, edges in linked.items():
        if len(edges) == 1:
            e = edges[0]
            src = nodes.get(e.src)
            if src is not None and e.src != e.dst:
                shape = (src.type, e.src_output, node.type, name)
                if shape in links_ok and src.type != PRIMITIVE:  # a primitive's value matters too
                    degree += 1
                    continue
                port = info.ports.get(name) if info is not None else None
                if port is not None:
                    degree += 1
                    before = len(out)
                    _check_edge(model, e, port, infos, out)
                    if len(out) == before and infos[src.type] is not None:
                        links_ok.add(shape)
                    continue
        degree += _check_link_slow(model, node, info, name, edges, infos, out)
    return degree


def _check_link_slow(
    model: GraphModel, node: NodeData, info: _Info | None, name: str, edges: list[Edge], infos: _Infos,
    out: list[Problem],
) -> int:
    """The full checks of the links into one input; returns how many come from existing nodes."""
    port = info.ports.get(name) if info is not None else None
    if info is not None and port is None:
        out.append(_unknown_name(node, info, name, "input", f"linked from node {edges[0].src!r}"))
    if len(edges) > 1:
        srcs = ", ".join(f"{e.src}[{e.src_output}]" for e in edges)
        out.append(Problem("VE-109", node.id, name, f"input {name!r} has {len(edges)} links (from {srcs})",
                           "keep one link into this input and remove the others"))
    for edge in edges:
        _check_edge(model, edge, port, infos, out)
    return sum(1 for e in edges if e.src in model.nodes)


def _check_edge(model: GraphModel, e: Edge, port: _Port | None, infos: _Infos, out: list[Problem]) -> None:
    if e.src == e.dst:
        out.append(Problem("VE-110", e.dst, e.dst_input,
                           f"node {e.dst!r} is linked to itself (output {e.src_output} -> input {e.dst_input!r})",
                           "remove this link; a node cannot consume its own output"))
        return
    src = model.nodes.get(e.src)
    if src is None:
        out.append(Problem("VE-107", e.dst, e.dst_input,
                           f"input {e.dst_input!r} is linked from node {e.src!r}, which does not exist",
                           "remove the link or add the missing node"))
        return
    src_info = infos[src.type]
    if src_info is None:
        return  # the source's own VE-101 says it all
    outs = src_info.out_types
    if not 0 <= e.src_output < len(outs):
        plural = "s" if len(outs) != 1 else ""
        out.append(Problem("VE-108", e.dst, e.dst_input,
                           f"input {e.dst_input!r} is linked from output {e.src_output} of node {e.src!r} "
                           f"({src.type}), which has {len(outs)} output{plural}",
                           f"link from an output index between 0 and {len(outs) - 1}" if outs
                           else f"{src.type} has no outputs; remove the link"))
        return
    src_type = outs[e.src_output]
    if port is not None and not compatible(src_type, port.type):
        out.append(Problem("VE-103", e.dst, e.dst_input,
                           f"input {e.dst_input!r} expects {port.type} but is linked to output {e.src_output} "
                           f"of node {e.src!r} ({src.type}), which gives {src_type}",
                           f"link an output of type {port.type} instead"))
    elif port is not None and port.widget and src.type == PRIMITIVE and "value" in src.params:
        _check_primitive(e, port, src, out)


def _check_primitive(e: Edge, port: _Port, src: NodeData, out: list[Problem]) -> None:
    """A PrimitiveNode's value lands in the widgets it feeds (``formats/comfy_ui``): judge it as
    each widget would, on the primitive (where it is edited), naming the widget."""
    problem = _value_problem(e.src, port, src.params["value"])
    if problem is not None:
        out.append(Problem(problem.code, e.src, "value", f"{problem.message} (it feeds input {e.dst_input!r} "
                           f"of node {e.dst!r})", problem.hint))


# ---- params and required inputs ------------------------------------------------------------
def _check_node(node: NodeData, info: _Info, linked: dict[str, list[Edge]], out: list[Problem]) -> None:
    before = len(out)
    params = node.params
    ports = info.ports
    for name, value in params.items():
        port = ports.get(name)
        if port is not None and port.plain(value):
            continue  # in range for its port, whether or not a link overrides it
        if port is None:
            out.append(_unknown_name(node, info, name, "param", f"= {_show(value)}"))
        elif name not in linked:  # a link wins over a stored widget value
            problem = _value_problem(node.id, port, value)
            if problem is not None:
                out.append(problem)
    for port in info.needed:
        if port.name not in linked and port.name not in params:
            what = "a value" if port.widget else f"a link from an output of type {port.type}"
            out.append(Problem("VE-102", node.id, port.name,
                               f"required input {port.name!r} ({port.type}) of {node.type} has no value and no link",
                               f"give it {what}"))
    if info.check is not None and len(out) == before:
        _custom_check(node, info, linked, out)


def _custom_check(node: NodeData, info: _Info, linked: dict[str, list[Edge]], out: list[Problem]) -> None:
    params = {k: v for k, v in info.defaults.items() if k not in linked}
    params.update((k, v) for k, v in node.params.items() if k not in linked)
    try:
        found = list(info.check(params) or ())  # type: ignore[misc]
    except Exception as exc:  # a buggy check must not hide the other problems
        out.append(Problem("VE-116", node.id, None, f"{node.type}'s check of its params failed: {exc!r}",
                           "fix the node's check function"))
        return
    for item in found:
        port, message, hint, code = (*tuple(item), "", "", "", "")[:4]
        code = code if code in _CHECK_CODES else "VE-116"
        out.append(Problem(code, node.id, port or None, str(message), str(hint)))


def _has_default(port: Any) -> bool:
    has = getattr(port, "has_default", None)
    if isinstance(has, bool):
        return has
    return getattr(port, "default", None) is not None


def _unknown_name(node: NodeData, info: _Info, name: str, kind: str, detail: str) -> Problem:
    names = list(info.ports)
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    hint = f"did you mean {_or_list(close)}?" if close else f"{node.type} takes: {', '.join(names) or 'nothing'}"
    return Problem("VE-112", node.id, name, f"{node.type} has no input named {name!r} ({kind} {detail})", hint)


def check_value(node_id: str, port: Any, value: Any) -> Problem | None:
    """The problem with ``value`` for ``port`` (a spec's PortSpec), if any: type, size,
    finiteness, choices, range -- the per-param part of ``validate``."""
    return _value_problem(node_id, _Port(port), value)


def _value_problem(node_id: str, port: _Port, value: Any) -> Problem | None:
    if port.plain(value):
        return None  # the common case, checked cheaply (100k-node graphs validate in budget)
    kind = type(value)
    name = port.name

    def problem(code: str, message: str, hint: str) -> Problem:
        return Problem(code, node_id, name, message, hint)

    too_large = _too_large(value, port)
    if too_large:
        return problem("VE-114", f"{name} = {_show(value)} is too large: {too_large}",
                       "use a smaller value" if isinstance(value, int) else f"keep strings under {MAX_STRING} characters")
    if kind is float and not math.isfinite(value):
        return problem("VE-106", f"{name} = {_show(value)} is not a finite number", "use a finite number")
    if not port.widget:
        if port.type != "*" and _looks_like_link(value):  # an API-format link to a node not in the file
            return problem("VE-107", f"{name} = {_show(value)} looks like a link to node {value[0]!r}, "
                           "which does not exist", "link this input from an existing node")
        if port.type != "*" and _malformed_link(value):  # e.g. ["3"] or ["3", "0"] in an API file
            return problem("VE-104", f"{name} = {_show(value)} looks like a malformed link: {port.type} "
                           "comes from a link [node_id, output_index]",
                           f"link {name} from an output of type {port.type}, e.g. [\"{value[0]}\", 0]")
        return None  # a Python value for a wired input (IMAGE, MODEL): the engine's business
    wrong = _wrong_type(port.type, value)
    if wrong:
        return problem("VE-104", f"{name} = {_show(value)} is a {kind.__name__}, but {port.type} needs {wrong}",
                       f"give {name} {wrong}")
    choices = port.choices
    if choices is not None and not choices:
        return problem("VE-113", f"{name} = {_show(value)} cannot be checked: {name} has no choices at all",
                       f"make {name}'s choices available (e.g. put files in the folder it lists)")
    if choices is not None and value not in choices:
        listed = ", ".join(repr(c) for c in list(choices)[:CHOICES_SHOWN])
        more = f" (and {len(choices) - CHOICES_SHOWN} more)" if len(choices) > CHOICES_SHOWN else ""
        return problem("VE-113", f"{name} = {_show(value)} is not one of the choices: {listed}{more}",
                       f"pick one of the {len(choices)} choices")
    return _range(problem, name, value, port)


def _looks_like_link(value: Any) -> bool:
    return (
        type(value) is list
        and len(value) == 2
        and type(value[0]) in (str, int)
        and type(value[1]) is int
    )


def _malformed_link(value: Any) -> bool:
    """A short list that starts with a node id but is not ``[id, int]``: a broken API link, never
    a Python value for a wired input (those are arrays, dicts, handles)."""
    return type(value) is list and 1 <= len(value) <= 3 and type(value[0]) is str and not _looks_like_link(value)


def _range(problem: Callable[[str, str, str], Problem], name: str, value: Any, port: _Port) -> Problem | None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    lo, hi, shown = port.lo, port.hi, _show(value)
    if lo is not None and value < lo:
        return problem("VE-105", f"{name} = {shown} is below the minimum {lo}", f"use a value between {lo} and {hi}"
                       if hi is not None else f"use a value of at least {lo}")
    if hi is not None and value > hi:
        return problem("VE-105", f"{name} = {shown} is above the maximum {hi}", f"use a value between {lo} and {hi}"
                       if lo is not None else f"use a value of at most {hi}")
    return None


def _wrong_type(ptype: str, value: Any) -> str | None:
    """What ``ptype`` needs, if ``value`` is not it (bool is not an INT; int is fine for FLOAT)."""
    if ptype == "INT":
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else "an integer"
    if ptype == "FLOAT":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if ok else "a number"
    if ptype == "STRING":
        return None if isinstance(value, str) else "a string"
    if ptype == "BOOLEAN":
        return None if isinstance(value, bool) else "true or false"
    if ptype == "COMBO":
        ok = isinstance(value, (str, int, float)) and not isinstance(value, bool)
        return None if ok else "one of the choices"
    return None


def _too_large(value: Any, port: _Port) -> str:
    if isinstance(value, str) and len(value) > MAX_STRING:
        return f"{len(value)} characters (the limit is {MAX_STRING})"
    if isinstance(value, int) and not isinstance(value, bool):
        hi = MAX_INT
        if isinstance(port.hi, int) and port.hi > MAX_INT:
            hi = min(port.hi, MAX_UINT)
        if not MIN_INT <= value <= hi:
            bits = "a signed 64-bit integer" if hi == MAX_INT else "64 bits"
            return f"it does not fit in {bits}"
    return ""


def _show(value: Any) -> str:
    """``repr`` cut to a readable length (values may be 10 MB strings or huge ints)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"<{value.bit_length()}-bit integer>"
    if isinstance(value, str) and len(value) > 60:
        return f"{value[:40]!r}... ({len(value)} characters)"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def describe(value: Any) -> str:
    """Public form of the value display used in messages (for formats and the CLI)."""
    return _show(value)


def _or_list(names: list[str]) -> str:
    quoted = [repr(n) for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]
