"""ControlNet nodes: ComfyUI's names, inputs, widget order, defaults and categories (torch-free).

- ControlNetLoader / DiffControlNetLoader: ``control_net_name`` from ComfyUI's ``controlnet``
  folders (``controlnet/``, ``t2i_adapter/``; ``folders.py``), the built-in tiny ControlNets
  (``vortex-tiny-controlnet.safetensors`` for vortex-tiny, ``vortex-tiny-sdxl-controlnet.safetensors``
  for vortex-tiny-sdxl, ``vortex-tiny-sd3-controlnet.safetensors`` for vortex-tiny-sd3) listed
  first. Original (``control_model.*``) and diffusers layouts load, SD3 ControlNets in diffusers'
  ``SD3ControlNetModel`` layout; a diff ControlNet needs DiffControlNetLoader's MODEL.
- ControlNetApplyAdvanced ("Apply ControlNet"): positive and negative, ``strength``, the
  ``start_percent``/``end_percent`` window of the sampling during which the control acts, and
  ComfyUI's optional ``vae`` (required by SD3 ControlNets, which take the hint VAE-encoded).
- ControlNetApplySD3 ("Apply Controlnet with VAE", deprecated in ComfyUI): the same with the
  ``vae`` required, before the image.
- ControlNetApply ("Apply ControlNet (OLD)", deprecated in ComfyUI): one conditioning; the
  control is also applied to the negative prompt's entries that have none.
- SetUnionControlNetType: ComfyUI's union types (only union ControlNets read them).

``controlnet.py`` holds the semantics (chaining, batching, the sigma window).
"""

from __future__ import annotations

from typing import Any

from .node_base import Heavy, verdict

_COND = ("CONDITIONING",)
_STRENGTH = ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01})
#: ComfyUI's ``UNION_CONTROLNET_TYPES`` keys, after "auto" (kept torch-free here; ``controlnet.py``
#: holds the numbers).
UNION_TYPE_NAMES = ("openpose", "depth", "hed/pidi/scribble/ted", "canny/lineart/anime_lineart/mlsd", "normal",
                    "segment", "tile", "repaint")


def controlnet_names() -> list[str]:
    from .listing import controlnet_names as names

    return names()


def _check(control_net_name: str) -> bool | str:
    from .controlnet_keys import check_controlnet_name

    return verdict(check_controlnet_name, control_net_name)


class ControlNetLoader(Heavy):
    CATEGORY = "loaders"
    RETURN_TYPES = ("CONTROL_NET",)
    FUNCTION = "load_controlnet"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"control_net_name": (controlnet_names(),)}}

    @classmethod
    def VORTEX_INPUTS_TOKEN(cls) -> tuple[str, ...]:
        return tuple(controlnet_names())

    @classmethod
    def VALIDATE_INPUTS(cls, control_net_name: str) -> bool | str:
        return _check(control_net_name)

    def load_controlnet(self, control_net_name: str) -> tuple[Any]:
        from .controlnet import load_controlnet

        return (load_controlnet(control_net_name),)


class DiffControlNetLoader(ControlNetLoader):
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"model": ("MODEL",), "control_net_name": (controlnet_names(),)}}

    def load_controlnet(self, model: Any, control_net_name: str) -> tuple[Any]:  # type: ignore[override]
        from .controlnet import load_controlnet

        return (load_controlnet(control_net_name, model),)


class ControlNetApply(Heavy):
    CATEGORY = "conditioning/controlnet"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "apply_controlnet"
    DEPRECATED = True

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"conditioning": _COND, "control_net": ("CONTROL_NET",), "image": ("IMAGE",),
                             "strength": _STRENGTH}}

    def apply_controlnet(self, conditioning: Any, control_net: Any, image: Any, strength: float) -> tuple[Any]:
        from .controlnet import apply_controlnet

        return (apply_controlnet(conditioning, control_net, image, strength),)


class ControlNetApplyAdvanced(Heavy):
    CATEGORY = "conditioning/controlnet"
    RETURN_TYPES = ("CONDITIONING", "CONDITIONING")
    RETURN_NAMES = ("positive", "negative")
    FUNCTION = "apply_controlnet"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        percent = {"min": 0.0, "max": 1.0, "step": 0.001}
        return {"required": {"positive": _COND, "negative": _COND, "control_net": ("CONTROL_NET",),
                             "image": ("IMAGE",), "strength": _STRENGTH,
                             "start_percent": ("FLOAT", {"default": 0.0, **percent}),
                             "end_percent": ("FLOAT", {"default": 1.0, **percent})},
                "optional": {"vae": ("VAE",)}}

    def apply_controlnet(self, positive: Any, negative: Any, control_net: Any, image: Any, strength: float,
                         start_percent: float, end_percent: float, vae: Any = None) -> tuple[Any, Any]:
        from .controlnet import apply_controlnet_advanced

        return apply_controlnet_advanced(positive, negative, control_net, image, strength, start_percent,
                                         end_percent, vae)


class ControlNetApplySD3(ControlNetApplyAdvanced):
    DEPRECATED = True

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        spec = ControlNetApplyAdvanced.INPUT_TYPES()["required"]
        order = ("positive", "negative", "control_net", "vae", "image", "strength", "start_percent", "end_percent")
        return {"required": {name: ("VAE",) if name == "vae" else spec[name] for name in order}}


class SetUnionControlNetType(Heavy):
    CATEGORY = "conditioning/controlnet"
    RETURN_TYPES = ("CONTROL_NET",)
    FUNCTION = "set_controlnet_type"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"control_net": ("CONTROL_NET",), "type": (["auto", *UNION_TYPE_NAMES],)}}

    def set_controlnet_type(self, control_net: Any, type: str) -> tuple[Any]:
        from .controlnet import set_union_type

        return (set_union_type(control_net, type),)


_NODES: list[tuple[type, str]] = [
    (ControlNetLoader, "Load ControlNet Model"), (DiffControlNetLoader, "Load ControlNet Model (diff)"),
    (ControlNetApply, "Apply ControlNet (OLD)"), (ControlNetApplyAdvanced, "Apply ControlNet"),
    (ControlNetApplySD3, "Apply Controlnet with VAE"),
    (SetUnionControlNetType, "SetUnionControlNetType"),
]

NODE_CLASS_MAPPINGS: dict[str, type] = {cls.__name__: cls for cls, _ in _NODES}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {cls.__name__: name for cls, name in _NODES}
