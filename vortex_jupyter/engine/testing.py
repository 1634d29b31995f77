"""Helpers that check cache keys are deterministic (for our tests and for node authors).

- ``assert_stable_across_processes(values)``: the canonical encoding of each value, computed
  in a fresh interpreter (other hash seed, other import order), equals this process's;
- ``renumbered(model)``: a copy of a graph with every node id replaced (and nodes inserted
  in another order), for checking that keys do not depend on ids;
- ``assert_keys_stable_under_renumbering(model, lookup)``.
"""

from __future__ import annotations

import base64
import os
import pickle
import random
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ..graph.model import GraphModel
from .hashing import canonical
from .keys import KeyIndex
from .plan import topo_order

_CHILD = (
    "import base64, pickle, sys\n"
    "from vortex_jupyter.engine.hashing import canonical\n"
    "values = pickle.loads(base64.b64decode(sys.stdin.read()))\n"
    "print('\\n'.join(canonical(v).hex() for v in values))\n"
)


def assert_stable_across_processes(values: Sequence[Any]) -> None:
    """Fail if any value encodes differently in a fresh Python process."""
    here = [canonical(v).hex() for v in values]
    env = {**os.environ, "PYTHONHASHSEED": str(random.randrange(1, 2**31))}
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD],
        input=base64.b64encode(pickle.dumps(list(values))).decode(),
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    there = proc.stdout.split()
    for value, a, b in zip(values, here, there):
        assert a == b, f"canonical({value!r}) differs across processes: {a} != {b}"
    assert len(there) == len(here)


def renumbered(model: GraphModel, seed: int = 0) -> tuple[GraphModel, dict[str, str]]:
    """A copy with fresh ids (a permutation of new names) and nodes added in shuffled order."""
    rng = random.Random(seed)
    old = list(model.nodes)
    new_names = [f"r{i}" for i in range(len(old))]
    rng.shuffle(new_names)
    mapping = dict(zip(old, new_names))
    out = GraphModel()
    shuffled = old[:]
    rng.shuffle(shuffled)
    for n in shuffled:
        data = model.nodes[n]
        out.add_node(data.type, dict(data.params), id=mapping[n], pos=data.pos, title=data.title)
    edges = list(model.edges())
    rng.shuffle(edges)
    for e in edges:
        out.connect(mapping[e.src], e.src_output, mapping[e.dst], e.dst_input, replace=False)
    return out, mapping


def keys_of(model: GraphModel, lookup: Callable[[str], Any]) -> dict[str, str]:
    index = KeyIndex(model, lookup)
    try:
        return dict(index.ensure(topo_order(model)))
    finally:
        index.close()


def assert_keys_stable_under_renumbering(model: GraphModel, lookup: Callable[[str], Any], seed: int = 0) -> None:
    before = keys_of(model, lookup)
    copy, mapping = renumbered(model, seed)
    after = keys_of(copy, lookup)
    for n, k in before.items():
        assert after[mapping[n]] == k, f"key of node {n!r} changed when renumbered to {mapping[n]!r}"
