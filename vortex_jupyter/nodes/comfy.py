"""Register ComfyUI-style node classes unchanged.

A ComfyUI node is a class with ``INPUT_TYPES()`` (a classmethod returning ``{"required": {...},
"optional": {...}, "hidden": {...}}``), ``RETURN_TYPES``, optional ``RETURN_NAMES``,
``FUNCTION`` (the method to call), ``CATEGORY``, ``OUTPUT_NODE``, ``OUTPUT_IS_LIST``,
``INPUT_IS_LIST``, ``DESCRIPTION``, and optionally ``IS_CHANGED`` / ``VALIDATE_INPUTS``.
``spec_from_comfy_class`` reads all of that into a ``NodeSpec``:

- input specs ``("INT", {"default": 0, "min": 0, "max": 10})``, ``("STRING", {"multiline": True})``,
  combos ``(["a", "b"], {...})`` or ``("COMBO", {"options": [...]})``, ``forceInput``,
  ``control_after_generate`` (also set for INT inputs named ``seed``/``noise_seed``, as
  ComfyUI's frontend does). Widgets without a default get the frontend's (0 clamped to the
  range, "", False, the first choice).
- hidden inputs (``"PROMPT"``, ``"EXTRA_PNGINFO"``, ``"UNIQUE_ID"``) become ``spec.hidden``
  under the canonical names ``prompt``/``extra_pnginfo``/``unique_id``; the call maps them
  back onto whatever keys the class used.
- ``IS_CHANGED`` becomes ``spec.fingerprint`` (called with the node's widget params; unlike
  ComfyUI, linked values are not passed). A NaN result means "always run", as ComfyUI
  custom nodes use it: the fingerprint then returns a fresh token so the key never repeats.
- ``VALIDATE_INPUTS`` becomes ``spec.check`` (``True`` is fine; a string is the problem).
- ``{"shown_when": ["combo", ["option", ...]]}`` (a vortex key) marks a setting of a ComfyUI
  DynamicCombo, named ``combo.setting`` as in ComfyUI's API prompts (``PortSpec.shown_when``).

State: ``spec.fn`` is a ``ComfyCall`` that instantiates the class once, lazily, in whatever
process runs it, and calls ``FUNCTION``; ``{"ui": ..., "result": (...)}`` becomes a
``NodeResult``. A class whose ``INPUT_TYPES`` raises or is malformed raises
``NodeDefinitionError`` naming the class.
"""

from __future__ import annotations

import inspect
import math
import threading
import uuid
from collections.abc import Callable
from typing import Any

from ..errors import MissingFile, NodeDefinitionError
from .decorator import SEED_NAMES, code_hash, importable_source, to_result
from .spec import MISSING, NodeResult, NodeSpec, OutputSpec, PortSpec

__all__ = ["ComfyCall", "spec_from_comfy_class"]

#: Hidden input kinds (ComfyUI's names) -> the names the run loop fills them in by.
HIDDEN_NAMES = {"PROMPT": "prompt", "EXTRA_PNGINFO": "extra_pnginfo", "UNIQUE_ID": "unique_id"}
#: What ComfyUI's frontend shows in a widget that declares no default.
_FRONTEND_DEFAULTS: dict[str, Any] = {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}


def _fail(name: str, problem: str, fix: str) -> NodeDefinitionError:
    return NodeDefinitionError(f"ComfyUI node class {name!r}: {problem}", hint=fix)


def _accepts(func: Callable[..., Any]) -> tuple[set[str], bool]:
    """Parameter names of ``func`` and whether it takes ``**kwargs``."""
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return set(), True
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return names, any(p.kind is p.VAR_KEYWORD for p in params)


def _filtered(func: Callable[..., Any], values: dict[str, Any]) -> dict[str, Any]:
    names, var_kw = _accepts(func)
    return dict(values) if var_kw else {k: v for k, v in values.items() if k in names}


# ----------------------------------------------------------------------------- inputs


def _type_and_options(cls_name: str, port: str, decl: Any) -> tuple[Any, dict[str, Any]]:
    if isinstance(decl, str | list):
        decl = (decl,)
    if not isinstance(decl, tuple) or not decl:
        raise _fail(cls_name, f"input {port!r} is declared as {decl!r}",
                    "declare inputs as a tuple: ('INT', {'default': 0}) or (['a', 'b'],)")
    options = decl[1] if len(decl) > 1 and decl[1] is not None else {}
    if not isinstance(options, dict):
        raise _fail(cls_name, f"options of input {port!r} are {options!r}, not a dict",
                    "pass options as a dict, e.g. ('INT', {'min': 0})")
    return decl[0], options


def _number(cls_name: str, port: str, key: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(cls_name, f"input {port!r} has {key}={value!r}, not a number", f"make {key} a number")
    return value


def _frontend_default(kind: str, lo: float | None, hi: float | None) -> Any:
    value = _FRONTEND_DEFAULTS.get(kind, MISSING)
    if kind in ("INT", "FLOAT"):
        value = max(value, lo) if lo is not None else value
        value = min(value, hi) if hi is not None else value
    return value


def _input_port(cls_name: str, port: str, decl: Any, required: bool) -> PortSpec:
    kind, opts = _type_and_options(cls_name, port, decl)
    choices: tuple[Any, ...] | None = None
    if isinstance(kind, list | tuple):
        kind, choices = "COMBO", tuple(kind)
    elif kind == "COMBO":
        choices = tuple(opts.get("options") or ())
    if not isinstance(kind, str) or not kind:
        raise _fail(cls_name, f"input {port!r} has type {kind!r}", "use a type name like 'INT' or a list")
    lo = _number(cls_name, port, "min", opts.get("min"))
    hi = _number(cls_name, port, "max", opts.get("max"))
    force = bool(opts.get("forceInput") or opts.get("defaultInput"))
    default = opts.get("default", MISSING)
    if default is MISSING and not force:
        default = choices[0] if choices else _frontend_default(kind, lo, hi)
    seed = kind == "INT" and port in SEED_NAMES
    return PortSpec(
        name=port, type=kind, default=default, required=required, min=lo, max=hi,
        step=_number(cls_name, port, "step", opts.get("step")), choices=choices,
        multiline=bool(opts.get("multiline")), force_input=force,
        control_after_generate=bool(opts.get("control_after_generate")) or seed,
        # ComfyUI's image_upload adds an "upload" widget whose value follows this one in UI
        # workflows' widgets_values; the display hint tells formats and the canvas.
        display="image_upload" if opts.get("image_upload") else opts.get("display"), tooltip=str(opts.get("tooltip") or ""),
        shown_when=_shown_when(cls_name, port, opts.get("shown_when")),
    )


def _shown_when(cls_name: str, port: str, value: Any) -> tuple[str, tuple[Any, ...]] | None:
    """``{"shown_when": ["combo", ["option", ...]]}``: a DynamicCombo setting (vortex's key)."""
    if value is None:
        return None
    if (not isinstance(value, list | tuple) or len(value) != 2 or not isinstance(value[0], str)
            or not isinstance(value[1], list | tuple)):
        raise _fail(cls_name, f"input {port!r} has shown_when={value!r}",
                    "give shown_when as [combo input name, [the options that show this input]]")
    return value[0], tuple(value[1])


def _call_input_types(name: str, cls: type) -> dict[str, Any]:
    getter = getattr(cls, "INPUT_TYPES", None)
    if not callable(getter):
        raise _fail(name, "has no INPUT_TYPES classmethod", "add @classmethod def INPUT_TYPES(s): return {...}")
    try:
        declared = getter()
    except Exception as exc:
        raise _fail(name, f"INPUT_TYPES() raised {type(exc).__name__}: {exc}",
                    "make INPUT_TYPES a classmethod that returns a dict without side effects") from exc
    if not isinstance(declared, dict) or not set(declared) <= {"required", "optional", "hidden"}:
        raise _fail(name, f"INPUT_TYPES() returned {declared!r:.200}",
                    "return {'required': {...}, 'optional': {...}, 'hidden': {...}}")
    return declared


def parse_inputs(name: str, cls: type) -> tuple[tuple[PortSpec, ...], dict[str, str]]:
    """Input ports and the hidden map (canonical name -> the class's key)."""
    declared = _call_input_types(name, cls)
    ports: list[PortSpec] = []
    for section in ("required", "optional"):
        entries = declared.get(section) or {}
        if not isinstance(entries, dict):
            raise _fail(name, f"INPUT_TYPES()[{section!r}] is not a dict", "map input names to declarations")
        ports += [_input_port(name, str(k), v, section == "required") for k, v in entries.items()]
    hidden: dict[str, str] = {}
    for key, kind in (declared.get("hidden") or {}).items():
        canonical = HIDDEN_NAMES.get(kind, str(kind).lower()) if isinstance(kind, str) else str(key)
        hidden[canonical] = str(key)
    return tuple(ports), hidden


def parse_outputs(name: str, cls: type) -> tuple[OutputSpec, ...]:
    types_ = getattr(cls, "RETURN_TYPES", None)
    if not isinstance(types_, tuple | list):
        raise _fail(name, f"RETURN_TYPES is {types_!r}", "set RETURN_TYPES = ('IMAGE',) (or () for none)")
    names = getattr(cls, "RETURN_NAMES", None) or ()
    is_list = getattr(cls, "OUTPUT_IS_LIST", None) or ()
    if names and len(names) != len(types_):
        raise _fail(name, f"RETURN_NAMES has {len(names)} names for {len(types_)} RETURN_TYPES",
                    "give one name per return type")
    outputs = []
    for i, kind in enumerate(types_):
        kind = "COMBO" if isinstance(kind, list | tuple) else str(kind)
        out_name = str(names[i]) if names else kind
        outputs.append(OutputSpec(out_name, kind, bool(is_list[i]) if i < len(is_list) else False))
    return tuple(outputs)


# ----------------------------------------------------------------------------- calling


class ComfyCall:
    """``spec.fn`` of a ComfyUI class: one instance per process, created on first call.

    Picklable (the instance and lock are dropped), so workers can receive it by value.
    """

    def __init__(self, cls: type, function: str, n_outputs: int, hidden: dict[str, str],
                 input_is_list: bool = False) -> None:
        self.cls, self.function, self.n_outputs = cls, function, n_outputs
        self.hidden, self.input_is_list = hidden, input_is_list
        self._instance: Any = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_instance", "_lock")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _instance=None, _lock=threading.Lock())

    def instance(self) -> Any:
        with self._lock:
            if self._instance is None:
                self._instance = self.cls()
            return self._instance

    def __call__(self, **kwargs: Any) -> tuple[Any, ...] | NodeResult:
        for canonical, key in self.hidden.items():
            if canonical in kwargs and canonical != key:
                kwargs[key] = kwargs.pop(canonical)
        if self.input_is_list:  # ComfyUI hands INPUT_IS_LIST nodes every input as a list
            kwargs = {k: v if isinstance(v, list) else [v] for k, v in kwargs.items()}
        method = getattr(self.instance(), self.function)
        where = f"{self.cls.__name__}.{self.function}"
        return to_result(method(**kwargs), self.n_outputs, sequence=True, where=where)


class ComfyFingerprint:
    """``spec.fingerprint`` from ``IS_CHANGED``; NaN (ComfyUI's "always changed") -> a fresh token."""

    def __init__(self, cls: type, defaults: dict[str, Any]) -> None:
        self.cls, self.defaults = cls, defaults

    def __call__(self, **params: Any) -> Any:
        func = self.cls.IS_CHANGED  # type: ignore[attr-defined]
        value = func(**_filtered(func, {**self.defaults, **params}))
        if isinstance(value, float) and math.isnan(value):
            return f"always-run:{uuid.uuid4().hex}"
        if value is None or isinstance(value, str | int | float | bytes | bool):
            return value
        return repr(value)  # e.g. a list or tensor: its text identifies it well enough


class ComfyCheck:
    """``spec.check`` from ``VALIDATE_INPUTS``: ``True`` passes, a string is the problem (VE-116;
    an ``errors.MissingFile`` is a missing file, VE-117, with its own fix)."""

    def __init__(self, cls: type, name: str, defaults: dict[str, Any], port: str,
                 inputs: tuple[str, ...] = ()) -> None:
        self.cls, self.name, self.defaults, self.port = cls, name, defaults, port
        #: Inputs VALIDATE_INPUTS takes: as in ComfyUI, their choices are not checked by the
        #: generic validation (the class accepts more than it lists, e.g. any checkpoint file).
        self.inputs = inputs

    def __call__(self, params: dict[str, Any]) -> list[tuple[str, ...]]:
        func = self.cls.VALIDATE_INPUTS  # type: ignore[attr-defined]
        try:
            verdict = func(**_filtered(func, {**self.defaults, **params}))
        except Exception as exc:
            verdict = f"VALIDATE_INPUTS raised {type(exc).__name__}: {exc}"
        if verdict is True:
            return []
        if isinstance(verdict, MissingFile):
            return [(self.port, str(verdict), verdict.hint, verdict.code)]
        message = verdict if isinstance(verdict, str) else f"{self.name} rejected these inputs"
        return [(self.port, message, f"change {self.port or 'the inputs'} to a value {self.name} accepts")]


def _check_of(name: str, cls: type, inputs: tuple[PortSpec, ...], defaults: dict[str, Any]) -> ComfyCheck | None:
    func = getattr(cls, "VALIDATE_INPUTS", None)
    if not callable(func):
        return None
    accepted, _ = _accepts(func)
    named = tuple(p.name for p in inputs if p.name in accepted)
    return ComfyCheck(cls, name, defaults, named[0] if named else "", named)


def spec_from_comfy_class(name: str, cls: type, display_name: str | None = None, *,
                          heavy: bool | None = None) -> NodeSpec:
    """The ``NodeSpec`` of a ComfyUI node class registered as ``name``."""
    if not isinstance(cls, type):
        raise _fail(name, f"{cls!r} is not a class", "map the type name to the class itself")
    inputs, hidden = parse_inputs(name, cls)
    outputs = parse_outputs(name, cls)
    function = getattr(cls, "FUNCTION", None)
    if not isinstance(function, str) or not callable(getattr(cls, function, None)):
        raise _fail(name, f"FUNCTION is {function!r}, which is not a method of the class",
                    "set FUNCTION to the name of the method that runs the node")
    defaults = {p.name: p.default for p in inputs if p.widget and p.has_default}
    source, by_value = importable_source(cls)
    call = ComfyCall(cls, function, len(outputs), hidden, bool(getattr(cls, "INPUT_IS_LIST", False)))
    return NodeSpec(
        type=name, inputs=inputs, outputs=outputs, fn=call,
        category=str(getattr(cls, "CATEGORY", "") or ""),
        display_name=display_name or str(getattr(cls, "DISPLAY_NAME", "") or ""),
        description=str(getattr(cls, "DESCRIPTION", "") or ""),
        output_node=bool(getattr(cls, "OUTPUT_NODE", False)),
        version=f"{getattr(cls, 'VERSION', '1')}:{code_hash(cls)}",
        fingerprint=ComfyFingerprint(cls, defaults) if callable(getattr(cls, "IS_CHANGED", None)) else None,
        source=source, by_value=by_value,
        heavy=bool(getattr(cls, "VORTEX_HEAVY", False)) if heavy is None else heavy,
        hidden=tuple(hidden), check=_check_of(name, cls, inputs, defaults),
    )
