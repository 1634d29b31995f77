"""``import vortex_jupyter`` stays light: no torch, diffusers or transformers (checked in a fresh process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

MATH = Path(__file__).resolve().parent.parent / "examples" / "math.json"
HEAVY = ("torch", "diffusers", "transformers")


def _modules_after(code: str) -> set[str]:
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout.splitlines()[-1]))


def test_import_does_not_import_torch():
    loaded = _modules_after("import vortex_jupyter")
    assert not [m for m in loaded if m.split(".")[0] in HEAVY]


def test_building_validating_and_running_a_graph_inline_does_not_import_torch():
    loaded = _modules_after(
        "import vortex_jupyter as vx\n"
        f"g = vx.load({str(MATH)!r})\n"
        "g.validate()\n"
        "assert g.run(executor='inline').status == 'ok'\n"
        "vx.registry.to_json()\n"
    )
    assert not [m for m in loaded if m.split(".")[0] in HEAVY]


def test_the_front_door_exports_what_all_lists():
    import vortex_jupyter as vx

    for name in ("Graph", "Node", "Run", "load", "node", "ValidationError"):
        assert name in vx.__all__
        assert getattr(vx, name) is not None
