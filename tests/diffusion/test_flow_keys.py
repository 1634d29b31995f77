"""SD3/SD3.5 and Flux transformers between diffusers names and the original single-file layouts
(``flow_keys``): checked against diffusers' own readers of those files, round-tripped exactly, and
rebuilt from shapes alone into a model that computes the same output. Tiny seeded models, plus
real-sized ones on the meta device (shapes only, no memory) for what real file headers say."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from diffusers import FluxTransformer2DModel, SD3Transformer2DModel
from diffusers.loaders.single_file_utils import (
    convert_flux_transformer_checkpoint_to_diffusers,
    convert_sd3_transformer_checkpoint_to_diffusers,
)

from vortex_jupyter.errors import ModelError
from vortex_jupyter.nodes.diffusion.flow_keys import (
    flux_config_from_original,
    flux_from_original,
    flux_to_original,
    sd3_config_from_original,
    sd3_from_original,
    sd3_to_original,
)

_SD3 = {"sample_size": 8, "patch_size": 2, "in_channels": 16, "num_layers": 2, "attention_head_dim": 8,
        "num_attention_heads": 2, "joint_attention_dim": 32, "caption_projection_dim": 16,
        "pooled_projection_dim": 24, "out_channels": 16, "pos_embed_max_size": 16}
_FLUX = {"patch_size": 1, "in_channels": 64, "num_layers": 1, "num_single_layers": 2, "attention_head_dim": 8,
         "num_attention_heads": 2, "joint_attention_dim": 32, "pooled_projection_dim": 24,
         "guidance_embeds": True, "axes_dims_rope": (2, 2, 4)}
TINY: dict[str, tuple[Any, dict[str, Any]]] = {"sd3": (SD3Transformer2DModel, _SD3),
        "sd3.5": (SD3Transformer2DModel, {**_SD3, "qk_norm": "rms_norm", "dual_attention_layers": (0,)}),
        "flux-dev": (FluxTransformer2DModel, _FLUX),
        "flux-schnell": (FluxTransformer2DModel, {**_FLUX, "guidance_embeds": False})}
SD3S, FLUXES = ("sd3", "sd3.5"), ("flux-dev", "flux-schnell")

# The diffusers configs of the real releases (their Hub config.json files).
SD3_MEDIUM = {"sample_size": 128, "patch_size": 2, "in_channels": 16, "num_layers": 24, "attention_head_dim": 64,
              "num_attention_heads": 24, "joint_attention_dim": 4096, "caption_projection_dim": 1536,
              "pooled_projection_dim": 2048, "out_channels": 16, "pos_embed_max_size": 192,
              "dual_attention_layers": (), "qk_norm": None}
SD35_MEDIUM = {**SD3_MEDIUM, "pos_embed_max_size": 384, "dual_attention_layers": tuple(range(13)),
               "qk_norm": "rms_norm"}
FLUX1_DEV = {"patch_size": 1, "in_channels": 64, "out_channels": 64,  # the Hub's null means in_channels
             "num_layers": 19, "num_single_layers": 38, "attention_head_dim": 128, "num_attention_heads": 24,
             "joint_attention_dim": 4096, "pooled_projection_dim": 768, "guidance_embeds": True,
             "axes_dims_rope": (16, 56, 56)}

PREFIX = "model.diffusion_model."


def _seeded(name: str) -> Any:
    cls, config = TINY[name]
    torch.manual_seed(0)
    model = cls(**config).eval()
    with torch.no_grad():  # no zeros or ones left: a swapped or misplaced half must show
        for param in model.parameters():
            param.normal_(0.0, 0.3)
    return model


@pytest.fixture(scope="module")
def models() -> dict[str, Any]:
    return {name: _seeded(name) for name in TINY}


def _to_original(name: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return sd3_to_original if name in SD3S else flux_to_original


def _from_original(name: str) -> Callable[..., dict[str, Any]]:
    return sd3_from_original if name in SD3S else flux_from_original


def _shapes(state: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


def _assert_same(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert set(got) == set(want)
    different = [k for k in want if got[k].shape != want[k].shape or not torch.equal(got[k], want[k])]
    assert not different, different


# ----------------------------------------------------------------------------- diffusers' own readers


@pytest.mark.parametrize("name", SD3S)
def test_diffusers_reads_our_sd3_original_back_into_the_same_tensors(models: dict[str, Any], name: str) -> None:
    state = models[name].state_dict()
    back = convert_sd3_transformer_checkpoint_to_diffusers(dict(sd3_to_original(state)))
    _assert_same(back, state)


def _flux1_wide_single_blocks(state: dict[str, Any]) -> dict[str, Any]:
    """diffusers' Flux reader splits ``linear1`` at FLUX.1's widths (inner_dim 3072 and an MLP 4x
    as wide, hard-coded), so the parts fused there get those row counts; it never reads columns."""
    wide = dict(state)
    for key in state:
        if key.startswith("single_transformer_blocks.") and (".attn.to_" in key or ".proj_mlp." in key):
            rows = 4 * 3072 if ".proj_mlp." in key else 3072
            wide[key] = torch.randn((rows, 2) if key.endswith("weight") else (rows,))
    return wide


@pytest.mark.parametrize("name", FLUXES)
def test_diffusers_reads_our_flux_original_back_into_the_same_tensors(models: dict[str, Any], name: str) -> None:
    state = _flux1_wide_single_blocks(models[name].state_dict())
    back = convert_flux_transformer_checkpoint_to_diffusers(dict(flux_to_original(state)))
    _assert_same(back, state)


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("name", TINY)
def test_from_original_inverts_to_original_exactly(models: dict[str, Any], name: str) -> None:
    state = models[name].state_dict()
    _assert_same(_from_original(name)(_to_original(name)(state)), state)


@pytest.mark.parametrize("name", TINY)
def test_a_full_checkpoint_prefix_is_stripped_and_other_components_ignored(models: dict[str, Any],
                                                                            name: str) -> None:
    state = models[name].state_dict()
    full = {PREFIX + k: v for k, v in _to_original(name)(state).items()}
    full["first_stage_model.decoder.conv_in.weight"] = torch.zeros(1)
    full["text_encoders.clip_l.transformer.text_model.final_layer_norm.weight"] = torch.zeros(1)
    _assert_same(_from_original(name)(full, prefix=PREFIX), state)


# ----------------------------------------------------------------------------- configs from shapes


def _inputs(name: str) -> dict[str, Any]:
    g = torch.Generator().manual_seed(1)
    text = {"encoder_hidden_states": torch.randn(1, 5, 32, generator=g),
            "pooled_projections": torch.randn(1, 24, generator=g)}
    if name in SD3S:
        return {"hidden_states": torch.randn(1, 16, 8, 8, generator=g), "timestep": torch.tensor([500.0]), **text}
    ids = torch.stack(torch.meshgrid(torch.zeros(1), torch.arange(4.0), torch.arange(4.0), indexing="ij"), -1)
    extra = {"guidance": torch.tensor([3.5])} if name == "flux-dev" else {}
    return {"hidden_states": torch.randn(1, 16, 64, generator=g), "timestep": torch.tensor([0.5]),
            "img_ids": ids.reshape(16, 3), "txt_ids": torch.zeros(5, 3), **text, **extra}


def _config_from_shapes(name: str, shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    if name == "sd3":  # no qk norm: nothing in the file says the heads are 8 wide (the default is 64)
        return sd3_config_from_original(shapes, attention_head_dim=8)
    if name == "sd3.5":
        return sd3_config_from_original(shapes)
    return flux_config_from_original(shapes, axes_dims_rope=(2, 2, 4))  # only 128-wide heads have a default


@pytest.mark.parametrize("name", TINY)
def test_the_config_read_from_shapes_rebuilds_a_model_that_computes_the_same(models: dict[str, Any],
                                                                            name: str) -> None:
    model = models[name]
    original = _to_original(name)(model.state_dict())
    config = _config_from_shapes(name, _shapes(original))
    want = {k: model.config[k] for k in config if k != "sample_size"} | {"out_channels": model.out_channels}
    assert {k: v for k, v in config.items() if k != "sample_size"} == want  # sample_size: not in any shape
    rebuilt = TINY[name][0](**config).eval()
    rebuilt.load_state_dict(_from_original(name)(original), strict=True)
    with torch.no_grad():
        want, got = model(**_inputs(name)).sample, rebuilt(**_inputs(name)).sample
    assert torch.isfinite(want).all()
    assert torch.equal(got, want)


def _meta_original(cls: Any, config: dict[str, Any], to_original: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    with torch.device("meta"):
        state = cls(**config).state_dict()
    return to_original(state)


@pytest.mark.parametrize("config", [SD3_MEDIUM, SD35_MEDIUM], ids=["sd3_medium", "sd3.5_medium"])
def test_a_real_sized_sd3_header_gives_the_release_config(config: dict[str, Any]) -> None:
    original = _meta_original(SD3Transformer2DModel, config, sd3_to_original)
    shapes = {PREFIX + k: s for k, s in _shapes(original).items()}
    shapes["first_stage_model.decoder.conv_in.weight"] = (512, 16, 3, 3)
    assert sd3_config_from_original(shapes, prefix=PREFIX) == config
    assert original["pos_embed"].shape == (1, config["pos_embed_max_size"] ** 2, 1536)
    assert original["joint_blocks.0.x_block.attn.qkv.weight"].shape == (3 * 1536, 1536)
    assert original["joint_blocks.23.context_block.adaLN_modulation.1.weight"].shape == (2 * 1536, 1536)
    assert "joint_blocks.23.context_block.attn.proj.weight" not in original  # pre-only
    back = convert_sd3_transformer_checkpoint_to_diffusers(dict(original))
    assert _shapes(back) == _shapes(sd3_from_original(original))


def test_a_real_sized_flux1_dev_header_gives_the_release_config() -> None:
    original = _meta_original(FluxTransformer2DModel, FLUX1_DEV, flux_to_original)
    assert flux_config_from_original(_shapes(original)) == FLUX1_DEV
    # shapes as in the flux1-dev.safetensors header
    assert original["single_blocks.0.linear1.weight"].shape == (21504, 3072)
    assert original["single_blocks.37.linear2.weight"].shape == (3072, 15360)
    assert original["single_blocks.0.modulation.lin.weight"].shape == (9216, 3072)
    assert original["double_blocks.18.img_attn.norm.query_norm.scale"].shape == (128,)
    assert original["final_layer.adaLN_modulation.1.weight"].shape == (6144, 3072)
    back = convert_flux_transformer_checkpoint_to_diffusers(dict(original))  # at FLUX.1's real widths
    assert _shapes(back) == _shapes(flux_from_original(original))


# ----------------------------------------------------------------------------- names and errors


def test_original_names_are_the_ones_real_files_use(models: dict[str, Any]) -> None:
    sd35 = sd3_to_original(models["sd3.5"].state_dict())
    for key in ("joint_blocks.0.x_block.attn.qkv.weight", "final_layer.adaLN_modulation.1.weight", "pos_embed",
                "x_embedder.proj.weight", "t_embedder.mlp.2.bias", "y_embedder.mlp.0.weight",
                "context_embedder.weight", "joint_blocks.0.x_block.attn.ln_q.weight",
                "joint_blocks.1.context_block.attn.ln_k.weight", "joint_blocks.0.x_block.attn2.qkv.weight",
                "joint_blocks.0.context_block.mlp.fc2.weight", "final_layer.linear.bias"):
        assert key in sd35, key
    assert "joint_blocks.1.x_block.attn2.qkv.weight" not in sd35  # dual attention in layer 0 only
    assert not any(k.startswith("joint_blocks.1.context_block.mlp.") for k in sd35)  # pre-only
    dev = flux_to_original(models["flux-dev"].state_dict())
    for key in ("double_blocks.0.img_attn.norm.query_norm.scale", "double_blocks.0.txt_attn.norm.key_norm.scale",
                "single_blocks.0.linear1.weight", "single_blocks.1.linear2.bias",
                "single_blocks.1.modulation.lin.weight", "double_blocks.0.img_mod.lin.weight", "double_blocks.0.txt_mlp.2.weight", "img_in.weight",
                "txt_in.bias", "time_in.in_layer.weight", "vector_in.out_layer.bias", "guidance_in.in_layer.weight",
                "final_layer.adaLN_modulation.1.bias"):
        assert key in dev, key
    assert dev["single_blocks.0.linear1.weight"].shape == (3 * 16 + 4 * 16, 16)
    assert not any(k.startswith("guidance_in.") for k in flux_to_original(models["flux-schnell"].state_dict()))


def test_the_final_modulation_is_stored_shift_first(models: dict[str, Any]) -> None:
    state = models["flux-dev"].state_dict()
    scale, shift = state["norm_out.linear.bias"].chunk(2)
    assert torch.equal(flux_to_original(state)["final_layer.adaLN_modulation.1.bias"], torch.cat([shift, scale]))


def test_foreign_keys_are_named_not_dropped(models: dict[str, Any]) -> None:
    original = flux_to_original(models["flux-dev"].state_dict())
    with pytest.raises(ModelError, match=r"pos_embed_input\.weight"):
        flux_from_original({**original, "pos_embed_input.weight": torch.zeros(1)})
    with pytest.raises(ModelError, match="no key starts with prefix"):
        flux_from_original(original, prefix=PREFIX)
    with pytest.raises(ModelError, match=r"unet\.conv_in\.weight"):
        sd3_to_original({**models["sd3"].state_dict(), "unet.conv_in.weight": torch.zeros(1)})


def test_configs_that_shapes_cannot_settle_are_errors_that_say_what_to_pass(models: dict[str, Any]) -> None:
    shapes = _shapes(flux_to_original(models["flux-dev"].state_dict()))
    with pytest.raises(ModelError, match="pass axes_dims_rope"):
        flux_config_from_original(shapes)
    with pytest.raises(ModelError, match="sums to 7"):
        flux_config_from_original(shapes, axes_dims_rope=(2, 2, 3))
    sd35 = _shapes(sd3_to_original(models["sd3.5"].state_dict()))
    with pytest.raises(ModelError, match="qk norm says 8"):
        sd3_config_from_original(sd35, attention_head_dim=4)
    with pytest.raises(ModelError, match="cannot have 64-wide"):  # the default head width of SD3
        sd3_config_from_original(_shapes(sd3_to_original(models["sd3"].state_dict())))
