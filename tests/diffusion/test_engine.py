"""The diffusion nodes through the engine: the example workflows, caching, events, cancel."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import vortex_jupyter as vx

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def io_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_path: Path) -> tuple[Path, Path]:
    inp, out = tmp_path / "input", tmp_path / "output"
    shutil.copytree(EXAMPLES / "images", inp)
    out.mkdir()
    monkeypatch.setenv("VORTEX_INPUT_DIR", str(inp))
    monkeypatch.setenv("VORTEX_OUTPUT_DIR", str(out))
    return inp, out


class Watched:
    """Runs ``g`` with a listener attached (the engine streams per-node detail only to listeners)."""

    def __init__(self, graph: Any) -> None:
        self.graph, self.events = graph, []
        graph.on_event(self.events.append)

    def run(self) -> Any:
        self.events.clear()
        return self.graph.run(executor="inline")

    def started(self) -> set[str]:
        return {e.node for e in self.events if e.kind == "node_started"}

    def of(self, kind: str, node: str | None = None) -> list[Any]:
        return [e for e in self.events if e.kind == kind and (node is None or e.node == node)]


def test_txt2img_example_runs_and_its_png_loads_back_as_the_graph(io_dirs: tuple[Path, Path]) -> None:
    g = vx.load(EXAMPLES / "txt2img.json")
    run = g.run(executor="inline")
    assert run.status == "ok", run.errors
    assert run.stats["failed"] == 0 and run.stats["ran"] + run.stats["cached"] == 7
    image = run.outputs["8"][0]
    assert image.shape == (1, 64, 64, 3) and image.dtype == np.float32
    pngs = sorted(io_dirs[1].glob("vortex_*.png"))
    assert len(pngs) == 1
    back = vx.load(pngs[0])
    assert back.nodes["3"].params["seed"] == 156680208700286
    assert back.nodes["4"].params["ckpt_name"] == "vortex-tiny"


def test_unchanged_graph_rerun_executes_nothing(io_dirs: Any) -> None:
    w = Watched(g := vx.load(EXAMPLES / "txt2img.json"))
    g.nodes["3"].params["seed"] = 101  # the output cache is process-wide: fresh keys per test
    w.run()
    again = w.run()
    assert again.stats["ran"] == 0 and w.started() == set()


def test_changing_only_the_seed_reruns_sampler_decoder_and_saver_only(io_dirs: Any) -> None:
    w = Watched(g := vx.load(EXAMPLES / "txt2img.json"))
    g.nodes["3"].params["seed"] = 102
    first = w.run().outputs["8"][0]
    g.nodes["3"].params["seed"] = 1234
    run = w.run()
    assert w.started() == {"3", "8", "9"}  # not the loader (4), text encoders (6, 7) or latent (5)
    assert not np.array_equal(run.outputs["8"][0], first)
    g.nodes["3"].params["seed"] = 102
    assert np.array_equal(g.run(executor="inline").outputs["8"][0], first)


def test_sampler_streams_progress_and_preview_events(io_dirs: Any) -> None:
    w = Watched(g := vx.load(EXAMPLES / "txt2img.json"))
    g.nodes["3"].params["seed"] = 103
    w.run()
    progress = [(e.value, e.total) for e in w.of("node_progress", "3")]
    assert progress == [(float(i), 4.0) for i in range(1, 5)]
    previews = w.of("node_preview", "3")
    assert previews and not previews[0].final and previews[0].data[:8] == b"\x89PNG\r\n\x1a\n"
    assert [e.node for e in w.of("node_preview") if e.final] == ["9"]


def test_cancel_stops_the_sampler_between_steps(io_dirs: Any) -> None:
    g = vx.load(EXAMPLES / "txt2img.json")
    g.nodes["3"].params["steps"] = 200
    g.nodes["3"].params["seed"] = 104
    holder: dict[str, Any] = {}
    ready = threading.Event()

    def on_event(event: Any) -> None:
        if event.kind == "node_progress" and event.node == "3" and event.value >= 2:
            ready.wait(5)
            holder["run"].cancel()

    w = Watched(g)
    g.on_event(on_event)
    run = g.start(executor="inline")
    holder["run"] = run
    ready.set()
    run.wait(120)
    assert run.status == "cancelled"
    assert 2 <= len(w.of("node_progress", "3")) < 200
    assert "8" not in w.started()


def test_a_sampler_we_do_not_implement_is_a_ve116_validation_problem(io_dirs: Any) -> None:
    g = vx.load(EXAMPLES / "txt2img.json")
    g.nodes["3"].params["sampler_name"] = "sa_solver"  # a ComfyUI name we do not run yet
    problems = g.problems()
    assert [(p.code, p.node, p.port) for p in problems] == [("VE-116", "3", "sampler_name")]
    assert "dpmpp_2m" in problems[0].message and "uni_pc" in problems[0].message
    g.nodes["3"].params["sampler_name"] = "ddim"
    g.nodes["3"].params["scheduler"] = "karras"  # every sampler takes every schedule
    assert g.problems() == []


def test_img2img_example_runs_on_the_committed_input_image(io_dirs: tuple[Path, Path]) -> None:
    w = Watched(g := vx.load(EXAMPLES / "img2img.json"))
    g.nodes["3"].params["seed"] = 105
    run = w.run()
    assert run.status == "ok", run.errors
    assert len(w.of("node_progress", "3")) == 10  # denoise 0.6 of a 16-step schedule: exactly `steps` steps
    assert run.outputs["8"][0].shape == (1, 64, 64, 3)
    assert len(list(io_dirs[1].glob("vortex_img2img_*.png"))) == 1


def test_default_graph_is_the_packaged_txt2img(io_dirs: Any) -> None:
    packaged = json.loads((Path(vx.__file__).parent / "nodes" / "diffusion" / "txt2img.json").read_text())
    assert packaged == json.loads((EXAMPLES / "txt2img.json").read_text())
    g = vx.Graph.default()
    assert {n.type for n in g.nodes.values()} == {
        "CheckpointLoaderSimple", "CLIPTextEncode", "EmptyLatentImage", "KSampler", "VAEDecode", "SaveImage"}
    assert g.run(executor="inline").status == "ok"


def test_txt2img_runs_on_the_worker_pool_with_the_pixels_of_a_direct_call(io_dirs: Any, tiny_handles: Any) -> None:
    from vortex_jupyter.nodes.diffusion.sampling import SampleSettings, sample
    from vortex_jupyter.nodes.diffusion.text import encode_text
    from vortex_jupyter.nodes.diffusion.vae import vae_decode

    api = json.loads((EXAMPLES / "txt2img.json").read_text())
    model, clip, vae = tiny_handles
    pos, neg = (encode_text(clip, api[k]["inputs"]["text"]) for k in ("6", "7"))
    latent = {"samples": __import__("torch").zeros(1, 4, 8, 8)}
    want = vae_decode(vae, sample(model, pos, neg, latent, SampleSettings(106, 4, 8.0, "euler", "normal")))
    g = vx.load(api)
    g.nodes["3"].params["seed"] = 106
    run = g.run(executor="workers", outputs=["8"])
    assert run.status == "ok", run.errors
    image = np.asarray(run.outputs["8"][0])
    assert image.shape == (1, 64, 64, 3)
    np.testing.assert_allclose(image, want, atol=1e-4)  # the worker may use another thread count
