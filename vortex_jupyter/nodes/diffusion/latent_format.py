"""Which scale a LATENT's samples are in, so any VAE and any model can meet, as in ComfyUI.

ComfyUI keeps LATENTs in the VAE's raw space and lets the model's latent format scale them
(``process_latent_in/out``) around sampling; the VAE knows no scale. Here LATENTs are kept in the
sampler's space (raw minus shift, times scale: what the sampler works on), so the scale a latent
is in is recorded with it (``KEY``: ``(scale, shift)``):

- VAEEncode tags its latent with its VAE's factors;
- a sampler reads a tagged latent in its model family's factors (``FAMILIES``) and tags its
  output with them;
- VAEDecode reads a tagged latent in its own VAE's factors before decoding.

A latent without the tag (EmptyLatentImage, older values) is taken as being in the space of
whoever reads it, as before. So a VAELoader'd SDXL VAE (whose shapes are SD1's, hence SD1's
factors) decodes an SDXL model's latent exactly like the checkpoint's own VAE, and an SD1 VAE's
encoding feeds an SDXL sampler correctly, as ComfyUI's convention guarantees.
"""

from __future__ import annotations

from typing import Any

KEY = "vortex_latent_format"
#: Each model family's latent factors (ComfyUI's ``latent_formats``): (scale, shift).
FAMILIES: dict[str, tuple[float, float]] = {
    "sd1": (0.18215, 0.0), "sdxl": (0.13025, 0.0), "sdxl_refiner": (0.13025, 0.0),
    "sd3": (1.5305, 0.0609), "flux": (0.3611, 0.1159),
}


def of_model(model: Any) -> tuple[float, float]:
    return FAMILIES.get(str(getattr(model, "family", "sd1")), FAMILIES["sd1"])


def of_vae(vae: Any) -> tuple[float, float]:
    return float(vae.scaling_factor), float(getattr(vae, "shift_factor", 0.0))


def samples_in(latent: Any, target: tuple[float, float]) -> Any:
    """``latent["samples"]`` expressed in ``target``'s factors (as they are when untagged)."""
    samples = latent["samples"]
    source = latent.get(KEY) if isinstance(latent, dict) else None
    if source is None or _same(tuple(source), target):
        return samples
    scale, shift = float(source[0]), float(source[1])
    return (samples / scale + shift - target[1]) * target[0]


def _same(a: tuple[Any, ...], b: tuple[float, float]) -> bool:
    return abs(float(a[0]) - b[0]) < 1e-9 and abs(float(a[1]) - b[1]) < 1e-9
