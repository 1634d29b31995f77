"""A seed grid of KSamplers on one checkpoint, spread over two workers by loading the model on
each (``workers/copies.py``): the same pixels as one worker, each node reported once, and the
next grid (new seeds, models cached) spreads at once without loading anything."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

import vortex_jupyter as vx

SEEDS = (11, 12, 13, 14)


def seed_grid(seeds: tuple[int, ...]) -> dict[str, Any]:
    prompt: dict[str, Any] = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "vortex-tiny"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a glass bottle", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "watermark", "clip": ["4", 1]}},
    }
    for i, seed in enumerate(seeds):
        prompt[f"s{i}"] = {"class_type": "KSampler", "inputs": {
            "seed": seed, "steps": 3, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0,
            "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}}
        prompt[f"d{i}"] = {"class_type": "VAEDecode", "inputs": {"samples": [f"s{i}", 0], "vae": ["4", 2]}}
    return prompt


def images(run: Any, count: int) -> list[np.ndarray]:
    assert run.status == "ok", run.errors
    return [np.array(run.outputs[f"d{i}"][0]) for i in range(count)]


def test_a_seed_grid_on_two_workers_with_model_copies_has_one_worker_s_pixels(tiny_path: Path) -> None:
    from vortex_jupyter.workers.executor import WorkerExecutor

    one = WorkerExecutor(devices=["cpu"], threads=1)
    try:
        want = images(vx.load(seed_grid(SEEDS)).run(executor=one), 4)
        again = images(vx.load(seed_grid((21, 22, 23, 24))).run(executor=one), 4)
    finally:
        one.close()
    two = WorkerExecutor(devices=["cpu", "cpu"], threads=1, model_copies=2)
    try:
        g = vx.load(seed_grid(SEEDS))
        events: list[Any] = []
        g.on_event(events.append)
        first = g.run(executor=two, outputs=[f"d{i}" for i in range(4)])
        got = images(first, 4)
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b)
        done = [e for e in events if e.kind == "node_finished"]
        assert sorted(e.node for e in done) == sorted(g.nodes)  # each node reported once: the copy is silent
        assert len({e.worker for e in done if e.node.startswith("s")}) == 2
        assert two.pool.copies.count(first._state.node_keys["4"]) == 1  # the checkpoint, loaded on both

        for i, seed in enumerate((21, 22, 23, 24)):  # the next grid: models cached, copies kept
            g.nodes[f"s{i}"].params["seed"] = seed
        events.clear()
        second = g.run(executor=two, outputs=[f"d{i}" for i in range(4)])
        for a, b in zip(images(second, 4), again, strict=True):
            np.testing.assert_array_equal(a, b)
        started = {e.node for e in events if e.kind == "node_started"}
        assert started == {f"s{i}" for i in range(4)} | {f"d{i}" for i in range(4)}  # nothing loaded again
        assert len({e.worker for e in events if e.kind == "node_finished" and e.node.startswith("s")}) == 2
    finally:
        two.close()
