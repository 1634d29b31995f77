"""What every diffusion node module shares (torch-free): the heavy marker, ranges, and the
helpers that turn torch-free checks into ComfyUI ``VALIDATE_INPUTS`` answers and list model files.
"""

from __future__ import annotations

from typing import Any

from ...errors import MissingFile, ModelError, ModelNotFoundError

MAX_RESOLUTION = 16384
SEED_MAX = 0xFFFF_FFFF_FFFF_FFFF


class Heavy:
    """Base of the diffusion node classes: ``VORTEX_HEAVY`` tells the worker pool they need torch."""

    VORTEX_HEAVY = True


def verdict(check: Any, name: str) -> bool | str:
    """VALIDATE_INPUTS' answer from a torch-free check that raises ModelError: a model file in
    no models folder is a ``MissingFile`` (VE-117, like a missing input image), anything else
    (a file of a family we lack, an unsafe name) a plain string (VE-116)."""
    try:
        check(name)
    except ModelNotFoundError as exc:
        return MissingFile(exc.message, exc.hint or "")
    except ModelError as exc:
        return f"{exc.message}; {exc.hint}" if exc.hint else exc.message
    return True


def ckpt_names() -> list[str]:
    from .listing import checkpoint_names

    return checkpoint_names()


def lora_names() -> list[str]:
    from .listing import lora_names as names

    return names()
