"""The ``vortex`` command, run as a real subprocess: good runs, and every class of bad input."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MATH = ROOT / "examples" / "math.json"


def vortex(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vortex_jupyter.cli", *args], capture_output=True, text=True,
                          timeout=240, cwd=cwd, env={**os.environ, **(env or {})}, check=False)


def native(nodes: list[dict], edges: list[dict] | None = None, **extra) -> dict:
    return {"schema_version": 1, "nodes": nodes, "edges": edges or [], **extra}


def outputs_by_id(stdout: str) -> dict[str, str]:
    """The timings table's last column by node id (rows name nodes "Title (#id)" / "Type #id")."""
    rows = {}
    for line in stdout.splitlines()[1:]:
        found = re.search(r"#([^\s)]+)", line)
        if found:
            rows[found.group(1)] = line.split()[-1]
    return rows


def test_run_prints_a_timings_table_with_outputs_and_exits_zero(tmp_path):
    proc = vortex("run", str(MATH), "--executor", "inline", "-o", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:4] == ["node", "type", "status", "ms"]
    row = next(line for line in lines if line.startswith("+ 100 (#plus) "))
    assert row.split()[-1] == "142"
    assert "ok: ran 7, cached 0, failed 0" in proc.stderr
    assert "7/7" in proc.stderr  # the progress bar reached the end


def test_progress_table_and_failures_name_nodes_by_title_or_type_and_id(tmp_path):
    proc = vortex("run", str(MATH), "--executor", "inline")
    assert proc.returncode == 0, proc.stderr
    progress = [line for line in proc.stderr.splitlines() if line.startswith("[")]
    assert any(line.endswith(" a * b (#product) ok") for line in progress), progress  # titled
    assert any(line.endswith(" IntToFloat #half ok") for line in progress), progress  # untitled
    names = [line.split("  ")[0] for line in proc.stdout.splitlines()[1:]]
    assert "+ 100 (#plus)" in names and "StringLength #length" in names, names
    graph = native([{"id": "d", "type": "IntDivide", "params": {"a": 1, "b": 0}}])
    path = tmp_path / "g.json"
    path.write_text(json.dumps(graph))
    proc = vortex("run", str(path), "--executor", "inline")
    assert "IntDivide #d: [VE-" in proc.stderr and "IntDivide #d FAILED VE-" in proc.stderr


def test_set_overrides_params_parsing_json_values():
    proc = vortex("run", str(MATH), "--executor", "inline", "--set", "plus.b=1000", "--set", "text.f_string=x{a}")
    assert proc.returncode == 0, proc.stderr
    rows = outputs_by_id(proc.stdout)
    assert rows["plus"] == "1042" and rows["text"] == "'x1042'"


def test_run_writes_saved_images_into_the_output_dir(tmp_path):
    from PIL import Image

    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.new("RGB", (8, 8), (255, 0, 0)).save(inputs / "red.png")
    graph = native([
        {"id": "load", "type": "LoadImage", "params": {"image": "red.png"}},
        {"id": "inv", "type": "ImageInvert", "params": {}},
        {"id": "save", "type": "SaveImage", "params": {"filename_prefix": "inverted"}},
    ], [{"src": "load", "src_output": 0, "dst": "inv", "dst_input": "image"},
        {"src": "inv", "src_output": 0, "dst": "save", "dst_input": "images"}])
    path = tmp_path / "g.json"
    path.write_text(json.dumps(graph))
    out = tmp_path / "out"
    proc = vortex("run", str(path), "--executor", "inline", "-o", str(out), env={"VORTEX_INPUT_DIR": str(inputs)})
    assert proc.returncode == 0, proc.stderr
    written = sorted(out.rglob("*.png"))
    assert written and f"wrote {written[0]}" in proc.stdout
    assert Image.open(written[0]).getpixel((0, 0))[:3] == (0, 255, 255)

    # -i/--input-dir does what VORTEX_INPUT_DIR does; a missing folder is a VE-700, no traceback
    out2 = tmp_path / "out2"
    proc = vortex("run", str(path), "--executor", "inline", "-i", str(inputs), "-o", str(out2),
                  env={"VORTEX_INPUT_DIR": str(tmp_path / "elsewhere")})
    assert proc.returncode == 0, proc.stderr
    assert len(list(out2.rglob("*.png"))) == 1
    proc = vortex("run", str(path), "-i", str(tmp_path / "missing"))
    assert proc.returncode == 2 and "VE-700" in proc.stderr and "Traceback" not in proc.stderr


def test_validate_ok_and_json_listing():
    proc = vortex("validate", str(MATH))
    assert proc.returncode == 0 and "ok (7 nodes, 7 edges)" in proc.stdout
    proc = vortex("validate", str(MATH), "--json")
    assert json.loads(proc.stdout) == {"ok": True, "problems": []}


def test_validate_lists_every_problem_with_codes(tmp_path):
    graph = native([
        {"id": "1", "type": "NoSuchNode", "params": {}},
        {"id": "2", "type": "IntAdd", "params": {"a": "text"}},
    ])
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(graph))
    proc = vortex("validate", str(path), "--json")
    assert proc.returncode == 1
    problems = json.loads(proc.stdout)["problems"]
    assert {"VE-101", "VE-104"} <= {p["code"] for p in problems}
    assert all(p["message"] for p in problems)


def test_validate_takes_an_input_dir_and_reports_a_missing_input_image_as_ve_117(tmp_path):
    from PIL import Image

    graph = native([{"id": "load", "type": "LoadImage", "params": {"image": "red.png"}},
                    {"id": "inv", "type": "ImageInvert", "params": {}}],
                   [{"src": "load", "src_output": 0, "dst": "inv", "dst_input": "image"}])
    path = tmp_path / "g.json"
    path.write_text(json.dumps(graph))
    empty, images = tmp_path / "empty", tmp_path / "images"
    empty.mkdir()
    images.mkdir()
    Image.new("RGB", (4, 4), (255, 0, 0)).save(images / "red.png")
    env = {"VORTEX_INPUT_DIR": str(empty)}
    proc = vortex("validate", str(path), "--json", env=env)
    assert proc.returncode == 1
    [problem] = json.loads(proc.stdout)["problems"]
    assert (problem["code"], problem["node"], problem["port"]) == ("VE-117", "load", "image")
    assert "'red.png' not found" in problem["message"] and "-i DIR" in problem["hint"]
    proc = vortex("validate", str(path), env=env)
    assert proc.returncode == 1 and "VE-117 load.image" in proc.stdout and "fix:" in proc.stdout
    for flag in ("-i", "--input-dir"):  # exactly as `vortex run` takes it
        proc = vortex("validate", str(path), flag, str(images), env=env)
        assert proc.returncode == 0 and "ok (2 nodes, 1 edges)" in proc.stdout, proc.stdout + proc.stderr
    proc = vortex("validate", str(path), "-i", str(tmp_path / "missing"))
    assert proc.returncode == 2 and "VE-700" in proc.stderr and "Traceback" not in proc.stderr
    proc = vortex("validate", str(path), "-i", str(tmp_path / "missing"), "--json")
    assert proc.returncode == 2 and json.loads(proc.stdout)["problems"][0]["code"] == "VE-700"


def test_nodes_lists_types_as_text_and_json():
    proc = vortex("nodes")
    assert proc.returncode == 0 and "IntAdd(" in proc.stdout
    listing = json.loads(vortex("nodes", "--json").stdout)
    assert listing["IntAdd"]["outputs"][0]["type"] == "INT"


def _bad_inputs() -> dict[str, tuple[str, str]]:
    """name -> (file text, VE code expected in stderr)."""
    big = "x" * (10 * 1024 * 1024)
    cycle = native([{"id": "a", "type": "IntAdd", "params": {}}, {"id": "b", "type": "IntAdd", "params": {}}],
                   [{"src": "a", "src_output": 0, "dst": "b", "dst_input": "a"},
                    {"src": "b", "src_output": 0, "dst": "a", "dst_input": "a"}])
    return {
        "malformed json": ('{"schema_version": 1, "nodes": [', "VE-200"),
        "unknown field": (json.dumps(native([], bogus=1)), "VE-200"),
        "NaN": ('{"schema_version": 1, "nodes": [{"id": "a", "type": "PrimitiveFloat", '
                '"params": {"value": NaN}}], "edges": []}', "VE-106"),  # loads, reported on a.value
        "infinity via overflow": ('{"schema_version": 1, "nodes": [{"id": "a", "type": "PrimitiveFloat", '
                                  '"params": {"value": 1e999}}], "edges": []}', "VE-"),
        "huge int literal": ('{"schema_version": 1, "nodes": [{"id": "a", "type": "PrimitiveInt", '
                             '"params": {"value": ' + "9" * 5000 + '}}], "edges": []}', "VE-"),
        "int beyond 64 bits": (json.dumps(native([{"id": "a", "type": "PrimitiveInt",
                                                   "params": {"value": 2**70}}])), "VE-114"),
        "cycle": (json.dumps(cycle), "VE-111"),
        "10 MB string": (json.dumps(native([{"id": "a", "type": "PrimitiveString",
                                             "params": {"value": big}}])), "VE-"),
        "unknown node type": (json.dumps(native([{"id": "a", "type": "Nope", "params": {}}])), "VE-101"),
        "top level list": ("[1, 2]", "VE-200"),
        "traversal filename": (json.dumps(native([{"id": "a", "type": "LoadImage",
                                                   "params": {"image": "../../etc/passwd"}}])), "VE-"),
        "absolute filename": (json.dumps(native([{"id": "a", "type": "LoadImage",
                                                  "params": {"image": "/etc/passwd"}}])), "VE-"),
    }


@pytest.mark.parametrize("case", sorted(_bad_inputs()))
def test_bad_input_exits_nonzero_with_a_ve_code_and_no_traceback(case, tmp_path):
    text, code = _bad_inputs()[case]
    path = tmp_path / "input.json"
    path.write_text(text)
    proc = vortex("run", str(path), "--executor", "inline", "-o", str(tmp_path / "out"))
    assert proc.returncode != 0
    assert code in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert len(proc.stderr) < 20_000  # readable: no 10 MB value echoed back


def test_traversal_in_save_prefix_is_refused(tmp_path):
    from PIL import Image

    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.new("RGB", (4, 4)).save(inputs / "a.png")
    graph = native([
        {"id": "load", "type": "LoadImage", "params": {"image": "a.png"}},
        {"id": "save", "type": "SaveImage", "params": {"filename_prefix": "../../escape"}},
    ], [{"src": "load", "src_output": 0, "dst": "save", "dst_input": "images"}])
    path = tmp_path / "g.json"
    path.write_text(json.dumps(graph))
    out = tmp_path / "out"
    proc = vortex("run", str(path), "--executor", "inline", "-o", str(out), env={"VORTEX_INPUT_DIR": str(inputs)})
    assert proc.returncode == 1
    assert "save: [VE-700]" in proc.stderr and "'..'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("escape*")) and not list(tmp_path.parent.glob("escape*"))


def test_bad_set_arguments_are_reported_without_traceback():
    for arg in ("novalue", "nonode=1", "missing.b=1"):
        proc = vortex("run", str(MATH), "--executor", "inline", "--set", arg)
        assert proc.returncode == 2, (arg, proc.stderr)
        assert "VE-" in proc.stderr and "Traceback" not in proc.stderr


def test_missing_file_is_a_format_error():
    proc = vortex("run", "/nonexistent/graph.json")
    assert proc.returncode == 2 and "VE-200" in proc.stderr


def test_a_failing_node_exits_one_and_names_the_node(tmp_path):
    graph = native([{"id": "d", "type": "IntDivide", "params": {"a": 1, "b": 0}}])
    path = tmp_path / "g.json"
    path.write_text(json.dumps(graph))
    proc = vortex("run", str(path), "--executor", "inline")
    assert proc.returncode in (1, 2), proc.stderr
    assert "d" in proc.stderr and "VE-" in proc.stderr and "Traceback" not in proc.stderr


def test_run_with_the_default_executor_uses_real_workers_and_gives_the_same_table():
    proc = vortex("run", str(MATH))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = outputs_by_id(proc.stdout)
    assert rows["plus"] == "142" and rows["length"] == "25"


def test_validate_json_reports_unreadable_files_as_a_problem(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{")
    proc = vortex("validate", str(path), "--json")
    assert proc.returncode == 2
    assert json.loads(proc.stdout)["problems"][0]["code"] == "VE-200"


@pytest.mark.parametrize(("args", "env", "named"), [
    (["--node-timeout", "0"], {}, "node_timeout"),
    (["--node-timeout", "-1"], {}, "node_timeout"),
    ([], {"VORTEX_NODE_TIMEOUT": "soon"}, "VORTEX_NODE_TIMEOUT"),
    ([], {"VORTEX_CACHE_BYTES": "lots"}, "VORTEX_CACHE_BYTES"),
])
def test_bad_timeouts_and_cache_bounds_are_refused_by_name_before_running(args, env, named):
    proc = vortex("run", str(MATH), "--executor", "inline", *args, env=env)
    assert proc.returncode == 2, proc.stderr
    assert named in proc.stderr and "fix:" in proc.stderr and "Traceback" not in proc.stderr
    assert "internal error" not in proc.stderr and "ran 0" not in proc.stderr


def test_a_malformed_api_link_is_a_validation_problem_not_a_crash(tmp_path):
    prompt = {"1": {"class_type": "PrimitiveInt", "inputs": {"value": 3}},
              "2": {"class_type": "StringFormat", "inputs": {"f_string": "{a}", "values.a": ["1"]}},
              "3": {"class_type": "ImageInvert", "inputs": {"image": ["1"]}}}
    path = tmp_path / "prompt.json"
    path.write_text(json.dumps(prompt))
    proc = vortex("validate", str(path))
    assert proc.returncode == 1
    assert "VE-104 3.image" in proc.stdout and "malformed link" in proc.stdout
    assert "2.values.a" not in proc.stdout  # a '*' input may take any value, lists included
