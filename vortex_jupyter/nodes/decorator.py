"""``@vx.node``: turn a typed Python function into a node type.

The function's signature IS the node declaration:

- parameters become inputs; the annotation gives the port type (``int`` INT, ``float`` FLOAT,
  ``str`` STRING, ``bool`` BOOLEAN, ``Literal[...]`` COMBO, ``Any`` ``*``), ``typing.Annotated``
  adds details: ``Range(min, max, step)``, ``Choices(...)``, ``Multiline()``, or ``Port("IMAGE")``
  (or just the string ``"IMAGE"``) for types that are wired rather than edited;
- a parameter with a default is optional and keeps that default (``None``: optional, no value);
- the return annotation gives the outputs: one type, ``tuple[...]`` for several, a
  ``NamedTuple`` for named ones, ``None`` for none; ``outputs=[("name", "TYPE"), ...]`` overrides.

State: the spec is registered in ``REGISTRY`` under ``name`` (default: the function name).
Registering a name again REPLACES the earlier spec — re-running a notebook cell must update
the node, not fail. ``spec.version`` is ``"<version>:<code hash>"``: the hash covers the
function's source (or, without source, its bytecode and constants), so editing the function
in a notebook changes every cache key of its nodes. Functions from ``__main__`` (notebooks)
or local scopes cannot be imported by a worker, so their specs say ``by_value=True``.

>>> @node(category="math", register=False)
... def add(a: int, b: Annotated[int, Range(0, 10)] = 0) -> int:
...     return a + b
>>> [(p.name, p.type, p.max) for p in add.spec.inputs], add.spec.fn(a=1, b=2)
([('a', 'INT', None), ('b', 'INT', 10)], (3,))
"""

from __future__ import annotations

import builtins
import functools
import hashlib
import inspect
import math
import re
import textwrap
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from ..errors import NodeDefinitionError
from .spec import MISSING, NodeResult, NodeSpec, OutputSpec, PortSpec

__all__ = ["Choices", "Multiline", "Port", "Range", "code_hash", "node", "to_result"]

_TYPE_NAME = re.compile(r"^(\*|[A-Z][A-Z0-9_]*(,[A-Z][A-Z0-9_]*)*)$")
#: ComfyUI's frontend adds the "control after generate" widget to INT inputs with these names.
SEED_NAMES = frozenset({"seed", "noise_seed"})


@dataclass(frozen=True)
class Range:
    """Bounds (and step) of an INT/FLOAT input: ``Annotated[int, Range(1, 100, step=1)]``."""

    min: float | None = None
    max: float | None = None
    step: float | None = None
    display: str | None = None
    #: Show ComfyUI's "control after generate" widget (fixed/increment/randomize), as for seeds.
    control_after_generate: bool = False


class Choices:
    """Allowed values of an input (a COMBO): ``Annotated[str, Choices("euler", "ddim")]``."""

    def __init__(self, *values: Any) -> None:
        if len(values) == 1 and isinstance(values[0], list | tuple):
            values = tuple(values[0])
        self.values = tuple(values)


@dataclass(frozen=True)
class Multiline:
    """A STRING input edited in a text area: ``Annotated[str, Multiline()]``."""


@dataclass(frozen=True)
class Port:
    """A port of a non-widget type: ``Annotated[Any, Port("IMAGE")]``; ``force_input`` wires a widget."""

    type: str
    force_input: bool = False
    tooltip: str = ""


# ----------------------------------------------------------------------------- code hash


def _hash_code(h: Any, code: types.CodeType) -> None:
    h.update(code.co_code)
    h.update(repr(code.co_names).encode())
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _hash_code(h, const)
        elif isinstance(const, frozenset):  # set order varies with string hash seeds
            h.update(repr(sorted(map(repr, const))).encode())
        else:
            h.update(repr(const).encode())


def code_hash(obj: Any) -> str:
    """16 hex digits identifying the code of a function or class (source first, else bytecode)."""
    h = hashlib.sha256()
    try:
        h.update(b"src\0" + textwrap.dedent(inspect.getsource(obj)).encode())
    except (OSError, TypeError):
        h.update(b"code\0")
        if isinstance(obj, type):
            for attr, value in sorted(vars(obj).items()):
                func = getattr(value, "__func__", value)
                if isinstance(func, types.FunctionType):
                    h.update(attr.encode())
                    _hash_code(h, func.__code__)
                elif not attr.startswith("__"):
                    h.update(f"{attr}={value!r}".encode())
        else:
            _hash_code(h, obj.__code__)
    return h.hexdigest()[:16]


def importable_source(obj: Any) -> tuple[str, bool]:
    """``("module:qualname", by_value)``: by value when a worker could not import it by name."""
    module = getattr(obj, "__module__", "") or "__main__"
    qualname = getattr(obj, "__qualname__", obj.__name__)
    by_value = module == "__main__" or "<locals>" in qualname
    return f"{module}:{qualname}", by_value


# ----------------------------------------------------------------------------- results


def to_result(value: Any, n_outputs: int, *, sequence: bool, where: str) -> tuple[Any, ...] | NodeResult:
    """Normalise what a node returned: a tuple per output, or a ``NodeResult`` with UI data.

    ``sequence`` says the node returns its outputs as a tuple/list (several outputs, or a
    ComfyUI class); otherwise a single output is wrapped. ComfyUI's ``{"ui": ..., "result": ...}``
    dicts become ``NodeResult``.
    """
    if isinstance(value, NodeResult):
        return value
    if isinstance(value, dict) and ("ui" in value or "result" in value) and (sequence or n_outputs == 0):
        outputs = to_result(value.get("result", ()), n_outputs, sequence=True, where=where)
        assert isinstance(outputs, tuple)
        return NodeResult(outputs, dict(value.get("ui") or {}))
    if n_outputs == 0:
        if value is None or (isinstance(value, tuple) and not value):  # never == on arrays
            return ()
        raise TypeError(f"{where} declares no outputs but returned a {type(value).__name__}; "
                        "annotate the return type (e.g. '-> int') or return None")
    if not sequence:
        return (value,)
    if not isinstance(value, tuple | list) or len(value) != n_outputs:
        got = f"{len(value)} values" if isinstance(value, tuple | list) else f"a {type(value).__name__}"
        raise TypeError(f"{where} must return a tuple of {n_outputs} outputs, got {got}")
    return tuple(value)


# ----------------------------------------------------------------------------- type hints


def _fail(fn_name: str, param: str | None, problem: str, fix: str) -> NodeDefinitionError:
    where = f"@node {fn_name}" + (f", parameter {param!r}" if param else "")
    return NodeDefinitionError(f"{where}: {problem}", hint=fix)


class _TypeNames(dict):  # type: ignore[type-arg]
    """Local namespace for hint evaluation: undefined ALL-CAPS names are port types ("IMAGE")."""

    def __init__(self, globalns: dict[str, Any]) -> None:
        super().__init__()
        self._globalns = globalns

    def __missing__(self, key: str) -> Any:
        # KeyError lets eval fall back to the function's globals and builtins.
        if _TYPE_NAME.match(key) and key not in self._globalns and not hasattr(builtins, key):
            return Annotated[Any, Port(key)]
        raise KeyError(key)


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    raw = dict(getattr(fn, "__annotations__", {}))
    for key, value in raw.items():
        if isinstance(value, str) and _TYPE_NAME.match(value):
            raw[key] = Annotated[Any, Port(value)]  # a bare "IMAGE" annotation
    # A stand-in carrying the rewritten annotations: the user's function stays untouched.
    shim = types.SimpleNamespace(__globals__=fn.__globals__, __annotations__=raw)
    try:
        return typing.get_type_hints(shim, localns=_TypeNames(fn.__globals__), include_extras=True)
    except Exception as exc:
        raise _fail(fn.__name__, None, f"cannot resolve type hints ({exc})",
                    "import the names used in annotations at module level") from exc


def _split(hint: Any) -> tuple[Any, list[Any], bool]:
    """``(base type, Annotated metadata, optional)`` of a hint."""
    metas: list[Any] = []
    optional = False
    for _ in range(4):  # Annotated[Optional[Annotated[...]]] nests at most a few levels
        if typing.get_origin(hint) is Annotated:
            metas.extend(hint.__metadata__)
            hint = hint.__origin__
        elif typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint):
            rest = [a for a in typing.get_args(hint) if a is not type(None)]
            if len(rest) != 1:
                break
            optional, hint = True, rest[0]
        else:
            break
    return hint, metas, optional


_BASE_TYPES: dict[Any, str] = {bool: "BOOLEAN", int: "INT", float: "FLOAT", str: "STRING", Any: "*"}


def _port_type(base: Any, metas: list[Any]) -> tuple[str | None, tuple[Any, ...] | None]:
    """Port type and choices from a base type and its metadata (``None`` type: unsupported)."""
    for meta in metas:
        if isinstance(meta, Port):
            return meta.type, None
        if isinstance(meta, str) and _TYPE_NAME.match(meta):
            return meta, None
    for meta in metas:
        if isinstance(meta, Choices):
            return "COMBO", meta.values
    if typing.get_origin(base) is Literal:
        return "COMBO", tuple(typing.get_args(base))
    try:
        return _BASE_TYPES.get(base), None
    except TypeError:  # unhashable hint objects are unsupported types too
        return None, None


_FIX_TYPES = ("annotate it with int, float, str, bool, Literal[...], or Annotated[Any, Port('IMAGE')] "
              "for a wired type")


def _check_default(fn_name: str, name: str, port: PortSpec) -> Any:
    """The default converted to the port's type, or ``NodeDefinitionError`` if it cannot be."""
    value, kind = port.default, port.type
    ok = {
        "INT": isinstance(value, int) and not isinstance(value, bool),
        "FLOAT": isinstance(value, int | float) and not isinstance(value, bool),
        "STRING": isinstance(value, str),
        "BOOLEAN": isinstance(value, bool),
        "COMBO": port.choices is not None and value in port.choices,
    }.get(kind, True)
    if not ok:
        wanted = f"one of {list(port.choices or ())}" if kind == "COMBO" else f"a {kind} value"
        raise _fail(fn_name, name, f"default {value!r} is not {wanted}", f"change the default to {wanted}")
    if kind == "FLOAT":
        value = float(value)
        if not math.isfinite(value):
            raise _fail(fn_name, name, f"default {value!r} is not finite", "use a finite number")
    if kind in ("INT", "FLOAT"):
        low = port.min if port.min is not None else -math.inf
        high = port.max if port.max is not None else math.inf
        if not low <= value <= high:
            raise _fail(fn_name, name, f"default {value!r} is outside Range({port.min}, {port.max})",
                        "widen the Range or change the default")
    return value


def _range_kwargs(fn_name: str, name: str, kind: str, metas: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for meta in metas:
        if isinstance(meta, Range):
            if kind not in ("INT", "FLOAT"):
                raise _fail(fn_name, name, f"Range() applies to int/float inputs, not {kind}",
                            "remove the Range or annotate the parameter as int or float")
            if meta.min is not None and meta.max is not None and meta.min > meta.max:
                raise _fail(fn_name, name, f"Range min {meta.min} is greater than max {meta.max}",
                            "swap the bounds")
            if meta.step is not None and not meta.step > 0:
                raise _fail(fn_name, name, f"Range step {meta.step} is not positive", "use a step > 0")
            out.update(min=meta.min, max=meta.max, step=meta.step, display=meta.display,
                       control_after_generate=meta.control_after_generate)
        elif isinstance(meta, Multiline) or meta is Multiline:
            if kind != "STRING":
                raise _fail(fn_name, name, f"Multiline applies to str inputs, not {kind}",
                            "remove Multiline or annotate the parameter as str")
            out["multiline"] = True
        elif isinstance(meta, Port):
            out.update(force_input=meta.force_input, tooltip=meta.tooltip)
    return out


def _input_port(fn_name: str, param: inspect.Parameter, hint: Any) -> PortSpec:
    name = param.name
    base, metas, _optional = _split(hint)
    kind, choices = _port_type(base, metas)
    if kind is None:
        raise _fail(fn_name, name, f"type {hint!r} is not supported", _FIX_TYPES)
    extra = _range_kwargs(fn_name, name, kind, metas)
    if kind == "INT" and name in SEED_NAMES:
        extra["control_after_generate"] = True
    # Any default makes the input optional; None means "optional, no value" (not a widget value).
    # An Optional[...] hint without a default stays required: the function needs an argument.
    required = param.default is inspect.Parameter.empty
    has_default = not required and param.default is not None
    port = PortSpec(name=name, type=kind, choices=choices, required=required,
                    default=param.default if has_default else MISSING, **extra)
    if has_default:
        port = _replace(port, default=_check_default(fn_name, name, port))
    return port


def _replace(port: PortSpec, **changes: Any) -> PortSpec:
    fields = {f: getattr(port, f) for f in PortSpec.__dataclass_fields__}
    fields.update(changes)
    return PortSpec(**fields)


def _output_type(fn_name: str, hint: Any) -> str:
    base, metas, _ = _split(hint)
    kind, _choices = _port_type(base, metas)
    if kind is None:
        raise _fail(fn_name, "return", f"return type {hint!r} is not supported", _FIX_TYPES)
    return kind


def _outputs(fn_name: str, hints: dict[str, Any], outputs: Any) -> tuple[tuple[OutputSpec, ...], bool]:
    """Output specs and whether the function returns them as a sequence."""
    if outputs is not None:
        specs = []
        for item in outputs if isinstance(outputs, list | tuple) else [outputs]:
            if not isinstance(item, str) and not (isinstance(item, list | tuple) and len(item) == 2):
                raise _fail(fn_name, "return", f"outputs={outputs!r} is not a list of types or (name, type) pairs",
                            "e.g. outputs=['IMAGE'] or outputs=[('image', 'IMAGE'), ('count', 'INT')]")
            name, kind = (item, item) if isinstance(item, str) else tuple(item)
            specs.append(OutputSpec(str(name), str(kind)))
        return tuple(specs), len(specs) != 1
    if "return" not in hints:
        raise _fail(fn_name, "return", "the return type is not annotated",
                    "add '-> int', '-> tuple[int, str]' or '-> None' (no outputs), or pass outputs=[...]")
    hint = hints["return"]
    if hint is None or hint is type(None):
        return (), True
    if isinstance(hint, type) and issubclass(hint, tuple) and hasattr(hint, "_fields"):
        fields = typing.get_type_hints(hint, include_extras=True)
        return tuple(OutputSpec(f, _output_type(fn_name, fields[f])) for f in hint._fields), True
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if Ellipsis in args:
            raise _fail(fn_name, "return", f"{hint!r} has no fixed number of outputs",
                        "list each output type, e.g. tuple[int, int]")
        kinds = [_output_type(fn_name, a) for a in args if a != ()]
        return tuple(OutputSpec(k, k) for k in kinds), True
    kind = _output_type(fn_name, hint)
    return (OutputSpec(kind, kind),), False


def _inputs(fn: Callable[..., Any], hints: dict[str, Any]) -> tuple[PortSpec, ...]:
    ports = []
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            raise _fail(fn.__name__, param.name, "*args, **kwargs and positional-only parameters "
                        "cannot be node inputs", "declare each input as a named parameter")
        if param.name not in hints:
            raise _fail(fn.__name__, param.name, "the parameter has no type annotation", _FIX_TYPES)
        ports.append(_input_port(fn.__name__, param, hints[param.name]))
    return tuple(ports)


def build_spec(fn: Callable[..., Any], *, name: str | None = None, category: str = "",
               outputs: Any = None, output_node: bool = False, always_run: bool = False,
               fingerprint: Callable[..., Any] | None = None, timeout: float | None = None,
               version: str | None = None, display_name: str | None = None,
               check: Callable[..., Any] | None = None) -> NodeSpec:
    """The ``NodeSpec`` of a typed function (what ``@node`` registers)."""
    if not isinstance(fn, types.FunctionType):
        raise NodeDefinitionError(f"@node needs a plain function, got {fn!r}",
                                  hint="decorate a 'def' function (for classes use register_comfy_class)")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float)
                                or not 0 < timeout < math.inf):
        raise _fail(fn.__name__, None, f"timeout={timeout!r} is not a positive number of seconds",
                    "pass timeout=30 (seconds), or leave it out for no timeout")
    hints = _hints(fn)
    inputs = _inputs(fn, hints)
    out_specs, sequence = _outputs(fn.__name__, hints, outputs)
    where = f"node {name or fn.__name__!r}"
    n_out = len(out_specs)

    @functools.wraps(fn)
    def run(**kwargs: Any) -> tuple[Any, ...] | NodeResult:
        return to_result(fn(**kwargs), n_out, sequence=sequence, where=where)

    source, by_value = importable_source(fn)
    doc = inspect.getdoc(fn) or ""
    return NodeSpec(
        type=name or fn.__name__, inputs=inputs, outputs=out_specs, fn=run, category=category,
        display_name=display_name or "", description=doc.split("\n\n")[0], output_node=output_node,
        version=f"{version or '1'}:{code_hash(fn)}", always_run=always_run, fingerprint=fingerprint,
        timeout=timeout, source=source, by_value=by_value, check=check,
    )


def node(fn: Callable[..., Any] | None = None, *, name: str | None = None, category: str = "",
         outputs: Any = None, output_node: bool = False, always_run: bool = False,
         fingerprint: Callable[..., Any] | None = None, timeout: float | None = None,
         version: str | None = None, display_name: str | None = None,
         check: Callable[..., Any] | None = None, register: bool = True, registry: Any = None) -> Any:
    """Declare a node type from a typed function; returns the function with a ``.spec``.

    Usable bare (``@node``) or with options (``@node(category="math")``). The spec goes into
    ``registry`` (``vx.node``, i.e. ``registry.node``, passes the global ``REGISTRY``: this
    module never imports the registry, which imports the built-in nodes that use it);
    ``register=False`` only builds the spec. A name registered before is replaced
    (re-running a notebook cell updates the node).
    """
    options = dict(name=name, category=category, outputs=outputs, output_node=output_node,
                   always_run=always_run, fingerprint=fingerprint, timeout=timeout, version=version,
                   display_name=display_name, check=check)

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        spec = build_spec(func, **options)  # type: ignore[arg-type]
        if register:
            if registry is None:
                raise NodeDefinitionError(f"@node {func.__name__!r}: no registry to register it in",
                                          hint="use vx.node (the global registry), pass registry=..., "
                                               "or register=False to only build the spec")
            registry.register(spec, replace=True)
        func.spec = spec  # type: ignore[attr-defined]
        return func

    return decorate(fn) if fn is not None else decorate
