"""Port types, with ComfyUI's names, and when an output may feed an input.

Types are plain strings so that ComfyUI custom nodes with their own types (``"UPSCALE_MODEL"``)
work unchanged. ``"*"`` matches anything; a comma-separated type (``"INT,FLOAT"``) accepts any
of its members, as ComfyUI does. Combo inputs (a list of choices) have the type ``"COMBO"``.
"""

from __future__ import annotations

from ..graph.ports import compatible

MODEL = "MODEL"
CLIP = "CLIP"
VAE = "VAE"
CONDITIONING = "CONDITIONING"
LATENT = "LATENT"
IMAGE = "IMAGE"
MASK = "MASK"
INT = "INT"
FLOAT = "FLOAT"
STRING = "STRING"
BOOLEAN = "BOOLEAN"
COMBO = "COMBO"
ANY = "*"

#: Types whose inputs are edited as widgets (values) rather than wired (links) by default.
WIDGET_TYPES = frozenset({INT, FLOAT, STRING, BOOLEAN, COMBO})

__all__ = [
    "ANY",
    "BOOLEAN",
    "CLIP",
    "COMBO",
    "CONDITIONING",
    "FLOAT",
    "IMAGE",
    "INT",
    "LATENT",
    "MASK",
    "MODEL",
    "STRING",
    "VAE",
    "WIDGET_TYPES",
    "compatible",
]
