"""ComfyUI node classes registered unchanged: inputs, hidden, IS_CHANGED, VALIDATE_INPUTS, ui results."""

import pickle

import pytest

from vortex_jupyter.errors import NodeDefinitionError
from vortex_jupyter.nodes.comfy import spec_from_comfy_class
from vortex_jupyter.nodes.registry import NodeRegistry
from vortex_jupyter.nodes.spec import MISSING, NodeResult

MAX_RESOLUTION = 16384


class FakeSampler:
    """Shaped like ComfyUI's KSampler (inputs, ranges, combos) but returns its arguments."""

    instances = 0

    def __init__(self):
        type(self).instances += 1

    @classmethod
    def INPUT_TYPES(s):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "The model used for denoising."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF}),
                "steps": ("INT", {"default": 20, "min": 1, "max": 10000}),
                "cfg": ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}),
                "sampler_name": (["euler", "euler_ancestral", "ddim"],),
                "scheduler": (["normal", "karras"], {"default": "karras"}),
                "positive": ("CONDITIONING",),
                "latent_image": ("LATENT",),
            },
            "optional": {"denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01})},
            "hidden": {"node": "UNIQUE_ID", "prompt": "PROMPT"},
        }

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "sample"
    CATEGORY = "sampling"
    DESCRIPTION = "Denoises a latent."

    def sample(self, model, seed, steps, cfg, sampler_name, scheduler, positive, latent_image,
               denoise=1.0, node=None, prompt=None):
        return ({"samples": (model, seed, steps, sampler_name, denoise, node, prompt)},)


class ShowText:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"forceInput": True}),
                             "notes": ("STRING", {"multiline": True, "dynamicPrompts": False})}}

    RETURN_TYPES = ("STRING", "INT")
    RETURN_NAMES = ("text", "length")
    OUTPUT_NODE = True
    FUNCTION = "show"
    CATEGORY = "utils"

    def show(self, text, notes):
        return {"ui": {"text": [text]}, "result": (text, len(text))}


class RandomNoise:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"amount": ("FLOAT", {"default": 0.5})}}

    RETURN_TYPES = ("FLOAT",)
    FUNCTION = "go"

    @classmethod
    def IS_CHANGED(cls, amount):
        return float("NaN")

    def go(self, amount):
        return (amount,)


class FileHash:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"name": ("STRING", {"default": "a.txt"}), "level": ("INT", {"default": 3})}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "go"

    @classmethod
    def IS_CHANGED(cls, name):
        return f"hash-of-{name}"

    @classmethod
    def VALIDATE_INPUTS(cls, name):
        return True if name.endswith(".txt") else f"{name} is not a .txt file"

    def go(self, name, level):
        return (name * level,)


def test_inputs_ranges_combos_and_defaults_are_read_like_comfyui():
    spec = spec_from_comfy_class("KSamplerLike", FakeSampler, "K Sampler (like)")
    ports = {p.name: p for p in spec.inputs}
    assert list(ports) == ["model", "seed", "steps", "cfg", "sampler_name", "scheduler", "positive",
                           "latent_image", "denoise"]
    assert ports["model"].type == "MODEL" and not ports["model"].widget and ports["model"].default is MISSING
    assert ports["seed"].max == 0xFFFFFFFFFFFFFFFF and ports["seed"].control_after_generate
    assert (ports["cfg"].min, ports["cfg"].max, ports["cfg"].step) == (0.0, 100.0, 0.1)
    assert ports["sampler_name"].choices == ("euler", "euler_ancestral", "ddim")
    assert ports["sampler_name"].default == "euler"  # the frontend's default: the first choice
    assert ports["scheduler"].default == "karras"
    assert not ports["denoise"].required and ports["denoise"].default == 1.0
    assert ports["model"].tooltip == "The model used for denoising."
    assert spec.display_name == "K Sampler (like)" and spec.category == "sampling"
    assert spec.description == "Denoises a latent." and spec.hidden == ("unique_id", "prompt")
    assert [(o.name, o.type) for o in spec.outputs] == [("LATENT", "LATENT")]


def test_fn_instantiates_once_and_maps_hidden_inputs_onto_the_class_keys():
    FakeSampler.instances = 0
    spec = spec_from_comfy_class("KSamplerLike", FakeSampler)
    args = dict(model="m", seed=7, steps=2, cfg=1.0, sampler_name="ddim", scheduler="normal",
                positive=[], latent_image={}, unique_id="12", prompt={"12": {}})
    (latent,) = spec.fn(**args)
    assert latent["samples"] == ("m", 7, 2, "ddim", 1.0, "12", {"12": {}})
    spec.fn(**args)
    assert FakeSampler.instances == 1


def test_ui_dict_return_becomes_a_node_result_and_names_come_from_return_names():
    spec = spec_from_comfy_class("ShowText", ShowText)
    ports = {p.name: p for p in spec.inputs}
    assert ports["text"].force_input and not ports["text"].widget and ports["text"].default is MISSING
    assert ports["notes"].multiline and ports["notes"].default == ""
    assert spec.output_node and [o.name for o in spec.outputs] == ["text", "length"]
    assert spec.output_index("length") == 1
    assert spec.fn(text="hey", notes="") == NodeResult(("hey", 3), {"text": ["hey"]})


def test_is_changed_nan_means_always_run_and_other_values_are_stable_fingerprints():
    noisy = spec_from_comfy_class("RandomNoise", RandomNoise)
    assert noisy.fingerprint is not None
    assert noisy.fingerprint(amount=0.5) != noisy.fingerprint(amount=0.5)

    hashed = spec_from_comfy_class("FileHash", FileHash)
    assert hashed.fingerprint(name="b.txt", level=1) == "hash-of-b.txt"
    assert hashed.fingerprint() == "hash-of-a.txt"  # widget defaults fill what is not given
    assert spec_from_comfy_class("ShowText", ShowText).fingerprint is None


def test_validate_inputs_becomes_a_check_that_names_the_port():
    spec = spec_from_comfy_class("FileHash", FileHash)
    assert spec.check is not None
    assert spec.check({"name": "ok.txt"}) == []
    [(port, message, hint)] = spec.check({"name": "evil.exe"})
    assert port == "name" and "evil.exe is not a .txt file" in message and hint


def test_widgets_without_defaults_get_the_frontend_defaults_clamped_to_their_range():
    class Plain:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"n": ("INT", {"min": 4, "max": 9}), "x": ("FLOAT",), "s": ("STRING",),
                                 "b": ("BOOLEAN",), "c": ("COMBO", {"options": ["p", "q"]})}}

        RETURN_TYPES = ()
        FUNCTION = "go"

        def go(self, **kwargs):
            return ()

    defaults = {p.name: p.default for p in spec_from_comfy_class("Plain", Plain).inputs}
    assert defaults == {"n": 4, "x": 0.0, "s": "", "b": False, "c": "p"}


def test_input_is_list_nodes_receive_lists_and_output_is_list_is_recorded():
    class Batch:
        INPUT_IS_LIST = True
        OUTPUT_IS_LIST = (True,)
        RETURN_TYPES = ("INT",)
        FUNCTION = "go"

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"values": ("INT", {"default": 1})}}

        def go(self, values):
            return ([v * 2 for v in values],)

    spec = spec_from_comfy_class("Batch", Batch)
    assert spec.outputs[0].is_list and spec.fn(values=3) == ([6],)


def test_a_comfy_call_survives_pickling_for_workers():
    spec = spec_from_comfy_class("FileHash", FileHash)
    spec.fn(name="a.txt", level=1)  # creates the instance; the copy must not carry it
    clone = pickle.loads(pickle.dumps(spec.fn))
    assert clone(name="x.txt", level=2) == ("x.txtx.txt",)
    assert spec.by_value is False and spec.source.endswith(":FileHash")


def _raising_input_types():
    raise RuntimeError("no models folder")


@pytest.mark.parametrize(
    "attrs, fragment",
    [
        ({"INPUT_TYPES": classmethod(lambda cls: _raising_input_types())}, "INPUT_TYPES\\(\\) raised RuntimeError"),
        ({"INPUT_TYPES": classmethod(lambda cls: ["x"])}, "INPUT_TYPES\\(\\) returned"),
        ({"INPUT_TYPES": classmethod(lambda cls: {"required": {"x": 5}})}, "input 'x' is declared as 5"),
        ({"INPUT_TYPES": classmethod(lambda cls: {"required": {"x": ("INT", {"min": "a"})}})}, "min='a'"),
        ({"FUNCTION": "missing"}, "FUNCTION is 'missing'"),
        ({"RETURN_TYPES": "INT"}, "RETURN_TYPES is 'INT'"),
        ({"RETURN_NAMES": ("a", "b")}, "RETURN_NAMES has 2 names for 1"),
    ],
)
def test_malformed_classes_raise_node_definition_errors_naming_the_class(attrs, fragment):
    base = {"INPUT_TYPES": classmethod(lambda cls: {"required": {}}), "RETURN_TYPES": ("INT",),
            "FUNCTION": "go", "go": lambda self: (1,)}
    cls = type("Broken", (), {**base, **attrs})
    with pytest.raises(NodeDefinitionError, match=fragment) as info:
        spec_from_comfy_class("BrokenNode", cls)
    assert "'BrokenNode'" in str(info.value) and info.value.hint and info.value.code == "VE-300"


def test_class_edits_change_the_version_and_main_classes_ship_by_value():
    namespace = {"__name__": "__main__"}
    source = '''
class Scale:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"x": ("FLOAT", {"default": 1.0})}}
    RETURN_TYPES = ("FLOAT",)
    FUNCTION = "go"
    def go(self, x):
        return (x * FACTOR,)
'''
    versions = []
    for factor in (2, 3):
        exec(compile(source.replace("FACTOR", str(factor)), f"<cell-{factor}>", "exec"), namespace)
        spec = spec_from_comfy_class("Scale", namespace["Scale"])
        versions.append(spec.version)
        assert spec.fn(x=1.5) == (1.5 * factor,)
    assert versions[0] != versions[1]
    assert spec.by_value and spec.source == "__main__:Scale"


def test_registering_mappings_with_display_names_and_heavy_flag():
    registry = NodeRegistry(builtins=False)
    specs = registry.register_comfy_mappings({"ShowText": ShowText, "FileHash": FileHash},
                                             {"ShowText": "Show Text"}, heavy=True)
    assert [s.type for s in specs] == ["ShowText", "FileHash"]
    assert registry.get("ShowText").display_name == "Show Text" and registry.get("FileHash").heavy
    assert registry.get("FileHash").inputs[1].default == 3


class _PickAny:
    """A loader that accepts any file name, listing only the ones it found (like ComfyUI's)."""

    RETURN_TYPES = ("STRING",)
    FUNCTION = "go"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"name": (["a.safetensors", "b.safetensors"],), "mode": (["x", "y"],)}}

    @classmethod
    def VALIDATE_INPUTS(cls, name):
        return True if name.endswith(".safetensors") else f"{name!r} is not a .safetensors file"

    def go(self, name, mode):
        return (name,)


def test_inputs_named_by_validate_inputs_skip_their_choice_check_like_comfyui():
    from vortex_jupyter.graph.model import GraphModel
    from vortex_jupyter.graph.validate import validate

    registry = NodeRegistry(builtins=False)
    registry.register_comfy_class("PickAny", _PickAny)
    model = GraphModel()
    ok = model.add_node("PickAny", {"name": "unlisted.safetensors", "mode": "x"})
    bad_name = model.add_node("PickAny", {"name": "notes.txt", "mode": "x"})
    bad_mode = model.add_node("PickAny", {"name": "a.safetensors", "mode": "z"})
    problems = validate(model, registry.lookup)
    found = {(p.node, p.port, p.code) for p in problems}
    assert found == {(bad_name, "name", "VE-116"), (bad_mode, "mode", "VE-113")}, problems
    assert ok not in {p.node for p in problems}
