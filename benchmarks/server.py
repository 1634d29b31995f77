"""``vortex serve`` under load: /prompt acceptance latency beside a bare Starlette echo, in one run.

    python benchmarks/server.py [--prompts 200] [--clients 10] [--watchers 100]

A real ``vortex serve`` subprocess on 127.0.0.1 (its own history file; its worker warmed up by
one prompt first) gets ``--prompts`` small prompts
(IntAdd -> PreviewAny, each with a different value) from ``--clients`` concurrent HTTP clients
while ``--watchers`` WebSocket clients follow progress (each prompt carries one watcher's
``client_id``, as ComfyUI routes messages). Then: every prompt must reach ``/history`` with status
success, each watcher must have seen each of its prompts' final ``executing`` (node null), and the p50/p95 of ``POST /prompt`` is printed beside the same
requests to a bare Starlette endpoint that only parses the JSON body and answers (uvicorn, same
machine, same client code). Target: p95 under 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

ECHO = textwrap.dedent("""
    import asyncio, json, sys, uvicorn
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def echo(request):
        body = json.loads(await request.body())
        return JSONResponse({"prompt_id": "x", "number": 0, "node_errors": {}, "n": len(body)})

    app = Starlette(routes=[Route("/prompt", echo, methods=["POST"])])
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)

    async def main():
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        print("listening on http://127.0.0.1:%d" % server.servers[0].sockets[0].getsockname()[1], flush=True)
        await task

    asyncio.run(main())
""")


def start(cmd: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        raise SystemExit(f"server did not start: {line!r}")
    return proc, line.strip().rsplit(" ", 1)[1]


def prompt(i: int) -> dict:
    return {"1": {"class_type": "IntAdd", "inputs": {"a": i, "b": 1}},
            "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}


async def post_all(url: str, n: int, clients: int, watchers: int = 0) -> list[float]:
    import httpx

    latencies: list[float] = []
    todo = list(range(n))
    # made before the clock starts: an httpx client builds an SSL context (~25 ms of blocking work
    # each), which would stall this loop while the first requests are in flight and count here
    pool = [httpx.AsyncClient(base_url=url, timeout=60) for _ in range(clients)]

    async def client(http: httpx.AsyncClient) -> None:
        async with http:
            while todo:
                i = todo.pop()
                t = time.perf_counter()
                body = {"prompt": prompt(i), **({"client_id": f"w{i % watchers}"} if watchers else {})}
                resp = await http.post("/prompt", content=json.dumps(body))
                latencies.append(time.perf_counter() - t)
                resp.raise_for_status()

    await asyncio.gather(*(client(http) for http in pool))
    return latencies


async def watch(url: str, sid: str, ready: asyncio.Event, expected: int, seen: list[int], stop: asyncio.Event) -> None:
    """A client following its own prompts (ComfyUI routes a prompt's messages to its client_id)."""
    import websockets

    done: set[str] = set()
    async with websockets.connect(url.replace("http", "ws") + f"/ws?clientId={sid}", max_size=None) as ws:
        await ws.recv()  # status
        ready.set()
        while not stop.is_set() and len(done) < expected:
            try:
                msg = await asyncio.wait_for(ws.recv(), 1.0)
            except asyncio.TimeoutError:
                continue
            if isinstance(msg, str):
                data = json.loads(msg)
                if data["type"] == "executing" and data["data"]["node"] is None:
                    done.add(data["data"]["prompt_id"])
    seen.append(len(done))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(args: argparse.Namespace) -> None:
    import httpx

    tmp = tempfile.mkdtemp(prefix="vortex-bench-server-")
    env = {**os.environ, "VORTEX_HISTORY": f"{tmp}/h.sqlite", "VORTEX_OUTPUT_DIR": f"{tmp}/out",
           "PYTHONPATH": str(ROOT)}
    ours, url = start([sys.executable, "-m", "vortex_jupyter.cli", "serve", "--port", "0"], env)
    echo, echo_url = start([sys.executable, "-c", ECHO], env)
    try:
        await post_all(echo_url, 20, 2)  # warm both up: the echo, and our worker (one prompt run to the end)
        await post_all(url, 1, 1)
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            while (await http.get("/prompt")).json()["exec_info"]["queue_remaining"]:
                await asyncio.sleep(0.1)
        stop, seen = asyncio.Event(), []
        readies = [asyncio.Event() for _ in range(args.watchers)]
        per = [len(range(i, args.prompts, args.watchers)) for i in range(args.watchers)]
        watchers = [asyncio.create_task(watch(url, f"w{i}", r, per[i], seen, stop)) for i, r in enumerate(readies)]
        await asyncio.gather(*(r.wait() for r in readies))
        t0 = time.perf_counter()
        ours_lat = await post_all(url, args.prompts, args.clients, args.watchers)
        accepted = time.perf_counter() - t0
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                remaining = (await http.get("/prompt")).json()["exec_info"]["queue_remaining"]
                if remaining == 0:
                    break
                await asyncio.sleep(0.2)
            drained = time.perf_counter() - t0
            history = (await http.get("/history")).json()
        await asyncio.wait_for(asyncio.gather(*watchers), 60)
        stop.set()
        echo_lat = await post_all(echo_url, args.prompts, args.clients)
    finally:
        ours.terminate()
        echo.terminate()
    ok = sum(1 for h in history.values() if h["status"]["status_str"] == "success") - 1  # (the warm-up's)
    print(f"{args.prompts} prompts from {args.clients} clients, {args.watchers} WebSocket watchers")
    print(f"  all accepted in {accepted:.2f} s; queue drained in {drained:.2f} s")
    print(f"  in /history with success: {ok}/{args.prompts}; watchers that saw each of their prompts end: "
          f"{len(seen)}/{args.watchers} ({sum(seen)} prompt ends seen)")
    print(f"\n{'POST /prompt':<34} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for name, lat in (("vortex serve (validate + queue)", ours_lat), ("bare Starlette echo", echo_lat)):
        print(f"{name:<34} {statistics.median(lat) * 1000:8.1f} {pct(lat, 0.95) * 1000:8.1f} {max(lat) * 1000:8.1f}")
    p95 = pct(ours_lat, 0.95)
    print(f"\np95 ratio to the echo: {p95 / pct(echo_lat, 0.95):.1f}x; under 50 ms: {'yes' if p95 < 0.05 else 'NO'}")
    if ok != args.prompts or len(seen) != args.watchers or sum(seen) != args.prompts:
        raise SystemExit("LOST prompts or messages")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=200)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--watchers", type=int, default=100)
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
