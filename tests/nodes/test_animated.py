"""SaveAnimatedWEBP / SaveAnimatedPNG: real files, frames, timing, metadata where ComfyUI puts it, safe paths."""

from __future__ import annotations

import json
import struct
import threading

import numpy as np
import pytest
from PIL import Image, ImageSequence

from vortex_jupyter.errors import PathError
from vortex_jupyter.nodes import context
from vortex_jupyter.nodes.registry import NodeRegistry

PROMPT = {"1": {"class_type": "SaveAnimatedPNG", "inputs": {"fps": 4.0}}}
WORKFLOW = {"nodes": [{"id": 1, "type": "SaveAnimatedPNG"}], "links": [], "note": "ünïcode"}


@pytest.fixture(scope="module")
def registry():
    return NodeRegistry()


@pytest.fixture
def output_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("VORTEX_OUTPUT_DIR", str(tmp_path))
    return tmp_path


class Recorder(context.NodeContext):
    def __init__(self):
        self.previews = []

    def preview(self, image, *, final=False):
        self.previews.append((image, final))


@pytest.fixture
def recorder():
    ctx = Recorder()
    token = context.activate(ctx)
    yield ctx
    context.deactivate(token)


def frames(n=3, h=8, w=10):
    out = np.zeros((n, h, w, 3), np.float32)
    for i in range(n):
        out[i, :, :, i % 3] = 1.0  # red, green, blue frames
    return out


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, payload) of every chunk, walked by the PNG spec (length, type, data, CRC)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        chunks.append((data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]))
        pos += 12 + length
    return chunks


def save(registry, type_, **kwargs):
    return registry.get(type_).fn(**kwargs).ui


def test_animated_png_has_every_frame_the_timing_and_comf_chunks_after_the_image_data(registry, output_dir, recorder):
    ui = save(registry, "SaveAnimatedPNG", images=frames(), filename_prefix="anim/clip", fps=4.0, compress_level=4,
              prompt=PROMPT, extra_pnginfo={"workflow": WORKFLOW})
    assert ui == {"images": [{"filename": "clip_00001_.png", "subfolder": "anim", "type": "output"}],
                  "animated": (True,)}
    path = output_dir / "anim" / "clip_00001_.png"
    with Image.open(path) as img:
        decoded = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(img)]
        assert img.info["duration"] == 250  # int(1000 / fps)
    assert len(decoded) == 3 and all(decoded[i][0, 0, i] == 255 and decoded[i][0, 0].sum() == 255 for i in range(3))
    chunks = png_chunks(path.read_bytes())
    types = [t for t, _ in chunks]
    comf = [payload for t, payload in chunks if t == b"comf"]
    assert types.index(b"comf") > max(i for i, t in enumerate(types) if t in (b"IDAT", b"fdAT"))
    keys = [c.split(b"\0", 1)[0] for c in comf]
    assert keys == [b"prompt", b"workflow"]
    assert json.loads(comf[0].split(b"\0", 1)[1]) == PROMPT
    assert json.loads(comf[1].split(b"\0", 1)[1]) == WORKFLOW  # non-ASCII survives as JSON escapes
    [(shown, final)] = recorder.previews
    assert final and shown == path.read_bytes()  # the APNG itself: the notebook shows it moving


def test_animated_webp_has_frames_timing_and_the_graph_in_exif_tags_like_comfyui(registry, output_dir, recorder):
    ui = save(registry, "SaveAnimatedWEBP", images=frames(), filename_prefix="clip", fps=10.0, lossless=True,
              quality=80, method="fastest", prompt=PROMPT, extra_pnginfo={"workflow": WORKFLOW, "extra": [1]})
    assert ui["images"] == [{"filename": "clip_00001_.webp", "subfolder": "", "type": "output"}]
    assert ui["animated"] == (True,)
    with Image.open(output_dir / "clip_00001_.webp") as img:
        assert img.format == "WEBP" and img.n_frames == 3
        decoded = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(img)]
        exif = img.getexif()
        assert img.info["duration"] == 100
    assert all(decoded[i][0, 0, i] == 255 and decoded[i][0, 0].sum() == 255 for i in range(3))  # lossless
    assert exif[0x0110] == "prompt:" + json.dumps(PROMPT)  # Model
    assert exif[0x010F] == "workflow:" + json.dumps(WORKFLOW)  # Make, then counting down
    assert exif[0x010E] == 'extra:[1]'
    [(shown, final)] = recorder.previews
    assert final and np.asarray(shown).shape == (8, 10, 3)  # the first frame


def test_one_frame_is_not_flagged_animated_and_numbers_continue(registry, output_dir, recorder):
    for _ in range(2):
        ui = save(registry, "SaveAnimatedWEBP", images=frames(1), filename_prefix="one", fps=6.0, lossless=False,
                  quality=50, method="default")
    assert ui == {"images": [{"filename": "one_00002_.webp", "subfolder": "", "type": "output"}]}
    assert sorted(p.name for p in output_dir.iterdir()) == ["one_00001_.webp", "one_00002_.webp"]


def test_parallel_animated_saves_never_overwrite_each_other(registry, output_dir):
    threads = [threading.Thread(target=save, args=(registry, "SaveAnimatedPNG"),
                                kwargs={"images": frames(2), "filename_prefix": "race", "fps": 6.0, "compress_level": 1})
               for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(p.name for p in output_dir.iterdir()) == [f"race_{i:05}_.png" for i in range(1, 7)]


@pytest.mark.parametrize(("prefix", "error"), [("../up", PathError), ("/etc/x", PathError), ("dir/", PathError)])
def test_prefixes_that_escape_or_name_no_file_are_refused(registry, output_dir, prefix, error):
    with pytest.raises(error):
        save(registry, "SaveAnimatedPNG", images=frames(2), filename_prefix=prefix, fps=6.0, compress_level=4)
    assert not any(output_dir.rglob("*.png"))


def test_specs_match_comfyuis_widgets_and_hidden_inputs(registry):
    webp, apng = registry.get("SaveAnimatedWEBP"), registry.get("SaveAnimatedPNG")
    assert [(p.name, p.default) for p in webp.inputs] == [
        ("images", webp.inputs[0].default), ("filename_prefix", "ComfyUI"), ("fps", 6.0), ("lossless", True),
        ("quality", 80), ("method", "default")]
    assert webp.inputs[5].choices == ("default", "fastest", "slowest")
    assert [p.name for p in apng.inputs] == ["images", "filename_prefix", "fps", "compress_level"]
    assert (apng.inputs[2].min, apng.inputs[2].max, apng.inputs[3].max) == (0.01, 1000.0, 9)
    assert webp.output_node and apng.output_node and webp.category == apng.category == "image/animation"
    assert set(webp.hidden) == set(apng.hidden) == {"prompt", "extra_pnginfo"}
