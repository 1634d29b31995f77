"""JupyterLab integration: workflow documents, real-time collaboration, the canvas MIME output.

Modules, one concept each:

- ``ydoc``      ``YVortex``: a workflow file as a shared document on the Jupyter server
                (jupyter_ydoc entry point ``vortex``; jupyter-collaboration loads, saves and
                relays it; repairs what breaks the schema)
- ``server``    finding the Jupyter server a kernel runs under (URL, token, root folder)
- ``room``      ``RoomClient``: a kernel's graph as one more collaborator of a document's room
- ``document``  ``vx.open(path)`` and the kernel side of a workflow document's panel
- ``views``     the canvas MIME output and the comm its views connect through

The browser half is the JupyterLab extension built from ``js/src/lab/``.
"""

from __future__ import annotations

from typing import Any


def workflow_ydoc(ydoc: Any = None, awareness: Any = None) -> Any:
    """The ``jupyter_ydoc`` entry point ``vortex``: a new workflow document (``ydoc.YVortex``).

    A function, not the class itself: loading the class imports ``jupyter_ydoc``, whose
    ``__init__`` loads every entry point; a module that does both at import time breaks
    when it is imported first (it would be asked for its class while half imported).
    """
    from .ydoc import YVortex

    return YVortex(ydoc, awareness)
