"""A document's room on the server (``lab/ydoc.py``) drops what takes it over its size limit."""

from __future__ import annotations

import json

from pycrdt import Doc, Map

from vortex_jupyter.canvas.limits import Limits
from vortex_jupyter.lab.ydoc import YVortex

FLOW = {"schema_version": 1, "nodes": [
    {"id": "a", "type": "IntAdd", "params": {"a": 1, "b": 2}, "pos": [0, 0]},
    {"id": "b", "type": "IntAdd", "params": {"b": 10}, "pos": [300, 0]}],
    "edges": [{"src": "a", "src_output": 0, "dst": "b", "dst_input": "a"}]}
LIMIT = 64 * 1024


def room() -> YVortex:
    server = YVortex()
    server.set(json.dumps(FLOW))
    server.limits = Limits(max_doc_bytes=LIMIT)
    return server


def client_edit(server: YVortex, edit: object) -> tuple[Doc, bytes]:
    """A client's replica of the room, and the update of one edit it makes."""
    client = Doc()
    client.apply_update(server.ydoc.get_update())
    state = client.get_state()
    edit(client)  # type: ignore[operator]
    return client, client.get_update(state)


def test_a_change_that_takes_the_room_over_its_limit_is_dropped_and_not_saved() -> None:
    server = room()
    small = len(server.ydoc.get_update())

    def flood(doc: Doc) -> None:
        nodes, meta = doc.get("nodes", type=Map), doc.get("meta", type=Map)
        with doc.transaction():
            nodes["a"]["params"]["b"] = 3  # a legitimate edit in the same change: dropped too
            for i in range(8):
                nodes[f"big{i}"] = Map({"type": "PrimitiveString", "x": 0.0, "y": 0.0,
                                        "params": Map({"value": "z" * 20_000})})
            meta["junk"] = "m" * 10_000

    client, update = client_edit(server, flood)
    repairs: list[bytes] = []
    server.ydoc.observe(lambda event: repairs.append(event.update))
    server.ydoc.apply_update(update)
    assert server.repair_now() > 0
    assert len(server.ydoc.get_update()) < small + 4096
    nodes = server.ydoc.get("nodes", type=Map)
    assert sorted(nodes.keys()) == ["a", "b"] and "b" not in nodes["a"]["params"]
    assert "junk" not in server.ydoc.get("meta", type=Map)
    saved = server.get()
    assert "zzzz" not in saved and "big0" not in saved
    for update in repairs[1:]:  # the client gets the drop like any repair
        client.apply_update(update)
    assert client.get("nodes", type=Map).to_py() == nodes.to_py()


def test_changes_within_the_limit_stay() -> None:
    server = room()

    def edit(doc: Doc) -> None:
        nodes = doc.get("nodes", type=Map)
        with doc.transaction():
            nodes["a"]["params"]["b"] = 3
            nodes["s"] = Map({"type": "PrimitiveString", "x": 0.0, "y": 0.0, "params": Map({"value": "y" * 20_000})})

    _client, update = client_edit(server, edit)
    server.ydoc.apply_update(update)
    assert server.repair_now() == 0
    saved = json.loads(server.get())
    assert [n["id"] for n in saved["nodes"]] == ["a", "b", "s"] and saved["nodes"][0]["params"]["b"] == 3


def test_a_file_larger_than_the_limit_still_loads_and_takes_moves() -> None:
    """The file is the user's: only what clients add is held to the limit."""
    server = YVortex()
    server.limits = Limits(max_doc_bytes=LIMIT)
    big = {**FLOW, "nodes": [*FLOW["nodes"], {"id": "s", "type": "PrimitiveString",  # type: ignore[list-item]
                                               "params": {"value": "w" * 100_000}, "pos": [0, 300]}]}
    server.set(json.dumps(big))
    assert len(server.ydoc.get_update()) > LIMIT

    def move(doc: Doc) -> None:
        node = doc.get("nodes", type=Map)["s"]
        with doc.transaction():
            node["x"], node["y"] = 50.0, 60.0

    _client, update = client_edit(server, move)
    server.ydoc.apply_update(update)
    server.repair_now()
    node = server.ydoc.get("nodes", type=Map)["s"]
    assert (node["x"], node["y"]) == (50.0, 60.0) and len(node["params"]["value"]) == 100_000
