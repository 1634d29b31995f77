"""``/api/v1``: graph documents, validate, run, events (SSE), and the OpenAPI document that
describes them (generated from the same msgspec types that check the requests)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vortex_jupyter.history.db import History

API_PROMPT = {"1": {"class_type": "IntAdd", "inputs": {"a": 1, "b": 2}},
              "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from starlette.testclient import TestClient

    from vortex_jupyter.server.app import create_app

    monkeypatch.setenv("VORTEX_EXECUTOR", "inline")
    monkeypatch.setenv("VORTEX_OUTPUT_DIR", str(tmp_path / "out"))
    app = create_app(history=History(tmp_path / "h.sqlite"))
    with TestClient(app) as c:
        yield c


def test_the_openapi_document_validates_and_names_every_route(client: Any) -> None:
    from openapi_spec_validator import validate

    doc = client.get("/api/v1/openapi.json").json()
    validate(doc)
    assert doc["openapi"] == "3.1.0"
    starlette = client.app.app  # (Guard -> Starlette)
    served = {(m.lower(), r.path) for r in starlette.routes if r.path.startswith("/api/v1")
              for m in getattr(r, "methods", None) or () if m != "HEAD"}
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert served == documented
    assert doc["components"]["schemas"]["GraphIn"]["required"] == ["graph"]


def test_every_documented_example_is_accepted(client: Any) -> None:
    doc = client.get("/api/v1/openapi.json").json()
    created = client.post("/api/v1/graphs", json={"name": "base", "graph": API_PROMPT}).json()
    tried = 0
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            media = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            if "example" not in media:
                continue
            url = path.replace("{id}", created["id"])
            resp = client.request(method.upper(), url, json=media["example"])
            expected = next(code for code in op["responses"] if code.startswith("2"))
            assert resp.status_code == int(expected), (method, path, resp.text)
            tried += 1
    assert tried == 3


def test_documents_crud_with_versions(client: Any) -> None:
    resp = client.post("/api/v1/graphs", json={"name": "adder", "graph": API_PROMPT})
    assert resp.status_code == 201
    doc = resp.json()
    assert doc["version"] == 1 and {n["type"] for n in doc["graph"]["nodes"]} == {"IntAdd", "PreviewAny"}
    assert [d["id"] for d in client.get("/api/v1/graphs").json()] == [doc["id"]]
    patched = client.patch(f"/api/v1/graphs/{doc['id']}", json={"params": {"1": {"a": 40}}, "if_version": 1}).json()
    assert patched["version"] == 2
    assert next(n for n in patched["graph"]["nodes"] if n["id"] == "1")["params"]["a"] == 40
    stale = client.patch(f"/api/v1/graphs/{doc['id']}", json={"name": "late", "if_version": 1})
    assert stale.status_code == 409 and stale.json()["error"]["code"] == "VE-1005"
    unknown = client.patch(f"/api/v1/graphs/{doc['id']}", json={"nmae": "typo"})
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "VE-1001"
    assert "nmae" in unknown.json()["error"]["message"]
    bad_node = client.patch(f"/api/v1/graphs/{doc['id']}", json={"params": {"99": {"a": 1}}})
    assert bad_node.status_code == 400 and "no node '99'" in bad_node.json()["error"]["message"]
    assert client.delete(f"/api/v1/graphs/{doc['id']}").status_code == 204
    gone = client.get(f"/api/v1/graphs/{doc['id']}")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "VE-1004"


def test_validate_run_and_follow_the_events(client: Any) -> None:
    broken = client.post("/api/v1/graphs", json={"graph": {"1": {"class_type": "NoSuchNode", "inputs": {}}}}).json()
    result = client.post(f"/api/v1/graphs/{broken['id']}/validate").json()
    assert result["ok"] is False and result["problems"][0]["code"] == "VE-101"
    refused = client.post(f"/api/v1/graphs/{broken['id']}/run", json={})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "VE-100"

    doc = client.post("/api/v1/graphs", json={"graph": API_PROMPT}).json()
    assert client.post(f"/api/v1/graphs/{doc['id']}/validate").json() == {"ok": True, "problems": []}
    run = client.post(f"/api/v1/graphs/{doc['id']}/run", json={"priority": 2})
    assert run.status_code == 202 and run.json()["status"] in ("queued", "running", "ok")
    run_id = run.json()["id"]
    kinds = []
    with client.stream("GET", f"/api/v1/runs/{run_id}/events") as stream:
        for line in stream.iter_lines():
            if line.startswith("event: "):
                kinds.append(line[7:])
    assert kinds[0] == "run_started" and kinds[-2:] == ["run_finished", "end"] and "node_finished" in kinds
    final = client.get(f"/api/v1/runs/{run_id}").json()
    assert final["status"] == "ok" and {n["node"]: n["status"] for n in final["nodes"]} == {"1": "ok", "2": "ok"}
    assert "2" in final["outputs"]
    assert client.get("/api/v1/runs/999999").status_code == 404
    assert client.get("/api/v1/runs/abc").json()["error"]["code"] == "VE-1001"
    body = json.dumps({"graph": API_PROMPT, "extra": 1})
    assert client.post("/api/v1/graphs", content=body).status_code == 400


def test_a_run_of_some_outputs_runs_only_what_they_need(client: Any) -> None:
    two = {**API_PROMPT, "3": {"class_type": "IntAdd", "inputs": {"a": 10, "b": 20}},
           "4": {"class_type": "PreviewAny", "inputs": {"source": ["3", 0]}}}
    doc = client.post("/api/v1/graphs", json={"graph": two}).json()
    missing = client.post(f"/api/v1/graphs/{doc['id']}/run", json={"outputs": ["99"]})
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "VE-1001"
    assert "no node '99'" in missing.json()["error"]["message"]
    run_id = client.post(f"/api/v1/graphs/{doc['id']}/run", json={"outputs": ["4"]}).json()["id"]
    with client.stream("GET", f"/api/v1/runs/{run_id}/events") as stream:
        for _ in stream.iter_lines():
            pass
    final = client.get(f"/api/v1/runs/{run_id}").json()
    assert final["status"] == "ok" and {n["node"] for n in final["nodes"]} == {"3", "4"}
    assert set(final["outputs"]) == {"4"}
