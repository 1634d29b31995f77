"""``vortex-shapes``: the built-in demo model that draws something, shipped inside the wheel.

An SD1-shaped checkpoint (UNet2DConditionModel, AutoencoderKL, CLIPTextModel reading the package's
offline CLIP tokenizer, as ``vortex-tiny``) trained by ``scripts/train_shapes.py`` on coloured
circles, squares, triangles and stars on coloured backgrounds (``scenes.py`` lists what it knows).
It draws "a red circle on a blue background" at 64x64 in about a second on a CPU.

Files, next to this module (package data)::

    vortex-shapes.safetensors   one file in the original SD key layout (``models.write_single_file``)
    vortex-shapes.json          its sha256 and size, and how it was trained

``single_file()`` checks the file against the recorded sha256 before handing out its path (once per
process and file version), so a truncated or altered file is a ``ModelError`` that says so rather
than a model that draws noise. Torch-free.

>>> single_file().name  # doctest: +SKIP
'vortex-shapes.safetensors'
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ....errors import ModelError

__all__ = ["NAME", "NAMES", "single_file", "verified"]

NAME = "vortex-shapes"
#: The names CheckpointLoaderSimple accepts for it.
NAMES = frozenset({NAME, NAME + ".safetensors"})
_HERE = Path(__file__).resolve().parent
_verified: set[tuple[str, int, int]] = set()  # (path, size, mtime_ns) whose sha256 matched


def single_file() -> Path:
    """The checkpoint's path once its sha256 matches ``vortex-shapes.json``; else ModelError."""
    return verified(_HERE / f"{NAME}.safetensors", _HERE / f"{NAME}.json")


def verified(path: Path, record: Path) -> Path:
    """``path`` when its sha256 is the one ``record`` (a JSON file with ``"sha256"``) holds."""
    fix = "reinstall vortex-jupyter (pip install --force-reinstall vortex-jupyter), or rerun scripts/train_shapes.py"
    try:
        expected = str(json.loads(record.read_text())["sha256"])
        stat = path.stat()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"the built-in model {NAME!r} is not installed completely: {exc}", hint=fix) from exc
    stamp = (str(path), stat.st_size, stat.st_mtime_ns)
    if stamp in _verified:
        return path
    digest = _sha256(path)
    if digest != expected:
        raise ModelError(f"the built-in model {NAME!r} is corrupted: {path} has sha256 {digest}, "
                         f"but {record.name} records {expected}", hint=fix)
    _verified.add(stamp)
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
