"""Split loaders: one file per component -> MODEL (UNETLoader), CLIP (CLIPLoader), VAE (VAELoader).

Names resolve like ComfyUI's (``folders.find`` in ``diffusion_models``/``unet``,
``text_encoders``/``clip`` and ``vae``), except the built-in tiny split files
(``vortex-tiny[-s<seed>]-{unet,clip,vae}.safetensors``), which ``models.tiny_split_files()``
writes on first use, and the tiny SD3 / Flux ones (``tiny_flow_split.FILES``). ``families.py``
decides what a file is (``flow_families.py`` for SD3 / Flux transformers, which ``flow_split.py``
loads, as it loads CLIPLoader's type "sd3"); a file of another model family is a
``ModelError`` at validation (``.safetensors``: from the header alone) or at the node's run.
16-channel VAEs (SD3 / Flux) load here too, with the scaling ``flow_families.vae_config`` picks.

Each loader returns a handle at once; the module itself loads lazily through the memory arbiter
(``components.Component``), like CheckpointLoaderSimple's parts. Building a module: the file's
tensors (only the component's, by prefix) are renamed to diffusers' names (``ldm.from_ldm`` for
ldm layouts) and assigned into a model built on the meta device from the file's config (our
``vortex_configs`` metadata, else SD1.5's), strictly: a missing or misshapen weight is a
``ModelError``. Nothing is copied or cast on the way, so the tiny model's split files give
bit-identical images to its single file.

Torch-free at import: the validation helpers (``check_split``) run in the kernel.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ...errors import ModelError
from ...workers.arbiter import MemoryArbiter
from . import families, flow_families, folders, models
from .components import ClipHandle, Component, ModelHandle, VaeHandle, device_and_dtype, quiet_progress

TINY_SPLIT = re.compile(r"vortex-tiny(?:-s(\d+))?-(unet|clip|vae)\.safetensors")
#: part -> (ComfyUI folder kind, the node's widget, what it is, families.inspect_*)
PARTS: dict[str, tuple[str, str, str, Any]] = {
    "unet": ("diffusion_models", "unet_name", "diffusion model", families.inspect_unet),
    "clip": ("text_encoders", "clip_name", "text encoder", families.inspect_clip),
    "vae": ("vae", "vae_name", "VAE", families.inspect_vae),
}
_CONFIG_KEY = {"unet": "unet", "clip": "text_encoder", "vae": "vae"}
#: Names ComfyUI's VAELoader offers that are not files of the vae folders.
_COMFY_VAES = {"pixel_space": "ComfyUI's pass-through VAE for pixel-space models (families we do not run yet)",
               **{n: "ComfyUI's tiny approximate VAE (TAESD, built from vae_approx/ files)"
                  for n in ("taesd", "taesdxl", "taesd3", "taef1", "taef2", "taeqi2_1")}}
_HEADERS: dict[tuple[str, int, int], tuple[families.Shapes, dict[str, str]]] = {}


# ----------------------------------------------------------------------------- names (torch-free)


def _builtin(part: str, name: str) -> int | None:
    """The seed of a built-in tiny split file name for ``part``, else None."""
    m = TINY_SPLIT.fullmatch(name)
    return int(m.group(1) or 0) if m and m.group(2) == part else None


def split_path(part: str, name: object) -> Path:
    """The file a split loader reads for ``name`` (builds the built-in tiny files if named)."""
    kind, field, what, _ = PARTS[part]
    if not isinstance(name, str) or not name.strip():
        raise ModelError(f"{field} {name!r} is empty", hint=f"pick a {what} file, e.g. "
                         f"{models.TINY_SPLIT_NAMES[part]!r}")
    seed = _builtin(part, name)
    if seed is not None:
        return models.tiny_split_files(seed=seed)[part]
    if _flow_builtin(part, name):
        from .tiny_flow_split import tiny_flow_split_files

        return tiny_flow_split_files()[name]
    if part == "vae" and name in _COMFY_VAES:
        raise ModelError(f"vae_name {name!r} is {_COMFY_VAES[name]}, which vortex-jupyter does not load yet",
                         hint="pick a VAE file from the vae folders (an SD1 VAE)")
    return folders.find(kind, name, field, builtin=models.TINY_SPLIT_NAMES[part])


def _flow_builtin(part: str, name: object) -> bool:
    from .tiny_flow_split import FILES

    return isinstance(name, str) and FILES.get(name, ("",))[0] == part


def peek(path: Path) -> tuple[families.Shapes, dict[str, str]]:
    """Shapes and metadata: the header of a safetensors file (cached by mtime and size), else
    the whole pickle read safely (``torch.load(weights_only=True)``)."""
    from .single_file import SAFETENSORS_SUFFIXES, read_state_dict

    if path.suffix.lower() in SAFETENSORS_SUFFIXES:
        st = path.stat()
        stamp = (str(path), st.st_mtime_ns, st.st_size)
        if stamp not in _HEADERS:
            _HEADERS[stamp] = families.read_header(path)
        return _HEADERS[stamp]
    state, meta = read_state_dict(path)
    return {k: tuple(v.shape) for k, v in state.items() if hasattr(v, "shape")}, meta


def check_split(part: str, name: object) -> None:
    """Validation: ModelError now for a missing file, or a ``.safetensors`` of another family."""
    if isinstance(name, str) and (_builtin(part, name) is not None or _flow_builtin(part, name)):
        return  # always there (built on first use)
    from .single_file import SAFETENSORS_SUFFIXES

    path = split_path(part, name)
    if path.suffix.lower() in SAFETENSORS_SUFFIXES:
        shapes, meta = peek(path)
        _inspect(part, str(name), shapes, meta)


def _inspect(part: str, name: str, shapes: families.Shapes, meta: dict[str, str]
             ) -> families.Layout | flow_families.Transformer:
    """What the file is: an SD3 / Flux transformer (diffusion models), else ``families``' answer."""
    found = flow_families.transformer(name, shapes, meta) if part == "unet" else None
    return found if found is not None else PARTS[part][3](name, shapes, meta)


# ----------------------------------------------------------------------------- loaders


def load_unet(unet_name: str, weight_dtype: str = "default", arbiter: MemoryArbiter | None = None
              ) -> ModelHandle:
    """UNETLoader: MODEL from a diffusion-model file. ``weight_dtype`` fp8_*: weights stored in
    fp8 and cast per layer to the compute dtype (as ComfyUI; ``_fast`` is the same here)."""
    path, layout = _open("unet", unet_name)
    if isinstance(layout, flow_families.Transformer):
        from .flow_split import load_transformer

        return load_transformer(unet_name, path, layout, weight_dtype, arbiter)
    family, layout = _unet_family(path, layout)
    device, dtype = device_and_dtype(family)
    storage = _storage_dtype(weight_dtype)
    key = f"{_identity(path)}|unet|{device}|{dtype}|{weight_dtype}"

    def load() -> Any:
        module = _build("unet", unet_name, path, layout)
        module = module.to(device=device, dtype=dtype)
        if storage is not None:
            module.enable_layerwise_casting(storage_dtype=storage, compute_dtype=dtype)
        return module.eval().requires_grad_(False)

    size = path.stat().st_size // (4 if storage is not None else 1)
    return ModelHandle(unet_name, Component(key, load, size, arbiter), models.tiny_configs()["scheduler"],
                       family=family)


def _unet_family(path: Path, layout: families.Layout) -> tuple[str, families.Layout]:
    """"sd1", or "sdxl" / "sdxl_refiner" for a UNet with class embeddings of those widths, with
    the config to build it (the file's metadata, else SDXL base 1.0's / refiner 1.0's)."""
    shapes, _ = peek(path)
    ldm_names = layout.kind == "ldm"
    marker = layout.prefix + ("label_emb." if ldm_names else "add_embedding.")
    if not any(k.startswith(marker) for k in shapes):
        return "sd1", layout
    pattern = (r"(?:input|middle|output)_blocks?\..*attn2\.to_k\.weight" if ldm_names
               else r"(?:down|mid|up)_blocks?\..*attn2\.to_k\.weight")
    context = families._first(shapes, layout.prefix, pattern)
    width = int(layout.config.get("cross_attention_dim") or (context[1] if context else 2048))
    family = families.SDXL_UNET_WIDTHS.get(width, "sdxl")
    if layout.config:
        return family, layout
    from .sdxl_loader import refiner_base_configs, sdxl_base_configs

    config = (sdxl_base_configs() if family == "sdxl" else refiner_base_configs())["unet"]
    return family, families.Layout(layout.kind, layout.prefix, config)


def load_vae(vae_name: str, arbiter: MemoryArbiter | None = None) -> VaeHandle:
    """VAELoader: VAE from an ldm- or diffusers-layout file (4 or 16 latent channels)."""
    path, layout = _open("vae", vae_name)
    assert isinstance(layout, families.Layout)
    device, dtype = device_and_dtype()
    cfg = layout.config or _vae_config(vae_name, path, layout)
    layout = families.Layout(layout.kind, layout.prefix, cfg)
    key = f"{_identity(path)}|vae|{device}|{dtype}"

    def load() -> Any:
        return _build("vae", vae_name, path, layout).to(device=device, dtype=dtype).eval().requires_grad_(False)

    scaling = float(cfg.get("scaling_factor", 0.18215))
    return VaeHandle(vae_name, Component(key, load, path.stat().st_size, arbiter), scaling,
                     shift_factor=float(cfg.get("shift_factor") or 0.0))


def _vae_config(name: str, path: Path, layout: families.Layout) -> dict[str, Any]:
    """A file without our metadata: SD1.5's VAE, or with 16 latent channels SD3's / Flux's."""
    shapes, meta = peek(path)
    conv = shapes.get(layout.prefix + "decoder.conv_in.weight", ())
    if len(conv) == 4 and conv[1] == 16:
        return flow_families.vae_config(name, meta)
    return models.sd15_configs()["vae"]


def load_clip(clip_name: str, clip_type: str = "stable_diffusion", device_choice: str = "default",
              arbiter: MemoryArbiter | None = None) -> ClipHandle:
    """CLIPLoader: CLIP from an SD1 CLIP-L file (type "stable_diffusion"), or SD3's CLIP with the
    one encoder (CLIP-L, OpenCLIP-G or T5-XXL) of the file (type "sd3", ``flow_split``)."""
    check_clip_type(clip_type)
    if clip_type == "sd3":
        from .flow_split import load_text_encoders

        return load_text_encoders("CLIPLoader", {"clip_name": clip_name}, "sd3", device_choice, arbiter)
    path, layout = _open("clip", clip_name)
    assert isinstance(layout, families.Layout)
    device, dtype = device_and_dtype()
    if device_choice == "cpu":  # ComfyUI: load and offload device both the CPU
        import torch

        device, dtype = "cpu", torch.float32
    key = f"{_identity(path)}|text_encoder|{device}|{dtype}"

    def load() -> Any:
        return _build("clip", clip_name, path, layout).to(device=device, dtype=dtype).eval().requires_grad_(False)

    comp = Component(key, load, path.stat().st_size, arbiter, device if device_choice == "cpu" else None)
    from . import clip_tokenizer

    return ClipHandle(clip_name, comp, clip_tokenizer.for_file(bool(layout.config), clip_name))


#: CLIPLoader's types that load here (the others are model families we do not run yet).
CLIP_TYPES = ("stable_diffusion", "sd3")


def check_clip_type(clip_type: object) -> None:
    if clip_type not in CLIP_TYPES:
        raise ModelError(f"CLIPLoader type {clip_type!r} needs the text encoders of the {clip_type} model "
                         f"family; {families.NEEDS_FAMILIES}",
                         hint="use type 'stable_diffusion' with an SD1 CLIP-L file, or 'sd3' with a CLIP-L, "
                              "OpenCLIP-G or T5-XXL file")


def _open(part: str, name: str) -> tuple[Path, families.Layout | flow_families.Transformer]:
    path = split_path(part, name)
    shapes, meta = peek(path)
    return path, _inspect(part, name, shapes, meta)


def _identity(path: Path) -> str:
    return f"{path.resolve()}|{path.stat().st_mtime_ns}"


def _storage_dtype(weight_dtype: str) -> Any:
    import torch

    table = {"default": None, "fp8_e4m3fn": torch.float8_e4m3fn, "fp8_e4m3fn_fast": torch.float8_e4m3fn,
             "fp8_e5m2": torch.float8_e5m2}
    if weight_dtype not in table:
        raise ModelError(f"weight_dtype {weight_dtype!r} is not one of {sorted(table)}",
                         hint="pick one of UNETLoader's weight_dtype choices")
    return table[weight_dtype]


# ----------------------------------------------------------------------------- building modules


def _build(part: str, name: str, path: Path, layout: families.Layout | flow_families.Transformer) -> Any:
    """The component's module on the CPU, its weights exactly the file's tensors."""
    from .single_file import read_state_dict

    quiet_progress()
    assert isinstance(layout, families.Layout)
    state, _ = read_state_dict(path, (layout.prefix,))
    state = {k[len(layout.prefix):]: v for k, v in state.items() if k.startswith(layout.prefix)}
    cfg = layout.config or models.sd15_configs()[_CONFIG_KEY[part]]
    if part == "clip":
        return _text_encoder(name, state, cfg)
    return _diffusers_module(part, name, state, layout.kind, cfg)


def _diffusers_module(part: str, name: str, state: dict[str, Any], kind: str, cfg: dict[str, Any]) -> Any:
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from . import ldm

    cls = UNet2DConditionModel if part == "unet" else AutoencoderKL
    with torch.device("meta"):  # no random init: every weight comes from the file
        module = cls.from_config(cfg)
    keys = list(module.state_dict())
    if kind == "ldm":
        names = ldm.unet_names(keys, cfg) if part == "unet" else ldm.vae_names(keys, cfg)
        state, _unused = ldm.from_ldm(state, names)
    elif part == "vae":
        state = {_modern_vae_name(k): v for k, v in state.items()}
    _assign(module, state, name, PARTS[part][2])
    return module


_OLD_VAE_ATTN = {".query.": ".to_q.", ".key.": ".to_k.", ".value.": ".to_v.", ".proj_attn.": ".to_out.0."}


def _modern_vae_name(key: str) -> str:
    """Old diffusers VAE files name the mid attention query/key/value/proj_attn."""
    for old, new in _OLD_VAE_ATTN.items():
        key = key.replace(old, new)
    return key


def _assign(module: Any, state: dict[str, Any], name: str, what: str) -> None:
    wanted = set(module.state_dict())
    missing = sorted(wanted - set(state))
    if missing:
        raise ModelError(f"{what} {name!r} lacks {len(missing)} weights its config needs "
                         f"(e.g. {', '.join(missing[:3])})",
                         hint="the file is incomplete or of another model family")
    try:
        module.load_state_dict({k: state[k] for k in wanted}, strict=True, assign=True)
    except RuntimeError as exc:
        raise ModelError(f"{what} {name!r} does not fit its config: {str(exc).splitlines()[-1]}",
                         hint="the file is of another model family or size") from exc


def _text_encoder(name: str, state: dict[str, Any], cfg: dict[str, Any]) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel

    text = CLIPTextModel(CLIPTextConfig(**{k: v for k, v in cfg.items() if not k.startswith("_")}))
    lead = "text_model." if any(k.startswith("text_model.") for k in text.state_dict()) else ""
    wanted = {lead + k: v for k, v in state.items() if not k.endswith("position_ids")}
    try:
        missing, _ = text.load_state_dict(wanted, strict=False)
    except RuntimeError as exc:
        raise ModelError(f"text encoder {name!r} does not fit SD1's CLIP-L config: {str(exc).splitlines()[-1]}",
                         hint="the file is of another model family or size") from exc
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing:
        raise ModelError(f"text encoder {name!r} lacks {len(missing)} weights SD1's CLIP-L needs "
                         f"(e.g. {', '.join(missing[:3])})", hint="the file is incomplete or of another model family")
    return text
