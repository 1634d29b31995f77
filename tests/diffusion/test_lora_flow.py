"""LoraLoader on the tiny SD3 and Flux models (issue 11) with LoRAs the tests write in the layouts
people share: diffusers/peft, kohya (sd-scripts), OneTrainer, ComfyUI/BFL names. Expected weights
are computed here by hand, ``W + strength * alpha / rank * up @ down`` on the rows of the diffusers
weight that ComfyUI's offsets into the fused original weight name (comfy/utils.py flux_to_diffusers,
mmdit_to_diffusers): the tiny models are 32 wide, so a qkv's rows are q 0:32, k 32:64, v 64:96 and
Flux's single-block linear1 adds the MLP input at 96:224."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from vortex_jupyter.errors import ModelError
from vortex_jupyter.nodes.diffusion.loader_nodes import LoraLoader, LoraLoaderModelOnly
from vortex_jupyter.nodes.diffusion.loaders import load_checkpoint
from vortex_jupyter.nodes.diffusion.sampling import SampleSettings, sample
from vortex_jupyter.nodes.diffusion.text import encode_text
from vortex_jupyter.nodes.diffusion.vae import vae_decode

QKV = {"q": slice(0, 32), "k": slice(32, 64), "v": slice(64, 96)}
LINEAR1 = {"attn.to_q": slice(0, 32), "attn.to_k": slice(32, 64), "attn.to_v": slice(64, 96),
           "proj_mlp": slice(96, 224)}
Tensors = dict[str, torch.Tensor]


@pytest.fixture(scope="module")
def flux(models_dir: Path) -> tuple[Any, Any, Any]:
    return load_checkpoint("vortex-tiny-flux")


@pytest.fixture(scope="module")
def sd3(models_dir: Path) -> tuple[Any, Any, Any]:
    return load_checkpoint("vortex-tiny-sd3")


def _save(models_dir: Path, name: str, state: Tensors) -> str:
    (models_dir / "loras").mkdir(parents=True, exist_ok=True)
    save_file({k: v.clone().contiguous() for k, v in state.items()}, str(models_dir / "loras" / name))
    return name


def _weights(component: Any) -> Tensors:
    with component.use() as module:
        return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _lowrank(seed: int, out_f: int, in_f: int, rank: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(rank, in_f, generator=gen), torch.randn(out_f, rank, generator=gen)


def _kohya(name: str, down: torch.Tensor, up: torch.Tensor, alpha: float | None = None) -> Tensors:
    out = {f"{name}.lora_down.weight": down, f"{name}.lora_up.weight": up}
    return out | ({} if alpha is None else {f"{name}.alpha": torch.tensor(alpha)})


def _peft(name: str, down: torch.Tensor, up: torch.Tensor) -> Tensors:
    return {f"{name}.lora_A.weight": down, f"{name}.lora_B.weight": up}


def _flat(prefix: str, state: Tensors, strip: str = "") -> Tensors:
    """Diffusers-named pairs renamed the OneTrainer way: ``prefix`` + the module name with ``_``."""
    out: Tensors = {}
    for key, value in state.items():
        module, _, suffix = key.removeprefix(strip).partition(".lora_")
        out[f"{prefix}{module.replace('.', '_')}.lora_{suffix}"] = value
    return out


def _assert_patched(base: Tensors, new: Tensors, want: Tensors) -> None:
    """``want``'s weights changed to exactly those values; every other tensor is untouched."""
    changed = {k for k in base if not torch.equal(base[k], new[k])}
    assert changed == set(want)
    for key, value in want.items():
        torch.testing.assert_close(new[key], value, rtol=1e-5, atol=1e-5, msg=key)


def _assert_same(a: Tensors, b: Tensors) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)


# ------------------------------------------------------------------------- Flux


def _flux_pairs() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    return {"img_qkv": _lowrank(1, 96, 32), "txt_qkv": _lowrank(2, 96, 32), "linear1": _lowrank(3, 224, 32),
            "final": _lowrank(4, 64, 32), "mlp": _lowrank(5, 128, 32)}


def test_kohya_flux_lora_updates_each_split_diffusers_weight_with_its_row_block(
        flux: tuple[Any, Any, Any], models_dir: Path) -> None:
    p = _flux_pairs()
    name = _save(models_dir, "flux-kohya.safetensors", {
        **_kohya("lora_unet_double_blocks_0_img_attn_qkv", *p["img_qkv"], alpha=2.0),  # scale 0.5
        **_kohya("lora_unet_double_blocks_0_txt_attn_qkv", *p["txt_qkv"], alpha=8.0),  # scale 2
        **_kohya("lora_unet_single_blocks_1_linear1", *p["linear1"]),  # no alpha: scale 1
        **_kohya("lora_unet_final_layer_adaLN_modulation_1", *p["final"], alpha=4.0),
        **_kohya("lora_unet_double_blocks_0_img_mlp_0", *p["mlp"], alpha=1.0)})
    model, clip, _ = flux
    base = _weights(model.unet)
    new_model, new_clip = LoraLoader().load_lora(model, clip, name, 0.75, 1.0)
    assert new_clip is clip, "no text encoder weights: the CLIP is returned as it is"
    s = 0.75

    def full(key: str) -> torch.Tensor:
        down, up = p[key]
        return up @ down

    want: Tensors = {}
    for part, rows in QKV.items():
        want[f"transformer_blocks.0.attn.to_{part}.weight"] = \
            base[f"transformer_blocks.0.attn.to_{part}.weight"] + s * 0.5 * full("img_qkv")[rows]
        want[f"transformer_blocks.0.attn.add_{part}_proj.weight"] = \
            base[f"transformer_blocks.0.attn.add_{part}_proj.weight"] + s * 2.0 * full("txt_qkv")[rows]
    for part, rows in LINEAR1.items():
        key = f"single_transformer_blocks.1.{part}.weight"
        want[key] = base[key] + s * full("linear1")[rows]
    # BFL's final modulation is (shift, scale), diffusers' norm_out (scale, shift)
    final = full("final")
    want["norm_out.linear.weight"] = base["norm_out.linear.weight"] + s * torch.cat([final[32:], final[:32]])
    want["transformer_blocks.0.ff.net.0.proj.weight"] = \
        base["transformer_blocks.0.ff.net.0.proj.weight"] + s * 0.25 * full("mlp")
    _assert_patched(base, _weights(new_model.unet), want)
    _assert_same(_weights(model.unet), base)  # the input MODEL is never mutated


def _flux_layouts() -> dict[str, Tensors]:
    """One LoRA (the double block's image qkv, single block 1's linear1, the final modulation),
    in each layout. alpha 2 / rank 4 where the layout carries alpha, else the up matrix halved."""
    p = _flux_pairs()
    (qd, qu), (ld, lu), (fd, fu) = p["img_qkv"], p["linear1"], p["final"]
    diffusers: Tensors = {}
    for part, rows in QKV.items():
        diffusers |= _peft(f"transformer.transformer_blocks.0.attn.to_{part}", qd, qu[rows] / 2)
    for part, rows in LINEAR1.items():
        diffusers |= _peft(f"transformer.single_transformer_blocks.1.{part}", ld, lu[rows] / 2)
    diffusers |= _peft("transformer.norm_out.linear", fd, torch.cat([fu[32:], fu[:32]]) / 2)
    return {
        "kohya": {**_kohya("lora_unet_double_blocks_0_img_attn_qkv", qd, qu, 2.0),
                  **_kohya("lora_unet_single_blocks_1_linear1", ld, lu, 2.0),
                  **_kohya("lora_unet_final_layer_adaLN_modulation_1", fd, fu, 2.0)},
        "bfl": {**_peft("diffusion_model.double_blocks.0.img_attn.qkv", qd, qu / 2),
                **_peft("diffusion_model.single_blocks.1.linear1", ld, lu / 2),
                **_peft("diffusion_model.final_layer.adaLN_modulation.1", fd, fu / 2)},
        "diffusers": diffusers,
        "onetrainer": _flat("lora_transformer_", diffusers, strip="transformer."),
        "comfy_linear1_qkv": {**_peft("diffusion_model.double_blocks.0.img_attn.qkv", qd, qu / 2),
                              **_peft("diffusion_model.single_blocks.1.linear1_qkv", ld, lu[:96] / 2),
                              **_peft("transformer.single_transformer_blocks.1.proj_mlp", ld, lu[96:] / 2),
                              **_peft("diffusion_model.final_layer.adaLN_modulation.1", fd, fu / 2)},
    }


def test_every_flux_layout_of_one_lora_patches_identical_weights(flux: tuple[Any, Any, Any],
                                                                  models_dir: Path) -> None:
    model = flux[0]
    patched = {}
    for layout, state in _flux_layouts().items():
        name = _save(models_dir, f"flux-{layout}.safetensors", state)
        patched[layout] = _weights(LoraLoaderModelOnly().load_lora_model_only(model, name, 1.5)[0].unet)
    base = _weights(model.unet)
    assert len({k for k in base if not torch.equal(base[k], patched["kohya"][k])}) == 8  # 3 + 4 + 1
    for weights in patched.values():
        _assert_same(weights, patched["kohya"])


def test_diffusers_own_kohya_converter_agrees_with_our_names(flux: tuple[Any, Any, Any], models_dir: Path) -> None:
    from diffusers.loaders.lora_conversion_utils import _convert_kohya_flux_lora_to_diffusers

    p = _flux_pairs()  # diffusers' converter hard-codes FLUX.1's linear1 sizes: double blocks only
    kohya = {**_kohya("lora_unet_double_blocks_0_img_attn_qkv", *p["img_qkv"], alpha=2.0),
             **_kohya("lora_unet_double_blocks_0_txt_attn_qkv", *p["txt_qkv"], alpha=1.0),
             **_kohya("lora_unet_double_blocks_0_img_mlp_0", *p["mlp"], alpha=8.0)}
    converted = _convert_kohya_flux_lora_to_diffusers(dict(kohya))
    assert all(k.startswith("transformer.transformer_blocks.0.") for k in converted)
    model = flux[0]
    ours = LoraLoaderModelOnly().load_lora_model_only(
        model, _save(models_dir, "flux-oracle-kohya.safetensors", kohya), 1.0)[0]
    theirs = LoraLoaderModelOnly().load_lora_model_only(
        model, _save(models_dir, "flux-oracle-diffusers.safetensors", converted), 1.0)[0]
    _assert_same(_weights(ours.unet), _weights(theirs.unet))


def _render(model: Any, clip: Any, vae: Any) -> np.ndarray:
    pos = encode_text(clip, "a lighthouse")
    latent = {"samples": torch.zeros(1, 16, 8, 8)}
    return vae_decode(vae, sample(model, pos, pos, latent, SampleSettings(3, 2, 1.0, "euler", "simple")))


def test_a_flux_lora_changes_the_image_strength_zero_does_not_and_the_base_stays(
        flux: tuple[Any, Any, Any], models_dir: Path) -> None:
    model, clip, vae = flux
    name = _save(models_dir, "flux-image.safetensors", _flux_layouts()["kohya"])
    before = _render(model, clip, vae)
    new_model, new_clip = LoraLoader().load_lora(model, clip, name, 1.0, 1.0)
    assert new_model is not model and "flux-image" in repr(new_model)
    assert not np.array_equal(_render(new_model, new_clip, vae), before)
    assert np.array_equal(_render(model, clip, vae), before), "the un-patched MODEL must stay usable"
    same_model, same_clip = LoraLoader().load_lora(model, clip, name, 0.0, 0.0)
    assert same_model is model and same_clip is clip
    assert LoraLoaderModelOnly().load_lora_model_only(model, name, 0.0)[0] is model


# ------------------------------------------------------------------------- SD3


def _sd3_layouts() -> dict[str, Tensors]:
    """The x block qkv of joint block 0, the last block's (pre-only) context modulation (stored
    (shift, scale) originally), the context embedder and the patch embedding (a conv LoRA)."""
    (qd, qu), (md, mu), (cd, cu) = _lowrank(11, 96, 32), _lowrank(12, 64, 32), _lowrank(13, 32, 128)
    gen = torch.Generator().manual_seed(14)
    pd, pu = torch.randn(4, 16, 2, 2, generator=gen), torch.randn(32, 4, 1, 1, generator=gen)
    diffusers: Tensors = {}
    for part, rows in QKV.items():
        diffusers |= _peft(f"transformer_blocks.0.attn.to_{part}", qd, qu[rows])
    diffusers |= _peft("transformer_blocks.1.norm1_context.linear", md, torch.cat([mu[32:], mu[:32]]))
    diffusers |= _peft("context_embedder", cd, cu) | _peft("pos_embed.proj", pd, pu)
    original = {"joint_blocks.0.x_block.attn.qkv": (qd, qu), "joint_blocks.1.context_block.adaLN_modulation.1":
                (md, mu), "context_embedder": (cd, cu), "x_embedder.proj": (pd, pu)}
    kohya: Tensors = {}
    for name, (down, up) in original.items():
        kohya |= _kohya(f"lora_unet_{name.replace('.', '_')}", down, up, alpha=4.0)  # alpha = rank
    return {
        "peft": {f"transformer.{k}": v for k, v in diffusers.items()},
        "flash_peft": {f"base_model.model.{k}": v for k, v in diffusers.items()},
        "onetrainer": _flat("lora_transformer_", diffusers),
        "lycoris": _flat("lycoris_", diffusers),
        "kohya": kohya,
        "comfy": {k: v for name, (down, up) in original.items() for k, v in
                  _peft(f"diffusion_model.{name}", down, up).items()},
    }


def test_sd3_lora_layouts_patch_identical_weights_equal_to_the_hand_computed_ones(
        sd3: tuple[Any, Any, Any], models_dir: Path) -> None:
    model, clip, _ = sd3
    base = _weights(model.unet)
    layouts = _sd3_layouts()
    patched = {layout: _weights(LoraLoader().load_lora(
        model, clip, _save(models_dir, f"sd3-{layout}.safetensors", state), 0.5, 1.0)[0].unet)
        for layout, state in layouts.items()}
    peft = layouts["peft"]
    want: Tensors = {}
    for key in {k.split(".lora_")[0] for k in peft}:
        inner = key.removeprefix("transformer.")
        down, up = peft[f"{key}.lora_A.weight"], peft[f"{key}.lora_B.weight"]
        delta = (up.flatten(1) @ down.flatten(1)).reshape(base[f"{inner}.weight"].shape)
        want[f"{inner}.weight"] = base[f"{inner}.weight"] + 0.5 * delta
    _assert_patched(base, patched["kohya"], want)
    for weights in patched.values():
        _assert_same(weights, patched["kohya"])


# ------------------------------------------------------------------------- text encoders


def _encoder_lora(clip: Any, field: str, module: str, seed: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """A pair shaped for ``module`` of the CLIP's ``field`` encoder, and the state-dict key."""
    weights = _weights(getattr(clip, field))
    key = next(k for k in weights if k.endswith(f"{module}.weight"))
    out_f, in_f = weights[key].shape
    return (*_lowrank(seed, out_f, in_f), key)


def test_sd3_text_encoder_lora_keys_patch_clip_l_clip_g_and_t5(sd3: tuple[Any, Any, Any], models_dir: Path) -> None:
    model, clip, _ = sd3
    targets = {"lora_te1_text_model_encoder_layers_0_self_attn_q_proj": ("encoder", "layers.0.self_attn.q_proj"),
               "lora_te1_text_projection": ("encoder", "text_projection"),
               "lora_te2_text_model_encoder_layers_1_mlp_fc1": ("encoder_2", "layers.1.mlp.fc1"),
               "lora_te3_encoder_block_0_layer_0_SelfAttention_q": ("t5", "block.0.layer.0.SelfAttention.q")}
    state: Tensors = {}
    want: dict[str, Tensors] = {"encoder": {}, "encoder_2": {}, "t5": {}}
    base = {f: _weights(getattr(clip, f)) for f in want}
    for i, (name, (field, module)) in enumerate(targets.items()):
        down, up, key = _encoder_lora(clip, field, module, 20 + i)
        state |= _kohya(name, down, up, alpha=2.0)
        want[field][key] = base[field][key] + 0.8 * 0.5 * (up @ down)
    name = _save(models_dir, "sd3-te.safetensors", state)
    new_model, new_clip = LoraLoader().load_lora(model, clip, name, 1.0, 0.8)
    assert new_model is model, "no transformer weights: the MODEL is returned as it is"
    for field, expected in want.items():
        _assert_patched(base[field], _weights(getattr(new_clip, field)), expected)
    before, after = encode_text(clip, "a lighthouse"), encode_text(new_clip, "a lighthouse")
    assert not torch.equal(before[0][0], after[0][0])
    assert LoraLoader().load_lora(model, clip, name, 1.0, 0.0)[1] is clip


def test_flux_t5_lora_keys_follow_comfyuis_numbering_and_formats(flux: tuple[Any, Any, Any],
                                                                 models_dir: Path) -> None:
    model, clip, _ = flux
    d1, u1, wi = _encoder_lora(clip, "t5", "DenseReluDense.wi_0", 30)
    d2, u2, o = _encoder_lora(clip, "t5", "SelfAttention.o", 31)
    d3, u3, v = _encoder_lora(clip, "encoder", "layers.0.self_attn.v_proj", 32)
    one = {**_kohya("lora_te2_encoder_block_0_layer_1_DenseReluDense_wi_0", d1, u1),  # OneTrainer Flux
           **_peft("text_encoders.t5xxl.transformer.encoder.block.0.layer.0.SelfAttention.o", d2, u2),
           **_peft("text_encoder.text_model.encoder.layers.0.self_attn.v_proj", d3, u3)}  # diffusers
    other = {k.replace("lora_te2_", "lora_te3_"): t for k, t in one.items()}
    t5_base, l_base = _weights(clip.t5), _weights(clip.encoder)
    patched = [LoraLoader().load_lora(model, clip, _save(models_dir, f"flux-te-{i}.safetensors", s), 1.0, 1.0)[1]
               for i, s in enumerate((one, other))]
    _assert_patched(t5_base, _weights(patched[0].t5), {wi: t5_base[wi] + u1 @ d1, o: t5_base[o] + u2 @ d2})
    _assert_patched(l_base, _weights(patched[0].encoder), {v: l_base[v] + u3 @ d3})
    _assert_same(_weights(patched[1].t5), _weights(patched[0].t5))


def test_text_encoder_weights_for_an_encoder_the_clip_lacks_are_a_clear_error(
        flux: tuple[Any, Any, Any], models_dir: Path) -> None:
    model, clip, _ = flux
    down, up = _lowrank(40, 64, 64)  # an SDXL/SD3 OpenCLIP-G LoRA on Flux's CLIP-L + T5
    name = _save(models_dir, "clip-g.safetensors",
                 _peft("text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj", down, up))
    with pytest.raises(ModelError, match="does not have"):
        LoraLoader().load_lora(model, clip, name, 1.0, 1.0)
    assert LoraLoaderModelOnly().load_lora_model_only(model, name, 1.0)[0] is model  # ModelOnly: CLIP keys skipped


# ------------------------------------------------------------------------- what does not fit


@pytest.mark.parametrize(("what", "state"), [
    ("an SD1 LoRA", _kohya("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q",
                           *_lowrank(50, 320, 320))),
    ("more blocks than the model", _kohya("lora_unet_double_blocks_7_img_attn_qkv", *_lowrank(51, 96, 32))),
    ("FLUX.1-sized", _kohya("lora_unet_double_blocks_0_img_attn_qkv", *_lowrank(52, 9216, 3072))),
])
def test_a_lora_for_another_model_fails_naming_the_family(flux: tuple[Any, Any, Any], models_dir: Path,
                                                          what: str, state: Tensors) -> None:
    name = _save(models_dir, f"wrong-{what.replace(' ', '-')}.safetensors", state)
    new_model = LoraLoaderModelOnly().load_lora_model_only(flux[0], name, 1.0)[0]
    with pytest.raises(ModelError, match="different model family"):
        new_model.unet.get()


def test_other_adapters_and_unknown_keys(flux: tuple[Any, Any, Any], models_dir: Path,
                                         caplog: pytest.LogCaptureFixture) -> None:
    model = flux[0]
    loha = _save(models_dir, "loha.safetensors", {"lora_unet_img_in.hada_w1_a": torch.ones(4, 4),
                                                  "lora_unet_img_in.hada_w1_b": torch.ones(4, 64)})
    with pytest.raises(ModelError, match="LoHa"):
        LoraLoaderModelOnly().load_lora_model_only(model, loha, 1.0)
    nothing = _save(models_dir, "unknown.safetensors", _peft("some_other_model.layer", *_lowrank(60, 8, 8)))
    with pytest.raises(ModelError, match="recognise"):
        LoraLoaderModelOnly().load_lora_model_only(model, nothing, 1.0)
    down, up = _lowrank(61, 32, 64)
    mixed = _save(models_dir, "mixed.safetensors", {**_peft("some_other_model.layer", *_lowrank(60, 8, 8)),
                                                    **_kohya("lora_unet_img_in", down, up)})
    with caplog.at_level(logging.WARNING):
        new_model = LoraLoaderModelOnly().load_lora_model_only(model, mixed, 1.0)[0]
    assert "some_other_model.layer" in caplog.text  # ComfyUI's "lora key not loaded"
    base = _weights(model.unet)
    _assert_patched(base, _weights(new_model.unet), {"x_embedder.weight": base["x_embedder.weight"] + up @ down})
