"""Which CLIP tokenizer a text encoder gets (``clip_tokenizer``): ours for files we wrote; for
real files CLIP's real vocabulary from ``VORTEX_CLIP_TOKENIZER`` or the Hugging Face cache, else
the offline stand-in with a warning that says how to fix it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from vortex_jupyter.errors import ModelError
from vortex_jupyter.nodes.diffusion import clip_tokenizer
from vortex_jupyter.nodes.diffusion.tokenizer import write_tokenizer


@pytest.fixture
def no_hub(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv(clip_tokenizer.ENV, raising=False)


def test_files_we_wrote_keep_the_offline_vocabulary(models_dir: Path, no_hub: None) -> None:
    assert len(clip_tokenizer.for_file(True, "vortex-tiny.safetensors")) == len(clip_tokenizer.offline())


def test_a_real_file_gets_the_tokenizer_the_setting_names(models_dir: Path, no_hub: None, tmp_path: Path,
                                                         monkeypatch: Any) -> None:
    other = tmp_path / "clip-tokenizer"
    size = write_tokenizer(other, rounds=40)  # a different vocabulary than the offline one
    monkeypatch.setenv(clip_tokenizer.ENV, str(other))
    tok = clip_tokenizer.for_file(False, "realistic_v5.safetensors")
    assert len(tok) == size != len(clip_tokenizer.offline())


def test_without_a_real_tokenizer_the_stand_in_is_used_and_said(models_dir: Path, no_hub: None,
                                                                caplog: Any) -> None:
    with caplog.at_level(logging.WARNING):
        tok = clip_tokenizer.for_file(False, "realistic_v5.safetensors")
    assert len(tok) == len(clip_tokenizer.offline())
    assert "realistic_v5.safetensors" in caplog.text and clip_tokenizer.ENV in caplog.text


def test_a_bad_setting_is_a_clear_error(no_hub: None, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv(clip_tokenizer.ENV, str(tmp_path / "nothing-here"))
    with pytest.raises(ModelError, match=clip_tokenizer.ENV):
        clip_tokenizer.real()
