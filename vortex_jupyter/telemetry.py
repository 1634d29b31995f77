"""Metrics and JSON logs, shared by ``vortex serve`` and the notebook (off unless asked).

Metrics (``prometheus-client``, in a registry of our own, ``REGISTRY``):

- ``vortex_runs_total{status, origin}``, ``vortex_run_seconds`` (histogram);
- ``vortex_node_executions_total{type, status}`` (status ok / failed / cached),
  ``vortex_node_seconds{type}`` (histogram);
- ``vortex_queue_depth`` (queued + running items), ``vortex_worker_restarts_total``,
  ``vortex_worker_peak_memory_bytes{worker}``, ``vortex_arena_bytes{worker}``, ``vortex_workers{pack}``;
- ``vortex_gpu_memory_used_bytes{device, name}`` and ``vortex_gpu_memory_total_bytes{device, name}``
  per NVIDIA GPU, read through NVML (``nvidia-ml-py``) at each scrape: every process's use of the
  device, as ``nvidia-smi`` shows it, without importing torch or making a CUDA context in the
  server. No NVML (no driver, no GPU, the package absent): no GPU series.

Who records: ``MetricsListener`` on each run (the server always; a notebook's ``Graph.run``
when ``VORTEX_METRICS=1``); the server serves ``/metrics`` in Prometheus' text format.

Traces (``opentelemetry-api``/``-sdk``; on with ``VORTEX_TRACES``: a file path for JSON lines,
or ``otlp`` for the OTLP exporter when installed): a ``vortex.run`` span in the kernel around each
run; its context travels in the worker protocol's ``Execute`` message (W3C ``traceparent``), so
each node's ``vortex.node`` span in a worker is a child of the kernel's run span, and the node
function's own ``vortex.execute`` span a child of that: run -> node -> execute, across processes.

Logs: ``VORTEX_LOG_FORMAT=json`` makes ``configure_logging()`` write one JSON object per line
(time, level, logger, message, and ``run_id``/``node``/``prompt_id`` when the record has them).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["MetricsListener", "configure_logging", "enabled", "metrics_text"]

_METRICS: dict[str, Any] = {}
REGISTRY: Any = None
log = logging.getLogger(__name__)


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
        REGISTRY.register(_GPUS)
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


class _PoolCollector:
    """At each scrape: the shared-memory arena bytes of each live worker (its ``/dev/shm``
    segments; a sandboxed worker's unnamed ones are not counted) and how many workers live."""

    def __init__(self) -> None:
        self.supervisors: list[Any] = []

    def collect(self) -> Any:
        import glob

        from prometheus_client.core import GaugeMetricFamily

        arena = GaugeMetricFamily("vortex_arena_bytes", "Shared-memory arena bytes of a worker", labels=["worker"])
        live = GaugeMetricFamily("vortex_workers", "Live worker processes", labels=["pack"])
        counts: dict[str, int] = {}
        for sup in self.supervisors:
            for w in list(sup.workers.values()):
                if not w.alive:
                    continue
                counts[w.pack or ""] = counts.get(w.pack or "", 0) + 1
                size = 0
                for path in glob.glob(f"/dev/shm/{w.prefix}*"):
                    with contextlib.suppress(OSError):
                        size += os.stat(path).st_size
                arena.add_metric([w.uid], size)
        for pack, n in counts.items():
            live.add_metric([pack], n)
        yield arena
        yield live


_POOLS = _PoolCollector()


@functools.lru_cache(maxsize=1)
def _nvml() -> Any:
    """``pynvml``, initialised once; ``None`` without a driver, a GPU or the package."""
    try:
        import pynvml  # type: ignore[import-untyped]

        pynvml.nvmlInit()
        return pynvml
    except Exception as exc:  # nothing to report
        log.debug("NVML is not available: %s", exc)
        return None


def gpu_memory(nvml: Any = None) -> list[dict[str, Any]]:
    """Each NVIDIA GPU's memory: ``{"index", "name", "total", "used", "free"}`` (bytes), from
    NVML; ``[]`` without one. ``nvml``: the ``pynvml`` module to use (default: the real one)."""
    lib = nvml if nvml is not None else _nvml()
    if lib is None:
        return []
    out = []
    try:
        for index in range(lib.nvmlDeviceGetCount()):
            handle = lib.nvmlDeviceGetHandleByIndex(index)
            name = lib.nvmlDeviceGetName(handle)
            info = lib.nvmlDeviceGetMemoryInfo(handle)
            out.append({"index": index, "name": name.decode() if isinstance(name, bytes) else str(name),
                        "total": int(info.total), "used": int(info.used), "free": int(info.free)})
    except Exception as exc:  # a device fell off the bus: report the rest, never fail a scrape
        log.warning("reading GPU memory through NVML failed: %s", exc)
    return out


class _GpuCollector:
    def __init__(self, nvml: Any = None) -> None:
        self.nvml = nvml

    def collect(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        devices = gpu_memory(self.nvml)
        if not devices:
            return
        used = GaugeMetricFamily("vortex_gpu_memory_used_bytes", "GPU memory in use (all processes)",
                                 labels=["device", "name"])
        total = GaugeMetricFamily("vortex_gpu_memory_total_bytes", "GPU memory", labels=["device", "name"])
        for d in devices:
            used.add_metric([f"cuda:{d['index']}", d["name"]], d["used"])
            total.add_metric([f"cuda:{d['index']}", d["name"]], d["total"])
        yield used
        yield total


_GPUS = _GpuCollector()


def watch_pool(executor: Any) -> None:
    """Count the deaths of ``executor``'s workers (``vortex_worker_restarts_total``) and report its
    workers' arenas at each scrape, once per pool."""
    pool = getattr(executor, "pool", None)
    supervisor = getattr(pool, "supervisor", None)
    if supervisor is None or id(supervisor) in _WATCHED:
        return
    _WATCHED.add(id(supervisor))
    counter = _metrics()["restarts"]
    supervisor.death_listeners.append(lambda worker: counter.inc())
    if not _POOLS.supervisors:
        REGISTRY.register(_POOLS)
    _POOLS.supervisors.append(supervisor)


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


# ---- traces ----------------------------------------------------------------------------------

_TRACER: Any = None
_TRACER_LOCK = threading.Lock()


def tracing() -> bool:
    return bool(os.environ.get("VORTEX_TRACES", "").strip())


class JsonLinesExporter:
    """An OpenTelemetry span exporter appending one JSON object per span to a file (O_APPEND:
    the kernel and its workers write to one file)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Any) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        lines = []
        for span in spans:
            ctx, parent = span.get_span_context(), span.parent
            lines.append(json.dumps({
                "name": span.name, "trace_id": f"{ctx.trace_id:032x}", "span_id": f"{ctx.span_id:016x}",
                "parent_id": f"{parent.span_id:016x}" if parent is not None else None,
                "start": span.start_time, "end": span.end_time, "pid": os.getpid(),
                "attributes": dict(span.attributes or {}),
                "status": span.status.status_code.name}, default=str) + "\n")
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, "".join(lines).encode())
        finally:
            os.close(fd)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def tracer() -> Any:
    """This process's tracer (``None`` when ``VORTEX_TRACES`` is unset or opentelemetry missing)."""
    global _TRACER
    target = os.environ.get("VORTEX_TRACES", "").strip()
    if not target:
        return None
    with _TRACER_LOCK:
        if _TRACER is None:
            try:
                from opentelemetry.sdk.resources import Resource
                from opentelemetry.sdk.trace import TracerProvider
                from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
            except ImportError:
                logging.getLogger("vortex_jupyter").warning(
                    "VORTEX_TRACES is set but opentelemetry-sdk is not installed: no traces")
                _TRACER = False
                return None
            provider = TracerProvider(resource=Resource.create({"service.name": "vortex-jupyter"}))
            if target == "otlp":
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

                provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
            else:
                provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(target)))  # type: ignore[arg-type]
            _TRACER = provider.get_tracer("vortex_jupyter")
        return _TRACER or None


@contextlib.contextmanager
def run_span(run_id: str, origin: str) -> Iterator[None]:
    """The kernel's ``vortex.run`` span, current while the run executes (nothing when off)."""
    t = tracer() if tracing() else None
    if t is None:
        yield
        return
    with t.start_as_current_span("vortex.run", attributes={"vortex.run_id": run_id, "vortex.origin": origin}):
        yield


def traceparent() -> str:
    """The current span's W3C ``traceparent`` (``""`` without tracing)."""
    if not tracing():
        return ""
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent", "")


@contextlib.contextmanager
def node_span(parent: str, node: str, node_type: str, key: str) -> Iterator[None]:
    """In a worker: ``vortex.node`` (child of the kernel's run span) around a node, with the
    function's ``vortex.execute`` span inside (nothing when the batch carries no trace)."""
    t = tracer() if parent else None
    if t is None:
        yield
        return
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    ctx = TraceContextTextMapPropagator().extract({"traceparent": parent})
    attrs = {"vortex.node": node, "vortex.type": node_type, "vortex.key": key, "vortex.pid": os.getpid()}
    with t.start_as_current_span("vortex.node", context=ctx, attributes=attrs), \
            t.start_as_current_span("vortex.execute", attributes={"vortex.node": node}):
        yield
