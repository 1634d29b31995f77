"""Events a run streams to its listeners (canvas, notebook output, history, metrics).

Plain frozen dataclasses with simple fields, so they cross process boundaries as msgpack
(``to_dict``/``from_dict``) and reach the browser as JSON. Preview images travel as PNG/JPEG
bytes in ``NodePreview.data``; the canvas sends them as binary messages, never in the Y doc.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar


@dataclass(frozen=True, slots=True)
class Event:
    kind: ClassVar[str] = "event"
    run_id: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["kind"] = self.kind
        return d


@dataclass(frozen=True, slots=True)
class RunStarted(Event):
    kind: ClassVar[str] = "run_started"
    planned: tuple[str, ...] = ()
    cached: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NodeQueued(Event):
    kind: ClassVar[str] = "node_queued"
    node: str = ""


@dataclass(frozen=True, slots=True)
class NodeStarted(Event):
    kind: ClassVar[str] = "node_started"
    node: str = ""


@dataclass(frozen=True, slots=True)
class NodeProgress(Event):
    kind: ClassVar[str] = "node_progress"
    node: str = ""
    value: float = 0.0
    total: float | None = None
    text: str | None = None


@dataclass(frozen=True, slots=True)
class NodePreview(Event):
    kind: ClassVar[str] = "node_preview"
    node: str = ""
    mime: str = "image/png"
    data: bytes = b""
    final: bool = False  # True for output images (SaveImage/PreviewImage), False for step previews


@dataclass(frozen=True, slots=True)
class NodeFinished(Event):
    kind: ClassVar[str] = "node_finished"
    node: str = ""
    elapsed: float = 0.0
    ui: dict[str, Any] = field(default_factory=dict)
    #: where it ran: the worker's id and device ("" in this process), and the worker's peak
    #: resident memory so far in bytes (0: not measured)
    worker: str = ""
    device: str = ""
    peak_memory: int = 0


@dataclass(frozen=True, slots=True)
class NodeCached(Event):
    kind: ClassVar[str] = "node_cached"
    node: str = ""


@dataclass(frozen=True, slots=True)
class NodeFailed(Event):
    kind: ClassVar[str] = "node_failed"
    node: str = ""
    code: str = "VE-500"
    message: str = ""
    error_type: str | None = None
    traceback: str | None = None


@dataclass(frozen=True, slots=True)
class RunNote(Event):
    """Something about the whole run the user should be told (the canvas shows it as an info
    toast, the CLI and ``Run``'s repr print it), e.g. why nodes ran again although an earlier
    run computed them: ``reason`` names the cause ("executor"), ``hint`` what to do."""

    kind: ClassVar[str] = "run_note"
    message: str = ""
    reason: str = ""
    hint: str = ""


@dataclass(frozen=True, slots=True)
class RunFinished(Event):
    kind: ClassVar[str] = "run_finished"
    status: str = "ok"  # "ok" | "failed" | "cancelled"
    #: "ran", "cached", "failed" counts, and "reason" (a ``RunNote``'s message) when the run had one
    stats: dict[str, Any] = field(default_factory=dict)
    elapsed: float = 0.0


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (RunStarted, NodeQueued, NodeStarted, NodeProgress, NodePreview, NodeFinished,
                NodeCached, NodeFailed, RunNote, RunFinished)
}


def event_from_dict(d: dict[str, Any]) -> Event:
    cls: Any = EVENT_TYPES[d["kind"]]
    names = {f.name for f in fields(cls)}
    kwargs = {k: (tuple(v) if isinstance(v, list) and k in ("planned", "cached") else v)
              for k, v in d.items() if k in names}
    event: Event = cls(**kwargs)
    return event
