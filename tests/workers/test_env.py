"""Settings a node reads from the environment follow the kernel's, even for workers started
before the kernel changed them (a notebook setting ``VORTEX_OUTPUT_DIR`` after a first run)."""

from __future__ import annotations

import pytest

from vortex_jupyter.errors import ProtocolError
from vortex_jupyter.workers import protocol as p
from vortex_jupyter.workers.worker import _apply_env

from . import nodes_lib as n
from .conftest import run, task


def test_a_worker_sees_the_kernels_new_output_dir_without_a_restart(ex, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VORTEX_OUTPUT_DIR", "/first")
    first = run(ex, [task("a", n.env_value, name="VORTEX_OUTPUT_DIR")])
    assert ex.fetch(first.results["a"][0]) == "/first"
    monkeypatch.setenv("VORTEX_OUTPUT_DIR", "/second")
    monkeypatch.delenv("VORTEX_TEMP_DIR", raising=False)
    second = run(ex, [task("b", n.env_value, name="VORTEX_OUTPUT_DIR"),
                      task("c", n.env_value, name="VORTEX_TEMP_DIR")])
    assert ex.fetch(second.results["b"][0]) == "/second"
    assert ex.fetch(second.results["c"][0]) == "<unset>"


def test_only_the_forwarded_settings_can_be_set_from_the_kernel() -> None:
    with pytest.raises(ProtocolError, match="may not set 'LD_PRELOAD'"):
        _apply_env({"LD_PRELOAD": "/tmp/evil.so"})
    with pytest.raises(ProtocolError):
        _apply_env({"VORTEX_OUTPUT_DIR": 5})
    assert "VORTEX_MODELS_DIR" in p.FORWARDED_ENV and len(p.FORWARDED_ENV) == len(set(p.FORWARDED_ENV))
