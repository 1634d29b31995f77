"""ControlNets (issue 11): the tiny SD1/SDXL ControlNets, ComfyUI's five nodes, and the control's
effect on sampling: strength, the start/end window, chaining, batching, one call against diffusers,
both file layouts, diff ControlNets, wrong-family errors, and ``examples/controlnet.json``."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import vortex_jupyter as vx
from vortex_jupyter.errors import ModelError
from vortex_jupyter.nodes.diffusion import controlnet as cn
from vortex_jupyter.nodes.diffusion.controlnet_nodes import (
    ControlNetApply,
    ControlNetApplyAdvanced,
    ControlNetLoader,
    DiffControlNetLoader,
    SetUnionControlNetType,
)
from vortex_jupyter.nodes.diffusion.sampling import SampleSettings, sample
from vortex_jupyter.nodes.diffusion.tiny_controlnet import TINY_CONTROLNET_NAMES, tiny_controlnet
from vortex_jupyter.nodes.registry import REGISTRY

from .conftest import digest, example_image, rerun_with_new_seed

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "controlnet.json"
SD1, SDXL = TINY_CONTROLNET_NAMES["sd1"], TINY_CONTROLNET_NAMES["sdxl"]
LATENT = {"samples": torch.zeros(1, 4, 8, 8)}


def _hint(seed: int = 0, size: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).random((1, size, size, 3), dtype=np.float32)


def _render(model: Any, pos: Any, neg: Any, steps: int = 4, seed: int = 1) -> torch.Tensor:
    return sample(model, pos, neg, LATENT, SampleSettings(seed, steps, 7.0, "euler", "normal"))["samples"]


@pytest.fixture(scope="module")
def sd1(tiny_handles: Any, conds: Any) -> Any:
    net = cn.load_controlnet(SD1)
    return tiny_handles[0], conds[0], conds[1], net


@pytest.fixture(scope="module")
def base(sd1: Any) -> torch.Tensor:
    model, pos, neg, _ = sd1
    return _render(model, pos, neg)


def _steps_seen(net: Any) -> tuple[list[float], Any]:
    """Timesteps the ControlNet module is called at (a forward hook; remove it after)."""
    seen: list[float] = []
    with net.module.use() as module:
        hook = module.register_forward_hook(lambda m, args, out: seen.append(float(args[1].flatten()[0])))
    return seen, hook


# ----------------------------------------------------------------------------- the nodes


def test_the_nodes_have_comfyuis_inputs_widget_order_defaults_and_outputs() -> None:
    expect = {
        "ControlNetLoader": (["control_net_name"], ["CONTROL_NET"]),
        "DiffControlNetLoader": (["model", "control_net_name"], ["CONTROL_NET"]),
        "ControlNetApply": (["conditioning", "control_net", "image", "strength"], ["CONDITIONING"]),
        "ControlNetApplyAdvanced": (["positive", "negative", "control_net", "image", "strength", "start_percent",
                                     "end_percent", "vae"], ["CONDITIONING", "CONDITIONING"]),
        "SetUnionControlNetType": (["control_net", "type"], ["CONTROL_NET"]),
    }
    for name, (inputs, outputs) in expect.items():
        spec = REGISTRY.get(name)
        assert [p.name for p in spec.inputs] == inputs and [o.type for o in spec.outputs] == outputs, name
        assert spec.heavy
    adv = ControlNetApplyAdvanced.INPUT_TYPES()
    assert [adv["required"][k][1]["default"] for k in ("strength", "start_percent", "end_percent")] == [1.0, 0.0, 1.0]
    assert adv["required"]["strength"][1]["max"] == 10.0 and adv["required"]["end_percent"][1]["step"] == 0.001
    assert list(adv["optional"]) == ["vae"] and ControlNetApplyAdvanced.RETURN_NAMES == ("positive", "negative")
    assert ControlNetApply.DEPRECATED and ControlNetApply.CATEGORY == "conditioning/controlnet"
    types = SetUnionControlNetType.INPUT_TYPES()["required"]["type"][0]
    assert types == ["auto", *cn.UNION_TYPES] and cn.UNION_TYPES["canny/lineart/anime_lineart/mlsd"] == 3
    assert ControlNetLoader.INPUT_TYPES()["required"]["control_net_name"][0][:2] == [SD1, SDXL]


def test_validation_reports_a_missing_file_and_a_file_that_is_no_controlnet(models_dir: Path) -> None:
    from safetensors.torch import save_file

    from vortex_jupyter.errors import MissingFile

    assert ControlNetLoader.VALIDATE_INPUTS(SD1) is True
    assert isinstance(ControlNetLoader.VALIDATE_INPUTS("nope.safetensors"), MissingFile)
    (models_dir / "controlnet").mkdir(exist_ok=True)
    save_file({"lora_controlnet": torch.zeros(1)}, str(models_dir / "controlnet" / "control-lora.safetensors"))
    answer = ControlNetLoader.VALIDATE_INPUTS("control-lora.safetensors")
    assert isinstance(answer, str) and "Control-LoRA" in answer and "SD1 or SDXL ControlNet" in answer


def test_the_controlnet_is_its_own_arbiter_entry(sd1: Any) -> None:
    from vortex_jupyter.workers.arbiter import MemoryArbiter

    arb = MemoryArbiter({"cpu": 2**30})
    net = cn.load_controlnet(SD1, arbiter=arb)
    assert net.family == "sd1" and repr(net) == f"<CONTROL_NET {SD1} (SD1)>"
    with net.module.use():
        pass
    [key] = arb.stats()["entries"]
    assert key.endswith("|controlnet") and net.module.loads == 1


# ----------------------------------------------------------------------------- sampling


def test_strength_zero_is_exactly_no_controlnet(sd1: Any, base: torch.Tensor) -> None:
    model, pos, neg, net = sd1
    p, n = ControlNetApplyAdvanced().apply_controlnet(pos, neg, net, _hint(), 0.0, 0.0, 1.0)
    assert p is pos and n is neg
    [old] = ControlNetApply().apply_controlnet(pos, net, _hint(), 0.0)
    assert old is pos
    assert torch.equal(_render(model, p, n), base)


def test_a_controlnet_changes_the_result_and_its_hint_matters(sd1: Any, base: torch.Tensor) -> None:
    model, pos, neg, net = sd1
    first = _render(model, *cn.apply_controlnet_advanced(pos, neg, net, _hint(0), 1.0, 0.0, 1.0))
    again = _render(model, *cn.apply_controlnet_advanced(pos, neg, net, _hint(0), 1.0, 0.0, 1.0))
    other = _render(model, *cn.apply_controlnet_advanced(pos, neg, net, _hint(1), 1.0, 0.0, 1.0))
    assert torch.equal(first, again) and torch.isfinite(first).all()
    assert not torch.allclose(first, base, atol=1e-3) and not torch.allclose(first, other, atol=1e-3)
    # the input conditioning is not edited: it still samples the plain image
    assert all("control" not in o for _, o in pos) and torch.equal(_render(model, pos, neg), base)


def test_the_start_end_window_is_respected(sd1: Any, base: torch.Tensor) -> None:
    from vortex_jupyter.nodes.diffusion.model_sampling import ModelSampling
    from vortex_jupyter.nodes.diffusion.schedules import ksampler_sigmas

    model, pos, neg, net = sd1
    seen, hook = _steps_seen(net)
    try:
        never = _render(model, *cn.apply_controlnet_advanced(pos, neg, net, _hint(), 1.0, 0.0, 0.0))
        assert torch.equal(never, base) and seen == []  # end_percent 0: the control never acts
        late = _render(model, *cn.apply_controlnet_advanced(pos, neg, net, _hint(), 1.0, 0.5, 1.0))
    finally:
        hook.remove()
    ms = ModelSampling.from_config(model.scheduler_config)
    sigmas = ksampler_sigmas(ms, "euler", "normal", 4, 1.0)[:-1]
    edge = ms.percent_to_sigma(0.5)
    want = [float(ms.timestep(s.reshape(1))) for s in sigmas if float(s) <= edge]
    assert 0 < len(want) < 4 and seen == pytest.approx(want)  # one batched call per step, late steps only
    full = _render(model, *cn.apply_controlnet_advanced(pos, neg, net, _hint(), 1.0, 0.0, 1.0))
    assert not torch.allclose(late, base, atol=1e-4) and not torch.allclose(late, full, atol=1e-4)


def _ready(pos: Any, ms: Any, family: str = "sd1", neg: Any = None) -> dict[str, Any]:
    from vortex_jupyter.nodes.diffusion import conds as cmod

    sides = {"positive": cmod.prepare(pos, "positive")}
    if neg is not None:
        sides["negative"] = cmod.prepare(neg, "negative")
    cmod.add_model_inputs(sides, family)
    return cmod.process(ms, sides, (1, 4, 8, 8), "cpu")


def test_one_call_equals_diffusers_controlnet_and_unet_with_residuals_computed_directly(sd1: Any) -> None:
    from vortex_jupyter.nodes.diffusion.guiders import unet_apply
    from vortex_jupyter.nodes.diffusion.model_sampling import ModelSampling

    model, pos, _, net = sd1
    ms = ModelSampling.from_config(model.scheduler_config)
    hint2 = _hint(2, 32)  # a smaller hint: resized (nearest-exact) to the latent x 8
    chained, _ = cn.apply_controlnet_advanced(pos, pos, net, _hint(), 0.7, 0.0, 1.0)
    chained, _ = cn.apply_controlnet_advanced(chained, pos, net, hint2, 0.4, 0.0, 1.0)
    [entry] = _ready(chained, ms)["positive"]
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    sigma, ctx = torch.tensor([2.5]), entry["cross_attn"]
    with model.unet.use() as unet, net.module.use() as control:
        ours = unet_apply(unet, ms)(x, sigma, ctx, None, control=entry["control"])
        xc, t = ms.calculate_input(sigma, x), ms.timestep(sigma).float()  # x / sqrt(sigma^2 + 1)
        nchw = [torch.as_tensor(h).permute(0, 3, 1, 2).contiguous() for h in (_hint(), hint2)]
        big = torch.nn.functional.interpolate(nchw[1], size=(64, 64), mode="nearest-exact")
        d1, m1 = control(xc, t, ctx, nchw[0], conditioning_scale=0.7, return_dict=False)
        d2, m2 = control(xc, t, ctx, big, conditioning_scale=0.4, return_dict=False)
        eps = unet(xc, t, encoder_hidden_states=ctx, down_block_additional_residuals=[a + b for a, b in zip(d1, d2)],
                   mid_block_additional_residual=m1 + m2, return_dict=False)[0]
    assert torch.equal(ours, ms.calculate_denoised(sigma, eps, x))


def test_entries_with_different_controls_never_share_a_batched_call(sd1: Any) -> None:
    from vortex_jupyter.nodes.diffusion import conds as cmod
    from vortex_jupyter.nodes.diffusion.model_sampling import ModelSampling

    model, pos, neg, net = sd1
    ms = ModelSampling.from_config(model.scheduler_config)
    calls: list[tuple[int, Any]] = []

    def apply(x: Any, sigma: Any, context: Any, added: Any = None, control: Any = None) -> Any:
        calls.append((x.shape[0], control))
        return x

    def run(p: Any, n: Any) -> list[tuple[int, Any]]:
        calls.clear()
        ready = _ready(p, ms, neg=n)
        cmod.calc_cond_batch(apply, [ready["positive"], ready["negative"]], torch.zeros(1, 4, 8, 8), torch.tensor([1.0]))
        return list(calls)

    assert [b for b, c in run(pos, neg)] == [2]  # no control: one call for both prompts
    controlled, _ = cn.apply_controlnet_advanced(pos, neg, net, _hint(), 1.0, 0.0, 1.0)
    [(b1, c1), (b2, c2)] = run(controlled, neg)  # only the positive has it: two calls
    assert {b1, b2} == {1} and (c1 is None) != (c2 is None)
    p, n = cn.apply_controlnet_advanced(pos, neg, net, _hint(), 1.0, 0.0, 1.0)
    [(batch, control)] = run(p, n)  # Advanced: one object for both sides, one call
    assert batch == 2 and isinstance(control, cn.RunControl)
    [(batch, control)] = run(ControlNetApply().apply_controlnet(pos, net, _hint(), 1.0)[0], neg)
    assert batch == 2 and control is not None  # the old node also controls the negative (apply_to_uncond)


def test_the_hint_follows_comfyuis_resize_and_batch_broadcast() -> None:
    h = torch.arange(3.0).reshape(3, 1, 1, 1)
    assert cn.broadcast_hint(h[:1], 4, 2) is not None and cn.broadcast_hint(h[:1], 4, 2).shape[0] == 1
    assert cn.broadcast_hint(h[:2], 4, 2).flatten().tolist() == [0, 1, 0, 1]
    assert cn.broadcast_hint(h, 4, 2).flatten().tolist() == [0, 1, 0, 1]  # per entry: the first 2
    assert cn.broadcast_hint(h[:2], 6, 2).flatten().tolist() == [0, 1, 0, 0, 1, 0]  # tiled to 3, twice


def test_an_sdxl_controlnet_samples_with_vortex_tiny_sdxl(models_dir: Path) -> None:
    from vortex_jupyter.nodes.diffusion.loaders import load_checkpoint
    from vortex_jupyter.nodes.diffusion.text import encode_text

    model, clip, _ = load_checkpoint("vortex-tiny-sdxl")
    pos, neg = encode_text(clip, "a red fox"), encode_text(clip, "")
    net = ControlNetLoader().load_controlnet(SDXL)[0]
    assert net.family == "sdxl"
    plain = _render(model, pos, neg, steps=3)
    first = _render(model, *cn.apply_controlnet_advanced(pos, neg, net, _hint(), 1.0, 0.0, 1.0), steps=3)
    again = _render(model, *cn.apply_controlnet_advanced(pos, neg, net, _hint(), 1.0, 0.0, 1.0), steps=3)
    assert torch.equal(first, again) and torch.isfinite(first).all()
    assert not torch.allclose(first, plain, atol=1e-4)
    with pytest.raises(ValueError, match=r"input 'positive': the ControlNet 'vortex-tiny-controlnet.safetensors' "
                                         r"is an SD1 ControlNet but the MODEL is SDXL "
                                         r"\(fix: .*control_net_name.*'vortex-tiny-sdxl-controlnet.safetensors'"):
        _render(model, *cn.apply_controlnet_advanced(pos, neg, cn.load_controlnet(SD1), _hint(), 1.0, 0.0, 1.0))


def test_a_controlnet_of_the_wrong_family_fails_at_the_sampler_naming_the_apply_node(
        models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VORTEX_INPUT_DIR", str(ROOT / "examples" / "images"))
    g = vx.load(EXAMPLE)
    g.nodes["10"].params["control_net_name"] = SDXL
    run = g.run(executor="inline")
    assert run.status != "ok"
    message = str(run.errors)
    assert "applied by node 11" in message and "is an SDXL ControlNet but the MODEL is SD1" in message
    assert SD1 in message


# ----------------------------------------------------------------------------- files


def _weights(module: Any) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_the_single_file_the_folder_and_a_diffusers_layout_file_hold_identical_weights(models_dir: Path) -> None:
    from diffusers import ControlNetModel
    from safetensors import safe_open
    from safetensors.torch import save_file

    folder = tiny_controlnet("sd1")
    reference = _weights(ControlNetModel.from_pretrained(str(folder), local_files_only=True))
    with safe_open(str(folder.with_name(SD1)), framework="pt") as f:  # the original layout
        names = list(f.keys())  # safe_open is no dict
        assert all(k.startswith("control_model.") for k in names) and "control_model.zero_convs.0.0.weight" in names
        ldm_state = {k: f.get_tensor(k) for k in names}
    target = models_dir / "controlnet"
    (target / "diffusers").mkdir(parents=True, exist_ok=True)
    shutil.copy(folder / "diffusion_pytorch_model.safetensors", target / "diffusers" / "cn.safetensors")
    shutil.copy(folder / "config.json", target / "diffusers" / "config.json")
    shutil.copy(folder / "diffusion_pytorch_model.safetensors", target / "bare-diffusers.safetensors")
    save_file(ldm_state, str(target / "bare-ldm.safetensors"))  # no metadata: the config is read off the shapes
    for name in (SD1, "diffusers/cn.safetensors", "bare-diffusers.safetensors", "bare-ldm.safetensors"):
        with cn.load_controlnet(name).module.use() as module:
            got = _weights(module)
        assert got.keys() == reference.keys() and all(torch.equal(got[k], reference[k]) for k in got), name
    assert ControlNetLoader.VALIDATE_INPUTS("bare-ldm.safetensors") is True


def test_a_diff_controlnet_needs_the_model_of_diffcontrolnetloader(sd1: Any, models_dir: Path) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    from vortex_jupyter.nodes.diffusion.ldm import unet_to_ldm

    model, _, _, net = sd1
    with model.unet.use() as unet:
        base = {k.split("model.diffusion_model.", 1)[1]: v for k, v in unet_to_ldm(unet.state_dict(),
                                                                                     dict(unet.config)).items()}
    with safe_open(str(tiny_controlnet("sd1").with_name(SD1)), framework="pt") as f:
        meta = f.metadata()
        state = {k: f.get_tensor(k) for k in list(f.keys())}
    diffed = 0
    for key in list(state):
        name = key.removeprefix("control_model.")
        if name in base and base[name].shape == state[key].shape:
            state[key], diffed = state[key] - base[name], diffed + 1
    state["difference"] = torch.zeros(1)
    (models_dir / "controlnet").mkdir(exist_ok=True)
    save_file(state, str(models_dir / "controlnet" / "diff-cn.safetensors"), metadata=meta)
    assert diffed > 50
    with pytest.raises(ModelError, match="diff ControlNet") as err:
        ControlNetLoader().load_controlnet("diff-cn.safetensors")
    assert "DiffControlNetLoader" in (err.value.hint or "")
    diff = DiffControlNetLoader().load_controlnet(model, "diff-cn.safetensors")[0]
    with diff.module.use() as got, net.module.use() as want:
        a, b = got.state_dict(), want.state_dict()
        assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_the_tiny_controlnets_build_byte_identical_files_offline(tmp_path: Path) -> None:
    from vortex_jupyter.nodes.diffusion.tiny_controlnet import tiny_controlnet_single_file

    for family in ("sd1", "sdxl"):
        a = tiny_controlnet_single_file(family, tmp_path / "a")
        b = tiny_controlnet_single_file(family, tmp_path / "b")
        assert a.name == TINY_CONTROLNET_NAMES[family] and a.read_bytes() == b.read_bytes()
        assert (a.parent / a.name.removesuffix(".safetensors") / "config.json").is_file()


def test_set_union_type_sets_comfyuis_control_type_on_a_copy(sd1: Any) -> None:
    net = sd1[3]
    canny = SetUnionControlNetType().set_controlnet_type(net, "canny/lineart/anime_lineart/mlsd")[0]
    auto = SetUnionControlNetType().set_controlnet_type(canny, "auto")[0]
    assert canny.extra == {"control_type": [3]} and auto.extra == {"control_type": []} and net.extra == {}
    assert canny.module is net.module


# ----------------------------------------------------------------------------- the example


def _cli(out: Path, models: Path, *extra: str) -> str:
    return digest(example_image(EXAMPLE, out, models, "-i", str(ROOT / "examples" / "images"), *extra))


def test_the_example_runs_through_the_cli_the_same_in_two_processes(tmp_path: Path, models_dir: Path) -> None:
    assert _cli(tmp_path / "a", models_dir) == _cli(tmp_path / "b", models_dir)


def test_a_seed_change_reruns_only_sampler_decoder_and_saver(tmp_path: Path, models_dir: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VORTEX_OUTPUT_DIR", str(tmp_path))
    monkeypatch.setenv("VORTEX_INPUT_DIR", str(ROOT / "examples" / "images"))
    g = vx.load(EXAMPLE)
    assert {n.type for n in g.nodes.values()} >= {"LoadImage", "Canny", "ControlNetLoader", "ControlNetApplyAdvanced"}
    g.nodes["3"].params["seed"] = 301
    started, _, second = rerun_with_new_seed(g)
    assert started == {"3", "8", "9"}
    g.nodes["11"].params["strength"] = 0.0  # no control: the plain txt2img image of that seed
    plain = g.run(executor="inline")
    assert plain.status == "ok" and not np.array_equal(plain.outputs["8"][0], second.outputs["8"][0])
