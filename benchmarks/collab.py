"""Collaboration benchmark: edit propagation between simulated browsers, and doc update sizes.

(a) Through a document's room: a real ``jupyter_server`` with jupyter-collaboration serves a
    workflow file (20 IntAdd nodes, 10 edges) as a ``vortex`` room; N simulated browsers (a
    pycrdt ``Doc`` each, synced over its own tornado websocket, all in one asyncio loop) join
    it. One of them makes ``--edits`` param edits, and as many node moves (x and y of one node
    in one transaction, a drag frame), one after another: each waits until every other
    browser has applied the previous one. Baseline, interleaved with the edits: the same
    browser sends an awareness update (a cursor), which the room forwards without touching
    the doc.
(b) Through the kernel comm: a real ipykernel (this Python, started with jupyter_client)
    holds a ``vx.Graph`` of the same workflow; N simulated views each open a comm to
    ``vortex.canvas`` with the graph's MIME data over their own jupyter_client connection and
    sync a pycrdt ``Doc`` with the kernel (``canvas/sync.py``: every update is checked on a
    scratch replica, applied, mirrored to the model and relayed). Same edits. Baseline,
    interleaved: a comm target registered in the same kernel that sends every message on to
    the other open comms of its target, touching no doc, with a buffer of the same size.
(c) Sizes: the Yjs update, the y-websocket frame and the Jupyter comm message of one param
    edit and of one drag frame, from a browser-like replica (32-bit client id, steady state);
    then bytes per second of a 1-second drag at 60 pointer events per second, written on
    every pointer move (before) and at most every 100 ms plus the release (now: 11 writes;
    ``js/src/edit/pointer.ts``, tested by ``js/test/dragwrite.test.ts``).

Latency of an edit: from just before the editor's transaction until a peer's replica holds
the new value (its frame applied); "all" = until every other peer has it, "each" = every
peer's own arrival. All peers share one process and, with the server or kernel, the
machine's cores: the ratios to the baseline measured in the same run are the figures to
compare across machines, not the milliseconds. Each simulated view has its own kernel
connection and so decodes every IOPub message of the kernel (as each browser's kernel
websocket does): at 8 views that decoding, in this one process, is most of both figures.
The simulated browsers and the timed rounds are in ``_collab_peers.py``.

Run: ``python benchmarks/collab.py`` (100 edits of each kind at 2 and 8 peers), ``--quick``
(30 edits) or ``--edits N`` (a p95 of 100 samples moves by tens of percent between runs on a
shared machine; 500 steadies it). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from _collab_peers import (
    Peer,
    Series,
    Waiter,
    awareness_frame,
    edit_series,
    equals,
    run_rounds,
    seq_is,
    synced,
    workflow,
)
from pycrdt import create_sync_message, create_update_message

ROOT = Path(__file__).resolve().parents[1]
PEERS = (2, 8)
BROWSER_ID = 0x9E3779B9  # Yjs client ids are random uint32s
CANVAS_TARGET, ECHO_TARGET = "vortex.canvas", "vortex.bench.echo"
DRAG_EVENTS, DRAG_WRITES = 60, 11  # pointer events in one second; writes now (10 timed + release)


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * q))]


def _tail(log: Path) -> None:
    if log.exists():
        print(f"--- last lines of {log.name} ---\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)


# ---- (a) the server room -------------------------------------------------------------------
def _jupyter_server_class() -> Any:
    """``tests/lab/jupyter.py``'s ``JupyterServer`` (a real server with collaboration on)."""
    spec = importlib.util.spec_from_file_location("_vortex_bench_jupyter", ROOT / "tests" / "lab" / "jupyter.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.JupyterServer


async def _join_room(info: Any, room: str, session_id: str) -> tuple[Peer, Any, asyncio.Task[None]]:
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    url = info.ws(f"api/collaboration/room/{room}") + f"?sessionId={session_id}"
    conn = await websocket_connect(HTTPRequest(url, headers=info.headers()), max_message_size=1 << 30)

    def send(frame: bytes) -> None:
        conn.write_message(frame, binary=True)  # tornado queues it; a closed socket ends the pump

    peer = Peer(send)

    async def pump() -> None:
        while (message := await conn.read_message()) is not None:
            if isinstance(message, bytes):
                peer.on_frame(message)

    task = asyncio.create_task(pump())
    await conn.write_message(create_sync_message(peer.doc), binary=True)
    return peer, conn, task


async def room_at(info: Any, path: str, n: int, count: int) -> list[Series]:
    status, body = await asyncio.to_thread(info.request, "PUT", f"api/collaboration/session/{path}",
                                           {"format": "text", "type": "vortex"})
    if status not in (200, 201):
        raise RuntimeError(f"no collaboration session for {path} (HTTP {status}); is jupyter-collaboration installed?")
    joined = [await _join_room(info, f"text:vortex:{body['fileId']}", body.get("sessionId", "")) for _ in range(n)]
    peers = [peer for peer, _conn, _task in joined]
    try:
        await synced(peers)
        editor, others = peers[0], peers[1:]

        def cursor(i: int) -> bytes:
            return awareness_frame(editor.doc.client_id, 100 + i, {"user": {"name": "bench"}, "cursor": {"x": i, "y": i}})

        base = Series("room: awareness", lambda i: editor.send(cursor(i)),
                      lambda i: [(p, equals(cursor(i))) for p in others])
        series = [*edit_series("room", peers), base]
        await run_rounds(series, count)
        return series
    finally:
        for _peer, conn, task in joined:
            conn.close()
            task.cancel()
        await asyncio.sleep(0.2)


def bench_room(home: Path, count: int) -> dict[int, list[Series]]:
    server = _jupyter_server_class()(home / "server")
    try:
        server.start()
        (server.root / "bench.vortex.json").write_text(json.dumps(workflow(), indent=2))
        from vortex_jupyter.lab.server import ServerInfo

        info = ServerInfo(server.url, server.token, server.root)
        return {n: asyncio.run(room_at(info, "bench.vortex.json", n, count)) for n in PEERS}
    except Exception:
        _tail(server.log)
        raise
    finally:
        server.stop()


# ---- (b) the kernel comm -------------------------------------------------------------------
KERNEL_SETUP = """
import json
import vortex_jupyter as vx
from comm import get_comm_manager
from vortex_jupyter.lab.views import mime_data

if "_bench_graph" not in globals():  # once per kernel: one graph, one echo target
    _bench_graph = vx.load(json.loads({text!r}))
    _bench_mime = json.dumps(mime_data(_bench_graph))
    _bench_echo = []

def _bench_open(comm, _msg):
    def on_msg(msg):
        data, buffers = msg["content"]["data"], [bytes(b) for b in msg.get("buffers") or []]
        for other in list(_bench_echo):
            if other is not comm:
                other.send(data, buffers=buffers or None)
    _bench_echo.append(comm)
    comm.on_msg(on_msg)
    comm.on_close(lambda _m: comm in _bench_echo and _bench_echo.remove(comm))

get_comm_manager().register_target({echo!r}, _bench_open)
"""


def start_kernel(home: Path) -> Any:
    """An ipykernel of this Python (its own kernelspec, IPython dir and connection file)."""
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpecManager

    spec_dir = home / "kernels" / "vortex-bench"
    spec_dir.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec_dir / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "bench", "language": "python"}))
    km = KernelManager(kernel_name="vortex-bench", connection_file=str(home / "kernel-connection.json"),
                       kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(home / "kernels")]))
    env = {**os.environ, "IPYTHONDIR": str(home / "ipython"), "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    with (home / "kernel.log").open("wb") as log:
        km.start_kernel(env=env, cwd=str(home), stdout=log, stderr=subprocess.STDOUT)
    return km


class KernelView:
    """A view: its own kernel connection, a canvas comm with a ``Peer`` and an echo comm."""

    def __init__(self, kc: Any, mime: dict[str, Any]) -> None:
        self.kc, self.canvas, self.echo_id = kc, uuid.uuid4().hex, uuid.uuid4().hex
        self.peer = Peer(lambda frame: self.send(self.canvas, {"t": "y"}, [frame]))
        self.echo = Waiter()
        self.errors: list[Any] = []
        self.shell("comm_open", {"comm_id": self.canvas, "target_name": CANVAS_TARGET, "data": mime})
        self.shell("comm_open", {"comm_id": self.echo_id, "target_name": ECHO_TARGET, "data": {}})
        self.send(self.canvas, {"t": "hello"})
        self.send(self.canvas, {"t": "y"}, [create_sync_message(self.peer.doc)])
        self.task = asyncio.create_task(self.pump())

    def shell(self, msg_type: str, content: dict[str, Any], buffers: list[bytes] | None = None) -> None:
        msg = self.kc.session.msg(msg_type, content)
        msg["buffers"] = buffers or []
        self.kc.shell_channel.send(msg)

    def send(self, comm_id: str, data: dict[str, Any], buffers: list[bytes] | None = None) -> None:
        self.shell("comm_msg", {"comm_id": comm_id, "data": data}, buffers)

    async def pump(self) -> None:
        while True:
            msg = await self.kc.get_iopub_msg()
            if msg["msg_type"] != "comm_msg":
                continue
            content, buffers = msg["content"], msg.get("buffers") or []
            data = content.get("data") or {}
            if content["comm_id"] == self.canvas:
                if data.get("t") == "y" and buffers:
                    self.peer.on_frame(bytes(buffers[0]))
                elif data.get("t") == "error":
                    self.errors.append(data)
            elif content["comm_id"] == self.echo_id:
                self.echo.notify(data)

    def close(self) -> None:
        for comm_id in (self.canvas, self.echo_id):
            self.shell("comm_close", {"comm_id": comm_id, "data": {}})
        self.task.cancel()


async def _client(km: Any) -> Any:
    from jupyter_client.asynchronous import AsyncKernelClient

    kc = AsyncKernelClient()
    kc.load_connection_info(km.get_connection_info())
    kc.start_channels(shell=True, iopub=True, stdin=False, hb=False, control=False)
    await kc.wait_for_ready(timeout=60)
    return kc


async def _setup_kernel(kc: Any) -> dict[str, Any]:
    code = KERNEL_SETUP.format(text=json.dumps(workflow()), echo=ECHO_TARGET)
    reply = await kc.execute(code, reply=True, timeout=60, user_expressions={"mime": "_bench_mime"})
    content = reply["content"]
    if content["status"] != "ok":
        raise RuntimeError(f"kernel setup failed: {content.get('ename')}: {content.get('evalue')}")
    result = content["user_expressions"]["mime"]
    return dict(json.loads(ast.literal_eval(result["data"]["text/plain"])))  # the repr of a JSON string


async def kernel_at(km: Any, n: int, count: int, echo_payload: bytes) -> list[Series]:
    clients = [await _client(km) for _ in range(n)]
    views: list[KernelView] = []
    try:
        mime = await _setup_kernel(clients[0])
        views = [KernelView(kc, mime) for kc in clients]
        peers = [v.peer for v in views]
        try:
            await synced(peers)
        except asyncio.TimeoutError:
            raise RuntimeError(f"views did not sync with the kernel: {[v.errors for v in views]}") from None
        editor, others = views[0], views[1:]
        base = Series("kernel: comm echo", lambda i: editor.send(editor.echo_id, {"t": "y", "seq": i}, [echo_payload]),
                      lambda i: [(v.echo, seq_is(i)) for v in others])
        series = [*edit_series("kernel", peers), base]
        try:
            await run_rounds(series, count)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; the kernel's errors: {[v.errors for v in views]}") from None
        return series
    finally:
        for view in views:
            view.close()
        await asyncio.sleep(0.2)
        for kc in clients:
            kc.stop_channels()


def bench_kernel(home: Path, count: int, echo_payload: bytes) -> dict[int, list[Series]]:
    home.mkdir(parents=True)
    km = start_kernel(home)
    try:
        return {n: asyncio.run(kernel_at(km, n, count, echo_payload)) for n in PEERS}
    except Exception:
        _tail(home / "kernel.log")
        raise
    finally:
        km.shutdown_kernel(now=True)


# ---- (c) sizes -----------------------------------------------------------------------------
def sizes() -> dict[str, tuple[int, int, int]]:
    """Median sizes (update, y frame, Jupyter comm_msg) of 20 edits of each kind made by a
    browser-like replica of the doc the server loads, after one warm-up edit."""
    from jupyter_client.session import Session

    from vortex_jupyter.lab.ydoc import YVortex

    server = YVortex()
    server.set(json.dumps(workflow()))
    browser = Peer(lambda _frame: None, client_id=BROWSER_ID)
    browser.doc.apply_update(server.ydoc.get_update())
    updates: list[bytes] = []
    browser.doc.observe(lambda event: updates.append(event.update))
    session = Session(key=uuid.uuid4().hex.encode(), username="bench")
    out = {}
    for name, edit in (("param edit", browser.set_param), ("drag frame", browser.drag_frame)):
        updates.clear()
        for i in range(21):
            edit(i)
        update = sorted(updates[1:], key=len)[10]
        frame = create_update_message(update)
        msg = session.msg("comm_msg", {"comm_id": uuid.uuid4().hex, "data": {"t": "y"}})
        out[name] = (len(update), len(frame), sum(map(len, session.serialize(msg))) + len(frame))
    return out


# ---- report --------------------------------------------------------------------------------
def latency_table(results: dict[str, dict[int, list[Series]]], count: int) -> None:
    head = (f"{'path: message':<22}{'N':>3}{'all p50':>9}{'all p95':>9}{'each p50':>10}{'each p95':>10}   "
            f"{'baseline':<19}{'all p50':>8}{'all p95':>9}{'x base p50':>12}{'x base p95':>12}")
    print(f"propagation latency, {count} messages of each kind one after another (ms)")
    print(head)
    print("-" * len(head))
    for by_n in results.values():
        for n, series in by_n.items():
            *edits, base = series
            b50, b95 = _pct(base.all, .5), _pct(base.all, .95)
            for s in edits:
                a50, a95 = _pct(s.all, .5), _pct(s.all, .95)
                print(f"{s.name:<22}{n:>3}{a50 * 1e3:>9.2f}{a95 * 1e3:>9.2f}{_pct(s.each, .5) * 1e3:>10.2f}"
                      f"{_pct(s.each, .95) * 1e3:>10.2f}   {base.name.split(': ')[1]:<19}{b50 * 1e3:>8.2f}"
                      f"{b95 * 1e3:>9.2f}{a50 / b50:>11.2f}x{a95 / b95:>11.2f}x")
    print("'all' = until every other peer applied it, 'each' = one peer's arrival (N-1 per message);\n"
          "baselines, interleaved with the edits: the room forwarding an awareness update (no doc),\n"
          "a bare comm target in the same kernel sending each message on to the other comms")


def size_table(sz: dict[str, tuple[int, int, int]]) -> None:
    print(f"\n{'doc update per edit':<34}{'Yjs update':>12}{'y frame':>10}{'comm_msg':>10}")
    for name, (update, frame, comm) in sz.items():
        print(f"  {name:<32}{update:>10} B{frame:>8} B{comm:>8} B")
    print("  (median of 20 steady-state edits by a replica with a 32-bit client id, as a browser's;\n"
          "  drag frame = x and y (doubles) of one node in one transaction; comm_msg = the y frame as a\n"
          "  Jupyter comm message between server and kernel, ZMQ frames. pycrdt writes the integer\n"
          "  param as a float32 where a browser's Yjs writes a varint: 2 B less there, 28 B with yjs 13.6)")
    update, frame, comm = sz["drag frame"]
    print(f"\n{'1-second drag, 60 pointer events/s':<34}{'writes':>8}{'update B/s':>12}{'frame B/s':>11}"
          f"{'comm B/s':>10}{'room out, N=8':>15}")
    for label, writes in (("before: a write per move", DRAG_EVENTS), ("now: every 100 ms + release", DRAG_WRITES)):
        print(f"  {label:<32}{writes:>8}{writes * update:>12,}{writes * frame:>11,}{writes * comm:>10,}"
              f"{writes * frame * 8:>15,}")
    print(f"  now / before: {DRAG_WRITES / DRAG_EVENTS:.2f}x (the room sends every update to all N peers, the"
          f" sender included)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="30 messages of each kind instead of 100")
    ap.add_argument("--edits", type=int, default=None, help="messages of each kind per N")
    args = ap.parse_args()
    count = args.edits or (30 if args.quick else 100)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the finally blocks stop the server and kernel
    sz = sizes()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vortex-collab-") as tmp:
        results = {"room": bench_room(Path(tmp), count),
                   "kernel": bench_kernel(Path(tmp) / "kernel", count, bytes(sz["param edit"][1]))}
    print(f"{os.cpu_count()} cores; peers in one asyncio loop; server/kernel in their own processes; "
          f"{time.perf_counter() - t0:.0f} s")
    latency_table(results, count)
    size_table(sz)


if __name__ == "__main__":
    main()
