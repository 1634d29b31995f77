"""Node packs: install (``vtx`` (uv) vs venv + pip), pack worker start-up, sandboxed vs not.

    python benchmarks/packages.py [--repeat 1] [--only install|workers|sandbox ...] [--rounds 50]

Every figure stands beside a baseline measured in the same run (ratios are what to compare);
``--repeat`` runs each install row that many times and each worker start-up row 3x that many
(fresh pools, interleaved between the two sides: start-up times vary a lot), the best shown.

install: environment create + install of a pack with 14 small wheels. Both sides make a
``--system-site-packages`` environment on this python and install the same pack requirements
from PyPI (pure-python packages the core does not have), cold (empty download cache) and warm
(the cache of the cold run). The uv side is the whole ``PackStore.install``: resolve with hashes
under the core's pins (``uv pip compile``), create the venv, ``uv pip sync`` the lock, and
discover the pack's node types in a subprocess; the pip side only creates the venv and installs
(no lock, no hashes, no discovery).

workers: a tiny ComfyUI-style pack (one node type, ``BenchNoop`` INT -> INT, no requirements) is
installed into a temporary ``VORTEX_PACKS_DIR`` and its node types registered
(``REGISTRY.load_packs``); graphs run on private pools (``WorkerExecutor(devices=["cpu"],
warm_start=False)``). Cold start: the first run of a one-node graph on a fresh pool, which starts
a fork server (preloading numpy/torch) and forks a worker: the core's for ``IntAdd``, the pack
environment's python for ``BenchNoop`` (pack workers start lazily, on first use). Respawn: the
worker SIGKILLed, then the time to the result of a graph with a new parameter (nothing cached)
on a worker forked anew; measured once the pool is idle (the fork servers' background
``late_preload`` imports done), as a respawn later in a session would be. Pack vs core; the
pack worker runs with this process's ``VORTEX_PACK_SANDBOX`` (default: strict where supported).

sandbox: the same pack's worker with ``VORTEX_PACK_SANDBOX=strict`` (Landlock + seccomp with the
pack's permissions, tensors by value) vs ``=off``, a fresh pool for each (the mode is read when a
pool first starts a pack worker): cold start as above, and the round trip of a one-node graph
on the warm, idle worker (median of ``--rounds`` runs, each with a new parameter so that it
runs). Skipped, with a note, where this machine lacks Landlock or seccomp.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import vortex_jupyter as vx
from vortex_jupyter.nodes.registry import REGISTRY
from vortex_jupyter.packages.envs import PackStore
from vortex_jupyter.workers import sandbox
from vortex_jupyter.workers.executor import WorkerExecutor
from vortex_jupyter.workers.process import WorkerProcess

SECTIONS = ("install", "workers", "sandbox")
#: fresh pools (and kills) per side and ``--repeat`` in the worker sections: start-up times vary a lot
COLD_STARTS = 3
DEPS = ["toolz", "tabulate", "pytz", "more-itertools", "cachetools", "oauthlib", "humanize", "boltons",
        "inflect", "toml", "backoff", "tenacity", "ply", "distro"]
INIT = '''
class Noop:
    RETURN_TYPES = ("INT",)
    FUNCTION = "go"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"x": ("INT", {"default": 1})}}

    def go(self, x):
        return (x,)

NODE_CLASS_MAPPINGS = {"BenchNoop": Noop}
'''
#: a new parameter value for every run: nothing is served from the cache
_FRESH = itertools.count(1)


def _pack(root: Path, name: str = "bench-pack", deps: list[str] = DEPS) -> Path:
    folder = root / name.replace("-", "_")
    folder.mkdir()
    quoted = ", ".join(f'"{d}"' for d in deps)
    (folder / "pyproject.toml").write_text(f'[project]\nname = "{name}"\nversion = "1.0.0"\n'
                                           f'dependencies = [{quoted}]\n')
    (folder / "__init__.py").write_text(INIT)
    return folder


def _uv(root: Path, pack: Path, cache: Path) -> tuple[float, int]:
    os.environ["UV_CACHE_DIR"] = str(cache)
    store = PackStore(root)
    t0 = time.perf_counter()
    store.install(str(pack))
    elapsed = time.perf_counter() - t0
    return elapsed, len(store.tree()["bench-pack"]["packages"])


def _pip(root: Path, cache: Path) -> float:
    env = {**os.environ, "PIP_CACHE_DIR": str(cache), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(root)], check=True, env=env)
    subprocess.run([str(root / "bin" / "python"), "-m", "pip", "install", "-q", *DEPS], check=True, env=env)
    return time.perf_counter() - t0


def bench_install(repeat: int) -> None:
    rows: dict[str, list[float]] = {}
    wheels = 0
    with tempfile.TemporaryDirectory(prefix="vtx-bench-") as tmp:
        base = Path(tmp)
        pack = _pack(base)
        for r in range(repeat):
            for side in ("uv", "pip"):
                cache = base / f"{side}-cache-{r}"
                for temp in ("cold", "warm"):
                    where = base / f"{side}-{temp}-{r}"
                    if side == "uv":
                        seconds, wheels = _uv(where, pack, cache)
                    else:
                        seconds = _pip(where, cache)
                    rows.setdefault(f"{side} {temp}", []).append(seconds)
    print(f"pack with {len(DEPS)} direct requirements, {wheels} locked wheels (python {sys.version.split()[0]})")
    print(f"{'cache':<6} {'vtx install (uv), s':>20} {'venv + pip install, s':>22} {'pip / uv':>9}")
    for temp in ("cold", "warm"):
        uv_s, pip_s = min(rows[f"uv {temp}"]), min(rows[f"pip {temp}"])
        print(f"{temp:<6} {uv_s:>20.2f} {pip_s:>22.2f} {pip_s / uv_s:>8.1f}x")


# ---- pack workers ------------------------------------------------------------------------------
@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _noop_pack() -> Iterator[str]:
    """The tiny pack installed in a temporary store, its node types registered; yields its name."""
    with tempfile.TemporaryDirectory(prefix="vtx-bench-") as tmp:
        base = Path(tmp)
        with _environ(VORTEX_PACKS_DIR=str(base / "store"), UV_CACHE_DIR=str(base / "uv-cache")):
            store = PackStore(base / "store")
            store.install(str(_pack(base, "bench-noop", [])))
            names = REGISTRY.load_packs(store)
            try:
                yield REGISTRY.get("BenchNoop").pack or ""
            finally:
                for name in names:
                    REGISTRY.unregister(name)


@contextlib.contextmanager
def _executor() -> Iterator[WorkerExecutor]:
    """A pool of its own: a fresh fork server per environment, pack settings read anew."""
    ex = WorkerExecutor(devices=["cpu"], warm_start=False)
    try:
        yield ex
    finally:
        # A new worker imports its late_preload entries while idle and reads the pool's Shutdown
        # only between two of them: close() would wait up to 2 s for it. Nothing to keep here.
        for w in list(ex.pool.supervisor.workers.values()):
            w.kill("bench")
        ex.pool.close()


def _run(ex: WorkerExecutor, node: str) -> float:
    """Seconds to the result of a one-node graph with a new parameter (so that it runs)."""
    x = next(_FRESH)
    g = vx.Graph()
    n = g.add(node, x=x) if node == "BenchNoop" else g.add(node, a=x, b=1)
    t0 = time.perf_counter()
    run = g.run(executor=ex)
    elapsed = time.perf_counter() - t0
    want = x if node == "BenchNoop" else x + 1
    if run.errors or run.stats["ran"] != 1 or run.outputs[n.id][0] != want:
        raise RuntimeError(f"{node}(x={x}) on the worker pool: errors {run.errors}, stats {run.stats}")
    return elapsed


def _worker(ex: WorkerExecutor, pack: str) -> WorkerProcess:
    return next(w for w in ex.pool.supervisor.workers.values() if w.pack == pack and w.alive)


def _cpu_of_children() -> dict[int, float]:
    """CPU seconds so far of each live descendant of this process (fork servers, workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            parent[int(entry.name)] = int(fields[1])
            cpu[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    mine = {os.getpid()}
    while grown := {pid for pid, ppid in parent.items() if ppid in mine and pid not in mine}:
        mine |= grown
    return {pid: cpu[pid] for pid in mine - {os.getpid()}}


def _settle(timeout: float = 60.0, interval: float = 0.5) -> None:
    """Wait until the pools' processes are idle (under 5% of a core), e.g. their background imports."""
    deadline = time.monotonic() + timeout
    before = _cpu_of_children()
    while time.monotonic() < deadline:
        time.sleep(interval)
        now = _cpu_of_children()
        if sum(max(0.0, now[pid] - before.get(pid, 0.0)) for pid in now) < 0.05 * interval:
            return
        before = now
    print(f"(note: the worker processes were still busy after {timeout:.0f} s; timing anyway)")


def _respawn(ex: WorkerExecutor, pack: str, node: str) -> float:
    """Kill ``pack``'s worker (``""``: the core's), then the seconds to a result from its successor."""
    _settle()
    w = _worker(ex, pack)
    w.kill("bench")
    if not w.dead.wait(5.0):
        raise RuntimeError(f"worker {w} still alive 5 s after SIGKILL")
    t = _run(ex, node)
    if _worker(ex, pack).pid == w.pid:
        raise RuntimeError("the result came from the killed worker")
    return t


def _cold(node: str, expect: str) -> tuple[float, bool]:
    """Seconds to the first result on a fresh pool, and whether its worker was sandboxed; checks
    that the run started ``expect``'s worker (``""``: the core's) and no other."""
    _settle()  # the previous pool's processes gone
    with _executor() as ex:
        t = _run(ex, node)
        started = list(ex.pool.supervisor.workers.values())
        if [w.pack for w in started] != [expect]:
            raise RuntimeError(f"the first {node} run started workers {[w.pack or 'core' for w in started]}")
        return t, started[0].sandboxed


def bench_workers(n: int) -> None:
    """Core vs pack worker: cold start (``n`` fresh pools each) and respawn (``n`` kills each)."""
    rows: dict[str, list[float]] = {}
    with _noop_pack() as pack:
        with _executor() as ex:  # untimed: the kernel's first-run costs, the page cache of both pythons
            _run(ex, "IntAdd")
            _run(ex, "BenchNoop")
        for _ in range(n):  # interleaved, so that a busy moment of the machine hits both sides
            rows.setdefault("core cold", []).append(_cold("IntAdd", "")[0])
            seconds, sandboxed = _cold("BenchNoop", pack)
            rows.setdefault("pack cold", []).append(seconds)
        with _executor() as ex:
            _run(ex, "IntAdd")
            _run(ex, "BenchNoop")
            for _ in range(n):
                rows.setdefault("core respawn", []).append(_respawn(ex, "", "IntAdd"))
                rows.setdefault("pack respawn", []).append(_respawn(ex, pack, "BenchNoop"))
    print(f"pack worker start-up: one-node graph, time to result (best of {n}; pack worker "
          f"{'sandboxed' if sandboxed else 'unsandboxed'}; {os.cpu_count()} cores)")
    print(f"{'':<26} {'core worker, ms':>16} {'pack worker, ms':>16} {'pack / core':>12}")
    for what, label in (("cold", "cold start (fresh pool)"), ("respawn", "respawn after SIGKILL")):
        core, pk = min(rows[f"core {what}"]) * 1e3, min(rows[f"pack {what}"]) * 1e3
        print(f"{label:<26} {core:>16.1f} {pk:>16.1f} {pk / core:>11.2f}x")


@contextlib.contextmanager
def _sandbox_pool(mode: str) -> Iterator[WorkerExecutor]:
    """A fresh pool whose pack workers run with ``VORTEX_PACK_SANDBOX=mode``, its pack worker started."""
    with _environ(VORTEX_PACK_SANDBOX=mode), _executor() as ex:
        _run(ex, "BenchNoop")  # the mode is read here, when the pool starts its first pack worker
        yield ex


def _check_mode(mode: str, sandboxed: bool) -> None:
    if sandboxed != (mode == "strict"):
        raise RuntimeError(f"VORTEX_PACK_SANDBOX={mode} (VORTEX_SANDBOX={os.environ.get('VORTEX_SANDBOX')!r}) "
                           f"started a worker with sandboxed={sandboxed}")


def bench_sandbox(n: int, rounds: int) -> None:
    """Pack worker with ``VORTEX_PACK_SANDBOX=strict`` vs ``off``: cold start (``n`` fresh pools
    each) and round trip (``rounds`` runs each, alternating between two warm pools)."""
    caps = sandbox.capabilities()
    if not (caps["landlock_abi"] and caps["seccomp"]):
        print(f"sandbox section skipped: this machine lacks Landlock or seccomp ({caps})")
        return
    cold: dict[str, list[float]] = {}
    trips: dict[str, list[float]] = {}
    with _noop_pack() as pack:
        for _ in range(n):
            for mode in ("off", "strict"):
                with _environ(VORTEX_PACK_SANDBOX=mode):
                    seconds, sandboxed = _cold("BenchNoop", pack)
                _check_mode(mode, sandboxed)
                cold.setdefault(mode, []).append(seconds)
        with _sandbox_pool("off") as off, _sandbox_pool("strict") as strict:
            pools = {"off": off, "strict": strict}
            for mode, ex in pools.items():
                _check_mode(mode, _worker(ex, pack).sandboxed)
            _settle()
            for i in range(5 + rounds):  # 5 to warm up
                for mode, ex in pools.items():
                    t = _run(ex, "BenchNoop")
                    if i >= 5:
                        trips.setdefault(mode, []).append(t)
    print(f"pack worker sandboxed (Landlock ABI {caps['landlock_abi']} + seccomp) vs not: one-node graph "
          f"(cold: best of {n}; round trip: median of {rounds})")
    print(f"{'':<26} {'unsandboxed, ms':>16} {'sandboxed, ms':>14} {'sandboxed / unsandboxed':>24}")
    for label, off_s, strict_s in (("cold start (fresh pool)", min(cold["off"]), min(cold["strict"])),
                                   ("round trip (warm worker)", statistics.median(trips["off"]),
                                    statistics.median(trips["strict"]))):
        print(f"{label:<26} {off_s * 1e3:>16.2f} {strict_s * 1e3:>14.2f} {strict_s / off_s:>23.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=1,
                    help=f"runs per row, {COLD_STARTS}x that for the worker start-ups (the best one is shown)")
    ap.add_argument("--only", choices=SECTIONS, action="append",
                    help="run this section only (may be given more than once; default: all)")
    ap.add_argument("--rounds", type=int, default=50, help="round trips per sandbox mode (the median is shown)")
    args = ap.parse_args()
    only = args.only or list(SECTIONS)
    for i, section in enumerate(s for s in SECTIONS if s in only):
        if i:
            print()
        if section == "install":
            bench_install(args.repeat)
        elif section == "workers":
            bench_workers(COLD_STARTS * args.repeat)
        else:
            bench_sandbox(COLD_STARTS * args.repeat, args.rounds)


if __name__ == "__main__":
    main()
