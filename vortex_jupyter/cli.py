"""The ``vortex`` command: run, validate and list nodes from a shell.

    vortex run FILE [-o DIR] [-i DIR] [--set NODE.PARAM=VALUE ...] [--executor inline|workers|ray]
               [--address RAY_ADDRESS]
    vortex validate FILE [-i DIR] [--json]
    vortex nodes [--json]
    vortex history [--status S] [--since WHEN] [--node-type T] [--json] | history show RUN_ID
    vortex reproduce IMAGE.png [-o DIR]
    vortex serve [--host 127.0.0.1] [--port 8188] [--models DIR] [--token TOKEN]

Policy: bad input (unreadable or malformed files, invalid graphs, bad ``--set``) prints one
line per problem with its VE code and exits 2, never with a traceback; a run where nodes fail
prints one line per failed node and exits 1 (``--traceback`` adds the node tracebacks).
Images that SaveImage writes go to ``-o DIR`` (it sets ``VORTEX_OUTPUT_DIR``); LoadImage reads
from ``-i DIR`` (``VORTEX_INPUT_DIR``), for ``run`` and ``validate`` alike (validation checks that
the images LoadImage names are there: a missing one is VE-117).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from .errors import FormatError, PathError, Problem, ValidationError, VortexError

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_INTERNAL = 0, 1, 2, 3


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vortex", description="Run and inspect vortex-jupyter graphs.")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a graph file (native, ComfyUI API/UI JSON, or a PNG)")
    run.add_argument("file")
    run.add_argument("-o", "--output-dir", help="where SaveImage writes images (default ./output)")
    _input_dir_arg(run)
    run.add_argument("--set", dest="sets", action="append", default=[], metavar="NODE.PARAM=VALUE",
                     help="override a param (VALUE is JSON when it parses, else a string)")
    run.add_argument("--executor", choices=["inline", "workers", "ray"], default=None)
    run.add_argument("--address", metavar="RAY_ADDRESS", help="with --executor ray: the Ray cluster to run on "
                     "(VORTEX_RAY_ADDRESS; default: a local Ray started for the run)")
    run.add_argument("--node-timeout", type=float, default=None, metavar="SECONDS",
                     help="bound every node's run time (overrides the nodes' own timeouts)")
    run.add_argument("--traceback", action="store_true", help="show tracebacks of failed nodes")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar or timings table")
    run.add_argument("--server", metavar="URL", help="run on a running `vortex serve` (or ComfyUI) instead: "
                     "queued there, images downloaded into -o")
    run.add_argument("--token", help="the --server's token (or VORTEX_SERVER_TOKEN)")
    val = sub.add_parser("validate", help="list every problem of a graph file")
    val.add_argument("file")
    _input_dir_arg(val)
    val.add_argument("--json", action="store_true", help="machine-readable output")
    nodes = sub.add_parser("nodes", help="list the registered node types")
    nodes.add_argument("--json", action="store_true", help="the full listing as JSON")
    from .history.cli import add_parsers

    add_parsers(sub)
    srv = sub.add_parser("serve", help="ComfyUI's HTTP/WebSocket API on this machine (needs the server extra)")
    srv.add_argument("--host", default="127.0.0.1", help="interface to bind (beyond loopback needs --token)")
    srv.add_argument("--port", type=int, default=8188, help="0: any free port (printed)")
    srv.add_argument("--models", help="the models folder (VORTEX_MODELS_DIR)")
    srv.add_argument("--token", help="required from clients: Authorization: Bearer TOKEN or ?token=")
    srv.add_argument("--preview-method", choices=["none", "auto"], default="none",
                     help="auto: samplers' step previews as binary WebSocket frames (ComfyUI's default: none)")
    return p


def _input_dir_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--input-dir", help="where LoadImage finds images (default ./input)")


def _use_input_dir(args: argparse.Namespace) -> None:
    """``-i DIR``: LoadImage (and validation) read images there (``VORTEX_INPUT_DIR``)."""
    if not args.input_dir:
        return
    in_dir = Path(args.input_dir).resolve()
    if not in_dir.is_dir():
        raise PathError(f"--input-dir {args.input_dir!r} is not a folder",
                        hint="pass the folder that holds the images LoadImage should read")
    os.environ["VORTEX_INPUT_DIR"] = str(in_dir)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return _cmd_run(args)
        if args.command == "validate":
            return _cmd_validate(args)
        if args.command == "serve":
            return _cmd_serve(args)
        if args.command in ("history", "reproduce"):
            from .history import cli as history_cli

            return int(history_cli.cmd_history(args) if args.command == "history" else history_cli.cmd_reproduce(args))
        return _cmd_nodes(args)
    except VortexError as exc:
        _print_error(exc, sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        print("vortex: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not bad input: still one line, no traceback
        print(f"vortex: internal error: {type(exc).__name__}: {exc} (set VORTEX_DEBUG=1 for a traceback)",
              file=sys.stderr)
        if os.environ.get("VORTEX_DEBUG"):
            raise
        return EXIT_INTERNAL


def _print_error(exc: VortexError, out: TextIO) -> None:
    if isinstance(exc, ValidationError):
        print(f"vortex: [{exc.code}] the graph has {len(exc.problems)} problem(s):", file=out)
        for p in exc.problems:
            print(f"  {p}", file=out)
        return
    first, *rest = exc.message.splitlines() or [""]
    print(f"vortex: [{exc.code}] {first}", file=out)
    for line in rest:
        print(f"  {line}", file=out)
    if exc.hint:
        print(f"  fix: {exc.hint}", file=out)


def _load(path: str) -> Any:
    from ._api import load

    if not Path(path).is_file():
        raise FormatError(f"no such file: {path!r}", hint="check the path")
    return load(path)


# ---- validate / nodes -------------------------------------------------------------------
def _cmd_validate(args: argparse.Namespace) -> int:
    try:
        _use_input_dir(args)
        graph = _load(args.file)
        problems = graph.problems()
    except (FormatError, PathError) as exc:
        if not args.json:
            raise
        problem = Problem(exc.code, None, None, exc.message, exc.hint or "")
        print(json.dumps({"ok": False, "problems": [problem.to_dict()]}, indent=1))
        return EXIT_INVALID
    if args.json:
        print(json.dumps({"ok": not problems, "problems": [p.to_dict() for p in problems]}, indent=1))
    elif problems:
        print(f"{args.file}: {len(problems)} problem(s)")
        for p in problems:
            print(f"  {p}")
    else:
        n_edges = sum(1 for _ in graph.model.edges())
        print(f"{args.file}: ok ({len(graph.model)} nodes, {n_edges} edges)")
    return EXIT_FAILED if problems else EXIT_OK


def _cmd_nodes(args: argparse.Namespace) -> int:
    from .nodes.registry import REGISTRY

    listing = REGISTRY.to_json()
    if args.json:
        print(json.dumps(listing, indent=1, default=str))
        return EXIT_OK
    by_cat: dict[str, list[str]] = {}
    for name, entry in listing.items():
        by_cat.setdefault(entry.get("category") or "(none)", []).append(name)
    for cat in sorted(by_cat):
        print(f"{cat}:")
        for name in sorted(by_cat[cat]):
            entry = listing[name]
            ins = ", ".join(f"{i['name']}:{i['type']}" for i in entry["inputs"])
            outs = ", ".join(o["type"] for o in entry["outputs"]) or "-"
            print(f"  {name}({ins}) -> {outs}")
    return EXIT_OK


def _cmd_serve(args: argparse.Namespace) -> int:
    try:
        from .server.app import serve
    except ImportError as exc:
        raise VortexError(f"vortex serve needs the server extra ({exc.name} is missing)",
                          hint="pip install 'vortex-jupyter[server]'") from None
    try:
        serve(args.host, args.port, token=args.token, models=args.models, previews=args.preview_method == "auto")
    except ImportError as exc:
        raise VortexError(f"vortex serve needs the server extra ({exc.name} is missing)",
                          hint="pip install 'vortex-jupyter[server]'") from None
    return EXIT_OK


# ---- run --------------------------------------------------------------------------------
def parse_set(item: str) -> tuple[str, str, Any]:
    """``NODE.PARAM=VALUE`` -> (node, param, value); VALUE as JSON if it parses, else a string."""
    target, eq, raw = item.partition("=")
    node, dot, param = target.rpartition(".")
    if not eq or not dot or not node or not param:
        raise FormatError(f"--set {item!r} is not NODE.PARAM=VALUE", hint="e.g. --set 3.seed=42")
    try:
        value = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, FormatError):
        value = raw
    return node, param, value


def _no_constant(token: str) -> Any:
    raise FormatError(f"{token} is not a number JSON allows")


def _apply_sets(graph: Any, sets: list[str]) -> None:
    problems = []
    for item in sets:
        node, param, value = parse_set(item)
        node_id = _find_node(graph, node)
        if node_id is None:
            problems.append(Problem("VE-112", node, param, f"--set names node {node!r}, which is not in the graph",
                                    f"node ids: {', '.join(list(graph.model.nodes)[:20])}"))
            continue
        graph.model.set_param(node_id, param, value)
    if problems:
        raise ValidationError(problems)


def _find_node(graph: Any, name: str) -> str | None:
    if name in graph.model.nodes:
        return name
    titled = [n.id for n in graph.model.nodes.values() if n.title == name]
    return titled[0] if len(titled) == 1 else None


def _cmd_run_remote(args: argparse.Namespace) -> int:
    from .server.client import run_remote

    graph = _load(args.file)
    _apply_sets(graph, args.sets)
    graph.validate()  # (the server validates too; this names problems before anything is sent)
    out_dir = Path(args.output_dir or "output").resolve()
    token = args.token or os.environ.get("VORTEX_SERVER_TOKEN")
    prompt_id, files, entry = run_remote(graph, args.server, out_dir, token=token, quiet=args.quiet)
    for path in files:
        print(f"wrote {path}")
    ok = entry.get("status", {}).get("status_str") == "success"
    print(f"{'ok' if ok else 'failed'}: prompt {prompt_id} on {args.server}")
    return EXIT_OK if ok else EXIT_FAILED


def _cmd_run(args: argparse.Namespace) -> int:
    if args.server:
        return _cmd_run_remote(args)
    if args.output_dir:
        out_dir = Path(args.output_dir).resolve()
        out_dir.mkdir(parents=True, exist_ok=True)
        os.environ["VORTEX_OUTPUT_DIR"] = str(out_dir)
    _use_input_dir(args)
    if args.address:
        os.environ["VORTEX_RAY_ADDRESS"] = args.address  # read by the ray executor when it starts
    graph = _load(args.file)
    _apply_sets(graph, args.sets)
    graph.validate()
    progress = None if args.quiet else Progress(len(graph.model), sys.stderr, lambda n: node_label(graph, n))
    if progress is not None:
        graph.on_event(progress)
    t0 = time.perf_counter()
    run = graph.run(executor=args.executor, node_timeout=args.node_timeout, origin="cli")
    if progress is not None:
        progress.close()
    if not args.quiet:
        print_table(graph, run, sys.stdout)
    print_images(graph, run, sys.stdout)
    stats = run.stats
    print(f"{run.status}: ran {stats['ran']}, cached {stats['cached']}, failed {stats['failed']} "
          f"in {time.perf_counter() - t0:.2f} s", file=sys.stderr)
    if run.note is not None:  # why nodes ran again (e.g. another executor holds their outputs)
        print(f"note: {run.note.message} ({run.note.hint})", file=sys.stderr)
    if run.errors:
        print_failures(graph, run, sys.stderr, tracebacks=args.traceback)
        return EXIT_FAILED
    return EXIT_OK


# ---- reporting --------------------------------------------------------------------------
def node_label(graph: Any, node_id: str) -> str:
    """How the CLI names a node, as ComfyUI does ("KSampler #3"): ``Title (#id)`` when the node
    has a title, else ``Type #id``."""
    node = graph.model.nodes.get(node_id)
    if node is None:
        return f"#{node_id}"
    return f"{node.title} (#{node_id})" if node.title else f"{node.type} #{node_id}"


class Progress:
    """A one-line progress bar on a terminal (a line per finished node when not a tty).

    ``name(node_id)`` is how a node is shown (``node_label``); the id itself without it.
    """

    def __init__(self, total: int, out: TextIO, name: Callable[[str], str] = str) -> None:
        self.out = out
        self.total = total
        self.done = 0
        self.tty = out.isatty()
        self.name = name
        self._last = 0.0

    def __call__(self, event: Any) -> None:
        kind = event.kind
        if kind == "run_started":
            self.total = len(event.planned)
            self.done = 0
        elif kind in ("node_finished", "node_failed"):
            self.done += 1
            mark = "ok" if kind == "node_finished" else f"FAILED {event.code}"
            self._draw(f"{self.name(event.node)} {mark}", force=not self.tty)
        elif kind == "node_progress" and event.total:
            self._draw(f"{self.name(event.node)} {event.value:g}/{event.total:g}")

    def _draw(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < 0.05 and self.done < self.total:
            return
        self._last = now
        width = 24
        filled = int(width * self.done / self.total) if self.total else width
        line = f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {text}"
        if self.tty:
            self.out.write("\r" + line[:100].ljust(100))
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def close(self) -> None:
        if self.tty:
            self.out.write("\n")
            self.out.flush()


def _short(values: Any) -> str:
    parts = []
    for v in values:
        shape = getattr(v, "shape", None)
        if shape is not None:
            parts.append(f"{type(v).__name__}{list(shape)}")
        elif isinstance(v, (int, float, bool, str)) or v is None:
            parts.append(repr(v) if len(repr(v)) <= 40 else repr(v)[:37] + "...")
        else:
            parts.append(type(v).__name__)
    return ", ".join(parts)


def print_table(graph: Any, run: Any, out: TextIO, limit: int = 200) -> None:
    """Per-node status, time and a short view of the outputs (values small enough to show)."""
    rows = []
    for node in [*run.planned, *run.cached][:limit]:
        ntype = graph.model.nodes[node].type
        if node in run.errors:
            status, shown = "failed", run.errors[node].code
        else:
            status = "cached" if node in run.cached else "ran"
            try:
                shown = _short(run.outputs[node])
            except Exception as exc:  # an output that cannot be fetched is shown, not fatal
                shown = f"<{type(exc).__name__}>"
        ms = run.timings.get(node)
        rows.append((node_label(graph, node), ntype, status, "" if ms is None else f"{ms * 1e3:.1f}", shown))
    head = ("node", "type", "status", "ms", "outputs")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)) + "  outputs", file=out)
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[4], file=out)


def print_images(graph: Any, run: Any, out: TextIO) -> None:
    """Where the images that output nodes wrote are (from their ``ui`` data)."""
    from .errors import PathError
    from .nodes.paths import output_root, path_under

    for node, ui in run._state.ui.items():
        for img in ui.get("images", []):
            if img.get("type", "output") != "output":
                continue
            try:  # a custom node's "ui" may name anything: never print a path outside the folder
                path = path_under(output_root(), img.get("subfolder", ""), img["filename"])
            except PathError as exc:
                print(f"not shown: {exc.message} ({node_label(graph, node)})", file=out)
                continue
            print(f"wrote {path} ({node_label(graph, node)})", file=out)


def print_failures(graph: Any, run: Any, out: TextIO, *, tracebacks: bool = False) -> None:
    for node, err in run.errors.items():
        first = err.message.splitlines()[0] if err.message else ""
        print(f"  {node_label(graph, node)}: [{err.code}] {first}", file=out)
        if tracebacks and err.traceback:
            print("    " + err.traceback.rstrip().replace("\n", "\n    "), file=out)


if __name__ == "__main__":
    sys.exit(main())
