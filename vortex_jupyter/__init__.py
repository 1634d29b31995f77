"""vortex-jupyter: a Jupyter-native, collaborative node-graph environment for diffusion pipelines.

>>> import vortex_jupyter as vx
>>> @vx.node(category="math")
... def add(a: int, b: int = 0) -> int:
...     return a + b
>>> g = vx.Graph()
>>> x = g.add("add", a=1, b=2)
>>> y = g.add("add", a=x.out(0), b=5)
>>> g.run(executor="inline").outputs[y.id]
(8,)

Importing this package is light: torch and diffusers load only when a diffusion node runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    ExecutionError,
    FormatError,
    NodeDefinitionError,
    PathError,
    Problem,
    ValidationError,
    VortexError,
)

__version__ = "0.1.0"

__all__ = [
    "Canvas",
    "Choices",
    "ExecutionError",
    "FormatError",
    "Graph",
    "Multiline",
    "Node",
    "NodeDefinitionError",
    "PathError",
    "Port",
    "Problem",
    "Range",
    "Run",
    "ValidationError",
    "VortexError",
    "__version__",
    "history",
    "load",
    "models",
    "node",
    "open",
    "queue",
    "registry",
]

# name -> (module, attribute or None for the module itself); resolved on first access.
_LAZY: dict[str, tuple[str, str | None]] = {
    "Graph": ("vortex_jupyter._api", "Graph"),
    "Node": ("vortex_jupyter._api", "Node"),
    "Run": ("vortex_jupyter._api", "Run"),
    "load": ("vortex_jupyter._api", "load"),
    "open": ("vortex_jupyter._api", "open"),
    "node": ("vortex_jupyter.nodes.registry", "node"),
    "Range": ("vortex_jupyter.nodes.decorator", "Range"),
    "Choices": ("vortex_jupyter.nodes.decorator", "Choices"),
    "Multiline": ("vortex_jupyter.nodes.decorator", "Multiline"),
    "Port": ("vortex_jupyter.nodes.decorator", "Port"),
    "registry": ("vortex_jupyter.nodes.registry", "REGISTRY"),
    "Canvas": ("vortex_jupyter.canvas.widget", "Canvas"),
    "models": ("vortex_jupyter.nodes.diffusion.models", None),
    "history": ("vortex_jupyter.history", None),  # a callable module: vx.history()
    "queue": ("vortex_jupyter.history.queue", "queue"),
}

if TYPE_CHECKING:
    from . import _api
    from .canvas.widget import Canvas
    from .history.queue import queue
    from .history.table import history  # (the module is callable; see history/__init__.py)
    from .nodes.decorator import Choices, Multiline, Port, Range
    from .nodes.registry import REGISTRY as registry
    from .nodes.registry import node

    Graph = _api.Graph
    Node = _api.Node
    Run = _api.Run
    load = _api.load
    open = _api.open


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'vortex_jupyter' has no attribute {name!r}") from None
    value = importlib.import_module(module)
    if attr is not None:
        value = getattr(value, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where the prebuilt JupyterLab extension lives, for ``jupyter labextension develop``.

    The wheel installs the same folder to ``share/jupyter/labextensions/vortex-jupyter``
    (pyproject.toml's shared-data); ``npm --prefix js run build`` makes it.
    """
    return [{"src": "labextension", "dest": "vortex-jupyter"}]
