"""Output images of cached nodes: the cache keeps a node's final previews and a run that serves
the node from the cache emits them again, so the canvas and ``run.images`` still show them."""

from __future__ import annotations

import numpy as np
import pytest

from vortex_jupyter.engine import cache as cache_module
from vortex_jupyter.engine.cache import OutputCache
from vortex_jupyter.engine.inprocess import InProcessExecutor
from vortex_jupyter.engine.run import Engine
from vortex_jupyter.engine.state import RunState
from vortex_jupyter.graph.model import GraphModel
from vortex_jupyter.nodes import context
from vortex_jupyter.nodes.spec import NodeResult, PortSpec

from .helpers import Specs, no_problems

JPEG = b"\xff\xd8\xff\xe0fake-jpeg"


def _show_specs(images: int = 1) -> Specs:
    """``show(a)``: one step preview, then ``images`` final previews (PNGs, then one JPEG)."""
    specs = Specs()

    def show(a: int = 0) -> NodeResult:
        ctx = context.current()
        ctx.preview(np.zeros((2, 2, 3), dtype=np.uint8))  # a step preview: never replayed
        for i in range(images):
            ctx.preview(np.full((3, 5, 3), 10 * i + a, dtype=np.uint8), final=True)
        ctx.preview(JPEG, final=True)
        return NodeResult((), {})

    specs.define("show", show, [PortSpec("a", "INT", default=0)], outputs=[], output_node=True)
    specs.define("add", lambda a=0, b=0: (a + b,), [PortSpec("a", "INT", default=0), PortSpec("b", "INT", default=0)])
    return specs


def _graph(*show_ids: str) -> GraphModel:
    """``src -> show`` for each id (same params: equal keys)."""
    m = GraphModel()
    m.add_node("add", {"a": 1}, id="src")
    for n in show_ids:
        m.add_node("show", id=n)
        m.connect("src", 0, n, "a")
    return m


def _previews(events: list, node: str) -> list[tuple[str, bytes]]:
    return [(e.mime, e.data) for e in events if e.kind == "node_preview" and e.node == node and e.final]


def _run(eng: Engine, ex: InProcessExecutor, cache: OutputCache, listen: bool) -> tuple[RunState, list]:
    seen: list = []
    state = eng.run(ex, cache=cache, listeners=[seen.append] if listen else ())
    return state, (seen if listen else state.events)


@pytest.mark.parametrize("listen", [True, False], ids=["with-listeners", "without-listeners"])
def test_a_cached_output_node_emits_its_final_previews_again(listen: bool) -> None:
    specs, ex = _show_specs(images=2), InProcessExecutor()
    eng, cache = Engine(_graph("out"), specs.lookup, no_problems), OutputCache(ex)
    _, first_events = _run(eng, ex, cache, listen)
    made = _previews(first_events, "out")
    assert [mime for mime, _ in made] == ["image/png", "image/png", "image/jpeg"]
    assert made[-1][1] == JPEG

    again, events = _run(eng, ex, cache, listen)
    assert again.cached == ["src", "out"] and again.planned == [] and specs.calls.count(("show", {"a": 1})) == 1
    assert _previews(events, "out") == made  # same images, same mime types, same order
    assert not [e for e in events if e.kind == "node_preview" and not e.final]
    assert again.final_previews() == [("out", p) for p in made]
    if listen:  # the preview follows the node's node_cached event, as it follows a run's node_started
        kinds = [(e.kind, getattr(e, "node", None)) for e in events]
        assert kinds.index(("node_cached", "out")) < kinds.index(("node_preview", "out"))


def test_a_node_served_by_an_identical_node_of_the_same_run_shows_the_images_too() -> None:
    specs, ex = _show_specs(), InProcessExecutor()
    eng, cache = Engine(_graph("one", "two"), specs.lookup, no_problems), OutputCache(ex)
    state, events = _run(eng, ex, cache, listen=True)
    assert state.stats == {"ran": 2, "cached": 1, "failed": 0}  # src and one ran; two shared one's result
    assert _previews(events, "two") == _previews(events, "one") != []


def test_previews_kept_per_cache_entry_are_bounded_and_counted_in_its_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_module, "MAX_PREVIEWS", 2)
    specs, ex = _show_specs(images=3), InProcessExecutor()
    eng, cache = Engine(_graph("out"), specs.lookup, no_problems), OutputCache(ex)
    first, _ = _run(eng, ex, cache, listen=False)
    assert len(first.final_previews()) == 4  # the run that made them shows them all
    entry = cache.get(first.node_keys["out"])
    assert entry is not None and len(entry.previews) == 2
    assert entry.nbytes >= sum(len(data) for _, data in entry.previews) > 0
    again, _ = _run(eng, ex, cache, listen=False)
    assert [p for _, p in again.final_previews()] == list(entry.previews)


def test_dropped_or_evicted_entries_replay_nothing_and_the_node_runs_again() -> None:
    specs, ex = _show_specs(), InProcessExecutor()
    eng, cache = Engine(_graph("out"), specs.lookup, no_problems), OutputCache(ex)
    first, _ = _run(eng, ex, cache, listen=False)
    key = first.node_keys["out"]
    assert cache.previewed == {key}
    cache.drop([key])
    assert cache.previewed == set()
    again, events = _run(eng, ex, cache, listen=True)
    assert again.planned == ["out"] and len(_previews(events, "out")) == 2
    cache.clear()
    assert cache.previewed == set() and len(cache) == 0


def test_graph_listeners_and_run_images_see_the_images_of_a_cached_output_node() -> None:
    import vortex_jupyter as vx

    @vx.node(category="test", output_node=True)
    def engine_test_show_cached(level: float = 0.5) -> None:
        context.current().preview(np.full((1, 3, 5, 3), level, dtype=np.float32), final=True)
        return NodeResult((), {"images": []})

    g = vx.Graph()
    g.add("engine_test_show_cached", level=0.25)
    first = g.run(executor="inline")
    seen: list = []
    g.on_event(seen.append)  # what the canvas does
    again = g.run(executor="inline")
    assert again.stats == {"ran": 0, "cached": 1, "failed": 0}
    [(mime, data)] = [(e.mime, e.data) for e in seen if e.kind == "node_preview" and e.final]
    assert mime == "image/png" and data == first._state.final_previews()[0][1][1]
    assert [(im.size, im.getpixel((0, 0))) for im in again.images] == [((5, 3), (64, 64, 64))]
