"""UNETLoader / CLIPLoader "sd3" / DualCLIPLoader / TripleCLIPLoader / VAELoader on SD3 and Flux
split files (issue 11), as ComfyUI loads them.

The reference everywhere is CheckpointLoaderSimple on the tiny model's single file: its split
files (``tiny_flow_split``), in any layout ComfyUI reads, must sample the same latents and
decode the same image bit for bit. Files of the wrong role are written with the names and
shapes real files have (int8 zeros: only the header matters).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import vortex_jupyter as vx
from vortex_jupyter.errors import MissingFile, ModelError
from vortex_jupyter.nodes.diffusion import flow_families, listing, t5, tiny_flow, tiny_flow_split
from vortex_jupyter.nodes.diffusion.loader_nodes import (
    CLIPLoader,
    DualCLIPLoader,
    TripleCLIPLoader,
    UNETLoader,
    VAELoader,
)
from vortex_jupyter.nodes.diffusion.loaders import load_checkpoint
from vortex_jupyter.nodes.diffusion.sampling import SampleSettings, sample
from vortex_jupyter.nodes.diffusion.text import encode_text
from vortex_jupyter.nodes.diffusion.vae import vae_decode
from vortex_jupyter.nodes.registry import REGISTRY

CLIP_L, CLIP_G, T5 = "vortex-tiny-clip-l.safetensors", "vortex-tiny-clip-g.safetensors", "vortex-tiny-t5.safetensors"
UNET = {"sd3": "vortex-tiny-sd3-transformer.safetensors", "flux": "vortex-tiny-flux-transformer.safetensors"}
VAE = {"sd3": "vortex-tiny-sd3-vae.safetensors", "flux": "vortex-tiny-flux-ae.safetensors"}


def _render(handles: Any, seed: int = 5, steps: int = 3) -> tuple[torch.Tensor, np.ndarray]:
    """(latents, image) of a fixed 64x64 prompt through KSampler's sampling and VAEDecode."""
    model, clip, vae = handles
    pos, neg = encode_text(clip, "a lighthouse"), encode_text(clip, "blurry")
    latent = sample(model, pos, neg, {"samples": torch.zeros(1, 16, 8, 8)},
                    SampleSettings(seed, steps, 3.0, "euler", "simple"))
    return latent["samples"], vae_decode(vae, latent)


@pytest.fixture(scope="module")
def files(models_dir: Path) -> dict[str, Path]:
    return tiny_flow_split.tiny_flow_split_files()


@pytest.fixture(scope="module")
def references(files: dict[str, Path]) -> dict[str, tuple[torch.Tensor, np.ndarray]]:
    return {family: _render(load_checkpoint(f"vortex-tiny-{family}")) for family in ("sd3", "flux")}


def _same(a: tuple[torch.Tensor, np.ndarray], b: tuple[torch.Tensor, np.ndarray]) -> bool:
    return torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])


# ----------------------------------------------------------------------------- interfaces


def test_dual_and_triple_clip_loaders_have_comfyuis_interface() -> None:
    dual, triple = REGISTRY.get("DualCLIPLoader"), REGISTRY.get("TripleCLIPLoader")
    assert [p.name for p in dual.inputs] == ["clip_name1", "clip_name2", "type", "device"]
    assert [p.name for p in triple.inputs] == ["clip_name1", "clip_name2", "clip_name3"]
    for spec in (dual, triple):
        assert spec.category == "advanced/loaders" and [o.type for o in spec.outputs] == ["CLIP"] and spec.heavy
    types = dual.input("type")
    assert types is not None and list(types.choices or ())[:6] == ["sdxl", "sd3", "flux", "hunyuan_video", "hidream",
                                                             "hunyuan_image"]
    device = dual.input("device")
    assert device is not None and not device.required and list(device.choices or ()) == ["default", "cpu"]


def test_the_tiny_split_files_are_listed_first_after_sd1s(models_dir: Path) -> None:
    assert listing.diffusion_model_names()[:3] == ["vortex-tiny-unet.safetensors", UNET["sd3"], UNET["flux"]]
    assert listing.text_encoder_names()[:4] == ["vortex-tiny-clip.safetensors", CLIP_L, CLIP_G, T5]
    assert listing.vae_names()[:3] == ["vortex-tiny-vae.safetensors", VAE["sd3"], VAE["flux"]]


# ----------------------------------------------------------------------------- the tiny split files


def test_tiny_split_files_are_byte_stable_and_cut_from_the_single_files(files: dict[str, Path],
                                                                       tmp_path: Path) -> None:
    other = tiny_flow_split.tiny_flow_split_files(tmp_path)
    assert set(files) == set(tiny_flow_split.FILES)
    for name, path in files.items():
        assert path.read_bytes() == other[name].read_bytes(), name
    flux = load_file(str(tiny_flow.tiny_flow_single_file("flux")))
    transformer = load_file(str(files[UNET["flux"]]))  # Black Forest Labs' names, no prefix
    assert "double_blocks.0.img_attn.qkv.weight" in transformer
    assert all(torch.equal(v, flux["model.diffusion_model." + k]) for k, v in transformer.items())
    assert "shared.weight" in load_file(str(files[T5])) and "decoder.up.0.block.0.conv1.weight" in load_file(
        str(files[VAE["flux"]]))
    with safe_open(str(files[T5]), framework="pt") as f:
        assert json.loads((f.metadata() or {})["vortex_configs"]).keys() == {"t5", "tokenizers"}


def test_split_files_are_rewritten_after_a_tiny_model_is_rebuilt(tmp_path: Path) -> None:
    paths = tiny_flow_split.tiny_flow_split_files(tmp_path)
    before = paths[T5].stat().st_mtime_ns
    single = tiny_flow.tiny_flow_single_file("flux", tmp_path)
    os.utime(single, ns=(before + 10**9, before + 10**9))
    assert tiny_flow_split.tiny_flow_split_files(tmp_path)[T5].stat().st_mtime_ns > before


# ----------------------------------------------------------------------------- the same images


def _flux_split(clip_names: tuple[str, str] = (CLIP_L, T5), weight_dtype: str = "default") -> tuple[Any, Any, Any]:
    return (UNETLoader().load_unet(UNET["flux"], weight_dtype)[0],
            DualCLIPLoader().load_clip(*clip_names, "flux")[0], VAELoader().load_vae(VAE["flux"])[0])


def test_flux_split_files_render_the_checkpoints_latents_and_image_bit_for_bit(references: Any) -> None:
    model, clip, vae = _flux_split()
    assert (model.family, clip.kind, vae.scaling_factor, vae.shift_factor) == ("flux", "flux", 0.3611, 0.1159)
    assert clip.encoder_2 is None and model.scheduler_config == load_checkpoint("vortex-tiny-flux")[0].scheduler_config
    assert _same(_render((model, clip, vae)), references["flux"])
    assert _same(_render(_flux_split((T5, CLIP_L))), references["flux"])  # roles, not order, decide


def test_sd3_split_files_with_triple_clip_loader_render_the_checkpoints_bit_for_bit(references: Any) -> None:
    clip = TripleCLIPLoader().load_clip(T5, CLIP_G, CLIP_L)[0]
    assert clip.kind == "sd3" and None not in (clip.encoder, clip.encoder_2, clip.t5)
    handles = (UNETLoader().load_unet(UNET["sd3"], "default")[0], clip, VAELoader().load_vae(VAE["sd3"])[0])
    assert (handles[0].family, handles[2].scaling_factor, handles[2].shift_factor) == ("sd3", 1.5305, 0.0609)
    assert _same(_render(handles), references["sd3"])


def test_split_graph_and_checkpoint_graph_agree_through_the_engine(files: dict[str, Path]) -> None:
    g = vx.Graph()
    ckpt = g.add("CheckpointLoaderSimple", ckpt_name="vortex-tiny-flux")
    unet = g.add("UNETLoader", unet_name=UNET["flux"], weight_dtype="default")
    clip = g.add("DualCLIPLoader", clip_name1=CLIP_L, clip_name2=T5, type="flux")
    vae = g.add("VAELoader", vae_name=VAE["flux"])
    images = []
    for model, text_encoder, decoder in ((ckpt.MODEL, ckpt.CLIP, ckpt.VAE), (unet.MODEL, clip.CLIP, vae.VAE)):
        pos = g.add("CLIPTextEncode", clip=text_encoder, text="a lighthouse")
        neg = g.add("ConditioningZeroOut", conditioning=pos.CONDITIONING)
        latent = g.add("EmptySD3LatentImage", width=64, height=64, batch_size=1)
        ks = g.add("KSampler", model=model, positive=pos.CONDITIONING, negative=neg.CONDITIONING,
                   latent_image=latent.LATENT, seed=7, steps=2, cfg=1.0, sampler_name="euler",
                   scheduler="simple", denoise=1.0)
        images.append(g.add("VAEDecode", samples=ks.LATENT, vae=decoder))
    assert g.problems() == []
    run = g.run(executor="inline")
    assert run.status == "ok", run.errors
    a, b = (np.asarray(run.outputs[i.id][0]) for i in images)
    assert a.shape == (1, 64, 64, 3) and np.array_equal(a, b)


def _save(path: Path, state: dict[str, torch.Tensor], meta: dict[str, Any] | None = None) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path),
              metadata={"vortex_configs": json.dumps(meta)} if meta is not None else None)
    return path.name


def test_transformer_files_in_every_comfyui_layout_give_the_same_latents(models_dir: Path, references: Any) -> None:
    """A whole checkpoint (``model.diffusion_model.``, as ComfyUI strips) and diffusers' names."""
    folder = models_dir / "diffusion_models"
    _copy(tiny_flow.tiny_flow_single_file("flux"), folder / "flux-whole.safetensors")
    config = {"transformer": json.loads(_meta(tiny_flow.tiny_flow_single_file("flux")))["transformer"]}
    diffusers = load_file(str(tiny_flow.tiny_flow("flux") / "transformer" / "diffusion_pytorch_model.safetensors"))
    named = _save(folder / "flux-diffusers.safetensors", diffusers, config)
    _, clip, vae = _flux_split()
    for name in ("flux-whole.safetensors", named):
        model = UNETLoader().load_unet(name, "default")[0]
        assert model.family == "flux" and _same(_render((model, clip, vae)), references["flux"]), name


def _copy(source: Path, target: Path) -> str:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, target)
    return target.name


def _meta(path: Path) -> str:
    with safe_open(str(path), framework="pt") as f:
        return str((f.metadata() or {})["vortex_configs"])


def _meta_model(family: str) -> dict[str, tuple[int, ...]]:
    from diffusers import FluxTransformer2DModel, SD3Transformer2DModel

    with torch.device("meta"):
        if family == "flux":
            module: Any = FluxTransformer2DModel(guidance_embeds=False)  # FLUX.1 schnell's shapes
        else:
            module = SD3Transformer2DModel(sample_size=128, num_layers=24, num_attention_heads=24,
                                           joint_attention_dim=4096, caption_projection_dim=1536,
                                           pooled_projection_dim=2048, pos_embed_max_size=192)
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_real_sized_headers_give_the_real_config_in_both_layouts(family: str) -> None:
    from vortex_jupyter.nodes.diffusion import flow_keys

    shapes = _meta_model(family)
    to_original = flow_keys.sd3_shapes_from_diffusers if family == "sd3" else flow_keys.flux_shapes_from_diffusers
    original = {"model.diffusion_model." + k: v for k, v in to_original(shapes).items()}
    a = flow_families.transformer("x", shapes, {})
    b = flow_families.transformer("x", original, {})
    assert a is not None and b is not None and (a.layout, b.layout, b.prefix) == ("diffusers", "original",
                                                                                  "model.diffusion_model.")
    assert a.config == b.config and a.family == b.family == family
    if family == "flux":
        assert (a.config["num_layers"], a.config["num_single_layers"], a.config["guidance_embeds"]) == (19, 38, False)
    else:
        assert (a.config["num_layers"], a.config["caption_projection_dim"]) == (24, 1536)


def _real_encoder(kind: str) -> dict[str, tuple[int, ...]]:
    """Header shapes of a real CLIP-L / OpenCLIP-G / T5-XXL v1.1 file (from meta-device models)."""
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, T5Config, T5EncoderModel

    from vortex_jupyter.nodes.diffusion.flow_files import real_text_config

    config = real_text_config({"clip_l": "text_encoder", "clip_g": "text_encoder_2", "t5": "t5"}[kind])
    with torch.device("meta"):
        module: Any = (T5EncoderModel(T5Config.from_dict(config)) if kind == "t5"
                       else CLIPTextModelWithProjection(CLIPTextConfig.from_dict(config)))
    return {k: tuple(v.shape) for k, v in module.state_dict().items() if k != "encoder.embed_tokens.weight"}


@pytest.mark.parametrize("kind", ["clip_l", "clip_g", "t5"])
def test_real_text_encoder_headers_are_told_apart_by_their_tensors(kind: str) -> None:
    found = flow_families.text_encoder("clip_name1", f"{kind}.safetensors", _real_encoder(kind), {})
    assert found.role == kind and not found.builtin_tokenizer
    if kind == "t5":  # every block counted (the T5-XXL config once had 1 block for files without metadata)
        from vortex_jupyter.nodes.diffusion.flow_files import TEXT, real_text_configs

        assert (found.config["num_layers"], found.config["d_model"]) == (24, 4096)
        in_checkpoint = {TEXT["t5"] + k: v for k, v in _real_encoder(kind).items()}
        assert real_text_configs("flux", in_checkpoint)["t5"] == found.config
    else:
        assert found.config["num_hidden_layers"] == (12 if kind == "clip_l" else 32)


def test_fp8_weight_dtype_stores_the_flux_transformer_in_fp8_and_stays_close(references: Any) -> None:
    handles = _flux_split(weight_dtype="fp8_e4m3fn")
    with handles[0].unet.use() as transformer:
        stored = {p.dtype for p in transformer.parameters()}
        assert torch.float8_e4m3fn in stored and transformer.dtype == torch.float32  # computes in fp32
    latents, image = _render(handles)
    ref_latents, ref_image = references["flux"]
    assert not torch.equal(latents, ref_latents)
    assert (latents - ref_latents).abs().mean() < 0.1 * ref_latents.abs().mean()
    assert np.abs(image - ref_image).mean() < 0.05


# ----------------------------------------------------------------------------- CLIPs


def test_cliploader_sd3_with_t5_alone_encodes_t5_only_with_comfyuis_shapes(files: dict[str, Path]) -> None:
    clip = CLIPLoader().load_clip(T5, "sd3")[0]
    assert clip.kind == "sd3" and clip.encoder is None and clip.encoder_2 is None and clip.t5 is not None
    [[context, options]] = encode_text(clip, "a lighthouse")
    # T5's 77 tokens alone; the pooled vector is ComfyUI's zeros for the missing CLIP-L + G (768 + 1280)
    assert context.shape == (1, t5.SD3_MIN_LENGTH, tiny_flow.T5_WIDTH)
    assert options["pooled_output"].shape == (1, 768 + 1280) and not options["pooled_output"].any()
    sd3_clip = load_checkpoint("vortex-tiny-sd3")[1]
    [[full, _]] = encode_text(sd3_clip, "a lighthouse")
    assert torch.equal(context, full[:, 77:])  # the checkpoint's T5 part, bit for bit


def test_cliploader_sd3_with_clip_l_alone_pads_to_t5_width_as_comfyui(files: dict[str, Path]) -> None:
    clip = CLIPLoader().load_clip(CLIP_L, "sd3")[0]
    [[context, options]] = encode_text(clip, "a lighthouse")
    assert context.shape == (1, 77, 4096) and not context[..., 32:].any()  # no T5: ComfyUI's 4096
    assert options["pooled_output"].shape == (1, 32 + 1280)


def test_dual_clip_loader_sd3_takes_any_two_roles(files: dict[str, Path]) -> None:
    clip = DualCLIPLoader().load_clip(CLIP_G, T5, "sd3")[0]
    assert clip.kind == "sd3" and clip.encoder is None and clip.encoder_2 is not None
    [[context, options]] = encode_text(clip, "a lighthouse")
    assert context.shape == (1, 77 + 77, tiny_flow.T5_WIDTH) and options["pooled_output"].shape == (1, 768 + 64)


def test_dual_clip_loader_sdxl_encodes_like_the_sdxl_checkpoints_clip(models_dir: Path) -> None:
    """CLIP-L in transformers' names and OpenCLIP-G in open_clip's, cut from the SDXL single file."""
    from vortex_jupyter.nodes.diffusion.sdxl_keys import CLIP_G_PREFIX, CLIP_L_PREFIX
    from vortex_jupyter.nodes.diffusion.tiny_sdxl import tiny_sdxl_single_file

    single = tiny_sdxl_single_file()
    state, configs = load_file(str(single)), json.loads(_meta(single))
    folder = models_dir / "text_encoders"
    for prefix, key, name in ((CLIP_L_PREFIX, "text_encoder", "sdxl-l.safetensors"),
                              (CLIP_G_PREFIX, "text_encoder_2", "sdxl-g.safetensors")):
        _save(folder / name, {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)},
              {key: configs[key]})
    assert DualCLIPLoader.VALIDATE_INPUTS("sdxl-g.safetensors", "sdxl-l.safetensors", "sdxl") is True
    clip = DualCLIPLoader().load_clip("sdxl-g.safetensors", "sdxl-l.safetensors", "sdxl")[0]
    assert clip.kind == "" and clip.encoder is not None and clip.encoder_2 is not None and clip.t5 is None
    reference = load_checkpoint("vortex-tiny-sdxl")[1]
    for text in ("a lighthouse", "(a red:1.3) lighthouse at night"):
        [[a, pa]], [[b, pb]] = encode_text(clip, text), encode_text(reference, text)
        assert torch.equal(a, b) and torch.equal(pa["pooled_output"], pb["pooled_output"])


def test_clip_on_cpu_device_pins_every_encoder_to_the_cpu(files: dict[str, Path]) -> None:
    clip = DualCLIPLoader().load_clip(CLIP_L, T5, "flux", "cpu")[0]
    assert clip.encoder.device == "cpu" and clip.t5 is not None and clip.t5.device == "cpu"


def test_a_t5_file_of_others_needs_a_real_t5_tokenizer(models_dir: Path, files: dict[str, Path],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    meta = json.loads(_meta(files[T5]))
    _save(models_dir / "text_encoders" / "t5-no-tokenizer.safetensors", load_file(str(files[T5])), {"t5": meta["t5"]})
    monkeypatch.delenv(t5.TOKENIZER_ENV, raising=False)
    with pytest.raises(ModelError, match=t5.TOKENIZER_ENV):
        DualCLIPLoader().load_clip(CLIP_L, "t5-no-tokenizer.safetensors", "flux")
    from vortex_jupyter.nodes.diffusion.models import models_root

    monkeypatch.setenv(t5.TOKENIZER_ENV, str(models_root() / ".tokenizers" / "t5"))
    assert DualCLIPLoader().load_clip(CLIP_L, "t5-no-tokenizer.safetensors", "flux")[0].t5_tokenizer is not None


# ----------------------------------------------------------------------------- VAEs


def _vae_header(path: Path, meta: dict[str, Any] | None = None) -> str:
    return _save(path, {"decoder.conv_in.weight": torch.zeros(512, 16, 3, 3, dtype=torch.int8),
                        "decoder.up.0.block.0.conv1.weight": torch.zeros(1, 1, 1, 1, dtype=torch.int8)}, meta)


def test_a_16_channel_vae_without_metadata_gets_flux_scaling_unless_named_sd3(models_dir: Path) -> None:
    folder = models_dir / "vae"
    cases = {"ae.safetensors": (0.3611, 0.1159), "sd3_vae.safetensors": (1.5305, 0.0609),
             "SD3.5-vae.safetensors": (1.5305, 0.0609)}
    for name, factors in cases.items():
        _vae_header(folder / name)
        assert VAELoader.VALIDATE_INPUTS(name) is True
        vae = VAELoader().load_vae(name)[0]  # a handle: the weights load on first use
        assert (vae.scaling_factor, vae.shift_factor) == factors, name
    _vae_header(folder / "declared.safetensors", {"family": "sd3"})
    assert VAELoader().load_vae("declared.safetensors")[0].scaling_factor == 1.5305


def test_a_whole_sd3_checkpoint_as_vae_file_decodes_like_the_checkpoint(models_dir: Path, references: Any) -> None:
    _copy(tiny_flow.tiny_flow_single_file("sd3"), models_dir / "vae" / "sd3-whole.safetensors")
    vae = VAELoader().load_vae("sd3-whole.safetensors")[0]
    latents, image = references["sd3"]
    assert (vae.scaling_factor, vae.shift_factor) == (1.5305, 0.0609)
    assert np.array_equal(vae_decode(vae, {"samples": latents}), image)


# ----------------------------------------------------------------------------- wrong files, clear errors


def _shaped(path: Path, shapes: dict[str, tuple[int, ...]]) -> str:
    return _save(path, {k: torch.zeros(s, dtype=torch.int8) for k, s in shapes.items()})


def _clip_layers(n: int, width: int) -> dict[str, tuple[int, ...]]:
    return {"text_model.embeddings.token_embedding.weight": (10, width),
            **{f"text_model.encoder.layers.{i}.mlp.fc1.weight": (1, 1) for i in range(n)}}


WRONG_CLIPS = [  # (file shapes, what the error says)
    ({"encoder.block.0.layer.0.SelfAttention.q.weight": (4, 2048), "shared.weight": (4, 2048),
      "encoder.block.0.layer.1.DenseReluDense.wi_1.weight": (4, 2048)}, "T5-XL (AuraFlow)"),
    (_clip_layers(24, 1024), "CLIP-H"),
    (_clip_layers(12, 1024), "1024-wide CLIP"),
    ({"model.layers.0.self_attn.q_proj.weight": (4, 4), "model.embed_tokens.weight": (4, 4)}, "LLM text encoder"),
]


@pytest.mark.parametrize(("shapes", "says"), WRONG_CLIPS, ids=[s for _, s in WRONG_CLIPS])
def test_text_encoders_of_other_kinds_are_named_at_validation_and_run(models_dir: Path, files: dict[str, Path],
                                                                     shapes: dict[str, Any], says: str) -> None:
    name = _shaped(models_dir / "text_encoders" / f"wrong-{says.split()[0]}.safetensors", shapes)
    verdict = DualCLIPLoader.VALIDATE_INPUTS(CLIP_L, name, "sd3")
    assert isinstance(verdict, str) and says in verdict and "clip_name2" in verdict
    with pytest.raises(ModelError, match=re.escape(says)):
        DualCLIPLoader().load_clip(CLIP_L, name, "sd3")


def test_wrong_combinations_name_the_input_and_the_fix(files: dict[str, Path]) -> None:
    cases: list[tuple[Any, tuple[str, ...], list[str]]] = [
        (DualCLIPLoader, (CLIP_L, CLIP_L, "flux"), ["clip_name1", "clip_name2", "both CLIP-L",
                                                    "set clip_name2 to a T5-XXL file"]),
        (DualCLIPLoader, (CLIP_G, T5, "flux"), ["clip_name1", "OpenCLIP-G", "type 'flux' does not use",
                                                "one CLIP-L and one T5-XXL"]),
        (DualCLIPLoader, (T5, CLIP_L, "sdxl"), ["clip_name1", "T5-XXL", "type 'sdxl' does not use"]),
        (DualCLIPLoader, (CLIP_L, T5, "hidream"), ["type 'hidream'", "not supported yet", "'sdxl', 'sd3' or 'flux'"]),
        (TripleCLIPLoader, (CLIP_L, T5, T5), ["clip_name2", "clip_name3", "both T5-XXL", "OpenCLIP-G file"]),
    ]
    for node, args, says in cases:
        verdict = node.VALIDATE_INPUTS(*args)
        assert isinstance(verdict, str) and all(s in verdict for s in says), (args, verdict)
        with pytest.raises(ModelError) as info:
            node().load_clip(*args)
        assert info.value.code == "VE-800" and all(s in f"{info.value.message}; {info.value.hint}" for s in says)


def test_type_sd3_given_a_diffusion_model_or_a_vae_says_which_loader_reads_it(models_dir: Path,
                                                                            files: dict[str, Path]) -> None:
    folder = models_dir / "text_encoders"
    _copy(files[UNET["flux"]], folder / "flux1-dev.safetensors")
    _copy(files[VAE["sd3"]], folder / "misplaced-vae.safetensors")
    _copy(tiny_flow.tiny_flow_single_file("sd3"), folder / "sd3-whole.safetensors")
    for name, says in (("flux1-dev.safetensors", ["a Flux transformer", "not a text encoder", "UNETLoader"]),
                       ("misplaced-vae.safetensors", ["is a VAE", "VAELoader"]),
                       ("sd3-whole.safetensors", ["holds 3 text encoders", "CheckpointLoaderSimple"])):
        verdict = CLIPLoader.VALIDATE_INPUTS(name, "sd3")
        assert isinstance(verdict, str) and all(s in verdict for s in says), verdict
        with pytest.raises(ModelError, match=says[0]):
            CLIPLoader().load_clip(name, "sd3")


def test_an_incomplete_transformer_is_refused_with_what_it_looks_like(models_dir: Path) -> None:
    name = _shaped(models_dir / "diffusion_models" / "torn-flux.safetensors",
                   {"double_blocks.0.img_attn.qkv.weight": (9, 3), "img_in.weight": (3, 64)})
    verdict = UNETLoader.VALIDATE_INPUTS(name)
    assert isinstance(verdict, str) and "looks like a Flux transformer but is not a complete one" in verdict
    with pytest.raises(ModelError, match="not a complete one"):
        UNETLoader().load_unet(name, "default")


def test_missing_files_are_validation_problems_naming_their_input(models_dir: Path) -> None:
    verdict = DualCLIPLoader.VALIDATE_INPUTS(CLIP_L, "t5xxl_fp16.safetensors", "flux")
    assert isinstance(verdict, MissingFile) and "clip_name2 't5xxl_fp16.safetensors' not found" in verdict
    assert verdict.code == "VE-117" and str(models_dir / "text_encoders") in verdict
    verdict = TripleCLIPLoader.VALIDATE_INPUTS(CLIP_L, CLIP_G, "nope.safetensors")
    assert isinstance(verdict, MissingFile) and "clip_name3 'nope.safetensors' not found" in verdict
    verdict = CLIPLoader.VALIDATE_INPUTS("nope.safetensors", "sd3")
    assert isinstance(verdict, MissingFile) and "clip_name 'nope.safetensors' not found" in verdict
    for loader, name in ((UNETLoader, "flux1-schnell.safetensors"), (VAELoader, "ae.safetensors.missing")):
        assert isinstance(loader.VALIDATE_INPUTS(name), MissingFile)
    g = vx.Graph()
    node = g.add("DualCLIPLoader", clip_name1=CLIP_L, clip_name2="t5xxl_fp16.safetensors", type="flux")
    problems = [p for p in g.problems() if p.node == node.id]
    assert len(problems) == 1 and problems[0].code == "VE-117" and "clip_name2" in problems[0].message
