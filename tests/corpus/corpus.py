"""The official ComfyUI workflow templates (``comfyui-workflow-templates-json`` on PyPI, a test
dependency; never copied into this repository) as a corpus: which load, which round-trip
exactly, which use only node types we implement, and whether their API export validates.

Run ``python -m tests.corpus.corpus`` for the table; ``tests/corpus/test_templates.py`` asserts
on the same survey.

What is counted:

- *workflows*: files holding a UI workflow (an object with a ``nodes`` list). The package also
  ships its catalogue, which is no workflow: ``index.json`` and ``index.<lang>.json`` (the
  template list, per language), ``index.schema.json`` (that list's JSON schema),
  ``index_logo.json`` (a logo per provider) and ``fuse_options.json`` (the catalogue's search
  settings). These are recognised by name and shape and left out; anything else is reported.
- *round trip exact*: ``json.dumps`` of the written workflow equals that of the file (key order
  and number kinds included).
- *fully known*: every node type of the expanded graph has a spec in the registry.
- *API validates*: the API export of a fully known template, read back, has no problem but
  a node's own check of its settings: VE-117, model files (and input images) this machine does
  not have, or VE-116, a sampler a node reports it does not implement yet (listed, not hidden).
- *widget checks*: where a file also names its widget values (``widgets_values_named``, written
  by newer tools) consistently with the list, every value must land on the input of that name.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vortex_jupyter.errors import VortexError
from vortex_jupyter.graph.formats import from_comfy_api, from_comfy_ui, to_comfy_api, to_comfy_ui
from vortex_jupyter.graph.model import GraphModel
from vortex_jupyter.graph.validate import validate

Lookup = Callable[[str], Any]
_CATALOGUE = re.compile(r"^(index(\.[A-Za-z-]+)?|index\.schema|index_logo|fuse_options)\.json$")
#: Problems of a node's own settings checks, allowed in "API validates" (module docstring).
ALLOWED = ("VE-116", "VE-117")


def templates_dir() -> Path:
    import comfyui_workflow_templates_json as pkg

    return Path(pkg.__file__).parent / "templates"


@dataclass
class Template:
    name: str
    loaded: bool = False
    error: str = ""
    exact: bool = False
    missing: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)  # API export problems (fully known only)
    disallowed: list[str] = field(default_factory=list)
    widget_checks: int = 0
    widget_mismatches: list[str] = field(default_factory=list)

    @property
    def known(self) -> bool:
        return self.loaded and not self.missing


@dataclass
class Survey:
    templates: list[Template] = field(default_factory=list)
    catalogue: list[str] = field(default_factory=list)
    unrecognised: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        t = self.templates
        known = [x for x in t if x.known]
        return {
            "files": len(t) + len(self.catalogue) + len(self.unrecognised),
            "catalogue files (not workflows)": len(self.catalogue),
            "workflows": len(t),
            "loaded": sum(x.loaded for x in t),
            "round trip exact": sum(x.exact for x in t),
            "fully known": len(known),
            "API export validates": sum(not x.disallowed for x in known),
            "... with no problem at all": sum(not x.problems for x in known),
            "widget values checked by name": sum(x.widget_checks for x in t),
        }

    def blocking(self) -> list[tuple[str, int]]:
        """Node types we lack, by how many templates they keep from being fully known."""
        c: Counter[str] = Counter()
        for x in self.templates:
            c.update(x.missing)
        return c.most_common()


def survey(lookup: Lookup | None = None, directory: Path | None = None) -> Survey:
    if lookup is None:
        from vortex_jupyter.nodes.registry import REGISTRY

        lookup = REGISTRY.lookup
    out = Survey()
    for path in sorted((directory or templates_dir()).glob("*.json")):
        text = path.read_text(encoding="utf-8")
        data = json.loads(text)
        if isinstance(data, dict) and isinstance(data.get("nodes"), list):
            out.templates.append(_check(path.name, data, lookup))
        elif _CATALOGUE.match(path.name):
            out.catalogue.append(path.name)
        else:
            out.unrecognised.append(path.name)
    return out


def _check(name: str, data: dict[str, Any], lookup: Lookup) -> Template:
    result = Template(name)
    original = json.dumps(data)
    try:
        model = from_comfy_ui(json.loads(original), lookup)
    except VortexError as exc:
        result.error = str(exc)
        return result
    result.loaded = True
    result.exact = json.dumps(to_comfy_ui(model, lookup)) == original
    result.missing = {n.type for n in model.nodes.values() if lookup(n.type) is None and n.id not in model.modes}
    for message in _widget_mismatches(model, lookup, result):
        result.widget_mismatches.append(message)
    if result.known:
        api = json.loads(json.dumps(to_comfy_api(model, lookup)))
        problems = validate(from_comfy_api(api, lookup), lookup)
        result.problems = [str(p) for p in problems]
        result.disallowed = [str(p) for p in problems if p.code not in ALLOWED]
    return result


def _widget_mismatches(model: GraphModel, lookup: Lookup, result: Template) -> Iterator[str]:
    for node in model.nodes.values():
        kept = node.extra.get("comfy_ui") or {}
        raw = kept.get("raw") or {}
        named, values = raw.get("widgets_values_named"), raw.get("widgets_values")
        if not isinstance(named, dict) or list(named.values()) != values or lookup(node.type) is None:
            continue  # only files whose names agree with their own list are evidence
        skip = set(model.inputs_of(node.id)) | set(kept.get("promoted") or {})
        for key, value in named.items():
            if key in node.params and key not in skip:
                result.widget_checks += 1
                if json.dumps(node.params[key]) != json.dumps(value):
                    yield f"{node.id} ({node.type}).{key}: read {node.params[key]!r}, the file names {value!r}"


def table(s: Survey, top: int = 30) -> str:
    lines = [f"{k:<34} {v:>6}" for k, v in s.counts().items()]
    lines.append("")
    lines.append(f"node types we lack, by templates blocked (top {top}):")
    lines += [f"  {t:<40} {n:>4}" for t, n in s.blocking()[:top]]
    bad = [x for x in s.templates if x.disallowed or x.widget_mismatches or not x.exact or not x.loaded]
    for x in bad:
        lines.append(f"! {x.name}: {x.error or (x.disallowed + x.widget_mismatches)[:3] or 'round trip differs'}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(survey()))
