"""MODEL patch nodes (ComfyUI's "advanced/model"): ModelSamplingDiscrete and RescaleCFG.

Each returns a new MODEL and leaves its input as it was (``model_patches``), so a graph can
sample the same checkpoint both ways. Torch-free: the work is imported in ``FUNCTION``.
"""

from __future__ import annotations

from typing import Any

from .node_base import Heavy

#: ComfyUI's ``sampling`` choices, in its order.
SAMPLING_CHOICES = ("eps", "v_prediction", "lcm", "x0", "img_to_img")


class ModelSamplingDiscrete(Heavy):
    CATEGORY = "advanced/model"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    DESCRIPTION = ("Declares what a discrete-time model predicts (eps, v_prediction, lcm, x0, img_to_img) "
                   "and optionally rescales its noise schedule to zero terminal SNR.")

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {
            "model": ("MODEL",),
            "sampling": (list(SAMPLING_CHOICES),),
            "zsnr": ("BOOLEAN", {"default": False}),
        }}

    def patch(self, model: Any, sampling: str, zsnr: bool) -> tuple[Any]:
        from .model_patches import model_sampling_discrete

        return (model_sampling_discrete(model, sampling, zsnr),)


class RescaleCFG(Heavy):
    CATEGORY = "advanced/model"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    DESCRIPTION = "Rescales the CFG result towards the positive prediction's spread (less over-saturation)."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {
            "model": ("MODEL",),
            "multiplier": ("FLOAT", {"default": 0.7, "min": 0.0, "max": 1.0, "step": 0.01}),
        }}

    def patch(self, model: Any, multiplier: float) -> tuple[Any]:
        from .model_patches import rescale_cfg

        return (rescale_cfg(model, multiplier),)


NODE_CLASS_MAPPINGS: dict[str, type] = {
    "ModelSamplingDiscrete": ModelSamplingDiscrete,
    "RescaleCFG": RescaleCFG,
}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}
