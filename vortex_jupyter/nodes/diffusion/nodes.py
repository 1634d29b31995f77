"""The diffusion nodes, as ComfyUI-style classes with ComfyUI's names, inputs and widget order.

One module per family, each with its own ``NODE_CLASS_MAPPINGS``; this module merges them for
the registry (``nodes.registry`` imports it lazily):

- ``loader_nodes``: checkpoints, split loaders, LoRAs;
- ``conditioning_nodes``: text encoding and conditioning edits;
- ``sampling_nodes``: KSampler, KSamplerAdvanced and the custom-sampling family;
- ``sigma_nodes``: SIGMAS schedules and edits (BasicScheduler, SplitSigmas, ...);
- ``latent_nodes``: empty latents, VAE decode/encode, latent edits;
- ``model_nodes``: MODEL patches (ModelSamplingDiscrete, RescaleCFG);
- ``flow_nodes``: SD3 / Flux / AuraFlow (ModelSampling*, EmptySD3LatentImage, their text encoders);
- ``upscale_nodes``: upscale models (UpscaleModelLoader, ImageUpscaleWithModel, on spandrel).
- ``controlnet_nodes``: ControlNets (ControlNetLoader, DiffControlNetLoader, ControlNetApply[Advanced]).
- ``vision_nodes``: InpaintModelConditioning, CLIP vision (CLIPVisionLoader/Encode), unCLIP.

Importing these modules must not import torch: the registry imports them to list node types
in the kernel. Each ``FUNCTION`` imports the heavy modules (``text``, ``vae``, ``latent``,
``sampling``, ``loaders``) when it runs, which happens in a worker. ``VORTEX_HEAVY = True``
tells the worker pool these nodes need torch/diffusers.

Widget order matters: ComfyUI UI workflows store widget values positionally
(``widgets_values``), so every ``INPUT_TYPES`` dict lists inputs in ComfyUI's order.
Value conventions: IMAGE = numpy float32 ``[B,H,W,C]`` in [0, 1]; LATENT = ``{"samples":
torch tensor [B,4,h,w]}`` on the CPU; CONDITIONING = ``[[tensor, {"pooled_output": ...}]]``;
MODEL/CLIP/VAE = handles from ``components`` (they stay in the worker).
"""

from __future__ import annotations

from . import (
    conditioning_nodes,
    controlnet_nodes,
    flow_nodes,
    latent_nodes,
    loader_nodes,
    model_nodes,
    sampling_nodes,
    sigma_nodes,
    upscale_nodes,
    vision_nodes,
)
from .conditioning_nodes import CLIPTextEncode
from .latent_nodes import EmptyLatentImage, LatentUpscale, VAEDecode, VAEEncode
from .loader_nodes import CheckpointLoaderSimple, LoraLoader
from .sampling_nodes import KSampler, KSamplerAdvanced

_FAMILIES = (loader_nodes, conditioning_nodes, sampling_nodes, sigma_nodes, latent_nodes, model_nodes, flow_nodes,
             upscale_nodes, controlnet_nodes, vision_nodes)

NODE_CLASS_MAPPINGS: dict[str, type] = {k: v for m in _FAMILIES for k, v in m.NODE_CLASS_MAPPINGS.items()}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {
    k: v for m in _FAMILIES for k, v in m.NODE_DISPLAY_NAME_MAPPINGS.items()
}

__all__ = [
    "NODE_CLASS_MAPPINGS",
    "NODE_DISPLAY_NAME_MAPPINGS",
    "CLIPTextEncode",
    "CheckpointLoaderSimple",
    "EmptyLatentImage",
    "KSampler",
    "KSamplerAdvanced",
    "LatentUpscale",
    "LoraLoader",
    "VAEDecode",
    "VAEEncode",
]
