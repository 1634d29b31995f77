"""Metrics and JSON logs (vortex_jupyter/telemetry.py): the notebook path without a server."""

from __future__ import annotations

import io
import json
import logging

import pytest

import vortex_jupyter as vx
from vortex_jupyter import telemetry


def _sample(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and ",".join(sorted(line[len(name) + 1:line.index("}")].split(","))) == want:
            return float(line.rsplit(" ", 1)[1])
        if not labels and line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_notebook_runs_count_into_the_same_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VORTEX_METRICS", "1")
    before = telemetry.metrics_text()[0].decode()
    g = vx.Graph()
    a = g.add("IntAdd", a=1, b=2)
    g.add("IntDivide", a=a.out(0), b=0)
    g.run(executor="inline", origin="notebook")
    g.run(executor="inline", origin="notebook")
    text = telemetry.metrics_text()[0].decode()

    def delta(name: str, **labels: str) -> float:
        return _sample(text, name, **labels) - _sample(before, name, **labels)

    assert delta("vortex_runs_total", status="failed", origin="notebook") == 2
    assert delta("vortex_node_executions_total", type="IntAdd", status="ok") == 1
    assert delta("vortex_node_executions_total", type="IntAdd", status="cached") == 1
    assert delta("vortex_node_executions_total", type="IntDivide", status="failed") == 2
    assert delta("vortex_node_seconds_count", type="IntAdd") == 1


def test_json_logs_carry_the_run_and_node(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VORTEX_LOG_FORMAT", "json")
    telemetry.configure_logging()
    logger = logging.getLogger("vortex_jupyter")
    stream = io.StringIO()
    logger.handlers[0].setStream(stream)  # type: ignore[attr-defined]
    try:
        logging.getLogger("vortex_jupyter.server").warning("node %s slow", "3", extra={"run_id": "r1", "node": "3"})
    finally:
        logger.handlers[:] = []
        logger.propagate = True
    [line] = stream.getvalue().splitlines()
    record = json.loads(line)
    assert record["message"] == "node 3 slow" and record["level"] == "warning"
    assert record["run_id"] == "r1" and record["node"] == "3" and record["logger"] == "vortex_jupyter.server"


def test_a_worker_s_node_spans_are_children_of_the_kernel_s_run_span(tmp_path, monkeypatch) -> None:
    """run (kernel) -> node (worker) -> execute (worker): one trace across processes, the
    context carried in the worker protocol's Execute message."""
    import os

    from vortex_jupyter.workers.executor import WorkerExecutor

    spans_file = tmp_path / "spans.jsonl"
    monkeypatch.setenv("VORTEX_TRACES", str(spans_file))
    monkeypatch.setattr(telemetry, "_TRACER", None)
    g = vx.Graph()
    a = g.add("IntAdd", a=1, b=2)
    g.add("IntMultiply", a=a.out(0), b=3)
    ex = WorkerExecutor(devices=["cpu"], warm_start=False)
    try:
        run = g.run(executor=ex)
    finally:
        ex.pool.close()
    assert not run.errors
    spans = [json.loads(line) for line in spans_file.read_text().splitlines()]
    [root] = [s for s in spans if s["name"] == "vortex.run"]
    nodes = [s for s in spans if s["name"] == "vortex.node"]
    executes = [s for s in spans if s["name"] == "vortex.execute"]
    assert root["pid"] == os.getpid() and root["attributes"]["vortex.run_id"] == run.run_id
    assert sorted(n["attributes"]["vortex.type"] for n in nodes) == ["IntAdd", "IntMultiply"]
    assert {n["parent_id"] for n in nodes} == {root["span_id"]} and {n["trace_id"] for n in spans} == {root["trace_id"]}
    assert all(n["pid"] != os.getpid() for n in nodes)  # in the worker
    assert sorted(e["parent_id"] for e in executes) == sorted(n["span_id"] for n in nodes)


class _FakeNvml:
    """NVML's calls for two GPUs: this machine has none, and NVML cannot be made to report one
    (the real module is used on a lent GPU machine by scripts/gpu_check.sh)."""

    class _Info:
        def __init__(self, total: int, used: int) -> None:
            self.total, self.used, self.free = total, used, total - used

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetName(self, handle: int) -> bytes:
        return b"NVIDIA H100" if handle == 0 else b"NVIDIA L4"

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> _Info:
        if handle == 1:
            raise RuntimeError("GPU is lost")
        return self._Info(80 << 30, 3 << 30)


def test_gpu_memory_per_device_parses_as_prometheus_text_and_a_lost_gpu_fails_no_scrape() -> None:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    registry = CollectorRegistry()
    registry.register(telemetry._GpuCollector(_FakeNvml()))
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    used = families["vortex_gpu_memory_used_bytes"].samples
    assert [(s.labels, s.value) for s in used] == [({"device": "cuda:0", "name": "NVIDIA H100"}, 3 << 30)]
    assert families["vortex_gpu_memory_total_bytes"].samples[0].value == 80 << 30


def test_gpu_series_are_there_exactly_when_nvml_sees_a_gpu() -> None:
    gpus = telemetry.gpu_memory()  # none on a CPU machine; the real NVML on a lent GPU machine
    text = telemetry.metrics_text()[0].decode()
    assert "vortex_runs_total" in text
    assert ("vortex_gpu_memory_used_bytes{" in text) == bool(gpus)
    for g in gpus:
        assert 0 < g["used"] <= g["total"] and f'device="cuda:{g["index"]}"' in text
