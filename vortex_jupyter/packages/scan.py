"""Scan a node pack before it is installed, and on demand (``vtx scan PATH``).

Responsibilities:
    - run the scanners on a pack (a directory, a wheel, an sdist or a zip) and gather what
      they find into one sorted, JSON-serialisable ``Report`` that the lock stores;
    - the install policy: ``Report.blocking(allowed)`` is every HIGH or CRITICAL finding whose
      rule is not explicitly allowed (``--allow RULE``), and ``Report.check`` raises
      ``PackRejected`` (VE-910) naming the pack, each finding and the flag that accepts it.

The scanners (the ``scan`` extra: ``pip install 'vortex-jupyter[scan]'``), each run offline:
    - **bandit** on every ``.py`` file: dangerous code patterns (``exec``, ``subprocess``,
      ``pickle.loads``, ``urlopen``...), with bandit's own severity (mostly MEDIUM);
    - **guarddog**'s source-code rules (YARA; no semgrep since guarddog 3) for malicious-package
      heuristics (exfiltration URLs, reads of ``~/.ssh``, base64 ``exec``...). Its metadata rules
      (typosquatting, maintainer e-mail domains, repository integrity) need PyPI or the network
      and are not run on a local pack; its import-time refresh of the popular-package lists is
      kept offline by pointing it at fresh copies of the lists it ships
      (``GUARDDOG_TOP_PACKAGES_CACHE_LOCATION``). It runs in its own kernel sandbox when the
      machine supports one;
    - **picklescan** (and **modelscan**, when installed) on every pickle the pack ships: files
      named ``.pkl .pickle .ckpt .pt .pth .bin .joblib``, and any other file that starts like a
      pickle. A dangerous global (``os.system``, ``builtins.exec``...) is CRITICAL; nothing is
      ever unpickled.

A scanner that is not installed is skipped with a note; one that fails on the pack is a HIGH
``<tool>-failed`` finding (a pack that crashes the scanner must not pass for clean).

>>> report = Report("demo", [Finding("bandit", "B102", "MEDIUM", "demo/a.py", 2, "exec used")])
>>> report.summary()
'demo: 1 finding (1 MEDIUM); 0 blocking'
>>> Report.from_json(report.to_json()) == report
True
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import PackRejected

__all__ = ["SEVERITIES", "Finding", "Report", "main", "scan"]

SEVERITIES = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
BLOCKING = frozenset({"HIGH", "CRITICAL"})
PICKLE_SUFFIXES = frozenset({".pkl", ".pickle", ".ckpt", ".pt", ".pth", ".bin", ".joblib"})
SKIP_DIRS = frozenset({".git", "__pycache__", ".hg", ".svn"})
TOOL_TIMEOUT_S = 300
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class Finding:
    """One thing a scanner found. ``rule`` is the tool's id (``B102``,
    ``threat-network-exfiltration``, ``posix.system``); ``path`` is relative to the pack."""

    tool: str
    rule: str
    severity: str
    path: str
    line: int | None
    message: str

    @property
    def location(self) -> str:
        return f"{self.path}:{self.line}" if self.line is not None else self.path

    @property
    def blocking_severity(self) -> bool:
        return self.severity in BLOCKING

    def allowed_by(self, allowed: Iterable[str]) -> bool:
        """True if ``--allow`` names this rule, bare (``B102``) or with its tool (``bandit:B102``)."""
        names = set(allowed)
        return self.rule in names or f"{self.tool}:{self.rule}" in names

    def sort_key(self) -> tuple[int, str, int, str, str, str]:
        return (
            -SEVERITIES.index(self.severity),
            self.path,
            self.line or 0,
            self.tool,
            self.rule,
            self.message,
        )


@dataclass
class Report:
    """What the scanners found in one pack, most severe first. ``tools`` maps each scanner to
    its version, or to why it was skipped; ``notes`` says what was not checked."""

    pack: str
    findings: list[Finding] = field(default_factory=list)
    tools: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for f in self.findings:
            if f.severity not in SEVERITIES:
                raise ValueError(
                    f"finding {f.tool}:{f.rule} has severity {f.severity!r}; use one of {SEVERITIES}"
                )
        self.findings = sorted(set(self.findings), key=Finding.sort_key)

    def counts(self) -> dict[str, int]:
        return {s: sum(f.severity == s for f in self.findings) for s in reversed(SEVERITIES)}

    def blocking(self, allowed_rules: Iterable[str] = ()) -> list[Finding]:
        """HIGH and CRITICAL findings whose rule is not in ``allowed_rules``."""
        allowed = tuple(allowed_rules)
        return [f for f in self.findings if f.blocking_severity and not f.allowed_by(allowed)]

    def summary(self, allowed_rules: Iterable[str] = ()) -> str:
        n = len(self.findings)
        parts = ", ".join(f"{c} {s}" for s, c in self.counts().items() if c)
        text = f"{self.pack}: {n} finding{'' if n == 1 else 's'}"
        text += f" ({parts})" if parts else ""
        return f"{text}; {len(self.blocking(allowed_rules))} blocking"

    def check(self, allowed_rules: Iterable[str] = ()) -> None:
        """Raise ``PackRejected`` if any finding blocks the install."""
        blocking = self.blocking(allowed_rules)
        if not blocking:
            return
        rules = sorted({f.rule for f in blocking})
        lines = [f"pack {self.pack!r} is refused: its scan found {len(blocking)} HIGH/CRITICAL finding(s):"]
        lines += [
            f"  - {f.severity} {f.tool} {f.rule} at {f.location}: {f.message} (accept: --allow {f.rule})"
            for f in blocking
        ]
        hint = "read the code at those lines; install only if you trust it, with " + " ".join(
            f"--allow {r}" for r in rules
        )
        raise PackRejected("\n".join(lines), pack=self.pack, rules=tuple(rules), hint=hint)

    def to_json(self) -> str:
        data = {
            "version": _FORMAT_VERSION,
            "pack": self.pack,
            "tools": self.tools,
            "notes": self.notes,
            "findings": [asdict(f) for f in self.findings],
        }
        return json.dumps(data, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Report:
        data = json.loads(text)
        if data.get("version") != _FORMAT_VERSION:
            raise ValueError(
                f"scan report version {data.get('version')!r} is not {_FORMAT_VERSION}; rescan the pack"
            )
        findings = [Finding(**f) for f in data["findings"]]
        return cls(data["pack"], findings, dict(data["tools"]), list(data["notes"]))

    def table(self, allowed_rules: Iterable[str] = (), *, show_low: bool = False) -> str:
        allowed = tuple(allowed_rules)
        shown = [f for f in self.findings if show_low or f.severity != "LOW"]
        rows = [
            (
                f.severity + ("" if not f.blocking_severity or f.allowed_by(allowed) else " *"),
                f.tool,
                f.rule,
                f.location,
                f.message.splitlines()[0][:100] if f.message else "",
            )
            for f in shown
        ]
        head = ("SEVERITY", "TOOL", "RULE", "WHERE", "MESSAGE")
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
        out = ["  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4] for r in [head, *rows]]
        hidden = len(self.findings) - len(shown)
        if hidden:
            out.append(f"({hidden} LOW finding(s) not shown: --all lists them)")
        out += [f"{t}: {v}" for t, v in sorted(self.tools.items())]
        out += [f"note: {n}" for n in self.notes]
        out.append(self.summary(allowed) + ("  (* = blocks install)" if self.blocking(allowed) else ""))
        return "\n".join(out)


# --- unpacking --------------------------------------------------------------------------


@contextmanager
def _unpacked(path: Path) -> Iterator[Path]:
    """The pack as a directory: itself, or an archive unpacked (safely) into a temporary one."""
    if path.is_dir():
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="vtx-scan-") as tmp:
        dest = Path(tmp)
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                for name in zf.namelist():
                    _check_member(name, path)
                zf.extractall(dest)
        elif tarfile.is_tarfile(path):
            with tarfile.open(path) as tf:
                for member in tf.getmembers():
                    _check_member(member.name, path)
                tf.extractall(dest, filter="data")
        else:
            raise ValueError(f"{path} is not a pack: give a directory, a wheel, an sdist or a zip")
        yield dest


def _check_member(name: str, archive: Path) -> None:
    parts = Path(name).parts
    if name.startswith(("/", "\\")) or ".." in parts:
        raise ValueError(f"{archive} has an unsafe member {name!r} (absolute or leaves the archive)")


def _pack_name(root: Path, fallback: str) -> str:
    """``[project] name`` from the pack's pyproject.toml (top level or the sdist's folder)."""
    import tomllib

    for pyproject in [root / "pyproject.toml", *sorted(root.glob("*/pyproject.toml"))]:
        try:
            name = tomllib.loads(pyproject.read_text("utf-8")).get("project", {}).get("name")
        except (OSError, ValueError):
            continue
        if isinstance(name, str) and name:
            return name
    return fallback


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in sorted(filenames):
            yield Path(dirpath, name)


def _looks_like_pickle(path: Path) -> bool:
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return True
    try:
        with path.open("rb") as fh:
            head = fh.read(2)
    except OSError:
        return False
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5  # PROTO opcode, protocol 2..5


# --- the scanners -----------------------------------------------------------------------


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


def _run(args: Sequence[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_S,
        env=env,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def _severity(value: object) -> str:
    """A tool's severity as ours; one we do not know (bandit's UNDEFINED) counts as MEDIUM."""
    text = str(value).upper()
    return text if text in SEVERITIES else "MEDIUM"


def _failed(tool: str, why: str) -> Finding:
    return Finding(
        tool, f"{tool}-failed", "HIGH", ".", None, f"{tool} could not scan the pack: {why.strip()[-400:]}"
    )


def _rel(path: str, root: Path) -> str:
    p = Path(path)
    try:
        return p.resolve().relative_to(root.resolve()).as_posix() if p.is_absolute() else p.as_posix()
    except ValueError:
        return p.as_posix()


def _bandit(root: Path) -> list[Finding]:
    proc = _run(["-m", "bandit", "-r", str(root), "-f", "json", "-q"])
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        return [_failed("bandit", proc.stderr or proc.stdout)]
    found = [
        Finding(
            "bandit",
            r["test_id"],
            _severity(r["issue_severity"]),
            _rel(r["filename"], root),
            r["line_number"],
            f"{' '.join(str(r['issue_text']).split())} ({r['test_name']}, confidence {r['issue_confidence']})",
        )
        for r in data.get("results", [])
    ]
    found += [
        Finding("bandit", "bandit-failed", "HIGH", _rel(e["filename"], root), None, e["reason"])
        for e in data.get("errors", [])
    ]
    return found


def _guarddog_severities(package_dir: Path) -> dict[str, str]:
    """Each source-code rule's severity, read from the ``meta`` of guarddog's own .yar files."""
    import re

    severities = {}
    for rule in (package_dir / "analyzer" / "sourcecode").glob("*.yar"):
        m = re.search(r'severity\s*=\s*"(\w+)"', rule.read_text("utf-8", errors="replace"))
        severities[rule.stem] = _severity(m.group(1) if m else "MEDIUM")
    return severities


def _offline_guarddog_cache(package_dir: Path, dest: Path) -> None:
    """Copies of the popular-package lists guarddog ships, dated now, so that importing it
    does not try to download fresh ones (it refreshes lists older than 30 days)."""
    import time

    for src in (package_dir / "analyzer" / "metadata" / "resources").iterdir():
        if src.suffix == ".json":
            data = json.loads(src.read_text("utf-8"))
            data["downloaded_timestamp"] = int(time.time())
            (dest / src.name).write_text(json.dumps(data), "utf-8")
        elif src.is_file():
            (dest / src.name).write_bytes(src.read_bytes())


def _guarddog(root: Path) -> list[Finding]:
    spec = importlib.util.find_spec("guarddog")
    assert spec is not None and spec.submodule_search_locations
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    severities = _guarddog_severities(package_dir)
    with tempfile.TemporaryDirectory(prefix="vtx-guarddog-") as cache:
        _offline_guarddog_cache(package_dir, Path(cache))
        env = {**os.environ, "GUARDDOG_TOP_PACKAGES_CACHE_LOCATION": cache}
        args = ["-m", "guarddog", "pypi", "scan", str(root), "--output-format", "json"]
        proc = _run(args, env)
        if proc.returncode != 0 and "sandbox" in proc.stderr.lower():
            proc = _run([*args, "--no-sandbox"], env)  # no kernel sandbox on this machine
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        return [_failed("guarddog", proc.stderr or proc.stdout)]
    found = []
    for rule, hits in sorted(data.get("results", {}).items()):
        for hit in hits if isinstance(hits, list) else []:
            where, _, line = str(hit.get("location", ".")).rpartition(":")
            path, lineno = (where, int(line)) if line.isdigit() else (str(hit.get("location", ".")), None)
            message = f"{hit.get('message', '')}: {str(hit.get('match', '')).strip()[:80]!r}"
            found.append(Finding("guarddog", rule, severities.get(rule, "MEDIUM"), path, lineno, message))
    found += [
        Finding("guarddog", "guarddog-failed", "HIGH", ".", None, f"rule {rule}: {err}")
        for rule, err in sorted(data.get("errors", {}).items())
    ]
    return found


def _picklescan(root: Path, pickles: list[Path]) -> list[Finding]:
    from picklescan.scanner import SafetyLevel, scan_file_path

    found = []
    for path in pickles:
        rel = _rel(str(path), root)
        try:
            result = scan_file_path(str(path))
        except Exception as exc:  # a malformed file must not stop the scan of the others
            result, error = None, f"{type(exc).__name__}: {exc}"
        if result is None or result.scan_err:
            why = error if result is None else "not a pickle picklescan can parse"
            found.append(
                Finding(
                    "picklescan",
                    "pickle-unreadable",
                    "MEDIUM",
                    rel,
                    None,
                    f"{why}; it cannot be checked, so never load it with pickle/torch.load",
                )
            )
            continue
        for g in result.globals:
            if g.safety is SafetyLevel.Dangerous:
                found.append(
                    Finding(
                        "picklescan",
                        f"{g.module}.{g.name}",
                        "CRITICAL",
                        rel,
                        None,
                        f"unpickling it calls {g.module}.{g.name} (a dangerous global)",
                    )
                )
            elif g.safety is SafetyLevel.Suspicious:
                found.append(
                    Finding(
                        "picklescan",
                        f"{g.module}.{g.name}",
                        "MEDIUM",
                        rel,
                        None,
                        f"unpickling it imports {g.module}.{g.name} (not known to be safe)",
                    )
                )
    return found


def _modelscan(root: Path) -> list[Finding]:
    with tempfile.TemporaryDirectory(prefix="vtx-modelscan-") as tmp:
        out = Path(tmp, "report.json")
        proc = _run(["-m", "modelscan.cli", "scan", "-p", str(root), "-r", "json", "-o", str(out)])
        if proc.returncode == 3:  # no file in a format it reads
            return []
        try:
            data = json.loads(out.read_text("utf-8"))
        except (OSError, ValueError):
            return [_failed("modelscan", proc.stderr or proc.stdout)]
    return [
        Finding(
            "modelscan",
            f"{i.get('module')}.{i.get('operator')}",
            _severity(i.get("severity", "HIGH")),
            _rel(str(i.get("source", ".")), root),
            None,
            str(i.get("description", "")),
        )
        for i in data.get("issues", [])
    ]


def _run_tool(report: Report, tool: str, module: str, dist: str, scanner: Any) -> None:
    if not _installed(module):
        report.tools[tool] = "skipped: not installed (pip install 'vortex-jupyter[scan]')"
        return
    try:
        report.findings.extend(scanner())
    except subprocess.TimeoutExpired:
        report.findings.append(_failed(tool, f"timed out after {TOOL_TIMEOUT_S} s"))
    report.tools[tool] = _version(dist)


def scan(path: str | Path, *, pack: str | None = None) -> Report:
    """Scan the pack at ``path`` (a directory, wheel, sdist or zip) with every scanner installed.

    Nothing in the pack is imported, run or unpickled. ``pack`` names it in the report
    (default: its ``[project] name``, else the file or folder name).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no pack at {path}: give a pack's directory, wheel or sdist")
    with _unpacked(path) as root:
        report = Report(pack or _pack_name(root, path.name))
        pickles = [p for p in _walk(root) if p.is_file() and not p.is_symlink() and _looks_like_pickle(p)]
        _run_tool(report, "bandit", "bandit", "bandit", lambda: _bandit(root))
        _run_tool(report, "guarddog", "guarddog", "guarddog", lambda: _guarddog(root))
        if pickles:
            _run_tool(report, "picklescan", "picklescan", "picklescan", lambda: _picklescan(root, pickles))
            _run_tool(report, "modelscan", "modelscan", "modelscan", lambda: _modelscan(root))
        else:
            report.notes.append("no pickle files: picklescan and modelscan had nothing to scan")
    if not report.tools.get("guarddog", "skipped").startswith("skipped"):
        report.notes.append(
            "guarddog metadata rules (typosquatting, e-mail domains, repository) need "
            "PyPI metadata and the network; not run on a local pack"
        )
    skipped = [t for t, v in report.tools.items() if v.startswith("skipped")]
    if skipped:
        report.notes.append(f"not scanned by {', '.join(skipped)}: install the scan extra")
    return Report(report.pack, report.findings, report.tools, report.notes)


def scan_weights(folders: Iterable[str | Path], name: str = "models") -> Report:
    """picklescan and modelscan on every pickle under ``folders`` (models folders, or what a
    pack downloaded): weights that arrive after a pack's install scan. Nothing is unpickled."""
    report = Report(name)
    seen = 0
    for folder in dict.fromkeys(Path(f) for f in folders):
        if not folder.is_dir():
            continue
        pickles = [p for p in _walk(folder) if p.is_file() and not p.is_symlink() and _looks_like_pickle(p)]
        if not pickles:
            continue
        seen += len(pickles)
        before = len(report.findings)
        _run_tool(report, "picklescan", "picklescan", "picklescan",
                  lambda f=folder, p=pickles: _picklescan(f, p))  # type: ignore[misc]
        _run_tool(report, "modelscan", "modelscan", "modelscan", lambda f=folder: _modelscan(f))  # type: ignore[misc]
        # say which folder: locations are relative to it
        report.findings[before:] = [dataclasses.replace(f, path=str(folder / f.path)) for f in report.findings[before:]]
    report.notes.append(f"{seen} pickle file(s) scanned" if seen else "no pickle files: nothing to scan")
    return Report(report.pack, report.findings, report.tools, report.notes)


def models_folders() -> list[Path]:
    """Every folder the model loaders read (models root, each kind's folders, extra_model_paths)."""
    from ..nodes.diffusion import folders
    from ..nodes.diffusion.models import models_root

    out = [models_root()]
    for kind in folders.KINDS:
        out += [Path(f) for f in folders.folders(kind, strict=False)]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``vtx scan PATH [--allow RULE]... [--json] [--all]``: print the report; exit 1 if it blocks."""
    parser = argparse.ArgumentParser(
        prog="vtx scan", description="Scan a node pack for malicious code and pickles."
    )
    parser.add_argument("path", nargs="?", help="the pack: a directory, wheel, sdist or zip")
    parser.add_argument("--models", action="store_true",
                        help="scan the pickles in every models folder instead (weights downloaded later)")
    parser.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="RULE",
        help="accept HIGH/CRITICAL findings of RULE (e.g. B102 or guarddog:threat-filesystem-read)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--all", action="store_true", help="list LOW findings too")
    args = parser.parse_args(argv)
    if (args.path is None) == (not args.models):
        parser.error("give a pack's PATH, or --models")
    try:
        report = scan_weights(models_folders()) if args.models else scan(args.path)
    except (FileNotFoundError, ValueError) as exc:
        print(f"vtx scan: {exc}", file=sys.stderr)
        return 2
    print(report.to_json() if args.json else report.table(args.allow, show_low=args.all))
    try:
        report.check(args.allow)
    except PackRejected as exc:
        print(str(exc), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
