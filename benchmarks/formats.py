"""Formats benchmark: load + validate + API export of ComfyUI UI workflows, beside ``json.loads``
of the same text measured in the same run.

Two inputs:

- the largest template of the official corpus (``comfyui-workflow-templates-json``; subgraphs
  and all), loaded with the real registry;
- a generated 10k-node UI workflow: a random DAG of IntAdd nodes (each reads up to two earlier
  nodes through converted widgets, seeded), written by our own UI writer and read back.

Rows: ``json.loads`` (the baseline), ``load`` (text -> model: parse, expand, map widgets,
connect), ``validate``, ``API export`` (``to_comfy_api``), ``UI export`` (``to_comfy_ui``), and
``load+validate+API`` (the path of "queue this workflow"). Each figure is the best of
``--repeat`` runs (the machine is shared; the minimum is the stable part); the ratio column
divides by ``json.loads`` of the same text.

Run: ``python benchmarks/formats.py`` (``--repeat N``, ``--nodes N`` for the generated file).
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vortex_jupyter.graph.formats import load_any, to_comfy_api, to_comfy_ui
from vortex_jupyter.graph.model import GraphModel
from vortex_jupyter.graph.validate import validate
from vortex_jupyter.nodes.registry import REGISTRY

LOOKUP = REGISTRY.lookup


def largest_template() -> tuple[str, str]:
    import comfyui_workflow_templates_json as pkg

    folder = Path(pkg.__file__).parent / "templates"
    paths = [p for p in folder.glob("*.json") if not p.name.startswith(("index", "fuse_"))]
    path = max(paths, key=lambda p: p.stat().st_size)
    return path.name, path.read_text(encoding="utf-8")


def generated(n: int, seed: int = 0) -> str:
    """A UI workflow of ``n`` IntAdd nodes, random DAG links into ``a``/``b`` (seeded)."""
    rng = random.Random(seed)
    m = GraphModel()
    ids = [m.add_node("IntAdd", {"a": i % 7, "b": 1}, id=str(i + 1), pos=(i % 100 * 300, i // 100 * 120))
           for i in range(n)]
    for i in range(1, n):
        for port, src in zip("ab", rng.sample(range(i), min(i, 2))):
            m.connect(ids[src], 0, ids[i], port)
    return json.dumps(to_comfy_ui(m, LOOKUP))


def _best(fn: Callable[[], Any], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure(text: str, repeat: int) -> dict[str, float]:
    model = load_any(text, LOOKUP)
    return {
        "json.loads": _best(lambda: json.loads(text), repeat),
        "load": _best(lambda: load_any(text, LOOKUP), repeat),
        "validate": _best(lambda: validate(model, LOOKUP), repeat),
        "API export": _best(lambda: to_comfy_api(model, LOOKUP), repeat),
        "UI export": _best(lambda: to_comfy_ui(model, LOOKUP), repeat),
        "load+validate+API": _best(lambda: _queue(text), repeat),
    }


def _queue(text: str) -> None:
    model = load_any(text, LOOKUP)
    validate(model, LOOKUP)
    to_comfy_api(model, LOOKUP)


def report(label: str, text: str, repeat: int) -> None:
    model = load_any(text, LOOKUP)
    times = measure(text, repeat)
    base = times["json.loads"]
    print(f"{label}: {len(text) / 1e6:.2f} MB, {len(model.nodes):,} nodes after expansion (best of {repeat})")
    for name, t in times.items():
        print(f"  {name:<20}{t * 1e3:>9.2f} ms {t / base:>7.1f}x json.loads")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5, help="best of N")
    ap.add_argument("--nodes", type=int, default=10_000, help="nodes of the generated workflow")
    args = ap.parse_args()
    LOOKUP("IntAdd")  # load the registry before timing anything
    name, text = largest_template()
    report(f"largest template ({name})", text, args.repeat)
    report(f"generated {args.nodes:,}-node UI workflow", generated(args.nodes), args.repeat)


if __name__ == "__main__":
    main()
