"""Text encoding on the tiny model: ``embedding:name``, prompt weights and CLIPSetLastLayer.

References are computed independently of text.py's mechanisms: an embedding against a copy of
the text encoder whose vocabulary was extended by the embedding's vectors (how textual
inversion is classically applied), CLIP skip against a copy with its last layers removed, and
weights against ComfyUI's formula applied to separately encoded prompts.
"""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

import vortex_jupyter as vx
from vortex_jupyter.nodes import context
from vortex_jupyter.nodes.diffusion import folders
from vortex_jupyter.nodes.diffusion.loader_nodes import CLIPSetLastLayer, LoraLoader
from vortex_jupyter.nodes.diffusion.text import encode_text

from .conftest import RecordingContext


class TextContext(RecordingContext):
    """Also keeps the progress texts (where warnings show)."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []

    def progress(self, value: float, total: float | None = None, text: str | None = None) -> None:
        super().progress(value, total, text)
        if text:
            self.texts.append(text)


@pytest.fixture
def watched() -> Any:
    ctx = TextContext()
    token = context.activate(ctx)
    yield ctx
    context.deactivate(token)


@pytest.fixture(scope="module")
def clip(tiny_handles: Any) -> Any:
    return tiny_handles[1]


@pytest.fixture(scope="module")
def width(clip: Any) -> int:
    with clip.encoder.use() as enc:
        return int(enc.get_input_embeddings().weight.shape[1])  # the tiny model's token embedding width


@pytest.fixture(scope="module")
def vectors(width: int) -> torch.Tensor:
    return torch.randn(2, width, generator=torch.Generator().manual_seed(11))


@pytest.fixture(scope="module")
def emb_dir(models_dir: Path, vectors: torch.Tensor) -> Path:
    folder = models_dir / "embeddings"
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    save_file({"emb_params": vectors}, str(folder / "tiny-emb.safetensors"))  # A1111's safetensors
    torch.save({"string_to_param": {"*": vectors}, "name": "tiny-pt", "step": 10}, folder / "tiny-pt.pt")
    torch.save({"clip_l": vectors, "clip_g": torch.zeros(2, 1280)}, folder / "sdxl-style.bin")
    save_file({"emb_params": vectors}, str(folder / "sub" / "nested.safetensors"))
    save_file({"emb_params": torch.zeros(2, 768)}, str(folder / "wide.safetensors"))
    return folder


def _ids(clip: Any, words: list[str | int]) -> torch.Tensor:
    tok = clip.tokenizer
    row = [tok.bos_token_id]
    for w in words:
        row += [w] if isinstance(w, int) else tok(w, add_special_tokens=False).input_ids
    row.append(tok.eos_token_id)
    return torch.tensor([row + [tok.eos_token_id] * (77 - len(row))])


def reference_with_vectors(clip: Any, before: str, vectors: torch.Tensor, after: str) -> torch.Tensor:
    """Hidden states of ``before <vectors> after`` from an encoder with an extended vocabulary."""
    with clip.encoder.use() as enc:
        ext = copy.deepcopy(enc)
    old = ext.get_input_embeddings().weight
    new = torch.nn.Embedding(old.shape[0] + len(vectors), old.shape[1])
    with torch.no_grad():
        new.weight[: old.shape[0]] = old
        new.weight[old.shape[0]:] = vectors
    ext.set_input_embeddings(new)
    extra: list[str | int] = [old.shape[0] + i for i in range(len(vectors))]
    with torch.inference_mode():
        return ext(_ids(clip, [before, *extra, after])).last_hidden_state


def hidden(clip: Any, text: str) -> torch.Tensor:
    return encode_text(clip, text)[0][0]


@pytest.mark.parametrize(("word", "after"), [
    ("embedding:tiny-emb", "cat"), ("embedding:tiny-emb.safetensors", "cat"), ("embedding:tiny-pt", "cat"),
    ("embedding:sdxl-style", "cat"), ("embedding:nested", "cat"), ("embedding:sub/nested", "cat"),
    ("embedding:tiny-emb,", ", cat"),  # the comma is tried off the name and kept as text
])
def test_an_embedding_equals_the_same_vectors_added_to_the_vocabulary(
        clip: Any, emb_dir: Path, vectors: torch.Tensor, word: str, after: str, watched: TextContext) -> None:
    want = reference_with_vectors(clip, "a", vectors, after)
    torch.testing.assert_close(hidden(clip, f"a {word} cat"), want, rtol=0, atol=1e-6)
    assert not watched.texts


def test_embeddings_are_found_in_folders_from_extra_model_paths(
        clip: Any, tmp_path: Path, vectors: torch.Tensor, monkeypatch: pytest.MonkeyPatch) -> None:
    save_file({"emb_params": vectors}, str(tmp_path / "far-away.safetensors"))
    yaml = tmp_path / "extra.yaml"
    yaml.write_text(f"mine:\n  embeddings: {tmp_path}\n")
    monkeypatch.setenv(folders.ENV, str(yaml))
    torch.testing.assert_close(hidden(clip, "a embedding:far-away cat"),
                               reference_with_vectors(clip, "a", vectors, "cat"), rtol=0, atol=1e-6)


@pytest.mark.parametrize(("text", "says"), [
    ("a embedding:does-not-exist cat", "embedding:does-not-exist does not exist"),
    ("a embedding:wide cat", "shape mismatch"),
    ("a embedding:../escape cat", "not a safe name"),
])
def test_unusable_embeddings_warn_visibly_and_are_dropped(clip: Any, emb_dir: Path, text: str, says: str,
                                                          watched: TextContext,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="vortex_jupyter.models"):
        got = hidden(clip, text)
    assert torch.equal(got, hidden(clip, "a cat"))  # ComfyUI drops it and keeps the rest
    assert any(says in t for t in watched.texts), watched.texts
    assert any(says in r.getMessage() for r in caplog.records)


class _Evil:
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {os.environ['EVIL_MARKER']}",))


def test_a_pickled_embedding_that_wants_code_is_refused_with_a_warning(
        clip: Any, emb_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, watched: TextContext) -> None:
    marker = tmp_path / "pwned"
    monkeypatch.setenv("EVIL_MARKER", str(marker))
    torch.save({"string_to_param": {"*": torch.zeros(1, 4)}, "x": _Evil()}, emb_dir / "evil.pt")
    assert torch.equal(hidden(clip, "a embedding:evil cat"), hidden(clip, "a cat"))
    assert not marker.exists()
    assert any("error loading embedding 'evil'" in t for t in watched.texts)


def test_a_missing_embedding_warning_reaches_the_runs_events(tiny_path: Path) -> None:
    g = vx.Graph()
    ckpt = g.add("CheckpointLoaderSimple", ckpt_name="vortex-tiny")
    enc = g.add("CLIPTextEncode", clip=ckpt.CLIP, text="a embedding:not-there-at-all cat")
    events: list[Any] = []
    g.on_event(events.append)
    run = g.run(executor="inline")
    assert run.status == "ok", run.errors
    texts = [e.text for e in events if e.kind == "node_progress" and e.node == enc.id and e.text]
    assert texts == ["warning, embedding:not-there-at-all does not exist, ignoring"]


# ----------------------------------------------------------------------------- weights


@pytest.mark.parametrize(("weighted", "plain", "where"), [
    ("a (cat:1.5)", "a cat", slice(2, 3)),
    ("a (embedding:tiny-emb:1.2) cat", "a embedding:tiny-emb cat", slice(2, 4)),
])
def test_weights_scale_away_from_the_empty_prompt_as_comfyui_does(
        clip: Any, emb_dir: Path, weighted: str, plain: str, where: slice) -> None:
    w = float(weighted.split(":")[-1].split(")")[0])
    z, empty, got = hidden(clip, plain), hidden(clip, ""), hidden(clip, weighted)
    want = z.clone()
    want[0, where] = (z[0, where] - empty[0, where]) * w + empty[0, where]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    rest = torch.ones(77, dtype=torch.bool)
    rest[where] = False
    torch.testing.assert_close(got[0, rest], z[0, rest], rtol=1e-5, atol=1e-6)  # weight 1 elsewhere
    assert not torch.equal(got[0, where], z[0, where])


# ----------------------------------------------------------------------------- CLIPSetLastLayer


def truncated_reference(clip: Any, text: str, drop: int) -> torch.Tensor:
    """Hidden states from a copy of the encoder without its last ``drop`` layers (final norm kept)."""
    with clip.encoder.use() as enc:
        short = copy.deepcopy(enc)
    inner = getattr(short, "text_model", short)
    inner.encoder.layers = inner.encoder.layers[: len(inner.encoder.layers) - drop]
    with torch.inference_mode():
        return short(_ids(clip, [text])).last_hidden_state


def test_stop_at_minus_one_is_the_default_and_minus_two_is_the_penultimate_layer_normed(clip: Any) -> None:
    last = CLIPSetLastLayer().set_last_layer(clip, -1)[0]
    assert torch.equal(hidden(last, "a cat"), hidden(clip, "a cat"))
    penultimate = CLIPSetLastLayer().set_last_layer(clip, -2)[0]
    got = hidden(penultimate, "a cat")
    torch.testing.assert_close(got, truncated_reference(clip, "a cat", 1), rtol=0, atol=1e-6)
    assert not torch.equal(got, hidden(clip, "a cat"))
    assert clip.layer is None  # the input CLIP is untouched


def test_a_layer_deeper_than_the_encoder_means_the_last_layer_as_in_comfyui(clip: Any) -> None:
    with clip.encoder.use() as enc:
        assert enc.config.num_hidden_layers == 2
    for stop in (-3, -24):
        assert torch.equal(hidden(CLIPSetLastLayer().set_last_layer(clip, stop)[0], "a cat"), hidden(clip, "a cat"))


def test_the_last_clip_set_last_layer_wins_and_survives_a_lora(clip: Any, tiny_handles: Any, models_dir: Path) -> None:
    from .test_lora import write_peft_lora

    twice = CLIPSetLastLayer().set_last_layer(CLIPSetLastLayer().set_last_layer(clip, -2)[0], -1)[0]
    assert torch.equal(hidden(twice, "a cat"), hidden(clip, "a cat"))
    write_peft_lora(models_dir / "loras" / "skip-test.safetensors", tiny_handles)
    skipped = CLIPSetLastLayer().set_last_layer(clip, -2)[0]
    _, lora_clip = LoraLoader().load_lora(tiny_handles[0], skipped, "skip-test.safetensors", 1.0, 1.0)
    assert lora_clip.layer == -2
