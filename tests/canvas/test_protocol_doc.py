"""The canvas protocol is written down (docs/canvas-protocol.md), every pointer to it resolves,
and it names every message type and doc root the two protocol files define."""

from __future__ import annotations

import re
import typing
from pathlib import Path

from vortex_jupyter.canvas import protocol, schema

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "canvas-protocol.md"
SOURCES = ["vortex_jupyter", "js/src", "js/test", "js/README.md", "benchmarks", "README.md", "docs", "tests"]


def _texts() -> dict[Path, str]:
    out = {}
    for entry in SOURCES:
        path = ROOT / entry
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.suffix in (".py", ".ts", ".md")]
        for f in files:
            if "node_modules" not in f.parts and f != Path(__file__):
                out[f] = f.read_text(encoding="utf-8", errors="replace")
    return out


def test_no_pointer_to_a_team_file_that_is_not_in_the_repository():
    stale = [f"{p.relative_to(ROOT)}" for p, text in _texts().items() if ".team/" in text]
    assert stale == []


def test_every_docs_path_named_in_the_code_exists():
    named = {m for text in _texts().values() for m in re.findall(r"docs/[\w.-]+\.md", text)}
    assert "docs/canvas-protocol.md" in named
    assert sorted(n for n in named if not (ROOT / n).is_file()) == []


def test_the_protocol_document_names_every_message_type_and_root():
    text = DOC.read_text(encoding="utf-8")
    kinds = [typing.get_args(typing.get_type_hints(cls)["t"])[0] for cls in vars(protocol).values()
             if isinstance(cls, type) and issubclass(cls, dict) and "t" in getattr(cls, "__annotations__", {})]
    assert {"hello", "y", "run", "cancel", "log", "event", "image", "error", "state", "specs"} <= set(kinds)
    for kind in kinds:
        assert f'"t": "{kind}"' in text or f"`{kind}`" in text, kind
    for root in (*protocol.ROOTS, *protocol.FOREIGN_ROOTS):
        assert f"{root}" in text, root
    for field in sorted(schema.NODE_FIELDS):
        assert field in text, field
    assert f"{protocol.MAX_UPDATE_BYTES // 2**20} MiB" in text
    for pointer in ("js/src/protocol.ts", "vortex_jupyter/canvas/protocol.py"):
        assert pointer in text
    assert "docs/canvas-protocol.md" in (ROOT / "vortex_jupyter/canvas/protocol.py").read_text()
    assert "docs/canvas-protocol.md" in (ROOT / "js/src/protocol.ts").read_text()
