"""The link table of a written UI workflow (used by ``_ui_write``).

Policy: a link keeps its id and its file entry (a Reroute on the way included) while the same
source still feeds the same input; the entry is rewritten only where the target slot index
moved. Links into kept raw nodes (Reroutes, intact subgraph instances, group nodes) stay
while their source is still written. Links no input used at load are kept as they were.
Everything else gets a fresh id after ``last_link_id``, in the order the inputs are written.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..model import Edge, GraphModel
from ._ui_common import (
    KEY,
    LINK_KEYS,
    REROUTE,
    Lookup,
    as_dict,
    as_id,
    as_list,
    parse_link,
    readable_link,
    slots,
)

Origin = tuple[int, int]


class LinkPlanner:
    def __init__(self, model: GraphModel, lookup: Lookup, meta: dict[str, Any], ids: dict[str, int],
                 origin: Callable[[Edge], Origin | None]) -> None:
        self.model, self.lookup, self.ids, self.origin = model, lookup, ids, origin
        self.as_objects = meta.get("links_form") == "object"
        self.original: dict[int, Any] = {}
        self.parsed: dict[int, Any] = {}  # lid -> parse_link of its original row, parsed once
        for raw in as_list(meta.get("links")):
            link = readable_link(raw)
            if link is not None and link[0] not in self.original:
                self.original[link[0]] = raw
                self.parsed[link[0]] = link
        self.unused = [lid for lid in as_list(meta.get("unused_links")) if isinstance(lid, int)]
        self.rows: dict[int, Any] = {}
        self.fresh: list[int] = []
        self.reroutes: dict[int, dict[str, Any]] = {}  # int id -> raw reroute node written
        self.written: set[int] = set()
        top = as_dict(meta.get("top"))
        self.counter = max([as_id(top.get("last_link_id")), *self.original], default=0)
        self.last = as_id(top.get("last_link_id"))

    # ---- inputs of model nodes --------------------------------------------------------------
    def model_input(self, mid: str, name: str, edge: Edge, slot: int, top_level: bool) -> int | None:
        """The link id feeding input ``name`` (slot ``slot``) of written node ``mid``."""
        src = self.origin(edge)
        if src is None:
            return None
        dst = (self.ids[mid], slot)
        kept = as_list(as_dict(as_dict(self.model.nodes[mid].extra.get(KEY)).get("link_ids")).get(name))
        lid = kept[0] if top_level and kept[1:] == [edge.src, edge.src_output] else None
        if isinstance(lid, int) and lid in self.original and lid not in self.rows:
            raw = self.original[lid]
            link = self.parsed[lid]
            ok = (link[3], link[4]) == (str(dst[0]), dst[1]) and self._chain_origin(lid) == src
            self.rows[lid] = raw if ok else self._row(lid, src, dst, link[5])
            return lid
        self.counter += 1
        self.rows[self.counter] = self._row(self.counter, src, dst, self._type(edge))
        self.fresh.append(self.counter)
        return self.counter

    def _chain_origin(self, lid: Any) -> Origin | None:
        """The first source that is no kept Reroute, following the original rows."""
        seen: set[int] = set()
        while isinstance(lid, int) and lid in self.original and lid not in seen:
            seen.add(lid)
            _, src, slot, _, _, _ = self.parsed[lid]
            number = _int(src)
            reroute = self.reroutes.get(number) if number is not None else None
            if reroute is None:
                return None if number is None else (number, slot)
            inputs = reroute.get("inputs") or []
            lid = inputs[0].get("link") if inputs and isinstance(inputs[0], dict) else None
        return None

    # ---- inputs of kept raw nodes ------------------------------------------------------------
    def raw_input(self, lid: Any) -> int | None:
        """A raw node's input link, kept while its source is written."""
        if not isinstance(lid, int) or lid not in self.original or lid in self.rows:
            return None
        _, src, _, _, _, _ = self.parsed[lid]
        if _int(src) not in self.written:
            return None
        self.rows[lid] = self.original[lid]
        return lid

    def keep_unused(self) -> None:
        for lid in self.unused:
            if lid in self.original and lid not in self.rows:
                self.rows[lid] = self.original[lid]

    # ---- results -----------------------------------------------------------------------------
    def table(self) -> list[Any]:
        order = [lid for lid in self.original if lid in self.rows] + self.fresh
        return [self.rows[lid] for lid in order]

    def by_origin(self) -> dict[Origin, list[int]]:
        """Link ids by (origin, slot), for the output slots; links no input used at load are
        left out (files do not list them either)."""
        out: dict[Origin, list[int]] = {}
        unused = set(self.unused)
        for lid in [lid for lid in self.original if lid in self.rows and lid not in unused] + self.fresh:
            row = self.rows[lid]
            _, src, slot, _, _, _ = self.parsed[lid] if row is self.original.get(lid) else parse_link(row, "links")
            number = _int(src)
            if number is not None:
                out.setdefault((number, slot), []).append(lid)
        return out

    def known(self) -> set[int]:
        """Ids an output slot may list: the loaded links that inputs used."""
        return set(self.original) - set(self.unused)

    def _row(self, lid: int, src: Origin, dst: Origin, kind: Any) -> Any:
        row = [lid, src[0], src[1], dst[0], dst[1], kind]
        return dict(zip(LINK_KEYS, row)) if self.as_objects else row

    def _type(self, edge: Edge) -> Any:
        src = self.model.nodes.get(edge.src)
        if src is None:
            return "*"
        outputs = slots(as_dict(as_dict(src.extra.get(KEY)).get("raw")).get("outputs"))
        if outputs is not None and 0 <= edge.src_output < len(outputs):
            return outputs[edge.src_output].get("type", "*")
        spec = self.lookup(src.type)
        if spec is not None and 0 <= edge.src_output < len(spec.outputs):
            return spec.outputs[edge.src_output].type
        return "*"


def output_links(raw: Any, found: list[int], known: Any) -> Any:
    """An output slot's ``links``: as it was when the same links leave it, else updated (the
    survivors in their old order, then the new ones). Ids that were in no link table already
    (``known`` holds the loaded ones) are stale data of the file, not links: they do not count."""
    before = [x for x in as_list(raw) if isinstance(x, int) and x in known]
    if set(before) == set(found):
        return raw
    keep = [x for x in before if x in found]
    return keep + sorted(x for x in found if x not in keep)


def _int(text: str) -> int | None:
    """A node id of the file as an int ("12", "-10"), or None for string ids ("37:8")."""
    digits = text[1:] if text[:1] == "-" else text
    return int(text) if digits.isdigit() and digits.isascii() else None


def is_reroute(raw: dict[str, Any]) -> bool:
    return raw.get("type") == REROUTE
