"""The canvas: a Yjs-synced node editor widget (kernel side).

Modules, one concept each:

- ``protocol``  the messages between kernel and views (twin of ``js/src/protocol.ts``)
- ``values``    param values across the doc boundary (ints, big ints, Python-only values)
- ``schema``    the Y doc schema as checks, and what an update touched
- ``ydoc``      ``GraphDoc``: a ``GraphModel`` bound to its authoritative ``pycrdt.Doc``
- ``sync``      ``Relay``: y-protocols frames between the doc and the views, untrusted input
- ``session``   ``CanvasSession``: one per graph, shared by its views; runs and images
- ``panel``     the history and queue panels' requests, answered by a session or a server room
- ``widget``    ``Canvas``: the anywidget (``vx.Canvas``)

``Canvas`` is loaded lazily (it imports anywidget/ipywidgets); the rest is light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Canvas"]


def __getattr__(name: str) -> Any:
    if name == "Canvas":
        from .widget import Canvas

        return Canvas
    raise AttributeError(f"module 'vortex_jupyter.canvas' has no attribute {name!r}")
