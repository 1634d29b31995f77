"""LoRA files -> weight deltas merged into a copy of the UNet / text encoder (LoraLoader).

diffusers' ``load_lora_weights`` needs the ``peft`` backend and mutates the pipeline's
modules in place, which a node graph cannot allow: the un-patched MODEL stays in the cache
for other branches. ComfyUI's LoraLoader instead returns a patched *copy*; we do the same by
merging ``W += strength * scale * (up @ down)`` into a deep copy (``components.patched``).

Formats: diffusers/peft (``unet.<module>.lora_A.weight`` / ``lora_B``), old diffusers
(``.lora.down/.lora.up``, ``.lora_linear_layer.down/up``) and kohya/A1111
(``lora_unet_*``/``lora_te_*``, SDXL's ``lora_te1_*``/``lora_te2_*``, converted by diffusers' own
``lora_state_dict``, which needs no peft). SDXL's second text encoder (``text_encoder_2.``) is
patched on the CLIP's ``encoder_2``. ``scale`` is ``alpha / rank`` when the file has alphas, else 1.
Strength 0 leaves the model untouched (the node returns its input unchanged). SD3 and Flux
models (and their CLIP-L / OpenCLIP-G / T5 encoders) take ComfyUI's layouts in ``lora_flow``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from ...errors import ModelError
from .components import ClipHandle, ModelHandle, patched
from .loaders import lora_path

_PAIRS = (("lora_A.weight", "lora_B.weight"), ("lora.down.weight", "lora.up.weight"),
          ("lora_linear_layer.down.weight", "lora_linear_layer.up.weight"),
          ("lora_down.weight", "lora_up.weight"))
FLOW_FAMILIES = ("sd3", "flux")  # lora_flow.py's
PREFIXES = {"unet": "unet.", "text_encoder": "text_encoder.", "text_encoder_2": "text_encoder_2."}


def read_lora(path: Path) -> tuple[dict[str, Any], dict[str, float]]:
    """(diffusers-format state dict, alphas by module path) of a LoRA file."""
    from diffusers.loaders.lora_pipeline import StableDiffusionLoraLoaderMixin

    from .single_file import read_state_dict

    raw, _ = read_state_dict(path)
    alphas = {k[: -len(".alpha")]: float(v) for k, v in raw.items() if k.endswith(".alpha")}
    try:
        state, network_alphas = StableDiffusionLoraLoaderMixin.lora_state_dict(
            {k: v for k, v in raw.items() if not k.endswith(".alpha")} if not _is_kohya(raw) else raw)
    except (ValueError, KeyError) as exc:
        raise ModelError(f"LoRA {path.name!r} is in a format we cannot read: {exc}",
                         hint="use a diffusers/peft or kohya (A1111) LoRA .safetensors") from exc
    state = {_normalize(k): v for k, v in state.items()}
    for key, value in (network_alphas or {}).items():
        alphas[_module_of(_normalize(key.removesuffix(".alpha")))] = float(value)
    return state, alphas


def _normalize(key: str) -> str:
    """Old attention-processor names (``attn1.processor.to_q_lora.down.weight``, what diffusers'
    kohya conversion emits) -> module names (``attn1.to_q.lora.down.weight``)."""
    key = key.replace(".processor.", ".").replace("to_out_lora.", "to_out.0.lora.")
    for old in ("to_q", "to_k", "to_v"):
        key = key.replace(f"{old}_lora.", f"{old}.lora.")
    return key


def _module_of(key: str) -> str:
    for down, up in _PAIRS:
        for suffix in (down, up):
            if key.endswith("." + suffix):
                return key[: -len(suffix) - 1]
    return key


def _is_kohya(raw: dict[str, Any]) -> bool:
    return all(k.startswith(("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")) for k in raw)


def deltas(state: dict[str, Any], alphas: dict[str, float], component: str) -> dict[str, Any]:
    """module path (inside ``component``) -> the full-rank delta of its weight."""
    prefix = PREFIXES[component]
    out: dict[str, Any] = {}
    for key, down in state.items():
        if not key.startswith(prefix):
            continue
        for down_suffix, up_suffix in _PAIRS:
            if key.endswith("." + down_suffix):
                base = key[: -len(down_suffix) - 1]
                up = state.get(f"{base}.{up_suffix}")
                if up is None:
                    raise ModelError(f"LoRA weight {key!r} has no matching {up_suffix!r}")
                rank = down.shape[0]
                alpha = alphas.get(base, alphas.get(base[len(prefix):], float(rank)))
                out[base[len(prefix):]] = _product(up, down) * (alpha / rank)
                break
    return out


def _product(up: Any, down: Any) -> Any:
    import torch

    up32, down32 = up.to(torch.float32), down.to(torch.float32)
    if down32.ndim == 4:  # conv LoRA: (r, in, kh, kw) and (out, r, 1, 1)
        flat = up32.flatten(1) @ down32.flatten(1)
        return flat.reshape(up32.shape[0], *down32.shape[1:])
    return up32 @ down32


def apply(module: Any, delta: dict[str, Any], strength: float, what: str) -> int:
    """Merge ``delta * strength`` into ``module`` in place; returns how many weights changed."""
    import torch

    modules = dict(module.named_modules())
    with torch.no_grad():
        for path, d in delta.items():
            target = _find(modules, path)
            weight = getattr(target, "weight", None)
            if weight is None or weight.shape != d.shape:
                shape = None if weight is None else tuple(weight.shape)
                raise ModelError(f"LoRA {what} targets {path!r} (delta {tuple(d.shape)}), "
                                 f"which the model does not have with that shape (found {shape})",
                                 hint="this LoRA was trained for a different model family")
            weight += (d * strength).to(weight.device, weight.dtype)
    return len(delta)


def _find(modules: dict[str, Any], path: str) -> Any:
    """The module at ``path``; transformers 5 dropped CLIP's ``text_model.`` level, LoRAs keep it."""
    for candidate in (path, path.removeprefix("text_model."), f"text_model.{path}"):
        if candidate in modules:
            return modules[candidate]
    return None


def load_lora(model: ModelHandle, clip: ClipHandle | None, lora_name: str, strength_model: float,
              strength_clip: float) -> tuple[ModelHandle, ClipHandle | None]:
    """Patched copies of MODEL and CLIP; a strength of 0 returns that input unchanged.
    LoraLoaderModelOnly passes ``clip=None`` with ``strength_clip=0``, as ComfyUI does."""
    if strength_model == 0 and strength_clip == 0:
        return model, clip
    path = lora_path(lora_name)
    if getattr(model, "family", "sd1") in FLOW_FAMILIES:
        from .lora_flow import load_flow_lora

        return load_flow_lora(model, clip, lora_name, path, strength_model, strength_clip)
    state, alphas = read_lora(path)
    tag = f"+lora:{path}:{path.stat().st_mtime_ns}"
    new_model, new_clip = model, clip
    unet_delta = deltas(state, alphas, "unet")
    if strength_model != 0 and unet_delta:
        comp = patched(model, "unet", f"{tag}@{strength_model}",
                       lambda m: apply(m, unet_delta, strength_model, f"{lora_name} (unet)"))
        new_model = replace(model, unet=comp, loras=(*model.loras, (lora_name, strength_model)))
    text_delta = deltas(state, alphas, "text_encoder")
    text2_delta = deltas(state, alphas, "text_encoder_2")  # SDXL's OpenCLIP-G (kohya lora_te2_)
    if strength_clip != 0 and (text_delta or text2_delta) and clip is not None:
        if text2_delta and clip.encoder_2 is None:
            raise ModelError(f"LoRA {lora_name!r} has weights for a second text encoder (SDXL's OpenCLIP-G), "
                             "but this CLIP has one encoder", hint="use it with an SDXL checkpoint's CLIP")
        changes: dict[str, Any] = {"loras": (*clip.loras, (lora_name, strength_clip))}
        if text_delta:
            changes["encoder"] = patched(clip, "encoder", f"{tag}@{strength_clip}",
                                         lambda m: apply(m, text_delta, strength_clip, f"{lora_name} (text encoder)"))
        if text2_delta:
            changes["encoder_2"] = patched(clip, "encoder_2", f"{tag}@{strength_clip}", lambda m: apply(
                m, text2_delta, strength_clip, f"{lora_name} (text encoder 2)"))
        new_clip = replace(clip, **changes)
    if not unet_delta and not text_delta and not text2_delta:
        raise ModelError(f"LoRA {lora_name!r} has no UNet or text encoder weights we recognise",
                         hint="use a diffusers/peft or kohya LoRA for SD1 models")
    return new_model, new_clip
