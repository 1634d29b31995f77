"""ComfyUI's prompt syntax (prompt.py): weights, escapes, embedding words, 77-token windows.

The weight cases are the examples ComfyUI documents for ``token_weights`` in comfy/sd1_clip.py
(published behaviour, issue #4610); the windows are checked against the packing rules written
out in the tests (BOS, at most 75 items, EOS, EOS padding; short pieces never split).
"""

from __future__ import annotations

from typing import Any

import pytest

from vortex_jupyter.nodes.diffusion import prompt

DOCUMENTED = [
    ("(foo)", [("foo", 1.1)]),
    ("(foo)(bar)", [("foo", 1.1), ("bar", 1.1)]),
    ("(foo:2.0)", [("foo", 2.0)]),
    ("((foo))", [("foo", 1.21)]),
    ("((foo):1.1)", [("foo", 1.21)]),
    ("((foo:1.1))", [("foo", 1.1)]),
    ("(foo:0.0)", [("foo", 0.0)]),
    ("((foo:1.0):0.0)", [("foo", 1.0)]),
    ("foo ((((lol (cat:666) attack:100)))) baz",
     [("foo ", 1.0), ("lol ", 100.0), ("cat", 666.0), (" attack", 100.0), (" baz", 1.0)]),
    ("foo ((((lol (cat:666) attack):100))) baz",
     [("foo ", 1.0), ("lol ", 110.0), ("cat", 666.0), (" attack", 110.0), (" baz", 1.0)]),
]


@pytest.mark.parametrize(("text", "want"), DOCUMENTED)
def test_weights_follow_comfyuis_documented_examples(text: str, want: list[tuple[str, float]]) -> None:
    got = prompt.token_weights(text, 1.0)
    assert [t for t, _ in got] == [t for t, _ in want]
    assert [w for _, w in got] == pytest.approx([w for _, w in want])


def test_parentheses_split_at_top_level_only() -> None:
    assert prompt.parse_parentheses("(foo)(bar)") == ["(foo)", "(bar)"]
    assert prompt.parse_parentheses("(foo(bar)(test1))(test2(test3))") == ["(foo(bar)(test1))", "(test2(test3))"]
    assert prompt.parse_parentheses("a (b") == ["a ", "(b"]  # unclosed: kept as text


def test_escaped_brackets_are_text_with_weight_one() -> None:
    pieces = prompt.token_weights(prompt.escape_important(r"\(foo\) (bar)"), 1.0)
    assert [(prompt.unescape_important(t), w) for t, w in pieces] == [("(foo) ", 1.0), ("bar", pytest.approx(1.1))]


def test_a_colon_that_is_not_a_number_stays_in_the_text() -> None:
    assert prompt.token_weights("(a:b)", 1.0) == [("a:b", pytest.approx(1.1))]


def test_embedding_words_start_after_whitespace_only() -> None:
    assert prompt.split_words("a photo embedding:x, of embedding:y") == ["a photo ", "embedding:x, of ", "embedding:y"]
    assert prompt.split_words("embedding:x cat") == ["embedding:x cat"]
    assert prompt.split_words("a,embedding:x") == ["a,embedding:x"]


@pytest.mark.parametrize(("word", "name", "leftover"), [
    ("embedding:x, of ", "x,", "of"),
    ("embedding:x<lora:y:1> rest", "x", "<lora:y:1> rest"),
    ("embedding:x[y]", "x", "[y]"),
    ("embedding: spaced", "spaced", ""),
    ("embedding:sub/name.pt\n", "sub/name.pt", ""),
])
def test_embedding_name_ends_at_whitespace_or_a_bracket(word: str, name: str, leftover: str) -> None:
    assert prompt.embedding_name(word) == (name, leftover)


class Fake:
    """A tokenizer stand-in: one token per non-space character (ids = code points)."""

    def __init__(self, embeddings: dict[str, list[Any]] | None = None) -> None:
        self.embeddings = embeddings or {}
        self.warnings: list[str] = []
        self.asked: list[str] = []

    def words(self, text: str) -> list[int]:
        return [ord(c) for c in text if not c.isspace()]

    def resolve(self, name: str) -> Any:
        self.asked.append(name)
        return self.embeddings.get(name)

    def run(self, text: str) -> list[list[Any]]:
        return prompt.tokenize(text, self.words, self.resolve, self.warnings.append, bos=1, eos=2)


def _check_windows(windows: list[list[Any]]) -> None:
    for w in windows:
        assert len(w) == prompt.WINDOW and w[0] == (1, 1.0)
        body = [i for i, _ in w[1:]]
        end = body.index(2)
        assert all(i == 2 for i in body[end:])  # EOS, then EOS padding


def test_an_embedding_becomes_its_rows_with_the_groups_weight() -> None:
    fake = Fake({"style": ["v1", "v2"]})
    (window,) = fake.run("ab (embedding:style:1.5) c")
    _check_windows([window])
    assert window[1:6] == [(97, 1.0), (98, 1.0), ("v1", 1.5), ("v2", 1.5), (99, 1.0)]


def test_a_missing_embedding_is_dropped_with_comfyuis_warning_and_the_rest_kept() -> None:
    fake = Fake()
    (window,) = fake.run("a embedding:nope bc")
    assert [i for i, _ in window[1:4]] == [97, 98, 99] and window[4] == (2, 1.0)
    assert fake.warnings == ["warning, embedding:nope does not exist, ignoring"]


def test_trailing_commas_are_tried_off_an_embedding_name() -> None:
    fake = Fake({"style": ["v"]})
    (window,) = fake.run("embedding:style, x")
    assert fake.asked == ["style,", "style"]
    assert [i for i, _ in window[1:4]] == ["v", ord(","), ord("x")] and not fake.warnings


def test_short_pieces_move_whole_to_the_next_window_and_long_ones_split() -> None:
    fake = Fake()
    filler = "a" * 70
    short = fake.run(f"{filler} (bcdefg:1.2)")  # 70 + 6 > 75: the 6 move on
    _check_windows(short)
    assert [i for i, _ in short[1][1:7]] == [ord(c) for c in "bcdefg"] and len(short) == 2
    long = fake.run(f"{filler} (bcdefghijk:1.2)")  # 10 tokens >= 8: split at the edge
    _check_windows(long)
    assert [i for i, _ in long[0][71:76]] == [ord(c) for c in "bcdef"]
    assert [i for i, _ in long[1][1:6]] == [ord(c) for c in "ghijk"]


def test_a_plain_prompt_packs_like_a_flat_75_token_split() -> None:
    fake = Fake()
    text = "x" * 200
    windows = fake.run(text)
    _check_windows(windows)
    flat = [i for w in windows for i, _ in w if i not in (1, 2)]
    assert flat == [ord("x")] * 200 and [sum(i == 120 for i, _ in w) for w in windows] == [75, 75, 50]
