"""``examples/txt2img_sdxl.json`` (issue 11): the SDXL text-to-image graph on the built-in tiny
SDXL model, through the CLI from a clone, deterministic per seed across processes, and a
seed-only change re-runs only the sampler, the decoder and the saver."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

import vortex_jupyter as vx

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "txt2img_sdxl.json"


def _cli(out: Path, models: Path, *extra: str) -> str:
    env = {**os.environ, "VORTEX_MODELS_DIR": str(models), "VORTEX_EXECUTOR": "inline"}
    proc = subprocess.run([sys.executable, "-m", "vortex_jupyter.cli", "run", str(EXAMPLE), "-o", str(out), *extra],
                          capture_output=True, text=True, timeout=300, env=env, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    [png] = sorted(out.glob("vortex_sdxl_*.png"))
    from PIL import Image

    return hashlib.sha256(np.asarray(Image.open(png)).tobytes()).hexdigest()


def test_the_sdxl_example_runs_through_the_cli_the_same_in_two_processes(tmp_path: Path, models_dir: Path) -> None:
    first = _cli(tmp_path / "a", models_dir)
    again = _cli(tmp_path / "b", models_dir)
    other = _cli(tmp_path / "c", models_dir, "--set", "3.seed=7")
    assert first == again and first != other


def test_a_seed_change_reruns_only_sampler_decoder_and_saver(tmp_path: Path, models_dir: Path,
                                                              monkeypatch: Any) -> None:
    monkeypatch.setenv("VORTEX_OUTPUT_DIR", str(tmp_path))
    g = vx.load(EXAMPLE)
    g.nodes["3"].params["seed"] = 301
    first = g.run(executor="inline")
    assert first.status == "ok", first.errors
    started: list[str] = []
    g.on_event(lambda e: started.append(e.node) if type(e).__name__ == "NodeStarted" else None)
    g.nodes["3"].params["seed"] = 302
    second = g.run(executor="inline")
    assert second.status == "ok" and set(started) == {"3", "8", "9"}
    assert not np.array_equal(first.outputs["8"][0], second.outputs["8"][0])
