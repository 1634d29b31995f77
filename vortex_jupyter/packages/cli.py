"""The ``vtx`` command: install, lock and inspect node packs and their environments.

    vtx install SOURCE... | -m vortex.toml   a folder, wheel, sdist or git+URL[@REV]
    vtx remove NAME...
    vtx list [--json]                        packs, versions, envs, node types
    vtx tree [--json]                        envs -> packs -> locked packages
    vtx lock | sync | update                 resolve again / recreate envs from the locks / both
    vtx suggest WORKFLOW [-o vortex.toml]    the packs a ComfyUI workflow says it used
    vtx scan PATH [--allow RULE] [--json]    bandit, guarddog, picklescan/modelscan on a pack
    vtx scan --models                        picklescan/modelscan on every models folder
    vtx doctor [--json]                      sandbox support (Landlock, seccomp), uv, scanners

``install`` scans each pack first and refuses HIGH/CRITICAL findings unless ``--allow RULE``
names them; the report is stored beside the locks.

State lives in ``$VORTEX_PACKS_DIR`` (``envs.packs_dir``). Errors print one line with their VE
code and a fix, and exit 2 (as ``vortex`` does).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import VortexError
from .envs import PackStore
from .manifest import Manifest, suggest

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vtx", description="Manage vortex-jupyter node packs.")
    sub = p.add_subparsers(dest="command", required=True)
    ins = sub.add_parser("install", help="install packs (folder, wheel, sdist, git+URL[@REV])")
    ins.add_argument("sources", nargs="*")
    ins.add_argument("-m", "--manifest", help="install every pack a vortex.toml lists")
    ins.add_argument("--allow", action="append", default=[], metavar="RULE",
                     help="accept a HIGH/CRITICAL scan finding of this rule (repeatable)")
    scn = sub.add_parser("scan", help="scan a pack (bandit, guarddog, picklescan, modelscan)")
    scn.add_argument("rest", nargs=argparse.REMAINDER, help="a pack path, then --allow RULE / --json / --all")
    rem = sub.add_parser("remove", help="remove installed packs")
    rem.add_argument("names", nargs="+")
    for name, text in (("list", "the installed packs"), ("tree", "envs -> packs -> locked packages")):
        sub.add_parser(name, help=text).add_argument("--json", action="store_true")
    sub.add_parser("lock", help="resolve every env again and rewrite its pylock.toml")
    sub.add_parser("sync", help="recreate every env from its lock (hashes verified)")
    sub.add_parser("update", help="fetch packs again, lock and sync")
    sub.add_parser("doctor", help="what this machine supports: sandbox, uv, scanners, packs folder"
                   ).add_argument("--json", action="store_true")
    sug = sub.add_parser("suggest", help="vortex.toml entries for a ComfyUI workflow's packs")
    sug.add_argument("workflow")
    sug.add_argument("-o", "--output", help="merge into this vortex.toml (default: print)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["scan"]:  # the scanner has its own options (``scan.main``)
        from .scan import main as scan_main

        return scan_main(argv[1:])
    args = _parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args, PackStore.default())
    except VortexError as exc:
        print(f"vtx {args.command}: {exc}", file=sys.stderr)
        return 2


def _install(args: argparse.Namespace, store: PackStore) -> int:
    sources = list(args.sources)
    if args.manifest:
        sources += [e.source for e in Manifest.load(args.manifest).packs.values() if e.source]
    if not sources:
        print("vtx install: nothing to install (give a source or -m vortex.toml)", file=sys.stderr)
        return 2
    for source in sources:
        entry = store.install(source, allow=args.allow)
        print(f"installed {entry['name']} {entry['version']} into env {entry['env']}: "
              f"{len(entry['nodes'])} node types")
        for note in entry["notes"]:
            print(f"  note: {note}")
    return 0


def _remove(args: argparse.Namespace, store: PackStore) -> int:
    for name in args.names:
        store.remove(name)
        print(f"removed {name}")
    return 0


def _list(args: argparse.Namespace, store: PackStore) -> int:
    packs = store.packs()
    if args.json:
        print(json.dumps(packs, indent=2, sort_keys=True))
        return 0
    if not packs:
        print(f"no packs installed (in {store.root})")
    for entry in sorted(packs.values(), key=lambda e: e["name"].lower()):
        nodes = ", ".join(entry.get("nodes", [])) or "-"
        print(f"{entry['name']} {entry['version']}  env={entry['env']}  source={entry['source']}  nodes: {nodes}")
    return 0


def _tree(args: argparse.Namespace, store: PackStore) -> int:
    tree = store.tree()
    if args.json:
        print(json.dumps(tree, indent=2, sort_keys=True))
        return 0
    for env, body in tree.items():
        print(f"env {env}  ({store.python(env)})")
        for name, version in body["packs"].items():
            print(f"  pack {name} {version}")
        for name, version in sorted(body["packages"].items()):
            print(f"    {name}=={version}")
    return 0


def _simple(verb: str) -> Any:
    def run(args: argparse.Namespace, store: PackStore) -> int:
        envs = getattr(store, verb)()
        print(f"{verb}: {len(envs)} env(s) {', '.join(envs)}".rstrip())
        return 0
    return run


def _suggest(args: argparse.Namespace, store: PackStore) -> int:
    try:
        workflow = json.loads(Path(args.workflow).read_text())
    except (OSError, ValueError) as exc:
        print(f"vtx suggest: cannot read {args.workflow}: {exc}", file=sys.stderr)
        return 2
    proposed = suggest(workflow if isinstance(workflow, dict) else {})
    if args.output:
        out = Path(args.output)
        current = Manifest.load(out) if out.is_file() else Manifest()
        current.merge(proposed).save(out)
        print(f"{out}: {len(proposed.packs)} pack(s) suggested")
    else:
        sys.stdout.write(proposed.dumps())
    return 0


def doctor_report(store: PackStore) -> dict[str, Any]:
    """What a pack setup needs, as this machine has it (``vtx doctor``)."""
    import importlib.util
    import os
    import subprocess

    from ..workers import sandbox
    from .lock import uv

    caps = sandbox.capabilities()
    strict_missing = [what for what, ok in (("Landlock", caps.get("landlock_abi")), ("seccomp", caps.get("seccomp")))
                      if not ok]
    try:
        uv_bin = uv()
        uv_version = subprocess.run([uv_bin, "--version"], capture_output=True, text=True, timeout=30,
                                    check=False).stdout.strip()
    except (VortexError, OSError, subprocess.SubprocessError) as exc:
        uv_bin, uv_version = None, f"missing: {exc}"
    root = store.root
    probe = root if root.exists() else next((p for p in root.parents if p.exists()), root)
    setting = os.environ.get("VORTEX_PACK_SANDBOX", "").strip().lower() or "auto"
    packs = {}
    for name in sorted(store.packs()):
        try:
            from .runtime import pack_worker

            pack_worker(name, store)
            packs[name] = "ok"
        except VortexError as exc:
            packs[name] = str(exc)  # (names the fix)
    return {
        "sandbox": {**caps, "strict_possible": not strict_missing, "missing": strict_missing,
                    "packs_setting": setting,
                    "packs_sandboxed": setting != "off" and not strict_missing},
        "packs": packs,
        "uv": {"path": uv_bin, "version": uv_version},
        "scanners": {tool: importlib.util.find_spec(tool) is not None
                     for tool in ("bandit", "guarddog", "picklescan", "modelscan")},
        "packs_dir": {"path": str(root), "writable": os.access(probe, os.W_OK)},
    }


def _doctor(args: argparse.Namespace, store: PackStore) -> int:
    report = doctor_report(store)
    if args.json:
        print(json.dumps(report, indent=1, sort_keys=True))
    else:
        sb = report["sandbox"]
        print(f"sandbox: Landlock ABI {sb['landlock_abi'] or 'none'}, seccomp {'yes' if sb['seccomp'] else 'no'}, "
              f"user namespaces {'yes' if sb['user_namespaces'] else 'no'}, bubblewrap {sb['bubblewrap'] or 'absent'}")
        print("  VORTEX_SANDBOX=strict " + ("can run here" if sb["strict_possible"] else
                                            f"cannot run here: missing {', '.join(sb['missing'])}"))
        print(f"  node packs' workers (VORTEX_PACK_SANDBOX={sb['packs_setting']}): "
              + ("sandboxed" if sb["packs_sandboxed"] else "UNSANDBOXED" if sb["packs_setting"] != "strict"
                 else "refused (strict, but the sandbox cannot run here)"))
        for name, state in report["packs"].items():
            print(f"pack {name}: {state}")
        print(f"uv: {report['uv']['version']} ({report['uv']['path'] or 'not found'})")
        scanners = report["scanners"]
        print("scanners: " + ", ".join(f"{t} {'yes' if ok else 'missing'}" for t, ok in scanners.items()))
        where = report["packs_dir"]
        print(f"packs folder: {where['path']} ({'writable' if where['writable'] else 'NOT writable'})")
    ok = (report["uv"]["path"] is not None and report["packs_dir"]["writable"]
          and all(state == "ok" for state in report["packs"].values()))
    return 0 if ok else 1


_COMMANDS = {"install": _install, "remove": _remove, "list": _list, "tree": _tree,
             "lock": _simple("lock"), "sync": _simple("sync"), "update": _simple("update"),
             "suggest": _suggest, "doctor": _doctor}

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
