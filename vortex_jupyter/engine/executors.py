"""Choosing an executor by name: ``"inline"`` (this process) or ``"workers"`` (the worker pool).

The default is ``"workers"`` once ``vortex_jupyter.workers.pool`` imports, ``"inline"``
otherwise; the environment variable ``VORTEX_EXECUTOR`` overrides the default. Executors are
process-wide singletons per name, because the output cache is kept per executor: running the
same graph twice with ``"inline"`` must hit the same cache.
"""

from __future__ import annotations

import importlib
import os
import threading
from typing import Any

from ..errors import VortexError
from .executor import Executor
from .inprocess import InProcessExecutor

__all__ = ["default_executor_name", "get_executor"]

_NAMES = ("inline", "workers")
_singletons: dict[str, Executor] = {}
_lock = threading.Lock()


def _workers_available() -> bool:
    try:
        importlib.import_module("vortex_jupyter.workers.pool")
    except ImportError:
        return False
    return True


def default_executor_name() -> str:
    env = os.environ.get("VORTEX_EXECUTOR", "").strip().lower()
    if env:
        return env
    return "workers" if _workers_available() else "inline"


def _make_workers() -> Executor:
    pool_mod = importlib.import_module("vortex_jupyter.workers.pool")
    factory = getattr(pool_mod, "shared_executor", None)
    if factory is not None:
        return factory()  # type: ignore[no-any-return]
    return pool_mod.WorkerExecutor(pool_mod.shared_pool())  # type: ignore[no-any-return]


def get_executor(name_or_obj: str | Executor | None = None) -> Executor:
    """The executor for a name (``"inline"``/``"workers"``), an instance, or None (default)."""
    if name_or_obj is not None and not isinstance(name_or_obj, str):
        if not callable(getattr(name_or_obj, "execute", None)):
            raise VortexError(
                f"executor {name_or_obj!r} has no execute() method",
                hint='pass "inline", "workers" or an object implementing engine.executor.Executor',
            )
        return name_or_obj
    name = (name_or_obj or default_executor_name()).strip().lower()
    if name not in _NAMES:
        raise VortexError(f"unknown executor {name!r}", hint='use "inline" or "workers"')
    with _lock:
        ex = _singletons.get(name)
        if ex is None:
            ex = InProcessExecutor() if name == "inline" else _make_workers()
            _singletons[name] = ex
        return ex


def executor_name(executor: Any) -> str:
    return str(getattr(executor, "name", type(executor).__name__))
