"""Canvas benchmark: the real widget bundle vs litegraph in the same headless Chromium run.

Builds the widget (``npm --prefix js run build``) and the page bundle (``build.mjs``), serves
the repository on 127.0.0.1, and for each graph size renders the same synthetic graph with
both renderers: first render time, then frame rate while panning, zooming and with the
whole graph on screen (one forced redraw per animation frame). Prints a table with the
ratio and checks the targets of issue 5::

    python benchmarks/canvas/run.py [--sizes 500,2000,10000] [--frames 90] [--no-build]
"""

from __future__ import annotations

import argparse
import functools
import http.server
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def build() -> None:
    subprocess.run(["npm", "--prefix", str(ROOT / "js"), "run", "build"], check=True, capture_output=True)
    subprocess.run(["node", str(ROOT / "benchmarks/canvas/build.mjs")], check=True)


def serve() -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(_QuietHandler, directory=str(ROOT))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def measure(sizes: list[int], frames: int, repeats: int) -> tuple[dict[int, dict[str, Any]], list[str]]:
    from playwright.sync_api import sync_playwright

    server, base = serve()
    profile = tempfile.mkdtemp(prefix="vx-bench-profile-")
    errors: list[str] = []
    results: dict[int, dict[str, Any]] = {}
    try:
        with sync_playwright() as p:
            # A fresh profile per run; playwright passes it as --user-data-dir.
            # --expose-gc: both renderers start their timed first render from a collected heap.
            browser = p.chromium.launch_persistent_context(
                profile, executable_path="/usr/bin/chromium", args=[*CHROMIUM_ARGS, "--js-flags=--expose-gc"],
                viewport={"width": 1300, "height": 800})
            page = browser.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{base}/benchmarks/canvas/bench.html")
            page.wait_for_function("window.vxBench !== undefined")
            for n in sizes:
                ours = page.evaluate("([n, f, r]) => window.vxBench.runOurs(n, f, r)", [n, frames, repeats])
                lite = page.evaluate("([n, f]) => window.vxBench.runLitegraph(n, f)", [n, frames])
                results[n] = {"vortex": ours, "litegraph": lite}
            browser.close()
    finally:
        server.shutdown()
        shutil.rmtree(profile, ignore_errors=True)
    return results, errors


def table(results: dict[int, dict[str, Any]]) -> list[str]:
    lines = [f"{'nodes':>6} {'metric':<22} {'vortex':>10} {'litegraph':>10} {'ratio':>8}",
             "-" * 60]
    for n, r in results.items():
        ours, lite = r["vortex"], r["litegraph"]
        lines.append(f"{n:>6} {'first render (ms)':<22} {ours['firstRenderMs']:>10.1f} "
                     f"{lite['firstRenderMs']:>10.1f} {lite['firstRenderMs'] / ours['firstRenderMs']:>7.1f}x")
        if "firstRenderMinMs" in ours:
            lines.append(f"{n:>6} {'  vortex best of runs':<22} {ours['firstRenderMinMs']:>10.1f} {'-':>10} {'':>8}")
        if "syncApplyMs" in ours:  # where vortex's first render goes: yjs sync vs drawing
            lines.append(f"{n:>6} {'  of which y-sync (ms)':<22} {ours['syncApplyMs']:>10.1f} {'-':>10} {'':>8}")
            lines.append(f"{n:>6} {'  of which draw (ms)':<22} {ours['firstDrawMs']:>10.1f} {'-':>10} {'':>8}")
        for key in ("pan", "zoom", "whole"):
            a, b = ours[key], lite[key]
            lines.append(f"{n:>6} {key + ' fps':<22} {a['fps']:>10.1f} {b['fps']:>10.1f} {a['fps'] / b['fps']:>7.1f}x")
            lines.append(f"{n:>6} {key + ' draw ms (mean)':<22} {a['meanDrawMs']:>10.2f} {b['meanDrawMs']:>10.2f} "
                         f"{b['meanDrawMs'] / max(a['meanDrawMs'], 1e-3):>7.1f}x")
    lines.append("ratio: litegraph time / vortex time, or vortex fps / litegraph fps (>1 = vortex faster)")
    lines.append("vortex first render: median of --repeats fresh mounts (litegraph: one, it is slow)")
    return lines


def check_targets(results: dict[int, dict[str, Any]]) -> list[str]:
    fails: list[str] = []
    if 2000 in results and results[2000]["vortex"]["whole"]["fps"] < 45:
        fails.append("2,000 nodes whole-graph < 45 fps")
    if 10000 in results:
        ours = results[10000]["vortex"]
        if ours["firstRenderMs"] > 300:
            fails.append("10,000 nodes first render > 300 ms")
        if ours["whole"]["fps"] < 30:
            fails.append("10,000 nodes whole-graph < 30 fps")
    for n, r in results.items():
        for key in ("pan", "zoom", "whole"):
            if r["vortex"][key]["fps"] < 0.95 * r["litegraph"][key]["fps"]:  # both may sit at vsync
                fails.append(f"{n} nodes {key}: slower than litegraph")
    return fails


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="500,2000,10000")
    ap.add_argument("--frames", type=int, default=90)
    ap.add_argument("--repeats", type=int, default=3, help="vortex first renders (median reported)")
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args(argv)
    if not args.no_build:
        build()
    results, errors = measure([int(s) for s in args.sizes.split(",")], args.frames, args.repeats)
    print("\n".join(table(results)))
    fails = check_targets(results)
    print("targets:", "all met" if not fails else "; ".join(fails))
    if errors:
        print("browser console errors:", *errors, sep="\n  ")
    return 1 if fails or errors else 0


if __name__ == "__main__":
    sys.exit(main())
