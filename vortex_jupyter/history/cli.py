"""``vortex history`` and ``vortex reproduce`` (wired into ``vortex_jupyter/cli.py``).

    vortex history [--status S] [--since WHEN] [--node-type T] [--origin O] [--limit N] [--json]
    vortex history show RUN_ID [--json]
    vortex reproduce IMAGE.png [-o DIR]

``reproduce`` rebuilds the graph from the PNG (ComfyUI's ``workflow``/``prompt`` chunks), says
precisely how this environment differs from the one recorded in its ``vortex`` chunk (versions,
devices, threads, node packs and their locks, each model file's hash) and which nodes' cache
keys differ, runs it, and compares the image the same node writes now with the original:
"bit-identical" (exit 0) or the largest pixel difference (exit 1).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ..errors import FormatError

EXIT_OK, EXIT_FAILED = 0, 1


def add_parsers(sub: Any) -> None:
    hist = sub.add_parser("history", help="list recorded runs (or `history show RUN_ID`)")
    hist.add_argument("show", nargs="*", metavar="show RUN_ID", help="one run in full")
    hist.add_argument("--status", action="append", help="ok, failed, cancelled, interrupted, running")
    hist.add_argument("--since", help="a date or time, e.g. 2026-12-01 or '2026-12-01 14:00'")
    hist.add_argument("--until")
    hist.add_argument("--node-type", help="runs with a node of this type")
    hist.add_argument("--origin", help="notebook, canvas, cli, queue, server")
    hist.add_argument("--limit", type=int, default=50)
    hist.add_argument("--json", action="store_true")
    rep = sub.add_parser("reproduce", help="re-run the graph an image records and compare the result")
    rep.add_argument("image")
    rep.add_argument("-o", "--output-dir", help="where the new image goes (default: a temporary folder)")


def cmd_history(args: argparse.Namespace) -> int:
    from .table import history

    table = history()
    if args.show:
        if args.show[0] != "show" or len(args.show) != 2:
            raise FormatError(f"unknown history command {' '.join(args.show)!r}", hint="vortex history show RUN_ID")
        rec = table.run(args.show[1])
        if args.json:
            print(json.dumps({"run": rec.row._asdict(),
                              "nodes": rec.nodes, "outputs": [{k: v for k, v in o.items() if k != "thumbnail"}
                                                              for o in rec.outputs]}, indent=1, default=str))
            return EXIT_OK
        r = rec.row
        print(f"run {r.id}: {r.status} ({r.origin or '?'}, {r.who or '?'}) at {r.when:%Y-%m-%d %H:%M:%S}, "
              f"{(r.elapsed or 0) * 1000:.1f} ms: ran {r.ran or 0}, cached {r.cached or 0}, failed {r.failed or 0}")
        for n in rec.nodes:
            took = f"{n['elapsed'] * 1000:9.1f} ms" if n["elapsed"] is not None else " " * 12
            err = f"  [{n['code']}] {(n['message'] or '').splitlines()[0] if n['message'] else ''}" if n["code"] else ""
            print(f"  {n['node']:>8} {n['type'] or '':<28} {n['status']:<7} {took}{err}")
        for o in rec.outputs:
            print(f"  wrote {o['path']} (sha256 {o['sha256'][:16]}...)")
        return EXIT_OK
    table = table.filter(status=args.status, since=args.since, until=args.until, node_type=args.node_type,
                         origin=args.origin, limit=args.limit)
    if args.json:
        print(json.dumps(table.to_dicts(), indent=1, default=str))
    else:
        print(table)
    return EXIT_OK


def _pixels(path: Path) -> Any:
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGBA"), dtype=np.int16)


def cmd_reproduce(args: argparse.Namespace) -> int:
    from PIL import Image

    from .._api import load
    from .provenance import compare, compare_models

    src = Path(args.image)
    if not src.is_file():
        raise FormatError(f"no such file: {args.image!r}", hint="give a PNG written by vortex run or SaveImage")
    with Image.open(src) as im:
        text = dict(getattr(im, "text", {}) or {})
    graph = load(str(src))
    try:
        rec: dict[str, Any] = json.loads(text["vortex"]) if "vortex" in text else {}
    except ValueError:
        rec = {}
    print(f"reproducing {src}" + (f" (node {rec['node']})" if rec.get("node") else ""))
    if not rec:
        print("  no vortex record in this image (made elsewhere, e.g. by ComfyUI): the environment cannot be "
              "checked; running the graph it carries")
    diffs = compare(rec.get("environment", {})) + compare_models(rec.get("models", {}), graph.model) if rec else []
    if rec:
        if diffs:
            print(f"  the environment differs from the recorded one in {len(diffs)} way(s):")
            for d in diffs:
                print(f"    {d}")
        else:
            print("  environment: as recorded (versions, devices, threads, packs, model files)")
    out_dir = Path(args.output_dir) if args.output_dir else Path(tempfile.mkdtemp(prefix="vortex-reproduce-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    os.environ["VORTEX_OUTPUT_DIR"] = str(out_dir.resolve())
    run = graph.run(origin="reproduce")
    if run.errors:
        for node, err in run.errors.items():
            print(f"  node {node}: [{err.code}] {err.message.splitlines()[0] if err.message else ''}")
        print("result: the run failed")
        return EXIT_FAILED
    keys = graph.engine.keys.keys
    changed = sorted(n for n, k in rec.get("keys", {}).items() if n in keys and keys[n] != k)
    if changed:
        print(f"  cache keys differ for node(s) {', '.join(changed)}: their code, params or inputs changed")
    writer = rec.get("node")
    made = [Path(out_dir) / str(i.get("subfolder") or "") / str(i["filename"])
            for n, ui in run._state.ui.items() if writer is None or n == writer
            for i in ui.get("images", []) if i.get("type", "output") == "output"]
    if not made:
        print("result: the graph wrote no image to compare")
        return EXIT_FAILED
    original = _pixels(src)
    best, best_path = None, made[0]
    for path in made:
        new = _pixels(path)
        diff = int(abs(new - original).max()) if new.shape == original.shape else 256
        if best is None or diff < best:
            best, best_path = diff, path
    if best == 0:
        print(f"result: bit-identical ({best_path})")
        return EXIT_OK
    what = "a different size" if best == 256 else f"max pixel difference {best} of 255"
    print(f"result: differs: {what} ({best_path})")
    return EXIT_FAILED

