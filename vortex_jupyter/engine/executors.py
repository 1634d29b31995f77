"""Choosing an executor by name: ``"inline"`` (this process) or any name registered by the
front door (``"workers"``: the worker pool, registered by ``vortex_jupyter._api``).

The engine does not know how workers run (the dependency points the other way: ``workers``
builds on ``engine``); whoever assembles the product injects them with ``register``. The
default is ``"workers"`` once registered, ``"inline"`` otherwise; the environment variable
``VORTEX_EXECUTOR`` overrides it. Executors are process-wide singletons per name, because the
output cache is kept per executor: running the same graph twice with ``"inline"`` must hit
the same cache.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from ..errors import VortexError
from .executor import Executor
from .inprocess import InProcessExecutor

__all__ = ["default_executor_name", "get_executor", "register"]

_factories: dict[str, Callable[[], Executor]] = {"inline": InProcessExecutor}
_singletons: dict[str, Executor] = {}
_lock = threading.Lock()


def register(name: str, factory: Callable[[], Executor]) -> None:
    """Make ``get_executor(name)`` build its singleton with ``factory`` (on first use)."""
    with _lock:
        _factories[name.strip().lower()] = factory


def _workers_available() -> bool:
    return "workers" in _factories


def default_executor_name() -> str:
    env = os.environ.get("VORTEX_EXECUTOR", "").strip().lower()
    if env:
        return env
    return "workers" if _workers_available() else "inline"


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
    with _lock:
        factory = _factories.get(name)
        if factory is None:
            known = ", ".join(repr(n) for n in sorted(_factories))
            raise VortexError(f"unknown executor {name!r}", hint=f"use one of {known}")
        ex = _singletons.get(name)
        if ex is None:
            ex = _singletons[name] = factory()
        return ex


def executor_name(executor: object) -> str:
    return str(getattr(executor, "name", type(executor).__name__))
