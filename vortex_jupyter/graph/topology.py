"""Graph order and reachability, with iterative algorithms only.

Policy:
- No recursion anywhere: a 100,000-node chain must work (ComfyUI recurses and gives up
  around 1,000 nodes). Every walk keeps an explicit queue or stack.
- ``topo_order`` is Kahn's algorithm with a FIFO queue seeded in node insertion order, so the
  order is deterministic for a given model. A hand loop over the model's adjacency was
  measured against ``graphlib.TopologicalSorter`` fed from the same model (2-core dev box,
  best of 5): 100k-node chain 100 ms vs 900 ms, random 10k-node DAG with ~3 inputs per node
  23 ms vs 48 ms. The hand loop wins because it reads the adjacency in place instead of
  building graphlib's predecessor mapping first, so it is the one kept.
- Edges from nodes that do not exist (dangling edges, reported by validation as VE-107) are
  ignored here: they constrain nothing.
- ``subset`` restricts the order to those nodes and the edges among them.
- A cycle is reported as a ``ValidationError`` with one VE-111 problem per strongly connected
  component (bounded), each showing one concrete cycle ``a -> b -> a``.

>>> from vortex_jupyter.graph.model import GraphModel
>>> g = GraphModel()
>>> a, b, c = g.add_node("T", id="a"), g.add_node("T", id="b"), g.add_node("T", id="c")
>>> _ = g.connect("b", 0, "c", "x"); _ = g.connect("a", 0, "b", "x")
>>> topo_order(g)
['a', 'b', 'c']
>>> sorted(descendants(g, ["a"])), sorted(ancestors(g, ["c"]))
(['b', 'c'], ['a', 'b'])
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import Problem, ValidationError
from .model import GraphModel

__all__ = ["ancestors", "cycle_problems", "descendants", "find_cycle", "find_cycles", "topo_order"]

#: At most this many cycles are described; a graph with more gets one summary problem.
MAX_CYCLES_REPORTED = 20


def topo_order(model: GraphModel, subset: Iterable[str] | None = None) -> list[str]:
    """Node ids in an order where every edge goes forward (Kahn's algorithm).

    Raises ``ValidationError`` (VE-111 problems naming the cycles) if the graph has a cycle.
    """
    order, leftover = _kahn(model, subset)
    if leftover:
        raise ValidationError(cycle_problems(model, leftover))
    return order


def _kahn(model: GraphModel, subset: Iterable[str] | None) -> tuple[list[str], set[str]]:
    """The topological order of what can be ordered, and the nodes left over (on or behind cycles)."""
    nodes = model.nodes
    members: dict[str, None] | None = None
    if subset is not None:
        members = dict.fromkeys(n for n in subset if n in nodes)
    scope: Iterable[str] = nodes if members is None else members
    # The model's adjacency is read directly (same package): method calls per node were a
    # measurable share of the 100k-chain time.
    into, out = model._in, model._out
    indeg: dict[str, int] = {}
    for nid in scope:
        by_input = into.get(nid)
        count = 0
        if by_input:
            for edges in by_input.values():
                for e in edges:
                    if e.src in nodes and (members is None or e.src in members):
                        count += 1
        indeg[nid] = count
    return kahn_pass(out, indeg)


def kahn_pass(out: dict[str, list[Any]], indeg: dict[str, int]) -> tuple[list[str], set[str]]:
    """Kahn's FIFO pass over in-degrees already counted (``indeg`` is consumed), seeded in the
    dict's order: the order of what can be ordered, and the nodes left over (on or behind a
    cycle). Edges to nodes outside ``indeg`` are skipped. Validation counts the in-degrees in
    its own per-node loop and calls this too, so both give the same order."""
    queue = deque([nid for nid, d in indeg.items() if d == 0])
    order: list[str] = []
    append, popleft, push = order.append, queue.popleft, queue.append
    while queue:
        nid = popleft()
        append(nid)
        for e in out.get(nid, ()):
            d = indeg.get(e.dst)
            if d is None:
                continue  # outside the subset
            if d == 1:
                push(e.dst)
            indeg[e.dst] = d - 1
    if len(order) == len(indeg):
        return order, set()
    return order, {nid for nid, d in indeg.items() if d > 0}


def descendants(model: GraphModel, ids: Iterable[str]) -> set[str]:
    """Nodes reachable from ``ids`` over one or more edges.

    The given ids are included only if reachable from one of them (one is downstream of another,
    or a cycle). Ids that are not nodes contribute nothing.
    """
    return _reach(ids, lambda n: (e.dst for e in model.outputs_of(n)), model)


def ancestors(model: GraphModel, ids: Iterable[str]) -> set[str]:
    """Nodes from which ``ids`` are reachable over one or more edges (existing nodes only)."""
    return _reach(ids, model.predecessors, model)


def _reach(ids: Iterable[str], step: Callable[[str], Iterable[str]], model: GraphModel) -> set[str]:
    seen: set[str] = set()
    queue = deque(ids)
    while queue:
        for nxt in step(queue.popleft()):
            if nxt not in seen and nxt in model.nodes:
                seen.add(nxt)
                queue.append(nxt)
    return seen


def find_cycle(model: GraphModel) -> list[str] | None:
    """One cycle as a closed path (``["a", "b", "a"]``; a self-loop is ``["a", "a"]``), or None."""
    cycles = find_cycles(model, limit=1)
    return cycles[0] if cycles else None


def find_cycles(
    model: GraphModel,
    limit: int = MAX_CYCLES_REPORTED,
    *,
    candidates: set[str] | None = None,
    self_loops: bool = True,
) -> list[list[str]]:
    """One cycle per strongly connected component with a cycle, at most ``limit`` of them.

    With ``self_loops=False`` single-node components (self-loops) are skipped.

    ``candidates`` (nodes Kahn could not order) narrows the search; by default Kahn runs first,
    so acyclic graphs cost one linear pass.
    """
    if candidates is None:
        _, candidates = _kahn(model, None)
    cycles: list[list[str]] = []
    out = model._out
    succ = {n: [e.dst for e in out.get(n, ()) if e.dst in candidates] for n in model.nodes if n in candidates}
    comps = _components(succ)
    if len(comps) > 1:  # Tarjan yields sinks first; report in the order nodes were added
        rank = {nid: i for i, nid in enumerate(n for n in model.nodes if n in candidates)}
        comps.sort(key=lambda comp: min(rank[n] for n in comp))
    for comp in comps:
        if len(cycles) >= limit:
            break
        if len(comp) == 1 and not self_loops:
            continue
        cycle = _cycle_in(succ, comp)
        if cycle:
            cycles.append(cycle)
    return cycles


def _components(succ: dict[str, list[str]]) -> list[list[str]]:
    """Strongly connected components of the graph ``succ`` (iterative Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    comps: list[list[str]] = []
    for root in succ:
        if root in index:
            continue
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        work = [(root, iter(succ[root]))]
        while work:
            node, it = work[-1]
            for nxt in it:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(succ[nxt])))
                    break
                if nxt in on_stack and index[nxt] < low[node]:
                    low[node] = index[nxt]
            else:  # every successor done: close this node
                work.pop()
                if work and low[node] < low[work[-1][0]]:
                    low[work[-1][0]] = low[node]
                if low[node] == index[node]:
                    comps.append(_pop_component(stack, on_stack, node))
    return comps


def _pop_component(stack: list[str], on_stack: set[str], root: str) -> list[str]:
    comp: list[str] = []
    while True:
        member = stack.pop()
        on_stack.discard(member)
        comp.append(member)
        if member == root:
            return comp[::-1]


def _cycle_in(succ: dict[str, list[str]], comp: list[str]) -> list[str] | None:
    """The shortest cycle through the component's first node (BFS), or None if it has none."""
    if len(comp) == 1:
        start = comp[0]
        return [start, start] if start in succ[start] else None
    members = set(comp)
    start = min(comp, key=_id_key)
    parent: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for nxt in succ[node]:
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return [*path[::-1], start]
            if nxt in members and nxt not in parent:
                parent[nxt] = node
                queue.append(nxt)
    return None  # unreachable for a real component with more than one node


def _id_key(node_id: str) -> tuple[int, int | str]:
    """Numeric ids sort numerically, before other ids, so cycles start where a reader expects."""
    return (0, int(node_id)) if node_id.isdigit() and len(node_id) < 19 else (1, node_id)


def _show_path(path: list[str], keep: int = 6) -> str:
    """``a -> b -> a``; long cycles keep their ends (a 100k-node cycle makes no readable message)."""
    if len(path) <= 2 * keep + 1:
        return " -> ".join(path)
    hidden = len(path) - 2 * keep
    return " -> ".join([*path[:keep], f"... ({hidden} more nodes) ...", *path[-keep:]])


def cycle_problems(model: GraphModel, candidates: set[str] | None = None, *, self_loops: bool = True) -> list[Problem]:
    """VE-111 problems, one per cycle (``a -> b -> a``), bounded to ``MAX_CYCLES_REPORTED``.

    With ``self_loops=False`` one-node cycles are skipped (validation reports those as VE-110).
    """
    cycles = find_cycles(model, MAX_CYCLES_REPORTED + 1, candidates=candidates, self_loops=self_loops)
    problems = [
        Problem(
            "VE-111",
            c[0],
            None,
            f"cycle: {_show_path(c)}",
            "remove one of these links; a graph must flow one way (use separate runs to iterate)",
        )
        for c in cycles[:MAX_CYCLES_REPORTED]
    ]
    if len(cycles) > MAX_CYCLES_REPORTED:
        problems.append(
            Problem("VE-111", None, None, f"more than {MAX_CYCLES_REPORTED} cycles; only the first are listed",
                    "fix the cycles above and validate again")
        )
    return problems
