"""Upscale-model nodes (ComfyUI's ``comfy_extras/nodes_upscale_model.py``): UpscaleModelLoader
and ImageUpscaleWithModel, with ComfyUI's names, inputs, categories and display names.

``model_name`` lists ComfyUI's ``upscale_models`` folders, with the built-in tiny 4x ESRGAN
``vortex-tiny-upscale-x4.safetensors`` first; any file in those folders may be named, and a
missing one is a validation problem (VE-117) before the run starts. The work (spandrel, torch)
is in ``upscale``, imported when a node runs.
"""

from __future__ import annotations

from typing import Any

from .node_base import Heavy, verdict


def _names() -> list[str]:
    from .upscale import model_names

    return model_names()


class UpscaleModelLoader(Heavy):
    CATEGORY = "loaders"
    RETURN_TYPES = ("UPSCALE_MODEL",)
    FUNCTION = "load_model"
    DESCRIPTION = ("Loads an image upscale model (ESRGAN, Real-ESRGAN, SwinIR, HAT, DAT, ... through spandrel) "
                   "from the upscale_models folders; 'vortex-tiny-upscale-x4.safetensors' is built in.")

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"model_name": (_names(),)}}

    @classmethod
    def VORTEX_INPUTS_TOKEN(cls) -> tuple[str, ...]:
        return tuple(_names())  # new files in the folders re-read INPUT_TYPES

    @classmethod
    def VALIDATE_INPUTS(cls, model_name: str) -> bool | str:
        from .upscale import check_model_name

        return verdict(check_model_name, model_name)

    def load_model(self, model_name: str) -> tuple[Any]:
        from .upscale import load_upscale_model

        return (load_upscale_model(model_name),)


class ImageUpscaleWithModel(Heavy):
    CATEGORY = "image/upscaling"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "upscale"
    DESCRIPTION = ("Upscales an image with an upscale model, in 512-pixel tiles overlapping by 32 "
                   "(halved on out-of-memory), as ComfyUI does.")

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"upscale_model": ("UPSCALE_MODEL",), "image": ("IMAGE",)}}

    def upscale(self, upscale_model: Any, image: Any) -> tuple[Any]:
        from .upscale import upscale_image

        return (upscale_image(upscale_model, image),)


NODE_CLASS_MAPPINGS: dict[str, type] = {
    "UpscaleModelLoader": UpscaleModelLoader,
    "ImageUpscaleWithModel": ImageUpscaleWithModel,
}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {
    "UpscaleModelLoader": "Load Upscale Model",
    "ImageUpscaleWithModel": "Upscale Image (using Model)",
}
