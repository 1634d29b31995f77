"""RegexReplace, RegexExtract, JsonExtractString and SaveText: ComfyUI's semantics on the kinds of
text the official templates feed them (LLM answers with code fences, JSON in prose)."""

from __future__ import annotations

import json

import pytest

from vortex_jupyter.nodes import context
from vortex_jupyter.nodes.builtin.text_nodes import JsonExtractString, RegexExtract, RegexReplace, SaveText

FENCED = 'Sure! Here it is:\n```json\n{"prompt": "a red fox", "steps": 20, "mu": 0.0}\n```\nEnjoy.'


class Recorder(context.NodeContext):
    def __init__(self) -> None:
        self.texts: list[str] = []

    def progress(self, value, total=None, text=None):
        self.texts.append(text)


@pytest.fixture
def recorder():
    ctx = Recorder()
    token = context.activate(ctx)
    yield ctx
    context.deactivate(token)


# ----------------------------------------------------------------------------- RegexReplace


def test_regex_replace_strips_code_fences_as_the_templates_chain_it():
    # two RegexReplace nodes of api_* templates: "^```(?:json)?\s*\n?" then "\n?```\s*$", count 1
    text = '```json\n{"a": 1}\n```'
    first = RegexReplace().execute(text, r"^```(?:json)?\s*\n?", "", False, False, False, 1)[0]
    assert RegexReplace().execute(first, r"\n?```\s*$", "", False, False, False, 1) == ('{"a": 1}',)


@pytest.mark.parametrize(("args", "expected"), [
    (("Cat cat CAT", "cat", "dog"), "dog dog dog"),  # case_insensitive defaults to True
    (("Cat cat CAT", "cat", "dog", False), "Cat dog CAT"),
    (("a-b-c-d", "-", "+", True, False, False, 2), "a+b+c-d"),  # count limits the replacements
    (("a\nab", "^a", "X", True, True), "X\nXb"),  # multiline: ^ at each line
    (("a\nb", "a.b", "X"), "a\nb"),
    (("a\nb", "a.b", "X", True, False, True), "X"),  # dotall: . matches the newline
    (("name: fox", r"name: (\w+)", r"<\1>"), "<fox>"),  # group references in the replacement
    (('say "hi"', '"', '\\\\"'), 'say \\"hi\\"'),  # a template's escape-the-quotes rule
])
def test_regex_replace_is_re_sub_with_comfyuis_flags(args, expected):
    assert RegexReplace().execute(*args) == (expected,)


@pytest.mark.parametrize(("pattern", "replace", "problem"), [
    ("(unclosed", "", "regex_pattern '(unclosed' is not valid: missing ), unterminated subpattern at position 1"),
    ("(a)", r"\9", r"replace '\\9' is not valid: invalid group reference 9"),
])
def test_regex_replace_names_the_bad_pattern_or_replacement(pattern, replace, problem):
    with pytest.raises(ValueError) as caught:
        RegexReplace().execute("abc", pattern, replace)
    assert problem in str(caught.value) and "(fix: " in str(caught.value)


def test_regex_replace_wants_text():
    with pytest.raises(ValueError, match="input 'string' is int 5, not text"):
        RegexReplace().execute(5, "a", "b")


# ----------------------------------------------------------------------------- RegexExtract

TEXT = "id=12 name=fox; id=7 name=owl"


@pytest.mark.parametrize(("pattern", "mode", "index", "expected"), [
    (r"id=\d+", "First Match", 1, "id=12"),
    (r"id=\d+", "All Matches", 1, "id=12\nid=7"),
    (r"id=(\d+) name=(\w+)", "All Matches", 1, "12\n7"),  # groups: the first group of each match
    (r"id=(\d+) name=(\w+)", "First Group", 2, "fox"),
    (r"id=(\d+) name=(\w+)", "All Groups", 2, "fox\nowl"),
    (r"id=(\d+)", "First Group", 3, ""),  # no such group
    (r"id=\d+", "First Group", 0, "id=12"),  # group 0 works without groups in "First Group" ...
    (r"id=\d+", "All Groups", 0, ""),  # ... but not in "All Groups" (ComfyUI's checks differ)
    (r"ID=\d+", "First Match", 1, "id=12"),  # case_insensitive defaults to True
    (r"zzz", "All Matches", 1, ""),
])
def test_regex_extract_modes(pattern, mode, index, expected):
    assert RegexExtract().execute(TEXT, pattern, mode, True, False, False, index) == (expected,)


def test_regex_extract_reads_a_templates_negative_prompt_split():
    prompt = "a quiet harbour at dawn --no people, boats"
    before = RegexExtract().execute(prompt, r"^(.+?)(?=\s+--no)", "First Match", True, False, False, 1)
    after = RegexExtract().execute(prompt, r"(?<=--no\s)(.+)$", "First Match", True, False, False, 1)
    assert (before, after) == (("a quiet harbour at dawn",), ("people, boats",))


def test_a_bad_extract_pattern_gives_empty_text_as_in_comfyui_and_says_why(recorder):
    assert RegexExtract().execute("abc", "(unclosed", "First Match") == ("",)
    assert recorder.texts == ["invalid regex_pattern: missing ), unterminated subpattern at position 1"]


# ----------------------------------------------------------------------------- JsonExtractString


@pytest.mark.parametrize(("text", "key", "expected"), [
    (FENCED, "prompt", "a red fox"),
    (FENCED, "steps", "20"),
    (FENCED, "mu", "0.0"),
    (FENCED, "missing", ""),
    ('{"a": null}', "a", ""),
    ('{"flag": true, "nested": {"x": [1, 2]}}', "flag", "True"),  # Python's str(), as ComfyUI
    ('{"flag": true, "nested": {"x": [1, 2]}}', "nested", "{'x': [1, 2]}"),
    ('see {not json} and then {"k": "v"}', "k", "v"),  # the first brace that starts valid JSON
    ('{"outer": {"k": "inner"}, "k": "outer"}', "k", "outer"),  # the first document, at its top level
    ("no json here", "k", ""),
])
def test_json_extract_string(text, key, expected):
    assert JsonExtractString().execute(text, key) == (expected,)


# ----------------------------------------------------------------------------- SaveText


@pytest.fixture
def output_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("VORTEX_OUTPUT_DIR", str(tmp_path))
    return tmp_path


def test_save_text_writes_numbered_files_without_a_trailing_underscore(output_dir):
    first = SaveText().execute("hello", "notes/answer", "txt")
    second = SaveText().execute("again", "notes/answer", "md")
    third = SaveText().execute("third", "notes/answer", "txt")
    assert first["result"] == ("hello",) and first["ui"]["text"] == ("hello",)
    assert first["ui"]["files"] == [{"filename": "answer_00001.txt", "subfolder": "notes", "type": "output"}]
    assert second["ui"]["files"][0]["filename"] == "answer_00001.md"  # counted per extension here
    assert third["ui"]["files"][0]["filename"] == "answer_00002.txt"
    assert (output_dir / "notes" / "answer_00002.txt").read_text(encoding="utf-8") == "third"


def test_save_text_pretty_prints_valid_json_and_keeps_anything_else(output_dir):
    SaveText().execute('{"a":[1,2],"ü":"x"}', "data", "json")
    SaveText().execute("{not json", "data", "json")
    assert (output_dir / "data_00001.json").read_text(encoding="utf-8") == json.dumps(
        {"a": [1, 2], "ü": "x"}, indent=2, ensure_ascii=False)
    assert (output_dir / "data_00002.json").read_text(encoding="utf-8") == "{not json"


def test_save_text_fills_in_comfyuis_size_variables_with_one(output_dir):
    result = SaveText().execute("x", "size_%width%x%height%", "txt")
    assert result["ui"]["files"][0]["filename"] == "size_1x1_00001.txt"


@pytest.mark.parametrize(("args", "problem"), [
    (("x", "../escape", "txt"), "unsafe file name '../escape'"),
    (("x", "ok", "exe"), "format 'exe' is not one of ['txt', 'md', 'json']"),
    ((["x"], "ok", "txt"), "input 'text' is list"),
])
def test_save_text_refuses_bad_input_with_a_fix(output_dir, args, problem):
    with pytest.raises(ValueError) as caught:
        SaveText().execute(*args)
    assert problem in str(caught.value) and "(fix: " in str(caught.value)
    assert not list(output_dir.parent.glob("escape*"))
