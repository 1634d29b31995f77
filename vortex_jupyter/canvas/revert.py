"""Take back an update on a replica: make the parts it touched equal another doc's again.

Why: a view applies its own edit before the kernel sees it. When the kernel refuses that
edit, the view still holds it, and yjs cannot forget an update; worse, the view's later
edits build on the refused one, so the kernel could never apply them either. So the relay
(``sync.py``) takes a refused update *in* on its scratch replica, reverts what it touched to
the authoritative doc's state there, and sends everyone the difference: the refused items,
already deleted (their content garbage-collected: a few bytes each, not the content), plus
the restored values. The sender's replica drops its edit; the other views never see it.

State: none. ``restore`` writes one transaction into ``target``.

>>> from pycrdt import Doc, Map
>>> real = Doc(); real.get("nodes", type=Map)["a"] = Map({"type": "Add", "x": 1.0, "params": Map()})
>>> view = Doc(); view.apply_update(real.get_update())
>>> view.get("nodes", type=Map)["a"]["params"]["junk"] = "x" * 1000
>>> restore(view, real, Touched(params={"a": {"junk"}}))
>>> view.get("nodes", type=Map).to_py() == real.get("nodes", type=Map).to_py()
True
"""

from __future__ import annotations

from typing import Any

from pycrdt import Doc, Map

from .protocol import ROOT_EDGES, ROOT_FILE, ROOT_GROUPS, ROOT_META, ROOT_NODES
from .schema import Touched

REVERT_ORIGIN = "revert"


def restore(target: Doc, source: Doc, touched: Touched) -> None:
    """Make the parts of ``target`` that ``touched`` names equal ``source``'s (groups, meta and
    the file root, when touched, wholesale)."""
    with target.transaction(origin=REVERT_ORIGIN):
        nodes, original = target.get(ROOT_NODES, type=Map), source.get(ROOT_NODES, type=Map)
        for node_id in sorted(touched.node_ids()):
            _restore_node(nodes, original, node_id)
        _restore_keys(target.get(ROOT_EDGES, type=Map), source.get(ROOT_EDGES, type=Map), touched.edges)
        for name, whole in ((ROOT_GROUPS, touched.groups), (ROOT_META, touched.meta), (ROOT_FILE, touched.file)):
            if whole:
                mine, theirs = target.get(name, type=Map), source.get(name, type=Map)
                _restore_keys(mine, theirs, set(mine.keys()) | set(theirs.keys()))


def _restore_node(nodes: Map, original: Map, node_id: str) -> None:
    want = original.get(node_id)
    have = nodes.get(node_id)
    if not isinstance(want, Map):
        if node_id in nodes:
            del nodes[node_id]
        return
    fields: dict[str, Any] = dict(want.to_py() or {})
    params = fields.pop("params", None)
    if not isinstance(params, dict):  # not ours to fix: the authoritative doc is what it is
        nodes[node_id] = Map(dict(want.to_py() or {}))
        return
    have_params = have.get("params") if isinstance(have, Map) else None
    if not isinstance(have, Map) or not isinstance(have_params, Map):
        nodes[node_id] = Map({**fields, "params": Map(params)})
        return
    _patch(have, fields, keep={"params"})
    _patch(have_params, params)


def _patch(ymap: Map, want: dict[str, Any], keep: frozenset[str] | set[str] = frozenset()) -> None:
    """``ymap`` made equal ``want`` (its keys in ``keep`` left alone), writing only differences."""
    for key in [k for k in ymap.keys() if k not in want and k not in keep]:  # noqa: SIM118
        del ymap[key]
    for key, value in want.items():
        if key not in ymap or not _same(_plain(ymap[key]), value):
            ymap[key] = value


def _restore_keys(ymap: Map, original: Map, keys: set[str]) -> None:
    for key in sorted(keys):
        if key not in original:
            if key in ymap:
                del ymap[key]
            continue
        value = _plain(original[key])
        if key not in ymap or not _same(_plain(ymap[key]), value):
            ymap[key] = Map(value) if isinstance(original[key], Map) else value


def _plain(value: Any) -> Any:
    to_py = getattr(value, "to_py", None)
    return to_py() if callable(to_py) else value


def _same(a: Any, b: Any) -> bool:
    """Equal and of one type (``1 == 1.0 == True`` would hide a change)."""
    return type(a) is type(b) and a == b
