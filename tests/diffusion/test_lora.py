"""LoraLoader with tiny LoRAs the tests write in diffusers/peft and kohya formats."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from vortex_jupyter.errors import ModelError
from vortex_jupyter.nodes.diffusion.nodes import LoraLoader
from vortex_jupyter.nodes.diffusion.sampling import SampleSettings, sample
from vortex_jupyter.nodes.diffusion.text import encode_text
from vortex_jupyter.nodes.diffusion.vae import vae_decode

UNET_TARGETS = ("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
                "up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_v")
TEXT_TARGET = "text_model.encoder.layers.0.self_attn.q_proj"


def _pair(gen: torch.Generator, out_f: int, in_f: int, rank: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(rank, in_f, generator=gen), torch.randn(out_f, rank, generator=gen)


def write_peft_lora(path: Path, handles: Any) -> None:
    gen = torch.Generator().manual_seed(0)
    state: dict[str, torch.Tensor] = {}
    with handles[0].unet.use() as unet:
        mods = dict(unet.named_modules())
        for target in UNET_TARGETS:
            w = mods[target].weight
            down, up = _pair(gen, w.shape[0], w.shape[1])
            state[f"unet.{target}.lora_A.weight"], state[f"unet.{target}.lora_B.weight"] = down, up
    with handles[1].encoder.use() as text:
        w = dict(text.named_modules())[TEXT_TARGET.removeprefix("text_model.")].weight
        down, up = _pair(gen, w.shape[0], w.shape[1])
        state[f"text_encoder.{TEXT_TARGET}.lora_A.weight"] = down
        state[f"text_encoder.{TEXT_TARGET}.lora_B.weight"] = up
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))


@pytest.fixture(scope="module")
def lora_name(models_dir: Path, tiny_handles: Any) -> str:
    write_peft_lora(models_dir / "loras" / "tiny-peft.safetensors", tiny_handles)
    return "tiny-peft.safetensors"


def render(model: Any, clip: Any, vae: Any) -> np.ndarray:
    pos, neg = encode_text(clip, "a cat"), encode_text(clip, "")
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    return vae_decode(vae, sample(model, pos, neg, latent, SampleSettings(4, 3, 7.0, "euler", "normal")))


def test_lora_changes_the_image_and_leaves_the_base_model_alone(tiny_handles: Any, lora_name: str) -> None:
    model, clip, vae = tiny_handles
    before = render(model, clip, vae)
    new_model, new_clip = LoraLoader().load_lora(model, clip, lora_name, 1.0, 1.0)
    assert new_model is not model and new_clip is not clip
    assert not np.array_equal(render(new_model, new_clip, vae), before)
    assert np.array_equal(render(model, clip, vae), before), "the un-patched MODEL must stay usable"


def test_lora_at_strength_zero_changes_nothing(tiny_handles: Any, lora_name: str) -> None:
    model, clip, vae = tiny_handles
    new_model, new_clip = LoraLoader().load_lora(model, clip, lora_name, 0.0, 0.0)
    assert new_model is model and new_clip is clip
    assert np.array_equal(render(new_model, new_clip, vae), render(model, clip, vae))


def test_lora_merge_adds_exactly_up_times_down(tiny_handles: Any, lora_name: str, models_dir: Path) -> None:
    from safetensors.torch import load_file

    model, clip, _ = tiny_handles
    state = load_file(str(models_dir / "loras" / lora_name))
    new_model, _ = LoraLoader().load_lora(model, clip, lora_name, 0.5, 0.0)
    target = UNET_TARGETS[0]
    with model.unet.use() as base, new_model.unet.use() as patched:
        delta = dict(patched.named_modules())[target].weight - dict(base.named_modules())[target].weight
    want = 0.5 * state[f"unet.{target}.lora_B.weight"] @ state[f"unet.{target}.lora_A.weight"]
    torch.testing.assert_close(delta, want, rtol=1e-4, atol=1e-4)


def test_kohya_format_lora_is_converted_and_applied(tiny_handles: Any, models_dir: Path) -> None:
    model, clip, _ = tiny_handles
    gen = torch.Generator().manual_seed(1)
    with model.unet.use() as unet:
        w = dict(unet.named_modules())[UNET_TARGETS[0]].weight
    down, up = _pair(gen, w.shape[0], w.shape[1])
    name = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    save_file({f"{name}.lora_down.weight": down, f"{name}.lora_up.weight": up, f"{name}.alpha": torch.tensor(2.0)},
              str(models_dir / "loras" / "tiny-kohya.safetensors"))
    new_model, _ = LoraLoader().load_lora(model, clip, "tiny-kohya.safetensors", 1.0, 1.0)
    with model.unet.use() as base, new_model.unet.use() as patched:
        delta = dict(patched.named_modules())[UNET_TARGETS[0]].weight - dict(base.named_modules())[UNET_TARGETS[0]].weight
    torch.testing.assert_close(delta, (up @ down) * (2.0 / 4), rtol=1e-4, atol=1e-4)


def test_lora_for_another_model_family_is_a_clear_error(tiny_handles: Any, models_dir: Path) -> None:
    model, clip, _ = tiny_handles
    gen = torch.Generator().manual_seed(2)
    down, up = _pair(gen, 320, 320)  # SD1.5-sized, not the tiny model's widths
    target = UNET_TARGETS[0]
    save_file({f"unet.{target}.lora_A.weight": down, f"unet.{target}.lora_B.weight": up},
              str(models_dir / "loras" / "sd15-sized.safetensors"))
    new_model, _ = LoraLoader().load_lora(model, clip, "sd15-sized.safetensors", 1.0, 1.0)
    with pytest.raises(ModelError, match="different model family"):
        new_model.unet.get()


def test_missing_lora_names_the_folder() -> None:
    with pytest.raises(ModelError, match="loras"):
        LoraLoader().load_lora(None, None, "nope.safetensors", 1.0, 1.0)
