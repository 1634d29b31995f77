"""What a running node can tell the engine: progress, step previews, and whether to stop.

Node code calls ``vortex_jupyter.nodes.context.current()``; the executor running the node
(in-process or in a worker) installs a ``NodeContext`` for the duration of the call. Outside a
run ``current()`` returns a context that ignores everything, so node functions stay callable
as plain Python.

>>> ctx = current()
>>> ctx.progress(1, 4); ctx.cancelled
False
"""

from __future__ import annotations

import contextvars
from typing import Any

from ..errors import RunCancelledError


class NodeContext:
    """Base context: subclasses (one per executor) forward to their event channel."""

    node_id: str | None = None

    @property
    def cancelled(self) -> bool:
        return False

    def progress(self, value: float, total: float | None = None, text: str | None = None) -> None:
        """Report ``value`` of ``total`` done (e.g. sampler step 3 of 20)."""

    def preview(self, image: Any, *, final: bool = False) -> None:
        """Show an image on the node: an HxWx3 uint8 array, a PIL image, or PNG/JPEG bytes.

        ``final=False``: a step preview while the node runs (may be dropped under load).
        ``final=True``: an output image (SaveImage/PreviewImage), also shown inline in the cell.
        """

    def raise_if_cancelled(self) -> None:
        if self.cancelled:
            raise RunCancelledError("run cancelled", node=self.node_id)


_NULL = NodeContext()
_current: contextvars.ContextVar[NodeContext] = contextvars.ContextVar("vortex_node_context", default=_NULL)


def current() -> NodeContext:
    return _current.get()


def activate(ctx: NodeContext) -> contextvars.Token[NodeContext]:
    return _current.set(ctx)


def deactivate(token: contextvars.Token[NodeContext]) -> None:
    _current.reset(token)
