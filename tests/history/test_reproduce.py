"""``vortex reproduce``: an image made by ``vortex run`` re-made in another process, and told apart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

ROOT = Path(__file__).resolve().parents[2]


def _vortex(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "vortex_jupyter.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("reproduce")
    proc = _vortex("run", str(ROOT / "examples" / "txt2img.json"), "-o", str(tmp / "out"), "-q", cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [png] = (tmp / "out").glob("*.png")
    return png


def _rewrite(src: Path, dst: Path, edit_record=None, edit_pixels=None) -> Path:
    with Image.open(src) as im:
        text = dict(im.text)
        pixels = np.asarray(im.convert("RGB")).copy()
    if edit_record is not None:
        record = json.loads(text["vortex"])
        edit_record(record)
        text["vortex"] = json.dumps(record)
    if edit_pixels is not None:
        edit_pixels(pixels)
    info = PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    Image.fromarray(pixels).save(dst, pnginfo=info)
    return dst


def test_the_image_records_how_it_was_made(made: Path) -> None:
    with Image.open(made) as im:
        record = json.loads(im.text["vortex"])
        prompt = json.loads(im.text["prompt"])
    assert record["node"] == "9" and set(record["keys"]) == set(prompt)
    env = record["environment"]
    assert env["torch"] and env["diffusers"] and env["vortex-jupyter"] and env["threads"] >= 1
    assert len(record["models"]["ckpt_name=vortex-tiny"]) == 64
    assert record["seeds"] == {"3": prompt["3"]["inputs"]["seed"]}


def test_reproduce_in_another_process_is_bit_identical(made: Path, tmp_path: Path) -> None:
    proc = _vortex("reproduce", str(made), "-o", str(tmp_path / "again"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "environment: as recorded" in proc.stdout
    assert "result: bit-identical" in proc.stdout
    [again] = (tmp_path / "again").glob("*.png")
    with Image.open(made) as a, Image.open(again) as b:
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_a_changed_environment_and_changed_pixels_are_reported_precisely(made: Path, tmp_path: Path) -> None:
    def older(record: dict) -> None:
        record["environment"]["diffusers"] = "0.0.1"
        record["environment"]["threads"] = 64
        record["environment"]["packs"] = {"comfyui-foo": {"version": "1.2.0", "lock": "abc"}}
        record["models"]["ckpt_name=vortex-tiny"] = "0" * 64
        record["keys"]["3"] = "f" * 64

    def brighter(pixels: np.ndarray) -> None:
        pixels[0, 0] = np.minimum(pixels[0, 0].astype(int) + 7, 255)

    changed = _rewrite(made, tmp_path / "changed.png", older, brighter)
    proc = _vortex("reproduce", str(changed), "-o", str(tmp_path / "again"), cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr[-3000:]
    out = proc.stdout
    here = json.loads(Image.open(made).text["vortex"])["environment"]
    assert f"diffusers: recorded '0.0.1', here '{here['diffusers']}'" in out
    assert f"threads: recorded 64, here {here['threads']}" in out
    assert "node pack comfyui-foo: recorded 1.2.0, not installed here" in out
    assert "model ckpt_name=vortex-tiny: recorded sha256 0000000000000000..." in out
    assert "cache keys differ for node(s) 3" in out
    assert "result: differs: max pixel difference" in out
