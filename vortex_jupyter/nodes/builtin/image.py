"""Image I/O and simple image ops on numpy + Pillow, as ComfyUI node classes (same names/inputs).

Values: IMAGE is float32 ``[B, H, W, C]`` in [0, 1]; MASK is float32 ``[B, H, W]``. Inputs go
through ``np.asarray`` so CPU torch tensors work too; nothing here imports torch.

Files: every name from a graph is opened through ``paths`` (``open_under``, ``open_folder``):
no traversal, and no symlink below the root followed, checked when the file is opened (see
``paths``). LoadImage lists the regular files at the top level of ``input_root()`` (ComfyUI
lists its input folder the same way) and fingerprints the file by mtime + size + SHA-256, so
replacing a file re-runs the node. SaveImage writes ``<prefix>_00001_.png``-style names under
``output_root()`` (``claim``: each name created exclusively in a folder fd, so parallel saves
never overwrite each other and a folder swapped for a symlink is refused) and embeds the
hidden ``prompt`` and ``extra_pnginfo`` (``workflow``) as JSON PNG text chunks, exactly as
ComfyUI does, so the PNG loads back as a graph. PreviewImage does the same into
``temp_root()``. Both show each image via ``context.current().preview(..., final=True)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import stat
import string
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, ImageOps, ImageSequence
from PIL.PngImagePlugin import PngInfo

from ...errors import MissingFile, PathError, UnsafeFileName
from .. import context
from ..paths import (
    input_root,
    open_folder,
    open_under,
    output_root,
    path_under,
    safe_join,
    stat_under,
    temp_root,
)
from .resample import METHODS, upscale

MAX_RESOLUTION = 16384
_RACY_NS = 2_000_000_000
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


def as_images(value: Any, name: str = "images") -> np.ndarray:
    """``value`` as float32 ``[B, H, W, C]`` (a single ``[H, W, C]`` image gets a batch axis)."""
    array = np.asarray(value, dtype=np.float32)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[-1] not in (1, 3, 4) or 0 in array.shape:
        raise ValueError(f"input {name!r} has shape {tuple(array.shape)}; an IMAGE is [batch, height, width, "
                         "channels] with 1, 3 or 4 channels (fix: connect an IMAGE output)")
    return array


def to_uint8(image: np.ndarray) -> np.ndarray:
    """One ``[H, W, C]`` float image as uint8 (ComfyUI's clip-then-truncate; channel 1 squeezed)."""
    pixels = np.clip(image * 255.0, 0, 255).astype(np.uint8)
    return pixels[..., 0] if pixels.shape[-1] == 1 else pixels


def preview_rgb(pixels: np.ndarray) -> np.ndarray:
    if pixels.ndim == 2:
        return np.repeat(pixels[..., None], 3, axis=-1)
    return pixels[..., :3]


def list_input_images(root: Path | None = None) -> list[str]:
    """Image files at the top level of the input root, sorted (what LoadImage offers): regular
    files only, as symlinks below the root are never opened."""
    folder = root or input_root()
    try:
        names = [e.name for e in os.scandir(folder)
                 if e.is_file(follow_symlinks=False) and Path(e.name).suffix.lower() in IMAGE_SUFFIXES]
    except OSError:
        return []
    return sorted(names)


def file_fingerprint(root: Path, name: str) -> str:
    """``"<mtime_ns>:<size>:<sha256>"`` of the file ``name`` under ``root`` (``open_under``)."""
    digest = hashlib.sha256()
    with open_under(root, name) as fh:
        info = os.fstat(fh.fileno())
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return f"{info.st_mtime_ns}:{info.st_size}:{digest.hexdigest()}"


@contextmanager
def open_input_image(node: str, image: str) -> Iterator[Image.Image]:
    """The input image ``image`` opened with Pillow from a file ``open_under`` opened (so no
    symlink below the input root is followed); ``FileNotFoundError`` naming ``node`` and the fix
    if it is not a file there, ``PathError`` (VE-700) for an unsafe name."""
    root = input_root()
    try:
        fh = open_under(root, image)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        raise FileNotFoundError(f"{node}: {image!r} is not a file in {str(root)!r} "
                                "(fix: copy the image into the input folder)") from None
    with fh, Image.open(fh) as opened:
        yield opened


def missing_image(image: str, root: Path) -> MissingFile:
    """The validation answer for an input image that is not there (VE-117), saying what is."""
    if not root.is_dir():
        there = "which does not exist"
    else:
        names = list_input_images(root)
        there = f"which holds {', '.join(repr(n) for n in names[:8])}{' ...' if len(names) > 8 else ''}" \
            if names else "which holds no images"
    return MissingFile(f"image file {image!r} not found in the input folder {str(root)!r}, {there}",
                       "put the image there, or point the input folder at it (VORTEX_INPUT_DIR, "
                       "or -i DIR with vortex run / vortex validate)")


class LoadImage:
    """Loads an image from the input folder; MASK is 1 - alpha (zeros without alpha)."""

    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "load_image"
    DESCRIPTION = "Load an image (all frames of the first frame's size) from the input folder."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"image": (list_input_images(), {"image_upload": True})}}

    @classmethod
    def VORTEX_INPUTS_TOKEN(cls) -> Any:
        """Changes when the input folder's listing may have changed (the registry then re-lists)."""
        root = input_root()
        try:
            mtime = root.stat().st_mtime_ns
        except OSError:
            return (str(root), None)
        if time.time_ns() - mtime < _RACY_NS:
            # Directory mtimes are coarse (a few ms): two files added within one tick leave the
            # same mtime. While the folder changed very recently, never trust the token.
            return object()
        return (str(root), mtime)

    @classmethod
    def IS_CHANGED(cls, image: str) -> str:
        try:
            return file_fingerprint(input_root(), image)
        except (OSError, PathError):
            return f"unreadable:{image}"  # the run fails in load_image with the precise error

    @classmethod
    def VALIDATE_INPUTS(cls, image: str) -> bool | str:
        """An unsafe name is VE-700 (``UnsafeFileName``), a missing file VE-117 (``MissingFile``)."""
        root = input_root()
        try:
            safe_join(root, image)  # the syntax, with its own messages
            info = stat_under(root, image)  # and no symlink on the way, as load_image will open it
        except PathError as exc:
            return UnsafeFileName(exc.message, exc.hint or "")
        except OSError:
            return missing_image(image, root)
        return True if stat.S_ISREG(info.st_mode) else missing_image(image, root)

    def load_image(self, image: str) -> tuple[np.ndarray, np.ndarray]:
        frames: list[np.ndarray] = []
        masks: list[np.ndarray] = []
        with open_input_image("LoadImage", image) as opened:
            for frame in ImageSequence.Iterator(opened):
                frame = ImageOps.exif_transpose(frame)
                if frame.mode == "I" or frame.mode.startswith("I;16"):
                    # 16-bit PNGs: divide by 255 as ComfyUI does (a plain convert clips at 255)
                    frame = frame.convert("I").point(lambda v: v * (1 / 255))
                rgb = np.asarray(frame.convert("RGB"), dtype=np.float32) / 255.0
                if frames and rgb.shape != frames[0].shape:
                    continue  # ComfyUI keeps only frames of the first frame's size
                frames.append(rgb)
                masks.append(_mask_of(frame, rgb.shape[:2]))
        return np.stack(frames), np.stack(masks)


def _mask_of(frame: Image.Image, size: tuple[int, ...]) -> np.ndarray:
    if "A" in frame.getbands():
        alpha = np.asarray(frame.getchannel("A"), dtype=np.float32) / 255.0
    elif frame.mode == "P" and "transparency" in frame.info:
        alpha = np.asarray(frame.convert("RGBA").getchannel("A"), dtype=np.float32) / 255.0
    else:
        return np.zeros(size, dtype=np.float32)
    return 1.0 - alpha


def _png_info(prompt: Any, extra_pnginfo: Any) -> PngInfo:
    info = PngInfo()
    if prompt is not None:
        info.add_text("prompt", json.dumps(prompt, default=str))
    if isinstance(extra_pnginfo, dict):
        for key, value in extra_pnginfo.items():
            info.add_text(str(key), json.dumps(value, default=str))
    return info


@contextmanager
def claim(root: Path, subfolder: str, base: str, suffix: str = ".png", sep: str = "_", start: int = 1
          ) -> Iterator[tuple[str, BinaryIO]]:
    """Create the next free ``<base>_NNNNN<sep><suffix>`` (counter at least ``start``) exclusively
    in ``subfolder`` of ``root`` (made if missing; never through a symlink, see ``paths``); yields
    its file name and open file, and removes the file again if the body raises. ``sep=""`` gives
    the newer savers' ``<base>_NNNNN.txt``.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> with claim(root, "a", "x") as (name, fh):
    ...     _ = fh.write(b"...")
    >>> name, (root / "a" / name).read_bytes()
    ('x_00001_.png', b'...')
    """
    pattern = re.compile(rf"^{re.escape(base)}_(\d+){re.escape(sep)}{re.escape(suffix)}$")
    with open_folder(root, subfolder, create=True, shown=f"{subfolder}/{base}" if subfolder else base) as folder:
        taken = [int(m.group(1)) for name in folder.names() if (m := pattern.match(name))]
        counter = max(max(taken, default=0) + 1, start)
        while True:
            name = f"{base}_{counter:05}{sep}{suffix}"
            try:
                fh = folder.open(name, "xb")
                break
            except FileExistsError:
                counter += 1  # another save claimed it between our scan and open
        try:
            with fh:
                yield name, fh
        except BaseException:
            folder.unlink(name)  # do not leave a claimed, empty or partial file behind
            raise


def expand_prefix(prefix: str, width: int = 0, height: int = 0) -> str:
    """ComfyUI's save-time variables in a filename prefix: ``%width%``, ``%height%`` (of the
    first image) and ``%year%``, ``%month%``, ``%day%``, ``%hour%``, ``%minute%``, ``%second%``
    (local time, zero-padded). Anything else (``%date:...%``, ``%Node.widget%``) is the
    frontend's, applied when the graph is queued (``graph.textsub``)."""
    if "%" not in prefix:
        return prefix
    now = time.localtime()
    values = {"width": width, "height": height, "year": now.tm_year, "month": f"{now.tm_mon:02}",
              "day": f"{now.tm_mday:02}", "hour": f"{now.tm_hour:02}", "minute": f"{now.tm_min:02}",
              "second": f"{now.tm_sec:02}"}
    for name, value in values.items():
        prefix = prefix.replace(f"%{name}%", str(value))
    return prefix


def save_target(root: Path, filename_prefix: str, append: str = "", size: tuple[int, int] = (0, 0)
                ) -> tuple[Path, str]:
    """``(folder / base name, subfolder)`` of a save prefix under ``root``; the folder exists after.

    ``append`` is added to the name (PreviewImage's random ``_temp_xxxxx``); ``size`` is the
    first image's (width, height) for ``%width%``/``%height%``; ``subfolder`` is what ComfyUI's
    "ui" results carry ("" at the root) and what ``claim`` takes. Raises ``PathError`` for
    prefixes that leave the root, go through a symlink or have no file name part (checked
    after the variables are filled in). The path is for messages: files are made by ``claim``.
    """
    filename_prefix = expand_prefix(filename_prefix, *size)
    name = filename_prefix + append
    target = safe_join(root, name)
    if filename_prefix.endswith("/") or target == root.resolve():
        raise PathError(f"filename_prefix {filename_prefix!r} has no file name part",
                        hint="end the prefix with a name, e.g. 'portraits/vortex'")
    path = path_under(root, name)
    subfolder = path.parent.relative_to(root.resolve()).as_posix()
    subfolder = "" if subfolder == "." else subfolder
    with open_folder(root, subfolder, create=True, shown=name):
        pass  # made now, as ComfyUI does, so a bad folder fails before any encoding
    return path, subfolder


class SaveImage:
    """Saves images as PNGs with the graph embedded; shows them on the node and in the cell."""

    CATEGORY = "image"
    RETURN_TYPES: tuple[str, ...] = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    DESCRIPTION = "Save images to the output folder, with the workflow in PNG text chunks."
    root_kind = "output"
    prefix_append = ""
    compress_level = 4

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The images to save."}),
                "filename_prefix": ("STRING", {"default": "vortex", "tooltip": "May include subfolders: a/b/name"}),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    def root(self) -> Path:
        return output_root()

    def save_images(self, images: Any, filename_prefix: str = "vortex", prompt: Any = None,
                    extra_pnginfo: Any = None) -> dict[str, Any]:
        batch = as_images(images)
        size = (int(batch.shape[2]), int(batch.shape[1]))
        root = self.root()
        target, subfolder = save_target(root, filename_prefix, self.prefix_append, size)
        results = []
        for image in batch:
            pixels = to_uint8(image)
            with claim(root, subfolder, target.name) as (name, fh):
                Image.fromarray(pixels).save(fh, format="PNG", pnginfo=_png_info(prompt, extra_pnginfo),
                                             compress_level=self.compress_level)
            results.append({"filename": name, "subfolder": subfolder, "type": self.root_kind})
            context.current().preview(preview_rgb(pixels), final=True)
        return {"ui": {"images": results}}


class PreviewImage(SaveImage):
    """Like SaveImage, into the temp folder (for looking, not keeping)."""

    DESCRIPTION = "Show images (written to the temp folder)."
    root_kind = "temp"
    compress_level = 1

    def __init__(self) -> None:
        self.prefix_append = "_temp_" + "".join(random.choice(string.ascii_lowercase) for _ in range(5))

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"images": ("IMAGE",)}, "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    def root(self) -> Path:
        return temp_root()


class ImageScale:
    upscale_methods = list(METHODS)
    crop_methods = ["disabled", "center"]
    CATEGORY = "image/upscaling"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "upscale"
    DESCRIPTION = "Resize images; a width or height of 0 keeps the aspect ratio."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        size = {"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 1}
        return {"required": {"image": ("IMAGE",), "upscale_method": (cls.upscale_methods,),
                             "width": ("INT", dict(size)), "height": ("INT", dict(size)),
                             "crop": (cls.crop_methods,)}}

    def upscale(self, image: Any, upscale_method: str, width: int, height: int, crop: str) -> tuple[np.ndarray]:
        batch = as_images(image, "image")
        if width == 0 and height == 0:
            return (batch,)
        old_h, old_w = batch.shape[1:3]
        width = width or max(1, round(old_w * height / old_h))
        height = height or max(1, round(old_h * width / old_w))
        # ComfyUI's common_upscale: torch's interpolate modes (no clamping: bicubic may overshoot)
        return (upscale(batch, width, height, upscale_method, crop),)


class ImageInvert:
    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "invert"
    DESCRIPTION = "1 - image, per channel."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"image": ("IMAGE",)}}

    def invert(self, image: Any) -> tuple[np.ndarray]:
        return (1.0 - as_images(image, "image"),)


NODE_CLASS_MAPPINGS: dict[str, type] = {
    "LoadImage": LoadImage,
    "SaveImage": SaveImage,
    "PreviewImage": PreviewImage,
    "ImageScale": ImageScale,
    "ImageInvert": ImageInvert,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "LoadImage": "Load Image",
    "SaveImage": "Save Image",
    "PreviewImage": "Preview Image",
    "ImageScale": "Upscale Image",
    "ImageInvert": "Invert Image",
}
