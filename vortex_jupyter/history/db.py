"""The run history: one SQLite file per user (stdlib ``sqlite3``), shared by every kernel.

Where: ``$VORTEX_HISTORY`` (a file path; ``off`` disables recording), else
``$XDG_DATA_HOME/vortex-jupyter/history.sqlite`` (``~/.local/share/...``).

Schema (``PRAGMA user_version`` is its version; ``MIGRATIONS[i]`` takes version ``i`` to
``i + 1``, each in one transaction, so a file of any older version opens and is upgraded):

- ``runs``: one row per run: id, times, status (``running`` -> ``ok`` | ``failed`` |
  ``cancelled``; ``interrupted`` when the process that ran it died), who/origin (notebook,
  canvas, cli, server, queue), the graph (by content hash into ``graphs``: 10k runs of one
  graph store it once), counts, seeds and prompts (for the gallery), and the pid + process start
  time + host of the process running it.
- ``nodes``: per run and node: type, status (ok, failed, cached), elapsed, error code, message,
  traceback, worker, device and the worker's peak resident memory when it finished.
- ``outputs``: files a run wrote (SaveImage...): path, sha256, a small PNG thumbnail.
- ``queue`` and ``settings``: the persistent queue (``queue.py``); a queue item of the server
  keeps its ComfyUI ``prompt_id`` and client data; ``runs.ui`` each node's UI output (what
  ComfyUI's ``/history`` returns as ``outputs``).
- ``documents``: the server's graph documents (``/api/v1/graphs``), with a version per change.
- ``file_hashes``: sha256 of model files by (path, size, mtime), so a checkpoint is hashed once.

Concurrency: WAL journal, ``busy_timeout``; every write is one short ``BEGIN IMMEDIATE``
transaction, so two kernels on one file interleave whole writes. Crashes: a run still
``running`` whose process is gone (pid and its start time, on this host) is marked
``interrupted`` when the file is next opened; nothing else changes.

Retention: ``$VORTEX_HISTORY_MAX_MB`` (default 512): past it the oldest runs (with their
nodes and outputs rows; files on disk are never deleted) go until the file is under 90% of it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import VortexError

__all__ = ["MIGRATIONS", "History", "history_path", "open_history"]

MIGRATIONS: list[str] = [
    # 0 -> 1: runs and their nodes
    """
    CREATE TABLE runs (
        id TEXT PRIMARY KEY, started REAL NOT NULL, finished REAL, status TEXT NOT NULL,
        graph TEXT, who TEXT, origin TEXT, elapsed REAL, ran INTEGER, cached INTEGER, failed INTEGER,
        error TEXT, pid INTEGER, pid_start INTEGER, host TEXT);
    CREATE TABLE graphs (hash TEXT PRIMARY KEY, json TEXT NOT NULL);
    CREATE TABLE nodes (
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE, node TEXT NOT NULL, type TEXT,
        status TEXT NOT NULL, elapsed REAL, code TEXT, message TEXT, traceback TEXT, worker TEXT,
        PRIMARY KEY (run_id, node));
    CREATE INDEX runs_started ON runs(started);
    """,
    # 1 -> 2: outputs (the gallery), seeds/prompts, the queue, model file hashes
    """
    ALTER TABLE runs ADD COLUMN seeds TEXT;
    ALTER TABLE runs ADD COLUMN prompts TEXT;
    ALTER TABLE runs ADD COLUMN params TEXT;
    CREATE TABLE outputs (
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE, node TEXT NOT NULL, path TEXT NOT NULL,
        sha256 TEXT, thumbnail BLOB);
    CREATE INDEX outputs_run ON outputs(run_id);
    CREATE INDEX nodes_type ON nodes(type, run_id);
    CREATE INDEX runs_status ON runs(status, started);
    CREATE TABLE queue (
        id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL NOT NULL, priority INTEGER NOT NULL DEFAULT 0,
        position REAL NOT NULL, status TEXT NOT NULL, graph TEXT NOT NULL, who TEXT, origin TEXT,
        run_id TEXT, owner TEXT, error TEXT);
    CREATE INDEX queue_order ON queue(status, priority DESC, position);
    CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT);
    CREATE TABLE file_hashes (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, sha256 TEXT);
    """,
    # 2 -> 3: where each node ran
    """
    ALTER TABLE nodes ADD COLUMN device TEXT;
    ALTER TABLE nodes ADD COLUMN peak_memory INTEGER;
    """,
    # 3 -> 4: the server's ComfyUI prompts (prompt_id, client data) and each node's UI output
    """
    ALTER TABLE queue ADD COLUMN prompt_id TEXT;
    ALTER TABLE queue ADD COLUMN extra TEXT;
    CREATE INDEX queue_prompt ON queue(prompt_id);
    CREATE INDEX queue_run ON queue(run_id);
    ALTER TABLE runs ADD COLUMN ui TEXT;
    """,
    # 4 -> 5: the server's graph documents (/api/v1/graphs)
    """
    CREATE TABLE documents (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, version INTEGER NOT NULL, created REAL NOT NULL,
        updated REAL NOT NULL, graph TEXT NOT NULL);
    """,
]
VERSION = len(MIGRATIONS)


def history_path() -> Path | None:
    """The history file, or ``None`` when ``VORTEX_HISTORY=off``."""
    raw = os.environ.get("VORTEX_HISTORY", "").strip()
    if raw.lower() in ("off", "none", "0"):
        return None
    if raw:
        return Path(raw).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "vortex-jupyter" / "history.sqlite"


def max_bytes() -> int:
    raw = os.environ.get("VORTEX_HISTORY_MAX_MB", "").strip()
    try:
        return int(float(raw) * 2**20) if raw else 512 * 2**20
    except ValueError:
        raise VortexError(f"VORTEX_HISTORY_MAX_MB = {raw!r} is not a number of megabytes",
                          hint="e.g. VORTEX_HISTORY_MAX_MB=256") from None


def process_start(pid: int) -> int:
    """The start time of process ``pid`` in clock ticks since boot (0: unknown / gone): with the
    pid, it names one process even after the pid is reused."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return 0


class History:
    """A history file. Thread-safe (one connection, one lock); several processes may share the file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            self.conn = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None,
                                        check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self.conn.execute("PRAGMA busy_timeout=30000")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise VortexError(f"the history file {self.path} cannot be used: {exc}",
                              hint="move it away (a new one is made), or set VORTEX_HISTORY to another "
                                   "file, or VORTEX_HISTORY=off") from None
        self.host = socket.gethostname()
        self.mark_interrupted()

    # -- plumbing ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction (committed, or rolled back on error)."""
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            cur = self.conn.execute(sql, args)
            cur.row_factory = sqlite3.Row
            return cur.fetchall()

    def version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        with self._lock:
            while (current := self.version()) < VERSION:
                self.conn.execute("BEGIN IMMEDIATE")
                try:
                    if self.version() == current:  # another process may have migrated meanwhile
                        for statement in MIGRATIONS[current].split(";"):
                            if statement.strip():
                                self.conn.execute(statement)
                        self.conn.execute(f"PRAGMA user_version = {current + 1}")
                except BaseException:
                    self.conn.execute("ROLLBACK")
                    raise
                self.conn.execute("COMMIT")
            if self.version() > VERSION:
                raise sqlite3.DatabaseError(f"it has schema version {self.version()}, newer than this "
                                            f"vortex-jupyter's ({VERSION})")

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    # -- runs -------------------------------------------------------------------------------------
    def mark_interrupted(self) -> int:
        """Runs (and queue items) left ``running`` by a process of this host that is gone."""
        rows = self.query("SELECT id, pid, pid_start FROM runs WHERE status = 'running' AND host = ?", (self.host,))
        dead = [r["id"] for r in rows if not r["pid"] or process_start(r["pid"]) != r["pid_start"]]
        owners = self.query("SELECT id, owner FROM queue WHERE status = 'running'")
        gone = [r["id"] for r in owners if not _owner_alive(str(r["owner"] or ""), self.host)]
        if dead or gone:
            with self.write() as db:
                db.executemany("UPDATE runs SET status = 'interrupted', finished = coalesce(finished, ?) "
                               "WHERE id = ? AND status = 'running'", [(time.time(), i) for i in dead])
                db.executemany("UPDATE queue SET status = 'interrupted' WHERE id = ? AND status = 'running'",
                               [(i,) for i in gone])
        return len(dead)

    def store_graph(self, db: sqlite3.Connection, graph: dict[str, Any]) -> str:
        text = json.dumps(graph, sort_keys=True, separators=(",", ":"), default=str)
        digest = hashlib.sha256(text.encode()).hexdigest()[:32]
        db.execute("INSERT OR IGNORE INTO graphs (hash, json) VALUES (?, ?)", (digest, text))
        return digest

    def begin_run(self, run_id: str, graph: dict[str, Any], *, who: str = "", origin: str = "",
                  seeds: Any = None, prompts: Any = None, params: Any = None, started: float | None = None) -> None:
        pid = os.getpid()
        with self.write() as db:
            digest = self.store_graph(db, graph)
            db.execute("INSERT OR REPLACE INTO runs (id, started, status, graph, who, origin, pid, pid_start, host, "
                       "seeds, prompts, params) VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (run_id, started or time.time(), digest, who, origin, pid, process_start(pid), self.host,
                        _dumps(seeds), _dumps(prompts), _dumps(params)))

    def add_nodes(self, run_id: str, rows: Sequence[tuple[Any, ...]]) -> None:
        """``(node, type, status, elapsed, code, message, traceback, worker[, device, peak_memory])`` rows."""
        if rows:
            with self.write() as db:
                db.executemany("INSERT OR REPLACE INTO nodes (run_id, node, type, status, elapsed, code, message, "
                               "traceback, worker, device, peak_memory) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                               [(run_id, *r, *(None,) * (10 - len(r))) for r in rows])

    def finish_run(self, run_id: str, status: str, *, elapsed: float, stats: dict[str, Any],
                   error: str | None = None, outputs: Sequence[tuple[str, str, str, bytes | None]] = (),
                   ui: dict[str, Any] | None = None) -> None:
        with self.write() as db:
            db.execute("UPDATE runs SET status = ?, finished = ?, elapsed = ?, ran = ?, cached = ?, failed = ?, "
                       "error = ?, ui = ? WHERE id = ?",
                       (status, time.time(), elapsed, stats.get("ran", 0), stats.get("cached", 0),
                        stats.get("failed", 0), error, _dumps(ui or None), run_id))
            db.executemany("INSERT INTO outputs (run_id, node, path, sha256, thumbnail) VALUES (?, ?, ?, ?, ?)",
                           [(run_id, *o) for o in outputs])
        self.enforce_retention()

    def graph(self, run_id: str) -> dict[str, Any]:
        rows = self.query("SELECT g.json FROM runs r JOIN graphs g ON g.hash = r.graph WHERE r.id = ?", (run_id,))
        if not rows:
            raise VortexError(f"no run {run_id!r} in the history ({self.path})",
                              hint="vx.history() lists the runs recorded")
        graph: dict[str, Any] = json.loads(rows[0][0])
        return graph

    # -- retention --------------------------------------------------------------------------------
    def size(self) -> int:
        with self._lock:
            pages = self.conn.execute("PRAGMA page_count").fetchone()[0]
            free = self.conn.execute("PRAGMA freelist_count").fetchone()[0]
            page = self.conn.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * page)

    def enforce_retention(self, limit: int | None = None) -> int:
        """Delete the oldest finished runs while the data is over ``limit`` bytes; returns how many."""
        limit = max_bytes() if limit is None else limit
        deleted = 0
        while self.size() > limit:
            total = self.query("SELECT count(*) FROM runs WHERE status != 'running'")[0][0]
            if not total:
                break
            batch = max(1, total // 10)
            with self.write() as db:
                db.execute("DELETE FROM runs WHERE id IN (SELECT id FROM runs WHERE status != 'running' "
                           "ORDER BY started LIMIT ?)", (batch,))
                db.execute("DELETE FROM graphs WHERE hash NOT IN (SELECT graph FROM runs WHERE graph IS NOT NULL) "
                           "AND hash NOT IN (SELECT graph FROM queue)")
            deleted += batch
            if self.size() <= limit * 0.9:
                break
        return deleted

    # -- model file hashes ------------------------------------------------------------------------
    def file_hash(self, path: Path) -> str:
        """sha256 of a file, computed once per (path, size, mtime)."""
        st = path.stat()
        key = str(path.resolve())
        rows = self.query("SELECT sha256 FROM file_hashes WHERE path = ? AND size = ? AND mtime_ns = ?",
                          (key, st.st_size, st.st_mtime_ns))
        if rows:
            return str(rows[0][0])
        digest = sha256_file(path)
        with self.write() as db:
            db.execute("INSERT OR REPLACE INTO file_hashes VALUES (?, ?, ?, ?)", (key, st.st_size, st.st_mtime_ns, digest))
        return digest

    # -- settings ---------------------------------------------------------------------------------
    def setting(self, name: str, default: str = "") -> str:
        rows = self.query("SELECT value FROM settings WHERE name = ?", (name,))
        return str(rows[0][0]) if rows else default

    def set_setting(self, name: str, value: str) -> None:
        with self.write() as db:
            db.execute("INSERT OR REPLACE INTO settings (name, value) VALUES (?, ?)", (name, value))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def owner_id() -> str:
    """This process as a queue item's owner: ``host:pid:start``."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{process_start(pid)}"


def _owner_alive(owner: str, host: str) -> bool:
    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != host:
        return True  # another host's: not ours to judge
    try:
        return process_start(int(parts[1])) == int(parts[2])
    except ValueError:
        return False


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=str)


_OPEN: dict[str, History] = {}
_OPEN_LOCK = threading.Lock()


def open_history(path: str | os.PathLike[str] | None = None) -> History | None:
    """The process's ``History`` of ``path`` (default ``history_path()``; ``None`` when off)."""
    where = Path(path) if path is not None else history_path()
    if where is None:
        return None
    key = str(where.expanduser().resolve())
    with _OPEN_LOCK:
        hist = _OPEN.get(key)
        if hist is None:
            hist = _OPEN[key] = History(where)
        return hist
