"""Suite-wide fixtures.

The in-process executor's output cache is process-wide (as in a notebook kernel) and keys do
not depend on node ids, so a test counting what ran would see another test's identical
computation as cached. Each test starts with that cache empty, so no test depends on order.
Runs are recorded in a history file of the suite's own (``VORTEX_HISTORY``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest

# Every run records itself in the history: the suite's go to a file of its own (inherited by the
# kernels, CLIs and servers the tests start), never to the user's.
os.environ.setdefault("VORTEX_HISTORY", os.path.join(tempfile.mkdtemp(prefix="vortex-test-history-"), "h.sqlite"))


@pytest.fixture(autouse=True)
def _fresh_inline_cache() -> Iterator[None]:
    from vortex_jupyter.engine import executors
    from vortex_jupyter.engine.cache import cache_for

    inline = executors._singletons.get("inline")
    if inline is not None:
        cache_for(inline).clear()
    yield
