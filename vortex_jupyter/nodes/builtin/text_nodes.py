"""Text nodes of ComfyUI's ``comfy_extras/nodes_string.py`` and ``nodes_text.py`` that templates use:
RegexReplace, RegexExtract, JsonExtractString and SaveText.

Semantics are ComfyUI's, quirks included:

- RegexReplace is ``re.sub(pattern, replace, string, count, flags)`` (``count`` 0 replaces
  all); a bad pattern or replacement fails the node with ``re``'s message and position.
- RegexExtract returns ``""`` for a bad pattern, as ComfyUI does (it catches ``re.error``); we
  also put the pattern's problem in the node's progress text so it is not silent. "All Matches"
  of a pattern with groups joins each match's first group; the joiner is a newline.
- JsonExtractString reads the first ``{`` that starts a valid JSON document (so JSON inside
  Markdown code fences or prose works) and returns ``str(value)`` of the key: Python's text of
  numbers, booleans (``True``) and nested objects, ``""`` when the key is absent or null.
- SaveText writes ``<prefix>_00001.txt`` (``.md``, ``.json``; no trailing underscore, unlike
  SaveImage) under the output folder, with ComfyUI's ``%width%``/``%height%`` filled with 1 as
  ComfyUI passes; "json" is pretty-printed (indent 2) when the text parses, else written as is.
  The text is shown on the node and passed on.

Regular expressions run on Python's ``re``, like ComfyUI's: a pathological pattern can take
long; the engine's node timeout stops it.

>>> RegexReplace().execute("a-b-c", "-", "+", count=1)
('a+b-c',)
>>> JsonExtractString().execute('Here: ```json\\n{"steps": 20}\\n```', "steps")
('20',)
"""

from __future__ import annotations

import json
import re
from typing import Any

from ...errors import PathError
from .. import context
from ..paths import output_root
from .image import claim, save_target

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]

CATEGORY = "text"
_TEXT = ("STRING", {"multiline": True})
_EXTRACT_MODES = ["First Match", "All Matches", "First Group", "All Groups"]
_SAVE_FORMATS = ["txt", "md", "json"]


def _flags(case_insensitive: bool, multiline: bool, dotall: bool) -> int:
    return ((re.IGNORECASE if case_insensitive else 0) | (re.MULTILINE if multiline else 0)
            | (re.DOTALL if dotall else 0))


def _text(node: str, name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{node}: input {name!r} is {type(value).__name__} {value!r:.60}, not text "
                         "(fix: connect a STRING output)")
    return value


class RegexReplace:
    CATEGORY = CATEGORY
    RETURN_TYPES = ("STRING",)
    FUNCTION = "execute"
    DESCRIPTION = "Find and replace text using regex patterns."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"string": _TEXT, "regex_pattern": _TEXT, "replace": _TEXT},
                "optional": {"case_insensitive": ("BOOLEAN", {"default": True}),
                             "multiline": ("BOOLEAN", {"default": False}),
                             "dotall": ("BOOLEAN", {"default": False}),
                             "count": ("INT", {"default": 0, "min": 0, "max": 100})}}

    def execute(self, string: str, regex_pattern: str, replace: str, case_insensitive: bool = True,
                multiline: bool = False, dotall: bool = False, count: int = 0) -> tuple[str]:
        string = _text("RegexReplace", "string", string)
        try:
            return (re.sub(regex_pattern, replace, string, count=count, flags=_flags(case_insensitive, multiline, dotall)),)
        except re.error as exc:
            where = "regex_pattern" if exc.pattern == regex_pattern else "replace"
            raise ValueError(f"RegexReplace: {where} {exc.pattern!r:.200} is not valid: {exc.msg}"
                             f"{_at(exc)} (fix: correct the {where}; escape special characters "
                             "like ( [ . * + ? with a backslash)") from None


def _at(exc: re.error) -> str:
    return f" at position {exc.pos + 1}" if exc.pos is not None else ""


class RegexExtract:
    CATEGORY = CATEGORY
    RETURN_TYPES = ("STRING",)
    FUNCTION = "execute"
    DESCRIPTION = "Extract the first or all matches or groups of a regex pattern (one per line)."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"string": _TEXT, "regex_pattern": _TEXT, "mode": (_EXTRACT_MODES,),
                             "case_insensitive": ("BOOLEAN", {"default": True}),
                             "multiline": ("BOOLEAN", {"default": False}),
                             "dotall": ("BOOLEAN", {"default": False}),
                             "group_index": ("INT", {"default": 1, "min": 0, "max": 100})}}

    def execute(self, string: str, regex_pattern: str, mode: str = "First Match", case_insensitive: bool = True,
                multiline: bool = False, dotall: bool = False, group_index: int = 1) -> tuple[str]:
        string = _text("RegexExtract", "string", string)
        try:
            pattern = re.compile(regex_pattern, _flags(case_insensitive, multiline, dotall))
        except re.error as exc:  # ComfyUI returns "" here; say why on the node
            context.current().progress(0, None, text=f"invalid regex_pattern: {exc.msg}{_at(exc)}")
            return ("",)
        return ("\n".join(_extract(pattern, string, mode, group_index)),)


def _group(match: re.Match[str], index: int) -> list[str]:
    if match.groups() and len(match.groups()) >= index and match.group(index) is not None:
        return [match.group(index)]
    return []


def _extract(pattern: re.Pattern[str], string: str, mode: str, index: int) -> list[str]:
    if mode == "First Match":
        match = pattern.search(string)
        return [match.group(0)] if match else []
    if mode == "All Matches":
        found = pattern.findall(string)
        return [m[0] if isinstance(m, tuple) else m for m in found]
    if mode == "First Group":  # unlike "All Groups", group 0 works without groups (ComfyUI's checks)
        match = pattern.search(string)
        if match is None or len(match.groups()) < index or match.group(index) is None:
            return []
        return [match.group(index)]
    if mode == "All Groups":
        return [text for match in pattern.finditer(string) for text in _group(match, index)]
    raise ValueError(f"RegexExtract: mode {mode!r} is not one of {_EXTRACT_MODES} (fix: pick one of them)")


class JsonExtractString:
    CATEGORY = CATEGORY
    RETURN_TYPES = ("STRING",)
    FUNCTION = "execute"
    DESCRIPTION = "Extract a key's value from the first valid JSON object in the text, including Markdown code blocks."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"json_string": _TEXT, "key": ("STRING", {"multiline": False})}}

    def execute(self, json_string: str, key: str) -> tuple[str]:
        json_string = _text("JsonExtractString", "json_string", json_string)
        decoder = json.JSONDecoder()
        for match in re.finditer(r"\{", json_string):
            try:
                data, _ = decoder.raw_decode(json_string, match.start())
            except json.JSONDecodeError:
                continue
            value = data.get(key)  # a document starting with "{" is always an object
            return ("" if value is None else str(value),)
        return ("",)


class SaveText:
    CATEGORY = CATEGORY
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("text",)
    FUNCTION = "execute"
    OUTPUT_NODE = True
    DESCRIPTION = "Save text content to a file in the output directory."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"text": ("STRING", {"forceInput": True}),
                             "filename_prefix": ("STRING", {"default": "ComfyUI"}),
                             "format": (_SAVE_FORMATS, {"default": "txt"})}}

    def execute(self, text: str, filename_prefix: str = "ComfyUI", format: str = "txt") -> dict[str, Any]:
        text = _text("SaveText", "text", text)
        if format not in _SAVE_FORMATS:
            raise ValueError(f"SaveText: format {format!r} is not one of {_SAVE_FORMATS} (fix: pick one of them)")
        root = output_root()
        try:
            target, subfolder = save_target(root, filename_prefix, size=(1, 1))  # ComfyUI passes 1 x 1
        except PathError as exc:
            raise ValueError(f"SaveText: {exc.message} (fix: {exc.hint})") from None
        with claim(root, subfolder, target.name, f".{format}", sep="") as (name, fh):
            fh.write(_formatted(text, format).encode("utf-8"))
        files = [{"filename": name, "subfolder": subfolder, "type": "output"}]
        return {"ui": {"text": (text,), "files": files}, "result": (text,)}


def _formatted(text: str, format: str) -> str:
    if format == "json":
        try:
            return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        except json.JSONDecodeError:
            pass  # not JSON: saved as it is, as ComfyUI does
    return text


NODE_CLASS_MAPPINGS: dict[str, type] = {
    "RegexReplace": RegexReplace,
    "RegexExtract": RegexExtract,
    "JsonExtractString": JsonExtractString,
    "SaveText": SaveText,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "RegexReplace": "Replace Text (Regex)",
    "RegexExtract": "Extract Text",
    "JsonExtractString": "Extract Text from JSON",
    "SaveText": "Save Text",
}
