"""@vx.node: type hints -> ports, outputs, code-hash versions, __main__ detection, registration."""

import linecache
import textwrap
from typing import Annotated, Any, Literal, NamedTuple

import pytest

from vortex_jupyter.errors import NodeDefinitionError
from vortex_jupyter.nodes.decorator import Choices, Multiline, Port, Range, build_spec, node
from vortex_jupyter.nodes.registry import NodeRegistry
from vortex_jupyter.nodes.spec import MISSING, NodeResult


def spec_of(fn, **options):
    return build_spec(fn, **options)


def test_basic_python_types_map_to_comfy_port_types_and_defaults_make_inputs_optional():
    def f(i: int, x: float = 0.5, s: str = "hi", flag: bool = False) -> int:
        return i

    ports = {p.name: p for p in spec_of(f).inputs}
    assert [(p.name, p.type) for p in spec_of(f).inputs] == [
        ("i", "INT"), ("x", "FLOAT"), ("s", "STRING"), ("flag", "BOOLEAN")]
    assert ports["i"].required and ports["i"].default is MISSING
    assert not ports["x"].required and ports["x"].default == 0.5
    assert ports["flag"].default is False and all(p.widget for p in ports.values())


def test_int_default_of_a_float_input_is_stored_as_float():
    def f(x: float = 1) -> float:
        return x

    assert type(spec_of(f).inputs[0].default) is float


def test_annotated_range_sets_min_max_step_and_display():
    def f(steps: Annotated[int, Range(1, 100, step=1, display="slider")] = 20) -> int:
        return steps

    port = spec_of(f).inputs[0]
    assert (port.min, port.max, port.step, port.display, port.default) == (1, 100, 1, "slider", 20)


@pytest.mark.parametrize("default", [0, 101])
def test_default_outside_its_range_is_a_definition_error_naming_function_and_parameter(default):
    def bad(steps: Annotated[int, Range(1, 100)] = default) -> int:
        return steps

    with pytest.raises(NodeDefinitionError) as info:
        spec_of(bad)
    text = str(info.value)
    assert info.value.code == "VE-300" and "bad" in text and "'steps'" in text and "Range" in text
    assert info.value.hint


def test_literal_becomes_a_combo_with_choices_and_checks_the_default():
    def f(mode: Literal["fast", "slow"] = "slow") -> str:
        return mode

    port = spec_of(f).inputs[0]
    assert (port.type, port.choices, port.default) == ("COMBO", ("fast", "slow"), "slow")

    def bad(mode: Literal["fast", "slow"] = "medium") -> str:
        return mode

    with pytest.raises(NodeDefinitionError, match=r"'mode'.*medium"):
        spec_of(bad)


def test_choices_multiline_and_wired_port_types_through_annotated():
    def f(
        image: Annotated[Any, Port("IMAGE")],
        mask: Annotated[Any, "MASK"],
        sampler: Annotated[str, Choices("euler", "ddim")] = "euler",
        prompt: Annotated[str, Multiline()] = "",
        count: Annotated[int, Port("INT", force_input=True)] = 1,
    ) -> Annotated[Any, Port("IMAGE")]:
        return image

    spec = spec_of(f)
    ports = {p.name: p for p in spec.inputs}
    assert ports["image"].type == "IMAGE" and not ports["image"].widget and ports["image"].required
    assert ports["mask"].type == "MASK"
    assert ports["sampler"].choices == ("euler", "ddim") and ports["sampler"].type == "COMBO"
    assert ports["prompt"].multiline
    assert ports["count"].force_input and not ports["count"].widget
    assert [(o.name, o.type) for o in spec.outputs] == [("IMAGE", "IMAGE")]


def test_plain_string_annotations_name_port_types_even_under_postponed_evaluation():
    namespace: dict[str, Any] = {}
    exec(textwrap.dedent('''
        from __future__ import annotations
        from typing import Annotated
        from vortex_jupyter.nodes.decorator import Range
        LIMIT = 8
        def f(image: IMAGE, n: Annotated[int, Range(0, LIMIT)] = 2) -> "LATENT":
            return image
    '''), namespace)
    spec = spec_of(namespace["f"])
    assert [(p.name, p.type, p.max) for p in spec.inputs] == [("image", "IMAGE", None), ("n", "INT", 8)]
    assert spec.outputs[0].type == "LATENT"


def test_none_default_makes_an_optional_input_without_a_value():
    def f(image: Annotated[Any, Port("IMAGE")] | None = None) -> int:
        return 0

    port = spec_of(f).inputs[0]
    assert port.type == "IMAGE" and not port.required and port.default is MISSING


def test_seed_inputs_get_control_after_generate_like_comfyui():
    def f(seed: int = 0, noise_seed: int = 0, other: int = 0) -> int:
        return seed

    flags = {p.name: p.control_after_generate for p in spec_of(f).inputs}
    assert flags == {"seed": True, "noise_seed": True, "other": False}


def test_tuple_return_gives_several_outputs_and_fn_returns_them_as_a_tuple():
    def f(a: int) -> tuple[int, str, float]:
        return a, str(a), a / 2

    spec = spec_of(f)
    assert [o.type for o in spec.outputs] == ["INT", "STRING", "FLOAT"]
    assert spec.fn(a=3) == (3, "3", 1.5)


def test_named_tuple_return_names_the_outputs():
    class Pair(NamedTuple):
        width: int
        height: int

    def f(a: int) -> Pair:
        return Pair(a, a * 2)

    spec = spec_of(f)
    assert [(o.name, o.type) for o in spec.outputs] == [("width", "INT"), ("height", "INT")]
    assert spec.output_index("height") == 1 and spec.fn(a=2) == (2, 4)


def test_outputs_argument_overrides_the_return_annotation():
    def f(a: int) -> Any:
        return a, a

    spec = spec_of(f, outputs=[("left", "INT"), ("right", "INT")])
    assert [(o.name, o.type) for o in spec.outputs] == [("left", "INT"), ("right", "INT")]
    assert spec.fn(a=1) == (1, 1)


def test_single_output_is_wrapped_in_a_one_tuple_and_node_result_passes_through():
    def one(a: int) -> int:
        return a + 1

    def show(a: int) -> None:
        return NodeResult((), {"text": [str(a)]})  # type: ignore[return-value]

    assert spec_of(one).fn(a=1) == (2,)

    def leaky(a: int) -> None:
        return [a]  # type: ignore[return-value]

    with pytest.raises(TypeError, match="declares no outputs but returned a list"):
        spec_of(leaky).fn(a=1)
    assert spec_of(show).fn(a=5) == NodeResult((), {"text": ["5"]})
    assert spec_of(show).outputs == ()


def test_wrong_number_of_returned_values_is_a_clear_error():
    def f(a: int) -> tuple[int, int]:
        return (a,)  # type: ignore[return-value]

    with pytest.raises(TypeError, match="'f' must return a tuple of 2 outputs, got 1 values"):
        spec_of(f).fn(a=1)


@pytest.mark.parametrize(
    "source, fragment",
    [
        ("def f(a) -> int: return a", "'a'.*no type annotation"),
        ("def f(a: list) -> int: return 0", "'a'.*not supported"),
        ("def f(*a: int) -> int: return 0", "'a'.*\\*args"),
        ("def f(a: int): return a", "'return'.*not annotated"),
        ("def f(a: int) -> tuple[int, ...]: return (a,)", "no fixed number"),
        ("def f(a: str = 3) -> int: return 0", "'a'.*default 3 is not a STRING"),
        ("def f(a: float = float('nan')) -> int: return 0", "'a'.*not finite"),
        ("def f(a: Annotated[str, Range(0, 1)] = '') -> int: return 0", "Range\\(\\) applies to int/float"),
    ],
)
def test_bad_definitions_raise_node_definition_errors_with_a_fix(source, fragment):
    namespace: dict[str, Any] = {"Annotated": Annotated, "Range": Range}
    exec(source, namespace)
    with pytest.raises(NodeDefinitionError, match=fragment) as info:
        spec_of(namespace["f"])
    assert "@node f" in str(info.value) and info.value.hint


def _define(source: str, filename: str, module: str = "user_nodes") -> Any:
    """Define a function as a notebook cell would: source registered in linecache."""
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict[str, Any] = {"__name__": module}
    exec(compile(source, filename, "exec"), namespace)
    return namespace["blur"]


def test_redefining_a_function_with_a_new_body_changes_the_version():
    first = _define("def blur(a: int) -> int:\n    return a + 1\n", "<cell-1>")
    same = _define("def blur(a: int) -> int:\n    return a + 1\n", "<cell-2>")
    edited = _define("def blur(a: int) -> int:\n    return a + 2\n", "<cell-3>")
    versions = [spec_of(f, version="3").version for f in (first, same, edited)]
    assert versions[0] == versions[1] != versions[2]
    assert all(v.startswith("3:") for v in versions)


def test_without_source_the_version_hashes_bytecode_and_constants():
    def define(body: str) -> Any:
        namespace: dict[str, Any] = {}
        exec(compile(f"def blur(a: int) -> int:\n    return {body}\n", "<no-source>", "exec"), namespace)
        return namespace["blur"]

    linecache.cache.pop("<no-source>", None)
    a, b, c = define("a + 1"), define("a + 1"), define("a + 2")
    assert spec_of(a).version == spec_of(b).version != spec_of(c).version


def test_functions_from_main_are_shipped_by_value_and_module_functions_by_name():
    in_main = _define("def blur(a: int) -> int:\n    return a\n", "<cell-main>", module="__main__")
    assert in_main.__module__ == "__main__"
    spec = spec_of(in_main)
    assert spec.by_value and spec.source == "__main__:blur"

    module_level = spec_of(_module_level_node)
    assert not module_level.by_value
    assert module_level.source == f"{__name__}:_module_level_node"

    def local(a: int) -> int:
        return a

    assert spec_of(local).by_value  # a worker could not import a closure by name


def _module_level_node(a: int) -> int:
    return a


def test_node_registers_returns_the_function_unchanged_and_replaces_on_redefinition():
    registry = NodeRegistry(builtins=False)

    @node(category="math", registry=registry)
    def add(a: int, b: int = 0) -> int:
        """Adds two integers.

        More details.
        """
        return a + b

    assert add(1, 2) == 3 and add.spec is registry.get("add")
    assert add.spec.category == "math" and add.spec.description == "Adds two integers."

    @node(registry=registry, name="add", version="2")
    def add_again(a: int) -> int:
        return a * 10

    assert registry.get("add").fn(a=2) == (20,) and len(registry) == 1
    assert registry.get("add").version.startswith("2:")


def test_bare_decorator_registers_in_the_global_registry():
    import vortex_jupyter as vx
    from vortex_jupyter.nodes.registry import REGISTRY

    @vx.node
    def vortex_test_bare_node(a: int) -> int:
        return a

    try:
        assert REGISTRY.get("vortex_test_bare_node") is vortex_test_bare_node.spec
    finally:
        REGISTRY.unregister("vortex_test_bare_node")


def test_the_plain_decorator_asks_for_a_registry_instead_of_importing_the_global_one():
    with pytest.raises(NodeDefinitionError, match="no registry") as info:
        @node
        def vortex_test_unregistered(a: int) -> int:
            return a
    assert "vx.node" in (info.value.hint or "")


def test_always_run_fingerprint_timeout_and_output_node_flags_reach_the_spec():
    def fp(**params: Any) -> str:
        return "x"

    @node(register=False, always_run=True, fingerprint=fp, timeout=2.5, output_node=True, display_name="Sink")
    def sink(a: int) -> None:
        return None

    spec = sink.spec
    assert (spec.always_run, spec.fingerprint, spec.timeout, spec.output_node, spec.display_name) == (
        True, fp, 2.5, True, "Sink")
    assert spec.fn(a=1) == ()


def test_spec_fn_of_a_notebook_function_travels_to_a_worker_by_value():
    cloudpickle = pytest.importorskip("cloudpickle")
    import pickle

    source = "from vortex_jupyter.nodes.decorator import node\n@node(register=False)\n" \
             "def blur(a: int) -> tuple[int, int]:\n    return a, a * 2\n"
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(source, "<cell-pickle>", "exec"), namespace)
    spec = namespace["blur"].spec
    clone = pickle.loads(cloudpickle.dumps(spec))
    assert clone.fn(a=3) == (3, 6) and clone.version == spec.version and clone.by_value


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), "30", True])
def test_a_timeout_that_is_not_a_positive_number_is_a_definition_error(timeout: Any) -> None:
    def slow(a: int = 0) -> int:
        return a

    with pytest.raises(NodeDefinitionError, match=r"@node slow.*timeout=.*positive number of seconds"):
        build_spec(slow, timeout=timeout)


def test_outputs_must_be_types_or_name_type_pairs_and_a_single_type_is_one_output() -> None:
    def f(a: int = 0) -> Any:
        return a

    with pytest.raises(NodeDefinitionError, match="outputs=5 is not a list"):
        build_spec(f, outputs=5)
    with pytest.raises(NodeDefinitionError, match="outputs="):
        build_spec(f, outputs=[("a", "INT", "extra")])
    assert [(o.name, o.type) for o in build_spec(f, outputs="IMAGE").outputs] == [("IMAGE", "IMAGE")]
