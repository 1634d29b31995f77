"""The run queue, persisted in the history file: ``g.queue()``, ``vx.queue()``.

As ComfyUI's queue: runs submitted while one runs wait their turn, one at a time. Order: higher
``priority`` first, then ``position`` (submission order; ``move`` reorders). ``pause()`` stops
the next item from starting (the running one finishes) and is stored, so it holds across
restarts and for every kernel sharing the file; ``cancel`` drops a queued item or cancels the
running one. Each item is the graph as it was when queued (its native JSON): editing the graph
afterwards does not change what runs. Results are still served from the output cache
(keys do not depend on which ``Graph`` object runs).

Who runs items: the queue's runner thread in each process that opened it (``vx.queue()``,
``g.queue()``); an item is claimed in one ``BEGIN IMMEDIATE`` transaction, so two kernels on one
file never run the same item. Items of a process that died while running one are marked
``interrupted`` the next time the file is opened; queued ones stay queued and run in the next
process that opens the queue.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from ..errors import VortexError
from .db import History, open_history, owner_id

__all__ = ["Queue", "QueueItem", "queue"]

FINAL = frozenset({"ok", "failed", "cancelled", "interrupted"})


@dataclass(frozen=True)
class QueueItem:
    id: int
    status: str  # queued | running | ok | failed | cancelled | interrupted
    priority: int
    position: float
    created: float
    origin: str | None
    run_id: str | None
    error: str | None

    @property
    def done(self) -> bool:
        return self.status in FINAL


_COLS = "id, status, priority, position, created, origin, run_id, error"


class Queue:
    """The queue of one history file (``queue()`` gives the process's own)."""

    def __init__(self, history: History, *, autostart: bool = True, listeners: Any = None,
                 on_done: Any = None) -> None:
        """``listeners(item, graph) -> [fn(event)]``: extra event listeners for an item's run (the
        server's WebSocket relay and metrics), called in the runner thread before the run starts;
        ``on_done(item)`` after each item ends, however it ended (also when it never started)."""
        self.history = history
        self.listeners, self.on_done = listeners, on_done
        self.owner = owner_id()
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._current: tuple[int, Any] | None = None  # (item id, its Run) while one runs here
        self._thread: threading.Thread | None = None
        if autostart:
            self.start()

    # -- submitting -------------------------------------------------------------------------------
    def submit(self, graph: Any, *, priority: int = 0, origin: str = "queue", prompt_id: str | None = None,
               extra: dict[str, Any] | None = None, position: float | None = None, front: bool = False,
               targets: list[str] | None = None) -> QueueItem:
        """Queue ``graph`` (a ``vx.Graph`` or native JSON) as it is now. ``position``: its place
        (default: last; ``front``: first); ``prompt_id``/``extra``: a server's ComfyUI data;
        ``targets``: run only these nodes and what they need (``g.run(outputs=...)``)."""
        from ..graph.formats import to_native

        doc = graph if isinstance(graph, dict) else to_native(graph.model)
        if targets:
            extra = {**(extra or {}), "targets": list(targets)}
        with self.history.write() as db:
            digest = self.history.store_graph(db, doc)
            if position is None:
                if front:
                    position = db.execute("SELECT coalesce(min(position), 1) - 1 FROM queue").fetchone()[0]
                else:
                    position = db.execute("SELECT coalesce(max(position), 0) + 1 FROM queue").fetchone()[0]
            cur = db.execute("INSERT INTO queue (created, priority, position, status, graph, origin, prompt_id, extra) "
                             "VALUES (?, ?, ?, 'queued', ?, ?, ?, ?)",
                             (time.time(), int(priority), position, digest, origin, prompt_id,
                              None if extra is None else json.dumps(extra, default=str)))
            item_id = int(cur.lastrowid or 0)
        self._notify()
        return self.item(item_id)

    def by_prompt(self, prompt_id: str) -> tuple[QueueItem, dict[str, Any]] | None:
        """The item (and its extra data) queued with ComfyUI ``prompt_id``."""
        rows = self.history.query(f"SELECT {_COLS}, extra FROM queue WHERE prompt_id = ? ORDER BY id DESC LIMIT 1",
                                  (prompt_id,))
        if not rows:
            return None
        return QueueItem(*tuple(rows[0])[:8]), json.loads(rows[0]["extra"] or "{}")

    def by_prompt_item(self, item_id: int) -> tuple[str, dict[str, Any]] | None:
        """``(prompt_id, extra)`` of a server's item (``None`` for a notebook's)."""
        rows = self.history.query("SELECT prompt_id, extra FROM queue WHERE id = ? AND prompt_id IS NOT NULL",
                                  (item_id,))
        return (str(rows[0][0]), json.loads(rows[0][1] or "{}")) if rows else None

    def running(self) -> int | None:
        """The id of the item this process runs now, if any."""
        current = self._current
        return current[0] if current is not None else None

    # -- looking ----------------------------------------------------------------------------------
    def item(self, item_id: int) -> QueueItem:
        rows = self.history.query(f"SELECT {_COLS} FROM queue WHERE id = ?", (item_id,))
        if not rows:
            raise VortexError(f"no queue item {item_id}", hint="vx.queue().items() lists them")
        return QueueItem(*rows[0])

    def items(self, *, pending: bool = True) -> list[QueueItem]:
        """Queued and running items in the order they will run (``pending=False``: all, newest first)."""
        if pending:
            sql = (f"SELECT {_COLS} FROM queue WHERE status IN ('running', 'queued') "
                   "ORDER BY status = 'queued', priority DESC, position")
        else:
            sql = f"SELECT {_COLS} FROM queue ORDER BY id DESC"
        return [QueueItem(*r) for r in self.history.query(sql)]

    def wait(self, item: QueueItem | int, timeout: float | None = None) -> QueueItem:
        """Block until the item has finished (``QueueItem.done``)."""
        item_id = item.id if isinstance(item, QueueItem) else int(item)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            now = self.item(item_id)
            if now.done:
                return now
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"queue item {item_id} is still {now.status}")
            with self._wake:
                self._wake.wait(0.05)

    # -- changing ---------------------------------------------------------------------------------
    @property
    def paused(self) -> bool:
        return self.history.setting("queue.paused") == "1"

    def pause(self) -> None:
        self.history.set_setting("queue.paused", "1")

    def resume(self) -> None:
        self.history.set_setting("queue.paused", "0")
        self._notify()

    def cancel(self, item: QueueItem | int) -> QueueItem:
        """A queued item is dropped; the running one is cancelled (its run ends ``cancelled``)."""
        item_id = item.id if isinstance(item, QueueItem) else int(item)
        with self.history.write() as db:
            db.execute("UPDATE queue SET status = 'cancelled' WHERE id = ? AND status = 'queued'", (item_id,))
            # running in another kernel: that kernel's runner sees the request within 0.25 s
            db.execute("INSERT OR REPLACE INTO settings (name, value) SELECT ?, '1' FROM queue "
                       "WHERE id = ? AND status = 'running'", (f"queue.cancel.{item_id}", item_id))
        current = self._current
        if current is not None and current[0] == item_id and current[1] is not None:
            current[1].cancel()
        return self.item(item_id)

    def _cancel_requested(self, item_id: int) -> bool:
        return self.history.setting(f"queue.cancel.{item_id}") == "1"

    def move(self, item: QueueItem | int, *, before: QueueItem | int | None = None) -> QueueItem:
        """Reorder: put the item just before ``before`` (``None``: at the front of its priority)."""
        item_id = item.id if isinstance(item, QueueItem) else int(item)
        with self.history.write() as db:
            if before is None:
                pos = db.execute("SELECT coalesce(min(position), 1) - 1 FROM queue WHERE status = 'queued'").fetchone()[0]
            else:
                other = before.id if isinstance(before, QueueItem) else int(before)
                row = db.execute("SELECT position FROM queue WHERE id = ?", (other,)).fetchone()
                if row is None:
                    raise VortexError(f"no queue item {other}")
                prev = db.execute("SELECT max(position) FROM queue WHERE position < ? AND status = 'queued'",
                                  (row[0],)).fetchone()[0]
                pos = (row[0] + prev) / 2 if prev is not None else row[0] - 1
            db.execute("UPDATE queue SET position = ? WHERE id = ? AND status = 'queued'", (pos, item_id))
        return self.item(item_id)

    def set_priority(self, item: QueueItem | int, priority: int) -> QueueItem:
        item_id = item.id if isinstance(item, QueueItem) else int(item)
        with self.history.write() as db:
            db.execute("UPDATE queue SET priority = ? WHERE id = ? AND status = 'queued'", (int(priority), item_id))
        return self.item(item_id)

    def clear(self) -> int:
        """Cancel every queued item; returns how many."""
        with self.history.write() as db:
            return int(db.execute("UPDATE queue SET status = 'cancelled' WHERE status = 'queued'").rowcount)

    # -- running ----------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="vortex-queue", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop this process's runner after the item it runs (the queue itself stays)."""
        self._stop.set()
        self._notify()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def _notify(self) -> None:
        with self._wake:
            self._wake.notify_all()

    def _claim(self) -> tuple[int, str, str, str] | None:
        with self.history.write() as db:  # the pause is read in the claiming transaction: no race
            paused = db.execute("SELECT value FROM settings WHERE name = 'queue.paused'").fetchone()
            if paused is not None and paused[0] == "1":
                return None
            row = db.execute("SELECT q.id, g.json, coalesce(q.origin, 'queue'), coalesce(q.extra, '{}') FROM queue q "
                             "JOIN graphs g "
                             "ON g.hash = q.graph WHERE q.status = 'queued' ORDER BY q.priority DESC, q.position "
                             "LIMIT 1").fetchone()
            if row is None:
                return None
            db.execute("UPDATE queue SET status = 'running', owner = ? WHERE id = ?", (self.owner, row[0]))
        return int(row[0]), str(row[1]), str(row[2]), str(row[3])

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                claimed = self._claim()
            except Exception:  # a locked or damaged file: try again shortly
                claimed = None
            if claimed is None:
                with self._wake:
                    self._wake.wait(0.25)  # also polls for items other processes queued
                continue
            self._run(*claimed)

    def _run(self, item_id: int, graph_json: str, origin: str, extra: str = "{}") -> None:
        from .._api import load

        status, error, run = "failed", None, None
        try:
            targets = json.loads(extra).get("targets") or None
            graph = load(json.loads(graph_json))
            graph.origin = origin
            self._current = (item_id, None)
            for fn in (self.listeners(self.item(item_id), graph) if self.listeners is not None else ()):
                graph.on_event(fn)
            run = graph.start(history=self.history, outputs=targets)
            self._current = (item_id, run)
            with self.history.write() as db:
                db.execute("UPDATE queue SET run_id = ? WHERE id = ?", (run.run_id, item_id))
            if self.item(item_id).status == "cancelled" or self._cancel_requested(item_id):
                run.cancel()  # cancelled between claim and start
            while not run.wait(0.25).done:
                if self._cancel_requested(item_id):  # (asked from another kernel)
                    run.cancel()
            run.wait()
            status = run.status if run.status in FINAL else "failed"
        except Exception as exc:  # e.g. a ValidationError: the item fails, the queue goes on
            error = f"{type(exc).__name__}: {exc}"
        finally:
            self._current = None
        with self.history.write() as db:
            db.execute("UPDATE queue SET status = ?, error = ?, run_id = coalesce(run_id, ?) WHERE id = ?",
                       (status, error, getattr(run, "run_id", None), item_id))
            db.execute("DELETE FROM settings WHERE name = ?", (f"queue.cancel.{item_id}",))
        self._notify()
        if self.on_done is not None:
            with contextlib.suppress(Exception):  # a listener's failure must not stop the queue
                self.on_done(self.item(item_id))


_QUEUES: dict[str, Queue] = {}
_LOCK = threading.Lock()


def queue(path: Any = None) -> Queue:
    """The queue of the history file (``VORTEX_HISTORY`` or ``path``); its runner starts here."""
    hist = open_history(path)
    if hist is None:
        raise VortexError("the queue lives in the history file, which is off (VORTEX_HISTORY=off)",
                          hint="unset VORTEX_HISTORY (or point it at a file) to use the queue")
    with _LOCK:
        q = _QUEUES.get(str(hist.path))
        if q is None:
            q = _QUEUES[str(hist.path)] = Queue(hist)
        else:
            q.start()
        return q
