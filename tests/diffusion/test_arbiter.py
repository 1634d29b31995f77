"""The memory arbiter: budgets, LFU eviction GPU -> host -> dropped, OOM retry, real models."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import numpy as np
import pytest
import torch

from vortex_jupyter.errors import NodeOutOfMemoryError
from vortex_jupyter.workers.arbiter import MemoryArbiter, parse_bytes

from .conftest import render


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def drop(self, key: str) -> Any:
        return lambda: self.events.append(("drop", key))

    def move(self, key: str) -> Any:
        return lambda device: self.events.append(("move", f"{key}->{device}"))


@pytest.mark.parametrize(("text", "want"), [("2GiB", 2 * 2**30), ("512MB", 512 * 10**6), ("1.5 KiB", 1536),
                                            ("1000", 1000), (7, 7)])
def test_budgets_parse_bytes_and_binary_units(text: Any, want: int) -> None:
    assert parse_bytes(text) == want


def test_bad_budget_text_explains_the_accepted_forms() -> None:
    with pytest.raises(ValueError, match="2GiB"):
        parse_bytes("lots")


def test_budget_comes_from_the_environment(monkeypatch: Any) -> None:
    monkeypatch.setenv("VORTEX_RAM_BUDGET", "3MiB")
    monkeypatch.setenv("VORTEX_VRAM_BUDGET", "1GiB")
    arb = MemoryArbiter()
    assert arb.budget("cpu") == 3 * 2**20 and arb.budget("cuda:0") == 2**30


def test_least_frequently_used_entry_is_evicted_first() -> None:
    rec, arb = Recorder(), MemoryArbiter({"cpu": 100})
    arb.track("hot", 1, 40, drop=rec.drop("hot"))
    arb.track("cold", 2, 40, drop=rec.drop("cold"))
    for _ in range(3):
        arb.touch("hot")
    arb.track("new", 3, 40, drop=rec.drop("new"))
    assert rec.events == [("drop", "cold")]
    assert "hot" in arb and "new" in arb and "cold" not in arb
    assert arb.peak("cpu") <= 100


def test_gpu_pressure_moves_to_host_before_dropping() -> None:
    rec, arb = Recorder(), MemoryArbiter({"cuda": 100, "cpu": 70})
    arb.track("a", 1, 60, "cuda", drop=rec.drop("a"), move=rec.move("a"))
    arb.request(60, "cuda")
    assert rec.events == [("move", "a->cpu")] and arb.used("cpu") == 60 and arb.used("cuda") == 0
    arb.track("b", 2, 60, "cuda:0", drop=rec.drop("b"), move=rec.move("b"))
    arb.request(60, "cuda")  # the host is full now: b's move first evicts a from the host
    assert rec.events[1:] == [("drop", "a"), ("move", "b->cpu")]


def test_pinned_entries_are_never_evicted_and_the_error_names_node_and_bytes() -> None:
    rec, arb = Recorder(), MemoryArbiter({"cpu": 100})
    arb.track("unet", 1, 80, drop=rec.drop("unet"))
    with arb.pinned("unet"), pytest.raises(NodeOutOfMemoryError) as info:
        arb.request(50, "cpu", node="KSampler#3")
    assert rec.events == []
    text = str(info.value)
    assert info.value.code == "VE-503" and "KSampler#3" in text and "50 B" in text and "pinned" in text
    arb.request(50, "cpu")  # unpinned again: evictable
    assert rec.events == [("drop", "unet")]


def test_request_larger_than_the_whole_budget_fails_clearly() -> None:
    with pytest.raises(NodeOutOfMemoryError, match="more than the whole cpu budget"):
        MemoryArbiter({"cpu": 10}).request(11, "cpu", node="VAEDecode#8")


def test_oom_is_caught_everything_evicted_and_retried_once() -> None:
    rec, arb = Recorder(), MemoryArbiter({"cpu": 1000})
    arb.track("old", 1, 500, drop=rec.drop("old"))
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return "ok"

    assert arb.run_with_oom_retry(flaky, node="n1") == "ok"
    assert len(calls) == 2 and rec.events == [("drop", "old")]


def test_second_oom_becomes_node_out_of_memory_error() -> None:
    def always() -> None:
        raise MemoryError("no more host memory")

    with pytest.raises(NodeOutOfMemoryError) as info:
        MemoryArbiter({"cpu": 1000}).run_with_oom_retry(always, node="KSampler#3", nbytes=2**20)
    assert "KSampler#3" in str(info.value) and "1.0 MiB" in str(info.value)


def test_non_oom_errors_pass_through_untouched() -> None:
    def broken() -> None:
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        MemoryArbiter({"cpu": 10}).run_with_oom_retry(broken)


# -------------------------------------------------------------------- real checkpoints



def test_alternating_two_checkpoints_under_a_small_budget_evicts_reloads_and_stays_in_budget(
        tiny_path: Any) -> None:
    from vortex_jupyter.nodes.diffusion import models
    from vortex_jupyter.nodes.diffusion.components import module_bytes
    from vortex_jupyter.nodes.diffusion.loaders import load_checkpoint

    models.tiny(seed=1)
    probe = MemoryArbiter({"cpu": "1GiB"})
    a_handles = load_checkpoint("vortex-tiny", probe)
    one_model = sum(module_bytes(c.get()) for c in (a_handles[0].unet, a_handles[1].encoder, a_handles[2].vae))
    budget = int(one_model * 1.5)  # room for one model, never two
    arb = MemoryArbiter({"cpu": budget})
    a, b = load_checkpoint("vortex-tiny", arb), load_checkpoint("vortex-tiny-s1", arb)
    first = {"a": render(a, seed=1, steps=2), "b": render(b, seed=1, steps=2)}
    unet_a = weakref.ref(a[0].unet.get())
    for _ in range(2):
        for name, handles in (("a", a), ("b", b)):
            assert np.array_equal(render(handles, seed=1, steps=2), first[name])
            assert arb.used("cpu") <= budget
    gc.collect()
    assert unet_a() is None, "b ran last, so a's UNet was evicted and must really be freed"
    assert arb.peak("cpu") <= budget < 2 * one_model
    assert arb.evictions >= 4
    assert a[0].unet.loads >= 3 and b[0].unet.loads >= 3, "each alternation reloads the other model's UNet"
    assert not np.array_equal(first["a"], first["b"])


def test_oom_inside_a_node_names_the_graph_node_and_the_bytes_torch_asked_for(recording: Any) -> None:
    from vortex_jupyter.nodes.diffusion.components import oom_guard

    def always() -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79 GiB total)")

    with pytest.raises(NodeOutOfMemoryError) as info:
        oom_guard(always, "cpu", MemoryArbiter({"cpu": "1GiB"}))
    assert info.value.node == "3" and "node 3 needs 2.0 GiB" in str(info.value)
    assert "Tried to allocate" in str(info.value) and info.value.hint


def test_loading_a_model_larger_than_the_budget_names_node_and_component(recording: Any, tiny_path: Any) -> None:
    from vortex_jupyter.nodes.diffusion.loaders import load_checkpoint

    model, _, _ = load_checkpoint("vortex-tiny", MemoryArbiter({"cpu": "1MiB"}))
    with pytest.raises(NodeOutOfMemoryError) as info:
        model.unet.get()
    text = str(info.value)
    assert "node 3 needs" in text and "loading unet of" in text and "VORTEX_RAM_BUDGET" in text



def test_sd1_and_sdxl_alternating_under_a_small_budget_stay_in_budget_part_by_part(tiny_path: Any) -> None:
    """Each family's parts are separate arbiter entries (SDXL: UNet, both text encoders, VAE), so
    two families alternating on a budget that holds one of them evict and reload, never exceed it,
    and render exactly what they render alone."""
    from vortex_jupyter.nodes.diffusion.components import module_bytes
    from vortex_jupyter.nodes.diffusion.loaders import load_checkpoint

    probe = MemoryArbiter({"cpu": "1GiB"})
    sizes = {}
    for name in ("vortex-tiny", "vortex-tiny-sdxl"):
        m, c, v = load_checkpoint(name, probe)
        parts = [m.unet, c.encoder, v.vae] + ([c.encoder_2] if c.encoder_2 is not None else [])
        sizes[name] = sum(module_bytes(p.get()) for p in parts)
    budget = int(max(sizes.values()) * 1.2)  # the bigger family fits, both never do
    assert budget < sum(sizes.values())
    arb = MemoryArbiter({"cpu": budget})
    sd1, sdxl = load_checkpoint("vortex-tiny", arb), load_checkpoint("vortex-tiny-sdxl", arb)
    alone = {"sd1": render(sd1, seed=3, steps=2), "sdxl": render(sdxl, seed=3, steps=2)}
    assert sdxl[1].encoder_2 is not None
    sdxl_parts = [sdxl[0].unet, sdxl[1].encoder, sdxl[1].encoder_2, sdxl[2].vae]
    parts = [sd1[0].unet, sd1[1].encoder, sd1[2].vae, *sdxl_parts]
    for _ in range(2):
        for name, handles in (("sd1", sd1), ("sdxl", sdxl)):
            assert np.array_equal(render(handles, seed=3, steps=2), alone[name])
            assert arb.used("cpu") <= budget
        assert sum(p.key in arb for p in sdxl_parts) >= 3  # SDXL's parts are entries of their own
    assert arb.peak("cpu") <= budget
    assert arb.evictions >= 2
    assert sum(p.loads for p in parts) > len(parts)  # evicted parts came back when needed
    assert not np.array_equal(alone["sd1"], alone["sdxl"])


def test_sdxl_base_refiner_and_upscaler_on_a_small_budget_stay_within_it(tiny_path: Any) -> None:
    """A base -> refiner -> upscale workflow (issue 11): every part (base UNet, both base
    encoders, the refiner's UNet and G, the VAEs, the upscaler) is an entry of its own, so on a
    budget that holds the biggest model alone the arbiter evicts by LFU, never exceeds it, and
    each step renders exactly what it renders with room to spare."""
    from vortex_jupyter.nodes.diffusion.components import module_bytes
    from vortex_jupyter.nodes.diffusion.loaders import load_checkpoint
    from vortex_jupyter.nodes.diffusion.sampling import SampleSettings, sample
    from vortex_jupyter.nodes.diffusion.text import encode_text
    from vortex_jupyter.nodes.diffusion.tiny_upscale import TINY_UPSCALE_NAME
    from vortex_jupyter.nodes.diffusion.upscale import load_upscale_model, upscale_image
    from vortex_jupyter.nodes.diffusion.vae import vae_decode

    def parts(base: Any, refiner: Any, up: Any) -> list[Any]:
        return [base[0].unet, base[1].encoder, base[1].encoder_2, base[2].vae, refiner[0].unet, refiner[1].encoder,
                refiner[2].vae, up.net]

    def workflow(base: Any, refiner: Any, up: Any) -> Any:
        latent = {"samples": torch.zeros(1, 4, 8, 8)}
        half = sample(base[0], encode_text(base[1], "a cat"), encode_text(base[1], ""), latent,
                      SampleSettings(3, 4, 7.0, "euler", "normal", end_at_step=2))
        done = sample(refiner[0], encode_text(refiner[1], "a cat"), encode_text(refiner[1], ""), half,
                      SampleSettings(3, 4, 7.0, "euler", "normal", add_noise=False, start_at_step=2))
        return upscale_image(up, vae_decode(refiner[2], done))

    roomy = MemoryArbiter({"cpu": "1GiB"})
    probe = (load_checkpoint("vortex-tiny-sdxl", roomy), load_checkpoint("vortex-tiny-sdxl-refiner", roomy),
             load_upscale_model(TINY_UPSCALE_NAME, roomy))
    alone = workflow(*probe)
    sizes = [module_bytes(p.get()) for p in parts(*probe)]
    budget = int(max(sizes) * 2.2)  # the biggest part and change: never all of them
    assert budget < sum(sizes)
    arb = MemoryArbiter({"cpu": budget})
    handles = (load_checkpoint("vortex-tiny-sdxl", arb), load_checkpoint("vortex-tiny-sdxl-refiner", arb),
               load_upscale_model(TINY_UPSCALE_NAME, arb))
    for _ in range(2):
        out = workflow(*handles)
        assert np.array_equal(out, alone)
        assert arb.used("cpu") <= budget
    assert arb.peak("cpu") <= budget and arb.evictions >= 3
    assert sum(p.loads for p in parts(*handles)) > len(sizes)  # evicted parts came back when needed
