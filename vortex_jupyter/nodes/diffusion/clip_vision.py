"""CLIP vision models: finding and checking the file (torch-free), loading it, encoding images.

Policy (ComfyUI's ``comfy/clip_vision.py``):

- A CLIP_VISION file has transformers' names (``vision_model.*``, ``visual_projection.weight``).
  Its config comes from our ``vortex_configs`` metadata (the built-in tiny model) or from the
  tensor shapes, gated as ComfyUI gates them: 48 layers = ViT-bigG, 31+ = ViT-H, 23+ = ViT-L
  (quick_gelu, 224 or 336 pixels); anything else is "not a valid vision model".
- Encoding (``encode_image``): RGB only; resized (bicubic, antialiased) so the short side is the
  model's image size and centre-cropped (``crop="center"``) or squashed to a square
  (``"none"``); quantised to 8 bits; normalised with CLIP's mean/std. The CLIP_VISION_OUTPUT
  holds ``last_hidden_state`` (no final norm), ``penultimate_hidden_states`` (the second-to-last
  layer's output) and ``image_embeds`` (the projected, normed class token), float32 on the CPU.

State: loaded models live in the memory arbiter as ``Component``s (``components.py``).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import ModelError
from . import folders
from .tiny_clip_vision import TINY_CLIP_VISION_NAME

_LOG = logging.getLogger(__name__)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_PATCH = "vision_model.embeddings.patch_embedding.weight"
_FIX = "pick a CLIP vision file (e.g. clip_vision_h.safetensors) from the clip_vision folder"


def clip_vision_names() -> list[str]:
    """CLIPVisionLoader's list: the built-in tiny model first."""
    return [TINY_CLIP_VISION_NAME] + [n for n in folders.list_names("clip_vision") if n != TINY_CLIP_VISION_NAME]


def clip_vision_path(clip_name: str, *, build: bool = True) -> Path:
    if clip_name == TINY_CLIP_VISION_NAME:
        from .tiny_clip_vision import tiny_clip_vision

        return tiny_clip_vision() if build else Path(TINY_CLIP_VISION_NAME)
    return folders.find("clip_vision", clip_name, "clip_name", builtin=TINY_CLIP_VISION_NAME)


def check_clip_vision_name(clip_name: str) -> None:
    """ModelError now (reading only the file's header) for a name CLIPVisionLoader would reject."""
    path = clip_vision_path(clip_name, build=False)
    if clip_name != TINY_CLIP_VISION_NAME:
        vision_config(clip_name, path)


def vision_config(name: str, path: Path) -> dict[str, Any]:
    """The ``CLIPVisionConfig`` arguments of a CLIP vision file, or ModelError saying what it is."""
    if path.suffix.lower() not in (".safetensors", ".sft"):
        raise ModelError(f"clip_name {name!r} is not a .safetensors file; only safetensors CLIP vision files load",
                         hint=_FIX)
    from .families import read_header

    shapes, meta = read_header(path)
    stored = json.loads(meta.get("vortex_configs", "{}") or "{}").get("clip_vision")
    if _PATCH not in shapes:
        raise _not_vision(name, shapes)
    if isinstance(stored, dict):
        return dict(stored)
    return _config_from_shapes(name, shapes)


def _not_vision(name: str, shapes: dict[str, tuple[int, ...]]) -> ModelError:
    if "visual.transformer.resblocks.0.attn.in_proj_weight" in shapes:
        return ModelError(f"clip_name {name!r} is an OpenCLIP-layout vision model ('visual.*' names), which "
                          "vortex-jupyter does not convert yet", hint="use the transformers-layout file of the "
                          "same model (vision_model.* names), as ComfyUI's clip_vision downloads are")
    if any(k.startswith(("text_model.", "transformer.text_model.", "cond_stage_model.")) for k in shapes):
        return ModelError(f"clip_name {name!r} is a CLIP text encoder, not a CLIP vision model",
                          hint="load text encoders with CLIPLoader (text_encoders folder); " + _FIX)
    return ModelError(f"clip_name {name!r} does not contain a valid CLIP vision model (no {_PATCH})", hint=_FIX)


def _config_from_shapes(name: str, shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    layers = 1 + max(int(k.split(".")[3]) for k in shapes if k.startswith("vision_model.encoder.layers."))
    hidden, _, patch, _ = shapes[_PATCH]
    positions = shapes["vision_model.embeddings.position_embedding.weight"][0]
    if layers < 23 or hidden == 1152:  # ComfyUI's gate; 1152 wide: SigLIP (no pre-norm, other preprocessing)
        raise ModelError(f"clip_name {name!r} is a vision model of {layers} layers and width {hidden}, not one of "
                         "the CLIP vision models ComfyUI loads (ViT-L, ViT-H, ViT-bigG)", hint=_FIX)
    config: dict[str, Any] = {
        "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": 16, "patch_size": patch,
        "image_size": math.isqrt(positions - 1) * patch, "num_channels": 3, "layer_norm_eps": 1e-5,
        "intermediate_size": shapes["vision_model.encoder.layers.0.mlp.fc1.weight"][0],
        "hidden_act": "gelu" if layers >= 31 else "quick_gelu",
    }
    if "visual_projection.weight" in shapes:
        config["projection_dim"] = shapes["visual_projection.weight"][0]
    return config


# ------------------------------------------------------------------------------ loading


@dataclass
class ClipVisionHandle:  # CLIP_VISION
    name: str
    model: Any  # a Component of a transformers CLIPVisionModel(WithProjection)
    image_size: int
    image_mean: tuple[float, ...] = CLIP_MEAN
    image_std: tuple[float, ...] = CLIP_STD

    def __repr__(self) -> str:
        return f"<CLIP_VISION {self.name}>"


class ClipVisionOutput:
    """CLIP_VISION_OUTPUT: fields as attributes and as items (ComfyUI's ``clip_vision.Output``)."""

    image_embeds: Any
    last_hidden_state: Any
    penultimate_hidden_states: Any

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def __setitem__(self, key: str, value: Any) -> None:
        setattr(self, key, value)

    def __repr__(self) -> str:
        shape = tuple(self.image_embeds.shape)
        return f"<CLIP_VISION_OUTPUT image_embeds{shape}>"


def load_clip_vision(clip_name: str) -> ClipVisionHandle:
    """CLIPVisionLoader: the handle of a CLIP vision file (the module loads on first use)."""
    from .components import Component

    path = clip_vision_path(clip_name)
    config = vision_config(clip_name, path)

    def load() -> Any:
        return _load_module(path, config)

    component = Component(f"clip_vision|{path}", load, path.stat().st_size)
    return ClipVisionHandle(clip_name, component, int(config["image_size"]))


def _load_module(path: Path, config: dict[str, Any]) -> Any:
    from safetensors.torch import load_file
    from transformers import CLIPVisionConfig, CLIPVisionModel, CLIPVisionModelWithProjection

    from .components import device_and_dtype, quiet_progress

    quiet_progress()
    device, dtype = device_and_dtype()
    cls = CLIPVisionModelWithProjection if "projection_dim" in config else CLIPVisionModel
    model: Any = cls(CLIPVisionConfig(**config))
    state = {k: v for k, v in load_file(str(path)).items() if k.startswith(("vision_model.", "visual_projection."))}
    missing, _ = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing:
        _LOG.warning("missing clip vision weights in %s: %s", path.name, missing)
    return model.to(device, dtype).eval()


# ------------------------------------------------------------------------------ encoding


def preprocess(image: Any, size: int, mean: tuple[float, ...], std: tuple[float, ...], crop: bool) -> Any:
    """ComfyUI's ``clip_preprocess``: IMAGE ``[B,H,W,C]`` -> normalised ``[B,3,size,size]``."""
    import torch

    x = image[..., :3].movedim(-1, 1)
    if not (x.shape[2] == size and x.shape[3] == size):
        if crop:
            scale = size / min(x.shape[2], x.shape[3])
            scaled = (round(scale * x.shape[2]), round(scale * x.shape[3]))
        else:
            scaled = (size, size)
        x = torch.nn.functional.interpolate(x, size=scaled, mode="bicubic", antialias=True)
        top, left = (x.shape[2] - size) // 2, (x.shape[3] - size) // 2
        x = x[:, :, top:top + size, left:left + size]
    x = torch.clip(255.0 * x, 0, 255).round() / 255.0
    return (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


def encode_image(clip_vision: Any, image: Any, crop: str) -> ClipVisionOutput:
    """CLIPVisionEncode: the CLIP_VISION_OUTPUT of an IMAGE (see the module docstring)."""
    import torch

    from .components import oom_guard
    from .latent_ops import as_image

    if not isinstance(clip_vision, ClipVisionHandle):
        raise ValueError(f"CLIPVisionEncode: input 'clip_vision' is {type(clip_vision).__name__}, not a CLIP_VISION "
                         "(fix: connect a CLIPVisionLoader; unCLIPCheckpointLoader gives none for checkpoints "
                         "without a vision model)")
    pixels = as_image(image)
    if pixels.ndim != 4 or pixels.shape[-1] not in (1, 3, 4) or min(pixels.shape[1:3]) < 1:
        raise ValueError(f"CLIPVisionEncode: input 'image' has shape {tuple(pixels.shape)}, not an IMAGE "
                         "[B, H, W, C] (fix: connect an IMAGE output, e.g. LoadImage's first output)")
    if pixels.shape[-1] == 1:
        pixels = pixels.repeat(1, 1, 1, 3)
    x = preprocess(pixels, clip_vision.image_size, clip_vision.image_mean, clip_vision.image_std, crop != "none")
    with clip_vision.model.use() as module, torch.inference_mode():
        def run() -> Any:
            return module(pixel_values=x.to(module.device, module.dtype), output_hidden_states=True)
        out = oom_guard(run, module.device)
    cpu = {"device": "cpu", "dtype": torch.float32}
    embeds = out.image_embeds if hasattr(out, "image_embeds") else out.pooler_output
    return ClipVisionOutput(last_hidden_state=out.last_hidden_state.to(**cpu), image_embeds=embeds.to(**cpu),
                            penultimate_hidden_states=out.hidden_states[-2].to(**cpu), mm_projected=None)


# ------------------------------------------------------------------------------ unCLIP


def unclip_parts(kind: str, where: Path) -> str | None:
    """What makes a checkpoint an unCLIP one (SD2.1-unclip style: an image embedder and a noise
    augmentor beside the UNet), or None for a regular checkpoint."""
    if kind == "folder":
        found = [p for p in ("image_encoder", "image_noising_scheduler", "image_normalizer") if (where / p).exists()]
        return ", ".join(found) or None
    if where.suffix.lower() not in (".safetensors", ".sft"):
        return None
    from .families import read_header

    shapes, _ = read_header(where)
    found = sorted({k.split(".")[0] for k in shapes if k.startswith(("embedder.", "noise_augmentor."))})
    return ", ".join(found) or None


def load_unclip_checkpoint(ckpt_name: str) -> tuple[Any, Any, Any, Any]:
    """unCLIPCheckpointLoader: a regular checkpoint loads as CheckpointLoaderSimple does, with no
    CLIP_VISION (None, as ComfyUI gives for a checkpoint without one); an unCLIP checkpoint is a
    ModelError, because we do not run unCLIP UNets (image-embedding class labels) yet."""
    from .loaders import load_checkpoint, resolve

    kind, where = resolve(ckpt_name)
    parts = unclip_parts(kind, where)
    if parts is not None:
        raise ModelError(f"unCLIPCheckpointLoader: {ckpt_name!r} is an unCLIP checkpoint (it has {parts}); "
                         "vortex-jupyter cannot run unCLIP models (SD2.1-unclip) yet",
                         hint="use a regular checkpoint with CheckpointLoaderSimple; CLIPVisionLoader loads "
                              "CLIP vision files on their own")
    model, clip, vae = load_checkpoint(ckpt_name)
    return model, clip, vae, None
