"""Choosing executors by name, and the in-process executor's preview encoding."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from vortex_jupyter.engine import executors
from vortex_jupyter.engine.executors import default_executor_name, get_executor
from vortex_jupyter.engine.inprocess import InProcessExecutor, encode_preview
from vortex_jupyter.errors import VortexError


def test_inline_is_a_process_wide_singleton_so_its_cache_is_shared():
    assert get_executor("inline") is get_executor("inline")
    assert isinstance(get_executor("INLINE"), InProcessExecutor)


def test_an_executor_instance_passes_through_and_junk_is_refused():
    ex = InProcessExecutor()
    assert get_executor(ex) is ex
    with pytest.raises(VortexError, match="execute"):
        get_executor(object())  # type: ignore[arg-type]
    with pytest.raises(VortexError, match="unknown executor"):
        get_executor("gpu-cluster")


def test_env_var_overrides_the_default(monkeypatch):
    monkeypatch.setenv("VORTEX_EXECUTOR", "inline")
    assert default_executor_name() == "inline"
    assert get_executor(None) is get_executor("inline")


def test_default_is_workers_when_the_pool_imports_else_inline(monkeypatch):
    monkeypatch.delenv("VORTEX_EXECUTOR", raising=False)
    monkeypatch.setattr(executors, "_workers_available", lambda: False)
    assert default_executor_name() == "inline"
    monkeypatch.setattr(executors, "_workers_available", lambda: True)
    assert default_executor_name() == "workers"


def test_previews_accept_float_batches_uint8_arrays_pil_images_and_bytes():
    batch = np.zeros((2, 8, 6, 3), dtype=np.float32)
    batch[0, :, :, 0] = 1.0
    mime, data = encode_preview(batch)
    img = Image.open(io.BytesIO(data))
    assert mime == "image/png" and img.size == (6, 8) and img.getpixel((0, 0)) == (255, 0, 0)
    mime, data = encode_preview(np.full((4, 4), 7, dtype=np.uint8))
    assert Image.open(io.BytesIO(data)).getpixel((1, 1)) == 7
    assert encode_preview(Image.new("RGB", (2, 2)))[1].startswith(b"\x89PNG")
    assert encode_preview(b"\xff\xd8jpegdata")[0] == "image/jpeg"


def test_size_of_counts_array_bytes_and_containers():
    ex = InProcessExecutor()
    assert ex.size_of(np.zeros(1000, dtype=np.float32)) == 4000
    assert ex.size_of({"samples": np.zeros(10, dtype=np.uint8)}) >= 10
    assert ex.size_of(3) > 0 and ex.size_of("abc") > 3


def test_the_engine_does_not_import_workers_the_front_door_injects_them():
    import subprocess
    import sys

    code = ("import sys; from vortex_jupyter.engine import executors as e; "
            "print(e.default_executor_name(), any(m.startswith('vortex_jupyter.workers') for m in sys.modules)); "
            "import vortex_jupyter as vx; vx.Graph; print(e.default_executor_name())")
    env = {k: v for k, v in __import__("os").environ.items() if k != "VORTEX_EXECUTOR"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["inline", "False", "workers"]


def test_registered_executors_are_built_once_on_first_use(monkeypatch):
    made = []
    monkeypatch.setattr(executors, "_factories", dict(executors._factories))
    monkeypatch.setattr(executors, "_singletons", {})
    executors.register("Counting", lambda: made.append(1) or InProcessExecutor())
    assert get_executor("counting") is get_executor("COUNTING") and made == [1]
