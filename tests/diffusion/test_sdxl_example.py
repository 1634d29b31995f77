"""``examples/txt2img_sdxl.json`` (issue 11): the SDXL text-to-image graph on the built-in tiny
SDXL model, through the CLI from a clone, deterministic per seed across processes, and a
seed-only change re-runs only the sampler, the decoder and the saver."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import vortex_jupyter as vx

from .conftest import digest, example_image, rerun_with_new_seed

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "txt2img_sdxl.json"


def _cli(out: Path, models: Path, *extra: str) -> str:
    return digest(example_image(EXAMPLE, out, models, *extra))


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
    started, _, _ = rerun_with_new_seed(g)
    assert started == {"3", "8", "9"}
