"""LoRAs for SD3 and Flux models and their text encoders (CLIP-L, OpenCLIP-G, T5), in the layouts
people share, merged into copies as ``lora.py`` does for SD1/SDXL.

The policy is ComfyUI's (``comfy/lora.py``: ``model_lora_keys_unet`` / ``model_lora_keys_clip``):
a LoRA module name is looked up in a table of aliases built from the model's own weights, so a
name is never parsed, only matched. Our transformers are diffusers modules, so every alias leads
to one or more diffusers weights (``base_model.model.`` ComfyUI takes for SD3 only; we take it
for Flux too):

===============================  ===================================================  ================
layout                           example (the module name before ``.lora_*``)         names
===============================  ===================================================  ================
diffusers / peft                 ``transformer.transformer_blocks.0.attn.to_q``       diffusers
peft (flash-sd3 and others)      ``base_model.model.transformer_blocks.0.attn.to_q``  diffusers
OneTrainer, SimpleTuner lycoris  ``lora_transformer_transformer_blocks_0_attn_to_q``  diffusers, ``_``
kohya / sd-scripts, ai-toolkit   ``lora_unet_double_blocks_0_img_attn_qkv``           original, ``_``
ComfyUI / Black Forest Labs      ``diffusion_model.double_blocks.0.img_attn.qkv``     original
Flux single block, q/k/v only    ``diffusion_model.single_blocks.0.linear1_qkv``      original
===============================  ===================================================  ================

"Original" names (Stability's MMDiT, BFL's Flux: ``flow_keys``) may hold several diffusers weights
stacked along dim 0: a ``qkv`` is q, k, v; Flux's ``linear1`` is q, k, v and the MLP input. One
down/up pair on such a weight updates each diffusers weight with its own row block of
``up @ down`` (the up matrix's rows cut at the diffusers weights' heights), exactly what ComfyUI
does with an offset into the fused weight. The final ``adaLN_modulation`` (and SD3's last
context block's) stores (shift, scale) where diffusers stores (scale, shift): its delta's halves
are exchanged first.

Text encoders, as ComfyUI numbers them for the encoders the CLIP has (L, G, T5; any missing):
CLIP-L ``lora_te_`` / ``lora_te1_`` / ``text_encoder.``; OpenCLIP-G ``lora_te2_`` /
``text_encoder_2.`` (``lora_te_`` / ``text_encoder.`` without CLIP-L); T5 ``lora_te{n}_`` with n
one past the CLIPs (SD3: ``lora_te3_``; Flux's CLIP-L + T5: ``lora_te2_`` and ``lora_te3_``, as
OneTrainer writes); and ``text_encoders.clip_l|clip_g|t5xxl.transformer.<name>`` for each.

Merge: ``W += strength * alpha / rank * (up @ down)`` in float32 (``alpha``: the file's
``<name>.alpha``; without one the scale is 1). Pairs: ``lora_down/lora_up``, ``lora_A/lora_B``
(also ``.default`` and without ``.weight``), ``lora.down/lora.up``, ``lora_linear_layer``.

Unknown names: a name in a model layout that matches none of the model's weights (a LoRA for
another family, or for more blocks than the model has) fails when the patched model loads, as
an SD1 LoRA does; text encoder weights for an encoder the CLIP lacks fail at once; names in no
layout are logged and skipped (ComfyUI's "lora key not loaded"); a file with nothing we know
fails. LoHa, LoKr, DoRA and full-difference patches are refused: skipping them would silently
give another image than ComfyUI.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ...errors import ModelError
from .components import ClipHandle, ModelHandle, patched

_LOG = logging.getLogger(__name__)

_PAIRS = (("lora_down.weight", "lora_up.weight"), ("lora_A.weight", "lora_B.weight"),
          ("lora_A.default.weight", "lora_B.default.weight"), ("lora.down.weight", "lora.up.weight"),
          ("lora_linear_layer.down.weight", "lora_linear_layer.up.weight"), ("lora_A", "lora_B"))
MODEL_PREFIXES = ("diffusion_model.", "lora_unet_", "transformer.", "base_model.model.", "lora_transformer_",
                  "lycoris_")
_TEXT_PREFIXES = ("lora_te", "text_encoder")
#: Tensor names of adapters other than LoRA pairs (LyCORIS LoHa/LoKr, DoRA, LoCon's tucker mid,
#: full differences) that ComfyUI's weight adapters merge and we do not.
_OTHER_ADAPTERS = ("hada_", "lokr_", "dora_scale", "lora_mid", ".diff", ".set_weight", ".w_norm", ".b_norm",
                   "oft_")
_ROLES = {"encoder": "CLIP-L", "encoder_2": "OpenCLIP-G", "t5": "T5"}


@dataclass(frozen=True)
class Pair:
    """One low-rank pair of the file: ``up @ down`` scaled by ``alpha / rank`` (1 without alpha)."""

    down: Any
    up: Any
    alpha: float | None

    def delta(self) -> Any:
        from .lora import _product

        rank = self.down.shape[0]
        return _product(self.up, self.down) * (1.0 if self.alpha is None else self.alpha / rank)


@dataclass(frozen=True)
class Target:
    """The diffusers weights one LoRA name updates, stacked along dim 0 in this order;
    ``swapped``: the name's weight stores the two halves in the other order."""

    parts: tuple[str, ...]
    swapped: bool = False


def read_pairs(raw: dict[str, Any], lora_name: str) -> tuple[dict[str, Pair], list[str]]:
    """The file's pairs by module name, and its tensors that belong to no pair."""
    pairs: dict[str, Pair] = {}
    used: set[str] = set()
    for key in raw:
        for down_suffix, up_suffix in _PAIRS:
            if not key.endswith("." + down_suffix):
                continue
            base = key[: -len(down_suffix) - 1]
            up_key, alpha_key = f"{base}.{up_suffix}", f"{base}.alpha"
            if up_key not in raw:
                raise ModelError(f"LoRA {lora_name!r}: {key!r} has no matching {up_key!r}",
                                 hint="the file is truncated or not a LoRA")
            alpha = raw.get(alpha_key)
            pairs[base] = Pair(raw[key], raw[up_key], None if alpha is None else float(alpha))
            used |= {key, up_key, alpha_key}
            break
    rest = [k for k in raw if k not in used]
    other = [k for k in rest if any(marker in k for marker in _OTHER_ADAPTERS)]
    if other:
        raise ModelError(f"LoRA {lora_name!r} holds {len(other)} tensor(s) of adapters other than LoRA pairs "
                         f"(LoHa, LoKr, DoRA or full differences), e.g. {other[0]!r}, which we cannot merge yet",
                         hint="use a plain LoRA (lora_down/lora_up or lora_A/lora_B pairs)")
    return pairs, rest


def clip_prefixes(clip: ClipHandle) -> dict[str, str]:
    """LoRA name prefix -> the ClipHandle field of the encoder it patches (ComfyUI's numbering)."""
    refiner = clip.kind == "sdxl_refiner"  # its ``encoder`` is OpenCLIP-G
    clip_l = "encoder" if clip.encoder is not None and not refiner else None
    clip_g = "encoder_2" if clip.encoder_2 is not None else "encoder" if refiner else None
    t5 = "t5" if clip.t5 is not None else None
    out: dict[str, str] = {}
    if clip_l:
        out |= dict.fromkeys(("lora_te_", "lora_te1_", "text_encoder.", "text_encoders.clip_l.transformer."),
                             clip_l)
    if clip_g:
        names = ("lora_te2_", "text_encoder_2.") if clip_l else ("lora_te_", "text_encoder.")
        out |= dict.fromkeys((*names, "text_encoders.clip_g.transformer."), clip_g)
    if t5:
        index = 1 + bool(clip_g) + bool(clip_l)
        if clip_l and index == 2:  # Flux: OneTrainer writes T5 as lora_te2_, ComfyUI also takes lora_te3_
            out["lora_te2_"] = t5
            index = 3
        out |= {f"lora_te{index}_": t5, "text_encoders.t5xxl.transformer.": t5}
    return out


def _route(name: str, prefixes: dict[str, str]) -> str | None:
    if name.startswith(MODEL_PREFIXES):
        return "model"
    return next((field for prefix, field in prefixes.items() if name.startswith(prefix)), None)


def _weighted(module: Any) -> list[str]:
    import torch

    return [n for n, m in module.named_modules() if n and isinstance(getattr(m, "weight", None), torch.Tensor)]


def model_targets(module: Any, family: str) -> dict[str, Target]:
    """Every LoRA name ComfyUI accepts for this SD3 / Flux transformer -> its diffusers weights."""
    # flow_keys' tables are the one description of the original <-> diffusers layouts.
    from .flow_keys import _FLUX, _SD3, _block_counts, _names

    weights = _weighted(module)
    out: dict[str, Target] = {}
    for name in weights:
        flat, one = name.replace(".", "_"), Target((name,))
        out |= {f"transformer.{name}": one, f"base_model.model.{name}": one,
                f"lora_transformer_{flat}": one, f"lycoris_{flat}": one}
    layout = _SD3 if family == "sd3" else _FLUX
    present = set(weights)
    originals, swapped = _names(layout, _block_counts(present, {d: o for o, (d, _) in layout.blocks.items()}))
    for original, stacked in originals.items():
        parts = tuple(p.removesuffix(".weight") for p in stacked)
        if not original.endswith(".weight") or not present.issuperset(parts):
            continue  # a bias, a norm scale, or a part this model lacks (qk norm, guidance, ...)
        name = original.removesuffix(".weight")
        target = Target(parts, original in swapped)
        out[f"diffusion_model.{name}"] = out[f"lora_unet_{name.replace('.', '_')}"] = target
        if name.endswith(".linear1") and len(parts) == 4:  # ComfyUI's q, k, v-only alias
            out[f"diffusion_model.{name}_qkv"] = Target(parts[:3])
    return out


def encoder_targets(module: Any, field: str, prefixes: dict[str, str]) -> dict[str, Target]:
    """LoRA names -> weights of one text encoder. CLIP names keep ``text_model.``, which
    ``CLIPTextModel`` of transformers 5 dropped; T5's are the Hugging Face names ComfyUI uses too."""
    mine = [p for p, f in prefixes.items() if f == field]
    out: dict[str, Target] = {}
    for name in _weighted(module):
        canonical = name
        if field != "t5" and not name.startswith("text_model.") and name != "text_projection":
            canonical = f"text_model.{name}"
        for prefix in mine:
            out[prefix + (canonical.replace(".", "_") if prefix.endswith("_") else canonical)] = Target((name,))
    return out


def merge(module: Any, pairs: dict[str, Pair], targets: dict[str, Target], strength: float, what: str) -> int:
    """Add ``strength`` times each pair's delta to its target weights in place; returns the count."""
    import torch

    missing = [n for n in pairs if n not in targets]
    if missing:
        shown = ", ".join(repr(n) for n in missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise ModelError(f"LoRA {what} targets {len(missing)} module(s) the model does not have: {shown}",
                         hint="this LoRA was trained for a different model family (or a larger model)")
    modules = dict(module.named_modules())
    with torch.no_grad():
        for name, pair in pairs.items():
            target = targets[name]
            delta = pair.delta()
            if target.swapped:
                delta = torch.cat(delta.chunk(2, dim=0)[::-1], dim=0)
            weights = [modules[p].weight for p in target.parts]
            rows = [int(w.shape[0]) for w in weights]
            if sum(rows) != delta.shape[0] or any(w.shape[1:] != delta.shape[1:] for w in weights):
                found = [tuple(w.shape) for w in weights]
                raise ModelError(f"LoRA {what}: {name!r} (delta {tuple(delta.shape)}) does not fit {target.parts} "
                                 f"(shapes {found})", hint="this LoRA was trained for a different model family")
            for weight, piece in zip(weights, delta.split(rows, dim=0)):
                weight += (piece * strength).to(weight.device, weight.dtype)
    return len(pairs)


def _groups(pairs: dict[str, Pair], prefixes: dict[str, str], clip: ClipHandle | None, strength_clip: float,
            lora_name: str) -> dict[str, dict[str, Pair]]:
    """Pairs by destination ("model" or a ClipHandle field); unknown names are logged."""
    groups: dict[str, dict[str, Pair]] = {}
    unknown: list[str] = []
    for name, pair in pairs.items():
        field = _route(name, prefixes)
        if field is None and name.startswith(_TEXT_PREFIXES):
            if clip is not None and strength_clip != 0:
                have = ", ".join(_ROLES[f] for f in dict.fromkeys(prefixes.values())) or "none"
                raise ModelError(f"LoRA {lora_name!r} has text encoder weights ({name!r}) for an encoder this "
                                 f"CLIP does not have (it has: {have})",
                                 hint="load the CLIP this LoRA was trained with, or set strength_clip to 0")
            field = "text"  # LoraLoaderModelOnly or strength_clip 0: known, not applied
        if field is None:
            unknown.append(name)
            continue
        groups.setdefault(field, {})[name] = pair
    if not groups:
        raise ModelError(f"LoRA {lora_name!r} has no transformer or text encoder weights we recognise "
                         f"(e.g. {unknown[0] if unknown else 'no pairs at all'!r})",
                         hint="use a diffusers/peft, kohya, OneTrainer or ComfyUI-named LoRA for this model")
    for name in unknown:
        _LOG.warning("LoRA %s: key not loaded: %s", lora_name, name)
    return groups


def _patch(pairs: dict[str, Pair], targets: Callable[[Any], dict[str, Target]], strength: float,
           what: str) -> Callable[[Any], object]:
    return lambda module: merge(module, pairs, targets(module), strength, what)


def _encoder_map(field: str, prefixes: dict[str, str]) -> Callable[[Any], dict[str, Target]]:
    return lambda module: encoder_targets(module, field, prefixes)


def load_flow_lora(model: ModelHandle, clip: ClipHandle | None, lora_name: str, path: Path,
                   strength_model: float, strength_clip: float) -> tuple[ModelHandle, ClipHandle | None]:
    """Patched copies of an SD3 / Flux MODEL and its CLIP (``lora.load_lora`` sends them here)."""
    from .single_file import read_state_dict

    raw, _ = read_state_dict(path)
    pairs, rest = read_pairs(raw, lora_name)
    for key in rest:
        _LOG.warning("LoRA %s: key not loaded: %s", lora_name, key)
    prefixes = clip_prefixes(clip) if clip is not None else {}
    groups = _groups(pairs, prefixes, clip, strength_clip, lora_name)
    tag = f"+lora:{path}:{path.stat().st_mtime_ns}"
    new_model, new_clip = model, clip
    if strength_model != 0 and "model" in groups:
        family = model.family
        comp = patched(model, "unet", f"{tag}@{strength_model}", _patch(
            groups["model"], lambda m: model_targets(m, family), strength_model, f"{lora_name!r} ({family})"))
        new_model = replace(model, unet=comp, loras=(*model.loras, (lora_name, strength_model)))
    fields = [f for f in _ROLES if f in groups]
    if strength_clip != 0 and clip is not None and fields:
        changes: dict[str, Any] = {"loras": (*clip.loras, (lora_name, strength_clip))}
        for field in fields:
            changes[field] = patched(clip, field, f"{tag}@{strength_clip}", _patch(
                groups[field], _encoder_map(field, prefixes), strength_clip, f"{lora_name!r} ({_ROLES[field]})"))
        new_clip = replace(clip, **changes)
    return new_model, new_clip
