"""Run history, queue and reproducibility records (SQLite; see ``db.py``).

``vx.history()`` calls this package: the module is callable (``history(path=None)`` returns the
``HistoryTable`` of recorded runs), because ``vx.history`` names both this subpackage and that
function once a submodule is imported.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallableModule(types.ModuleType):
    def __call__(self, path: Any = None) -> Any:
        from .table import history

        return history(path)


sys.modules[__name__].__class__ = _CallableModule
