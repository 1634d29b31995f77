"""Recording runs into the history: an event listener per run (``Graph.run``/``start`` add it).

``RunStarted`` writes the run's row (status ``running``, the graph, who and from where, its seeds
and prompts); node events are buffered and written half a second after the first unwritten one
(so a process killed mid-run, even in a long node, leaves what had finished); ``RunFinished`` writes the rest, the output files (path,
sha256, a thumbnail) and the final status before ``run.wait()`` returns. A history that cannot
be written never fails a run: it warns once and the run goes on.
"""

from __future__ import annotations

import getpass
import io
import logging
import os
import threading
import warnings
from pathlib import Path
from typing import Any

from ..engine.events import Event
from .db import History, open_history, sha256_file

log = logging.getLogger("vortex_jupyter.history")

FLUSH_S = 0.5
THUMB = 96
SEED_PARAMS = frozenset({"seed", "noise_seed"})
PROMPT_PARAMS = frozenset({"text", "text_g", "text_l", "clip_l", "clip_g", "t5xxl"})
_warned: set[str] = set()


def who() -> str:
    user = os.environ.get("JUPYTERHUB_USER")
    if user:
        return user
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers)
        return str(os.getuid())


def seeds_and_prompts(model: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """``({node: seed}, {node: prompt text})`` of a graph, for the gallery."""
    seeds: dict[str, Any] = {}
    prompts: dict[str, str] = {}
    for node_id, node in model.nodes.items():
        for name, value in node.params.items():
            if name in SEED_PARAMS and isinstance(value, int):
                seeds[node_id] = value
            elif name in PROMPT_PARAMS and isinstance(value, str) and value.strip():
                prompts[f"{node_id}.{name}" if name != "text" else node_id] = value
    return seeds, prompts


class Recorder:
    """The listener recording one graph's runs into ``history``."""

    def __init__(self, history: History, model: Any, origin: str = "notebook", user: str | None = None) -> None:
        self.history, self.model, self.origin, self.user = history, model, origin, user or who()
        self.rows: list[tuple[Any, ...]] = []
        self.outputs: list[tuple[str, str, str, bytes | None]] = []
        self.ui: dict[str, Any] = {}
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()
        self.run_id = ""
        self.broken = False

    def __call__(self, event: Event) -> None:
        if self.broken:
            return
        try:
            self._on(event)
        except Exception as exc:  # the history must never fail a run
            self.broken = True
            key = str(self.history.path)
            if key not in _warned:
                _warned.add(key)
                warnings.warn(f"vortex-jupyter: this run is not recorded in the history ({key}): {exc}",
                              stacklevel=2)

    def _type(self, node: str) -> str:
        record = self.model.nodes.get(node)
        return record.type if record is not None else ""

    def _on(self, event: Event) -> None:
        kind = event.kind
        e: Any = event  # (each kind's fields)
        if kind == "run_started":
            from ..graph.formats import to_native

            self.run_id = e.run_id
            seeds, prompts = seeds_and_prompts(self.model)
            self.history.begin_run(e.run_id, to_native(self.model), who=self.user, origin=self.origin,
                                   seeds=seeds, prompts=prompts)
            self.rows = [(n, self._type(n), "cached", None, None, None, None, None) for n in e.cached]
        elif kind == "node_finished":
            self._add((e.node, self._type(e.node), "ok", e.elapsed, None, None, None,
                       e.worker or None, e.device or None, e.peak_memory or None))
            if e.ui:
                self.ui[e.node] = e.ui
            self._outputs(e.node, e.ui or {})
        elif kind == "node_cached":
            self._add((e.node, self._type(e.node), "cached", None, None, None, None, None))
        elif kind == "node_failed":
            self._add((e.node, self._type(e.node), "failed", None, e.code, e.message, e.traceback, None))
        elif kind == "run_finished":
            self._flush()
            self.history.finish_run(e.run_id, e.status, elapsed=e.elapsed, stats=e.stats, outputs=self.outputs,
                                    ui=self.ui)
            self.outputs, self.ui = [], {}
            return
        if len(self.rows) >= 2000:
            self._flush()
        elif self.rows and self._timer is None:  # a long node next must not hold finished ones back
            self._timer = threading.Timer(FLUSH_S, self._flush_later)
            self._timer.daemon = True
            self._timer.start()

    def _add(self, row: tuple[Any, ...]) -> None:
        with self._lock:
            self.rows.append(row)

    def _flush_later(self) -> None:
        try:
            self._flush()
        except Exception:  # the next flush (or the run's end) tries again
            log.debug("history flush failed", exc_info=True)

    def _flush(self) -> None:
        with self._lock:
            timer, self._timer = self._timer, None
            if timer is not None and timer is not threading.current_thread():
                timer.cancel()
            rows, self.rows = self.rows, []
            if rows:
                self.history.add_nodes(self.run_id, rows)

    def _outputs(self, node: str, ui: dict[str, Any]) -> None:
        from ..nodes.paths import output_root

        for item in ui.get("images", []) or []:
            if not isinstance(item, dict) or item.get("type") != "output":
                continue
            path = Path(output_root()) / str(item.get("subfolder") or "") / str(item.get("filename"))
            try:
                digest = sha256_file(path)
            except OSError:
                continue
            self.outputs.append((node, str(path), digest, thumbnail(path)))


def thumbnail(path: Path, size: int = THUMB) -> bytes | None:
    try:
        from PIL import Image

        with Image.open(path) as im:
            im.thumbnail((size, size))
            buf = io.BytesIO()
            im.convert("RGB").save(buf, format="PNG")
            return buf.getvalue()
    except Exception:
        return None


def recorder_for(model: Any, origin: str, history: History | None = None) -> Recorder | None:
    """A recorder for a run of ``model`` into ``history`` (default: ``VORTEX_HISTORY``'s), or
    ``None`` when the history is off or unusable."""
    if history is not None:
        return Recorder(history, model, origin)
    try:
        history = open_history()
    except Exception as exc:
        key = "open"
        if key not in _warned:
            _warned.add(key)
            warnings.warn(f"vortex-jupyter: runs are not recorded: {exc}", stacklevel=3)
        return None
    return None if history is None else Recorder(history, model, origin)
