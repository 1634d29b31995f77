"""Which CLIP tokenizer a text encoder gets.

Files we wrote (the tiny models, their single and split files) were trained on nothing and use
the package's offline BPE vocabulary (``tokenizer.py``). Real files (an SD1.5 / SDXL / SD3 /
Flux checkpoint, a ``clip_l.safetensors``) carry no tokenizer, and their prompts only mean what
they say with CLIP's real vocabulary (49,408 tokens; ComfyUI ships it in its repository), which
these machines never download. So a real file gets, in order:

1. the folder ``$VORTEX_CLIP_TOKENIZER`` names (a ``CLIPTokenizer`` folder, e.g. the
   ``tokenizer`` folder of an SD1.5 download);
2. ``openai/clip-vit-large-patch14``'s tokenizer when it is in the local Hugging Face cache;
3. else the offline vocabulary, with a warning shown on the node: the model runs, the prompt is
   not what the user wrote.

SDXL's OpenCLIP-G and SD3's CLIP-G use the same vocabulary (ComfyUI's SDXLClipGTokenizer).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ...errors import ModelError

ENV = "VORTEX_CLIP_TOKENIZER"
HUB_ID = "openai/clip-vit-large-patch14"
log = logging.getLogger(__name__)


def offline() -> Any:
    """The package's offline vocabulary (what the tiny models were built with)."""
    from transformers import CLIPTokenizer

    from .single_file import config_folder

    return CLIPTokenizer.from_pretrained(str(config_folder({}) / "tokenizer"), local_files_only=True)


def real() -> Any | None:
    """CLIP's real tokenizer from ``$VORTEX_CLIP_TOKENIZER`` or the local Hugging Face cache, else None."""
    from transformers import CLIPTokenizer

    folder = os.environ.get(ENV, "").strip()
    if folder:
        try:
            return CLIPTokenizer.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ModelError(f"{ENV}={folder!r} is not a CLIP tokenizer folder: {exc}",
                             hint="point it at a folder with vocab.json and merges.txt (e.g. an SD1.5 "
                                  "download's tokenizer folder), or unset it") from exc
    try:
        from huggingface_hub import snapshot_download

        path = snapshot_download(HUB_ID, local_files_only=True,
                                 allow_patterns=["*.json", "*.txt"])
        return CLIPTokenizer.from_pretrained(path, local_files_only=True)
    except Exception:  # huggingface_hub raises several unrelated types for "not in the cache"
        return None


def for_file(ours: bool, name: str) -> Any:
    """The tokenizer for a text encoder read from file ``name`` (``ours``: written by us)."""
    if ours:
        return offline()
    found = real()
    if found is not None:
        return found
    message = (f"{name}: no CLIP tokenizer was found, so prompts use the package's offline stand-in "
               f"vocabulary and will not mean what they say (fix: set {ENV} to a CLIP tokenizer folder, "
               f"or have {HUB_ID} in the local Hugging Face cache)")
    log.warning(message)
    try:
        from ..context import current

        current().progress(0, None, text=message)
    except Exception:  # outside a node run: the log line is enough
        pass
    return offline()
