"""``vx.history()``: the recorded runs as a small table object (no pandas).

>>> h = vx.history()                                   # doctest: +SKIP
>>> h.filter(status="failed", node_type="KSampler", since="2026-12-01")   # doctest: +SKIP
>>> h[0].id, h[0].status, h.run(h[0].id).nodes       # doctest: +SKIP
>>> h.to_arrow()                                       # a pyarrow.Table (pip install pyarrow)  # doctest: +SKIP
>>> h.graph(run_id)                                    # that run's graph, as a vx.Graph  # doctest: +SKIP
>>> h.diff(run_id, g); h.restore(run_id, g)            # against / back into the graph you edit  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import html
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..errors import VortexError
from .db import History, open_history

__all__ = ["HistoryTable", "RunRecord", "RunRow", "history"]

COLUMNS = ("id", "started", "finished", "status", "who", "origin", "elapsed", "ran", "cached", "failed",
           "seeds", "prompts")


class RunRow(NamedTuple):
    """One recorded run (``seeds``/``prompts`` are decoded on first access: listing 10k runs
    must not parse 20k JSON texts)."""

    id: str
    started: float
    finished: float | None
    status: str
    who: str | None
    origin: str | None
    elapsed: float | None
    ran: int | None
    cached: int | None
    failed: int | None
    seeds_json: str | None = None
    prompts_json: str | None = None

    @property
    def seeds(self) -> dict[str, Any]:
        return json.loads(self.seeds_json) if self.seeds_json else {}

    @property
    def prompts(self) -> dict[str, str]:
        return json.loads(self.prompts_json) if self.prompts_json else {}

    @property
    def when(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.started)


@dataclass(frozen=True)
class RunRecord:
    """One run in full: its row, its nodes (status, timings, errors) and its output files."""

    row: RunRow
    nodes: list[dict[str, Any]]
    outputs: list[dict[str, Any]]


def _time(value: Any, name: str) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dt.datetime):
        return value.timestamp()
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time()).timestamp()
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value).timestamp()
        except ValueError:
            pass
    raise VortexError(f"history filter {name}={value!r} is not a time",
                      hint="give a datetime, a date, a Unix timestamp or an ISO string like '2026-12-01 14:00'")


class HistoryTable(Sequence[RunRow]):
    """Runs, newest first, matching a filter (``filter`` narrows it further)."""

    def __init__(self, history: History, where: tuple[str, ...] = (), args: tuple[Any, ...] = (),
                 limit: int | None = None) -> None:
        self.history, self._where, self._args, self._limit = history, where, args, limit
        self._rows: list[RunRow] | None = None

    def filter(self, *, since: Any = None, until: Any = None, status: str | Sequence[str] | None = None,
               node_type: str | None = None, origin: str | None = None, who: str | None = None,
               limit: int | None = None) -> HistoryTable:
        where, args = list(self._where), list(self._args)
        if since is not None:
            where.append("started >= ?")
            args.append(_time(since, "since"))
        if until is not None:
            where.append("started < ?")
            args.append(_time(until, "until"))
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            where.append(f"status IN ({', '.join('?' * len(statuses))})")
            args += statuses
        if node_type is not None:
            where.append("id IN (SELECT run_id FROM nodes WHERE type = ?)")
            args.append(node_type)
        if origin is not None:
            where.append("origin = ?")
            args.append(origin)
        if who is not None:
            where.append("who = ?")
            args.append(who)
        return HistoryTable(self.history, tuple(where), tuple(args), limit if limit is not None else self._limit)

    @property
    def rows(self) -> list[RunRow]:
        if self._rows is None:
            sql = f"SELECT {', '.join(COLUMNS)} FROM runs"
            if self._where:
                sql += " WHERE " + " AND ".join(self._where)
            sql += " ORDER BY started DESC"
            args = list(self._args)
            if self._limit is not None:
                sql += " LIMIT ?"
                args.append(int(self._limit))
            make = RunRow._make
            with self.history._lock:
                self._rows = [make(r) for r in self.history.conn.execute(sql, args)]
        return self._rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: Any) -> Any:
        return self.rows[index]

    def __iter__(self) -> Iterator[RunRow]:
        return iter(self.rows)

    def to_dicts(self) -> list[dict[str, Any]]:
        return [{name: getattr(r, name) for name in COLUMNS} for r in self.rows]

    def to_arrow(self) -> Any:
        """The rows as a ``pyarrow.Table`` (seeds/prompts as JSON text)."""
        try:
            import pyarrow as pa
        except ImportError:
            raise VortexError("to_arrow() needs pyarrow", hint="pip install pyarrow") from None
        cols: dict[str, list[Any]] = {name: [] for name in COLUMNS}
        for r in self.rows:
            for name in COLUMNS:
                value = getattr(r, name)
                cols[name].append(json.dumps(value) if name in ("seeds", "prompts") else value)
        return pa.table(cols)

    # -- one run ----------------------------------------------------------------------------------
    def run(self, run_id: str) -> RunRecord:
        rows = HistoryTable(self.history, ("id = ?",), (run_id,)).rows
        if not rows:
            raise VortexError(f"no run {run_id!r} in the history ({self.history.path})",
                              hint="vx.history() lists the runs recorded")
        nodes = [dict(r) for r in self.history.query(
            "SELECT node, type, status, elapsed, code, message, traceback, worker, device, peak_memory "
            "FROM nodes WHERE run_id = ? "
            "ORDER BY rowid", (run_id,))]
        outputs = [dict(r) for r in self.history.query(
            "SELECT node, path, sha256, thumbnail FROM outputs WHERE run_id = ? ORDER BY rowid", (run_id,))]
        return RunRecord(rows[0], nodes, outputs)

    def graph(self, run_id: str) -> Any:
        """That run's graph as a ``vx.Graph`` (restore it, or diff it against the current one)."""
        from .._api import load

        return load(self.history.graph(run_id))

    def diff(self, run_id: str, graph: Any) -> list[str]:
        """What changed from run ``run_id``'s graph to ``graph`` (now), in words."""
        from .diff import diff

        return diff(self.history.graph(run_id), graph)

    def restore(self, run_id: str, graph: Any) -> int:
        """Put run ``run_id``'s graph back into ``graph`` (a ``vx.Graph``; its canvas follows);
        returns how many edits that took."""
        from .diff import restore

        return restore(graph.model, self.history.graph(run_id), origin="history")

    def gallery(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest ``limit`` output files of these runs, with their run's seeds and prompts."""
        sql = ("SELECT o.run_id, o.node, o.path, o.sha256, o.thumbnail, r.seeds, r.prompts, r.started "
               "FROM outputs o JOIN runs r ON r.id = o.run_id")
        if self._where:  # (the filters name runs' columns; outputs has none of those names)
            sql += " WHERE " + " AND ".join(self._where)
        sql += " ORDER BY r.started DESC, o.rowid LIMIT ?"
        out = []
        for r in self.history.query(sql, (*self._args, int(limit))):
            item = dict(r)
            item["seeds"] = json.loads(item["seeds"]) if item["seeds"] else {}
            item["prompts"] = json.loads(item["prompts"]) if item["prompts"] else {}
            out.append(item)
        return out

    # -- display ----------------------------------------------------------------------------------
    def __repr__(self) -> str:
        lines = [f"<history: {len(self)} run(s) in {self.history.path}>"]
        for r in self.rows[:20]:
            lines.append(f"  {r.id}  {r.when:%Y-%m-%d %H:%M:%S}  {r.status:<11} {r.origin or '':<8} "
                         f"ran {r.ran or 0:>4} cached {r.cached or 0:>4} failed {r.failed or 0:>3}  "
                         f"{(r.elapsed or 0) * 1000:8.1f} ms")
        if len(self) > 20:
            lines.append(f"  ... {len(self) - 20} more")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{c}</th>" for c in ("run", "when", "status", "origin", "ran", "cached", "failed", "ms"))
        body = "".join(
            f"<tr><td><code>{html.escape(r.id)}</code></td><td>{r.when:%Y-%m-%d %H:%M:%S}</td>"
            f"<td>{html.escape(r.status)}</td><td>{html.escape(r.origin or '')}</td><td>{r.ran or 0}</td>"
            f"<td>{r.cached or 0}</td><td>{r.failed or 0}</td><td>{(r.elapsed or 0) * 1000:.1f}</td></tr>"
            for r in self.rows[:50])
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def history(path: Any = None) -> HistoryTable:
    """The recorded runs (``VORTEX_HISTORY``, or ``path``), newest first."""
    hist = open_history(path)
    if hist is None:
        raise VortexError("the history is off (VORTEX_HISTORY=off)", hint="unset VORTEX_HISTORY to record runs")
    return HistoryTable(hist)
