"""Which nodes run: the plan.

Policy:

- The *needed* nodes are every node of the graph (so each node's result is available from
  Python after a run) or, with ``outputs=[...]``, those outputs and the ancestors they need.
- A needed node is *cached* when its key is in the output cache and it is not always-run;
  otherwise it is *planned*. With ``outputs``, the walk back from the outputs stops at cached
  nodes: their ancestors are not needed at all.
- Planned nodes come in topological order (Kahn's algorithm, iterative, so a 100,000-node
  chain is fine). Two needed nodes with the same key run once: the second is served by the
  first (``shared``).

The topological order of the whole graph is memoised on the key index's structure version,
so a run after a param edit only filters a list: O(n) dictionary lookups, no sorting. After
a structural edit the order found by validation's cycle check is used when there is one.

Example: ``a -> b -> c`` with ``a``'s key in the cache: planned ``["b", "c"]``, cached
``["a"]``; with ``outputs=["a"]``: nothing planned, cached ``["a"]``.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass, field

from ..graph.model import GraphModel
from ..graph.topology import topo_order

__all__ = ["Plan", "Planner", "make_plan", "topo_order"]


@dataclass(slots=True)
class Plan:
    planned: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    #: node id -> the node id with the same key that computes it in this plan.
    shared: dict[str, str] = field(default_factory=dict)


class Planner:
    """Memoised topological order + the cache filter."""

    def __init__(self, model: GraphModel) -> None:
        self.model = model
        self._order: list[str] = []
        self._version = -1

    def order(self, structure_version: int, known: list[str] | None = None) -> list[str]:
        """The order for ``structure_version``; ``known``: one just computed for it elsewhere."""
        if structure_version != self._version:
            self._order = known if known is not None else topo_order(self.model)
            self._version = structure_version
        return self._order

    def needed(self, order: list[str], outputs: Iterable[str] | None) -> list[str]:
        """``order`` restricted to ``outputs`` and their ancestors (all of it if None)."""
        if outputs is None:
            return order
        seen: set[str] = set()
        stack = [o for o in outputs]
        ins = self.model._in
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            for edges in ins.get(n, {}).values():
                stack.extend(e.src for e in edges)
        return [n for n in order if n in seen]


def make_plan(
    order: list[str],
    keys: dict[str, str],
    cache: Container[str],
    always: Container[str],
    preds: Callable[[str], Iterable[str]] | None = None,
    outputs: Iterable[str] | None = None,
) -> Plan:
    """Split ``order`` (needed nodes, topological) into planned and cached nodes.

    With ``outputs`` and ``preds``, only what the outputs need is kept: the ancestors of a
    cached node are dropped. ``cache`` should be a plain dict/set for speed (``in`` in C).
    """
    plan = Plan()
    # The common cases first, as comprehensions: a warm re-run of 10k nodes is only this.
    if always:
        missing = [n for n in order if keys[n] not in cache or n in always]
    else:
        missing = [n for n in order if keys[n] not in cache]
    if not missing:
        plan.cached = list(order)
    else:
        first: dict[str, str] = {}
        planned, shared = plan.planned, plan.shared
        for n in missing:
            k = keys[n]
            if k in first:
                shared[n] = first[k]  # same key as a planned node: computed once
            else:
                first[k] = n
                planned.append(n)
        if len(missing) < len(order):
            not_cached = set(missing)
            plan.cached = [n for n in order if n not in not_cached]
    if outputs is not None and preds is not None:
        _prune(plan, outputs, preds)
    return plan


def _prune(plan: Plan, outputs: Iterable[str], preds: Callable[[str], Iterable[str]]) -> None:
    """Keep only nodes reachable backwards from ``outputs`` without crossing a cached node."""
    cached = set(plan.cached)
    keep: set[str] = set()
    stack = list(outputs)
    while stack:
        n = stack.pop()
        if n in keep:
            continue
        keep.add(n)
        if n in cached:
            continue
        if n in plan.shared:
            stack.append(plan.shared[n])
        stack.extend(preds(n))
    plan.planned[:] = [n for n in plan.planned if n in keep]
    plan.cached[:] = [n for n in plan.cached if n in keep]
    for n in [n for n in plan.shared if n not in keep]:
        del plan.shared[n]
