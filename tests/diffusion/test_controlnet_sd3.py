"""SD3 ControlNets (issue 11): the tiny seeded SD3ControlNetModel, loading it (our metadata, a
diffusers folder, shapes), Apply ControlNet with its VAE on vortex-tiny-sd3 against diffusers'
SD3ControlNetModel + SD3Transformer2DModel called directly, strength and the start/end window,
ComfyUI's ControlNetApplySD3, and the errors: a missing VAE, wrong families, other layouts."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from vortex_jupyter.nodes.diffusion import controlnet as cn
from vortex_jupyter.nodes.diffusion.controlnet_nodes import (
    ControlNetApply,
    ControlNetApplyAdvanced,
    ControlNetApplySD3,
    ControlNetLoader,
)
from vortex_jupyter.nodes.diffusion.sampling import SampleSettings, sample
from vortex_jupyter.nodes.diffusion.tiny_controlnet import TINY_CONTROLNET_NAMES, tiny_controlnet
from vortex_jupyter.nodes.registry import REGISTRY

SD3, SD1 = TINY_CONTROLNET_NAMES["sd3"], TINY_CONTROLNET_NAMES["sd1"]


def _hint(seed: int = 0, size: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).random((1, size, size, 3), dtype=np.float32)


@pytest.fixture(scope="module")
def sd3(models_dir: Path) -> tuple[Any, Any, Any, Any, Any]:
    from vortex_jupyter.nodes.diffusion.loaders import load_checkpoint
    from vortex_jupyter.nodes.diffusion.text import encode_text

    model, clip, vae = load_checkpoint("vortex-tiny-sd3")
    return model, vae, encode_text(clip, "a lighthouse"), encode_text(clip, "blurry"), cn.load_controlnet(SD3)


def _render(model: Any, pos: Any, neg: Any, seed: int = 3) -> torch.Tensor:
    latent = {"samples": torch.zeros(1, 16, 8, 8)}
    return sample(model, pos, neg, latent, SampleSettings(seed, 4, 4.5, "euler", "simple"))["samples"]


@pytest.fixture(scope="module")
def base(sd3: Any) -> torch.Tensor:
    model, _, pos, neg, _ = sd3
    return _render(model, pos, neg)


# ----------------------------------------------------------------------------- files and loading


def test_the_loader_lists_and_loads_the_tiny_sd3_controlnet(sd3: Any) -> None:
    net = sd3[4]
    assert SD3 in ControlNetLoader.INPUT_TYPES()["required"]["control_net_name"][0]
    assert ControlNetLoader.VALIDATE_INPUTS(SD3) is True
    assert net.family == "sd3" and repr(net) == f"<CONTROL_NET {SD3} (SD3)>"
    with net.module.use() as module:
        assert type(module).__name__ == "SD3ControlNetModel" and len(module.transformer_blocks) == 1


def test_the_tiny_sd3_controlnet_builds_byte_identical_files_in_comfyuis_mmdit_layout(tmp_path: Path) -> None:
    from safetensors import safe_open

    from vortex_jupyter.nodes.diffusion.tiny_controlnet import tiny_controlnet_single_file

    a = tiny_controlnet_single_file("sd3", tmp_path / "a")
    b = tiny_controlnet_single_file("sd3", tmp_path / "b")
    assert a.name == SD3 and a.read_bytes() == b.read_bytes()
    assert (a.parent / a.name.removesuffix(".safetensors") / "config.json").is_file()
    with safe_open(str(a), framework="pt") as f:  # what ComfyUI's load_controlnet_mmdit looks for
        names = set(f.keys())
    assert {"controlnet_blocks.0.weight", "pos_embed_input.proj.weight", "pos_embed.proj.weight"} <= names
    assert "transformer_blocks.0.adaLN_modulation.1.bias" not in names


def _weights(module: Any) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_a_diffusers_folder_and_a_bare_file_load_the_same_weights(models_dir: Path) -> None:
    from diffusers import SD3ControlNetModel

    folder = tiny_controlnet("sd3")
    reference = SD3ControlNetModel.from_pretrained(str(folder), local_files_only=True)
    target = models_dir / "controlnet" / "sd3-diffusers"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(folder / "diffusion_pytorch_model.safetensors", target / "cn.safetensors")
    shutil.copy(folder / "config.json", target / "config.json")
    shutil.copy(folder / "diffusion_pytorch_model.safetensors", models_dir / "controlnet" / "bare-sd3.safetensors")
    for name in (SD3, "sd3-diffusers/cn.safetensors", "bare-sd3.safetensors"):
        with cn.load_controlnet(name).module.use() as module:
            got, want = _weights(module), _weights(reference)
            assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got), name
            if name != "bare-sd3.safetensors":  # the heads are no weight: only a config says 2 x 16
                assert module.config.num_attention_heads == reference.config.num_attention_heads
    assert ControlNetLoader.VALIDATE_INPUTS("bare-sd3.safetensors") is True


@pytest.mark.parametrize(("keys", "what"), [
    (("pos_embed_input.proj.weight", "controlnet_blocks.0.weight", "transformer_blocks.0.adaLN_modulation.1.bias"),
     "Stability SD3.5 ControlNet in its original layout"),
    (("controlnet_x_embedder.weight", "controlnet_blocks.0.weight"), "Flux or Qwen-Image"),
])
def test_other_transformer_controlnets_are_refused_naming_what_they_are(models_dir: Path, keys: tuple[str, ...],
                                                                       what: str) -> None:
    from safetensors.torch import save_file

    (models_dir / "controlnet").mkdir(exist_ok=True)
    save_file({k: torch.zeros(1, 1) for k in keys}, str(models_dir / "controlnet" / "other.safetensors"))
    answer = ControlNetLoader.VALIDATE_INPUTS("other.safetensors")
    assert isinstance(answer, str) and what in answer and "SD3ControlNetModel" in answer


# ----------------------------------------------------------------------------- applying


def test_apply_controlnet_sd3_is_comfyuis_deprecated_node_with_a_required_vae() -> None:
    spec = REGISTRY.get("ControlNetApplySD3")
    assert [p.name for p in spec.inputs] == ["positive", "negative", "control_net", "vae", "image", "strength",
                                             "start_percent", "end_percent"]
    assert all(p.required for p in spec.inputs) and ControlNetApplySD3.DEPRECATED
    assert spec.display_name == "Apply Controlnet with VAE" and spec.category == "conditioning/controlnet"


def test_a_missing_vae_is_an_error_naming_the_input_and_the_fix(sd3: Any) -> None:
    _, _, pos, neg, net = sd3
    with pytest.raises(ValueError, match=r"input 'vae' is not connected.*SD3 ControlNet.*connect the checkpoint's VAE"):
        ControlNetApplyAdvanced().apply_controlnet(pos, neg, net, _hint(), 1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="needs a VAE"):
        ControlNetApply().apply_controlnet(pos, net, _hint(), 1.0)


def test_strength_zero_and_start_percent_one_are_exactly_no_controlnet(sd3: Any, base: torch.Tensor) -> None:
    model, vae, pos, neg, net = sd3
    p, n = ControlNetApplySD3().apply_controlnet(pos, neg, net, _hint(), 0.0, 0.0, 1.0, vae)
    assert p is pos and n is neg
    p, n = ControlNetApplyAdvanced().apply_controlnet(pos, neg, net, _hint(), 1.0, 1.0, 1.0, vae)
    assert torch.equal(_render(model, p, n), base)


def test_end_percent_zero_controls_only_the_first_step_as_comfyuis_flow_sampling(sd3: Any) -> None:
    """On a flow model 0 % is sigma 1 (ComfyUI's ModelSamplingDiscreteFlow.percent_to_sigma), not
    infinity as on SD1: the simple schedule's first sigma is 1, so that one call is controlled."""
    model, vae, pos, neg, net = sd3
    seen: list[float] = []
    with net.module.use() as module:
        hook = module.register_forward_hook(lambda m, args, kwargs, out: seen.append(float(kwargs["timestep"][0])),
                                            with_kwargs=True)
    try:
        _render(model, *ControlNetApplyAdvanced().apply_controlnet(pos, neg, net, _hint(), 1.0, 0.0, 0.0, vae))
    finally:
        hook.remove()
    assert seen == [1000.0]


def test_the_sd3_controlnet_changes_the_image_and_its_hint_and_window_matter(sd3: Any, base: torch.Tensor) -> None:
    model, vae, pos, neg, net = sd3
    first = _render(model, *cn.apply_controlnet_advanced(pos, neg, net, _hint(0), 1.0, 0.0, 1.0, vae))
    again = _render(model, *cn.apply_controlnet_advanced(pos, neg, net, _hint(0), 1.0, 0.0, 1.0, vae))
    other = _render(model, *cn.apply_controlnet_advanced(pos, neg, net, _hint(1), 1.0, 0.0, 1.0, vae))
    late = _render(model, *cn.apply_controlnet_advanced(pos, neg, net, _hint(0), 1.0, 0.5, 1.0, vae))
    assert torch.equal(first, again) and torch.isfinite(first).all()
    for x in (other, late, base):
        assert not torch.allclose(first, x, atol=1e-3)
    assert not torch.allclose(late, base, atol=1e-3)


def test_one_call_equals_diffusers_sd3_controlnet_and_transformer_called_directly(sd3: Any) -> None:
    from vortex_jupyter.nodes.diffusion import conds as cmod
    from vortex_jupyter.nodes.diffusion.model_sampling import ModelSampling
    from vortex_jupyter.nodes.diffusion.transformer_apply import sd3_apply

    model, vae, pos, _, net = sd3
    ms = ModelSampling.from_config(model.scheduler_config)
    hint2 = _hint(2, 32)  # a smaller hint: resized (nearest-exact) to the latent x 8
    chained, _ = cn.apply_controlnet_advanced(pos, pos, net, _hint(), 0.7, 0.0, 1.0, vae)
    chained, _ = cn.apply_controlnet_advanced(chained, pos, net, hint2, 0.4, 0.0, 1.0, vae)
    sides = {"positive": cmod.prepare(chained, "positive")}
    cmod.add_model_inputs(sides, "sd3")
    [entry] = cmod.process(ms, sides, (1, 16, 8, 8), "cpu")["positive"]
    x = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(0))
    sigma, ctx, pooled = torch.tensor([0.6]), entry["cross_attn"], entry["added"]
    nchw = [torch.as_tensor(h).permute(0, 3, 1, 2).contiguous() for h in (_hint(), hint2)]
    nchw[1] = torch.nn.functional.interpolate(nchw[1], size=(64, 64), mode="nearest-exact")
    with model.unet.use() as transformer, net.module.use() as control, vae.vae.use() as ae:
        apply: Any = sd3_apply(transformer, ms)  # ApplyModel's type leaves out the control keyword
        ours = apply(x, sigma, ctx, pooled, control=entry["control"])
        t = sigma * 1000
        # ComfyUI (and diffusers' pipeline for these nets): the mean latent x scaling, no shift
        conds = [ae.encode(h * 2 - 1).latent_dist.mode() * vae.scaling_factor for h in nchw]
        zeros = torch.zeros_like(pooled)  # ComfyUI zeroes y; diffusers' force_zeros_for_pooled_projection
        [a], [b] = (control(hidden_states=x, controlnet_cond=c, conditioning_scale=s, encoder_hidden_states=ctx,
                            pooled_projections=zeros, timestep=t, return_dict=False)[0]
                    for c, s in zip(conds, (0.7, 0.4)))
        out = transformer(hidden_states=x, encoder_hidden_states=ctx, pooled_projections=pooled, timestep=t,
                          block_controlnet_hidden_states=[a + b], return_dict=False)[0]
    assert torch.equal(ours, ms.calculate_denoised(sigma, out, x))


def test_the_joint_block_residuals_spread_as_comfyuis_mmdit_controlnet() -> None:
    from vortex_jupyter.nodes.diffusion.controlnet_sd3 import merge, spread

    a, b = torch.ones(1), torch.full((1,), 2.0)
    assert spread([a, b], 24) == [a] * 12 + [b] * 11  # each depth // n times, the last once less
    assert spread([a], 2) == [a]
    merged = merge(spread([a], 4), spread([b, b], 6))
    assert [float(m[0]) for m in merged if m is not None] == [3.0, 3.0, 3.0, 2.0, 2.0]


# ----------------------------------------------------------------------------- wrong families


def test_an_sd1_controlnet_on_sd3_and_an_sd3_controlnet_on_sd1_fail_naming_both_families(
        sd3: Any, tiny_handles: Any, conds: Any) -> None:
    model, _, pos, neg, net = sd3
    sd1_net = cn.load_controlnet(SD1)
    p, n = cn.apply_controlnet_advanced(pos, neg, sd1_net, _hint(), 1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match=rf"is an SD1 ControlNet but the MODEL is SD3.*{SD3}"):
        _render(model, p, n)
    p, n = cn.apply_controlnet_advanced(conds[0], conds[1], net, _hint(), 1.0, 0.0, 1.0, tiny_handles[2])
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    with pytest.raises(ValueError, match=rf"is an SD3 ControlNet but the MODEL is SD1.*{SD1}"):
        sample(tiny_handles[0], p, n, latent, SampleSettings(1, 2, 7.0, "euler", "normal"))
