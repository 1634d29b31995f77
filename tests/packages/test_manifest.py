"""vortex.toml round trips; suggest() reads what ComfyUI saves in real workflows."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from vortex_jupyter.packages.manifest import Manifest, PackEntry, packs_of_workflow, suggest
from vortex_jupyter.packages.pack import PackError

templates = pytest.importorskip("comfyui_workflow_templates_json")
TEMPLATES = Path(os.path.dirname(templates.__file__)) / "templates"


def test_manifest_round_trips_through_toml(tmp_path: Path) -> None:
    manifest = Manifest({"comfyui-kjnodes": PackEntry("comfyui-kjnodes", "", "git+https://x/y@abc1234"),
                         "six.nodes": PackEntry("six.nodes", ">=1.0,<2", "./packs/six \"nodes\"")})
    manifest.save(tmp_path / "vortex.toml")
    assert Manifest.load(tmp_path / "vortex.toml") == manifest


def test_a_bad_version_spec_names_the_pack_and_field() -> None:
    with pytest.raises(PackError, match=r"\[packs.p\] version '1.0' is not a version specifier"):
        Manifest.loads('[packs.p]\nversion = "1.0"\n')


def test_suggest_reads_node_versions_of_a_real_template() -> None:
    workflow = json.loads((TEMPLATES / "video_wan_dancer.json").read_text())
    assert workflow["extra"]["node_versions"]["comfy-core"]  # what ComfyUI saves, core included
    proposed = suggest(workflow)
    assert list(proposed.packs) == ["ComfyUI-KJNodes"]  # comfy-core is ComfyUI itself
    assert proposed.packs["ComfyUI-KJNodes"].source.endswith("@f91daf93293ab7fb28836159595a5b088c86313a")


def test_suggest_pins_semver_and_reads_per_node_cnr_ids() -> None:
    workflow = {"extra": {"node_versions": {"comfy-core": "0.3.28", "my-pack": "1.2.0"}},
                "nodes": [{"id": 1, "type": "X", "properties": {"cnr_id": "other-pack", "ver": "0.1.0"}}]}
    assert packs_of_workflow(workflow) == {"my-pack": "1.2.0", "other-pack": "0.1.0"}
    assert suggest(workflow).packs["my-pack"] == PackEntry("my-pack", "==1.2.0", "")
