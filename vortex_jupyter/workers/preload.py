"""What worker processes import before their first node runs, and when.

Two lists, both in ``PoolConfig``:

- ``preload`` (numpy, PIL, torch...): imported by the fork server before it serves, so every
  forked worker starts with them (a respawn is a fork, not a 2 s torch import).
- ``late_preload`` (diffusers, transformers and our diffusion loaders): ~5 s more of imports.
  Making the fork server's *first* fork wait for them would delay every first run, including
  graphs that never touch a model, so they are imported in the background instead:
  - by the fork server, in one thread, after it is ready: later forks (respawns) have them.
    Each import runs under the server's ``fork_lock`` and every ``fork()`` takes that lock,
    so a child never inherits a half-executed module (its module lock would be held by a
    thread that does not exist in the child: the child's next import of it would hang);
  - by each worker, on its main thread while it has no batch to run, one entry at a time (so
    the first worker, forked before the server had them, imports them while the kernel plans
    and sends the batch). Never in a thread beside a running node: diffusers' lazy modules
    are not thread-safe (a node's ``from diffusers import AutoencoderKL`` racing a background
    import of the same name failed with ImportError). A batch arriving meanwhile waits for the
    entry being imported, which its nodes would import anyway.

Without these, a first diffusion run in a worker paid ~5-8 s of imports inside its nodes
(the timings table showed it in CheckpointLoaderSimple and KSampler) that ``executor="inline"``
had partly paid earlier in the kernel.

An entry is ``"module"`` or ``"module:attr"`` (diffusers and transformers import their
classes lazily, on attribute access: the attribute is what costs).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import traceback
from collections.abc import Iterable
from typing import Any


def default_preload() -> tuple[str, ...]:
    mods = ["numpy", "PIL.Image", "msgpack", "cloudpickle"]
    if importlib.util.find_spec("torch") is not None and not os.environ.get("VORTEX_NO_TORCH_PRELOAD"):
        mods.append("torch")
    return tuple(mods)


#: The imports the tiny-model txt2img graph pays on its first run (see nodes/diffusion/loaders.py).
DIFFUSION_IMPORTS = (
    "vortex_jupyter.nodes.diffusion.nodes", "vortex_jupyter.nodes.diffusion.loaders",
    "vortex_jupyter.nodes.diffusion.sampling",
    "diffusers:AutoencoderKL", "diffusers:UNet2DConditionModel", "diffusers:EulerDiscreteScheduler",
    "transformers:CLIPTextModel", "transformers:CLIPTokenizer", "transformers:CLIPTextConfig",
)


def default_late_preload() -> tuple[str, ...]:
    """The diffusion imports, when torch is preloaded and diffusers is installed."""
    if os.environ.get("VORTEX_NO_LATE_PRELOAD") or "torch" not in default_preload():
        return ()
    if importlib.util.find_spec("diffusers") is None or importlib.util.find_spec("transformers") is None:
        return ()
    return DIFFUSION_IMPORTS


def load(entry: str) -> None:
    """Import ``module`` (and touch ``attr``) of ``"module[:attr]"``; failures are printed, not raised
    (a broken optional package must not stop a worker: the node that needs it reports it)."""
    name, _, attr = entry.partition(":")
    try:
        mod = importlib.import_module(name)
        if attr:
            getattr(mod, attr)
    except Exception:
        traceback.print_exc()


def load_all(entries: Iterable[str], lock: Any = None) -> None:
    """Import each entry, holding ``lock`` (if given) during each one."""
    for entry in entries:
        with lock if lock is not None else contextlib.nullcontext():
            load(entry)
