"""SaveImageAdvanced ("Save Image (Advanced)", ComfyUI's ``nodes_images.py``): PNG, 8 or 16 bits.

ComfyUI's node has a ``format`` DynamicCombo (see ``dynamic``): ``png`` (``bit_depth`` "8-bit"
or "16-bit", ``input_color_space`` "sRGB"), ``exr`` (32-bit float, linearised) and ``avif``
(AV1, with CRF, HDR and animation settings). We save ``png`` exactly as ComfyUI does and refuse
``exr`` and ``avif`` at validation with a clear message (no encoder for them in our
dependencies; every official template saves PNG). The inputs keep ComfyUI's flat API names
(``format.bit_depth`` ...), so workflows with any format load and export unchanged.

PNG files, as ComfyUI writes them:

- pixels ``clamp(x * 255, 0, 255)`` (or ``* 65535`` for 16 bits) truncated to integers;
  1, 3 or 4 channels give a gray, RGB or RGBA PNG (16-bit samples big-endian, as PNG requires);
- the ``prompt`` and each ``extra_pnginfo`` key (``workflow``) as JSON in ``tEXt`` chunks right
  after the header, so the file loads back as a graph in ComfyUI or in vortex;
- names ``<prefix>_00001.png`` (no trailing underscore, unlike SaveImage), ``%batch_num%`` in
  the prefix replaced by the image's index (the counter goes on across the batch, as ComfyUI's:
  ``x_0_00001.png``, ``x_1_00002.png``), ``%width%``/``%height%``/``%year%``... filled in;
  under the output folder, never outside it, never overwriting (exclusive create).

The node passes its images on (output ``images``) and shows each one on the node and in the cell.
"""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

import numpy as np

from ...errors import PathError
from .. import context
from ..paths import output_root
from .arrays import as_image
from .dynamic import shown_when
from .image import claim, preview_rgb, save_target

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "encode_png"]

#: Each format's settings, as ComfyUI declares them (option -> setting -> choices).
FORMATS: dict[str, dict[str, list[str]]] = {
    "png": {"bit_depth": ["8-bit", "16-bit"], "input_color_space": ["sRGB"]},
    "exr": {"bit_depth": ["32-bit float"], "input_color_space": ["sRGB", "HDR", "linear"]},
    "avif": {"bit_depth": ["auto", "8-bit YUV420", "10-bit YUV420"], "input_color_space": ["sRGB", "HDR", "HDR PQ"]},
}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPES = {1: 0, 3: 2, 4: 6}  # channels -> PNG color type (gray, RGB, RGBA)


def _union(setting: str) -> list[str]:
    out: list[str] = []
    for settings in FORMATS.values():
        out += [c for c in settings[setting] if c not in out]
    return out


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(pixels: np.ndarray, text: dict[str, str] | None = None) -> bytes:
    """A PNG of ``[H, W, C]`` uint8 or uint16 pixels (C = 1, 3, 4), with ``tEXt`` chunks after IHDR."""
    height, width, channels = pixels.shape
    depth = 16 if pixels.dtype == np.uint16 else 8
    header = struct.pack(">IIBBBBB", width, height, depth, _COLOR_TYPES[channels], 0, 0, 0)
    rows = pixels.astype(">u2" if depth == 16 else np.uint8).reshape(height, -1).view(np.uint8)
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1)  # filter type 0 per row
    chunks = [_chunk(b"IHDR", header)]
    for key, value in (text or {}).items():
        chunks.append(_chunk(b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1", errors="replace")))
    chunks += [_chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)), _chunk(b"IEND", b"")]
    return _PNG_SIGNATURE + b"".join(chunks)


def quantize(image: np.ndarray, bit_depth: str) -> np.ndarray:
    """ComfyUI's ``(x * scale).clamp(0, scale)`` truncated to int, as uint8 / uint16."""
    scale, dtype = (65535.0, np.uint16) if bit_depth == "16-bit" else (255.0, np.uint8)
    scaled = np.clip(image * np.float32(scale), 0, scale)
    return np.nan_to_num(scaled).astype(np.int32).astype(dtype)


def _metadata(prompt: Any, extra_pnginfo: Any) -> dict[str, str]:
    text = {} if prompt is None else {"prompt": json.dumps(prompt, default=str)}
    if isinstance(extra_pnginfo, dict):
        text.update((str(k), json.dumps(v, default=str)) for k, v in extra_pnginfo.items())
    return text


def _problem(params: dict[str, Any]) -> str | None:
    fmt = params.get("format", "png")
    if fmt != "png":
        return (f"SaveImageAdvanced: format {fmt!r} cannot be saved by vortex yet (no {fmt} encoder); "
                "set format to 'png' (8-bit or 16-bit)")
    for setting, choices in FORMATS["png"].items():
        value = params.get(f"format.{setting}", choices[0])
        if value not in choices:
            return f"SaveImageAdvanced: format.{setting} {value!r} is not a png choice; use one of {choices}"
    return None


class SaveImageAdvanced:
    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    FUNCTION = "execute"
    OUTPUT_NODE = True
    DESCRIPTION = "Saves the input images to your output directory (PNG, 8 or 16 bits, with the workflow)."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The images to save."}),
                "filename_prefix": ("STRING", {"default": "ComfyUI", "tooltip": "May include subfolders: a/b/name"}),
                "format": (list(FORMATS), {"tooltip": "The file format in which to save the image."}),
                "format.bit_depth": shown_when((_union("bit_depth"), {"default": "8-bit"}), "format", FORMATS),
                "format.input_color_space": shown_when((_union("input_color_space"), {"default": "sRGB"}),
                                                       "format", FORMATS),
            },
            "optional": {  # avif's settings (refused at validation, kept so files load unchanged)
                "format.crf": shown_when(("INT", {"default": 18, "min": 1, "max": 63}), "format", ["avif"]),
                "format.save_mode": shown_when((["still images", "animated"],), "format", ["avif"]),
                "format.save_mode.fps": shown_when(("FLOAT", {"default": 6.0, "min": 0.01, "max": 1000.0,
                                                              "step": 0.01}), "format.save_mode", ["animated"]),
                "format.save_mode.loop_count": shown_when(("INT", {"default": 0, "min": 0, "max": 1000}),
                                                          "format.save_mode", ["animated"]),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    @classmethod
    def VALIDATE_INPUTS(cls, **params: Any) -> bool | str:
        return _problem(params) or True

    def execute(self, images: Any, filename_prefix: str = "ComfyUI", format: str = "png", prompt: Any = None,
                extra_pnginfo: Any = None, **settings: Any) -> dict[str, Any]:
        problem = _problem({"format": format, **settings})
        if problem:
            raise ValueError(f"{problem} (fix: choose png)")
        bit_depth = settings.get("format.bit_depth", "8-bit")
        batch = as_image(images, "SaveImageAdvanced", "images")
        if batch.shape[-1] not in _COLOR_TYPES:
            raise ValueError(f"SaveImageAdvanced: images have {batch.shape[-1]} channels; PNG takes 1 (gray), 3 (RGB) "
                             "or 4 (RGBA) (fix: connect an RGB or RGBA IMAGE)")
        root = output_root()
        try:
            target, subfolder = save_target(root, filename_prefix, size=(int(batch.shape[2]), int(batch.shape[1])))
        except PathError as exc:
            raise ValueError(f"SaveImageAdvanced: {exc.message} (fix: {exc.hint})") from None
        text = _metadata(prompt, extra_pnginfo)
        results, counter = [], 1
        for index, image in enumerate(batch):
            pixels = quantize(image, bit_depth)
            # ComfyUI counts on across the batch (name_0_00001, name_1_00002 with %batch_num%)
            base = target.name.replace("%batch_num%", str(index))
            with claim(root, subfolder, base, ".png", "", counter) as (name, fh):
                fh.write(encode_png(pixels, text))
            counter = int(name[-9:-4]) + 1
            results.append({"filename": name, "subfolder": subfolder, "type": "output"})
            shown = (pixels >> 8).astype(np.uint8) if pixels.dtype == np.uint16 else pixels
            context.current().preview(preview_rgb(shown[..., 0] if shown.shape[-1] == 1 else shown), final=True)
        return {"ui": {"images": results}, "result": (batch,)}


NODE_CLASS_MAPPINGS: dict[str, type] = {"SaveImageAdvanced": SaveImageAdvanced}
NODE_DISPLAY_NAME_MAPPINGS = {"SaveImageAdvanced": "Save Image (Advanced)"}
