"""VAE decode / encode between LATENT and IMAGE: plain, tiled (``tiled``) and for inpainting.

Conventions (as ComfyUI's ``comfy.sd.VAE``): pixels enter the VAE as ``2 * p - 1`` and leave
as ``clamp((x + 1) / 2, 0, 1)``; an encoded latent is the distribution's mean (deterministic),
here shifted and multiplied by the VAE's shift and scaling factors (SD3/Flux's 16-channel VAEs
have a shift; ComfyUI's ``process_latent_in``) because our LATENTs are in the sampler's scale;
the encoded LATENT records those factors (``latent_format``) and a decode first reads a latent in
its own VAE's factors, so any VAE decodes any model's latent as in ComfyUI;
images whose sides are not multiples of 8 are cropped to them around the centre
(``(size % 8) // 2`` pixels off the top/left), as ComfyUI's ``vae_encode_crop_pixels`` does.

Imported only when such a node runs (in a worker): it imports torch at module level.
Latents and images that leave these functions are on the CPU; the VAE runs where its loader
put it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from . import latent_format
from .components import VaeHandle, oom_guard
from .latent_ops import as_image, as_mask
from .tiled import three_pass

RATIO = 8  # the spatial compression of every VAE family we load (SD1/SD2/SDXL AutoencoderKL)


def crop_pixels(arr: Any, node: str = "VAEEncode") -> Any:
    """``[B,H,W,C]`` cropped to multiples of 8 around the centre, as ComfyUI does before encoding."""
    h, w = (arr.shape[1] // RATIO) * RATIO, (arr.shape[2] // RATIO) * RATIO
    if h == 0 or w == 0:
        raise ValueError(f"{node}: pixels are {tuple(arr.shape[1:3])}, smaller than 8x8 "
                         "(fix: feed an image of at least 8x8 pixels)")
    top, left = (arr.shape[1] % RATIO) // 2, (arr.shape[2] % RATIO) // 2
    return arr[:, top:top + h, left:left + w]


def _decoder(vae: VaeHandle, module: Any) -> Any:
    def decode(z: Any) -> Any:
        z = z.to(module.device, module.dtype) / vae.scaling_factor + vae.shift_factor
        x = module.decode(z, return_dict=False)[0]
        return x.to("cpu", torch.float32)
    return decode


def _encoder(vae: VaeHandle, module: Any) -> Any:
    def encode(pixels: Any) -> Any:  # NCHW in [0, 1]
        dist = module.encode((pixels * 2 - 1).to(module.device, module.dtype)).latent_dist
        latent = (dist.mode() - vae.shift_factor) * vae.scaling_factor  # the mean, as ComfyUI
        return latent.to("cpu", torch.float32)
    return encode


def _to_image(x: Any) -> np.ndarray:
    return ((x + 1.0) / 2.0).clamp(0, 1).permute(0, 2, 3, 1).contiguous().numpy()


def vae_decode(vae: VaeHandle, samples: dict[str, Any]) -> np.ndarray:
    with vae.vae.use() as module, torch.inference_mode():
        decode = _decoder(vae, module)
        z = latent_format.samples_in(samples, latent_format.of_vae(vae))
        images = oom_guard(lambda: decode(z), module.device)
    return _to_image(images)


def vae_encode(vae: VaeHandle, pixels: Any, node: str = "VAEEncode") -> dict[str, Any]:
    """LATENT of an IMAGE (numpy or torch ``[B,H,W,C]``), cropped around the centre to multiples of 8."""
    x = crop_pixels(as_image(pixels), node)[..., :3].permute(0, 3, 1, 2)
    with vae.vae.use() as module, torch.inference_mode():
        encode = _encoder(vae, module)
        latent = oom_guard(lambda: encode(x), module.device)
    return {"samples": latent, latent_format.KEY: latent_format.of_vae(vae)}


def vae_decode_tiled(vae: VaeHandle, samples: dict[str, Any], tile: int, overlap: int) -> np.ndarray:
    """VAEDecodeTiled's decode: ``tile`` and ``overlap`` in latent pixels (ComfyUI's tile_size // 8)."""
    z = latent_format.samples_in(samples, latent_format.of_vae(vae))
    if z.ndim != 4:
        raise ValueError(f"VAEDecodeTiled: samples have shape {tuple(z.shape)}; this VAE decodes images "
                         "[B, C, H, W] (fix: connect an image latent, not a video one)")
    with vae.vae.use() as module, torch.inference_mode():
        decode = _decoder(vae, module)
        images = oom_guard(lambda: three_pass(z, decode, tile, tile, overlap, RATIO, 3, node="VAEDecodeTiled"), module.device)
    return _to_image(images)


def vae_encode_tiled(vae: VaeHandle, pixels: Any, tile: int, overlap: int) -> dict[str, Any]:
    """VAEEncodeTiled's encode: ``tile`` and ``overlap`` in pixels."""
    x = crop_pixels(as_image(pixels), "VAEEncodeTiled")[..., :3].permute(0, 3, 1, 2)
    with vae.vae.use() as module, torch.inference_mode():
        encode = _encoder(vae, module)
        channels = int(module.config.latent_channels)

        def run() -> Any:
            return three_pass(x, encode, tile, tile, overlap, 1 / RATIO, channels,
                              node="VAEEncodeTiled", square_first=True)
        latent = oom_guard(run, module.device)
    return {"samples": latent, latent_format.KEY: latent_format.of_vae(vae)}


def inpaint_inputs(pixels: Any, mask: Any, grow_mask_by: int) -> tuple[Any, Any]:
    """VAEEncodeForInpaint's pixels (masked area set to 0.5 grey) and ``noise_mask``, as ComfyUI:

    the mask is resized (bilinear) to the image, both are cropped around the centre to
    multiples of 8, the rounded mask greys out the pixels, and the noise mask is the rounded
    mask grown by a ``grow_mask_by`` square box filter (padding ``ceil((g - 1) / 2)``), clamped
    to [0, 1], cut to the cropped size and rounded: ``[B, 1, H, W]`` at pixel resolution.
    """
    image = as_image(pixels)
    m = torch.nn.functional.interpolate(as_mask(mask, "VAEEncodeForInpaint"),
                                        size=tuple(image.shape[1:3]), mode="bilinear")
    h, w = (image.shape[1] // RATIO) * RATIO, (image.shape[2] // RATIO) * RATIO
    image = crop_pixels(image, "VAEEncodeForInpaint")[..., :3].clone()
    top, left = (m.shape[2] % RATIO) // 2, (m.shape[3] % RATIO) // 2
    m = m[:, :, top:top + h, left:left + w]
    grown = m
    if grow_mask_by > 0:
        kernel = torch.ones((1, 1, grow_mask_by, grow_mask_by))
        pad = math.ceil((grow_mask_by - 1) / 2)
        grown = torch.clamp(torch.nn.functional.conv2d(m.round(), kernel, padding=pad), 0, 1)
    keep = (1.0 - m.round()).squeeze(1)[..., None]
    if keep.shape[0] not in (1, image.shape[0]):
        raise ValueError(f"VAEEncodeForInpaint: mask has a batch of {keep.shape[0]} but pixels have "
                         f"{image.shape[0]} (fix: one mask, or one mask per image)")
    image = (image - 0.5) * keep + 0.5
    return image, grown[:, :, :h, :w].round()


def vae_encode_for_inpaint(vae: VaeHandle, pixels: Any, mask: Any, grow_mask_by: int) -> dict[str, Any]:
    image, noise_mask = inpaint_inputs(pixels, mask, grow_mask_by)
    latent = vae_encode(vae, image, "VAEEncodeForInpaint")
    latent["noise_mask"] = noise_mask
    return latent
