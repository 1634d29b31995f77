"""A latent-editing graph through the engine on real worker processes: the LATENT keys
(``batch_index``, ``noise_mask``) survive the trip, and the pixels equal direct calls."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import vortex_jupyter as vx

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def input_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_path: Path) -> Path:
    inp = tmp_path / "input"
    shutil.copytree(EXAMPLES / "images", inp)
    monkeypatch.setenv("VORTEX_INPUT_DIR", str(inp))
    return inp


def _graph() -> vx.Graph:
    g = vx.Graph()
    ckpt = g.add("CheckpointLoaderSimple", id="ckpt", ckpt_name="vortex-tiny")
    image = g.add("LoadImage", id="image", image="vortex_example.png")
    enc = g.add("VAEEncode", id="enc", pixels=image.out(0), vae=ckpt.out(2))
    rep = g.add("RepeatLatentBatch", id="rep", samples=enc.out(0), amount=3)
    pick = g.add("LatentFromBatch", id="pick", samples=rep.out(0), batch_index=1, length=2)
    empty = g.add("EmptyLatentImage", id="empty", width=64, height=64, batch_size=1)
    both = g.add("LatentBatch", id="both", samples1=pick.out(0), samples2=empty.out(0))
    masked = g.add("SetLatentNoiseMask", id="masked", samples=both.out(0), mask=image.out(1))
    g.add("VAEDecodeTiled", id="dec", samples=masked.out(0), vae=ckpt.out(2), tile_size=64, overlap=32)
    return g


def test_latent_graph_runs_on_the_worker_pool_with_keys_and_pixels_of_direct_calls(
        input_dir: Path, tiny_handles: Any) -> None:
    from PIL import Image

    from vortex_jupyter.nodes.diffusion.vae import vae_decode_tiled, vae_encode

    g = _graph()
    assert g.problems() == []
    run = g.run(executor="workers", outputs=["dec", "masked"])
    assert run.status == "ok", run.errors
    latent = run.outputs["masked"][0]
    assert latent["batch_index"] == [1, 2, 0]  # picked entries 1, 2 of the repeat, then the empty one
    mask = torch.as_tensor(np.asarray(latent["noise_mask"]))
    assert mask.shape == (1, 1, 64, 64) and not mask.any()  # LoadImage's mask of an opaque image
    pixels = np.asarray(Image.open(input_dir / "vortex_example.png").convert("RGB"), np.float32)[None] / 255
    enc = vae_encode(tiny_handles[2], pixels)["samples"]
    want_latent = torch.cat([enc, enc, torch.zeros_like(enc)])
    torch.testing.assert_close(torch.as_tensor(np.asarray(latent["samples"])), want_latent, rtol=0, atol=1e-5)
    want = vae_decode_tiled(tiny_handles[2], {"samples": want_latent}, 8, 2)  # 64 // 8, (64 // 4) // 8
    image = np.asarray(run.outputs["dec"][0])
    assert image.shape == (3, 64, 64, 3)
    np.testing.assert_allclose(image, want, atol=1e-4)  # the worker may use another thread count
