"""What the loader nodes offer in their combo boxes (torch-free; never builds or loads a model).

Each list is ``folders.list_names(kind)`` (ComfyUI's folders under the models root plus
``extra_model_paths.yaml``), with the built-in tiny model's names first so a fresh install has
a working default: ``vortex-tiny`` (then the trained demo ``vortex-shapes``, and ``vortex-tiny-sdxl``, ``-sd3``,
``-flux``) for checkpoints, and its split files
``vortex-tiny-unet.safetensors`` / ``vortex-tiny-clip.safetensors`` /
``vortex-tiny-vae.safetensors`` for UNETLoader / CLIPLoader / VAELoader (built on first use),
followed by the tiny SD3 / Flux split files (``tiny_flow_split.FILES``).
"""

from __future__ import annotations

from .folders import list_names
from .models import TINY_NAME, TINY_SPLIT_NAMES
from .shapes import NAME as SHAPES_NAME
from .tiny_flow import TINY_FLUX_NAME, TINY_SD3_NAME
from .tiny_sdxl import TINY_REFINER_NAME, TINY_SDXL_NAME

#: The built-in checkpoints after ``vortex-tiny``, in the order the combo box shows them.
_MORE = (SHAPES_NAME, TINY_SDXL_NAME, TINY_REFINER_NAME, TINY_SD3_NAME, TINY_FLUX_NAME)


def _with_builtin(builtin: str, kind: str) -> list[str]:
    return [builtin] + [n for n in list_names(kind) if n != builtin]


def checkpoint_names() -> list[str]:
    names = _with_builtin(TINY_NAME, "checkpoints")
    return names[:1] + list(_MORE) + [n for n in names[1:] if n not in _MORE]


def _split_names(part: str, kind: str) -> list[str]:
    from .tiny_flow_split import names

    builtins = [TINY_SPLIT_NAMES[part], *names(part)]
    return builtins + [n for n in list_names(kind) if n not in builtins]


def vae_names() -> list[str]:
    return _split_names("vae", "vae")


def text_encoder_names() -> list[str]:
    return _split_names("clip", "text_encoders")


def diffusion_model_names() -> list[str]:
    return _split_names("unet", "diffusion_models")


def lora_names() -> list[str]:
    return list_names("loras")


def embedding_names() -> list[str]:
    return list_names("embeddings")


def controlnet_names() -> list[str]:
    """ControlNetLoader's list: the built-in tiny ControlNets (SD1, SDXL) first."""
    from .tiny_controlnet import TINY_CONTROLNET_NAMES

    builtins = list(TINY_CONTROLNET_NAMES.values())
    return builtins + [n for n in list_names("controlnet") if n not in builtins]
