"""UNETLoader / CLIPLoader / VAELoader / LoraLoaderModelOnly on files cut from the tiny model.

The reference everywhere is CheckpointLoaderSimple on the same weights: a split file in any
layout ComfyUI reads must give a bit-identical image. Files of other model families are
written with the tensor names and shapes those families use (int8 zeros: only shapes matter).
"""

from __future__ import annotations

import json
import os
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
from vortex_jupyter.nodes.diffusion import ldm, models
from vortex_jupyter.nodes.diffusion.loader_nodes import (
    CLIPLoader,
    LoraLoader,
    LoraLoaderModelOnly,
    UNETLoader,
    VAELoader,
)
from vortex_jupyter.nodes.diffusion.split import load_clip, load_unet, load_vae
from vortex_jupyter.nodes.registry import REGISTRY

from .conftest import render
from .test_lora import write_peft_lora

FIRST = "<first choice>"  # a combo's default: its first choice (the built-in tiny file, when there is one)
#: ComfyUI's (category, display name, [(input, default)] in widget order, outputs).
COMFY: dict[str, tuple[str, str, list[tuple[str, Any]], list[str]]] = {
    "VAELoader": ("loaders", "Load VAE", [("vae_name", "vortex-tiny-vae.safetensors")], ["VAE"]),
    "CLIPLoader": ("advanced/loaders", "Load CLIP", [("clip_name", "vortex-tiny-clip.safetensors"),
                                                     ("type", "stable_diffusion"), ("device", "default")], ["CLIP"]),
    "UNETLoader": ("advanced/loaders", "Load Diffusion Model", [("unet_name", "vortex-tiny-unet.safetensors"),
                                                                ("weight_dtype", "default")], ["MODEL"]),
    "LoraLoaderModelOnly": ("loaders", "", [("model", None), ("lora_name", FIRST), ("strength_model", 1.0)],
                            ["MODEL"]),
    "CLIPSetLastLayer": ("conditioning", "CLIP Set Last Layer", [("clip", None), ("stop_at_clip_layer", -1)],
                         ["CLIP"]),
}


@pytest.mark.parametrize("name", sorted(COMFY))
def test_split_loader_nodes_have_comfyuis_interface(name: str, models_dir: Path) -> None:
    spec = REGISTRY.get(name)
    category, display, inputs, outputs = COMFY[name]
    assert (spec.category, spec.display_name) == (category, display)
    want = [(n, (spec.input(n).choices or [None])[0] if d == FIRST else d) for n, d in inputs]  # type: ignore[union-attr]
    assert [(p.name, p.default if p.has_default else None) for p in spec.inputs] == want
    assert [o.type for o in spec.outputs] == outputs and spec.heavy


def test_choice_lists_match_comfyui() -> None:
    def port(node: str, name: str) -> Any:
        p = REGISTRY.get(node).input(name)
        assert p is not None
        return p

    assert list(port("UNETLoader", "weight_dtype").choices) == ["default", "fp8_e4m3fn", "fp8_e4m3fn_fast",
                                                                "fp8_e5m2"]
    types = list(port("CLIPLoader", "type").choices)
    assert types[0] == "stable_diffusion" and {"sd3", "wan", "qwen_image", "flux2", "ltxv"} <= set(types)
    assert list(port("CLIPLoader", "device").choices) == ["default", "cpu"] and not port("CLIPLoader", "device").required
    layer = port("CLIPSetLastLayer", "stop_at_clip_layer")
    assert (layer.min, layer.max, layer.step) == (-24, -1, 1)


# ----------------------------------------------------------------------------- the tiny split files


def test_tiny_split_files_are_byte_stable_and_cut_from_the_single_file(tiny_path: Path, tmp_path: Path) -> None:
    mine, other = models.tiny_split_files(), models.tiny_split_files(tmp_path)
    single = load_file(str(models.tiny_single_file()))
    for part, prefix in (("unet", ldm.UNET_PREFIX), ("clip", ldm.CLIP_PREFIX), ("vae", ldm.VAE_PREFIX)):
        assert mine[part].read_bytes() == other[part].read_bytes(), part
        state = load_file(str(mine[part]))
        assert state.keys() == {k[len(prefix):] for k in single if k.startswith(prefix)}
        assert all(torch.equal(v, single[prefix + k]) for k, v in state.items())
    # ComfyUI's layouts: ldm names without prefix for UNet and VAE, transformers names for CLIP
    assert "input_blocks.0.0.weight" in load_file(str(mine["unet"]))
    assert "decoder.up.0.block.0.conv1.weight" in load_file(str(mine["vae"]))
    assert "text_model.embeddings.token_embedding.weight" in load_file(str(mine["clip"]))


def test_split_files_are_rewritten_after_the_tiny_model_is_rebuilt(tmp_path: Path) -> None:
    paths = models.tiny_split_files(tmp_path)
    before = paths["vae"].stat().st_mtime_ns
    single = models.tiny_single_file(tmp_path)
    os.utime(single, ns=(before + 10**9, before + 10**9))  # a newer single file, as a rebuild leaves
    assert models.tiny_split_files(tmp_path)["vae"].stat().st_mtime_ns > before


@pytest.fixture(scope="module")
def reference(tiny_handles: Any) -> np.ndarray:
    return render(tiny_handles, seed=5, steps=3)


def _split(unet: str = models.TINY_SPLIT_NAMES["unet"], clip: str = models.TINY_SPLIT_NAMES["clip"],
           vae: str = models.TINY_SPLIT_NAMES["vae"]) -> tuple[Any, Any, Any]:
    return (UNETLoader().load_unet(unet, "default")[0], CLIPLoader().load_clip(clip, "stable_diffusion")[0],
            VAELoader().load_vae(vae)[0])


def test_split_loaders_give_the_checkpoint_loaders_image_bit_for_bit(reference: np.ndarray) -> None:
    assert np.array_equal(render(_split(), seed=5, steps=3), reference)


def test_split_graph_and_checkpoint_graph_agree_through_the_engine(tiny_path: Path) -> None:
    g = vx.Graph()
    ckpt = g.add("CheckpointLoaderSimple", ckpt_name="vortex-tiny")
    unet = g.add("UNETLoader", unet_name="vortex-tiny-unet.safetensors", weight_dtype="default")
    clip = g.add("CLIPLoader", clip_name="vortex-tiny-clip.safetensors", type="stable_diffusion")
    vae = g.add("VAELoader", vae_name="vortex-tiny-vae.safetensors")
    images = []
    for model, text_encoder, decoder in ((ckpt.MODEL, ckpt.CLIP, ckpt.VAE), (unet.MODEL, clip.CLIP, vae.VAE)):
        pos = g.add("CLIPTextEncode", clip=text_encoder, text="a cat")
        neg = g.add("CLIPTextEncode", clip=text_encoder, text="")
        latent = g.add("EmptyLatentImage", width=64, height=64, batch_size=1)
        ks = g.add("KSampler", model=model, positive=pos.CONDITIONING, negative=neg.CONDITIONING,
                   latent_image=latent.LATENT, seed=7, steps=2, cfg=7.0, sampler_name="euler",
                   scheduler="normal", denoise=1.0)
        images.append(g.add("VAEDecode", samples=ks.LATENT, vae=decoder))
    run = g.run()  # the default executor: a real worker process
    assert run.status == "ok", run.errors
    a, b = (np.asarray(run.outputs[i.id][0]) for i in images)
    assert a.shape == (1, 64, 64, 3) and np.array_equal(a, b)


# ----------------------------------------------------------------------------- other layouts


def _single() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    path = models.tiny_single_file()
    with safe_open(str(path), framework="pt") as f:
        configs = json.loads((f.metadata() or {})["vortex_configs"])
    return load_file(str(path)), configs


def _save(path: Path, state: dict[str, torch.Tensor], configs: dict[str, Any] | None = None) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"vortex_configs": json.dumps(configs)} if configs is not None else None
    save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata=meta)
    return path.name


def _part(state: dict[str, torch.Tensor], prefix: str, new: str = "") -> dict[str, torch.Tensor]:
    return {new + k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _folder_file(tiny_path: Path, sub: str) -> dict[str, torch.Tensor]:
    return load_file(str(tiny_path / sub / "diffusion_pytorch_model.safetensors"))


def test_unet_files_in_every_comfyui_layout_give_the_same_image(models_dir: Path, tiny_path: Path,
                                                                reference: np.ndarray) -> None:
    state, configs = _single()
    cfg = {"unet": configs["unet"]}
    folder = models_dir / "diffusion_models"
    names = [
        _save(folder / "prefixed.safetensors", _part(state, "", ""), cfg),  # a whole checkpoint, as ComfyUI allows
        _save(folder / "ldm-prefixed.safetensors", _part(state, ldm.UNET_PREFIX, ldm.UNET_PREFIX), cfg),
        _save(folder / "diffusers.safetensors", _folder_file(tiny_path, "unet"), cfg),
    ]
    (models_dir / "unet").mkdir(exist_ok=True)  # ComfyUI's other diffusion_models folder
    torch.save({"state_dict": _part(state, ldm.UNET_PREFIX), "vortex_configs": json.dumps(cfg)},
               models_dir / "unet" / "pickled.pt")
    names.append("pickled.pt")  # pickles load only through torch.load(weights_only=True)
    for name in names:
        assert np.array_equal(render(_split(unet=name), seed=5, steps=3), reference), name


def test_vae_files_in_ldm_and_diffusers_layouts_give_the_same_image(models_dir: Path, tiny_path: Path,
                                                                    reference: np.ndarray) -> None:
    state, configs = _single()
    cfg = {"vae": configs["vae"]}
    old_names = {".to_q.": ".query.", ".to_k.": ".key.", ".to_v.": ".value.", ".to_out.0.": ".proj_attn."}
    diffusers = _folder_file(tiny_path, "vae")
    old = {}
    for k, v in diffusers.items():
        for new, legacy in old_names.items():
            k = k.replace(new, legacy)
        old[k] = v
    folder = models_dir / "vae"
    names = [_save(folder / "diffusers-vae.safetensors", diffusers, cfg),
             _save(folder / "old-diffusers-vae.safetensors", old, cfg),
             _save(folder / "ckpt-as-vae.safetensors", state, configs)]
    for name in names:
        assert np.array_equal(render(_split(vae=name), seed=5, steps=3), reference), name


def test_text_encoder_files_under_any_prefix_give_the_same_image(models_dir: Path, reference: np.ndarray) -> None:
    state, configs = _single()
    cfg = {"text_encoder": configs["text_encoder"]}
    body = _part(state, ldm.CLIP_PREFIX + "text_model.")
    folder = models_dir / "text_encoders"
    names = [_save(folder / "bare.safetensors", body, cfg),  # transformers 5 names
             _save(folder / "clipsave.safetensors", {f"clip_l.transformer.text_model.{k}": v for k, v in body.items()},
                   cfg),
             _save(models_dir / "clip" / "whole-ckpt.safetensors", state, configs)]
    for name in names:
        assert np.array_equal(render(_split(clip=name), seed=5, steps=3), reference), name


def test_fp8_weight_dtype_stores_fp8_and_stays_close_to_full_precision(reference: np.ndarray) -> None:
    model = load_unet(models.TINY_SPLIT_NAMES["unet"], "fp8_e4m3fn")
    with model.unet.use() as unet:
        stored = {p.dtype for p in unet.parameters()}
        assert torch.float8_e4m3fn in stored and unet.dtype == torch.float32  # computes in fp32
    clip, vae = load_clip(models.TINY_SPLIT_NAMES["clip"]), load_vae(models.TINY_SPLIT_NAMES["vae"])
    image = render((model, clip, vae), seed=5, steps=3)
    assert not np.array_equal(image, reference) and np.abs(image - reference).mean() < 0.05


def test_clip_on_cpu_device_is_pinned_to_the_cpu() -> None:
    clip = CLIPLoader().load_clip(models.TINY_SPLIT_NAMES["clip"], "stable_diffusion", "cpu")[0]
    assert clip.encoder.device == "cpu"
    with clip.encoder.use() as encoder:
        assert encoder.device.type == "cpu" and next(encoder.parameters()).dtype == torch.float32


# ----------------------------------------------------------------------------- wrong files


def _shaped(path: Path, shapes: dict[str, tuple[int, ...]]) -> str:
    return _save(path, {k: torch.zeros(s, dtype=torch.int8) for k, s in shapes.items()})


WRONG = {
    "unet": [
        ("unclip.safetensors", {"input_blocks.0.0.weight": (320, 4, 3, 3), "label_emb.0.0.weight": (1280, 2048),
                                "input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight": (640, 1024)},
         "class embeddings and cross-attention width 1024"),
        ("sd2.safetensors", {"input_blocks.0.0.weight": (320, 4, 3, 3),
                             "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 1024)}, "SD2.x"),
        ("wan.safetensors", {"patch_embedding.weight": (5120, 16, 1, 2, 2), "blocks.0.self_attn.q.weight": (4, 4)},
         "video transformer (Wan family)"),
        ("inpaint.safetensors", {"model.diffusion_model.input_blocks.0.0.weight": (320, 9, 3, 3)}, "9 input channels"),
    ],
    "vae": [("video-vae.safetensors", {"decoder.conv_in.weight": (512, 16, 3, 3, 3),
                                       "decoder.up.0.block.0.conv1.weight": (128, 256, 3, 3, 3)}, "video VAE"),
            ("taesd.safetensors", {"taesd_decoder.1.weight": (64, 4, 3, 3)}, "TAESD")],
    "clip": [("clip_g.safetensors", {"text_model.embeddings.token_embedding.weight": (10, 1280),
                                     **{f"text_model.encoder.layers.{i}.mlp.fc1.weight": (1, 1) for i in range(32)}},
              "CLIP-G"),
             ("t5xxl.safetensors", {"encoder.block.0.layer.0.SelfAttention.q.weight": (4, 4)}, "T5 text encoder")],
}
_NODE = {"unet": (UNETLoader, "unet_name", "diffusion_models"), "vae": (VAELoader, "vae_name", "vae"),
         "clip": (CLIPLoader, "clip_name", "text_encoders")}
_LOAD = {"unet": load_unet, "vae": load_vae, "clip": load_clip}


@pytest.mark.parametrize(("part", "case"), [(p, c) for p, cases in WRONG.items() for c in cases],
                         ids=lambda v: v[0] if isinstance(v, tuple) else v)
def test_files_of_other_families_are_refused_at_validation_and_at_run(models_dir: Path, part: str,
                                                                      case: tuple[Any, ...]) -> None:
    name, shapes, family = case
    node, _, folder = _NODE[part]
    _shaped(models_dir / folder / name, shapes)
    verdict = node.VALIDATE_INPUTS(name)
    assert isinstance(verdict, str) and family in verdict and "not supported yet" in verdict
    with pytest.raises(ModelError) as info:
        _LOAD[part](name)
    assert info.value.code == "VE-800" and family in info.value.message


def test_validation_problem_names_the_node_and_port_of_an_unsupported_unet(models_dir: Path) -> None:
    _shaped(models_dir / "diffusion_models" / "sd21-unclip.safetensors", WRONG["unet"][0][1])
    g = vx.Graph()
    node = g.add("UNETLoader", unet_name="sd21-unclip.safetensors", weight_dtype="default")
    problems = [p for p in g.problems() if p.node == node.id]
    assert len(problems) == 1 and problems[0].port == "unet_name" and "class embeddings" in problems[0].message


def test_cliploader_types_other_than_stable_diffusion_and_sd3_need_issue_11() -> None:
    verdict = CLIPLoader.VALIDATE_INPUTS(models.TINY_SPLIT_NAMES["clip"], "stable_cascade")
    assert isinstance(verdict, str) and verdict.startswith("type:") and "'stable_cascade'" in verdict
    assert "not supported yet" in verdict
    for clip_type in ("stable_diffusion", "sd3"):  # sd3: SD3's CLIP with the file's CLIP-L only
        assert CLIPLoader.VALIDATE_INPUTS(models.TINY_SPLIT_NAMES["clip"], clip_type) is True
    with pytest.raises(ModelError, match="not supported yet"):
        load_clip(models.TINY_SPLIT_NAMES["clip"], "wan")


@pytest.mark.parametrize(("name", "says"), [("pixel_space", "pixel-space"), ("taesd", "TAESD")])
def test_comfyuis_virtual_vae_names_say_what_they_are(name: str, says: str) -> None:
    verdict = VAELoader.VALIDATE_INPUTS(name)
    assert isinstance(verdict, str) and says in verdict and "does not load yet" in verdict


def test_missing_and_corrupt_split_files_are_clear_validation_problems(models_dir: Path) -> None:
    verdict = VAELoader.VALIDATE_INPUTS("nope.safetensors")
    assert isinstance(verdict, MissingFile) and "vae_name 'nope.safetensors' not found" in verdict
    assert str(models_dir / "vae") in verdict and "'vortex-tiny-vae.safetensors'" in verdict
    assert verdict.code == "VE-117" and "VORTEX_MODELS_DIR" in verdict.hint
    good = models.tiny_split_files()["vae"].read_bytes()
    (models_dir / "vae").mkdir(exist_ok=True)
    (models_dir / "vae" / "torn.safetensors").write_bytes(good[:100])
    verdict = VAELoader.VALIDATE_INPUTS("torn.safetensors")
    assert isinstance(verdict, str) and "not a valid safetensors" in verdict
    assert not isinstance(verdict, MissingFile)  # there but unreadable: VE-116, not a missing file


class _Evil:
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {os.environ['EVIL_MARKER']}",))


def test_a_pickled_split_file_that_wants_code_is_refused(models_dir: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "pwned"
    monkeypatch.setenv("EVIL_MARKER", str(marker))
    (models_dir / "vae").mkdir(exist_ok=True)
    torch.save({"decoder.conv_in.weight": torch.zeros(1), "x": _Evil()}, models_dir / "vae" / "evil.pt")
    with pytest.raises(ModelError, match="refuse"):
        load_vae("evil.pt")
    assert not marker.exists()


# ----------------------------------------------------------------------------- LoraLoaderModelOnly


def test_lora_model_only_patches_the_unet_exactly_as_lora_loader_does(models_dir: Path, tiny_handles: Any) -> None:
    write_peft_lora(models_dir / "loras" / "split-test.safetensors", tiny_handles)
    model, clip, _ = tiny_handles
    only = LoraLoaderModelOnly().load_lora_model_only(model, "split-test.safetensors", 0.7)[0]
    both, _ = LoraLoader().load_lora(model, clip, "split-test.safetensors", 0.7, 0.3)
    with only.unet.use() as a, both.unet.use() as b, model.unet.use() as base:
        sa, sb, s0 = a.state_dict(), b.state_dict(), base.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
        assert any(not torch.equal(sa[k], s0[k]) for k in sa)
    assert only.loras == (("split-test.safetensors", 0.7),)
    assert LoraLoaderModelOnly().load_lora_model_only(model, "split-test.safetensors", 0.0)[0] is model


def test_copy_of_the_tiny_checkpoint_still_resolves_from_the_models_root(models_dir: Path, tiny_path: Path) -> None:
    shutil.copy(models.tiny_single_file(), models_dir / "root-level.safetensors")  # older releases looked here
    from vortex_jupyter.nodes.diffusion.loaders import resolve

    assert resolve("root-level.safetensors") == ("file", models_dir / "root-level.safetensors")


@pytest.mark.parametrize("part", ["unet", "vae"])
def test_sd15_sized_ldm_names_are_the_ones_diffusers_own_converter_reads(part: str) -> None:
    """Real SD1.5 files (no metadata) go through the same names: diffusers' converter, fed our ldm
    names at SD1.5's shapes (meta tensors), must give back every diffusers key and shape."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders import single_file_utils as sfu

    cfg = models.sd15_configs()[part]
    with torch.device("meta"):
        module = (UNet2DConditionModel if part == "unet" else AutoencoderKL).from_config(cfg)
    state = module.state_dict()
    if part == "unet":
        ckpt = {ldm.UNET_PREFIX + n: state[k] for k, n in ldm.unet_names(state, cfg).items()}
        back = sfu.convert_ldm_unet_checkpoint(ckpt, dict(module.config))
    else:
        ckpt = ldm.vae_to_ldm(state, cfg)
        back = sfu.convert_ldm_vae_checkpoint(ckpt, dict(module.config))
    assert {k: tuple(v.shape) for k, v in back.items()} == {k: tuple(v.shape) for k, v in state.items()}
    ours, unused = ldm.from_ldm(_part(ckpt, ldm.UNET_PREFIX if part == "unet" else ldm.VAE_PREFIX),
                                ldm.unet_names(state, cfg) if part == "unet" else ldm.vae_names(state, cfg))
    assert not unused and {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in state.items()}


def test_unet_loader_loads_an_sdxl_unet_file_and_renders_like_the_checkpoint(tmp_path: Path, models_dir: Path,
                                                                             monkeypatch: Any) -> None:
    """An SDXL UNet file (ldm names with ``label_emb``, as SDXL diffusion-model files are) loads
    through UNETLoader as the SDXL family and, with the checkpoint's CLIP and VAE, renders
    exactly what the checkpoint renders (it was refused as "another family")."""
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    from vortex_jupyter.nodes.diffusion import families
    from vortex_jupyter.nodes.diffusion.loaders import load_checkpoint
    from vortex_jupyter.nodes.diffusion.split import check_split, load_unet
    from vortex_jupyter.nodes.diffusion.tiny_sdxl import tiny_sdxl_single_file

    from .conftest import render

    single = tiny_sdxl_single_file()
    _, meta = families.read_header(single)
    with safe_open(str(single), framework="pt") as f:
        unet = {k[len("model.diffusion_model."):]: f.get_tensor(k) for k in f.keys()  # noqa: SIM118 (not a dict)
                if k.startswith("model.diffusion_model.")}
    folder = tmp_path / "diffusion_models"
    folder.mkdir()
    configs = json.loads(meta["vortex_configs"])
    save_file(unet, str(folder / "tiny-sdxl-unet.safetensors"),
              metadata={"vortex_configs": json.dumps({"unet": configs["unet"]})})
    monkeypatch.setenv("VORTEX_EXTRA_MODEL_PATHS", "")
    monkeypatch.setattr("vortex_jupyter.nodes.diffusion.folders.folders",
                        lambda kind, strict=True: [folder] if kind == "diffusion_models" else [])
    check_split("unet", "tiny-sdxl-unet.safetensors")  # validation accepts it
    model = load_unet("tiny-sdxl-unet.safetensors")
    assert model.family == "sdxl"
    base = load_checkpoint("vortex-tiny-sdxl")
    assert (render((model, base[1], base[2]), seed=4, steps=2) == render(base, seed=4, steps=2)).all()
