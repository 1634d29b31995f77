"""What a node type we lack is, told from what its file says of it: a ComfyUI core node we do not
implement yet, a custom node from a named pack (UI files record ``properties.cnr_id`` /
``aux_id`` / ``ver`` per node, as ComfyUI writes them), or one from an unknown pack. API files
carry no such marks; ComfyUI's core node names (``comfy_core``) decide there. Readers may
leave a sentence of their own in ``extra["comfy_ui"]["unexpanded"]`` (a group node whose inner
types are missing).
"""

from __future__ import annotations

from .comfy_core import CORE_NODE_TYPES
from .model import NodeData


def pack_of(node: NodeData) -> tuple[str, str]:
    """``(pack id, version)`` a UI file records for a node (``cnr_id``/``aux_id``, ``ver``), or ``("", "")``."""
    kept = node.extra.get("comfy_ui")
    raw = kept.get("raw") if isinstance(kept, dict) else None
    props = raw.get("properties") if isinstance(raw, dict) else None
    props = props if isinstance(props, dict) else {}
    pack, ver = props.get("cnr_id") or props.get("aux_id"), props.get("ver")
    if not isinstance(pack, str) or pack == "comfy-core":
        return "", ""
    return pack, ver if isinstance(ver, str) else ""


def install_hint(node: NodeData) -> str | None:
    """How to get the pack a node of a type we lack comes from (``vtx``), if the file names it."""
    pack, ver = pack_of(node)
    if not pack:
        return None
    at = f"@{ver}" if ver else ""
    # ``aux_id`` of a pack outside the registry is its GitHub ``owner/repo``: the source is known
    where = (f"git+https://github.com/{pack}{at}" if pack.count("/") == 1 and " " not in pack
             else f"<folder, wheel or git+URL{at} of {pack}>")
    return (f"install its pack: `vtx install {where}` "
            "(`vtx suggest WORKFLOW -o vortex.toml` lists every pack the file names)")


def describe_unknown(node: NodeData) -> str:
    """What a node type we lack is, from what its UI file says of it (``properties.cnr_id`` /
    ``aux_id`` / ``ver``, as ComfyUI writes them) or, without that, ComfyUI's core node list."""
    kept = node.extra.get("comfy_ui")
    kept = kept if isinstance(kept, dict) else {}
    if isinstance(kept.get("unexpanded"), str):
        return str(kept["unexpanded"])
    raw = kept.get("raw")
    props = raw.get("properties") if isinstance(raw, dict) else None
    props = props if isinstance(props, dict) else {}
    pack, ver = props.get("cnr_id") or props.get("aux_id"), props.get("ver")
    if pack == "comfy-core" or (not pack and node.type in CORE_NODE_TYPES):
        return "a ComfyUI core node we do not implement yet"
    if isinstance(pack, str) and pack:
        return f"a custom node from pack {pack!r}" + (f" (version {ver})" if isinstance(ver, str) and ver else "")
    return "a custom node from an unknown pack"
