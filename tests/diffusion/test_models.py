"""The built-in tiny model, its single-file twin, and checkpoint resolution errors."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from vortex_jupyter.errors import ModelError
from vortex_jupyter.nodes.diffusion import models
from vortex_jupyter.nodes.diffusion.loaders import load_checkpoint, resolve
from vortex_jupyter.nodes.diffusion.single_file import load_modules, read_state_dict
from vortex_jupyter.nodes.diffusion.tokenizer import build_vocab

from .conftest import render


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_tiny_model_is_an_sd1_shaped_diffusers_folder(tiny_path: Path) -> None:
    index = json.loads((tiny_path / "model_index.json").read_text())
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"]
    assert index["text_encoder"] == ["transformers", "CLIPTextModel"]
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    unet = UNet2DConditionModel.from_pretrained(tiny_path, subfolder="unet", local_files_only=True)
    vae = AutoencoderKL.from_pretrained(tiny_path, subfolder="vae", local_files_only=True)
    text = CLIPTextModel.from_pretrained(tiny_path, subfolder="text_encoder", local_files_only=True)
    params = sum(p.numel() for m in (unet, vae, text) for p in m.parameters())
    assert 3_000_000 < params < 8_000_000
    assert 2 ** (len(vae.config.block_out_channels) - 1) == 8  # SD's 8x latent downscale
    assert unet.config.cross_attention_dim == text.config.hidden_size


def test_tiny_build_is_deterministic_byte_for_byte(tiny_path: Path, tmp_path: Path) -> None:
    other = models.tiny(tmp_path)
    for sub in ("unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors",
                "tokenizer/vocab.json", "tokenizer/merges.txt"):
        assert sha(other / sub) == sha(tiny_path / sub), sub
    assert sha(models.tiny_single_file(tmp_path)) == sha(models.tiny_single_file())


def test_second_call_reuses_the_cache_and_a_seed_variant_differs(tiny_path: Path, tmp_path: Path) -> None:
    stamp = (tiny_path / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns
    assert models.tiny() == tiny_path
    assert (tiny_path / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns == stamp
    variant = models.tiny(tmp_path, seed=1)
    assert variant.name == "vortex-tiny-s1"
    assert sha(variant / "unet/diffusion_pytorch_model.safetensors") != sha(
        tiny_path / "unet/diffusion_pytorch_model.safetensors")


_BUILD = "import sys; from vortex_jupyter.nodes.diffusion import models; print(models.tiny(sys.argv[1]))"


def test_concurrent_builders_wait_for_each_other_and_leave_no_temp_dirs(tmp_path: Path) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", _BUILD, str(tmp_path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-1000:] for o in outs]
    assert {o[0].strip() for o in outs} == {str(tmp_path / "vortex-tiny")}
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_tokenizer_vocab_is_offline_byte_level_and_encodes_any_text(tiny_handles: Any) -> None:
    vocab, merges = build_vocab()
    assert (vocab, merges) == build_vocab()
    assert len(vocab) >= 512 + len(merges) // 2
    tok = tiny_handles[1].tokenizer
    ids = tok(["a photo of an astronaut, ünïcode 😀"], padding="max_length", max_length=77).input_ids[0]
    assert len(ids) == 77 and ids[0] == tok.bos_token_id
    assert tok.decode(ids, skip_special_tokens=True).startswith("a photo of an astronaut")


def _weights(module: Any) -> dict[str, torch.Tensor]:
    return {k: v for k, v in module.state_dict().items() if not k.endswith("position_ids")}


def test_single_file_loads_offline_to_the_same_weights_as_the_folder(tiny_path: Path) -> None:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    state, _ = read_state_dict(models.tiny_single_file())
    assert any(k.startswith("model.diffusion_model.input_blocks.1.1.") for k in state)
    assert any(k.startswith("first_stage_model.decoder.up.3.") for k in state)
    assert any(k.startswith("cond_stage_model.transformer.text_model.") for k in state)
    loaded = load_modules(models.tiny_single_file())
    unet, vae, text = loaded["unet"], loaded["vae"], loaded["text_encoder"]
    folder = (UNet2DConditionModel.from_pretrained(tiny_path, subfolder="unet", local_files_only=True),
              AutoencoderKL.from_pretrained(tiny_path, subfolder="vae", local_files_only=True),
              CLIPTextModel.from_pretrained(tiny_path, subfolder="text_encoder", local_files_only=True))
    for single, ref in zip((unet, vae, text), folder, strict=True):
        a, b = _weights(single), _weights(ref)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)



def test_checkpoint_loader_gives_the_same_image_from_file_folder_and_pickle(
        tiny_handles: Any, models_dir: Path) -> None:
    ckpts = models_dir / "checkpoints"
    ckpts.mkdir(exist_ok=True)
    shutil.copy(models.tiny_single_file(), ckpts / "tiny-copy.safetensors")
    state, meta = read_state_dict(models.tiny_single_file())
    torch.save({"state_dict": state, "vortex_configs": meta["vortex_configs"]}, ckpts / "tiny-copy.ckpt")
    assert resolve("tiny-copy.safetensors")[0] == "file"
    want = render(tiny_handles, seed=3, steps=3)
    assert np.array_equal(render(load_checkpoint("tiny-copy.safetensors"), seed=3, steps=3), want)
    assert np.array_equal(render(load_checkpoint("tiny-copy.ckpt"), seed=3, steps=3), want)


class _Evil:
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {os.environ.get('EVIL_MARKER', '/tmp/vortex-evil-marker')}",))


def test_pickle_checkpoint_with_code_is_refused(models_dir: Path, tmp_path: Path, monkeypatch: Any) -> None:
    marker = tmp_path / "pwned"
    monkeypatch.setenv("EVIL_MARKER", str(marker))
    ckpts = models_dir / "checkpoints"
    ckpts.mkdir(exist_ok=True)
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": _Evil()}, ckpts / "evil.ckpt")
    with pytest.raises(ModelError) as info:
        load_checkpoint("evil.ckpt")
    assert info.value.code == "VE-800" and "evil.ckpt" in str(info.value) and "refuse" in str(info.value)
    assert not marker.exists()


def test_corrupt_safetensors_header_is_a_clear_model_error(models_dir: Path) -> None:
    ckpts = models_dir / "checkpoints"
    ckpts.mkdir(exist_ok=True)
    good = models.tiny_single_file().read_bytes()
    (ckpts / "broken.safetensors").write_bytes(good[:8] + b"{not json" + good[17:200])
    with pytest.raises(ModelError) as info:
        load_checkpoint("broken.safetensors")
    assert "broken.safetensors" in str(info.value) and "not a valid safetensors" in str(info.value)


@pytest.mark.parametrize("name", ["missing.safetensors", "no/such/model"])
def test_missing_checkpoint_says_where_it_looked(name: str) -> None:
    with pytest.raises(ModelError) as info:
        load_checkpoint(name)
    assert info.value.code == "VE-800" and name in str(info.value)
    assert info.value.hint


@pytest.mark.parametrize("name", ["../escape.safetensors", "/etc/passwd", "a\\b.ckpt"])
def test_unsafe_checkpoint_names_are_refused(name: str) -> None:
    with pytest.raises(ModelError, match="not a safe name"):
        load_checkpoint(name)


_HUB_CHILD = """
import sys, torch
torch.set_num_threads(1)
from vortex_jupyter.nodes.diffusion.loaders import load_checkpoint
m, c, v = load_checkpoint("vortex-test/tiny-sd")
with m.unet.use() as unet:
    print(sum(p.numel() for p in unet.parameters()))
"""


def test_hub_id_loads_from_a_local_hugging_face_cache_layout(tiny_path: Path, tmp_path: Path) -> None:
    repo = tmp_path / "hub" / "models--vortex-test--tiny-sd"
    snapshot = repo / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_path, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    env = dict(os.environ, HF_HUB_CACHE=str(tmp_path / "hub"), HF_HUB_OFFLINE="1")
    run = subprocess.run([sys.executable, "-c", _HUB_CHILD], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert int(run.stdout.split()[-1]) > 1_000_000


def test_unwritable_models_folder_is_a_model_error_with_the_fix(tmp_path: Path) -> None:
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("x")
    with pytest.raises(ModelError, match="VORTEX_MODELS_DIR"):
        models.tiny(blocker / "models")
