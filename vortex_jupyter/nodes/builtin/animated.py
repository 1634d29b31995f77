"""SaveAnimatedWEBP and SaveAnimatedPNG: a whole image batch as one animation, like ComfyUI.

Files: ``<prefix>_NNNNN_.webp`` / ``.png`` under ``output_root()``, through the same
``save_target`` + exclusive-create ``claim`` as SaveImage (a prefix may name subfolders,
never leave the root; parallel saves never overwrite each other). Each frame is quantised
like SaveImage's (clip to [0, 1], times 255, truncated); a frame lasts ``int(1000 / fps)`` ms.

Metadata, written where ComfyUI writes it so files made here load in ComfyUI and back here:

- WebP: EXIF tag 0x0110 (Model) holds ``"prompt:" + json(prompt)``; each ``extra_pnginfo``
  entry goes to tags 0x010F (Make), 0x010E, ... as ``"<key>:" + json(value)`` (the
  workflow first).
- APNG: one private ``comf`` chunk per entry after the image data (ComfyUI's choice for
  APNG, instead of the ``tEXt`` chunks of still PNGs), holding ``key NUL json``: ``prompt``
  first, then ``workflow`` and any other ``extra_pnginfo`` entry.

Result: ``{"ui": {"images": [{"filename", "subfolder", "type": "output"}]}}``, plus
``"animated": (True,)`` when the batch has more than one frame (ComfyUI's V3 helper does the
same). The node shows the animation (APNG bytes) or the first frame (WebP) on the node and
in the cell.
"""

from __future__ import annotations

import io
import json
from typing import Any

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from .. import context
from ..paths import output_root
from .image import as_images, claim, preview_rgb, save_target, to_uint8

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]

#: Animations larger than this are previewed by their first frame only.
MAX_PREVIEW_BYTES = 16 * 2**20
_EXIF_PROMPT, _EXIF_FIRST_EXTRA = 0x0110, 0x010F
_FPS = ("FLOAT", {"default": 6.0, "min": 0.01, "max": 1000.0, "step": 0.01})


def _webp_exif(first: Image.Image, prompt: Any, extra_pnginfo: Any) -> Image.Exif:
    exif = first.getexif()
    if prompt is not None:
        exif[_EXIF_PROMPT] = "prompt:" + json.dumps(prompt, default=str)
    if isinstance(extra_pnginfo, dict):
        for offset, (key, value) in enumerate(extra_pnginfo.items()):
            exif[_EXIF_FIRST_EXTRA - offset] = f"{key}:{json.dumps(value, default=str)}"
    return exif


def _apng_info(prompt: Any, extra_pnginfo: Any) -> PngInfo:
    info = PngInfo()
    entries = [("prompt", prompt)] if prompt is not None else []
    if isinstance(extra_pnginfo, dict):
        entries += list(extra_pnginfo.items())
    for key, value in entries:
        # json.dumps escapes non-ASCII, so latin-1 always encodes (ComfyUI encodes the same way)
        payload = str(key).encode("latin-1", "replace") + b"\0" + json.dumps(value, default=str).encode("latin-1")
        info.add(b"comf", payload, after_idat=True)
    return info


class _AnimatedSave:
    CATEGORY = "image/animation"
    RETURN_TYPES: tuple[str, ...] = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    suffix = ""

    def encode(self, frames: list[Image.Image], duration: int, prompt: Any, extra_pnginfo: Any,
               options: dict[str, Any]) -> bytes:
        raise NotImplementedError

    def preview(self, frames: list[Any], data: bytes) -> None:
        context.current().preview(preview_rgb(frames[0]), final=True)

    def write(self, images: Any, filename_prefix: str, fps: float, prompt: Any, extra_pnginfo: Any,
              **options: Any) -> dict[str, Any]:
        node = type(self).__name__
        if not fps > 0:
            raise ValueError(f"{node}: fps is {fps!r}; it must be positive (fix: set fps to e.g. 6)")
        pixels = [to_uint8(image) for image in as_images(images)]
        frames = [Image.fromarray(p) for p in pixels]
        data = self.encode(frames, int(1000.0 / fps), prompt, extra_pnginfo, options)
        size = (frames[0].width, frames[0].height)
        root = output_root()
        target, subfolder = save_target(root, filename_prefix, size=size)
        with claim(root, subfolder, target.name, self.suffix) as (name, fh):
            fh.write(data)
        self.preview(pixels, data)
        ui: dict[str, Any] = {"images": [{"filename": name, "subfolder": subfolder, "type": "output"}]}
        if len(frames) > 1:
            ui["animated"] = (True,)
        return {"ui": ui}


class SaveAnimatedWEBP(_AnimatedSave):
    methods = {"default": 4, "fastest": 0, "slowest": 6}
    suffix = ".webp"
    DESCRIPTION = "Save the image batch as one animated WebP (lossless by default), workflow in EXIF."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"images": ("IMAGE",), "filename_prefix": ("STRING", {"default": "ComfyUI"}),
                             "fps": _FPS, "lossless": ("BOOLEAN", {"default": True}),
                             "quality": ("INT", {"default": 80, "min": 0, "max": 100}),
                             "method": (list(cls.methods),)},
                "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    def encode(self, frames: list[Image.Image], duration: int, prompt: Any, extra_pnginfo: Any,
               options: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        frames[0].save(buf, format="WEBP", save_all=True, append_images=frames[1:], duration=duration,
                       exif=_webp_exif(frames[0], prompt, extra_pnginfo), **options)
        return buf.getvalue()

    def save_images(self, images: Any, fps: float = 6.0, filename_prefix: str = "ComfyUI", lossless: bool = True,
                    quality: int = 80, method: str = "default", prompt: Any = None,
                    extra_pnginfo: Any = None) -> dict[str, Any]:
        if method not in self.methods:
            raise ValueError(f"SaveAnimatedWEBP: method {method!r} is not one of {list(self.methods)}")
        return self.write(images, filename_prefix, fps, prompt, extra_pnginfo, lossless=bool(lossless),
                          quality=int(quality), method=self.methods[method])


class SaveAnimatedPNG(_AnimatedSave):
    suffix = ".png"
    DESCRIPTION = "Save the image batch as one animated PNG (APNG), workflow in 'comf' chunks."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"images": ("IMAGE",), "filename_prefix": ("STRING", {"default": "ComfyUI"}),
                             "fps": _FPS, "compress_level": ("INT", {"default": 4, "min": 0, "max": 9})},
                "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    def encode(self, frames: list[Image.Image], duration: int, prompt: Any, extra_pnginfo: Any,
               options: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        frames[0].save(buf, format="PNG", save_all=True, append_images=frames[1:], duration=duration,
                       pnginfo=_apng_info(prompt, extra_pnginfo), **options)
        return buf.getvalue()

    def preview(self, frames: list[Any], data: bytes) -> None:
        if len(data) <= MAX_PREVIEW_BYTES:
            context.current().preview(data, final=True)  # browsers play APNG bytes as they are
        else:
            super().preview(frames, data)

    def save_images(self, images: Any, fps: float = 6.0, compress_level: int = 4, filename_prefix: str = "ComfyUI",
                    prompt: Any = None, extra_pnginfo: Any = None) -> dict[str, Any]:
        return self.write(images, filename_prefix, fps, prompt, extra_pnginfo, compress_level=int(compress_level))


NODE_CLASS_MAPPINGS: dict[str, type] = {"SaveAnimatedWEBP": SaveAnimatedWEBP, "SaveAnimatedPNG": SaveAnimatedPNG}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}
