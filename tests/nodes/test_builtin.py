"""Every built-in node, run directly through its spec.fn (primitives, math, strings, images)."""

import json

import numpy as np
import pytest
from PIL import Image

from vortex_jupyter.errors import PROBLEM_CODES, PathError
from vortex_jupyter.nodes import context
from vortex_jupyter.nodes.builtin.image import missing_image
from vortex_jupyter.nodes.registry import NodeRegistry
from vortex_jupyter.nodes.spec import NodeResult


@pytest.fixture(scope="module")
def registry():
    return NodeRegistry()


def run(registry, type_, **kwargs):
    return registry.get(type_).fn(**kwargs)


@pytest.fixture
def roots(tmp_path, monkeypatch):
    dirs = {k: tmp_path / k for k in ("input", "output", "temp")}
    dirs["input"].mkdir()
    monkeypatch.setenv("VORTEX_INPUT_DIR", str(dirs["input"]))
    monkeypatch.setenv("VORTEX_OUTPUT_DIR", str(dirs["output"]))
    monkeypatch.setenv("VORTEX_TEMP_DIR", str(dirs["temp"]))
    return dirs


class Recorder(context.NodeContext):
    def __init__(self):
        self.previews = []

    def preview(self, image, *, final=False):
        self.previews.append((np.asarray(image), final))


@pytest.fixture
def recorder():
    ctx = Recorder()
    token = context.activate(ctx)
    yield ctx
    context.deactivate(token)


# ----------------------------------------------------------------------------- primitives, math, strings


@pytest.mark.parametrize("type_, value", [("PrimitiveInt", 7), ("PrimitiveFloat", 0.25),
                                          ("PrimitiveString", "cat"), ("PrimitiveStringMultiline", "a\nb"),
                                          ("PrimitiveBoolean", True)])
def test_primitives_output_their_value(registry, type_, value):
    assert run(registry, type_, value=value) == (value,)
    spec = registry.get(type_)
    assert spec.inputs[0].name == "value" and spec.outputs[0].type == spec.inputs[0].type


def test_primitive_int_has_comfyui_seed_controls_and_range(registry):
    port = registry.get("PrimitiveInt").inputs[0]
    assert port.control_after_generate and port.max == 2**63 - 1
    assert registry.get("PrimitiveStringMultiline").inputs[0].multiline


@pytest.mark.parametrize("type_, a, b, expected", [
    ("IntAdd", 2, 3, 5), ("IntSubtract", 2, 3, -1), ("IntMultiply", 4, 3, 12), ("IntDivide", 7, 2, 3),
    ("IntDivide", -7, 2, -4), ("IntModulo", 7, 3, 1), ("FloatAdd", 0.5, 0.25, 0.75),
    ("FloatSubtract", 0.5, 0.25, 0.25), ("FloatMultiply", 1.5, 2.0, 3.0), ("FloatDivide", 1.0, 4.0, 0.25),
])
def test_math_nodes_compute_like_python(registry, type_, a, b, expected):
    assert run(registry, type_, a=a, b=b) == (expected,)


@pytest.mark.parametrize("type_", ["IntDivide", "IntModulo", "FloatDivide"])
def test_division_by_zero_names_the_node_and_input(registry, type_):
    with pytest.raises(ZeroDivisionError, match=f"{type_}: input 'b' is 0.*fix"):
        run(registry, type_, a=1, b=0)


def test_conversions_between_int_and_float(registry):
    assert run(registry, "IntToFloat", value=3) == (3.0,)
    assert [run(registry, "FloatToInt", value=2.5, mode=m)[0] for m in ("round", "floor", "ceil", "truncate")] \
        == [2, 2, 3, 2]
    assert run(registry, "FloatToInt", value=-2.7, mode="truncate") == (-2,)
    with pytest.raises(ValueError, match="only finite"):
        run(registry, "FloatToInt", value=float("inf"), mode="round")


def test_string_concatenate_replace_and_length(registry):
    assert run(registry, "StringConcatenate", string_a="a", string_b="b", delimiter=", ") == ("a, b",)
    assert run(registry, "StringReplace", string="a-b-c", find="-", replace="+") == ("a+b+c",)
    assert run(registry, "StringReplace", string="abc", find="", replace="x") == ("xaxbxcx",)  # str.replace
    assert run(registry, "StringLength", string="héllo") == (5,)


def fmt(registry, template, **values):
    """StringFormat with ComfyUI's inputs: f_string and values.a, values.b, ..."""
    return run(registry, "StringFormat", f_string=template, **{f"values.{k}": v for k, v in values.items()})


def test_string_format_fills_positional_indexed_and_named_placeholders(registry):
    out = fmt(registry, "{} {1} {a} {b:.2f} {a!r} {{x}} {z}", a="cat", b=2, z=26)
    assert out == ("cat 2 cat 2.00 'cat' {x} 26",)


def test_string_format_has_comfyuis_inputs(registry):
    spec = registry.get("StringFormat")
    assert [p.name for p in spec.inputs][:3] == ["f_string", "values.a", "values.b"]
    assert spec.input("values.z") is not None and spec.category == "text"


@pytest.mark.parametrize("template, fragment", [
    ("{a.__class__}", "not an input"),
    ("{a[0]}", "not an input"),
    ("{ab}", "not an input"),
    ("{26}", "placeholder #26 has no input"),
    ("{a:>99999999}", "nested or too large"),
    ("{a:{b}}", "nested or too large"),
    ("{a:.2f}", "cannot format"),
    ("{a", "balance the braces"),
])
def test_string_format_rejects_unsafe_or_broken_templates(registry, template, fragment):
    with pytest.raises(ValueError, match=fragment):
        fmt(registry, template, a="x", b=1, c=2, d=3)


def test_string_format_says_which_placeholder_lacks_a_value(registry):
    with pytest.raises(ValueError, match=r"\{c\} uses input 'c', which has no value.*connect or set"):
        fmt(registry, "{a} {c}", a="x")


def test_string_format_caps_the_size_of_its_result(registry):
    with pytest.raises(ValueError, match="longer than"):
        fmt(registry, "{a:>9000}" * 200, a="x")


# ----------------------------------------------------------------------------- images


def gradient(h=6, w=8, c=3):
    y, x = np.mgrid[0:h, 0:w]
    planes = [x / (w - 1), y / (h - 1), (x + y) / (w + h - 2)][:c] + [np.ones((h, w))] * max(0, c - 3)
    return np.stack(planes, axis=-1)[None].astype(np.float32)


def test_image_invert_accepts_numpy_single_images_and_torch_tensors(registry):
    image = gradient()
    (inverted,) = run(registry, "ImageInvert", image=image)
    assert inverted.dtype == np.float32 and np.allclose(inverted, 1.0 - image)
    assert run(registry, "ImageInvert", image=image[0])[0].shape == (1, 6, 8, 3)
    torch = pytest.importorskip("torch")
    assert np.allclose(run(registry, "ImageInvert", image=torch.from_numpy(image))[0], 1.0 - image)


def test_image_nodes_reject_non_images_with_the_input_name(registry):
    with pytest.raises(ValueError, match="input 'image' has shape \\(4, 4\\)"):
        run(registry, "ImageInvert", image=np.zeros((4, 4)))


@pytest.mark.parametrize("method", ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"])
def test_image_scale_resizes_with_each_method_like_comfyuis_common_upscale(registry, method):
    from vortex_jupyter.nodes.builtin.resample import upscale

    (out,) = run(registry, "ImageScale", image=gradient(), upscale_method=method, width=16, height=12,
                 crop="disabled")
    assert out.shape == (1, 12, 16, 3) and out.dtype == np.float32
    assert np.array_equal(out, upscale(gradient(), 16, 12, method))  # ImageScaleBy's resize, to the pixel
    assert out[0, 0, 0, 0] < 0.1 and out[0, 0, -1, 0] > 0.9  # the gradient survives
    if method == "bicubic":  # no clamping, as in ComfyUI: a sharp edge overshoots
        edge = np.zeros((1, 4, 4, 3), np.float32)
        edge[:, :, 2:] = 1.0
        assert upscale(edge, 12, 4, "bicubic").max() > 1.0


def test_image_scale_zero_keeps_aspect_and_center_crop_cuts_the_sides(registry):
    image = gradient(h=6, w=8)
    assert run(registry, "ImageScale", image=image, upscale_method="bilinear", width=0, height=12,
               crop="disabled")[0].shape == (1, 12, 16, 3)
    assert run(registry, "ImageScale", image=image, upscale_method="area", width=0, height=0,
               crop="disabled")[0].shape == (1, 6, 8, 3)
    (square,) = run(registry, "ImageScale", image=image, upscale_method="nearest-exact", width=6, height=6,
                    crop="center")
    assert square.shape == (1, 6, 6, 3)
    assert np.allclose(square[0, :, :, 0], image[0, :, 1:7, 0])  # one column cut from each side


def test_load_image_reads_rgb_and_turns_alpha_into_a_mask(registry, roots):
    rgba = np.zeros((4, 5, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 255
    rgba[0, 0, 3] = 0  # one fully transparent pixel
    Image.fromarray(rgba, "RGBA").save(roots["input"] / "alpha.png")
    Image.fromarray(rgba[..., :3], "RGB").save(roots["input"] / "plain.png")

    image, mask = run(registry, "LoadImage", image="alpha.png")
    assert image.shape == (1, 4, 5, 3) and image.dtype == np.float32 and np.allclose(image[..., 0], 1.0)
    assert mask.shape == (1, 4, 5) and mask[0, 0, 0] == 1.0 and mask.sum() == 1.0
    _, plain_mask = run(registry, "LoadImage", image="plain.png")
    assert plain_mask.shape == (1, 4, 5) and not plain_mask.any()


def test_load_image_lists_input_files_and_its_choices_follow_the_folder(registry, roots):
    Image.new("RGB", (2, 2)).save(roots["input"] / "b.png")
    (roots["input"] / "notes.txt").write_text("not an image")
    assert registry.get("LoadImage").inputs[0].choices == ("b.png",)
    Image.new("RGB", (2, 2)).save(roots["input"] / "a.jpg")
    assert registry.get("LoadImage").inputs[0].choices == ("a.jpg", "b.png")


def test_load_image_fingerprint_changes_when_the_file_changes(registry, roots):
    path = roots["input"] / "x.png"
    Image.new("RGB", (2, 2), "red").save(path)
    spec = registry.get("LoadImage")
    first = spec.fingerprint(image="x.png")
    assert first == spec.fingerprint(image="x.png") and first.count(":") == 2
    Image.new("RGB", (2, 2), "blue").save(path)
    assert spec.fingerprint(image="x.png") != first


def test_load_image_validation_and_run_reject_missing_files_and_traversal(registry, roots):
    spec = registry.get("LoadImage")
    [(port, message, hint, code)] = spec.check({"image": "nope.png"})
    assert (port, code) == ("image", "VE-117") and "'nope.png' not found" in message
    assert str(roots["input"]) in message and "VORTEX_INPUT_DIR" in hint and "-i DIR" in hint
    [(port, traversal, hint, code)] = spec.check({"image": "../secret.png"})
    assert (port, code) == ("image", "VE-700") and "'..' components" in traversal and "relative name" in hint
    with pytest.raises(PathError):
        spec.fn(image="../secret.png")
    with pytest.raises(FileNotFoundError, match="copy the image into the input folder"):
        spec.fn(image="nope.png")


def test_a_missing_input_image_is_its_own_problem_code_saying_what_the_folder_holds(registry, roots):
    from vortex_jupyter.graph.model import GraphModel
    from vortex_jupyter.graph.validate import validate

    Image.new("RGB", (2, 2), "red").save(roots["input"] / "there.png")
    m = GraphModel()
    m.add_node("LoadImage", {"image": "gone.png"}, id="load")
    m.add_node("LoadImageMask", {"image": "gone.png", "channel": "alpha"}, id="mask")
    m.add_node("LoadImage", {"image": "there.png"}, id="fine")
    problems = validate(m, registry.lookup)
    assert [(p.code, p.node, p.port) for p in problems] == [("VE-117", "load", "image"), ("VE-117", "mask", "image")]
    assert "'there.png'" in problems[0].message and "-i DIR" in problems[0].hint
    assert "VE-117" in PROBLEM_CODES and "VE-116" in PROBLEM_CODES  # VE-116 stays "unsupported settings"
    empty = roots["input"] / "empty"
    empty.mkdir()
    assert "holds no images" in str(missing_image("x.png", empty))
    assert "does not exist" in str(missing_image("x.png", roots["input"] / "nowhere"))


def test_save_image_writes_numbered_pngs_with_prompt_and_workflow_chunks(registry, roots, recorder):
    prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": "x.png"}}}
    workflow = {"nodes": [{"id": 1, "type": "LoadImage"}], "links": [], "version": 0.4}
    images = np.concatenate([gradient(), 1.0 - gradient()])
    result = run(registry, "SaveImage", images=images, filename_prefix="vortex",
                 prompt=prompt, extra_pnginfo={"workflow": workflow})
    assert isinstance(result, NodeResult) and result.outputs == ()
    assert result.ui == {"images": [{"filename": "vortex_00001_.png", "subfolder": "", "type": "output"},
                                    {"filename": "vortex_00002_.png", "subfolder": "", "type": "output"}]}
    with Image.open(roots["output"] / "vortex_00001_.png") as png:
        assert json.loads(png.text["prompt"]) == prompt and json.loads(png.text["workflow"]) == workflow
        pixels = np.asarray(png.convert("RGB"))
    assert np.array_equal(pixels, np.clip(gradient()[0] * 255, 0, 255).astype(np.uint8))
    assert [(p.shape, final) for p, final in recorder.previews] == [((6, 8, 3), True)] * 2

    again = run(registry, "SaveImage", images=gradient(), filename_prefix="vortex")
    assert again.ui["images"][0]["filename"] == "vortex_00003_.png"
    with Image.open(roots["output"] / "vortex_00003_.png") as png:
        assert "prompt" not in png.text


def test_save_image_prefix_may_name_a_subfolder_but_never_escape(registry, roots):
    result = run(registry, "SaveImage", images=gradient(c=4), filename_prefix="portraits/me")
    assert result.ui["images"][0] == {"filename": "me_00001_.png", "subfolder": "portraits", "type": "output"}
    with Image.open(roots["output"] / "portraits" / "me_00001_.png") as png:
        assert png.mode == "RGBA"
    for prefix in ("../escape", "/tmp/abs", "a\\b", "dir/"):
        with pytest.raises(PathError):
            run(registry, "SaveImage", images=gradient(), filename_prefix=prefix)
    assert not list(roots["output"].parent.glob("escape*"))


def test_preview_image_writes_to_the_temp_root_and_shows_the_image(registry, roots, recorder):
    result = run(registry, "PreviewImage", images=gradient(c=1), prompt={"1": {}})
    [entry] = result.ui["images"]
    assert entry["type"] == "temp" and entry["filename"].startswith("vortex_temp_")
    assert (roots["temp"] / entry["filename"]).is_file()
    [(pixels, final)] = recorder.previews
    assert pixels.shape == (6, 8, 3) and final
    assert registry.get("PreviewImage").hidden == ("prompt", "extra_pnginfo")
    assert registry.get("SaveImage").output_node and registry.get("PreviewImage").output_node


def test_load_image_reads_animation_frames_as_a_batch_and_16_bit_pngs(registry, roots):
    frames = [Image.new("RGB", (3, 2), color) for color in ("red", "green", "blue")]
    frames[0].save(roots["input"] / "anim.gif", save_all=True, append_images=frames[1:])
    image, mask = run(registry, "LoadImage", image="anim.gif")
    assert image.shape == (3, 2, 3, 3) and mask.shape == (3, 2, 3)
    assert image[0, 0, 0, 0] > 0.9 and image[2, 0, 0, 2] > 0.9

    deep = np.arange(6, dtype=np.uint16).reshape(2, 3) * 10000  # 16-bit grayscale, as Pillow writes it
    Image.fromarray(deep).save(roots["input"] / "deep.png")
    (gray,), _ = run(registry, "LoadImage", image="deep.png")
    # ComfyUI's scaling (value / 255, then 8-bit): 10000 -> 39, not clipped to 255
    assert gray.shape == (2, 3, 3) and np.allclose(gray[0, :, 0] * 255, [0, 39, 78])


def test_parallel_saves_with_one_prefix_never_overwrite_each_other(registry, roots):
    import threading

    barrier = threading.Barrier(6)
    names: list[str] = []

    def save() -> None:
        barrier.wait()
        names.extend(i["filename"] for i in run(registry, "SaveImage", images=gradient(), filename_prefix="p")
                     .ui["images"])

    threads = [threading.Thread(target=save) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(names) == [f"p_{i:05}_.png" for i in range(1, 7)]
    assert all((roots["output"] / n).stat().st_size > 0 for n in names)


def test_save_image_fills_in_comfyuis_size_and_time_variables_in_the_prefix(registry, roots):
    import time as _time

    before = _time.localtime()
    result = run(registry, "SaveImage", images=gradient(h=6, w=8), filename_prefix="%year%-%month%/img_%width%x%height%")
    saved = result.ui["images"][0]
    assert saved["filename"].startswith("img_8x6_")
    assert saved["subfolder"] in (f"{before.tm_year}-{before.tm_mon:02}", f"{_time.localtime().tm_year}-"
                                  f"{_time.localtime().tm_mon:02}")
    with pytest.raises(PathError, match=r"'\.\.' components"):
        run(registry, "SaveImage", images=gradient(), filename_prefix="%year%/../../escape")
