"""Legacy group nodes (placeholder)."""
from __future__ import annotations

from typing import Any


class GroupExpander:
    def __init__(self, d: dict[str, Any], lookup: Any) -> None:
        self.d = d

    def is_group(self, ntype: str) -> bool:
        return False

    def expand(self, reader: Any, level: Any, nid: str, raw: dict[str, Any]) -> None:
        raise NotImplementedError

    def output_source(self, reader: Any, level: Any, nid: str, slot: int) -> Any:
        return None
