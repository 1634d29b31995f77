"""Loader nodes: checkpoints, split files (UNet / text encoders / VAE), LoRAs and CLIP skip.

ComfyUI's names, inputs, widget order, defaults and categories. Model names come from
ComfyUI's folders (``folders.py``: the models root and ``extra_model_paths.yaml``); each
loader's ``VALIDATE_INPUTS`` accepts any file in those folders (not only the listed ones, as in
ComfyUI) and reports a missing file, or a ``.safetensors`` of a model family we lack, before the
run starts. The built-in tiny model's names (``vortex-tiny``, ``vortex-tiny-unet.safetensors``,
``vortex-tiny-clip.safetensors``, ``vortex-tiny-vae.safetensors``) are always listed first, then
the tiny SD3 / Flux split files (``tiny_flow_split``). DualCLIPLoader and TripleCLIPLoader
build SDXL / SD3 / Flux CLIPs from one file per encoder (``flow_split``).
"""

from __future__ import annotations

from typing import Any

from .node_base import Heavy, ckpt_names, lora_names, verdict

#: CLIPLoader's ``type`` choices (ComfyUI's list, plus types seen in newer official templates).
#: "stable_diffusion" and "sd3" load here; the rest are model families we do not run yet.
CLIP_TYPES = ("stable_diffusion", "stable_cascade", "sd3", "stable_audio", "mochi", "ltxv", "pixart",
              "cosmos", "lumina2", "wan", "hidream", "chroma", "ace", "omnigen2", "qwen_image",
              "hunyuan_image", "flux2", "ovis", "longcat_image", "cogvideox", "lens", "pixeldit",
              "ideogram4", "boogu", "krea2", "joyimage", "mage", "minimax", "yue2", "fibo2", "flux3",
              "moss_image")
#: DualCLIPLoader's (ComfyUI's list, plus types of newer official templates); "sdxl", "sd3" and
#: "flux" load here.
DUAL_CLIP_TYPES = ("sdxl", "sd3", "flux", "hunyuan_video", "hidream", "hunyuan_image", "hunyuan_video_15",
                   "kandinsky5", "kandinsky5_image", "newbie", "ace")
WEIGHT_DTYPES = ("default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2")
_LORA_STRENGTH = {"default": 1.0, "min": -100.0, "max": 100.0, "step": 0.01}


def _names(kind: str) -> list[str]:
    from . import listing

    return {"vae": listing.vae_names, "clip": listing.text_encoder_names,
            "unet": listing.diffusion_model_names}[kind]()


def _check_split(part: str, name: str) -> bool | str:
    from .split import check_split

    return verdict(lambda n: check_split(part, n), name)


class CheckpointLoaderSimple(Heavy):
    CATEGORY = "loaders"
    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    FUNCTION = "load_checkpoint"
    DESCRIPTION = "Loads a diffusion model checkpoint ('vortex-tiny' is the built-in tiny model)."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"ckpt_name": (ckpt_names(), {"tooltip": "The checkpoint to load."})}}

    @classmethod
    def VORTEX_INPUTS_TOKEN(cls) -> tuple[str, ...]:
        return tuple(ckpt_names())  # new files in the models folder re-read INPUT_TYPES

    @classmethod
    def VALIDATE_INPUTS(cls, ckpt_name: str) -> bool | str:
        # Any file in the models folder or a hub id may be named, not only the listed ones; a
        # missing file is reported now rather than after the run started.
        from .loaders import check_checkpoint_name

        return verdict(check_checkpoint_name, ckpt_name)

    def load_checkpoint(self, ckpt_name: str) -> tuple[Any, Any, Any]:
        from .loaders import load_checkpoint

        return load_checkpoint(ckpt_name)


class VAELoader(Heavy):
    CATEGORY = "loaders"
    RETURN_TYPES = ("VAE",)
    FUNCTION = "load_vae"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"vae_name": (_names("vae"),)}}

    @classmethod
    def VORTEX_INPUTS_TOKEN(cls) -> tuple[str, ...]:
        return tuple(_names("vae"))

    @classmethod
    def VALIDATE_INPUTS(cls, vae_name: str) -> bool | str:
        return _check_split("vae", vae_name)

    def load_vae(self, vae_name: str) -> tuple[Any]:
        from .split import load_vae

        return (load_vae(vae_name),)


class CLIPLoader(Heavy):
    CATEGORY = "advanced/loaders"
    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load_clip"
    DESCRIPTION = ("Loads a text encoder. Recipes: stable_diffusion: CLIP-L (SD1); sd3: T5-XXL / OpenCLIP-G "
                   "/ CLIP-L (SD3's CLIP with that encoder only); the other types are model families we do "
                   "not run yet.")

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"clip_name": (_names("clip"),), "type": (list(CLIP_TYPES),)},
                "optional": {"device": (["default", "cpu"], {"advanced": True})}}

    @classmethod
    def VORTEX_INPUTS_TOKEN(cls) -> tuple[str, ...]:
        return tuple(_names("clip"))

    @classmethod
    def VALIDATE_INPUTS(cls, clip_name: str, type: str = "stable_diffusion") -> bool | str:
        from .split import check_clip_type

        kind = verdict(check_clip_type, type)
        if kind is not True:  # the type decides the family: say that first
            return f"type: {kind}"
        if type == "sd3":
            return _check_clips("CLIPLoader", {"clip_name": clip_name}, type)
        return _check_split("clip", clip_name)

    def load_clip(self, clip_name: str, type: str = "stable_diffusion", device: str = "default") -> tuple[Any]:
        from .split import load_clip

        return (load_clip(clip_name, type, device),)


def _check_clips(node: str, names: dict[str, object], clip_type: str) -> bool | str:
    from .flow_split import check_text_encoders

    return verdict(lambda _: check_text_encoders(node, names, clip_type), node)


_DEVICE = {"device": (["default", "cpu"], {"advanced": True})}


class DualCLIPLoader(Heavy):
    CATEGORY = "advanced/loaders"
    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load_clip"
    DESCRIPTION = ("Loads two text encoders as one CLIP. Recipes: sdxl: clip-l, clip-g; sd3: clip-l, clip-g / "
                   "clip-l, t5 / clip-g, t5; flux: clip-l, t5 (the other types are families we do not run yet).")

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        names = _names("clip")
        return {"required": {"clip_name1": (names,), "clip_name2": (names,), "type": (list(DUAL_CLIP_TYPES),)},
                "optional": dict(_DEVICE)}

    @classmethod
    def VORTEX_INPUTS_TOKEN(cls) -> tuple[str, ...]:
        return tuple(_names("clip"))

    @classmethod
    def VALIDATE_INPUTS(cls, clip_name1: str, clip_name2: str, type: str) -> bool | str:
        return _check_clips("DualCLIPLoader", {"clip_name1": clip_name1, "clip_name2": clip_name2}, type)

    def load_clip(self, clip_name1: str, clip_name2: str, type: str, device: str = "default") -> tuple[Any]:
        from .flow_split import load_text_encoders

        return (load_text_encoders("DualCLIPLoader", {"clip_name1": clip_name1, "clip_name2": clip_name2},
                                   type, device),)


class TripleCLIPLoader(Heavy):
    CATEGORY = "advanced/loaders"
    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load_clip"
    DESCRIPTION = "Loads SD3's three text encoders as one CLIP. Recipes: sd3: clip-l, clip-g, t5."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        names = _names("clip")
        return {"required": {"clip_name1": (names,), "clip_name2": (names,), "clip_name3": (names,)}}

    @classmethod
    def VORTEX_INPUTS_TOKEN(cls) -> tuple[str, ...]:
        return tuple(_names("clip"))

    @classmethod
    def VALIDATE_INPUTS(cls, clip_name1: str, clip_name2: str, clip_name3: str) -> bool | str:
        names: dict[str, object] = {"clip_name1": clip_name1, "clip_name2": clip_name2, "clip_name3": clip_name3}
        return _check_clips("TripleCLIPLoader", names, "sd3")

    def load_clip(self, clip_name1: str, clip_name2: str, clip_name3: str) -> tuple[Any]:
        from .flow_split import load_text_encoders

        names = {"clip_name1": clip_name1, "clip_name2": clip_name2, "clip_name3": clip_name3}
        return (load_text_encoders("TripleCLIPLoader", names, "sd3"),)


class UNETLoader(Heavy):
    CATEGORY = "advanced/loaders"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "load_unet"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"unet_name": (_names("unet"),),
                             "weight_dtype": (list(WEIGHT_DTYPES), {"advanced": True})}}

    @classmethod
    def VORTEX_INPUTS_TOKEN(cls) -> tuple[str, ...]:
        return tuple(_names("unet"))

    @classmethod
    def VALIDATE_INPUTS(cls, unet_name: str) -> bool | str:
        return _check_split("unet", unet_name)

    def load_unet(self, unet_name: str, weight_dtype: str) -> tuple[Any]:
        from .split import load_unet

        return (load_unet(unet_name, weight_dtype),)


class LoraLoader(Heavy):
    CATEGORY = "loaders"
    RETURN_TYPES: tuple[str, ...] = ("MODEL", "CLIP")
    FUNCTION = "load_lora"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"model": ("MODEL",), "clip": ("CLIP",), "lora_name": (lora_names(),),
                             "strength_model": ("FLOAT", _LORA_STRENGTH),
                             "strength_clip": ("FLOAT", _LORA_STRENGTH)}}

    @classmethod
    def VORTEX_INPUTS_TOKEN(cls) -> tuple[str, ...]:
        return tuple(lora_names())

    @classmethod
    def VALIDATE_INPUTS(cls, lora_name: str) -> bool | str:
        from .loaders import lora_path  # any file in the loras folders may be named

        return verdict(lora_path, lora_name)

    def load_lora(self, model: Any, clip: Any, lora_name: str, strength_model: float,
                  strength_clip: float) -> tuple[Any, Any]:
        from .lora import load_lora

        return load_lora(model, clip, lora_name, strength_model, strength_clip)


class LoraLoaderModelOnly(LoraLoader):
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "load_lora_model_only"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"model": ("MODEL",), "lora_name": (lora_names(),),
                             "strength_model": ("FLOAT", _LORA_STRENGTH)}}

    def load_lora_model_only(self, model: Any, lora_name: str, strength_model: float) -> tuple[Any]:
        from .lora import load_lora  # ComfyUI: LoraLoader with no CLIP and strength_clip 0

        return (load_lora(model, None, lora_name, strength_model, 0)[0],)


class CLIPSetLastLayer(Heavy):
    CATEGORY = "conditioning"
    RETURN_TYPES = ("CLIP",)
    FUNCTION = "set_last_layer"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"clip": ("CLIP",),
                             "stop_at_clip_layer": ("INT", {"default": -1, "min": -24, "max": -1, "step": 1})}}

    def set_last_layer(self, clip: Any, stop_at_clip_layer: int) -> tuple[Any]:
        from dataclasses import replace

        # ComfyUI's clip_layer sets, it does not add up: the last CLIPSetLastLayer wins.
        return (replace(clip, layer=int(stop_at_clip_layer)),)


NODE_CLASS_MAPPINGS: dict[str, type] = {
    "CheckpointLoaderSimple": CheckpointLoaderSimple,
    "VAELoader": VAELoader,
    "CLIPLoader": CLIPLoader,
    "UNETLoader": UNETLoader,
    "DualCLIPLoader": DualCLIPLoader,
    "TripleCLIPLoader": TripleCLIPLoader,
    "LoraLoader": LoraLoader,
    "LoraLoaderModelOnly": LoraLoaderModelOnly,
    "CLIPSetLastLayer": CLIPSetLastLayer,
}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {
    "CheckpointLoaderSimple": "Load Checkpoint",
    "VAELoader": "Load VAE",
    "CLIPLoader": "Load CLIP",
    "UNETLoader": "Load Diffusion Model",
    "LoraLoader": "Load LoRA",
    "CLIPSetLastLayer": "CLIP Set Last Layer",
}
