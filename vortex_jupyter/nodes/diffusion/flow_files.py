"""SD3 and Flux single-file checkpoints in ComfyUI's layout: writing (the tiny models) and loading.

A checkpoint holds every part under its prefix, as ComfyUI saves and loads them:

- ``model.diffusion_model.``: the transformer in its original layout (``flow_keys``: Stability's
  MMDiT names for SD3, Black Forest Labs' for Flux);
- ``text_encoders.clip_l.transformer.`` / ``text_encoders.clip_g.transformer.`` (SD3) /
  ``text_encoders.t5xxl.transformer.``: the text encoders in transformers' names;
- the VAE in ldm names under ``first_stage_model.`` (SD3) or ``vae.`` (Flux).

Configs: our files carry their exact diffusers configs in ``vortex_configs`` metadata; other
files get the transformer's config from its tensor shapes (``flow_keys``) and the real SD3 /
Flux shapes for the rest. Tokenizers: our files say ``"tokenizers": "builtin"`` (the package's
offline CLIP BPE and T5 Unigram, written under the models root); for other files CLIP uses the
offline BPE too (as SDXL files do) and T5 needs a real T5 tokenizer (``t5.load_tokenizer``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...errors import ModelError
from ...workers.arbiter import MemoryArbiter
from . import models
from .components import ClipHandle, Component, ModelHandle, VaeHandle, device_and_dtype, quiet_progress

TRANSFORMER = "model.diffusion_model."
TEXT = {"text_encoder": "text_encoders.clip_l.transformer.", "text_encoder_2": "text_encoders.clip_g.transformer.",
        "t5": "text_encoders.t5xxl.transformer."}
VAE = {"sd3": "first_stage_model.", "flux": "vae."}
_TIED = "encoder.embed_tokens.weight"  # T5's copy of ``shared.weight``; files keep only ``shared``


def checkpoint_family(shapes: dict[str, Any]) -> str | None:
    """"sd3" / "flux" when a full checkpoint's transformer is an MMDiT / a Flux transformer."""
    if f"{TRANSFORMER}joint_blocks.0.x_block.attn.qkv.weight" in shapes:
        return "sd3"
    if f"{TRANSFORMER}double_blocks.0.img_attn.qkv.weight" in shapes:
        return "flux"
    return None


# ------------------------------------------------------------------------- writing


def write_flow_single_file(path: Path, family: str, mods: dict[str, Any]) -> None:
    """The tiny model's modules as one ``.safetensors``; byte-identical across machines."""
    from safetensors.torch import save_file

    from . import flow_keys
    from .ldm import VAE_PREFIX, vae_to_ldm

    to_original = flow_keys.sd3_to_original if family == "sd3" else flow_keys.flux_to_original
    transformer, vae = mods["transformer"], mods["vae"]
    state: dict[str, Any] = {TRANSFORMER + k: v for k, v in to_original(transformer.state_dict()).items()}
    t5_key = "text_encoder_3" if family == "sd3" else "text_encoder_2"
    encoders = {"text_encoder": mods["text_encoder"], "t5": mods[t5_key]}
    if family == "sd3":
        encoders["text_encoder_2"] = mods["text_encoder_2"]
    for part, module in encoders.items():
        state.update({TEXT[part] + k: v for k, v in module.state_dict().items()
                      if not k.endswith("position_ids") and k != _TIED})
    for k, v in vae_to_ldm(vae.state_dict(), dict(vae.config)).items():
        state[VAE[family] + k[len(VAE_PREFIX):]] = v
    state = {k: v.detach().clone().contiguous() for k, v in state.items()}
    configs: dict[str, Any] = {"family": family, "tokenizers": "builtin",
                               "transformer": models._plain(transformer.config), "vae": models._plain(vae.config)}
    for part, module in encoders.items():
        configs[part] = module.config.to_dict()
    save_file(state, str(path), metadata={"vortex_configs": json.dumps(configs, sort_keys=True)})


# ------------------------------------------------------------------------- loading


def _configs(family: str, shapes: dict[str, Any], meta: dict[str, str]) -> dict[str, Any]:
    raw = meta.get("vortex_configs")
    if raw is not None:
        try:
            return dict(json.loads(raw))
        except ValueError as exc:
            raise ModelError(f"checkpoint metadata 'vortex_configs' is not JSON: {exc}") from exc
    from . import flow_keys

    sub = {k[len(TRANSFORMER):]: v for k, v in shapes.items() if k.startswith(TRANSFORMER)}
    infer = flow_keys.sd3_config_from_original if family == "sd3" else flow_keys.flux_config_from_original
    configs: dict[str, Any] = {"family": family, "transformer": infer(sub), "vae": real_vae_config(family)}
    configs.update(real_text_configs(family, shapes))
    return configs


def real_vae_config(family: str) -> dict[str, Any]:
    """The 16-channel VAE of SD3 / Flux (SD1's layout with 16 latent channels, no quant convs)."""
    scaling, shift = (1.5305, 0.0609) if family == "sd3" else (0.3611, 0.1159)
    return dict(models.sd15_configs()["vae"], latent_channels=16, scaling_factor=scaling, shift_factor=shift,
                use_quant_conv=False, use_post_quant_conv=False)


def real_text_config(part: str, t5_layers: int = 24) -> dict[str, Any]:
    """The real config of CLIP-L (``part`` "text_encoder"), OpenCLIP-G ("text_encoder_2") or
    T5-XXL v1.1 ("t5", with ``t5_layers`` blocks)."""
    clip = {"vocab_size": 49408, "max_position_embeddings": 77, "bos_token_id": 49406, "eos_token_id": 49407,
            "pad_token_id": 49407}
    if part == "text_encoder":
        return dict(clip, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                    num_attention_heads=12, projection_dim=768, hidden_act="quick_gelu")
    if part == "text_encoder_2":
        return dict(clip, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                    num_attention_heads=20, projection_dim=1280, hidden_act="gelu")
    return {"vocab_size": 32128, "d_model": 4096, "d_kv": 64, "d_ff": 10240, "num_layers": t5_layers,
            "num_heads": 64, "feed_forward_proj": "gated-gelu", "is_encoder_decoder": False,
            "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128,
            "pad_token_id": 0, "eos_token_id": 1, "dropout_rate": 0.0, "use_cache": False}


def real_text_configs(family: str, shapes: dict[str, Any]) -> dict[str, Any]:
    """CLIP-L / OpenCLIP-G / T5-XXL configs for the encoders a real file holds."""
    block = TEXT["t5"] + "encoder.block."
    blocks = {k[len(block):].split(".")[0] for k in shapes if k.startswith(block)}
    return {part: real_text_config(part, len(blocks) or 24) for part, prefix in TEXT.items()
            if any(k.startswith(prefix) for k in shapes)}


def builtin_tokenizers() -> tuple[Any, Any]:
    """The package's offline CLIP and T5 tokenizers (written once under the models root)."""
    from transformers import AutoTokenizer, CLIPTokenizer

    from .t5 import write_t5_tokenizer
    from .tokenizer import write_tokenizer

    root = models.models_root() / ".tokenizers"
    clip_dir, t5_dir = root / "clip", root / "t5"
    if not (clip_dir / "vocab.json").is_file():
        write_tokenizer(clip_dir)
    if not (t5_dir / "tokenizer_config.json").is_file():
        write_t5_tokenizer(t5_dir)
    return (CLIPTokenizer.from_pretrained(str(clip_dir), local_files_only=True),
            AutoTokenizer.from_pretrained(str(t5_dir), local_files_only=True))


def build_part(part: str, family: str, state: dict[str, Any], configs: dict[str, Any]) -> Any:
    """The module of one part with its (diffusers/transformers-named) weights loaded strictly."""
    from diffusers import AutoencoderKL, FluxTransformer2DModel, SD3Transformer2DModel
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTextModelWithProjection,
        T5Config,
        T5EncoderModel,
    )

    config = configs[part]
    module: Any
    if part == "transformer":
        module = (SD3Transformer2DModel if family == "sd3" else FluxTransformer2DModel)(**config)
    elif part == "vae":
        module = AutoencoderKL(**config)
    elif part == "t5":
        module = T5EncoderModel(T5Config.from_dict(config))
        state = {**state, _TIED: state["shared.weight"]} if "shared.weight" in state else state
    else:
        projected = family == "sd3" or part == "text_encoder_2"
        module = (CLIPTextModelWithProjection if projected else CLIPTextModel)(CLIPTextConfig.from_dict(config))
        if not projected:
            state = {k: v for k, v in state.items() if not k.startswith("text_projection")}
    missing, unexpected = module.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise KeyError(f"missing {missing[:3]}, unexpected {unexpected[:3]}")
    return module


def _part_state(path: Path, part: str, family: str) -> dict[str, Any]:
    from . import flow_keys
    from .single_file import read_state_dict

    if part == "transformer":
        state, _ = read_state_dict(path, (TRANSFORMER,))
        convert = flow_keys.sd3_from_original if family == "sd3" else flow_keys.flux_from_original
        return dict(convert(state, prefix=TRANSFORMER))
    prefix = VAE[family] if part == "vae" else TEXT[part]  # the VAE: ldm names, renamed by the caller
    state, _ = read_state_dict(path, (prefix,))
    return {k[len(prefix):]: v for k, v in state.items()}


def _load_part(path: Path, part: str, family: str, configs: dict[str, Any]) -> Any:
    quiet_progress()
    try:
        state = _part_state(path, part, family)
        if part == "vae":
            from .ldm import from_ldm, vae_names

            names = vae_names(_vae_keys(configs["vae"]), configs["vae"])
            state, unused = from_ldm(state, names)
            if unused:
                raise KeyError(f"unexpected VAE keys {unused[:3]}")
        return build_part(part, family, state, configs)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelError(f"checkpoint {path.name!r}: its {part} does not match the {family.upper()} config: {exc}",
                         hint=f"only {family.upper()}-shaped single files load as {family.upper()}") from exc


def _vae_keys(config: dict[str, Any]) -> list[str]:
    """The diffusers key names of a VAE of this config (from a meta-device model: no memory)."""
    import torch
    from diffusers import AutoencoderKL

    with torch.device("meta"):
        vae: Any = AutoencoderKL(**config)
        return list(vae.state_dict())


def load_flow_single_file(name: str, path: Path, family: str, arbiter: MemoryArbiter | None
                          ) -> tuple[ModelHandle, ClipHandle, VaeHandle]:
    """MODEL/CLIP/VAE handles of an SD3 / Flux single file; each part loads lazily on its own."""
    from . import families, t5
    from .flow_loader import scheduler_for

    shapes, meta = families.read_header(path)
    configs = _configs(family, shapes, meta)
    if configs.get("tokenizers") == "builtin":
        clip_tok, t5_tok = builtin_tokenizers()
    else:  # a real file: real tokenizers
        from . import clip_tokenizer

        clip_tok = clip_tokenizer.for_file(False, path.name)
        t5_tok = t5.load_tokenizer(None) if "t5" in configs else None
    device, dtype = device_and_dtype(family)
    size = path.stat().st_size
    key = f"{path.resolve()}|{path.stat().st_mtime_ns}|{device}|{dtype}"

    def component(part: str, share: float) -> Component | None:
        if part not in configs:
            return None

        def load() -> Any:
            return _load_part(path, part, family, configs).to(device=device, dtype=dtype).eval().requires_grad_(False)
        return Component(f"{key}|{part}", load, int(size * share), arbiter)

    transformer = component("transformer", 0.6)
    vae_comp = component("vae", 0.02)
    assert transformer is not None and vae_comp is not None
    vae_cfg = configs["vae"]
    return (ModelHandle(name, transformer, scheduler_for(family, configs["transformer"]), family=family),
            ClipHandle(name, component("text_encoder", 0.02), clip_tok,  # type: ignore[arg-type]  # None: no CLIP-L
                       encoder_2=component("text_encoder_2", 0.05),
                       t5=component("t5", 0.3), t5_tokenizer=t5_tok, kind=family),
            VaeHandle(name, vae_comp, float(vae_cfg.get("scaling_factor", 1.0)),
                      shift_factor=float(vae_cfg.get("shift_factor") or 0.0)))
