"""Shared fixtures: one tiny model per test session in a temporary models folder.

``VORTEX_MODELS_DIR`` points at a session temp dir before anything builds, so tests never
touch the user's cache; torch runs on one thread so results are bit-reproducible.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

from vortex_jupyter.nodes import context
from vortex_jupyter.nodes.context import NodeContext

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    os.environ["VORTEX_MODELS_DIR"] = str(root)
    return root


@pytest.fixture(scope="session")
def tiny_path(models_dir: Path) -> Path:
    from vortex_jupyter.nodes.diffusion import models

    return models.tiny()


@pytest.fixture(scope="session")
def tiny_handles(tiny_path: Path) -> tuple[Any, Any, Any]:
    from vortex_jupyter.nodes.diffusion.loaders import load_checkpoint

    return load_checkpoint("vortex-tiny")


@pytest.fixture(scope="session")
def conds(tiny_handles: tuple[Any, Any, Any]) -> tuple[Any, Any]:
    from vortex_jupyter.nodes.diffusion.text import encode_text

    clip = tiny_handles[1]
    return encode_text(clip, "a photo of a cat"), encode_text(clip, "blurry")


class RecordingContext(NodeContext):
    """A NodeContext that records progress/previews and can cancel after N steps."""

    def __init__(self, cancel_after: int | None = None) -> None:
        self.node_id = "3"
        self.progress_calls: list[tuple[float, float | None]] = []
        self.previews: list[Any] = []
        self.cancel_after = cancel_after

    @property
    def cancelled(self) -> bool:
        return self.cancel_after is not None and len(self.progress_calls) >= self.cancel_after

    def progress(self, value: float, total: float | None = None, text: str | None = None) -> None:
        self.progress_calls.append((value, total))

    def preview(self, image: Any, *, final: bool = False) -> None:
        self.previews.append(image)


@pytest.fixture
def recording() -> Any:
    ctx = RecordingContext()
    token = context.activate(ctx)
    yield ctx
    context.deactivate(token)


def render(handles: Any, seed: int, steps: int) -> Any:
    """A txt2img image (numpy) from (MODEL, CLIP, VAE) handles, with a fixed prompt."""
    from vortex_jupyter.nodes.diffusion.sampling import SampleSettings, sample
    from vortex_jupyter.nodes.diffusion.text import encode_text
    from vortex_jupyter.nodes.diffusion.vae import vae_decode

    model, clip, vae = handles
    pos, neg = encode_text(clip, "a cat"), encode_text(clip, "")
    settings = SampleSettings(seed, steps, 7.0, "euler", "normal")
    return vae_decode(vae, sample(model, pos, neg, {"samples": torch.zeros(1, 4, 8, 8)}, settings))


ROOT = Path(__file__).resolve().parents[2]


def example_image(example: Path, out: Path, models: Path, *extra: str) -> Any:
    """The pixels of the one PNG ``vortex run EXAMPLE -o OUT *extra`` writes, in a new process
    on the inline executor (the examples' test: from a clone, through the CLI)."""
    import subprocess
    import sys

    import numpy as np
    from PIL import Image

    env = {**os.environ, "VORTEX_MODELS_DIR": str(models), "VORTEX_EXECUTOR": "inline"}
    proc = subprocess.run([sys.executable, "-m", "vortex_jupyter.cli", "run", str(example), "-o", str(out), *extra],
                          capture_output=True, text=True, timeout=300, env=env, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    [png] = sorted(out.glob("*.png"))
    return np.asarray(Image.open(png))


def digest(pixels: Any) -> str:
    import hashlib

    return hashlib.sha256(pixels.tobytes()).hexdigest()


def rerun_with_new_seed(graph: Any, seed: int = 302) -> tuple[set[str], Any, Any]:
    """Run ``graph`` (inline), change only KSampler ``3``'s seed and run again: (the nodes the
    second run started, first run, second run); both runs succeed and decode different images."""
    import numpy as np

    first = graph.run(executor="inline")
    assert first.status == "ok", first.errors
    started: list[str] = []
    graph.on_event(lambda e: started.append(e.node) if type(e).__name__ == "NodeStarted" else None)
    graph.nodes["3"].params["seed"] = seed
    second = graph.run(executor="inline")
    assert second.status == "ok", second.errors
    assert not np.array_equal(first.outputs["8"][0], second.outputs["8"][0])
    return set(started), first, second
