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
