"""ControlNet benchmark: ``examples/controlnet.json`` through the engine beside diffusers'
``StableDiffusionControlNetPipeline``, in the same run (CPU, one torch thread).

- baseline: ``StableDiffusionControlNetPipeline`` built from the tiny model's folder and the tiny
  SD1 ControlNet's folder (``tiny_controlnet("sd1")``), given the same precomputed prompt
  embeddings and the same control image (the example's Canny output, 64x64, so nothing is
  resized), Euler with ComfyUI's "normal" spacing, cfg 7, strength 1: per step one ControlNet
  call and one UNet call on the batched prompt pair, as the engine does; ``np`` output.
- engine: ``examples/controlnet.json`` with a new seed per repeat, so KSampler and VAEDecode run
  (the loaders, Canny, the prompts and Apply ControlNet are cached); outputs=["8"]; executor
  ``inline`` and ``workers``.
Target: overhead <= 10 % + 20 ms. Each figure is the best of ``--repeat`` runs after a warm-up
(``diffusion.py``'s helpers). Run: ``python benchmarks/controlnet.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from diffusion import HEADER, executors, median_time, row

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "controlnet.json"


def _graph(steps: int) -> Any:
    import vortex_jupyter as vx

    g = vx.load(json.loads(EXAMPLE.read_text()))
    g.nodes["3"].params["steps"] = steps
    return g


def inputs(graph: Any) -> tuple[Any, Any, Any]:
    """The example's prompt embeddings and Canny image, computed once by the engine's nodes."""
    import torch

    run = graph.run(executor="inline", outputs=["6", "7", "2"])
    if run.status != "ok":
        raise SystemExit(f"engine run failed: {run.errors}")
    hint = torch.as_tensor(run.outputs["2"][0]).permute(0, 3, 1, 2).contiguous()
    return run.outputs["6"][0][0][0], run.outputs["7"][0][0][0], hint


def pipeline_runner(steps: int, cfg: float, embeds: tuple[Any, Any, Any]) -> Callable[[int], Any]:
    import torch
    from diffusers import ControlNetModel, EulerDiscreteScheduler, StableDiffusionControlNetPipeline

    from vortex_jupyter.nodes.diffusion import models
    from vortex_jupyter.nodes.diffusion.tiny_controlnet import tiny_controlnet

    folder = models.tiny()
    controlnet = ControlNetModel.from_pretrained(tiny_controlnet("sd1"), local_files_only=True)
    pipe = StableDiffusionControlNetPipeline.from_pretrained(folder, controlnet=controlnet, local_files_only=True,
                                                             safety_checker=None, requires_safety_checker=False)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config, timestep_spacing="linspace",
                                                        steps_offset=0)
    pipe.set_progress_bar_config(disable=True)
    pos, neg, hint = embeds

    def run(i: int) -> Any:
        gen = torch.Generator("cpu").manual_seed(1000 + i)
        return pipe(prompt_embeds=pos, negative_prompt_embeds=neg, image=hint, num_inference_steps=steps,
                    guidance_scale=cfg, controlnet_conditioning_scale=1.0, height=64, width=64, generator=gen,
                    output_type="np").images

    return run


def engine_runner(steps: int, executor: str) -> Callable[[int], Any]:
    g = _graph(steps)
    base = 1000 if executor == "inline" else 5000  # fresh keys per executor (diffusion.py's note)

    def run(i: int) -> Any:
        g.nodes["3"].params["seed"] = base + i
        result = g.run(executor=executor, outputs=["8"])
        if result.status != "ok":
            raise SystemExit(f"engine run failed: {result.errors}")
        return result.outputs["8"][0]

    run(-1)  # loads the models, encodes the prompts, detects the edges once (cached afterwards)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    import torch
    from diffusers.utils import logging as dlog

    dlog.set_verbosity_error()
    dlog.disable_progress_bar()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("VORTEX_WORKER_THREADS", str(args.threads))
    os.environ.setdefault("VORTEX_MODELS_DIR", str(Path(tempfile.gettempdir()) / "vortex-bench-models"))
    rows(args.repeat, args.threads)


def rows(repeat: int, threads: int) -> None:
    """The ControlNet rows (``diffusion.py --family controlnet`` prints them too)."""
    os.environ.setdefault("VORTEX_INPUT_DIR", str(ROOT / "examples" / "images"))
    graph = _graph(4)
    cfg = float(graph.nodes["3"].params["cfg"])
    embeds = inputs(graph)
    print(f"\ntiny model + tiny SD1 ControlNet (examples/controlnet.json), 64x64, cfg {cfg:g}, euler/normal, "
          f"{threads} torch thread(s), best of {repeat}")
    print(HEADER)
    for steps in (4, 20):
        base = median_time(pipeline_runner(steps, cfg, embeds), repeat)
        for name in executors():
            eng = median_time(engine_runner(steps, name), repeat)
            print(row(f"{steps:>2} steps: ControlNet engine[{name}] vs pipeline", base, eng, 10, 20))


if __name__ == "__main__":
    sys.exit(main())
