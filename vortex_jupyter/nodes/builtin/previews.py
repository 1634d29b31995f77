"""Preview-only output nodes: ImageCompare and MaskPreview (ComfyUI's ``nodes_image_compare.py``
and ``nodes_mask.py``).

Both write 8-bit PNGs into the temp folder through ``PreviewImage`` (same safe, exclusive
file names) and return the "ui" data ComfyUI returns, so a frontend shows them as ComfyUI's:

- ImageCompare: ``{"a_images": [...], "b_images": [...]}``, each a list of
  ``{"filename", "subfolder", "type": "temp"}`` under the prefixes ``comfy.compare.a`` and
  ``comfy.compare.b``; either input may be left unconnected (its list is then empty). It has
  no outputs. Its ``compare_view`` is the frontend's slider widget: declared, never needed.
- MaskPreview: the mask as a gray RGB image (``mask`` repeated on three channels), as
  ``{"images": [...], "animated": (False,)}``, with the workflow embedded like PreviewImage's.

Each image is also shown on the node and in the notebook cell.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .arrays import as_image, as_mask
from .image import PreviewImage

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]


class ImageCompare:
    CATEGORY = "image"
    RETURN_TYPES: tuple[str, ...] = ()
    FUNCTION = "execute"
    OUTPUT_NODE = True
    EXPERIMENTAL = True
    DESCRIPTION = "Compares two images side by side with a slider."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        # compare_view is ComfyUI's socketless slider widget (type IMAGECOMPARE): it holds the
        # frontend's before/after URLs and carries nothing the node computes with.
        return {"optional": {"image_a": ("IMAGE",), "image_b": ("IMAGE",), "compare_view": ("IMAGECOMPARE", {})}}

    def execute(self, image_a: Any = None, image_b: Any = None, compare_view: Any = None) -> dict[str, Any]:
        result: dict[str, list[Any]] = {"a_images": [], "b_images": []}
        for key, name, images in (("a_images", "image_a", image_a), ("b_images", "image_b", image_b)):
            if images is None or len(images) == 0:
                continue
            batch = as_image(images, "ImageCompare", name)
            prefix = f"comfy.compare.{name[-1]}"
            result[key] = PreviewImage().save_images(batch, prefix)["ui"]["images"]
        return {"ui": result}


class MaskPreview:
    CATEGORY = "mask"
    RETURN_TYPES: tuple[str, ...] = ()
    FUNCTION = "execute"
    OUTPUT_NODE = True
    DESCRIPTION = "Show a mask as a grayscale image (written to the temp folder)."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"mask": ("MASK",)}, "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    def execute(self, mask: Any, prompt: Any = None, extra_pnginfo: Any = None) -> dict[str, Any]:
        masks = as_mask(mask, "MaskPreview")
        gray = np.repeat(masks[..., None], 3, axis=-1)  # ComfyUI: reshape to [B, H, W, 1], expand to 3
        saved = PreviewImage().save_images(gray, "ComfyUI", prompt=prompt, extra_pnginfo=extra_pnginfo)
        return {"ui": {"images": saved["ui"]["images"], "animated": (False,)}}


NODE_CLASS_MAPPINGS: dict[str, type] = {"ImageCompare": ImageCompare, "MaskPreview": MaskPreview}
NODE_DISPLAY_NAME_MAPPINGS = {"ImageCompare": "Image Compare", "MaskPreview": "Preview Mask"}
