"""ComfyUI's prompt syntax for SD1 text encoders: weights, escapes, ``embedding:`` and 77-token windows.

Torch-free; ``text.py`` turns the windows into CONDITIONING. The rules are ComfyUI's
(``comfy/sd1_clip.py``), re-implemented and checked against its documented examples:

- ``(words)`` multiplies the weight of ``words`` by 1.1, nesting multiplies again;
  ``(words:1.3)`` sets it (a weight written *inside* a group replaces the 1.1 of that group,
  ``((a):1.1)`` gives 1.21, ``((a:1.1))`` gives 1.1); ``\\(`` and ``\\)`` are literal brackets.
- ``embedding:name`` at the start of a weighted piece or after whitespace inserts the vectors of
  ``embeddings/name`` (``.safetensors``, ``.pt`` or ``.bin`` may be left out); the name ends at
  whitespace, ``<`` or ``[``, and trailing commas are tried off when the name is not found.
  ``(embedding:name:1.2)`` weights its vectors like words. A missing embedding is dropped with a
  warning, and the text after it is kept.
- Pieces are tokenised separately (without BOS/EOS), then packed into windows of 77: BOS, up to
  75 tokens, EOS, EOS padding. A piece shorter than 8 tokens that does not fit moves whole to the
  next window; longer pieces are split at the window edge.

A window is a list of ``(item, weight)``: ``item`` is a token id, or an embedding vector
(whatever ``resolve`` returned: ``text.py`` passes tensors).

>>> token_weights("a (b:1.5) ((c))", 1.0)
[('a ', 1.0), ('b', 1.5), (' ', 1.0), ('c', 1.2100000000000002)]
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

EMBEDDING = "embedding:"
WINDOW = 77
MAX_WORD = 8  # pieces shorter than this stay in one window (ComfyUI's max_word_length)
_OPEN, _CLOSE = "\0\2", "\0\1"  # stand-ins for escaped brackets while weights are parsed

Item = tuple[Any, float]


def escape_important(text: str) -> str:
    return text.replace("\\)", _CLOSE).replace("\\(", _OPEN)


def unescape_important(text: str) -> str:
    return text.replace(_CLOSE, ")").replace(_OPEN, "(")


def parse_parentheses(text: str) -> list[str]:
    """Split ``text`` into top-level pieces: plain runs and whole ``(...)`` groups."""
    pieces: list[str] = []
    current = ""
    depth = 0
    for ch in text:
        if ch == "(" and depth == 0:
            if current:
                pieces.append(current)
            current = "("
            depth = 1
        elif ch == "(":
            current += ch
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                pieces.append(current + ")")
                current = ""
            else:  # nested, or a stray ")" (depth < 0), which ComfyUI keeps as text
                current += ch
        else:
            current += ch
    if current:
        pieces.append(current)
    return pieces


def token_weights(text: str, weight: float) -> list[tuple[str, float]]:
    """``(text piece, weight)`` pairs, groups unwrapped (see the module docstring)."""
    out: list[tuple[str, float]] = []
    for piece in parse_parentheses(text):
        if len(piece) < 2 or piece[0] != "(" or piece[-1] != ")":
            out.append((piece, weight))
            continue
        inner = piece[1:-1]
        inner_weight = weight * 1.1  # every group multiplies, unless it states its own weight
        colon = inner.rfind(":")
        if colon > 0:
            try:
                inner_weight = float(inner[colon + 1:])
                inner = inner[:colon]
            except ValueError:
                pass
        out.extend(token_weights(inner, inner_weight))
    return out


def split_words(piece: str) -> list[str]:
    """A weighted piece cut before each ``embedding:`` that follows whitespace."""
    parts = re.split(r"(?<=\s)" + re.escape(EMBEDDING), piece)
    words = [parts[0]] + [EMBEDDING + p for p in parts[1:]]
    return [w for w in words if w]


def embedding_name(word: str) -> tuple[str, str]:
    """``(name, leftover text)`` of a word that starts with ``embedding:``."""
    rest = word[len(EMBEDDING):].strip("\n").split()
    name, leftover = (rest[0], " ".join(rest[1:])) if rest else ("", "")
    cut = re.search(r"[<\[]", name)
    if cut is not None:
        leftover = name[cut.start():] + (" " + leftover if leftover else "")
        name = name[:cut.start()]
    return name, leftover


Resolve = Callable[[str], Any]  # embedding name -> rows (a sequence of vectors), or None if missing
Warn = Callable[[str], None]


def _embedding_items(word: str, weight: float, resolve: Resolve, warn: Warn) -> tuple[list[Item], str]:
    """The vectors of an ``embedding:`` word (empty if missing) and the text left after it."""
    name, leftover = embedding_name(word)
    rows = resolve(name)
    if rows is None:
        stripped = name.strip(",")
        if len(stripped) < len(name):  # "embedding:name," : the comma is text
            rows = resolve(stripped)
            leftover = f"{name[len(stripped):]} {leftover}"
    if rows is None:
        warn(f"warning, embedding:{name} does not exist, ignoring")
        return [], leftover
    return [(row, weight) for row in rows], leftover


def tokenize(text: str, encode_words: Callable[[str], list[int]], resolve: Resolve, warn: Warn,
             bos: int, eos: int) -> list[list[Item]]:
    """The prompt as 77-item windows; ``encode_words`` gives token ids without BOS/EOS."""
    return pack(groups(text, encode_words, resolve, warn), bos, eos)


def groups(text: str, encode_words: Callable[[str], list[int]], resolve: Resolve, warn: Warn
           ) -> list[list[Item]]:
    """The prompt's weighted pieces (a word's tokens, or an embedding's rows), before packing."""
    groups: list[list[Item]] = []
    for piece, weight in token_weights(escape_important(text), 1.0):
        for word in split_words(unescape_important(piece)):
            if word.startswith(EMBEDDING):
                items, word = _embedding_items(word, weight, resolve, warn)
                if items:
                    groups.append(items)
                if not word:
                    continue
            groups.append([(t, weight) for t in encode_words(word)])
    return groups


def pack(groups: list[list[Item]], bos: int, eos: int) -> list[list[Item]]:
    """Groups of items into windows of ``WINDOW`` (BOS, items, EOS, EOS padding)."""
    window: list[Item] = [(bos, 1.0)]
    windows = [window]
    for group in groups:
        large = len(group) >= MAX_WORD
        while group:
            room = WINDOW - 1 - len(window)  # keep one place for EOS
            if len(group) <= room:
                window.extend(group)
                break
            if large:  # split the piece at the window edge
                window.extend(group[:room])
                group = group[room:]
                window.append((eos, 1.0))
            else:  # move the whole piece to the next window
                window.extend([(eos, 1.0)] * (room + 1))
            window = [(bos, 1.0)]
            windows.append(window)
    window.append((eos, 1.0))
    window.extend([(eos, 1.0)] * (WINDOW - len(window)))
    return windows
