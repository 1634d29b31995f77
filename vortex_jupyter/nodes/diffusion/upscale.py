"""Upscale models (ComfyUI's UpscaleModelLoader / ImageUpscaleWithModel) on spandrel.

Loading (``load_upscale_model``), as ComfyUI's loader does:

- ``model_name`` is a file of ComfyUI's ``upscale_models`` folders (``folders.find``), or the
  built-in ``vortex-tiny-upscale-x4.safetensors`` (``tiny_upscale``, built on first use);
- its tensors are read safely: ``.safetensors`` through safetensors, ``.pth``/``.pt``/``.ckpt``
  ONLY through ``torch.load(weights_only=True)`` (``single_file.read_state_dict``; a pickle that
  wants to run code is refused). A SwinIR saved from ``DataParallel`` loses its ``module.``
  prefix; spandrel unwraps ``params_ema`` / ``params`` itself;
- spandrel's ``ModelLoader`` picks the architecture from the keys and shapes (ESRGAN,
  Real-ESRGAN, SwinIR, HAT, DAT, OmniSR, SPAN, ...). A file it does not recognise, or a model
  that needs more than one image (LaMa's mask), is a ``ModelError`` naming the file.

The module is a ``components.Component``: the memory arbiter tracks it as an entry of its own
(key: the file's path, mtime and size, and the device), can offload or drop it, and the next
use loads it again. The handle (UPSCALE_MODEL) carries what the nodes need without loading:
scale and channels.

Upscaling (``upscale_image``), ComfyUI's ``ImageUpscaleWithModel``: make room on the device
for the model plus ComfyUI's activation estimate (384 bytes per input value and unit of scale,
here for the tile actually used, not always a 512 tile), then ``tiled.tiled_map`` (ComfyUI's
``tiled_scale``: tiles of 512 with an overlap of 32, feather-blended) one batch item at a time;
on an out-of-memory error evict the other models, halve the tile and start again (512, 256,
128; below 128 it fails with VE-503). Memory is bounded by the tile: the model only ever sees
one tile; what grows with the image is the output and one accumulator. The result is clamped
to [0, 1]: IMAGE in, IMAGE out (numpy float32 ``[B, H, W, C]``).

Torch-free at import (the kernel uses ``model_path`` / ``model_names`` to validate and list).
"""

from __future__ import annotations

import enum
import importlib.util
import sys
import threading
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import ModelError, NodeOutOfMemoryError
from ...workers.arbiter import MemoryArbiter
from ..context import current
from . import folders
from .components import Component, device_and_dtype
from .tiny_upscale import TINY_UPSCALE_NAME, is_builtin, tiny_upscale

TILE, OVERLAP, MIN_TILE = 512, 32, 128  # ComfyUI's ImageUpscaleWithModel
#: ComfyUI's activation estimate: bytes per input value (per channel and pixel) and unit of scale.
ACTIVATION_BYTES = 384.0
#: A SwinIR saved from ``torch.nn.DataParallel``: ComfyUI strips ``module.`` when it sees this key.
_DATA_PARALLEL_KEY = "module.layers.0.residual_group.blocks.0.norm1.weight"
SPANDREL_HINT = 'pip install --no-deps "spandrel>=0.4,<0.5" einops'

# ----------------------------------------------------------------------------- names (torch-free)


def model_names() -> list[str]:
    """UpscaleModelLoader's choices: the built-in tiny model first, then the folders' files."""
    return [TINY_UPSCALE_NAME] + [n for n in folders.list_names("upscale_models") if n != TINY_UPSCALE_NAME]


def model_path(model_name: object) -> Path:
    """The file UpscaleModelLoader reads for ``model_name`` (builds the built-in one if named)."""
    if not isinstance(model_name, str) or not model_name.strip():
        raise ModelError(f"model_name {model_name!r} is empty",
                         hint=f"pick an upscale model, e.g. {TINY_UPSCALE_NAME!r}")
    if is_builtin(model_name):
        return tiny_upscale()
    return folders.find("upscale_models", model_name, "model_name", builtin=TINY_UPSCALE_NAME)


def check_model_name(model_name: object) -> None:
    """Validation: ModelError now for an empty or unsafe name or a file in no folder."""
    if not is_builtin(model_name):
        model_path(model_name)


# ----------------------------------------------------------------------------- spandrel

_IMPORT_LOCK = threading.Lock()


def spandrel() -> Any:
    """The spandrel package; ModelError saying how to install it when it is missing."""
    with _IMPORT_LOCK:
        if "spandrel" in sys.modules:
            return sys.modules["spandrel"]
        try:
            with _torchvision_stand_in():
                import spandrel as module
        except ImportError as exc:
            raise ModelError(f"the upscale-model nodes run on spandrel, which cannot be imported: {exc}",
                             hint=SPANDREL_HINT) from exc
        return module


@contextmanager
def _torchvision_stand_in() -> Iterator[None]:
    """A stand-in ``torchvision.transforms.functional`` while spandrel is imported, if torchvision
    is not installed. spandrel imports it at import time for two architectures only (LaMa's
    ``rotate``, RestoreFormer's ``normalize``); PyPI has no CPU build of torchvision, and its
    CUDA build cannot load beside a CPU torch (it even breaks transformers' imports), so a CPU
    install leaves it out. ``normalize`` is implemented; ``rotate`` raises a ModelError. The
    stand-in leaves ``sys.modules`` afterwards, so nobody else mistakes it for torchvision."""
    if "torchvision" in sys.modules or importlib.util.find_spec("torchvision") is not None:
        yield
        return
    fakes = _stand_in_modules()
    sys.modules.update(fakes)
    try:
        yield
    finally:
        for name, module in fakes.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]


class _InterpolationMode(enum.Enum):
    NEAREST = "nearest"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"


def _normalize(tensor: Any, mean: Any, std: Any, inplace: bool = False) -> Any:
    import torch

    m = torch.as_tensor(mean, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
    return tensor.sub_(m).div_(s) if inplace else (tensor - m) / s


def _rotate(*_: Any, **__: Any) -> Any:
    raise ModelError("this model (LaMa) rotates images with torchvision, which is not installed",
                     hint="install the torchvision build that matches your torch")


def _stand_in_modules() -> dict[str, types.ModuleType]:
    root, transforms, functional = (types.ModuleType(n) for n in
                                    ("torchvision", "torchvision.transforms", "torchvision.transforms.functional"))
    functional.__dict__.update(InterpolationMode=_InterpolationMode, normalize=_normalize, rotate=_rotate)
    root.__dict__["transforms"] = transforms
    transforms.__dict__["functional"] = functional
    return {m.__name__: m for m in (root, transforms, functional)}


# ----------------------------------------------------------------------------- loading


class UpscaleNet:
    """What the arbiter tracks: a spandrel descriptor with the module protocol ``Component``
    uses (``device``, ``parameters``, ``buffers``, ``to``)."""

    def __init__(self, descriptor: Any) -> None:
        self.descriptor = descriptor

    @property
    def device(self) -> Any:
        return self.descriptor.device

    def parameters(self) -> Iterator[Any]:
        return iter(self.descriptor.model.parameters())

    def buffers(self) -> Iterator[Any]:
        return iter(self.descriptor.model.buffers())

    def to(self, device: Any) -> UpscaleNet:
        self.descriptor.to(device)
        return self


@dataclass
class UpscaleModelHandle:  # UPSCALE_MODEL
    name: str
    net: Component
    scale: float
    architecture: str
    input_channels: int = 3
    output_channels: int = 3

    def __repr__(self) -> str:
        return f"<UPSCALE_MODEL {self.name} ({self.architecture} x{self.scale:g})>"


def load_upscale_model(model_name: str, arbiter: MemoryArbiter | None = None) -> UpscaleModelHandle:
    """UpscaleModelLoader: load (through the arbiter) and describe the model in ``model_name``."""
    path = model_path(model_name)
    device = device_and_dtype()[0]
    st = path.stat()
    key = f"{path}@{st.st_mtime_ns}:{st.st_size}|upscale model|{device}"
    component = Component(key, lambda: UpscaleNet(read_model(path, model_name)).to(device), st.st_size,
                          arbiter)
    with component.use() as net:  # load now, as ComfyUI's loader does: a bad file fails this node
        d = net.descriptor
        return UpscaleModelHandle(model_name, component, float(d.scale), str(d.architecture.name),
                                  int(d.input_channels), int(d.output_channels))


def read_model(path: Path, model_name: str) -> Any:
    """A spandrel ``ImageModelDescriptor`` (eval mode, CPU) from a file, or ModelError."""
    from .single_file import read_state_dict

    state, _ = read_state_dict(path)
    if _DATA_PARALLEL_KEY in state:
        state = {k.removeprefix("module."): v for k, v in state.items()}
    sp = spandrel()
    try:
        descriptor = sp.ModelLoader().load_from_state_dict(state)
    except sp.UnsupportedModelError as exc:
        keys = ", ".join(list(state)[:3]) or "none"
        raise ModelError(f"model_name {model_name!r} ({path}) is no upscale model that spandrel "
                         f"{sp.__version__} knows: no architecture matches its {len(state)} tensors "
                         f"(first keys: {keys})",
                         hint="give an image-to-image model file (ESRGAN, Real-ESRGAN, SwinIR, HAT, DAT, "
                              "OmniSR, SPAN, ...) in the upscale_models folder; checkpoints go to "
                              "checkpoints/ and CheckpointLoaderSimple") from exc
    except (RuntimeError, KeyError, ValueError, IndexError, TypeError, AssertionError) as exc:
        raise ModelError(f"model_name {model_name!r} ({path}) looks like a spandrel model but cannot be "
                         f"built: {type(exc).__name__}: {str(exc)[:300]}",
                         hint="the file is incomplete or a variant spandrel does not support") from exc
    if not isinstance(descriptor, sp.ImageModelDescriptor):
        raise ModelError(f"model_name {model_name!r} is a {descriptor.architecture.name} model, which takes "
                         "more than an image (an inpainting mask); an upscale model must be a single-image model",
                         hint="pick an upscaling or restoration model")
    return descriptor.eval()


# ----------------------------------------------------------------------------- upscaling


def upscale_image(model: UpscaleModelHandle, image: Any, *, tile: int = TILE, overlap: int = OVERLAP) -> Any:
    """ImageUpscaleWithModel: IMAGE ``[B,H,W,C]`` -> IMAGE ``[B,H*s,W*s,C]`` (numpy float32)."""
    import torch

    from .latent_ops import as_image

    pixels = as_image(image).movedim(-1, 1)
    if pixels.shape[1] != model.input_channels:
        raise ValueError(f"ImageUpscaleWithModel: the image has {pixels.shape[1]} channels but {model.name} "
                         f"takes {model.input_channels} (fix: feed an RGB image, e.g. drop the alpha "
                         "channel with SplitImageWithAlpha)")
    with model.net.use() as net:
        descriptor = net.descriptor
        device, dtype = descriptor.device, descriptor.dtype

        def fn(x: Any) -> Any:
            return descriptor(x.to(device, dtype)).to("cpu", torch.float32)

        make_room(model.net.arbiter, tuple(pixels.shape), model.scale, tile, device.type)
        with torch.inference_mode():
            out = tiled_upscale(pixels, fn, model.scale, model.output_channels, tile, overlap,
                                arbiter=model.net.arbiter, device=device.type)
    return out.clamp(0, 1).movedim(1, -1).contiguous().numpy()


def make_room(arb: MemoryArbiter, shape: tuple[int, ...], scale: float, tile: int, device: str) -> None:
    """Best effort, as ComfyUI's ``free_memory``: evict other entries for one tile's activations
    plus the image in and out. Too little room is no error here: the OOM loop takes over."""
    _, c, h, w = shape
    area = min(tile, h) * min(tile, w)
    need = int(area * c * 4 * max(scale, 1.0) * ACTIVATION_BYTES + h * w * c * 4 * (1 + 2 * scale * scale))
    with suppress(NodeOutOfMemoryError):
        arb.request(need, device, node=current().node_id, what="upscaling an image")


def tiled_upscale(pixels: Any, fn: Callable[[Any], Any], scale: float, channels: int, tile: int = TILE,
                  overlap: int = OVERLAP, *, arbiter: MemoryArbiter | None = None, device: str = "cpu") -> Any:
    """``fn`` over ``pixels`` (N, C, H, W) in square tiles, blended (``tiled.tiled_map``); on an
    out-of-memory error: evict what the arbiter can, halve the tile, start again."""
    from .tiled import tile_count, tiled_map

    ctx = current()
    while True:
        tick = _ticker(ctx, tile_count(tuple(pixels.shape), (tile, tile), overlap))
        try:
            return tiled_map(pixels, fn, (tile, tile), overlap, scale, channels, tick)
        except BaseException as exc:
            if not _is_oom(exc):
                raise
            if tile // 2 < MIN_TILE:
                raise NodeOutOfMemoryError(
                    f"node {ctx.node_id or '?'}: upscaling a {pixels.shape[3]}x{pixels.shape[2]} image runs out "
                    f"of {device} memory even with {tile}x{tile} tiles ({str(exc).splitlines()[0][:200]})",
                    node=ctx.node_id, hint="free memory (fewer models loaded), or upscale a smaller image"
                ) from exc
            tile //= 2
            if arbiter is not None:
                arbiter.evict_all(device)
            _empty_cache(device)


def _ticker(ctx: Any, total: int) -> Callable[[], None]:
    """Progress per tile (the total of this attempt), and the cancel check between tiles."""
    done = [0]

    def tick() -> None:
        done[0] += 1
        ctx.progress(done[0], total)
        ctx.raise_if_cancelled()

    return tick


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, MemoryError | torch.OutOfMemoryError)


def _empty_cache(device: str) -> None:
    import torch

    if device == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()

