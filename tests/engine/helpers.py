"""Small hand-made node specs for engine tests (no registry, no decorator needed)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vortex_jupyter.graph.model import GraphModel
from vortex_jupyter.nodes.spec import NodeSpec, OutputSpec, PortSpec


class Specs(dict[str, NodeSpec]):
    """A lookup: ``specs.lookup(type)``; records every call of every node function."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def lookup(self, type_name: str) -> NodeSpec | None:
        return self.get(type_name)

    def define(self, type_name: str, fn: Callable[..., Any], inputs: list[PortSpec],
               outputs: list[OutputSpec] | None = None, **kw: Any) -> NodeSpec:
        calls = self.calls

        def wrapped(**kwargs: Any) -> Any:
            calls.append((type_name, kwargs))
            return fn(**kwargs)

        spec = NodeSpec(type_name, tuple(inputs), tuple([OutputSpec("INT", "INT")] if outputs is None else outputs),
                        fn=wrapped, **kw)
        self[type_name] = spec
        return spec


def math_specs() -> Specs:
    specs = Specs()
    specs.define("add", lambda a, b=0: (a + b,),
                 [PortSpec("a", "INT", default=0), PortSpec("b", "INT", default=0)])
    specs.define("boom", _boom, [PortSpec("a", "INT", default=0)])
    specs.define("const", lambda value: (value,), [PortSpec("value", "INT", default=0)])
    return specs


def _boom(a: int) -> tuple[int]:
    raise ValueError(f"boom on {a}")


def no_problems(model: GraphModel, lookup: Callable[[str], Any]) -> list[Any]:
    return []
