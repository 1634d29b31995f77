"""Text encoding for CLIPTextEncode: prompt -> CONDITIONING, as ComfyUI's SD1 CLIP does.

Imported only when such a node runs (in a worker): it imports torch at module level.
``prompt.py`` parses the prompt (weights, ``embedding:name``) into 77-token windows; here:

- all windows run through the text encoder as one batch; an embedding's vectors replace the
  token embeddings at their positions (a forward hook on the token embedding layer, removed
  after the call, so the shared module is never changed);
- the hidden state is the last layer's, or with CLIPSetLastLayer (``ClipHandle.layer = -k``) the
  output of the k-th layer from the end; either way followed by the final layer norm, as
  ComfyUI's SD1 CLIP does (``layer_norm_hidden_state``). A layer deeper than the encoder has
  means the last layer, as in ComfyUI;
- weights: when any token's weight is not 1, an empty prompt is encoded alongside and each
  weighted position becomes ``empty + (z - empty) * weight`` (ComfyUI's formula);
- windows are concatenated (``[1, 77 * n, dim]``); ``pooled_output`` is the first window's;
- SDXL (a CLIP with ``encoder_2``): both encoders' penultimate layer, no final norm, joined on
  the feature axis; ``pooled_output`` is OpenCLIP-G's projected one (ComfyUI's SDXLClipModel).

An embedding whose width differs from the encoder's is dropped with a warning and the window is
padded at its end, as ComfyUI does. CONDITIONING tensors live on the CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from . import embeddings, prompt
from .components import ClipHandle

_PLACEHOLDER = 0  # token id under an embedding vector (never EOS: the pooled output looks for EOS)


def tokenize(clip: ClipHandle, text: str, width: int) -> list[list[prompt.Item]]:
    """The prompt's windows (token ids and embedding rows, each with its weight)."""
    tok = clip.tokenizer

    def words(word: str) -> list[int]:
        return list(tok(word, add_special_tokens=False, truncation=False).input_ids)

    def resolve(name: str) -> Any:
        vectors = embeddings.load(name, width)
        return None if vectors is None else list(vectors)

    return prompt.tokenize(text, words, resolve, embeddings.warn, tok.bos_token_id, tok.eos_token_id)


def token_chunks(tokenizer: Any, text: str) -> torch.Tensor:
    """``[n, 77]`` token ids of a prompt without embeddings (weights ignored)."""
    clip = ClipHandle("", None, tokenizer)  # type: ignore[arg-type]  # only the tokenizer is used
    rows = tokenize(clip, text, 0)
    return torch.tensor([[i if isinstance(i, int) else _PLACEHOLDER for i, _ in r] for r in rows])


def encode_text(clip: ClipHandle, text: str) -> list[list[Any]]:
    """CONDITIONING for ``text``: ``[[hidden [1, 77*n, dim], {"pooled_output": [1, dim]}]]``."""
    if clip.encoder_2 is not None:
        return _encode_sdxl(clip, text)
    with clip.encoder.use() as encoder, torch.inference_mode():
        hidden, pooled = _encode_with(clip, encoder, text, lambda rows: _run(encoder, rows, clip.layer))
    return [[hidden, {"pooled_output": pooled}]]


def _encode_sdxl(clip: ClipHandle, text: str, text_g: str | None = None) -> list[list[Any]]:
    """SDXL, as ComfyUI's SDXLClipModel: CLIP-L (``text``) and OpenCLIP-G (``text_g``, default
    the same text) each give the output of the penultimate layer (CLIPSetLastLayer: of the k-th
    from the end) WITHOUT the final layer norm; the two are joined on the feature axis;
    ``pooled_output`` is G's projected pooled output. Two texts of different lengths: the
    shorter side is padded with empty-prompt chunks, as CLIPTextEncodeSDXL pads its tokens."""
    assert clip.encoder_2 is not None
    layer = -2 if clip.layer is None else clip.layer
    with clip.encoder.use() as clip_l, clip.encoder_2.use() as clip_g, torch.inference_mode():
        def run_l(t: str) -> tuple[torch.Tensor, torch.Tensor]:
            return _encode_with(clip, clip_l, t, lambda rows: _run_raw(clip_l, rows, layer))

        def run_g(t: str) -> tuple[torch.Tensor, torch.Tensor]:
            return _encode_with(clip, clip_g, t, lambda rows: _run_raw(clip_g, rows, layer))

        hidden_l, _ = run_l(text)
        hidden_g, pooled = run_g(text if text_g is None else text_g)
        if hidden_l.shape[1] < hidden_g.shape[1]:
            hidden_l = _pad_chunks(hidden_l, run_l("")[0], hidden_g.shape[1])
        elif hidden_g.shape[1] < hidden_l.shape[1]:
            hidden_g = _pad_chunks(hidden_g, run_g("")[0], hidden_l.shape[1])
    return [[torch.cat([hidden_l, hidden_g], dim=-1), {"pooled_output": pooled}]]


def encode_sdxl(clip: ClipHandle, text_g: str, text_l: str) -> list[list[Any]]:
    """CLIPTextEncodeSDXL's encoding: ``text_g`` through OpenCLIP-G, ``text_l`` through CLIP-L."""
    if clip.encoder_2 is None:
        raise ValueError("CLIPTextEncodeSDXL needs an SDXL CLIP (two text encoders); this CLIP has one "
                         "(fix: connect the CLIP output of an SDXL checkpoint, or use CLIPTextEncode)")
    return _encode_sdxl(clip, text_l, text_g)


def _pad_chunks(hidden: torch.Tensor, empty: torch.Tensor, length: int) -> torch.Tensor:
    """``hidden`` followed by copies of the empty prompt's 77-token chunk up to ``length`` tokens."""
    reps = (length - hidden.shape[1]) // empty.shape[1]
    return torch.cat([hidden, *[empty] * reps], dim=1)


def _encode_with(clip: ClipHandle, encoder: Any, text: str,
                 run: Callable[[list[list[prompt.Item]]], tuple[torch.Tensor, torch.Tensor]]
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Hidden ``[1, 77*n, dim]`` and pooled ``[1, dim]`` (CPU, fp32) of one encoder."""
    width = int(encoder.config.hidden_size)
    windows = tokenize(clip, text, width)
    weighted = any(w != 1.0 for row in windows for _, w in row)
    eos = clip.tokenizer.eos_token_id
    rows = [_fit(row, width, eos) for row in windows]
    if weighted:  # ComfyUI: an empty prompt to weigh against
        rows.append(prompt.pack([], clip.tokenizer.bos_token_id, eos)[0])
    hidden, pooled = run(rows)
    hidden = hidden.to("cpu", torch.float32)
    if weighted:
        hidden = _apply_weights(hidden[:-1], hidden[-1], windows)
    return hidden.reshape(1, -1, hidden.shape[-1]), pooled[:1].to("cpu", torch.float32)


def _fit(row: list[prompt.Item], width: int, eos: int) -> list[prompt.Item]:
    """Embedding rows of the wrong width out (warned), EOS padding in at the end."""
    kept = [(item, w) for item, w in row if isinstance(item, int) or item.shape[-1] == width]
    dropped = len(row) - len(kept)
    if dropped:
        odd = next(item for item, _ in row if not isinstance(item, int) and item.shape[-1] != width)
        embeddings.warn(f"WARNING: shape mismatch when trying to apply embedding, embedding will be "
                        f"ignored {odd.shape[-1]} != {width}")
    return kept + [(eos, 1.0)] * dropped


def _run(encoder: Any, rows: list[list[prompt.Item]], layer: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Hidden states ``[n, 77, dim]`` (the chosen layer, final layer norm applied) and pooled."""
    ids = torch.tensor([[i if isinstance(i, int) else _PLACEHOLDER for i, _ in r] for r in rows])
    vectors = [(b, j, item) for b, r in enumerate(rows) for j, (item, _) in enumerate(r) if not isinstance(item, int)]
    n_layers = int(encoder.config.num_hidden_layers)
    skip = layer is not None and layer != -1 and abs(layer) <= n_layers
    with _inject(encoder, vectors):
        out = encoder(ids.to(encoder.device), output_hidden_states=skip)
    if not skip:
        return out.last_hidden_state, out.pooler_output
    assert layer is not None
    # hidden_states[0] is the embeddings; the output of layer i (0-based) is hidden_states[i + 1]
    inner = getattr(encoder, "text_model", encoder)
    return inner.final_layer_norm(out.hidden_states[n_layers + layer + 1]), out.pooler_output


def _run_raw(encoder: Any, rows: list[list[prompt.Item]], layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """SDXL's encoders: the chosen layer's output without the final layer norm (a layer deeper
    than the encoder: the last, normed, as ComfyUI's "last"); pooled: ``text_embeds`` when the
    encoder has a projection (OpenCLIP-G), else ``pooler_output``."""
    ids = torch.tensor([[i if isinstance(i, int) else _PLACEHOLDER for i, _ in r] for r in rows])
    vectors = [(b, j, item) for b, r in enumerate(rows) for j, (item, _) in enumerate(r) if not isinstance(item, int)]
    n_layers = int(encoder.config.num_hidden_layers)
    with _inject(encoder, vectors):
        out = encoder(ids.to(encoder.device), output_hidden_states=True)
    pooled = out.text_embeds if getattr(out, "text_embeds", None) is not None else out.pooler_output
    hidden = out.hidden_states[n_layers + layer + 1] if abs(layer) <= n_layers else out.last_hidden_state
    return hidden, pooled


@contextmanager
def _inject(encoder: Any, vectors: list[tuple[int, int, Any]]) -> Iterator[None]:
    """Token embeddings replaced by ``vectors`` at (row, position) for one forward call."""
    if not vectors:
        yield
        return

    def hook(_module: Any, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        output = output.clone()
        for b, j, vec in vectors:
            output[b, j] = vec.to(output.device, output.dtype)
        return output

    handle = encoder.get_input_embeddings().register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def _apply_weights(hidden: torch.Tensor, empty: torch.Tensor, windows: list[list[prompt.Item]]) -> torch.Tensor:
    out = hidden.clone()
    for k, row in enumerate(windows):
        for j, (_, w) in enumerate(row):
            if w != 1.0:
                out[k, j] = (hidden[k, j] - empty[j]) * w + empty[j]
    return out
