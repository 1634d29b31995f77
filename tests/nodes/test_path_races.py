"""Files under the input/output/temp roots are opened without following a symlink *when they are
opened*, not only when their name was checked (issue 10, item 5).

A real swapper process keeps turning a subfolder of the root into a symlink to a folder outside
and back, while the real nodes save (through the engine) and load: no file may land outside the
root and no byte outside it may be read; each attempt succeeds inside the root or fails with
VE-700 (or, for a load that catches the folder half-swapped, "not a file").
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import vortex_jupyter as vx
from vortex_jupyter.errors import PathError, VortexError
from vortex_jupyter.nodes import context
from vortex_jupyter.nodes.builtin.animated import SaveAnimatedPNG
from vortex_jupyter.nodes.builtin.image import LoadImage, PreviewImage, SaveImage
from vortex_jupyter.nodes.builtin.masks import LoadImageMask
from vortex_jupyter.nodes.builtin.save_advanced import SaveImageAdvanced
from vortex_jupyter.nodes.builtin.text_nodes import SaveText

#: Swaps ``<root>/sub`` between a real folder and a symlink to ``outside`` as fast as it can
#: (a fresh "aside" name each time, so a folder a save made meanwhile never jams it).
SWAPPER = r"""
import itertools, os, sys
root, outside = sys.argv[1], sys.argv[2]
sub = os.path.join(root, "sub")
print("ready", flush=True)
for n in itertools.count():
    aside = os.path.join(root, f"aside{n}")
    for step in (lambda: os.rename(sub, aside), lambda: os.symlink(outside, sub),
                 lambda: os.unlink(sub), lambda: os.rename(aside, sub)):
        try:
            step()
        except OSError:
            pass
"""
SAVES = 512
LOADS = 512


@pytest.fixture
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    dirs = {k: tmp_path / k for k in ("input", "output", "temp", "outside")}
    for folder in dirs.values():
        (folder / "sub").mkdir(parents=True)
    for kind in ("input", "output", "temp"):
        monkeypatch.setenv(f"VORTEX_{kind.upper()}_DIR", str(dirs[kind]))
    return dirs


@contextmanager
def swapping(root: Path, outside: Path) -> Iterator[None]:
    proc = subprocess.Popen([sys.executable, "-c", SWAPPER, str(root), str(outside / "sub")],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(0.05)
        yield
    finally:
        proc.kill()
        proc.wait()
        if (root / "sub").is_symlink():
            (root / "sub").unlink()


def rounds(outcomes: Counter[str], need: set[str], minimum: int, seconds: float = 30.0) -> Iterator[int]:
    """0, 1, 2 ...: at least ``minimum`` rounds, then on until every outcome in ``need`` was seen
    (the swapper shares the CPUs: it may sleep through a whole burst of attempts)."""
    start, n = time.monotonic(), 0
    while n < minimum or (not need <= set(outcomes) and time.monotonic() - start < seconds):
        yield n
        n += 1


def files_in(folder: Path) -> list[Path]:
    """Every file under ``folder``, symlinks not followed."""
    return [Path(d) / f for d, _, names in os.walk(folder) for f in names if not (Path(d) / f).is_symlink()]


@pytest.fixture
def quiet_previews() -> Iterator[None]:
    token = context.activate(context.NodeContext())
    yield
    context.deactivate(token)


def outcome(exc: BaseException) -> str:
    """How an attempt failed: "VE-700" for a refused symlink (a PathError, in the engine too, or
    the ValueError SaveImageAdvanced and SaveText make of one before writing), "removed" for a
    save into a folder the swapper deleted meanwhile (it replaces a folder we just made with its
    own), "missing" for a load that found no file; else the exception itself (failing the test)."""
    text = exc.message if isinstance(exc, VortexError) else str(exc)
    if (isinstance(exc, PathError | ValueError) or getattr(exc, "code", "") == "VE-700") \
            and "unsafe file name 'sub/" in text and "symlink" in text:
        return "VE-700"
    if "FileNotFoundError" in text or isinstance(exc, FileNotFoundError):
        if "the folder 'sub' was removed while" in text:
            return "removed"
        if "is not a file in" in text:
            return "missing"
    return f"{type(exc).__name__}: {text}"


def test_saveimage_through_the_engine_never_writes_outside_the_root_while_a_folder_is_swapped(roots):
    g = vx.Graph()
    source = g.add("EmptyImage", width=2, height=2, batch_size=8, color=0)
    save = g.add("SaveImage", images=source.out(0), filename_prefix="sub/shot")
    outcomes: Counter[str] = Counter()
    with swapping(roots["output"], roots["outside"]):
        for n in rounds(outcomes, {"ok", "VE-700"}, SAVES // 8):
            source.params["color"] = n + 1  # a new input: SaveImage runs again, eight saves each run
            err = g.run(executor="inline").errors.get(save.id)
            outcomes["ok" if err is None else outcome(err)] += 1
    escaped = files_in(roots["outside"])
    assert escaped == [], f"{len(escaped)} files written outside the root, e.g. {escaped[:2]}: {outcomes}"
    assert set(outcomes) - {"removed"} == {"ok", "VE-700"}, outcomes  # both sides of the swap were met
    inside = files_in(roots["output"])
    # a failed run keeps the images it saved before the swap (and "removed" ones are lost)
    assert 0 < len(inside) <= 8 * sum(outcomes.values())
    assert all(p.suffix == ".png" and p.read_bytes()[:4] == b"\x89PNG" for p in inside)


def _save_images(prefix: str) -> object:
    return SaveImage().save_images(np.zeros((2, 2, 2, 3), np.float32), prefix)


def _preview(prefix: str) -> object:
    return PreviewImage().save_images(np.zeros((1, 2, 2, 3), np.float32), prefix)


def _save_advanced(prefix: str) -> object:
    return SaveImageAdvanced().execute(np.zeros((2, 2, 2, 3), np.float32), prefix, "png",
                                       **{"format.bit_depth": "8-bit", "format.input_color_space": "sRGB"})


def _save_animated(prefix: str) -> object:
    return SaveAnimatedPNG().save_images(np.zeros((2, 2, 2, 3), np.float32), fps=6.0, filename_prefix=prefix)


def _save_text(prefix: str) -> object:
    return SaveText().execute("hello", prefix)


@pytest.mark.parametrize(("save", "root"), [(_save_images, "output"), (_preview, "temp"),
                                            (_save_advanced, "output"), (_save_animated, "output"),
                                            (_save_text, "output")])
def test_every_saver_refuses_a_folder_swapped_for_a_symlink_at_the_moment_it_writes(roots, quiet_previews, save,
                                                                                 root):
    outcomes: Counter[str] = Counter()
    with swapping(roots[root], roots["outside"]):
        for _ in rounds(outcomes, {"ok", "VE-700"}, SAVES // 4):
            try:
                save("sub/shot")
                outcomes["ok"] += 1
            except Exception as exc:
                outcomes[outcome(exc)] += 1
    escaped = files_in(roots["outside"])
    assert escaped == [], f"{len(escaped)} files written outside the root, e.g. {escaped[:2]}: {outcomes}"
    assert set(outcomes) <= {"ok", "VE-700", "removed"} and outcomes["ok"] > 0, outcomes


@pytest.mark.parametrize("node", [LoadImage, LoadImageMask])
def test_loaders_never_read_a_file_outside_the_root_through_a_swapped_folder(roots, node):
    Image.new("RGB", (2, 2), (255, 0, 0)).save(roots["input"] / "sub" / "img.png")
    Image.new("RGB", (2, 2), (0, 0, 255)).save(roots["outside"] / "sub" / "img.png")  # the "secret"
    load = node().load_image
    outcomes: Counter[str] = Counter()
    with swapping(roots["input"], roots["outside"]):
        for _ in rounds(outcomes, {"ok", "VE-700"}, LOADS):
            try:
                pixels = load("sub/img.png", "blue") if node is LoadImageMask else load("sub/img.png")
            except Exception as exc:
                outcomes[outcome(exc)] += 1
                continue
            blue = float(np.asarray(pixels[0]).reshape(-1)[-1]) if node is LoadImageMask else \
                float(pixels[0][0, 0, 0, 2])
            outcomes["secret" if blue > 0.5 else "ok"] += 1
    assert outcomes["secret"] == 0, f"read the file outside the root {outcomes['secret']} times: {outcomes}"
    assert set(outcomes) <= {"ok", "VE-700", "missing"} and outcomes["ok"] and outcomes["VE-700"], outcomes
