"""Upscale models (issue 11): UpscaleModelLoader and ImageUpscaleWithModel on spandrel, the
built-in tiny 4x ESRGAN, ComfyUI's tiling (512/32, halved on OOM) and ``examples/upscale.json``
through the CLI."""

from __future__ import annotations

import gc
import hashlib
import importlib.util
import json
import os
import pickle
import subprocess
import sys
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import vortex_jupyter as vx
from vortex_jupyter.errors import MissingFile, ModelError, NodeOutOfMemoryError
from vortex_jupyter.nodes.diffusion import tiny_upscale as tu
from vortex_jupyter.nodes.diffusion import upscale as up
from vortex_jupyter.nodes.registry import REGISTRY
from vortex_jupyter.workers.arbiter import MemoryArbiter

# spandrel is installed without its dependencies (see pyproject's ``upscale`` extra), so it is
# imported through ``up.spandrel()``, never with importorskip (which would need torchvision).
pytestmark = pytest.mark.skipif(importlib.util.find_spec("spandrel") is None, reason="spandrel is not installed")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "upscale.json"
TINY = tu.TINY_UPSCALE_NAME


@pytest.fixture(scope="module")
def model(models_dir: Path) -> up.UpscaleModelHandle:
    return up.load_upscale_model(TINY)


def picture(h: int = 64, w: int = 64, batch: int = 1) -> np.ndarray:
    rng = np.random.default_rng(h * 1000 + w)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    smooth = np.stack([x, y, (x - 0.5) ** 2 + (y - 0.5) ** 2 < 0.1], -1)
    return np.clip(smooth + rng.normal(0, 0.05, (batch, h, w, 3)), 0, 1).astype(np.float32)


def nearest(x: Any) -> Any:
    """A pointwise 4x 'model': tiles must blend back to exactly the untiled result."""
    return x.repeat_interleave(4, -1).repeat_interleave(4, -2)


# ----------------------------------------------------------------------------- the built-in model


def test_the_tiny_upscaler_builds_byte_identical_files(models_dir: Path, tmp_path: Path) -> None:
    here = tu.tiny_upscale()
    other = tu.tiny_upscale(tmp_path)
    assert here.name == other.name == TINY
    assert hashlib.sha256(here.read_bytes()).digest() == hashlib.sha256(other.read_bytes()).digest()
    assert here.stat().st_size < 2_000_000
    stamp = here.stat().st_mtime_ns
    assert tu.tiny_upscale() == here and here.stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert not list(models_dir.glob(f".{TINY}.tmp-*")), "no temporary file left behind"


def test_a_build_in_another_process_gives_the_same_bytes(models_dir: Path, tmp_path: Path) -> None:
    code = ("import sys; from vortex_jupyter.nodes.diffusion.tiny_upscale import tiny_upscale; "
            "print(tiny_upscale(sys.argv[1]))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()).read_bytes() == tu.tiny_upscale().read_bytes()


def test_spandrel_recognises_it_as_a_4x_esrgan_in_the_original_key_layout(model: up.UpscaleModelHandle) -> None:
    keys = set(tu.tiny_upscale_state())
    assert {"model.0.weight", "model.1.sub.0.RDB1.conv1.0.weight", "model.10.weight"} <= keys
    assert (model.architecture, model.scale, model.input_channels, model.output_channels) == ("ESRGAN", 4.0, 3, 3)
    assert repr(model) == f"<UPSCALE_MODEL {TINY} (ESRGAN x4)>"


def test_the_tiny_upscaler_keeps_the_picture(model: up.UpscaleModelHandle) -> None:
    img = picture()
    out = up.upscale_image(model, img)
    smooth = torch.nn.functional.interpolate(torch.from_numpy(img).movedim(-1, 1), scale_factor=4, mode="bilinear")
    diff = np.abs(out - smooth.movedim(1, -1).numpy())
    assert out.shape == (1, 256, 256, 3) and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1
    assert diff.mean() < 0.05, "an enlargement of the input plus a small seeded residual"


# ----------------------------------------------------------------------------- nodes and listing


def test_nodes_have_comfyui_names_inputs_categories_and_outputs() -> None:
    loader, upscale = REGISTRY.get("UpscaleModelLoader"), REGISTRY.get("ImageUpscaleWithModel")
    assert [p.name for p in loader.inputs] == ["model_name"] and loader.category == "loaders"
    assert [o.type for o in loader.outputs] == ["UPSCALE_MODEL"]
    assert [(p.name, p.type) for p in upscale.inputs] == [("upscale_model", "UPSCALE_MODEL"), ("image", "IMAGE")]
    assert [o.type for o in upscale.outputs] == ["IMAGE"] and upscale.category == "image/upscaling"
    assert loader.heavy and upscale.heavy
    from vortex_jupyter.nodes.diffusion.nodes import NODE_DISPLAY_NAME_MAPPINGS as names

    assert names["UpscaleModelLoader"] == "Load Upscale Model"
    assert names["ImageUpscaleWithModel"] == "Upscale Image (using Model)"


def test_the_loader_lists_the_builtin_first_and_files_of_the_upscale_models_folder(models_dir: Path) -> None:
    folder = models_dir / "upscale_models" / "sub"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "4x-Mine.pth").write_bytes(b"listed, never loaded here")
    choices = REGISTRY.get("UpscaleModelLoader").input("model_name").choices
    assert choices is not None and choices[0] == TINY and "sub/4x-Mine.pth" in choices


def test_a_missing_upscale_model_is_a_missing_file_problem_naming_the_builtin(models_dir: Path) -> None:
    from vortex_jupyter.nodes.diffusion.upscale_nodes import UpscaleModelLoader

    verdict = UpscaleModelLoader.VALIDATE_INPUTS("RealESRGAN_x4plus.safetensors")
    assert isinstance(verdict, MissingFile)
    assert "upscale_models" in str(verdict) and TINY in str(verdict)
    assert UpscaleModelLoader.VALIDATE_INPUTS(TINY) is True
    assert "not a safe name" in str(UpscaleModelLoader.VALIDATE_INPUTS("../escape.pth"))


# ----------------------------------------------------------------------------- loading files


def _put(models_dir: Path, name: str, data: bytes) -> str:
    path = models_dir / "upscale_models" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return name


def test_a_file_spandrel_does_not_know_is_a_model_error_naming_it(models_dir: Path) -> None:
    from safetensors.torch import save_file

    path = models_dir / "upscale_models" / "not-an-upscaler.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"encoder.weight": torch.zeros(4, 4)}, str(path))
    with pytest.raises(ModelError) as err:
        up.load_upscale_model(path.name)
    assert "not-an-upscaler.safetensors" in err.value.message and "no upscale model" in err.value.message
    assert err.value.hint is not None and "upscale_models" in err.value.hint
    with pytest.raises(ModelError, match="not a valid safetensors"):
        up.load_upscale_model(_put(models_dir, "broken.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{not json"))


def test_a_pth_loads_only_through_weights_only(models_dir: Path, model: up.UpscaleModelHandle) -> None:
    path = models_dir / "upscale_models" / "tiny.pth"
    torch.save({"params_ema": tu.tiny_upscale_state()}, path)  # Real-ESRGAN's own .pth nesting
    img = picture(32, 32)
    assert np.array_equal(up.upscale_image(up.load_upscale_model("tiny.pth"), img), up.upscale_image(model, img))

    class Evil:
        def __reduce__(self) -> tuple[Any, tuple[str]]:
            return (os.system, ("echo pwned > /dev/null",))

    with pytest.raises(ModelError, match="refuse"):
        up.load_upscale_model(_put(models_dir, "evil.pth", pickle.dumps({"model.0.weight": Evil()}, protocol=2)))


def test_the_upscale_model_is_an_arbiter_entry_of_its_own_evicted_and_reloaded(models_dir: Path) -> None:
    arb = MemoryArbiter({"cpu": "64MiB"})
    handle = up.load_upscale_model(TINY, arb)
    assert handle.net.key in arb and handle.net.loads == 1
    first = up.upscale_image(handle, picture(32, 32))
    old = weakref.ref(handle.net.get())
    arb.request(arb.budget("cpu"), "cpu")  # someone else needs everything: the upscaler goes
    gc.collect()
    assert handle.net.key not in arb and old() is None
    assert np.array_equal(up.upscale_image(handle, picture(32, 32)), first)
    assert handle.net.loads == 2 and arb.peak("cpu") <= arb.budget("cpu")


# ----------------------------------------------------------------------------- tiling


def test_upscaling_is_deterministic(model: up.UpscaleModelHandle) -> None:
    img = picture(48, 40, batch=2)
    a, b = up.upscale_image(model, img), up.upscale_image(model, img)
    assert a.shape == (2, 192, 160, 3) and np.array_equal(a, b)
    assert np.array_equal(a[1:], up.upscale_image(model, img[1:])), "batch items are upscaled one by one"


def test_tiles_smaller_than_the_image_give_the_untiled_result_within_tolerance(
        model: up.UpscaleModelHandle, recording: Any) -> None:
    img = picture()
    whole = up.upscale_image(model, img)
    tiled = up.upscale_image(model, img, tile=32, overlap=8)
    assert recording.progress_calls[-1] == (9, 9), "tiles start at 0, 24, 48 on each axis (ComfyUI's)"
    diff = np.abs(tiled - whole)
    assert diff.mean() < 2e-3 and diff.max() < 0.05, (diff.mean(), diff.max())


def test_a_pointwise_model_tiles_back_to_exactly_the_untiled_image() -> None:
    x = torch.from_numpy(picture(70, 50)).movedim(-1, 1)
    tiled = up.tiled_upscale(x, nearest, 4, 3, tile=32, overlap=8)
    assert torch.allclose(tiled, nearest(x), atol=1e-6)


def test_overlaps_blend_with_comfyuis_feather_weights() -> None:
    calls: list[int] = []

    def tile_id(x: Any) -> Any:  # each tile paints its own number
        calls.append(len(calls))
        return torch.full((1, 3, x.shape[2] * 4, x.shape[3] * 4), float(len(calls) - 1))

    out = up.tiled_upscale(torch.zeros(1, 3, 64, 64), tile_id, 4, 3, tile=32, overlap=8)
    # row 0 of tiles: ids 0, 1, 2 at input x 0, 24, 48 -> output x 0, 96, 192; the feather is
    # round(8 * 4) = 32 output pixels, weight (t + 1) / 32 from each end of a tile.
    # Output (y=64, x=100): tile 0 at local x 100 (27 from its end: 28/32), tile 1 at local x 4 (5/32).
    assert out[0, 0, 64, 100].item() == pytest.approx((28 * 0 + 5 * 1) / 33, abs=1e-6)
    assert out[0, 0, 64, 60].item() == 0.0 and out[0, 0, 64, 150].item() == 1.0
    assert len(calls) == 9


def test_out_of_memory_halves_the_tile_down_to_128_then_fails_with_ve_503(recording: Any) -> None:
    seen: list[int] = []

    def picky(limit: int) -> Any:
        def fn(x: Any) -> Any:
            seen.append(max(x.shape[-2:]))
            if max(x.shape[-2:]) > limit:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return nearest(x)
        return fn

    x = torch.rand(1, 3, 300, 200)
    out = up.tiled_upscale(x, picky(128), 4, 3)
    assert seen[:2] == [300, 256] and max(seen[2:]) == 128, "512 and 256 fail, 128-pixel tiles run"
    assert torch.allclose(out, nearest(x), atol=1e-6)
    with pytest.raises(NodeOutOfMemoryError, match="even with 128x128 tiles") as err:
        up.tiled_upscale(x, picky(64), 4, 3)
    assert err.value.code == "VE-503"


def test_an_rgba_image_is_refused_with_the_fix(model: up.UpscaleModelHandle) -> None:
    with pytest.raises(ValueError, match=r"4 channels .* takes 3"):
        up.upscale_image(model, np.zeros((1, 16, 16, 4), np.float32))


def test_spandrel_imports_without_torchvision_and_leaves_no_stand_in(model: up.UpscaleModelHandle) -> None:
    if importlib.util.find_spec("torchvision") is None:
        assert "torchvision" not in sys.modules
    assert "spandrel" in sys.modules


# ----------------------------------------------------------------------------- the example


def _cli(out: Path, models: Path, executor: str) -> str:
    env = {**os.environ, "VORTEX_MODELS_DIR": str(models), "VORTEX_EXECUTOR": executor}
    proc = subprocess.run([sys.executable, "-m", "vortex_jupyter.cli", "run", str(EXAMPLE), "-o", str(out)],
                          capture_output=True, text=True, timeout=300, env=env, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    [png] = sorted(out.glob("vortex_upscale_*.png"))
    from PIL import Image

    image = Image.open(png)
    assert image.size == (256, 256), "the 64x64 txt2img image, 4x"
    return hashlib.sha256(np.asarray(image).tobytes()).hexdigest()


def test_the_upscale_example_runs_through_the_cli_the_same_on_both_executors(
        tmp_path: Path, models_dir: Path) -> None:
    assert _cli(tmp_path / "a", models_dir, "inline") == _cli(tmp_path / "b", models_dir, "workers")


def test_the_example_round_trips_through_comfyuis_ui_format(models_dir: Path) -> None:
    ui = vx.load(EXAMPLE).to_comfy_ui()
    [loader] = [n for n in ui["nodes"] if n["type"] == "UpscaleModelLoader"]
    assert loader["widgets_values"] == [TINY]
    back = vx.load(json.loads(json.dumps(ui)))
    assert back.nodes["10"].params["model_name"] == TINY and back.problems() == []
