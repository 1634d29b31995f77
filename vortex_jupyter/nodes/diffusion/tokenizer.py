"""An offline byte-level BPE vocabulary for the built-in tiny model's ``CLIPTokenizer``.

The real CLIP vocabulary (49,408 tokens) is a hub download, which these machines never do.
The tiny model only needs *a* CLIP-compatible tokenizer, so the package learns a small one
on the spot: GPT-2's byte-to-unicode table gives the 256 base symbols (and their ``</w>``
word-final forms, as CLIP uses), then ``merges`` rounds of classic BPE over a small built-in
corpus of prompt words add sub-words. Everything is deterministic (ties broken by the pair
itself), so two machines produce byte-identical ``vocab.json``/``merges.txt``.

Torch-free: it writes two text files that ``transformers.CLIPTokenizer`` reads.
"""

from __future__ import annotations

import json
from collections import Counter
from itertools import pairwise
from pathlib import Path

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
END = "</w>"

#: Words that show up in diffusion prompts; enough for a few hundred useful merges.
_CORPUS = ["a", "photo", "of", "an", "astronaut", "riding", "a", "horse", "on", "the", "moon", "beautiful", "scenery", "nature", "glass", "bottle", "landscape", "purple", "galaxy", "bottle", "text", "watermark", "blurry", "low", "quality", "high", "detailed", "painting", "portrait", "of", "a", "cat", "dog", "sitting", "in", "the", "garden", "at", "sunset", "oil", "painting", "by", "an", "artist", "digital", "art", "cinematic", "lighting", "sharp", "focus", "trending", "masterpiece", "best", "quality", "ugly", "deformed", "hands", "city", "street", "at", "night", "with", "neon", "lights", "rain", "reflections", "mountains", "lake", "forest", "river", "snow", "winter", "summer", "flowers", "field", "sky", "clouds", "ocean", "beach", "waves", "sunrise", "castle", "dragon", "fantasy", "science", "fiction", "robot", "spaceship", "futuristic", "vintage", "film", "grain", "black", "and", "white", "colorful", "vibrant"]


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from bytes to printable unicode characters.

    Printable bytes map to themselves; the rest are shifted past U+0100 so every byte is a
    visible, whitespace-free character a BPE vocabulary can hold.
    """
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table = {b: chr(b) for b in keep}
    shift = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + shift)
            shift += 1
    return table


def _word_symbols(word: str, byte_map: dict[int, str]) -> tuple[str, ...]:
    chars = [byte_map[b] for b in word.lower().encode("utf-8")]
    return (*chars[:-1], chars[-1] + END)


def _merge_pair(symbols: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    out: list[str] = []
    i = 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            out.append(symbols[i] + symbols[i + 1])
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return tuple(out)


def learn_merges(words: list[str], rounds: int) -> list[tuple[str, str]]:
    """Classic BPE: repeatedly merge the most frequent adjacent pair (ties: smallest pair)."""
    byte_map = bytes_to_unicode()
    corpus = Counter(_word_symbols(w, byte_map) for w in words)
    merges: list[tuple[str, str]] = []
    for _ in range(rounds):
        pairs: Counter[tuple[str, str]] = Counter()
        for symbols, count in corpus.items():
            for pair in pairwise(symbols):
                pairs[pair] += count
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        corpus = Counter({_merge_pair(s, best): c for s, c in corpus.items()})
    return merges


def build_vocab(rounds: int = 256) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The vocabulary (token -> id) and merge list; special tokens come last, as in CLIP."""
    base = list(bytes_to_unicode().values())
    tokens = base + [c + END for c in base]
    merges = learn_merges(_CORPUS, rounds)
    seen = set(tokens)
    for a, b in merges:
        if a + b not in seen:
            tokens.append(a + b)
            seen.add(a + b)
    tokens += [BOS, EOS]
    return {tok: i for i, tok in enumerate(tokens)}, merges


def write_tokenizer(folder: Path, *, model_max_length: int = 77, rounds: int = 256) -> int:
    """Write ``vocab.json``, ``merges.txt`` and the tokenizer configs; returns the vocab size."""
    vocab, merges = build_vocab(rounds)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": model_max_length,
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": EOS,
        "pad_token": EOS,
        "do_lower_case": True,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
    specials = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    (folder / "special_tokens_map.json").write_text(json.dumps(specials, indent=1), encoding="utf-8")
    return len(vocab)
