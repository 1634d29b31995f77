"""SD3 / Flux split files -> MODEL (UNETLoader) and CLIP (CLIPLoader "sd3", DualCLIPLoader,
TripleCLIPLoader), as ComfyUI's ``load_diffusion_model`` and ``load_clip`` build them.

MODEL: ``flow_families.transformer`` says family, layout and config; the weights are renamed
to diffusers' (``flow_keys``) and assigned into a transformer built on the meta device, so
nothing is copied; the scheduler is the family's (``flow_loader.scheduler_for``: SD3 shift 3,
Flux dev Flux's shift, schnell shift 1). ``weight_dtype`` fp8: weights stored in fp8 and cast
per layer to the compute dtype, as for SD1 (``split.load_unet``).

CLIP: each file's role (CLIP-L, OpenCLIP-G, T5-XXL: ``flow_families.text_encoder``) decides
which slot it fills, whatever the order of the inputs (ComfyUI's ``load_sd`` routes by keys
too). What each ``type`` makes (ComfyUI's ``load_text_encoder_state_dicts``):

====================  ==========================  ====================================
node / type           files                       CLIP
====================  ==========================  ====================================
CLIPLoader sd3        one of L, G, T5             SD3's, with that encoder only
DualCLIPLoader sd3    two of L, G, T5             SD3's, with those two
DualCLIPLoader flux   L + T5                      Flux's (L pooled, T5 context)
DualCLIPLoader sdxl   L + G                       SDXL's (as an SDXL checkpoint's)
TripleCLIPLoader      L + G + T5                  SD3's
====================  ==========================  ====================================

ComfyUI loads any other combination and fills the missing encoder with random weights (it logs
"clip missing"); here a repeated or unused role is a ModelError naming the input and the fix.
Tokenizers: the package's offline CLIP BPE; T5: the offline one for our tiny files, else a real
T5 tokenizer (``t5.load_tokenizer``: ``$VORTEX_T5_TOKENIZER``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import ModelError
from ...workers.arbiter import MemoryArbiter
from . import folders, models
from .components import ClipHandle, Component, ModelHandle, device_and_dtype, quiet_progress
from .families import NEEDS_FAMILIES
from .flow_families import EXAMPLES, ROLES, TextEncoder, Transformer, text_encoder
from .tiny_flow_split import CLIP_ROLES, FILES, tiny_flow_split_files

#: The roles each type takes (each at most once) and what ClipHandle.kind it makes.
TYPES: dict[str, tuple[frozenset[str], str]] = {
    "sd3": (frozenset(ROLES), "sd3"), "flux": (frozenset({"clip_l", "t5"}), "flux"),
    "sdxl": (frozenset({"clip_l", "clip_g"}), ""),
}
_NEEDS = {"sd3": "type 'sd3' takes CLIP-L, OpenCLIP-G and T5-XXL files, each at most once",
          "flux": "type 'flux' needs one CLIP-L and one T5-XXL file",
          "sdxl": "type 'sdxl' needs one CLIP-L and one OpenCLIP-G file"}


# ----------------------------------------------------------------------------- MODEL


def load_transformer(unet_name: str, path: Path, found: Transformer, weight_dtype: str,
                     arbiter: MemoryArbiter | None) -> ModelHandle:
    """UNETLoader's MODEL for an SD3 / Flux transformer file."""
    from .flow_loader import scheduler_for
    from .split import _identity, _storage_dtype

    device, dtype = device_and_dtype(found.family)
    storage = _storage_dtype(weight_dtype)
    key = f"{_identity(path)}|transformer|{device}|{dtype}|{weight_dtype}"

    def load() -> Any:
        module = _transformer_module(unet_name, path, found).to(device=device, dtype=dtype)
        if storage is not None:
            module.enable_layerwise_casting(storage_dtype=storage, compute_dtype=dtype)
        return module.eval().requires_grad_(False)

    size = path.stat().st_size // (4 if storage is not None else 1)
    return ModelHandle(unet_name, Component(key, load, size, arbiter), scheduler_for(found.family, found.config),
                       family=found.family)


def _transformer_module(name: str, path: Path, found: Transformer) -> Any:
    import torch
    from diffusers import FluxTransformer2DModel, SD3Transformer2DModel

    from . import flow_keys
    from .single_file import read_state_dict
    from .split import _assign

    quiet_progress()
    state, _ = read_state_dict(path, (found.prefix,))
    if found.layout == "original":
        convert = flow_keys.sd3_from_original if found.family == "sd3" else flow_keys.flux_from_original
        state = convert(state, prefix=found.prefix)
    cls: Any = SD3Transformer2DModel if found.family == "sd3" else FluxTransformer2DModel
    with torch.device("meta"):  # no random init: every weight comes from the file
        module = cls.from_config(found.config)
    _assign(module, state, name, "diffusion model")
    return module


# ----------------------------------------------------------------------------- CLIP: which files


def check_clip_type(node: str, clip_type: object) -> None:
    if clip_type not in TYPES:
        raise ModelError(f"{node} type {clip_type!r} needs the text encoders of the {clip_type} model family; "
                         f"{NEEDS_FAMILIES}", hint="use type 'sdxl', 'sd3' or 'flux'")


def _path(field: str, name: object) -> Path:
    if not isinstance(name, str) or not name.strip():
        raise ModelError(f"{field} {name!r} is empty", hint="pick a text encoder file, e.g. "
                         "'vortex-tiny-clip-l.safetensors'")
    if FILES.get(name, ("",))[0] == "clip":
        return tiny_flow_split_files()[name]
    if name == models.TINY_SPLIT_NAMES["clip"]:
        return models.tiny_split_files()["clip"]
    return folders.find("text_encoders", name, field, builtin="vortex-tiny-clip-l.safetensors")


def _encoder(field: str, name: object, path: Path) -> TextEncoder:
    from .split import peek

    shapes, meta = peek(path)
    return text_encoder(field, str(name), shapes, meta)


def check_text_encoders(node: str, names: dict[str, object], clip_type: str) -> None:
    """Validation (torch-free): each file exists, and the roles fit ``clip_type`` (built-in files
    by name; other ``.safetensors`` files from their header; pickles are read at the run)."""
    from .single_file import SAFETENSORS_SUFFIXES

    check_clip_type(node, clip_type)
    roles: list[tuple[str, str, str]] = []
    for field, name in names.items():
        if isinstance(name, str) and name in CLIP_ROLES:
            roles.append((field, name, CLIP_ROLES[name]))
            continue
        path = _path(field, name)
        if path.suffix.lower() in SAFETENSORS_SUFFIXES:
            roles.append((field, str(name), _encoder(field, name, path).role))
    combine(node, roles, clip_type)


def combine(node: str, roles: list[tuple[str, str, str]], clip_type: str) -> str:
    """ClipHandle.kind for these (field, name, role)s, or a ModelError naming input and fix."""
    allowed, kind = TYPES[clip_type]
    need = "TripleCLIPLoader needs one CLIP-L, one OpenCLIP-G and one T5-XXL file" if node == "TripleCLIPLoader" \
        else _NEEDS[clip_type]
    seen: dict[str, tuple[str, str]] = {}
    for field, name, role in roles:
        if role not in allowed:
            other = sorted(t for t, (r, _) in TYPES.items() if role in r)
            raise ModelError(f"{node}: {field} {name!r} is {_a(role)} text encoder, which type {clip_type!r} "
                             f"does not use; {need}", hint=f"pick another file for {field}, or a type that uses "
                             f"{ROLES[role]} ({', '.join(repr(t) for t in other)})")
        if role in seen:
            first_field, first = seen[role]
            lacking = sorted(allowed - {r for _, _, r in roles})
            example = f" (e.g. {EXAMPLES[lacking[0]]!r})" if lacking else ""
            raise ModelError(f"{node}: {first_field} {first!r} and {field} {name!r} are both {ROLES[role]} text "
                             f"encoders; {need}", hint=f"set {field} to "
                             f"{' or '.join(_a(r) for r in lacking) or 'a different'} file{example}")
        seen[role] = (field, name)
    return kind


def _a(role: str) -> str:
    return f"{'an' if role == 'clip_g' else 'a'} {ROLES[role]}"


# ----------------------------------------------------------------------------- CLIP: loading


def load_text_encoders(node: str, names: dict[str, str], clip_type: str, device_choice: str = "default",
                       arbiter: MemoryArbiter | None = None) -> ClipHandle:
    """The CLIP of ``names`` (input -> file name) for ``clip_type`` (module docstring's table)."""
    import torch

    from . import t5
    from .flow_files import builtin_tokenizers

    check_clip_type(node, clip_type)
    found = {field: (_path(field, name), name) for field, name in names.items()}
    encoders = {field: _read_role(field, name, path) for field, (path, name) in found.items()}
    kind = combine(node, [(f, found[f][1], e.role) for f, e in encoders.items()], clip_type)
    device, dtype = device_and_dtype(kind or None)
    if device_choice == "cpu":  # ComfyUI: load and offload device both the CPU
        device, dtype = "cpu", torch.float32
    from .split import _identity

    slots: dict[str, Component] = {}
    for field, enc in encoders.items():
        path = found[field][0]

        def load(enc: TextEncoder = enc, path: Path = path, name: str = found[field][1]) -> Any:
            return _text_module(name, path, enc).to(device=device, dtype=dtype).eval().requires_grad_(False)

        slots[enc.role] = Component(f"{_identity(path)}|{enc.role}|{device}|{dtype}", load, path.stat().st_size,
                                    arbiter, device if device_choice == "cpu" else None)
    clip_tok, t5_tok = builtin_tokenizers()
    if "t5" in slots and not next(e for e in encoders.values() if e.role == "t5").builtin_tokenizer:
        t5_tok = t5.load_tokenizer(None)
    real_clip = [found[f][1] for f, e in encoders.items() if e.role != "t5" and not e.builtin_tokenizer]
    if real_clip:  # a real CLIP-L / G file: CLIP's real vocabulary when it can be found
        from . import clip_tokenizer

        clip_tok = clip_tokenizer.for_file(False, real_clip[0])
    return ClipHandle(" + ".join(names.values()), slots.get("clip_l"), clip_tok,  # type: ignore[arg-type]
                      encoder_2=slots.get("clip_g"), t5=slots.get("t5"),
                      t5_tokenizer=t5_tok if "t5" in slots else None, kind=kind)


def _read_role(field: str, name: str, path: Path) -> TextEncoder:
    from .single_file import SAFETENSORS_SUFFIXES, read_state_dict

    if path.suffix.lower() in SAFETENSORS_SUFFIXES:
        return _encoder(field, name, path)
    state, meta = read_state_dict(path)  # a pickle: no header, the shapes of its tensors
    return text_encoder(field, name, {k: tuple(v.shape) for k, v in state.items() if hasattr(v, "shape")}, meta)


def _text_module(name: str, path: Path, enc: TextEncoder) -> Any:
    """The encoder's module (CLIP-L without projection: every kind pools it itself)."""
    from .single_file import read_state_dict

    quiet_progress()
    state, _ = read_state_dict(path, (enc.prefix,))
    state = {k[len(enc.prefix):]: v for k, v in state.items() if k.startswith(enc.prefix)}
    try:
        if enc.role == "t5":
            from .flow_files import build_part

            if "shared.weight" not in state and "encoder.embed_tokens.weight" in state:
                state["shared.weight"] = state["encoder.embed_tokens.weight"]
            return build_part("t5", "sd3", state, {"t5": enc.config})
        if enc.layout == "open_clip":
            from .sdxl_keys import open_clip_to_clip_g

            state = open_clip_to_clip_g(state)
        return _clip_module(state, enc)
    except (ValueError, KeyError, RuntimeError) as exc:
        raise ModelError(f"text encoder {name!r} does not fit the {ROLES[enc.role]} config: {exc}",
                         hint="the file is incomplete, or its metadata names another size") from exc


def _clip_module(state: dict[str, Any], enc: TextEncoder) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    projected = enc.role == "clip_g"
    cfg = CLIPTextConfig.from_dict({k: v for k, v in enc.config.items() if not k.startswith("_")})
    module = (CLIPTextModelWithProjection if projected else CLIPTextModel)(cfg)
    lead = "text_model." if any(k.startswith("text_model.") for k in module.state_dict()) else ""
    wanted: dict[str, Any] = {}
    for key, value in state.items():
        if key.endswith("position_ids") or key == "logit_scale":
            continue
        if key == "text_projection":  # ComfyUI: old CLIPSave files store the matrix untransposed
            key, value = "text_projection.weight", value.t().contiguous()
        if key.startswith("text_projection"):
            if projected:
                wanted[key] = value
            continue
        wanted[lead + key.removeprefix("text_model.")] = value
    missing, unexpected = module.load_state_dict(wanted, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise KeyError(f"missing {missing[:3]}, unexpected {unexpected[:3]}")
    return module
