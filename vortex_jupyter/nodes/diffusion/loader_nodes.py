"""Loader nodes: checkpoints and LoRAs (ComfyUI's names, inputs and widget order)."""

from __future__ import annotations

from typing import Any

from .node_base import Heavy, ckpt_names, lora_names, verdict


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


class LoraLoader(Heavy):
    CATEGORY = "loaders"
    RETURN_TYPES = ("MODEL", "CLIP")
    FUNCTION = "load_lora"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        strength = {"default": 1.0, "min": -100.0, "max": 100.0, "step": 0.01}
        return {"required": {"model": ("MODEL",), "clip": ("CLIP",), "lora_name": (lora_names(),),
                             "strength_model": ("FLOAT", strength), "strength_clip": ("FLOAT", strength)}}

    @classmethod
    def VORTEX_INPUTS_TOKEN(cls) -> tuple[str, ...]:
        return tuple(lora_names())

    @classmethod
    def VALIDATE_INPUTS(cls, lora_name: str) -> bool | str:
        from .loaders import lora_path  # any file under <models>/loras may be named

        return verdict(lora_path, lora_name)

    def load_lora(self, model: Any, clip: Any, lora_name: str, strength_model: float,
                  strength_clip: float) -> tuple[Any, Any]:
        from .lora import load_lora

        return load_lora(model, clip, lora_name, strength_model, strength_clip)


NODE_CLASS_MAPPINGS: dict[str, type] = {
    "CheckpointLoaderSimple": CheckpointLoaderSimple,
    "LoraLoader": LoraLoader,
}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {
    "CheckpointLoaderSimple": "Load Checkpoint",
    "LoraLoader": "Load LoRA",
}
