"""``@vx.node`` functions the Ray tests run in actors (shipped by value, see conftest)."""

from __future__ import annotations

import os
import time
from typing import Annotated, Any

import numpy as np

import vortex_jupyter as vx
from vortex_jupyter.nodes import context
from vortex_jupyter.nodes.decorator import Port

Image = Annotated[Any, Port("IMAGE")]


@vx.node(category="test/ray")
def ray_ramp(n: int = 4, scale: float = 1.0) -> Image:
    return np.arange(n * n, dtype=np.float32).reshape(n, n) * scale


@vx.node(category="test/ray")
def ray_shift(image: Image, by: float = 1.0) -> Image:
    ctx = context.current()
    ctx.progress(0, 2)
    ctx.progress(1, 2)
    return image + by


@vx.node(category="test/ray")
def ray_sleep(image: Image, seconds: float = 0.5) -> Image:
    time.sleep(seconds)
    return image


@vx.node(category="test/ray")
def ray_pid(image: Image) -> int:
    return os.getpid()


@vx.node(category="test/ray")
def ray_crash(image: Image) -> Image:
    os._exit(1)


@vx.node(category="test/ray")
def ray_spin(image: Image, seconds: float = 30.0) -> Image:
    """Pure Python until stopped (never checks its context): a cancel or timeout must stop it."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sum(range(100))
    return image


@vx.node(category="test/ray")
def ray_steps(image: Image, steps: int = 200) -> Image:
    """Checks its context between steps, as samplers do."""
    ctx = context.current()
    for i in range(steps):
        ctx.raise_if_cancelled()
        ctx.progress(i + 1, steps)
        time.sleep(0.02)
    return image
