"""A node function that logs each execution to a file, for tests of concurrent runs.

It may run in a worker process (shipped by value, see test_concurrent_runs.py), so it counts
through the file system, and waits on gate files the test creates, so the test decides when a
node finishes. The wait is cooperative: a cancelled run or a node timeout stops it.
"""

from __future__ import annotations

import os
import time

from vortex_jupyter.nodes import context


def counted(log: str, k: int, a: int = 0, b: int = 0, gate: str = "", fail: bool = False,
            delay: float = 0.0) -> tuple[int]:
    with open(log, "a") as f:
        f.write(f"{k}\n")
    end = time.monotonic() + delay
    while (gate and not os.path.exists(gate)) or time.monotonic() < end:
        context.current().raise_if_cancelled()
        time.sleep(0.002)
    if fail:
        raise ValueError(f"boom in node {k}")
    return (a + b + k,)
