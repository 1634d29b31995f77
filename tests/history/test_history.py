"""The run history: a real SQLite file, real kernels (subprocesses), real crashes."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import vortex_jupyter as vx
from vortex_jupyter.history.db import MIGRATIONS, VERSION, History
from vortex_jupyter.history.table import HistoryTable

ROOT = Path(__file__).resolve().parents[2]


def _kernel(code: str, history: Path, **kw: object) -> subprocess.Popen[str]:
    env = {**os.environ, "VORTEX_HISTORY": str(history), "VORTEX_EXECUTOR": "inline",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)  # type: ignore[call-overload]


def test_every_run_is_recorded_with_its_nodes_graph_and_origin(tmp_path: Path) -> None:
    hist = History(tmp_path / "h.sqlite")
    g = vx.Graph()
    a = g.add("IntAdd", a=1, b=2)
    b = g.add("IntDivide", a=a.out(0), b=0)  # fails: division by zero
    g.add("IntAdd", a=5, b=5)
    from vortex_jupyter.history.recorder import Recorder

    g.on_event(Recorder(hist, g.model, origin="notebook", user="alice"))
    g.run(executor="inline", origin="notebook")
    g.run(executor="inline")  # second run: served from the cache
    table = HistoryTable(hist)
    assert [r.status for r in table] == ["failed", "failed"]
    second, first = table.rows
    assert (first.ran, first.failed, first.who, first.origin) == (2, 1, "alice", "notebook")
    nodes = {n["node"]: n for n in table.run(first.id).nodes}
    assert nodes[a.id]["status"] == "ok" and nodes[a.id]["elapsed"] is not None
    assert nodes[b.id]["status"] == "failed" and nodes[b.id]["code"] == "VE-500"
    assert "ZeroDivisionError" in (nodes[b.id]["traceback"] or "") + (nodes[b.id]["message"] or "")
    assert {n["status"] for n in table.run(second.id).nodes if n["node"] != b.id} == {"cached"}
    restored = table.graph(first.id)
    assert restored.to_json()["nodes"] == g.to_json()["nodes"]
    # one stored copy of the graph for both runs
    assert hist.query("SELECT count(*) FROM graphs")[0][0] == 1


def test_filters_arrow_and_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "h.sqlite"
    hist = History(path)
    graph = {"schema_version": 1, "nodes": {}}
    for i, (status, origin) in enumerate([("ok", "cli"), ("failed", "notebook"), ("ok", "canvas")]):
        hist.begin_run(f"r{i}", graph, origin=origin, started=1_700_000_000 + i * 86400, seeds={"3": i})
        hist.add_nodes(f"r{i}", [("3", "KSampler" if i != 1 else "IntAdd", status, 0.5, None, None, None, None)])
        hist.finish_run(f"r{i}", status, elapsed=0.5, stats={"ran": 1})
    table = HistoryTable(hist)
    assert [r.id for r in table] == ["r2", "r1", "r0"]
    assert [r.id for r in table.filter(status="ok")] == ["r2", "r0"]
    assert [r.id for r in table.filter(node_type="KSampler", origin="cli")] == ["r0"]
    assert [r.id for r in table.filter(since=1_700_000_000 + 86400)] == ["r2", "r1"]
    assert table.filter(status="ok").rows[0].seeds == {"3": 2}
    arrow = table.to_arrow()
    assert arrow.num_rows == 3 and arrow.column("status").to_pylist() == ["ok", "failed", "ok"]
    with pytest.raises(vx.VortexError, match="is not a time"):
        table.filter(since="yesterday-ish")
    monkeypatch.setenv("VORTEX_HISTORY", str(path))
    from vortex_jupyter.cli import main

    assert main(["history", "--status", "failed", "--json"]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == ["r1"]
    assert main(["history", "show", "r1"]) == 0
    assert "IntAdd" in capsys.readouterr().out


def test_a_kernel_killed_mid_run_leaves_an_interrupted_run_and_loses_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    proc = _kernel("""
        import time, vortex_jupyter as vx

        @vx.node
        def slow(x: int) -> int:
            time.sleep(x)
            return x

        g = vx.Graph()
        g.add("IntAdd", a=1, b=1)
        g.run()                                  # a whole run before the crash
        g.add("IntAdd", a=2, b=2)
        g.add("slow", x=60)
        print("started", flush=True)
        g.run()
    """, path)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "started"
    hist = History(path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the second run's finished node is flushed within ~0.5 s
        if hist.query("SELECT count(*) FROM nodes WHERE status = 'ok'")[0][0] >= 2:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert [r["status"] for r in hist.query("SELECT status FROM runs ORDER BY started")] == ["ok", "running"]
    reopened = History(path)  # the next process to open the file
    rows = reopened.query("SELECT status, finished FROM runs ORDER BY started")
    assert [r["status"] for r in rows] == ["ok", "interrupted"] and rows[1]["finished"] is not None
    assert reopened.query("SELECT count(*) FROM nodes WHERE status = 'ok'")[0][0] >= 2
    assert reopened.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_two_kernels_write_one_history_at_once(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    code = """
        import sys, vortex_jupyter as vx
        for i in range(25):
            g = vx.Graph()
            g.add("IntAdd", a=int(sys.argv[1]) * 1000 + i, b=1)
            assert not g.run().errors
        print("done", flush=True)
    """
    procs = [_kernel(code.replace("sys.argv[1]", str(k)), path) for k in (1, 2)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0 and "done" in out, err[-2000:]
    hist = History(path)
    assert [tuple(r) for r in hist.query("SELECT status, count(*) FROM runs GROUP BY status")] == [("ok", 50)]
    assert hist.query("SELECT count(DISTINCT pid) FROM runs")[0][0] == 2
    assert hist.query("SELECT count(*) FROM nodes")[0][0] == 50


def test_an_older_schema_is_migrated_and_keeps_its_runs(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    old = sqlite3.connect(path)
    old.executescript(MIGRATIONS[0])
    old.execute("PRAGMA user_version = 1")
    old.execute("INSERT INTO graphs VALUES ('g1', '{\"schema_version\": 1, \"nodes\": {}}')")
    old.execute("INSERT INTO runs (id, started, finished, status, graph, origin, ran) "
                "VALUES ('old', 1700000000, 1700000001, 'ok', 'g1', 'cli', 3)")
    old.commit()
    old.close()
    hist = History(path)
    assert hist.version() == VERSION == 5
    [row] = HistoryTable(hist).rows
    assert (row.id, row.status, row.ran, row.seeds) == ("old", "ok", 3, {})
    hist.begin_run("new", {"nodes": {}}, seeds={"1": 7})  # the new columns work
    assert HistoryTable(hist).rows[0].seeds == {"1": 7}
    newer = sqlite3.connect(path)
    newer.execute("PRAGMA user_version = 99")
    newer.commit()
    newer.close()
    with pytest.raises(vx.VortexError, match="newer than this"):
        History(path)


def test_retention_drops_the_oldest_runs_past_the_size_limit(tmp_path: Path) -> None:
    hist = History(tmp_path / "h.sqlite")
    for i in range(300):
        hist.begin_run(f"r{i:03d}", {"nodes": {"n": i}}, started=1_700_000_000 + i)
        hist.add_nodes(f"r{i:03d}", [("n", "IntAdd", "ok", 0.1, None, "x" * 2000, None, None)])
        hist.finish_run(f"r{i:03d}", "ok", elapsed=0.1, stats={}, )
    size = hist.size()
    deleted = hist.enforce_retention(size // 2)
    ids = [r.id for r in HistoryTable(hist)]
    assert deleted > 0 and hist.size() <= size // 2
    assert ids[0] == "r299" and "r000" not in ids and len(ids) == 300 - deleted
    assert hist.query("SELECT count(*) FROM nodes WHERE run_id NOT IN (SELECT id FROM runs)")[0][0] == 0
    assert hist.query("SELECT count(*) FROM graphs")[0][0] == len(ids)


def test_outputs_are_recorded_with_their_hash_and_a_thumbnail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    import hashlib

    monkeypatch.setenv("VORTEX_HISTORY", str(tmp_path / "h.sqlite"))
    monkeypatch.setenv("VORTEX_OUTPUT_DIR", str(tmp_path / "out"))
    g = vx.Graph()
    img = g.add("EmptyImage", width=32, height=16, batch_size=1, color=0xFF0000)
    g.add("SaveImage", images=img.out(0), filename_prefix="hist")
    run = g.run(executor="inline")
    assert not run.errors
    rec = vx.history().run(run.run_id)
    [out] = rec.outputs
    path = Path(out["path"])
    assert path.parent == tmp_path / "out" and out["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert out["thumbnail"].startswith(b"\x89PNG")
    [shown] = vx.history().gallery(limit=5)
    assert shown["path"] == out["path"] and shown["run_id"] == run.run_id


def test_an_unwritable_history_never_fails_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "not-a-db.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    monkeypatch.setenv("VORTEX_HISTORY", str(bad))
    g = vx.Graph()
    n = g.add("IntAdd", a=1, b=2)
    with pytest.warns(UserWarning, match="not recorded"):
        run = g.run(executor="inline")
    assert run.outputs[n.id][0] == 3


def test_diff_against_a_recorded_version_and_restore_it_in_place(tmp_path: Path) -> None:
    from vortex_jupyter.history.recorder import Recorder

    hist = History(tmp_path / "h.sqlite")
    g = vx.Graph()
    a = g.add("IntAdd", a=1, b=2)
    b = g.add("IntAdd", a=a.out(0), b=3)
    g.on_event(Recorder(hist, g.model))
    first = g.run(executor="inline")
    before = g.to_json()
    g[a.id].params["b"] = 20
    g.disconnect(b, "a")
    extra = g.add("IntMultiply", a=b.out(0), b=2)
    table = HistoryTable(hist)
    changes = table.diff(first.run_id, g)
    assert changes == [f"added node {extra.id} (IntMultiply)", f"node {a.id} (IntAdd): b 2 -> 20",
                       f"removed link {a.id}.0 -> {b.id}.a", f"added link {b.id}.0 -> {extra.id}.a"]
    seen: list[str] = []
    g.model.add_listener(lambda change: seen.append(change.kind))
    edits = table.restore(first.run_id, g)
    assert g.to_json() == before and edits == 4 and "node_removed" in seen  # link, node, param, link
    assert table.diff(first.run_id, g) == []
    again = g.run(executor="inline")  # the restored version is the cached one
    assert again.stats["ran"] == 0 and again.outputs[b.id][0] == 6


def test_nodes_on_workers_record_the_worker_device_and_memory(tmp_path: Path) -> None:
    from vortex_jupyter.history.recorder import Recorder
    from vortex_jupyter.workers.executor import WorkerExecutor

    hist = History(tmp_path / "h.sqlite")
    g = vx.Graph()
    n = g.add("IntAdd", a=1, b=2)
    g.on_event(Recorder(hist, g.model))
    ex = WorkerExecutor(devices=["cpu"], warm_start=False)
    try:
        run = g.run(executor=ex)
        worker = next(iter(ex.pool.supervisor.workers.values()))
    finally:
        ex.pool.close()
    [node] = HistoryTable(hist).run(run.run_id).nodes
    assert node["node"] == n.id and node["worker"] == worker.uid and node["device"] == "cpu"
    assert node["peak_memory"] > 10 * 2**20  # a python process with numpy: tens of MB at least
