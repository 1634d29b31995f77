"""Source file names of node functions shipped to a worker by value.

cloudpickle >= 3.1 replaces ``co_filename`` of every function it pickles by value (notebook
cells, ``__main__`` scripts, modules registered with ``register_pickle_by_value``) with
``"<dynamic-code>"``, so a worker's traceback said ``File "<dynamic-code>", line 12`` instead
of naming the file. The kernel therefore sends, beside each pickled spec, where each of its
functions came from (``code_files``: ``{"qualname:first_line": filename}``), and the worker puts
those names back into the unpickled code objects (``restore_files``); line numbers survive
pickling, and with a real filename ``linecache`` shows the source lines too.

Both sides walk the same object graph from ``spec.fn``: functions (their code, nested code
objects, closure cells, the globals they name, ``__wrapped__``), classes (their methods) and plain instances (their
``__dict__``, e.g. a ``ComfyCall`` holding a ComfyUI class). The walk is bounded, and only
code objects that cloudpickle renamed are changed.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from typing import Any

DYNAMIC = "<dynamic-code>"
#: Objects visited per spec at most (a node function's graph is tiny; a library class is not).
MAX_VISITS = 256


def _key(code: types.CodeType) -> str:
    return f"{code.co_qualname}:{code.co_firstlineno}"


def _children(obj: Any) -> Iterator[Any]:
    if isinstance(obj, types.FunctionType):
        yield from (c.cell_contents for c in obj.__closure__ or () if _filled(c))
        g = obj.__globals__  # helpers the node calls (by value, they come along with it)
        yield from (g[name] for code in _codes(obj.__code__) for name in code.co_names if name in g)
        wrapped = obj.__dict__.get("__wrapped__")
        if wrapped is not None:
            yield wrapped
    elif isinstance(obj, (classmethod, staticmethod, types.MethodType)):
        yield obj.__func__
    elif isinstance(obj, type):
        if obj.__module__ != "builtins":
            yield from vars(obj).values()
    elif hasattr(obj, "__dict__") and not isinstance(obj, types.ModuleType):
        yield from vars(obj).values()


def _filled(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018 -- an empty cell raises
    except ValueError:
        return False
    return True


def _functions(root: Any) -> Iterator[types.FunctionType]:
    seen: set[int] = set()
    stack = [root]
    while stack and len(seen) < MAX_VISITS:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (str, bytes, int, float, bool, type(None))):
            continue
        seen.add(id(obj))
        if isinstance(obj, types.FunctionType):
            yield obj
        stack.extend(_children(obj))


def _codes(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _codes(const)


def code_files(root: Any) -> dict[str, str]:
    """``{"qualname:first_line": filename}`` of the code reachable from ``root`` (kernel side)."""
    files: dict[str, str] = {}
    for fn in _functions(root):
        for code in _codes(fn.__code__):
            if code.co_filename != DYNAMIC and not code.co_filename.startswith("<frozen"):
                files.setdefault(_key(code), code.co_filename)
    return files


def _renamed(code: types.CodeType, files: dict[str, str]) -> types.CodeType:
    consts = tuple(_renamed(c, files) if isinstance(c, types.CodeType) else c for c in code.co_consts)
    name = files.get(_key(code)) if code.co_filename == DYNAMIC else None
    if name is None and consts == code.co_consts:
        return code
    return code.replace(co_filename=name or code.co_filename, co_consts=consts)


def restore_files(root: Any, files: dict[str, str]) -> None:
    """Put the kernel's file names back into by-value code under ``root`` (worker side)."""
    if not files:
        return
    for fn in _functions(root):
        fn.__code__ = _renamed(fn.__code__, files)
