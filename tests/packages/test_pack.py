"""Reading a pack's pyproject.toml and discovering its node types in a subprocess."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from vortex_jupyter.packages.pack import PackError, discover, discover_specs, read_pack

from .conftest import COMFY_INIT, VX_NODE_INIT, build_wheel, write_pack


def test_read_pack_reads_the_comfy_registry_fields(tmp_path: Path) -> None:
    info = read_pack(write_pack(tmp_path / "p", "My-Pack", ["six>=1.16"], "", version="1.2.3-beta.1"))
    assert (info.name, info.key, info.version) == ("My-Pack", "my-pack", "1.2.3-beta.1")
    assert info.dependencies == ("six>=1.16",)
    assert (info.publisher, info.display_name) == ("tester", "My-Pack display")


@pytest.mark.parametrize(("field", "name", "version", "deps"), [
    ("version", "ok", "1.0", []),
    ("name", "-bad name", "1.0.0", []),
    ("dependencies", "ok", "1.0.0", ["six >>> 1"]),
])
def test_a_bad_field_is_an_error_naming_the_file_and_field(tmp_path: Path, field: str, name: str,
                                                            version: str, deps: list[str]) -> None:
    folder = write_pack(tmp_path / "p", name, deps, "", version=version)
    with pytest.raises(PackError) as err:
        read_pack(folder)
    assert str(folder / "pyproject.toml") in str(err.value) and f"[project] {field}" in str(err.value)
    assert err.value.code == "VE-900"


def test_a_folder_without_pyproject_says_what_a_pack_needs(tmp_path: Path) -> None:
    with pytest.raises(PackError, match=r"no pyproject\.toml"):
        read_pack(tmp_path)


def test_discover_lists_comfyui_classes_in_a_subprocess_and_notes_web_directory(tmp_path: Path) -> None:
    folder = write_pack(tmp_path / "comfy_pack", "comfy-pack", [], COMFY_INIT % {"node": "SixVersion"})
    before = set(sys.modules)
    found = discover_specs(folder, pack="comfy-pack")
    assert [s["type"] for s in found["nodes"]] == ["SixVersion"]
    spec = found["nodes"][0]
    assert (spec["pack"], spec["qualified"], spec["display_name"]) == ("comfy-pack", "comfy-pack/SixVersion",
                                                                        "Six version")
    assert any("WEB_DIRECTORY ignored" in n for n in found["notes"])
    assert "comfy_pack" not in set(sys.modules) - before  # never imported into this process


def test_discover_lists_vx_node_functions_of_a_wheel(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path, "vx-nodes", "vx_nodes", VX_NODE_INIT)
    info = read_pack(wheel)
    assert (info.name, info.version) == ("vx-nodes", "2.0.0")
    import zipfile

    zipfile.ZipFile(wheel).extractall(tmp_path / "unpacked")
    assert discover(tmp_path / "unpacked") == ["add_one"]


def test_a_pack_that_fails_to_import_is_a_pack_error_with_its_traceback(tmp_path: Path) -> None:
    folder = write_pack(tmp_path / "broken", "broken", [], "raise RuntimeError('boom at import')\n")
    with pytest.raises(PackError, match="boom at import"):
        discover(folder)
