"""``g.run(executor="ray")`` on a real local Ray: results, determinism, faults, cache, events.

Ray starts once per session (conftest: ``ray.init(num_cpus=2)``); graphs run through the public
API, no mocks. Node functions come from ``ray_nodes`` (shipped to the actors by value).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import vortex_jupyter as vx
from vortex_jupyter.engine.cache import cache_for
from vortex_jupyter.workers.ray_executor import RayRef

pytestmark = pytest.mark.ray

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class Events:
    """A listener: every event of a graph's runs, by kind and node."""

    def __init__(self, graph: Any) -> None:
        self.events: list[Any] = []
        graph.on_event(self.events.append)

    def of(self, kind: str, node: str | None = None) -> list[Any]:
        return [e for e in self.events if e.kind == kind and (node is None or e.node == node)]


def _txt2img(seed: int) -> Any:
    g = vx.load(json.loads((EXAMPLES / "txt2img.json").read_text()))
    g.nodes["3"].params["seed"] = seed
    return g


def _refs(ex: Any, run: Any, node: str) -> tuple[Any, ...]:
    """The executor references the engine's cache holds for ``node``'s outputs."""
    return cache_for(ex).get(run._state.node_keys[node]).refs


def _branches(g: Any, n: int, node: str = "ray_shift", size: int = 4, **params: Any) -> list[Any]:
    """``n`` branches ``ray_ramp -> node``: independent of each other."""
    return [g.add(node, image=g.add("ray_ramp", n=size, scale=float(i + 1)).out(0), **params) for i in range(n)]


def test_txt2img_on_ray_has_the_pixels_of_the_worker_pool(tiny_path: Path, out_dir: Path) -> None:
    from vortex_jupyter.workers.executor import WorkerExecutor

    workers = WorkerExecutor(devices=["cpu"], threads=1)  # one torch thread, as a num_cpus=1 actor
    try:
        want = _txt2img(311).run(executor=workers, outputs=["8"])
        assert want.status == "ok", want.errors
        expected = np.array(want.outputs["8"][0])
    finally:
        workers.close()
    g = _txt2img(311)
    events = Events(g)
    run = g.run(executor="ray")
    assert run.status == "ok", run.errors
    image = run.outputs["8"][0]
    assert isinstance(image, np.ndarray) and image.shape == (1, 64, 64, 3)
    np.testing.assert_array_equal(image, expected)
    # SaveImage wrote its PNG in the actor and its final preview reached the kernel
    assert len(list(out_dir.glob("vortex_*.png"))) == 1
    assert [e.node for e in events.of("node_preview") if e.final] == ["9"]
    assert len(events.of("node_progress", "3")) == 4


def test_models_stay_in_their_actor_and_serve_the_next_run(tiny_path: Path, out_dir: Path, ray_ex: Any) -> None:
    g = _txt2img(5)
    first = g.run(executor="ray")
    assert first.status == "ok", first.errors
    model_ref = _refs(ray_ex, first, "4")[0]
    assert isinstance(model_ref, RayRef) and model_ref.resident.startswith("ray:cpu-")
    assert type(first.outputs["4"][0]).__name__ != "dict"  # the kernel gets a description, not the model
    events = Events(g)
    g.nodes["3"].params["seed"] = 6
    second = g.run(executor="ray")
    assert second.status == "ok", second.errors
    assert {"4", "6", "7", "5"} <= set(second.cached)
    ran_on = {e.worker for e in events.of("node_finished") if e.node in ("3", "8")}
    assert ran_on == {model_ref.resident}  # where the model is loaded
    assert not np.array_equal(first.outputs["8"][0], second.outputs["8"][0])


def test_a_model_lost_with_its_actor_is_loaded_again_by_the_next_run(tiny_path: Path, out_dir: Path,
                                                                     ray_ex: Any) -> None:
    import ray

    g = _txt2img(7)
    assert g.run(executor="ray").status == "ok"
    home = _refs(ray_ex, g.run(executor="ray"), "4")[0].resident
    victim = next(a for mine in ray_ex.actors.values() for a in mine if a.name == home)
    before = ray.get(victim.handle.ping.remote())
    ray.kill(victim.handle, no_restart=False)  # Ray restarts it, empty
    deadline = time.monotonic() + 60
    while ray_ex.await_actor(victim, 60) in ("", before) and time.monotonic() < deadline:
        time.sleep(0.05)  # (the kill is asynchronous)
    g.nodes["3"].params["seed"] = 8
    events = Events(g)
    run = g.run(executor="ray")
    assert run.status == "ok", run.errors
    assert "4" not in run.cached and {e.node for e in events.of("node_finished")} >= {"4", "3", "8"}


def test_a_wide_graph_gives_the_outputs_of_the_inline_executor() -> None:
    def build() -> tuple[Any, list[Any]]:
        g = vx.Graph()
        ends = _branches(g, 6, by=0.5)
        return g, ends

    g, ends = build()
    events = Events(g)
    run = g.run(executor="ray")
    assert run.status == "ok", run.errors
    inline, inline_ends = build()
    want = inline.run(executor="inline")
    for a, b in zip(ends, inline_ends):
        np.testing.assert_array_equal(run.outputs[a.id][0], want.outputs[b.id][0])
    assert {e.worker for e in events.of("node_finished")} == {"ray:cpu-0", "ray:cpu-1"}


def test_independent_branches_run_in_parallel_on_two_cpus() -> None:
    g = vx.Graph()
    _branches(g, 2, node="ray_sleep", seconds=1.0)
    g.run(executor="ray")  # actors warm
    for node in g.nodes.values():
        if node.type == "ray_sleep":
            node.params["seconds"] = 1.01
    t0 = time.perf_counter()
    run = g.run(executor="ray")
    elapsed = time.perf_counter() - t0
    assert run.status == "ok" and run.stats["ran"] == 2, run.errors
    assert elapsed < 1.8, f"two 1 s branches took {elapsed:.2f} s: they did not overlap"


def test_a_node_that_kills_its_actor_fails_alone_with_ve502() -> None:
    g = vx.Graph()
    src = g.add("ray_ramp", n=2)
    crash = g.add("ray_crash", image=src.out(0))
    after = g.add("ray_shift", image=crash.out(0))
    others = _branches(g, 4, by=2.0)  # two of them queued behind the crash on its actor
    run = g.run(executor="ray")
    assert run.errors[crash.id].code == "VE-502", run.errors
    assert "died while running node" in run.errors[crash.id].message
    assert run.errors[after.id].code == "VE-505"
    assert set(run.errors) == {crash.id, after.id}
    for i, node in enumerate(others):
        np.testing.assert_array_equal(run.outputs[node.id][0], np.arange(4 * 4).reshape(4, 4) * (i + 1) + 2.0)
    assert run.outputs[src.id][0].shape == (2, 2)  # made before the crash, on the same actor: kept
    again = vx.Graph()
    ok = again.add("ray_shift", image=again.add("ray_ramp", n=3).out(0))
    assert again.run(executor="ray").outputs[ok.id][0].shape == (3, 3)  # the actor came back


def test_a_second_run_is_served_by_the_cache_of_ray_refs(ray_ex: Any) -> None:
    g = vx.Graph()
    ends = _branches(g, 3, size=5, by=7.0)  # (a size no other test runs: nothing cached yet)
    first = g.run(executor="ray")
    assert first.stats["ran"] == 6
    refs = _refs(ray_ex, first, ends[0].id)
    assert isinstance(refs[0], RayRef) and not refs[0].resident and refs[0].nbytes == 5 * 5 * 4
    events = Events(g)
    second = g.run(executor="ray")
    assert second.stats == {**second.stats, "ran": 0, "cached": 6}
    assert not events.of("node_started")
    value = second.outputs[ends[0].id][0]
    assert not value.flags.writeable  # a zero-copy view of Ray's object store
    np.testing.assert_array_equal(value, first.outputs[ends[0].id][0])


def test_each_node_has_one_start_and_one_end_in_order() -> None:
    g = vx.Graph()
    ends = _branches(g, 3, size=6)
    bad = g.add("ray_crash", image=ends[0].out(0))
    events = Events(g)
    run = g.run(executor="ray")
    assert set(run.errors) == {bad.id}
    for node in g.nodes:
        kinds = [e.kind for e in events.events if getattr(e, "node", None) == node]
        assert kinds.count("node_started") == 1, (node, kinds)
        assert kinds.count("node_finished") + kinds.count("node_failed") == 1, (node, kinds)
        start = kinds.index("node_started")
        assert kinds[0] == "node_queued" and start < len(kinds) - 1
        assert all(k in ("node_progress", "node_preview") for k in kinds[start + 1:-1]), kinds
    for end in ends:
        assert [e.value for e in events.of("node_progress", end.id)] == [0.0, 1.0]


def test_cancel_stops_the_running_node_and_fails_the_rest_with_ve504() -> None:
    g = vx.Graph()
    src = g.add("ray_ramp", n=2)
    slow = g.add("ray_steps", image=src.out(0), steps=500)
    spin = g.add("ray_spin", image=src.out(0), seconds=60.0)
    after = g.add("ray_shift", image=slow.out(0))
    started = threading.Event()
    g.on_event(lambda e: started.set() if e.kind == "node_progress" and e.node == slow.id else None)
    run = g.start(executor="ray")
    assert started.wait(60)
    time.sleep(0.3)  # ray_spin is running too
    t0 = time.perf_counter()
    run.cancel()
    run.wait(60)
    assert time.perf_counter() - t0 < 10
    assert run.status == "cancelled"
    assert {run.errors[n.id].code for n in (slow, spin, after)} == {"VE-504"}, run.errors
    assert src.id in run.outputs


def test_a_node_past_its_timeout_is_stopped_with_ve501() -> None:
    g = vx.Graph()
    spin = g.add("ray_spin", image=g.add("ray_ramp", n=2).out(0), seconds=60.0)
    t0 = time.perf_counter()
    run = g.run(executor="ray", node_timeout=1.0)
    assert run.errors[spin.id].code == "VE-501", run.errors
    assert time.perf_counter() - t0 < 15


def test_after_ray_restarts_the_next_run_recomputes_what_lived_there() -> None:
    import ray

    g = vx.Graph()
    ends = _branches(g, 2, size=7)
    assert g.run(executor="ray").stats["ran"] == 4
    ray.shutdown()  # as a notebook might; the conftest's settings again:
    ray.init(num_cpus=2, object_store_memory=200 * 2**20, include_dashboard=False)
    run = g.run(executor="ray")
    assert run.status == "ok" and run.stats["ran"] == 4, run.errors
    assert run.outputs[ends[1].id][0].shape == (7, 7)


def test_the_cli_runs_on_ray_at_an_address(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    from vortex_jupyter.cli import main

    monkeypatch.delenv("VORTEX_RAY_ADDRESS", raising=False)
    address = ray.get_runtime_context().gcs_address
    code = main(["run", str(EXAMPLES / "math.json"), "--executor", "ray", "--address", address, "-q",
                 "-o", str(tmp_path)])
    assert code == 0
    import os

    assert os.environ["VORTEX_RAY_ADDRESS"] == address


def test_without_ray_the_executor_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from vortex_jupyter.errors import VortexError
    from vortex_jupyter.workers.ray_executor import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(VortexError, match=r"vortex-jupyter\[ray\]"):
        import_ray()


PACK_INIT = '''
import os, sys

class RayWhere:
    RETURN_TYPES = ("STRING", "STRING")
    FUNCTION = "go"
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"x": ("INT", {"default": 1})}}

    def go(self, x):
        return (sys.executable, os.environ.get("VORTEX_WORKER_PACK", ""))

NODE_CLASS_MAPPINGS = {"RayWhere": RayWhere}
'''


def test_a_pack_node_runs_in_an_actor_on_its_environments_python(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from vortex_jupyter.nodes.registry import REGISTRY
    from vortex_jupyter.packages.envs import PackStore

    monkeypatch.setenv("VORTEX_PACKS_DIR", str(tmp_path / "store"))
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "uv-cache"))
    folder = tmp_path / "raywhere"
    folder.mkdir()
    (folder / "pyproject.toml").write_text('[project]\nname = "raywhere"\nversion = "1.0.0"\ndependencies = []\n')
    (folder / "__init__.py").write_text(PACK_INIT)
    store = PackStore.default()
    store.install(str(folder))
    names = REGISTRY.load_packs(store)
    try:
        g = vx.Graph()
        node = g.add("RayWhere", x=3)
        run = g.run(executor="ray")
        assert run.status == "ok", run.errors
        assert run.outputs[node.id] == (str(store.python(store.env_of("raywhere"))), "raywhere")
    finally:
        for name in names:
            REGISTRY.unregister(name)
