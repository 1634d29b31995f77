"""vortex-shapes, the built-in trained demo model: listed, hash-checked, and it draws what it is told.

The drawing test renders a few prompts through CheckpointLoaderSimple -> CLIPTextEncode ->
KSampler -> VAEDecode (``scripts/check_shapes.py``'s graph) and classifies the images with that
script's classifier; ``scripts/check_shapes.py`` runs the same on 200 samples.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from types import ModuleType

import pytest

from vortex_jupyter.errors import ModelError
from vortex_jupyter.nodes.diffusion import shapes
from vortex_jupyter.nodes.diffusion.shapes.scenes import Scene, prompt

ROOT = Path(__file__).resolve().parents[2]


def _check_shapes() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_shapes", ROOT / "scripts" / "check_shapes.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_vortex_shapes_is_listed_right_after_vortex_tiny(models_dir: Path) -> None:
    from vortex_jupyter.nodes.diffusion.listing import checkpoint_names

    assert checkpoint_names()[:2] == ["vortex-tiny", "vortex-shapes"]


def test_the_shipped_file_matches_its_recorded_sha256_and_is_small() -> None:
    path = shapes.single_file()
    record = json.loads(path.with_name("vortex-shapes.json").read_text())
    assert record["bytes"] == path.stat().st_size <= 10 * 2**20


def test_a_corrupted_file_is_a_model_error_that_says_so(tmp_path: Path) -> None:
    good = shapes.single_file()
    bad, record = tmp_path / good.name, tmp_path / "vortex-shapes.json"
    shutil.copy(good.with_name("vortex-shapes.json"), record)
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"corrupted.*sha256"):
        shapes.verified(bad, record)
    bad.write_bytes(bytes(data[:1000]))
    with pytest.raises(ModelError, match="corrupted"):
        shapes.verified(bad, record)


# (scene, seed): the default sampler settings of check_shapes.py (20 steps euler, cfg 6)
CASES = [
    (Scene("red", "circle", "blue"), 1),
    (Scene("yellow", "square", "black", "left"), 2),
    (Scene("white", "star", "green", "top"), 3),
]


def test_vortex_shapes_draws_the_background_and_object_colours_it_is_asked_for(models_dir: Path) -> None:
    check = _check_shapes()
    render = check.Renderer("vortex-shapes")
    for scene, seed in CASES:
        seen = check.classify(render(prompt(scene, say_position=False), seed))
        assert (seen.background, seen.color) == (scene.background, scene.color), (scene, seed, seen)
