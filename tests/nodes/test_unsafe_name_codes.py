"""An unsafe input file name is VE-700 (``PathError``'s code) at validation, in ``vortex validate``
and when the node runs; not VE-116 "unsupported combination of settings" (issue 10, item 6)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import vortex_jupyter as vx
from vortex_jupyter.errors import PathError, ValidationError
from vortex_jupyter.graph.model import GraphModel
from vortex_jupyter.graph.validate import validate
from vortex_jupyter.nodes.registry import REGISTRY

LOADERS = [("LoadImage", {}), ("LoadImageMask", {"channel": "alpha"})]
UNSAFE = [("../secret.png", "'..' components"), ("/etc/passwd", "absolute paths"), ("a\\b.png", "backslash"),
          ("linked/x.png", "symlink")]


@pytest.fixture
def input_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder, outside = tmp_path / "input", tmp_path / "outside"
    folder.mkdir()
    outside.mkdir()
    Image.new("RGB", (2, 2), "red").save(outside / "x.png")
    os.symlink(outside, folder / "linked")
    Image.new("RGB", (2, 2), "red").save(folder / "ok.png")
    monkeypatch.setenv("VORTEX_INPUT_DIR", str(folder))
    return folder


@pytest.mark.parametrize(("node", "extra"), LOADERS)
@pytest.mark.parametrize(("name", "why"), UNSAFE)
def test_validation_reports_an_unsafe_loader_file_name_as_ve_700_naming_the_field_and_fix(input_dir, node, extra,
                                                                                         name, why):
    model = GraphModel()
    model.add_node(node, {"image": name, **extra}, id="load")
    model.add_node(node, {"image": "ok.png", **extra}, id="fine")
    [problem] = validate(model, REGISTRY.lookup)
    assert (problem.code, problem.node, problem.port) == ("VE-700", "load", "image")
    assert why in problem.message and repr(name) in problem.message and str(input_dir) in problem.message
    assert problem.hint and ("relative name" in problem.hint or "copy the file" in problem.hint)


def test_the_node_raises_the_same_ve_700_when_run_anyway(input_dir):
    g = vx.Graph()
    load = g.add("LoadImage", image="ok.png")
    run = g.run(executor="inline")
    assert not run.errors
    load.params["image"] = "../secret.png"
    with pytest.raises(ValidationError) as info:
        g.run(executor="inline")
    assert [p.code for p in info.value.problems] == ["VE-700"]
    with pytest.raises(PathError, match=r"'\.\.' components"):
        REGISTRY.get("LoadImage").fn(image="../secret.png")


def test_vortex_validate_prints_ve_700_for_an_unsafe_image_name(input_dir, tmp_path):
    graph = {"schema_version": 1, "nodes": [{"id": "load", "type": "LoadImage", "params": {"image": "../secret.png"}}],
             "edges": []}
    path = tmp_path / "g.json"
    path.write_text(json.dumps(graph))
    env = {**os.environ, "VORTEX_INPUT_DIR": str(input_dir)}
    cmd = [sys.executable, "-m", "vortex_jupyter.cli", "validate", str(path)]
    proc = subprocess.run([*cmd, "--json"], capture_output=True, text=True, timeout=240, env=env, check=False)
    assert proc.returncode == 1, proc.stderr
    [problem] = json.loads(proc.stdout)["problems"]
    assert (problem["code"], problem["node"], problem["port"]) == ("VE-700", "load", "image")
    assert "'..' components" in problem["message"] and problem["hint"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, check=False)
    assert proc.returncode == 1 and "VE-700 load.image" in proc.stdout and "VE-116" not in proc.stdout


@pytest.mark.parametrize("mode", [2, 4], ids=["muted", "bypassed"])
def test_a_muted_or_bypassed_loader_with_an_unsafe_name_is_not_a_problem(input_dir, mode):
    """It does not run, so its own check is skipped (as it was when the answer was VE-116)."""
    model = GraphModel()
    model.add_node("LoadImage", {"image": "../secret.png"}, id="load")
    model.set_mode("load", mode)
    assert validate(model, REGISTRY.lookup) == []
