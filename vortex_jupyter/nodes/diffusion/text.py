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
    if clip.kind == "sdxl_refiner":  # OpenCLIP-G alone (ComfyUI's SDXLRefinerClipModel)
        layer = -2 if clip.layer is None else clip.layer
        with clip.encoder.use() as clip_g, torch.inference_mode():
            hidden, pooled = _encode_with(clip, clip_g, text, lambda rows: _run_raw(clip_g, rows, layer))
        return [[hidden, {"pooled_output": pooled}]]
    if clip.kind == "sd3":
        return encode_sd3(clip, text, text, text)
    if clip.kind == "flux":
        return encode_flux(clip, text, text)
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


# ------------------------------------------------------------------ SD3 and Flux (with T5)

#: CLIP-L's and OpenCLIP-G's widths in the real models (ComfyUI's zeros for a missing encoder).
_L_WIDTH, _G_WIDTH = 768, 1280


def _width(component: Any, default: int, attr: str = "hidden_size") -> int:
    if component is None:
        return default
    with component.use() as module:
        return int(getattr(module.config, attr))


def encode_sd3(clip: ClipHandle, text_l: str, text_g: str, text_t5: str, *, drop_empty: bool = False
               ) -> list[list[Any]]:
    """SD3's conditioning (ComfyUI's ``SD3ClipModel``): CLIP-L and OpenCLIP-G each give their
    penultimate layer without the final norm (a missing encoder: zeros of its width), the
    shorter side padded with empty-prompt windows, joined on the feature axis, padded with
    zeros to T5's width and followed by T5's tokens; ``pooled_output`` is CLIP-L's pooled (not
    projected) and G's projected, joined. ``drop_empty`` (CLIPTextEncodeSD3's
    ``empty_padding="none"``): T5 is left out when its text is empty, and both CLIPs when both
    of theirs are (one empty side alone is padded with the empty prompt, as ComfyUI's node
    does). With nothing at all: zeros ``[1, 77, width]``."""
    from . import t5

    clips = not (drop_empty and text_l == "" and text_g == "") and (clip.encoder is not None
                                                                    or clip.encoder_2 is not None)
    use_t5 = clip.t5 is not None and not (drop_empty and text_t5 == "")
    t5_width = _width(clip.t5, 4096, "d_model")
    lg: torch.Tensor | None = None
    pooled: torch.Tensor | None = None
    layer = -2 if clip.layer is None else clip.layer
    if clips:
        with torch.inference_mode():
            def run_l(e: Any, rows: list[list[prompt.Item]]) -> tuple[torch.Tensor, torch.Tensor]:
                return _run_raw_pooler(e, rows, layer)

            def run_g(e: Any, rows: list[list[prompt.Item]]) -> tuple[torch.Tensor, torch.Tensor]:
                return _run_raw(e, rows, layer)

            l_out, l_pooled = _sd3_side(clip, clip.encoder, text_l, run_l)
            g_out, g_pooled = _sd3_side(clip, clip.encoder_2, text_g, run_g)
            if l_out is not None and g_out is not None and l_out.shape[1] != g_out.shape[1]:
                if l_out.shape[1] < g_out.shape[1]:  # the shorter side gets empty-prompt windows
                    empty = _sd3_side(clip, clip.encoder, "", run_l)[0]
                    assert empty is not None
                    l_out = _pad_chunks(l_out, empty, g_out.shape[1])
                else:
                    empty = _sd3_side(clip, clip.encoder_2, "", run_g)[0]
                    assert empty is not None
                    g_out = _pad_chunks(g_out, empty, l_out.shape[1])
        if l_out is not None and g_out is not None:
            lg = torch.cat([l_out, g_out], dim=-1)
        elif l_out is not None:
            lg = l_out
        else:
            assert g_out is not None
            lg = torch.nn.functional.pad(g_out, (_width(clip.encoder, _L_WIDTH), 0))
        lg = torch.nn.functional.pad(lg, (0, t5_width - lg.shape[-1]))
        l_pooled = l_pooled if l_pooled is not None else torch.zeros(1, _width(clip.encoder, _L_WIDTH))
        g_pooled = g_pooled if g_pooled is not None else torch.zeros(
            1, _width(clip.encoder_2, _G_WIDTH, "projection_dim"))
        pooled = torch.cat([l_pooled, g_pooled], dim=-1)
    out = lg
    if use_t5:
        assert clip.t5 is not None
        with clip.t5.use() as enc_t5:
            t5_out = t5.encode(enc_t5, clip.t5_tokenizer, text_t5, t5.SD3_MIN_LENGTH)
        out = t5_out if lg is None else torch.cat([lg, t5_out], dim=-2)
    if out is None:
        out = torch.zeros(1, 77, t5_width)
    if pooled is None:
        pooled = torch.zeros(1, _width(clip.encoder, _L_WIDTH) + _width(clip.encoder_2, _G_WIDTH, "projection_dim"))
    return [[out, {"pooled_output": pooled}]]


def _sd3_side(clip: ClipHandle, component: Any, text: str,
              run: Callable[[Any, list[list[prompt.Item]]], tuple[torch.Tensor, torch.Tensor]]
              ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """One CLIP of SD3: hidden and pooled of ``text``, or (None, None) when the CLIP lacks it."""
    if component is None:
        return None, None
    with component.use() as encoder:
        return _encode_with(clip, encoder, text, lambda rows: run(encoder, rows))


def encode_flux(clip: ClipHandle, text_l: str, text_t5: str, guidance: float | None = None) -> list[list[Any]]:
    """Flux's conditioning (ComfyUI's ``FluxClipModel``): T5's tokens (at least 256) as the
    context; ``pooled_output`` is CLIP-L's pooled output (last layer, not projected); with
    ``guidance`` (CLIPTextEncodeFlux) the entry carries it as FluxGuidance would set it."""
    from . import t5

    if clip.encoder is None or clip.t5 is None:
        raise ValueError("a Flux CLIP needs both CLIP-L and T5 (fix: DualCLIPLoader with type 'flux' and "
                         "clip_l + t5xxl files, or the Flux checkpoint's CLIP)")
    with clip.t5.use() as enc_t5:
        context = t5.encode(enc_t5, clip.t5_tokenizer, text_t5, t5.FLUX_MIN_LENGTH)
    with clip.encoder.use() as enc_l, torch.inference_mode():
        _, pooled = _encode_with(clip, enc_l, text_l, lambda rows: _run(enc_l, rows, clip.layer))
    options: dict[str, Any] = {"pooled_output": pooled}
    if guidance is not None:
        options["guidance"] = float(guidance)
    return [[context, options]]


def _run_raw_pooler(encoder: Any, rows: list[list[prompt.Item]], layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``_run_raw`` with the unprojected pooled output (SD3's CLIP-L: ``return_projected_pooled=False``)."""
    ids = torch.tensor([[i if isinstance(i, int) else _PLACEHOLDER for i, _ in r] for r in rows])
    vectors = [(b, j, item) for b, r in enumerate(rows) for j, (item, _) in enumerate(r) if not isinstance(item, int)]
    n_layers = int(encoder.config.num_hidden_layers)
    with _inject(encoder, vectors):
        out = encoder(ids.to(encoder.device), output_hidden_states=True)
    last = out.last_hidden_state  # the final layer norm applied
    pooled = last[torch.arange(last.shape[0]), _eos_positions(encoder, ids)]
    hidden = out.hidden_states[n_layers + layer + 1] if abs(layer) <= n_layers else out.last_hidden_state
    return hidden, pooled


def _eos_positions(encoder: Any, ids: torch.Tensor) -> torch.Tensor:
    """Where CLIP pools: the first end-of-text token of each row (transformers' rule)."""
    eos = int(encoder.config.eos_token_id)
    return (ids.to(encoder.device) == eos).int().argmax(dim=-1)


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
