"""The registry: lazy built-ins, user precedence, lookups with suggestions, JSON listings, threads."""

import json
import subprocess
import sys
import textwrap
import threading

import pytest
from PIL import Image

from vortex_jupyter.errors import NodeDefinitionError, UnknownNodeTypeError
from vortex_jupyter.nodes import registry as registry_module
from vortex_jupyter.nodes.decorator import node
from vortex_jupyter.nodes.registry import REGISTRY, NodeRegistry

BUILTINS = {"PrimitiveInt", "PrimitiveFloat", "PrimitiveString", "PrimitiveBoolean", "IntAdd", "FloatDivide",
            "StringConcatenate", "StringFormat", "LoadImage", "SaveImage", "PreviewImage", "ImageScale",
            "ImageInvert"}


@pytest.fixture
def no_diffusion(monkeypatch):
    monkeypatch.setattr(registry_module, "_DIFFUSION_MODULE", "vortex_jupyter_test_absent_module")


def test_builtins_load_on_first_read(no_diffusion):
    registry = NodeRegistry()
    assert registry._specs == {}  # nothing imported or registered yet
    assert set(registry.types()) >= BUILTINS and len(registry) >= len(BUILTINS)
    assert "IntAdd" in registry and "Nope" not in registry and 3 not in registry
    assert registry.load_errors == {}


def test_a_user_node_registered_before_the_first_read_wins_over_a_builtin(no_diffusion):
    registry = NodeRegistry()

    @node(name="IntAdd", registry=registry)
    def my_add(a: int) -> int:
        return a * 100

    assert registry.get("IntAdd").fn(a=2) == (200,)
    assert "ImageInvert" in registry


def test_register_replaces_by_default_and_refuses_when_asked(no_diffusion):
    registry = NodeRegistry(builtins=False)

    @node(registry=registry)
    def thing(a: int) -> int:
        return a

    with pytest.raises(NodeDefinitionError, match="'thing' is already registered"):
        registry.register(thing.spec, replace=False)
    with pytest.raises(NodeDefinitionError, match="needs a NodeSpec"):
        registry.register("thing")  # type: ignore[arg-type]
    registry.unregister("thing")
    assert registry.lookup("thing") is None and len(registry) == 0


def test_unknown_types_raise_with_close_matches_and_a_fix():
    with pytest.raises(UnknownNodeTypeError) as info:
        REGISTRY.get("ImageInvrt")
    assert info.value.code == "VE-301" and "'ImageInvrt'" in str(info.value)
    assert "did you mean 'ImageInvert'" in info.value.hint
    with pytest.raises(UnknownNodeTypeError) as info:
        REGISTRY.get("intadd")
    assert "'IntAdd'" in info.value.hint
    with pytest.raises(UnknownNodeTypeError) as info:
        REGISTRY.get("zzzzzzzz")
    assert "@vx.node" in info.value.hint
    assert REGISTRY.lookup("zzzzzzzz") is None


def test_to_json_lists_every_type_as_plain_json(no_diffusion):
    listing = NodeRegistry().to_json()
    assert json.loads(json.dumps(listing)) == listing
    scale = listing["ImageScale"]
    assert scale["category"] == "image/upscaling" and scale["display_name"] == "Upscale Image"
    width = next(p for p in scale["inputs"] if p["name"] == "width")
    assert width == {"name": "width", "type": "INT", "required": True, "min": 0, "max": 16384, "step": 1,
                     "default": 512, "widget": True}
    assert listing["IntAdd"]["outputs"] == [{"name": "INT", "type": "INT", "is_list": False}]
    assert listing["SaveImage"]["output_node"] is True


def test_object_info_has_comfyui_shape(no_diffusion):
    info = NodeRegistry().to_object_info()
    save = info["SaveImage"]
    assert save["input"]["required"]["images"][0] == "IMAGE"
    assert save["input"]["hidden"] == {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}
    assert save["output_node"] and save["output"] == [] and save["python_module"].endswith("builtin.image")
    scale = info["ImageScale"]["input"]["required"]
    assert scale["upscale_method"][0] == ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]
    assert info["IntAdd"]["input"]["optional"]["a"] == ["INT", {"default": 0}]
    assert info["LoadImage"]["output_name"] == ["IMAGE", "MASK"]
    # image_upload: UI workflows carry the upload widget's value after the file name.
    assert info["LoadImage"]["input"]["required"]["image"][1]["display"] == "image_upload"


def test_categories_group_types(no_diffusion):
    cats = NodeRegistry().categories()
    assert "IntAdd" in cats["utils/math"] and cats["image"] == sorted(cats["image"])
    assert {"LoadImage", "SaveImage"} <= set(cats["image"])


def test_listing_and_lookup_see_files_added_to_the_input_folder(no_diffusion, tmp_path, monkeypatch):
    monkeypatch.setenv("VORTEX_INPUT_DIR", str(tmp_path))
    registry = NodeRegistry()
    assert registry.get("LoadImage").inputs[0].choices == ()
    Image.new("RGB", (1, 1)).save(tmp_path / "new.png")
    assert registry.to_json()["LoadImage"]["inputs"][0]["choices"] == ["new.png"]
    Image.new("RGB", (1, 1)).save(tmp_path / "newer.png")
    assert registry.lookup("LoadImage").inputs[0].choices == ("new.png", "newer.png")


def test_concurrent_first_reads_all_see_the_complete_registry(no_diffusion):
    registry = NodeRegistry()
    seen: list[int] = []
    barrier = threading.Barrier(8)

    def read() -> None:
        barrier.wait()
        seen.append(len(registry.types()))

    threads = [threading.Thread(target=read) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(seen)) == 1 and seen[0] >= len(BUILTINS)


def _fake_package(tmp_path, monkeypatch, name, body):
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(body))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry_module, "_DIFFUSION_MODULE", name)


def test_diffusion_style_mappings_are_registered_lazily_as_heavy(tmp_path, monkeypatch):
    _fake_package(tmp_path, monkeypatch, "vortex_test_fake_diffusion", '''
        class EmptyLatentImage:
            @classmethod
            def INPUT_TYPES(cls):
                return {"required": {"width": ("INT", {"default": 512, "min": 16, "max": 16384, "step": 8})}}
            RETURN_TYPES = ("LATENT",)
            FUNCTION = "generate"
            CATEGORY = "latent"
            def generate(self, width):
                return ({"samples": width},)
        NODE_CLASS_MAPPINGS = {"EmptyLatentImage": EmptyLatentImage}
        NODE_DISPLAY_NAME_MAPPINGS = {"EmptyLatentImage": "Empty Latent Image"}
    ''')
    registry = NodeRegistry()
    spec = registry.get("EmptyLatentImage")
    assert spec.heavy and spec.display_name == "Empty Latent Image" and spec.fn(width=64) == ({"samples": 64},)
    assert not registry.get("ImageInvert").heavy


def test_a_broken_diffusion_module_is_reported_and_builtins_still_load(tmp_path, monkeypatch):
    _fake_package(tmp_path, monkeypatch, "vortex_test_broken_diffusion", "raise RuntimeError('boom')\n")
    registry = NodeRegistry()
    with pytest.warns(UserWarning, match="could not register nodes from vortex_test_broken_diffusion"):
        assert "IntAdd" in registry
    assert "boom" in registry.load_errors["vortex_test_broken_diffusion"]


def test_reading_the_registry_does_not_import_torch():
    code = ("import sys, vortex_jupyter.nodes.registry as r; r.REGISTRY.to_json(); "
            "print(len(r.REGISTRY), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    count, torch_loaded = out.stdout.split()
    assert int(count) >= len(BUILTINS) and torch_loaded == "False", out.stderr
