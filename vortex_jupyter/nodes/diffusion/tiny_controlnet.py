"""The built-in tiny ControlNets: diffusers ``ControlNetModel``s (and an ``SD3ControlNetModel``)
shaped for the tiny models.

``tiny_controlnet("sd1")`` matches ``vortex-tiny``'s UNet, ``tiny_controlnet("sdxl")``
``vortex-tiny-sdxl``'s (the same down blocks, cross-attention width and, for SDXL, the
text/time embedding), ``tiny_controlnet("sd3")`` ``vortex-tiny-sd3``'s MMDiT (same width,
heads, patch, text widths; one joint block), built like the tiny models (``models.py``): seeded random weights,
offline, under the models root, behind a file lock, in a temporary sibling renamed into place.

A real ControlNet starts with zero-initialised output convolutions (the "zero convs": the
hint embedding's last conv, one 1x1 conv per UNet skip and one for the middle block), so
an untrained one adds nothing. Ours get seeded small random values there instead, so tests
can see a control act on the image. The SD3 one's are its ``controlnet_blocks`` (one linear
per joint block) and ``pos_embed_input`` (the hint's patch embedding), zero in diffusers' init.

On disk, next to the tiny models::

    vortex-tiny-controlnet/                  the diffusers folder (config.json + weights)
    vortex-tiny-controlnet.safetensors       the same weights in the original ControlNet layout
                                             (``control_model.*``, ``controlnet_keys.py``), the
                                             config and family in ``vortex_configs`` metadata
    vortex-tiny-sdxl-controlnet/ (.safetensors)   the same for SDXL
    vortex-tiny-sd3-controlnet/ (.safetensors)    SD3: the single file keeps diffusers' names,
                                             the layout ComfyUI's ``load_controlnet_mmdit`` reads

ControlNetLoader lists the single files' names first (``TINY_CONTROLNET_NAMES``).

>>> tiny_controlnet_single_file("sd1").name  # doctest: +SKIP
'vortex-tiny-controlnet.safetensors'
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from . import models

__all__ = ["TINY_CONTROLNET_NAMES", "controlnet_config_for", "tiny_controlnet", "tiny_controlnet_single_file"]

#: family -> the built-in name ControlNetLoader lists.
TINY_CONTROLNET_NAMES = {"sd1": "vortex-tiny-controlnet.safetensors",
                         "sdxl": "vortex-tiny-sdxl-controlnet.safetensors",
                         "sd3": "vortex-tiny-sd3-controlnet.safetensors"}
#: Bump when the configs or the build change: old caches are rebuilt, never reused.
BUILD_VERSION = 1
#: The std of the seeded "zero convs" (large enough to change the image, small enough to keep
#: the tiny UNet's activations in range).
ZERO_CONV_STD = 0.05
#: The same for the SD3 ControlNet's block outputs and hint embedding (its residuals are added
#: to 32-wide tokens of unit scale, so they need more to show).
SD3_ZERO_STD = 0.2
_UNET_ONLY = ("out_channels", "up_block_types", "sample_size", "center_input_sample", "time_cond_proj_dim",
              "conv_out_kernel", "dual_cross_attention", "reverse_transformer_layers_per_block")


def controlnet_config_for(unet_config: dict[str, Any]) -> dict[str, Any]:
    """A ControlNetModel config for a UNet config: its encoder half (what ``from_unet`` copies)."""
    return {k: v for k, v in unet_config.items() if k not in _UNET_ONLY and not k.startswith("_")}


#: The tiny SD3 transformer's config keys an SD3ControlNetModel shares.
_SD3_KEYS = ("sample_size", "patch_size", "in_channels", "out_channels", "attention_head_dim", "num_attention_heads",
             "joint_attention_dim", "caption_projection_dim", "pooled_projection_dim", "pos_embed_max_size")


def _sd3_config() -> dict[str, Any]:
    from .tiny_flow import tiny_flow_configs

    transformer = tiny_flow_configs("sd3")["transformer"]
    return {**{k: transformer[k] for k in _SD3_KEYS}, "num_layers": 1}


def _config(family: str) -> dict[str, Any]:
    return _sd3_config() if family == "sd3" else controlnet_config_for(_unet_config(family))


def _unet_config(family: str) -> dict[str, Any]:
    if family == "sd1":
        return models.tiny_configs()["unet"]
    if family == "sdxl":
        from .tiny_sdxl import tiny_sdxl_configs

        return tiny_sdxl_configs()["unet"]
    raise ValueError(f"no tiny ControlNet for family {family!r} (have: {', '.join(TINY_CONTROLNET_NAMES)})")


def _folder(root: Path, family: str, seed: int) -> Path:
    stem = TINY_CONTROLNET_NAMES[family].removesuffix(".safetensors")
    return root / (stem if seed == 0 else f"{stem}-s{seed}")


def _marker(family: str, seed: int) -> dict[str, Any]:
    return {"version": BUILD_VERSION, "family": family, "seed": seed, "kind": "controlnet"}


def tiny_controlnet(family: str = "sd1", cache_dir: str | os.PathLike[str] | None = None, *, seed: int = 0) -> Path:
    """The tiny ControlNet's diffusers folder for ``family`` ("sd1", "sdxl" or "sd3"), built (with
    its single file) on first use."""
    config = _config(family)
    root = Path(cache_dir) if cache_dir is not None else models.models_root()

    def make(tmp: Path, single: Path) -> None:
        net = build_sd3_controlnet(config, seed) if family == "sd3" else build_controlnet(config, seed)
        net.save_pretrained(tmp, safe_serialization=True)
        write_controlnet_single_file(single, net.state_dict(), config, family)

    return models.build_once(_folder(root, family, seed), _marker(family, seed), make, "the tiny ControlNet")


def tiny_controlnet_single_file(family: str = "sd1", cache_dir: str | os.PathLike[str] | None = None, *,
                                seed: int = 0) -> Path:
    """The tiny ControlNet as one ``.safetensors``: the original (ldm) ControlNet layout for SD1 and
    SDXL, diffusers' names for SD3 (module docstring)."""
    folder = tiny_controlnet(family, cache_dir, seed=seed)
    return folder.with_name(folder.name + ".safetensors")


def build_controlnet(config: dict[str, Any], seed: int) -> Any:
    """A ControlNetModel with seeded weights, its zero convs seeded too (module docstring)."""
    import torch
    from diffusers import ControlNetModel

    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
        torch.manual_seed(seed + 10)
        net: Any = ControlNetModel(**config)
        gen = torch.Generator().manual_seed(seed + 11)
        zero_convs = [net.controlnet_cond_embedding.conv_out, *net.controlnet_down_blocks, net.controlnet_mid_block]
        with torch.no_grad():
            for conv in zero_convs:
                for p in conv.parameters():
                    p.copy_(torch.randn(p.shape, generator=gen) * ZERO_CONV_STD)
    return net.eval()


def build_sd3_controlnet(config: dict[str, Any], seed: int) -> Any:
    """An SD3ControlNetModel with seeded weights, its zero-initialised parts seeded too."""
    import torch
    from diffusers import SD3ControlNetModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 20)
        net: Any = SD3ControlNetModel(**config)
        gen = torch.Generator().manual_seed(seed + 21)
        with torch.no_grad():
            for module in (*net.controlnet_blocks, net.pos_embed_input):
                for p in module.parameters():
                    p.copy_(torch.randn(p.shape, generator=gen) * SD3_ZERO_STD)
    return net.eval()


def write_controlnet_single_file(path: Path, state: dict[str, Any], config: dict[str, Any], family: str) -> None:
    """One ``.safetensors`` with ``control_model.*`` keys (SD3: diffusers' own); the config and
    family ride in ONE metadata key with sorted JSON keys, so the file is byte-identical on
    every machine."""
    from safetensors.torch import save_file

    from .controlnet_keys import controlnet_to_ldm

    layout = state if family == "sd3" else controlnet_to_ldm(state, config)
    out = {k: v.detach().contiguous() for k, v in layout.items()}
    meta = {"vortex_configs": json.dumps({"controlnet": config, "family": family}, sort_keys=True)}
    save_file(out, str(path), metadata=meta)
