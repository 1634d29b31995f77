"""Environment create + install of a node pack with 14 small wheels: ``vtx`` (uv) vs venv + pip.

    python benchmarks/packages.py [--repeat 1]

Both sides make a ``--system-site-packages`` environment on this python and install the same
pack requirements from PyPI (pure-python packages the core does not have), cold (empty
download cache) and warm (the cache of the cold run). The uv side is the whole
``PackStore.install``: resolve with hashes under the core's pins (``uv pip compile``), create
the venv, ``uv pip sync`` the lock, and discover the pack's node types in a subprocess; the pip
side only creates the venv and installs (no lock, no hashes, no discovery).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vortex_jupyter.packages.envs import PackStore

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


def _pack(root: Path) -> Path:
    folder = root / "bench_pack"
    folder.mkdir()
    quoted = ", ".join(f'"{d}"' for d in DEPS)
    (folder / "pyproject.toml").write_text(f'[project]\nname = "bench-pack"\nversion = "1.0.0"\n'
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=1, help="runs per row (the best one is shown)")
    args = ap.parse_args()
    rows: dict[str, list[float]] = {}
    wheels = 0
    with tempfile.TemporaryDirectory(prefix="vtx-bench-") as tmp:
        base = Path(tmp)
        pack = _pack(base)
        for r in range(args.repeat):
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


if __name__ == "__main__":
    main()
