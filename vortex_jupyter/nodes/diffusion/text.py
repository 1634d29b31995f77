"""Text encoding for CLIPTextEncode: prompt -> CONDITIONING, in 77-token windows as ComfyUI does.

Imported only when such a node runs (in a worker): it imports torch at module level.
CONDITIONING tensors live on the CPU (they travel through shared memory).
"""

from __future__ import annotations

from typing import Any

import torch

from .components import ClipHandle


def token_chunks(tokenizer: Any, text: str) -> Any:
    """``[n, 77]`` token ids: the prompt cut into 75-token pieces, each wrapped in BOS/EOS and
    padded with EOS (SD1's padding), as ComfyUI does for prompts longer than CLIP's window."""
    window = int(getattr(tokenizer, "model_max_length", 77) or 77)
    if window > 10_000:  # tokenizers without a limit report a huge sentinel
        window = 77
    body = window - 2
    ids = tokenizer(text, add_special_tokens=False, truncation=False).input_ids
    pieces = [ids[i:i + body] for i in range(0, len(ids), body)] or [[]]
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    rows = [[bos, *p, eos] + [eos] * (body - len(p)) for p in pieces]
    return torch.tensor(rows, dtype=torch.long)


def encode_text(clip: ClipHandle, text: str) -> list[list[Any]]:
    """CONDITIONING for ``text``: the last hidden state (after the final layer norm), as SD1 uses.

    Long prompts are encoded in 77-token windows whose states are concatenated
    (``[1, 77 * n, dim]``); ``pooled_output`` comes from the first window.
    """
    ids = token_chunks(clip.tokenizer, text)
    with clip.encoder.use() as encoder, torch.inference_mode():
        out = encoder(ids.to(encoder.device))
    hidden = out.last_hidden_state.to("cpu", torch.float32).reshape(1, -1, out.last_hidden_state.shape[-1])
    pooled = out.pooler_output[:1].to("cpu", torch.float32)
    return [[hidden, {"pooled_output": pooled}]]
