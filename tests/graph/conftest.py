"""Node specs shaped like ComfyUI's core nodes, and workflow files written from the published
formats, shared by the graph tests.

The specs use the real ``NodeSpec``/``PortSpec`` (tests may import ``vortex_jupyter.nodes``;
``graph/`` itself only duck-types them). Input order follows ComfyUI's INPUT_TYPES, which is
what maps ``widgets_values`` onto names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from vortex_jupyter.graph.model import GraphModel
from vortex_jupyter.nodes.builtin.frontend import primitive_node
from vortex_jupyter.nodes.spec import NodeSpec, OutputSpec, PortSpec

DATA = Path(__file__).parent / "data"

SAMPLERS = ("euler", "euler_ancestral", "heun", "dpm_2", "dpmpp_2m", "dpmpp_sde", "ddim", "uni_pc", "lms", "lcm")
SCHEDULERS = ("normal", "karras", "exponential", "sgm_uniform", "simple", "ddim_uniform")
CKPTS = ("v1-5-pruned-emaonly.safetensors", "tiny-sd.safetensors")


def _sampler_check(params: dict[str, Any]) -> list[tuple[str, str, str]]:
    """A custom check like a real sampler node might have (reported as VE-116)."""
    if params.get("sampler_name") == "lcm" and params.get("scheduler") == "karras":
        return [("scheduler", "scheduler 'karras' does not work with sampler 'lcm'", "use scheduler 'sgm_uniform'")]
    return []


def _file_check(params: dict[str, Any]) -> list[tuple[str, ...]]:
    """A loader's check: a missing file (VE-117, its code as a 4th item); anything else as VE-116."""
    name = params.get("file")
    if name == "gone.png":
        return [("file", "file 'gone.png' not found in the input folder", "put it there", "VE-117")]
    if name == "odd.png":
        return [("file", "file 'odd.png' cannot be read", "use another", "VE-999")]  # not a check code
    return []


def _spec(type_: str, inputs: list[PortSpec], outputs: list[tuple[str, str]], **kw: Any) -> NodeSpec:
    return NodeSpec(type_, tuple(inputs), tuple(OutputSpec(n, t) for n, t in outputs), **kw)


SPECS: dict[str, NodeSpec] = {
    s.type: s
    for s in (
        _spec("CheckpointLoaderSimple", [PortSpec("ckpt_name", "COMBO", choices=CKPTS)],
              [("MODEL", "MODEL"), ("CLIP", "CLIP"), ("VAE", "VAE")], display_name="Load Checkpoint"),
        _spec("CLIPTextEncode", [PortSpec("text", "STRING", multiline=True), PortSpec("clip", "CLIP")],
              [("CONDITIONING", "CONDITIONING")], display_name="CLIP Text Encode (Prompt)"),
        _spec("EmptyLatentImage", [
            PortSpec("width", "INT", default=512, min=16, max=16384, step=8),
            PortSpec("height", "INT", default=512, min=16, max=16384, step=8),
            PortSpec("batch_size", "INT", default=1, min=1, max=4096),
        ], [("LATENT", "LATENT")], display_name="Empty Latent Image"),
        _spec("KSampler", [
            PortSpec("model", "MODEL"),
            PortSpec("seed", "INT", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True),
            PortSpec("steps", "INT", default=20, min=1, max=10000),
            PortSpec("cfg", "FLOAT", default=8.0, min=0.0, max=100.0, step=0.1),
            PortSpec("sampler_name", "COMBO", choices=SAMPLERS),
            PortSpec("scheduler", "COMBO", choices=SCHEDULERS),
            PortSpec("positive", "CONDITIONING"),
            PortSpec("negative", "CONDITIONING"),
            PortSpec("latent_image", "LATENT"),
            PortSpec("denoise", "FLOAT", default=1.0, min=0.0, max=1.0, step=0.01),
        ], [("LATENT", "LATENT")], check=_sampler_check),
        _spec("VAEDecode", [PortSpec("samples", "LATENT"), PortSpec("vae", "VAE")], [("IMAGE", "IMAGE")],
              display_name="VAE Decode"),
        _spec("SaveImage", [PortSpec("images", "IMAGE"), PortSpec("filename_prefix", "STRING", default="ComfyUI")],
              [], output_node=True, display_name="Save Image"),
        _spec("LoadImage", [PortSpec("image", "COMBO", choices=("example.png", "cat.png"))],
              [("IMAGE", "IMAGE"), ("MASK", "MASK")], display_name="Load Image"),
        _spec("PrimitiveInt", [PortSpec("value", "INT", default=0, min=-(1 << 63), max=(1 << 63) - 1,
                                        control_after_generate=True)], [("INT", "INT")], display_name="Int"),
        _spec("Add", [PortSpec("a", "INT"), PortSpec("b", "INT", default=0, min=-1000, max=1000)], [("INT", "INT")]),
        _spec("Scale", [PortSpec("x", "FLOAT", default=1.0, min=0.0, max=10.0),
                        PortSpec("enabled", "BOOLEAN", default=True),
                        PortSpec("label", "STRING", default="", required=False)], [("FLOAT", "FLOAT")]),
        _spec("Passthrough", [PortSpec("value", "*")], [("value", "*")]),
        _spec("LoadFile", [PortSpec("file", "STRING", default="a.png")], [("IMAGE", "IMAGE")], check=_file_check),
        _spec("BadCheck", [PortSpec("n", "INT", default=1)], [("INT", "INT")],
              check=lambda params: 1 / 0),  # a buggy check must become a problem, not a crash
        primitive_node.spec,  # type: ignore[attr-defined]  # the frontend's PrimitiveNode, as registered
    )
}


class SpecTable:
    """A minimal registry: ``lookup`` (what validation and the formats take) and ``types``."""

    def __init__(self, specs: dict[str, NodeSpec]) -> None:
        self.specs = specs

    def lookup(self, type_name: str) -> NodeSpec | None:
        return self.specs.get(type_name)

    def types(self) -> list[str]:
        return sorted(self.specs)


TABLE = SpecTable(SPECS)
lookup = TABLE.lookup


def load_json(name: str) -> Any:
    return json.loads((DATA / name).read_text())


@pytest.fixture
def default_workflow() -> dict[str, Any]:
    return load_json("default_workflow.json")


@pytest.fixture
def default_prompt() -> dict[str, Any]:
    return load_json("default_prompt.json")


@pytest.fixture
def rich_workflow() -> dict[str, Any]:
    return load_json("rich_workflow.json")


def chain(n: int, type_: str = "Add") -> GraphModel:
    """``0 -> 1 -> ... -> n-1`` through input ``a`` (node 0 has ``a`` as a param)."""
    g = GraphModel()
    prev: str | None = None
    for i in range(n):
        nid = g.add_node(type_, {"a": 1} if prev is None else {}, id=str(i))
        if prev is not None:
            g.connect(prev, 0, nid, "a", replace=False)
        prev = nid
    return g
