"""``ValidationMemo``: validate before each run, but only what changed since the last success.

State: ``full`` (a structural edit or a redefined node type happened: validate everything)
and ``params`` (node ids whose params were edited since the last successful validation).

Policy: a param edit cannot create a cycle, a dangling edge or a duplicate input, and it can
only break the edited node's own checks (type, range, choices, NaN, size, ``spec.check``) or
the type checks of the edges into it. So after param edits only we validate a small graph made
of the edited nodes, the nodes feeding them and those edges, and keep the problems located on
the edited nodes. Anything else (nodes or edges added/removed, a node type redefined, a
previous failure) validates the whole graph.
A node's mode change (muted / bypassed / active) changes what its consumers receive, so it
validates the whole graph too.

A full validation with the default validator also yields the graph's topological order (its
cycle check computes it anyway): ``take_order`` hands it to the planner once, so a cold run
sorts the graph once instead of twice.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from ..errors import Problem, ValidationError
from ..graph.model import Change, GraphModel
from ..graph.modes import skipped
from .keys import Lookup

Validator = Callable[[GraphModel, Lookup], list[Problem]]


Ordered = Callable[[GraphModel, Lookup], tuple[list[Problem], "list[str] | None"]]


def _graph_validator() -> Ordered:
    from ..graph.validate import validate_ordered

    return validate_ordered


class ValidationMemo:
    def __init__(self, model: GraphModel, validator: Validator | None, lock: threading.RLock) -> None:
        self.model = model
        self._validator = validator
        self._ordered: Ordered | None = None if validator is not None else _graph_validator()
        self.lock = lock
        self.full = True
        self.params: set[str] = set()
        #: The topological order found by the last full validation, until taken or stale.
        self._order: list[str] | None = None
        model.add_listener(self._on_change)

    def close(self) -> None:
        self.model.remove_listener(self._on_change)

    def validator(self, model: GraphModel, lookup: Lookup) -> list[Problem]:
        if self._ordered is not None:
            return self._ordered(model, lookup)[0]
        assert self._validator is not None
        return self._validator(model, lookup)

    def take_order(self) -> list[str] | None:
        """The topological order the last full validation found (once; None if there is none)."""
        order, self._order = self._order, None
        return order

    def _on_change(self, change: Change) -> None:
        kind = change.kind
        if kind == "layout" or kind == "meta":
            return
        with self.lock:
            if kind == "param_set" or kind == "param_deleted":
                if not self.full and change.node is not None:
                    self.params.add(change.node)
            else:
                self.full = True
                self.params.clear()
                self._order = None

    def problems(self, lookup: Lookup) -> list[Problem]:
        """Every problem of the whole graph (updates the memo)."""
        if self._ordered is not None:
            problems, self._order = self._ordered(self.model, lookup)
        else:
            problems = self.validator(self.model, lookup)
        self.full = bool(problems)
        self.params.clear()
        return problems

    def check(self, lookup: Lookup, *, full: bool = False) -> None:
        """Raise ``ValidationError`` if what changed since the last success has problems."""
        if full:
            self.full = True
        if self.full:
            problems = self.problems(lookup)
        elif self.params:
            edited = set(self.params)
            sub = self._neighbourhood(edited)
            # a muted/bypassed node does not run: its own checks do not count (graph/modes.py)
            off = skipped(self.model) if self.model.modes else ()
            problems = [p for p in self.validator(sub, lookup) if p.node in edited and p.node not in off]
            if not problems:
                self.params.clear()
        else:
            return
        if problems:
            raise ValidationError(problems)

    def _neighbourhood(self, edited: set[str]) -> GraphModel:
        """The edited nodes, the nodes feeding them, and the edges between."""
        src = self.model
        sub = GraphModel()
        for n in edited:
            if n not in src.nodes:
                continue
            if n not in sub.nodes:
                self._copy_node(sub, n)
            for edges in src.inputs_of(n).values():
                for e in edges:
                    if e.src in src.nodes and e.src not in sub.nodes:
                        self._copy_node(sub, e.src)
                    sub.connect(e.src, e.src_output, e.dst, e.dst_input, replace=False)
        return sub

    def _copy_node(self, sub: GraphModel, node: str) -> None:
        data = self.model.nodes[node]
        sub.add_node(data.type, data.params, id=data.id)
