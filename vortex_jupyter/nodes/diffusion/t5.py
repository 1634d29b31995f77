"""T5 text encoding as SD3 and Flux use it (ComfyUI's ``T5XXLModel`` / ``T5XXLTokenizer``).

- Tokens: the prompt's pieces (weights and escapes parsed as for CLIP, ``prompt.py``) in ONE
  sequence, no BOS, the end token ``</s>`` (id 1) after the last piece, then ``<pad>`` (id 0)
  up to ``min_length`` (SD3: 77, Flux: 256); no 77-token windows.
- The encoder's output is the last layer with T5's final layer norm (``last_hidden_state``),
  every position attended (ComfyUI passes no attention mask by default).
- Weights: when any token's weight is not 1, the empty prompt (``</s>`` then pads, same
  length) is encoded alongside and each weighted position becomes ``empty + (z - empty) * w``.

``write_t5_tokenizer`` writes the built-in tiny models' T5 tokenizer: a sentencepiece-style
Unigram model (``tokenizers``) over the letters, digits, punctuation and the prompt words of
``tokenizer._CORPUS``, with T5's special ids (pad 0, ``</s>`` 1, unk 2), saved for
``transformers.T5TokenizerFast``; deterministic, offline. Real SD3/Flux files need the real T5
tokenizer (``tokenizer_3`` / ``tokenizer_2`` of a diffusers folder, or ``VORTEX_T5_TOKENIZER``).
"""

from __future__ import annotations

import os
import string
from pathlib import Path
from typing import Any

from . import prompt
from .tokenizer import _CORPUS

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"
#: SD3's and Flux's minimum T5 sequence lengths (ComfyUI's ``min_length``).
SD3_MIN_LENGTH, FLUX_MIN_LENGTH = 77, 256
#: Environment: a folder with a real T5 tokenizer (for real files without one next to them).
TOKENIZER_ENV = "VORTEX_T5_TOKENIZER"


def tiny_t5_config(vocab_size: int, d_model: int) -> dict[str, Any]:
    """A T5 v1.1-shaped encoder (gated GELU feed-forward, relative position buckets) at toy size."""
    return {"vocab_size": vocab_size, "d_model": d_model, "d_kv": 16, "d_ff": d_model * 2,
            "num_layers": 2, "num_heads": 4, "relative_attention_num_buckets": 8,
            "relative_attention_max_distance": 32, "feed_forward_proj": "gated-gelu",
            "dropout_rate": 0.0, "is_encoder_decoder": False, "use_cache": False,
            "pad_token_id": 0, "eos_token_id": 1, "decoder_start_token_id": 0,
            "tie_word_embeddings": False}


def _pieces() -> list[tuple[str, float]]:
    """The Unigram vocabulary: specials, single characters (with and without the word-start
    mark), then whole words, scored so a known word beats its letters."""
    chars = string.ascii_lowercase + string.ascii_uppercase + string.digits + string.punctuation
    out: list[tuple[str, float]] = [(PAD, 0.0), (EOS, 0.0), (UNK, 0.0), ("\u2581", -3.0)]
    out += [(c, -5.0) for c in chars] + [("\u2581" + c, -5.5) for c in chars]
    for word in sorted(set(_CORPUS)):
        if len(word) > 1:
            out.append(("\u2581" + word, -2.0))
    return out


def write_t5_tokenizer(folder: Path) -> int:
    """Write a ``T5TokenizerFast`` for the tiny models; returns its vocabulary size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import T5TokenizerFast  # type: ignore[attr-defined]  # transformers 5: an alias

    pieces = _pieces()
    tok = Tokenizer(models.Unigram(pieces, unk_id=2))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}",
                                                       special_tokens=[(EOS, 1)])
    fast = T5TokenizerFast(tokenizer_object=tok, eos_token=EOS, unk_token=UNK, pad_token=PAD, extra_ids=0,
                           model_max_length=512)
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(folder))
    return len(pieces)


def load_tokenizer(folder: str | os.PathLike[str] | None) -> Any:
    """The T5 tokenizer in ``folder``, else ``$VORTEX_T5_TOKENIZER``, else a clear ModelError."""
    from transformers import AutoTokenizer

    from ...errors import ModelError

    candidates = [p for p in (folder, os.environ.get(TOKENIZER_ENV)) if p]
    for where in candidates:
        if Path(where, "tokenizer_config.json").is_file() or Path(where, "tokenizer.json").is_file():
            return AutoTokenizer.from_pretrained(str(where), local_files_only=True)
    raise ModelError("no T5 tokenizer was found for this T5 text encoder (looked in: "
                     f"{', '.join(map(str, candidates)) or 'nowhere'})",
                     hint=f"set {TOKENIZER_ENV} to a folder holding a T5 tokenizer (e.g. the tokenizer_3 "
                          "folder of an SD3 diffusers download)")


def token_rows(tokenizer: Any, text: str, min_length: int) -> tuple[list[prompt.Item], bool]:
    """(the ``(token, weight)`` sequence padded to ``min_length``, whether any weight is not 1)."""

    def words(word: str) -> list[int]:
        return list(tokenizer(word, add_special_tokens=False).input_ids)

    def warn(message: str) -> None:
        from . import embeddings

        embeddings.warn(message)

    groups = prompt.groups(text, words, lambda _name: None, warn)
    items: list[prompt.Item] = [item for group in groups for item in group if isinstance(item[0], int)]
    eos, pad = int(tokenizer.eos_token_id), int(tokenizer.pad_token_id)
    items.append((eos, 1.0))
    items.extend([(pad, 1.0)] * max(0, min_length - len(items)))
    return items, any(w != 1.0 for _, w in items)


def encode(encoder: Any, tokenizer: Any, text: str, min_length: int) -> Any:
    """``[1, n, d_model]`` float32 on the CPU: T5's last hidden state for ``text``."""
    import torch

    items, weighted = token_rows(tokenizer, text, min_length)
    ids = [[t for t, _ in items]]
    if weighted:
        empty = [int(tokenizer.eos_token_id)] + [int(tokenizer.pad_token_id)] * (len(items) - 1)
        ids.append(empty)
    with torch.inference_mode():
        out = encoder(input_ids=torch.tensor(ids, device=encoder.device)).last_hidden_state
    out = out.to("cpu", torch.float32)
    if not weighted:
        return out
    z, empty_z = out[0].clone(), out[1]
    for j, (_, w) in enumerate(items):
        if w != 1.0:
            z[j] = (out[0, j] - empty_z[j]) * w + empty_z[j]
    return z.unsqueeze(0)
