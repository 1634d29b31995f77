"""Node packs at run time: their nodes in the registry, run on workers of their own environments.

Real packs (folders written on the fly, resolved by uv), real worker processes started with
each pack environment's python, tensors crossing between a core worker and a pack's worker.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import vortex_jupyter as vx
from vortex_jupyter.nodes.registry import REGISTRY
from vortex_jupyter.packages.envs import PackStore
from vortex_jupyter.packages.pack import PackError
from vortex_jupyter.packages.runtime import PackCall
from vortex_jupyter.workers import sandbox
from vortex_jupyter.workers.executor import WorkerExecutor

from .conftest import comfy_pack, write_pack

BRIGHTEN = '''
import torch

class Brighten:
    RETURN_TYPES = ("IMAGE", "STRING")
    FUNCTION = "go"
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",), "amount": ("FLOAT", {"default": 0.25})}}

    def go(self, image, amount):
        import sys
        return (image + amount, sys.executable)

NODE_CLASS_MAPPINGS = {"Brighten": Brighten}
'''

HOSTILE = '''
import os

class ReadSecret:
    RETURN_TYPES = ("STRING",)
    FUNCTION = "go"
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"path": ("STRING", {"default": ""})}}

    def go(self, path):
        with open(path) as f:
            return (f.read(),)

NODE_CLASS_MAPPINGS = {"%(node)s": ReadSecret}
'''


@pytest.fixture
def pack_types() -> Iterator[list[str]]:
    """Node type names a test registers from its packs, unregistered after it."""
    names: list[str] = []
    yield names
    for name in names:
        REGISTRY.unregister(name)


@pytest.fixture
def executor() -> Iterator[WorkerExecutor]:
    """A pool of its own: pack workers (and the sandbox setting) are per pool."""
    ex = WorkerExecutor(devices=["cpu"], warm_start=False)
    yield ex
    ex.pool.close()


def _install(store: PackStore, folder: Path, names: list[str]) -> None:
    store.install(str(folder))
    names.extend(REGISTRY.load_packs(store))


def test_installed_pack_nodes_are_registered_without_importing_their_code(tmp_path: Path,
                                                                         pack_types: list[str]) -> None:
    store = PackStore.default()
    _install(store, comfy_pack(tmp_path / "a", "old-six", "six<1.16", node="OldSix"), pack_types)
    spec = REGISTRY.get("OldSix")
    assert spec.pack == "old-six" and isinstance(spec.fn, PackCall)
    assert spec.display_name == "Six version" and spec.input("x").default == 1  # type: ignore[union-attr]
    assert spec.to_json()["pack"] == "old-six"
    assert spec.version.startswith("1.0.0:")  # the pack's version enters every cache key
    with pytest.raises(PackError, match="only in its own worker"):
        spec.fn(x=1)  # type: ignore[misc]  (never imported into the kernel)
    # a second pack with the same node type: reachable by its qualified name, the first keeps the name
    _install(store, comfy_pack(tmp_path / "b", "new-six", "six>=1.16", node="OldSix"), pack_types)
    assert REGISTRY.get("OldSix").pack == "old-six" and REGISTRY.get("new-six/OldSix").pack == "new-six"


def test_conflicting_packs_and_the_core_share_one_graph(tmp_path: Path, pack_types: list[str],
                                                        executor: WorkerExecutor) -> None:
    store = PackStore.default()
    _install(store, comfy_pack(tmp_path / "a", "old-six", "six<1.16", node="OldSix"), pack_types)
    _install(store, comfy_pack(tmp_path / "b", "new-six", "six>=1.16", node="NewSix"), pack_types)
    _install(store, write_pack(tmp_path / "c", "brighten", [], BRIGHTEN), pack_types)
    g = vx.Graph()
    old, new = g.add("OldSix", x=1), g.add("NewSix", x=2)
    both = g.add("StringConcatenate", string_a=old.out(0), string_b=new.out(0), delimiter="|")
    img = g.add("EmptyImage", width=8, height=4, batch_size=1, color=0)
    bright = g.add("Brighten", image=img.out(0), amount=0.25)
    inverted = g.add("ImageInvert", image=bright.out(0))
    run = g.run(executor=executor)
    assert not run.errors, run.errors
    old_v, new_v = run.outputs[both.id][0].split("|")
    assert old_v == "1.15.0" and tuple(map(int, new_v.split(".")[:2])) >= (1, 16)
    # the tensor went core -> pack worker -> core: values, and the pack's own interpreter
    assert np.allclose(np.asarray(run.outputs[inverted.id][0]), 0.75)
    assert run.outputs[bright.id][1] == str(store.python(store.env_of("brighten")))
    workers = {w.pack: w for w in executor.pool.supervisor.workers.values()}
    assert set(workers) == {"", "old-six", "new-six", "brighten"}
    assert len({w.pid for w in workers.values()}) == 4
    # the second run is served from the cache: no pack worker runs anything again
    again = g.run(executor=executor)
    assert not again.errors and again.stats["ran"] == 0


def test_a_pack_node_fails_alone_when_its_pack_is_gone(tmp_path: Path, pack_types: list[str],
                                                       executor: WorkerExecutor) -> None:
    store = PackStore.default()
    _install(store, comfy_pack(tmp_path / "a", "old-six", "six<1.16", node="OldSix"), pack_types)
    store.remove("old-six")  # the registry still lists it (loaded before): the run finds out
    g = vx.Graph()
    six = g.add("OldSix", x=1)
    fine = g.add("IntAdd", a=2, b=3)
    run = g.run(executor=executor)
    assert run.outputs[fine.id][0] == 5
    err = run.errors[six.id]
    assert err.code == "VE-900" and "old-six" in str(err) and "vtx install" in str(err)


def test_a_reinstalled_pack_gets_a_new_worker_with_its_new_code(tmp_path: Path, pack_types: list[str],
                                                                executor: WorkerExecutor) -> None:
    store = PackStore.default()
    init = (HOSTILE % {"node": "Says"}).replace("with open(path) as f:\n            return (f.read(),)", "return (%r,)")
    _install(store, write_pack(tmp_path / "v1", "versioned", [], init % "one"), pack_types)
    g = vx.Graph()
    says = g.add("Says", path="")
    first = g.run(executor=executor)
    assert first.outputs[says.id][0] == "one"
    _install(store, write_pack(tmp_path / "v2", "versioned", [], init % "two",
                               version="1.0.1"), pack_types)
    second = g.run(executor=executor)
    assert second.outputs[says.id][0] == "two"


needs_sandbox = pytest.mark.skipif(not (sandbox.capabilities()["landlock_abi"] and sandbox.capabilities()["seccomp"]),
                                   reason="this machine has no Landlock or seccomp (CI's has both)")


@needs_sandbox
def test_pack_workers_are_sandboxed_by_default_with_their_permissions(tmp_path: Path, pack_types: list[str],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "home" / ".ssh" / "id_rsa"
    secret.parent.mkdir(parents=True)
    secret.write_text("PRIVATE KEY")
    allowed = tmp_path / "luts"
    allowed.mkdir()
    (allowed / "lut.txt").write_text("LUT")
    store = PackStore.default()
    _install(store, write_pack(tmp_path / "h", "hostile", [], HOSTILE % {"node": "ReadSecret"}), pack_types)
    granted = write_pack(tmp_path / "g", "granted", [], HOSTILE % {"node": "ReadGranted"})
    with (granted / "pyproject.toml").open("a") as f:
        f.write(textwrap.dedent(f"""
            [tool.vortex.permissions]
            read = ["{allowed}"]
            """))
    _install(store, granted, pack_types)
    g = vx.Graph()
    steal = g.add("ReadSecret", path=str(secret))
    lut = g.add("ReadGranted", path=str(allowed / "lut.txt"))
    steal_lut = g.add("ReadSecret", path=str(allowed / "lut.txt"))  # granted to the other pack only
    fine = g.add("IntAdd", a=2, b=3)
    monkeypatch.delenv("VORTEX_PACK_SANDBOX", raising=False)
    ex = WorkerExecutor(devices=["cpu"], warm_start=False)
    try:
        run = g.run(executor=ex)
        assert run.outputs[fine.id][0] == 5 and run.outputs[lut.id][0] == "LUT"
        for node in (steal, steal_lut):
            err = run.errors[node.id]
            assert err.code == "VE-506", err
            assert "pack 'hostile'" in str(err) and "for reading" in str(err)
            assert "VORTEX_PACK_SANDBOX=off" in str(err) and "[tool.vortex.permissions]" in str(err)
        assert {w.pack: w.sandboxed for w in ex.pool.supervisor.workers.values()} == {
            "": False, "hostile": True, "granted": True}
    finally:
        ex.pool.close()
    # the same nodes with the pack sandbox off: the sandbox was what stopped them
    monkeypatch.setenv("VORTEX_PACK_SANDBOX", "off")
    ex = WorkerExecutor(devices=["cpu"], warm_start=False)
    try:
        run = g.run(executor=ex)
        assert not run.errors, run.errors
        assert run.outputs[steal.id][0] == "PRIVATE KEY" and run.outputs[steal_lut.id][0] == "LUT"
    finally:
        ex.pool.close()


def test_bad_permissions_are_refused_at_install(tmp_path: Path) -> None:
    pack = write_pack(tmp_path / "p", "greedy", [], HOSTILE % {"node": "X"})
    with (pack / "pyproject.toml").open("a") as f:
        f.write('\n[tool.vortex.permissions]\nnetwork = "yes"\n')
    with pytest.raises(PackError, match=r"permissions\] network must be true or false"):
        PackStore.default().install(str(pack))


CRASHY = '''
import os

class MaybeCrash:
    RETURN_TYPES = ("INT",)
    FUNCTION = "go"
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"x": ("INT", {"default": 1})}}

    def go(self, x):
        if x == 0:
            os._exit(3)
        return (x * 10,)

NODE_CLASS_MAPPINGS = {"MaybeCrash": MaybeCrash}
'''


def test_a_pack_node_that_kills_its_worker_costs_that_node_only(tmp_path: Path, pack_types: list[str],
                                                                executor: WorkerExecutor) -> None:
    store = PackStore.default()
    _install(store, write_pack(tmp_path / "c", "crashy", [], CRASHY), pack_types)
    g = vx.Graph()
    ok_before = g.add("MaybeCrash", x=1)
    crash = g.add("MaybeCrash", x=0)
    ok_after = g.add("MaybeCrash", x=2)
    core = g.add("IntAdd", a=ok_before.out(0), b=ok_after.out(0))
    run = g.run(executor=executor)
    assert set(run.errors) == {crash.id}
    assert run.errors[crash.id].code in ("VE-501", "VE-502") and "exit" in str(run.errors[crash.id]).lower()
    assert run.outputs[core.id][0] == 30
    # the pack's worker was replaced; the next run uses it
    g[crash.id].params["x"] = 5
    again = g.run(executor=executor)
    assert not again.errors and again.outputs[crash.id][0] == 50
