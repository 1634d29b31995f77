"""A seed grid on one model over 1 vs 2 workers (model copies), and CUDA tensors between workers.

    python benchmarks/parallel_grid.py [--gpu] [--repeat 3]

1. Seed grid: one checkpoint, two prompts, 4 KSamplers (new seeds each repeat) and their
   VAEDecodes, through ``Graph.run`` on
   - 1 worker (the baseline),
   - 2 workers on the same device with the default policy (one worker holds the model: the
     samplers queue on it; tensor work spreads),
   - 2 workers with ``model_copies=2`` (``workers/copies.py``: the model is loaded on both and
     the samplers spread).
   "first grid" includes loading (a new model folder each time is not needed: each pool loads
   it itself); "next grid" is a new set of seeds on the cached models, which is what a user
   iterating on a grid waits for. CPU: the tiny model, 64x64, 8 steps (2 workers share the
   cores: each gets half the torch threads). ``--gpu``: an SD1.5-shaped fp16 model built with
   random weights (``benchmarks/diffusion.py``'s), 512x512, 20 steps, on one GPU.
2. ``--gpu`` only: a 1 GiB CUDA tensor made on one worker and read on another worker on the same
   GPU, by CUDA IPC handle vs through host memory (``VORTEX_CUDA_IPC=off``), in ms per GiB.

``parallel.py`` prints these rows after its branch rows.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cloudpickle

import vortex_jupyter as vx
from vortex_jupyter.workers.executor import WorkerExecutor

if __name__ != "__main__":  # imported by parallel.py: the workers get these nodes by value
    cloudpickle.register_pickle_by_value(sys.modules[__name__])

_SEEDS = itertools.count(1000)


def grid(ckpt: str, size: int, steps: int, count: int = 4) -> dict[str, Any]:
    prompt: dict[str, Any] = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a glass bottle on a beach", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "watermark", "clip": ["4", 1]}},
    }
    for i in range(count):
        prompt[f"s{i}"] = {"class_type": "KSampler", "inputs": {
            "seed": 0, "steps": steps, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0,
            "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}}
        prompt[f"d{i}"] = {"class_type": "VAEDecode", "inputs": {"samples": [f"s{i}", 0], "vae": ["4", 2]}}
    return prompt


def time_grid(ex: WorkerExecutor, prompt: dict[str, Any], repeat: int) -> tuple[float, float]:
    """(first grid with loading, best next grid on cached models) in seconds."""
    g = vx.load(prompt)
    outputs = [n for n in g.nodes if n.startswith("d")]

    def once() -> float:
        for node in g.nodes:
            if node.startswith("s"):
                g.nodes[node].params["seed"] = next(_SEEDS)
        t0 = time.perf_counter()
        run = g.run(executor=ex, outputs=outputs)
        took = time.perf_counter() - t0
        if run.status != "ok":
            raise SystemExit(f"grid run failed: {run.errors}")
        return took

    first = once()
    return first, min(once() for _ in range(repeat))


def grid_rows(device: str, ckpt: str, size: int, steps: int, repeat: int) -> None:
    prompt = grid(ckpt, size, steps)
    setups = [("1 worker", [device], 1), ("2 workers, default (model on one)", [device, device], 0),
              ("2 workers, model on each", [device, device], 2)]
    print(f"{'4-seed grid, ' + device:<36}{'first grid s':>14}{'next grid s':>13}{'vs 1 worker':>13}")
    base = 0.0
    for label, devices, copies in setups:
        ex = WorkerExecutor(devices=devices, model_copies=copies)  # 0: the default policy
        try:
            first, nxt = time_grid(ex, prompt, repeat)
        finally:
            ex.close()
        base = base or nxt
        print(f"{label:<36}{first:>14.2f}{nxt:>13.2f}{base / nxt:>12.2f}x")


@vx.node(category="benchmark")
def bench_gib(gib: float = 1.0, seed: int = 0) -> Any:
    """``gib`` GiB of float16 on this worker's GPU."""
    import torch

    return torch.full((int(gib * 2**29),), float(seed % 7), dtype=torch.float16, device="cuda")


@vx.node(category="benchmark")
def bench_read(a: Any, b: Any, seed: int = 0) -> float:
    """Reads both inputs on the GPU (one came from the other worker); a new ``seed`` only
    gives the node a new cache key, so it runs again on cached inputs."""
    import torch

    a = a if a.is_cuda else a.cuda()
    b = b if b.is_cuda else b.cuda()
    total = float(a[-1]) + float(b[-1])
    torch.cuda.synchronize()
    return total


def ipc_rows(repeat: int) -> None:
    """Two 1 GiB tensors made on two workers (cached), then only their join runs again, with a
    new seed: one input crosses from the other worker each time."""
    print(f"\n{'1 GiB between workers on one GPU':<36}{'ms per GiB':>14}{'vs host':>10}")
    base = 0.0
    for label, ipc in (("through host memory", "off"), ("by CUDA IPC handle", "on")):
        os.environ["VORTEX_CUDA_IPC"] = ipc
        ex = WorkerExecutor(devices=["cuda:0", "cuda:0"])
        try:
            g = vx.Graph()
            a, b = g.add("bench_gib", seed=1), g.add("bench_gib", seed=2)
            join = g.add("bench_read", a=a.out(0), b=b.out(0))
            made = g.run(executor=ex, outputs=[join.id])
            assert made.status == "ok", made.errors
            times = []
            for _ in range(repeat + 1):
                g.nodes[join.id].params["seed"] = next(_SEEDS)
                t0 = time.perf_counter()
                again = g.run(executor=ex, outputs=[join.id])
                times.append(time.perf_counter() - t0)
                assert again.status == "ok" and {a.id, b.id} <= set(again.cached), again.errors
        finally:
            ex.close()
        best = min(times[1:]) * 1000
        base = base or best
        print(f"{label:<36}{best:>14.1f}{base / best:>9.1f}x")
    os.environ.pop("VORTEX_CUDA_IPC", None)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpu", action="store_true")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    rows(args.gpu, args.repeat)


def rows(gpu: bool, repeat: int) -> None:
    os.environ.setdefault("VORTEX_MODELS_DIR", str(Path(tempfile.gettempdir()) / "vortex-bench-models"))
    if not gpu:
        from vortex_jupyter.nodes.diffusion import models

        models.tiny()
        grid_rows("cpu", "vortex-tiny", 64, 8, repeat)
        return
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("--gpu needs a CUDA GPU: torch.cuda.is_available() is False on this machine")
    from vortex_jupyter.nodes.diffusion import models

    name = "sd15-random-cuda"
    folder = models.models_root() / "checkpoints" / name
    if not (folder / "model_index.json").is_file():
        with torch.device("cuda"):
            models.build_components(folder, models.sd15_configs(), seed=0, dtype=torch.float16)
    os.environ["VORTEX_DEVICE"] = "cuda"
    grid_rows("cuda:0", name, 512, 20, repeat)
    ipc_rows(repeat)


if __name__ == "__main__":
    main()
