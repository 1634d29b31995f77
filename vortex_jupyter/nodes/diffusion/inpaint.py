"""Inpainting models: InpaintModelConditioning and the extra UNet input channels ("concat").

An inpainting UNet (SD1.5-inpainting, SDXL-inpainting) reads 9 channels: the 4 of the noisy
latent, then 1 of mask, then the 4 of the masked image's latent. ComfyUI builds these extra
channels per conditioning entry (``BaseModel.concat_cond``, ``set_inpaint``'s concat keys
``("mask", "masked_image")``), and so do we, for the UNet families only:

- the mask is the entry's ``concat_mask`` (InpaintModelConditioning), else the run's noise mask
  (the LATENT's ``noise_mask``, resized to the latent); it keeps one channel, is resized
  (bilinear, centre crop) to the latent, rounded and fitted to the batch;
- the masked image is the entry's ``concat_latent_image``, else the latent being sampled;
  resized likewise when its shape differs and fitted to the batch;
- with no mask at all the mask is all ones and the masked image ComfyUI's "blank" latent (the
  latent of a black image, four constants), whatever ``concat_latent_image`` says.

A UNet with as many input channels as the latent has no concat: the options are ignored, so
InpaintModelConditioning + a 4-channel model samples exactly like VAEEncode +
SetLatentNoiseMask. Our ``concat_latent_image`` is in the sampler's scale (our LATENT
convention); ComfyUI stores the raw VAE latent and scales it when it builds the concat.

At sampling time ``sampling`` hands a ``ConcatSource`` to the guider, which gives every entry
its ``"concat"`` ([B, 5, h, w]) before areas are resolved; ``conds.calc_cond_batch`` cuts it to
the entry's area and ``guiders.unet_apply`` appends it to the scaled model input.

Imported only when such a node or a sampler runs: it imports torch at module level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ...errors import ModelError
from . import latent_format
from .latent_ops import as_image, as_mask
from .vae import RATIO, crop_pixels, vae_encode

#: The conditioning option that says which factors ``concat_latent_image`` is in (``latent_format``).
CONCAT_FORMAT = "concat_latent_format"

#: ComfyUI's ``blank_inpaint_image_like``: the latent of a black image, per channel (SD1/SDXL VAE).
BLANK_LATENT = (0.8223, -0.6876, 0.6364, 0.1380)
INPAINT_KEYS = ("mask", "masked_image")
_NODE = "InpaintModelConditioning"


def masked_pixels(pixels: Any, mask: Any) -> tuple[Any, Any, Any]:
    """(original pixels, cropped pixels with the masked area at 0.5, mask ``[Bm, 1, H, W]``):
    the mask resized (bilinear) to the image, both cropped around the centre to multiples of 8."""
    image = as_image(pixels)
    if image.ndim != 4 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(f"{_NODE}: input 'pixels' has shape {tuple(image.shape)}, not an IMAGE [B, H, W, C] "
                         "(fix: connect an IMAGE output, e.g. LoadImage's first output)")
    m = torch.nn.functional.interpolate(as_mask(mask, _NODE), size=tuple(image.shape[1:3]), mode="bilinear")
    if m.shape[0] not in (1, image.shape[0]):
        raise ValueError(f"{_NODE}: input 'mask' has a batch of {m.shape[0]} but 'pixels' have {image.shape[0]} "
                         "(fix: one mask for all images, or one mask per image)")
    h, w = (image.shape[1] // RATIO) * RATIO, (image.shape[2] // RATIO) * RATIO
    top, left = (image.shape[1] % RATIO) // 2, (image.shape[2] % RATIO) // 2
    cropped = crop_pixels(image, _NODE)[..., :3].clone()
    m = m[:, :, top:top + h, left:left + w]
    keep = (1.0 - m.round()).squeeze(1)[..., None]
    return image, (cropped - 0.5) * keep + 0.5, m


def inpaint_conditioning(positive: Any, negative: Any, vae: Any, pixels: Any, mask: Any, noise_mask: bool
                         ) -> tuple[Any, Any, dict[str, Any]]:
    """InpaintModelConditioning (ComfyUI's): both conditionings get ``concat_latent_image`` (the
    masked pixels' latent) and ``concat_mask``; the LATENT is the original pixels' latent, with
    the mask as ``noise_mask`` when ``noise_mask`` is true."""
    from .conditioning_nodes import set_values

    original, masked, m = masked_pixels(pixels, mask)
    encoded = vae_encode(vae, masked, _NODE)
    latent = vae_encode(vae, original, _NODE)
    if noise_mask:
        latent["noise_mask"] = m
    values = {"concat_latent_image": encoded["samples"], "concat_mask": m,
              CONCAT_FORMAT: encoded[latent_format.KEY]}  # read in the model's factors at sampling
    return set_values(positive, values), set_values(negative, values), latent


# ------------------------------------------------------------------------------ sampling


def resize_to_batch(t: torch.Tensor, n: int) -> torch.Tensor:
    """ComfyUI's ``resize_to_batch_size``: spread (not tile) a batch over ``n`` entries."""
    m = t.shape[0]
    if m == n:
        return t
    if n <= 1:
        return t[:n]
    if n < m:
        scale = (m - 1) / (n - 1)
        return t[[min(round(i * scale), m - 1) for i in range(n)]]
    return t[[min(math.floor((i + 0.5) * m / n), m - 1) for i in range(n)]]


def center_resize(t: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """ComfyUI's ``common_upscale(..., "bilinear", "center")``: crop to the aspect, then resize."""
    old_h, old_w = t.shape[-2], t.shape[-1]
    old_aspect, new_aspect = old_w / old_h, w / h
    x = round((old_w - old_w * (new_aspect / old_aspect)) / 2) if old_aspect > new_aspect else 0
    y = round((old_h - old_h * (old_aspect / new_aspect)) / 2) if old_aspect < new_aspect else 0
    part = t.narrow(-2, y, old_h - 2 * y).narrow(-1, x, old_w - 2 * x)
    return torch.nn.functional.interpolate(part, size=(h, w), mode="bilinear")


@dataclass(frozen=True)
class ConcatSource:
    """What an inpainting UNet's extra channels are built from in one run."""

    keys: tuple[str, ...]
    latent: torch.Tensor  # the latent being sampled, in the sampler's scale
    denoise_mask: torch.Tensor | None  # the run's noise mask at latent size, or None
    #: the model's latent factors (``latent_format``): a concat image encoded by another VAE is read in them
    factors: tuple[float, float] = latent_format.FAMILIES["sd1"]

    def add_to(self, prepared: dict[str, list[dict[str, Any]]]) -> None:
        for entries in prepared.values():
            for c in entries:
                c["concat"] = self.concat_for(c)

    def concat_for(self, c: dict[str, Any]) -> torch.Tensor:
        shape, device = self.latent.shape, self.latent.device
        image = c.get("concat_latent_image")
        if image is not None and c.get(CONCAT_FORMAT) is not None:
            image = latent_format.samples_in({"samples": torch.as_tensor(image), latent_format.KEY: c[CONCAT_FORMAT]},
                                             self.factors)
        image = self.latent if image is None else torch.as_tensor(image).to(device, torch.float32)
        if image.shape[1:] != shape[1:]:
            image = center_resize(image, shape[2], shape[3])
        if image.shape[1] != shape[1]:
            raise ValueError(f"concat_latent_image has {image.shape[1]} channels but the latent {shape[1]} "
                             "(fix: encode the inpainting image with the model's own VAE)")
        image = resize_to_batch(image, shape[0])
        mask = c.get("concat_mask", self.denoise_mask)
        if mask is None:
            blank = torch.tensor(BLANK_LATENT, device=device).view(1, -1, 1, 1)
            parts = {"mask": torch.ones_like(self.latent)[:, :1], "masked_image": torch.ones_like(self.latent) * blank}
        else:
            mask = torch.as_tensor(mask).to(device, torch.float32)
            if mask.ndim == len(shape):
                mask = mask[:, :1]
            mask = mask.reshape(-1, 1, mask.shape[-2], mask.shape[-1])
            if tuple(mask.shape[-2:]) != tuple(shape[-2:]):
                mask = center_resize(mask, shape[2], shape[3])
            parts = {"mask": resize_to_batch(mask.round(), shape[0]), "masked_image": image}
        return torch.cat([parts[k] for k in self.keys], dim=1)


def concat_source(family: str, unet: Any, latent: torch.Tensor, denoise_mask: torch.Tensor | None
                  ) -> ConcatSource | None:
    """The run's ``ConcatSource`` when ``unet`` reads more channels than the latent has (an
    inpainting UNet), else None (the concat options are ignored, as ComfyUI does)."""
    if family not in ("sd1", "sdxl"):
        return None
    extra = int(getattr(unet.config, "in_channels", latent.shape[1])) - latent.shape[1]
    if extra <= 0:
        return None
    if extra != 1 + latent.shape[1]:
        raise ModelError(f"the UNet reads {extra + latent.shape[1]} input channels for a {latent.shape[1]}-channel "
                         f"latent; only inpainting UNets ({2 * latent.shape[1] + 1} channels: latent, mask, masked "
                         "image) are supported",
                         hint="use a regular or an inpainting checkpoint of this family")
    return ConcatSource(INPAINT_KEYS, latent, denoise_mask, latent_format.FAMILIES.get(family, latent_format.FAMILIES["sd1"]))
