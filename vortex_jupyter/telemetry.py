"""Metrics and JSON logs, shared by ``vortex serve`` and the notebook (off unless asked).

Metrics (``prometheus-client``, in a registry of our own, ``REGISTRY``):

- ``vortex_runs_total{status, origin}``, ``vortex_run_seconds`` (histogram);
- ``vortex_node_executions_total{type, status}`` (status ok / failed / cached),
  ``vortex_node_seconds{type}`` (histogram);
- ``vortex_queue_depth`` (queued + running items), ``vortex_worker_restarts_total``,
  ``vortex_worker_peak_memory_bytes{worker}``.

Who records: ``MetricsListener`` on each run (the server always; a notebook's ``Graph.run``
when ``VORTEX_METRICS=1``); the server serves ``/metrics`` in Prometheus' text format.

Logs: ``VORTEX_LOG_FORMAT=json`` makes ``configure_logging()`` write one JSON object per line
(time, level, logger, message, and ``run_id``/``node``/``prompt_id`` when the record has them).
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

__all__ = ["MetricsListener", "configure_logging", "enabled", "metrics_text"]

_METRICS: dict[str, Any] = {}
REGISTRY: Any = None


def enabled() -> bool:
    """Whether notebook runs record metrics (``VORTEX_METRICS=1``; the server always does)."""
    return os.environ.get("VORTEX_METRICS", "").strip().lower() in ("1", "true", "on", "yes")


def _metrics() -> dict[str, Any]:
    global REGISTRY
    if not _METRICS:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        REGISTRY = CollectorRegistry()
        buckets = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
        _METRICS.update(
            runs=Counter("vortex_runs", "Runs by final status and origin", ["status", "origin"], registry=REGISTRY),
            run_seconds=Histogram("vortex_run_seconds", "Run wall time", buckets=buckets, registry=REGISTRY),
            nodes=Counter("vortex_node_executions", "Node executions by type and status", ["type", "status"],
                          registry=REGISTRY),
            node_seconds=Histogram("vortex_node_seconds", "Node run time by type", ["type"], buckets=buckets,
                                   registry=REGISTRY),
            queue=Gauge("vortex_queue_depth", "Queued and running items", registry=REGISTRY),
            restarts=Counter("vortex_worker_restarts", "Worker processes that died and were replaced",
                             registry=REGISTRY),
            peak=Gauge("vortex_worker_peak_memory_bytes", "Peak resident memory of a worker", ["worker"],
                       registry=REGISTRY),
        )
    return _METRICS


class MetricsListener:
    """An engine event listener counting one graph's runs and node executions."""

    def __init__(self, model: Any, origin: str = "notebook") -> None:
        self.model, self.origin = model, origin
        self.m = _metrics()

    def _type(self, node: str) -> str:
        record = self.model.nodes.get(node)
        return record.type if record is not None else ""

    def __call__(self, event: Any) -> None:
        kind = event.kind
        if kind == "node_finished":
            kind_type = self._type(event.node)
            self.m["nodes"].labels(kind_type, "ok").inc()
            self.m["node_seconds"].labels(kind_type).observe(event.elapsed)
            if event.worker and event.peak_memory:
                self.m["peak"].labels(event.worker).set(event.peak_memory)
        elif kind == "node_cached":
            self.m["nodes"].labels(self._type(event.node), "cached").inc()
        elif kind == "node_failed":
            self.m["nodes"].labels(self._type(event.node), "failed").inc()
        elif kind == "run_finished":
            self.m["runs"].labels(event.status, self.origin).inc()
            self.m["run_seconds"].observe(event.elapsed)


def set_queue_depth(n: int) -> None:
    _metrics()["queue"].set(n)


_WATCHED: set[int] = set()


def watch_pool(executor: Any) -> None:
    """Count the deaths of ``executor``'s workers (``vortex_worker_restarts_total``), once per pool."""
    pool = getattr(executor, "pool", None)
    supervisor = getattr(pool, "supervisor", None)
    if supervisor is None or id(supervisor) in _WATCHED:
        return
    _WATCHED.add(id(supervisor))
    counter = _metrics()["restarts"]
    supervisor.death_listeners.append(lambda worker: counter.inc())


def metrics_text() -> tuple[bytes, str]:
    """The registry in Prometheus' text format, and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    _metrics()
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


class JsonFormatter(logging.Formatter):
    FIELDS = ("run_id", "node", "prompt_id", "trace_id")

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                               + f".{int(record.msecs):03d}Z", "level": record.levelname.lower(),
                               "logger": record.name, "message": record.getMessage()}
        for name in self.FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(level: int = logging.INFO) -> None:
    """Our loggers to stderr, as JSON lines under ``VORTEX_LOG_FORMAT=json`` (else plain text)."""
    handler = logging.StreamHandler()
    if os.environ.get("VORTEX_LOG_FORMAT", "").strip().lower() == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("vortex_jupyter")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
