"""``vortex serve`` speaks ComfyUI's API: a real server subprocess on 127.0.0.1, real clients.

The documented client flow (queue a prompt over HTTP, follow ``/ws`` until ``executing`` with
``node: null``, fetch ``/history`` and ``/view``) written here from ComfyUI's script examples,
and ``comfy-api-simplified`` from PyPI, unchanged; the PNG fetched has the pixels and prompt of
the one ``vortex run`` makes for the same prompt. Then hostile and malformed requests, each a
clear 4xx with a VE code, the server still serving after each.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
PROMPT = json.loads((ROOT / "examples" / "txt2img.json").read_text())


class Server:
    def __init__(self, tmp: Path, *args: str) -> None:
        self.tmp = tmp
        env = {**os.environ, "VORTEX_HISTORY": str(tmp / "h.sqlite"), "VORTEX_OUTPUT_DIR": str(tmp / "out"),
               "VORTEX_INPUT_DIR": str(tmp / "in"), "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        self.proc = subprocess.Popen([sys.executable, "-m", "vortex_jupyter.cli", "serve", "--port", "0", *args],
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert "listening on" in line, line + self.proc.stderr.read() if self.proc.stderr else line
        self.url = line.strip().rsplit(" ", 1)[1]
        self.port = int(self.url.rsplit(":", 1)[1])

    def request(self, path: str, body: Any = None, *, raw: bytes | None = None, method: str | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, Any]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=120) as resp:
                payload = resp.read()
                status = resp.status
        except urllib.error.HTTPError as err:
            payload, status = err.read(), err.code
        try:
            return status, json.loads(payload) if payload else None
        except ValueError:
            return status, payload

    def alive(self) -> bool:
        status, body = self.request("/prompt")
        return status == 200 and "exec_info" in body

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("serve"))
    yield srv
    srv.close()


async def _follow(srv: Server, prompt: dict[str, Any]) -> tuple[str, list[dict[str, Any]], list[bytes]]:
    """ComfyUI's websockets_api_example.py flow: connect with a clientId, queue, follow to the end."""
    import websockets

    client_id = str(uuid.uuid4())
    messages: list[dict[str, Any]] = []
    previews: list[bytes] = []
    async with websockets.connect(f"ws://127.0.0.1:{srv.port}/ws?clientId={client_id}") as ws:
        first = json.loads(await ws.recv())
        assert first["type"] == "status" and first["data"]["sid"] == client_id
        status, resp = await asyncio.to_thread(srv.request, "/prompt", {"prompt": prompt, "client_id": client_id})
        assert status == 200 and resp["node_errors"] == {}, resp
        prompt_id = resp["prompt_id"]
        while True:
            out = await asyncio.wait_for(ws.recv(), 300)
            if isinstance(out, bytes):
                previews.append(out)
                continue
            msg = json.loads(out)
            messages.append(msg)
            if msg["type"] == "executing" and msg["data"]["node"] is None and msg["data"]["prompt_id"] == prompt_id:
                return prompt_id, messages, previews


def test_the_documented_client_flow_gets_the_cli_s_image(server: Server, tmp_path: Path) -> None:
    prompt_id, messages, previews = asyncio.run(_follow(server, PROMPT))
    kinds = [m["type"] for m in messages if m["type"] != "status"]
    assert kinds[:2] == ["execution_start", "execution_cached"] and kinds[-2:] == ["execution_success", "executing"]
    executing = [m["data"]["node"] for m in messages if m["type"] == "executing"]
    assert executing[:-1] == ["4", "5", "6", "7", "3", "8", "9"] and executing[-1] is None
    progress = [m["data"] for m in messages if m["type"] == "progress"]
    assert [p["value"] for p in progress] == [1, 2, 3, 4] and {p["max"] for p in progress} == {4}
    assert previews == []  # ComfyUI's default --preview-method none: no binary frames
    [executed] = [m["data"] for m in messages if m["type"] == "executed"]
    assert executed["node"] == "9" and executed["output"]["images"][0]["type"] == "output"

    status, history = server.request(f"/history/{prompt_id}")
    entry = history[prompt_id]
    assert entry["status"]["status_str"] == "success" and entry["status"]["completed"] is True
    assert entry["prompt"][1] == prompt_id and entry["prompt"][2] == PROMPT and entry["prompt"][4] == ["9"]
    image = entry["outputs"]["9"]["images"][0]
    status, png = server.request(f"/view?filename={image['filename']}&subfolder={image['subfolder']}&type=output")
    assert status == 200 and png[:8] == b"\x89PNG\r\n\x1a\n"

    cli = subprocess.run([sys.executable, "-m", "vortex_jupyter.cli", "run", str(ROOT / "examples" / "txt2img.json"),
                          "-o", str(tmp_path / "cli"), "-q"], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert cli.returncode == 0, cli.stderr[-2000:]
    [made] = (tmp_path / "cli").glob("*.png")
    with Image.open(io.BytesIO(png)) as ours, Image.open(made) as theirs:
        assert np.array_equal(np.asarray(ours), np.asarray(theirs))
        assert json.loads(ours.text["prompt"]) == json.loads(theirs.text["prompt"])

    status, listing = server.request("/history?max_items=1")
    assert status == 200 and list(listing) == [prompt_id]


def test_comfy_api_simplified_from_pypi_runs_unchanged(server: Server) -> None:
    from comfy_api_simplified import ComfyApiWrapper, ComfyWorkflowWrapper

    api = ComfyApiWrapper(server.url)
    wf = ComfyWorkflowWrapper(str(ROOT / "examples" / "txt2img.json"))
    wf.set_node_param("KSampler", "seed", 7)
    images = api.queue_and_wait_images(wf, "Save Image")
    [(name, data)] = images.items()
    assert name.endswith(".png") and data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(data)) as im:
        assert json.loads(im.text["prompt"])["3"]["inputs"]["seed"] == 7


def test_vortex_run_against_a_running_server(server: Server, tmp_path: Path) -> None:
    """``vortex run FILE --server URL``: queued on the server, followed, images downloaded."""
    proc = subprocess.run([sys.executable, "-m", "vortex_jupyter.cli", "run", str(ROOT / "examples" / "txt2img.json"),
                           "--server", server.url, "--set", "3.seed=11", "-o", str(tmp_path / "got")],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert "running node 3" in proc.stderr and f"on {server.url}" in proc.stdout
    [png] = (tmp_path / "got").glob("*.png")
    with Image.open(png) as im:
        assert json.loads(im.text["prompt"])["3"]["inputs"]["seed"] == 11
    bad = subprocess.run([sys.executable, "-m", "vortex_jupyter.cli", "run", str(ROOT / "examples" / "txt2img.json"),
                          "--server", "http://127.0.0.1:9"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert bad.returncode == 2 and "VE-1004" in bad.stderr and "vortex serve" in bad.stderr


def test_metrics_count_the_server_s_runs(server: Server) -> None:
    status, text = server.request("/metrics")
    assert status == 200
    text = text.decode() if isinstance(text, bytes) else str(text)
    ok = [line for line in text.splitlines() if line.startswith("vortex_runs_total{") and 'status="ok"' in line]
    assert ok and float(ok[0].rsplit(" ", 1)[1]) >= 1 and 'origin="server"' in ok[0]
    assert 'vortex_node_seconds_count{type="KSampler"}' in text and "vortex_queue_depth 0.0" in text
    arena = [line for line in text.splitlines() if line.startswith("vortex_arena_bytes{")]
    assert arena and max(float(line.rsplit(" ", 1)[1]) for line in arena) > 0  # the worker's /dev/shm segments
    assert 'vortex_workers{pack=""}' in text


def test_queue_object_info_and_system_stats(server: Server) -> None:
    status, info = server.request("/object_info")
    assert status == 200 and info["KSampler"]["input"]["required"]["seed"][0] == "INT"
    assert server.request("/object_info/KSampler")[1].keys() == {"KSampler"}
    assert server.request("/object_info/NoSuchNode")[1] == {}
    status, stats = server.request("/system_stats")
    assert status == 200 and stats["system"]["ram_total"] > 0 and stats["devices"]
    status, queue = server.request("/queue")
    assert status == 200 and set(queue) == {"queue_running", "queue_pending"}
    assert server.request("/free", {"unload_models": True})[0] == 200


def _send_huge(srv: Server, chunked: bool, total: int = 100 * 2**20) -> tuple[int, Any]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
    conn.putrequest("POST", "/prompt")
    conn.putheader("Content-Type", "application/json")
    conn.putheader(*(("Transfer-Encoding", "chunked") if chunked else ("Content-Length", str(total))))
    conn.endheaders()
    block = b"x" * 2**20
    try:  # send until the server has answered and stopped reading
        for _ in range(total // len(block)):
            conn.send(b"%x\r\n%s\r\n" % (len(block), block) if chunked else block)
    except OSError:
        pass
    resp = conn.getresponse()
    body = json.loads(resp.read())
    conn.close()
    return resp.status, body


def test_bad_requests_get_clear_4xx_and_the_server_goes_on(server: Server) -> None:
    status, body = server.request("/prompt", raw=b"{not json")
    assert status == 400 and body["error"]["code"] == "VE-1001" and server.alive()
    status, body = server.request("/prompt", {"nothing": 1})
    assert status == 400 and body["error"]["type"] == "no_prompt" and server.alive()
    bad = {"1": {"class_type": "NoSuchNode", "inputs": {}}, "2": {"class_type": "SaveImage",
                                                                  "inputs": {"images": ["1", 0]}}}
    status, body = server.request("/prompt", {"prompt": bad})
    assert status == 400 and body["error"]["type"] == "prompt_outputs_failed_validation"
    assert body["node_errors"]["1"]["class_type"] == "NoSuchNode"
    assert body["node_errors"]["1"]["errors"][0]["type"] == "VE-101" and server.alive()
    for chunked in (False, True):  # a 100 MB body, announced or streamed: refused before it is read
        status, body = _send_huge(server, chunked)
        assert status == 413 and body["error"]["code"] == "VE-1002" and server.alive(), (chunked, body)
    for path in ("/view?filename=../../../../etc/passwd", "/view?filename=passwd&subfolder=../../../../etc",
                 "/view?filename=/etc/passwd"):
        status, body = server.request(path)
        assert status == 400 and body["error"]["code"] == "VE-700", (path, body)
    status, body = server.request("/view?filename=nothing.png")
    assert status == 404 and body["error"]["code"] == "VE-1004"
    assert server.request("/view?filename=x.png&type=secrets")[0] == 400
    boundary = "vxboundary"
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"subfolder\"\r\n\r\n../../..\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"evil.png\"\r\n"
            f"Content-Type: image/png\r\n\r\nPNGDATA\r\n--{boundary}--\r\n").encode()
    status, body = server.request("/upload/image", raw=form,
                                  headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert status == 400 and body["error"]["code"] == "VE-700" and server.alive()
    assert not (server.tmp / "evil.png").exists()
    good = form.replace(b"../../..", b"mine")
    status, body = server.request("/upload/image", raw=good,
                                  headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert status == 200 and body == {"name": "evil.png", "subfolder": "mine", "type": "input"}
    assert (server.tmp / "in" / "mine" / "evil.png").read_bytes() == b"PNGDATA"


def test_preview_frames_with_preview_method_auto(tmp_path: Path) -> None:
    srv = Server(tmp_path, "--preview-method", "auto")
    try:
        prompt = json.loads(json.dumps(PROMPT))
        prompt["3"]["inputs"]["steps"] = 2
        _, _, previews = asyncio.run(_follow(srv, prompt))
    finally:
        srv.close()
    assert len(previews) == 2  # one per sampler step: >II event 1 (preview image), 1 JPEG / 2 PNG, the image
    for frame in previews:
        assert frame[:4] == b"\0\0\0\x01"
        with Image.open(io.BytesIO(frame[8:])) as im:
            assert im.format == {b"\0\0\0\x01": "JPEG", b"\0\0\0\x02": "PNG"}[frame[4:8]] and im.size[0] > 0


def test_beyond_loopback_a_token_is_required(tmp_path: Path) -> None:
    refused = subprocess.run([sys.executable, "-m", "vortex_jupyter.cli", "serve", "--host", "0.0.0.0", "--port", "0"],
                             capture_output=True, text=True, timeout=60,
                             env={**os.environ, "VORTEX_HISTORY": str(tmp_path / "h.sqlite"), "PYTHONPATH": str(ROOT)})
    assert refused.returncode == 2 and "VE-1003" in refused.stderr and "--token" in refused.stderr
    srv = Server(tmp_path, "--host", "0.0.0.0", "--token", "s3cret")
    try:
        srv.url = f"http://127.0.0.1:{srv.port}"
        status, body = srv.request("/prompt")
        assert status == 401 and body["error"]["code"] == "VE-1003"
        assert srv.request("/prompt", headers={"Authorization": "Bearer wrong"})[0] == 401
        assert srv.request("/prompt", headers={"Authorization": "Bearer s3cret"})[0] == 200
        assert srv.request("/prompt?token=s3cret")[0] == 200
    finally:
        srv.close()


def test_partial_execution_targets_run_only_the_chosen_outputs(server: Server) -> None:
    """ComfyUI's "queue selected output nodes": ``partial_execution_targets`` names the outputs
    to run; the other outputs (and what only they need) do not run; a list without an output
    node is ComfyUI's ``prompt_no_outputs``; a malformed one a 400 naming the field."""
    prompt = {"1": {"class_type": "IntAdd", "inputs": {"a": 1, "b": 2}},
              "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
              "3": {"class_type": "IntAdd", "inputs": {"a": 10, "b": 20}},
              "4": {"class_type": "PreviewAny", "inputs": {"source": ["3", 0]}}}
    prompt_id, messages, _ = asyncio.run(_follow_partial(server, prompt, ["4", "1"]))
    executing = [m["data"]["node"] for m in messages if m["type"] == "executing" and m["data"]["node"]]
    assert set(executing) == {"3", "4"}
    status, history = server.request(f"/history/{prompt_id}")
    entry = history[prompt_id]
    assert entry["status"]["status_str"] == "success" and entry["prompt"][4] == ["4"]
    assert set(entry["outputs"]) == {"4"}

    dangling = {**prompt, "5": {"class_type": "IntAdd", "inputs": {"a": 7, "b": 7}}}  # feeds no output node
    prompt_id, messages, _ = asyncio.run(_follow_partial(server, dangling, None))
    executing = [m["data"]["node"] for m in messages if m["type"] == "executing" and m["data"]["node"]]
    assert "5" not in executing  # as ComfyUI: only what the output nodes need runs
    assert sorted(server.request(f"/history/{prompt_id}")[1][prompt_id]["prompt"][4]) == ["2", "4"]

    status, body = server.request("/prompt", {"prompt": prompt, "partial_execution_targets": ["1", "3"]})
    assert status == 400 and body["error"]["type"] == "prompt_no_outputs"
    status, body = server.request("/prompt", {"prompt": prompt, "partial_execution_targets": "4"})
    assert status == 400 and "partial_execution_targets" in json.dumps(body) and "VE-1001" in json.dumps(body)
    assert server.alive()


async def _follow_partial(srv: Server, prompt: dict[str, Any], targets: list[str] | None
                          ) -> tuple[str, list[dict[str, Any]], list[bytes]]:
    import websockets

    client_id = str(uuid.uuid4())
    messages: list[dict[str, Any]] = []
    async with websockets.connect(f"ws://127.0.0.1:{srv.port}/ws?clientId={client_id}") as ws:
        await ws.recv()
        body: dict[str, Any] = {"prompt": prompt, "client_id": client_id}
        if targets is not None:
            body["partial_execution_targets"] = targets
        status, resp = await asyncio.to_thread(srv.request, "/prompt", body)
        assert status == 200 and resp["node_errors"] == {}, resp
        while True:
            out = await asyncio.wait_for(ws.recv(), 120)
            if isinstance(out, bytes):
                continue
            msg = json.loads(out)
            messages.append(msg)
            if msg["type"] == "executing" and msg["data"]["node"] is None and msg["data"]["prompt_id"] == resp["prompt_id"]:
                return resp["prompt_id"], messages, []
