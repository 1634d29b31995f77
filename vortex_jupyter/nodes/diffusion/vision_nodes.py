"""Inpainting-model and CLIP vision nodes, with ComfyUI's names, inputs, widget order and categories.

- InpaintModelConditioning: positive/negative get the masked image's latent and the mask
  (``concat_latent_image`` / ``concat_mask``) that an inpainting UNet reads as extra input
  channels; its LATENT is the image's latent, with the mask as ``noise_mask`` unless
  ``noise_mask`` is off. On a regular (4-channel) model the concat is ignored (``inpaint.py``).
- CLIPVisionLoader / CLIPVisionEncode: a CLIP vision file from the ``clip_vision`` folders (the
  built-in ``vortex-tiny-clip-vision.safetensors`` first) and its CLIP_VISION_OUTPUT of an image
  (``clip_vision.py``: preprocessing and fields as ComfyUI).
- unCLIPConditioning: appends ``{"clip_vision_output", "strength", "noise_augmentation"}`` to
  each entry's ``unclip_conditioning`` list (strength 0: the input unchanged). Only unCLIP models
  read it; every model we run ignores it, as ComfyUI's non-unCLIP models do.
- unCLIPCheckpointLoader: regular checkpoints load (CLIP_VISION None); unCLIP checkpoints are a
  clear ModelError (we do not run unCLIP UNets yet).

Torch-free at import; each ``FUNCTION`` imports its heavy module when it runs.
"""

from __future__ import annotations

from typing import Any

from .node_base import Heavy, ckpt_names, verdict

_COND = ("CONDITIONING",)


def clip_vision_names() -> list[str]:
    from .clip_vision import clip_vision_names as names

    return names()


class InpaintModelConditioning(Heavy):
    CATEGORY = "conditioning/inpaint"
    RETURN_TYPES = ("CONDITIONING", "CONDITIONING", "LATENT")
    RETURN_NAMES = ("positive", "negative", "latent")
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        tip = ("Add a noise mask to the latent so sampling will only happen within the mask. Might improve "
               "results or completely break things depending on the model.")
        return {"required": {"positive": _COND, "negative": _COND, "vae": ("VAE",), "pixels": ("IMAGE",),
                             "mask": ("MASK",), "noise_mask": ("BOOLEAN", {"default": True, "tooltip": tip})}}

    def encode(self, positive: Any, negative: Any, pixels: Any, vae: Any, mask: Any, noise_mask: bool = True
               ) -> tuple[Any, Any, dict[str, Any]]:
        from .inpaint import inpaint_conditioning

        return inpaint_conditioning(positive, negative, vae, pixels, mask, noise_mask)


class CLIPVisionLoader(Heavy):
    CATEGORY = "loaders"
    RETURN_TYPES = ("CLIP_VISION",)
    FUNCTION = "load_clip"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"clip_name": (clip_vision_names(),)}}

    @classmethod
    def VORTEX_INPUTS_TOKEN(cls) -> tuple[str, ...]:
        return tuple(clip_vision_names())

    @classmethod
    def VALIDATE_INPUTS(cls, clip_name: str) -> bool | str:
        from .clip_vision import check_clip_vision_name

        return verdict(check_clip_vision_name, clip_name)

    def load_clip(self, clip_name: str) -> tuple[Any]:
        from .clip_vision import load_clip_vision

        return (load_clip_vision(clip_name),)


class CLIPVisionEncode(Heavy):
    CATEGORY = "conditioning"
    RETURN_TYPES = ("CLIP_VISION_OUTPUT",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"clip_vision": ("CLIP_VISION",), "image": ("IMAGE",), "crop": (["center", "none"],)}}

    def encode(self, clip_vision: Any, image: Any, crop: str = "center") -> tuple[Any]:
        from .clip_vision import encode_image

        return (encode_image(clip_vision, image, crop),)


class unCLIPConditioning(Heavy):  # ComfyUI's class name
    CATEGORY = "conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "apply_adm"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"conditioning": _COND, "clip_vision_output": ("CLIP_VISION_OUTPUT",),
                             "strength": ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01}),
                             "noise_augmentation": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01})}}

    def apply_adm(self, conditioning: Any, clip_vision_output: Any, strength: float, noise_augmentation: float
                  ) -> tuple[Any]:
        from .conditioning_nodes import _pairs

        pairs = _pairs(conditioning)  # a clear error for a wrong input, even at strength 0
        if strength == 0:
            return (conditioning,)
        if not hasattr(clip_vision_output, "image_embeds"):
            raise ValueError(f"unCLIPConditioning: input 'clip_vision_output' is {type(clip_vision_output).__name__}, "
                             "not a CLIP_VISION_OUTPUT (fix: connect a CLIPVisionEncode output)")
        entry = {"clip_vision_output": clip_vision_output, "strength": strength,
                 "noise_augmentation": noise_augmentation}
        out = []
        for embedding, options in pairs:
            old = options.get("unclip_conditioning")
            out.append([embedding, {**options, "unclip_conditioning": ([] if old is None else list(old)) + [entry]}])
        return (out,)


class unCLIPCheckpointLoader(Heavy):  # ComfyUI's class name
    CATEGORY = "loaders"
    RETURN_TYPES = ("MODEL", "CLIP", "VAE", "CLIP_VISION")
    FUNCTION = "load_checkpoint"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"ckpt_name": (ckpt_names(),)}}

    @classmethod
    def VORTEX_INPUTS_TOKEN(cls) -> tuple[str, ...]:
        return tuple(ckpt_names())

    @classmethod
    def VALIDATE_INPUTS(cls, ckpt_name: str) -> bool | str:
        from .loaders import check_checkpoint_name

        return verdict(check_checkpoint_name, ckpt_name)

    def load_checkpoint(self, ckpt_name: str) -> tuple[Any, Any, Any, Any]:
        from .clip_vision import load_unclip_checkpoint

        return load_unclip_checkpoint(ckpt_name)


_NODES: list[tuple[type, str | None]] = [
    (InpaintModelConditioning, None), (CLIPVisionLoader, "Load CLIP Vision"),
    (CLIPVisionEncode, "CLIP Vision Encode"), (unCLIPConditioning, None), (unCLIPCheckpointLoader, None),
]
NODE_CLASS_MAPPINGS: dict[str, type] = {cls.__name__: cls for cls, _ in _NODES}
#: ComfyUI's display names (the others have none there).
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {cls.__name__: name for cls, name in _NODES if name}
