"""When an output of one port type may feed an input of another (pure; no node specs needed).

Types are plain strings with ComfyUI's names. ``"*"`` matches anything; a comma-separated type
(``"INT,FLOAT"``) accepts any of its members, as ComfyUI does.

>>> compatible("INT", "INT"), compatible("*", "IMAGE"), compatible("INT", "INT,FLOAT")
(True, True, True)
>>> compatible("IMAGE", "LATENT")
False
"""

from __future__ import annotations

ANY = "*"


def _members(t: str) -> frozenset[str]:
    return frozenset(part.strip() for part in t.split(",")) if "," in t else frozenset((t,))


def compatible(src: str, dst: str) -> bool:
    """Whether an output of type ``src`` may be linked into an input of type ``dst``."""
    if src in (dst, ANY) or dst == ANY:
        return True
    return bool(_members(src) & _members(dst))
