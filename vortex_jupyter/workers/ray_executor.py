"""``RayExecutor``: nodes run in Ray actors (``g.run(executor="ray")``); Ray is an optional extra.

>>> g.run(executor="ray")        # doctest: +SKIP  (pip install "vortex-jupyter[ray]")

Where things live:

- Ray itself: ``ray.init()`` on first use unless this process is connected already, at
  ``address`` (the constructor's, else ``VORTEX_RAY_ADDRESS``, else a local Ray started here).
- Node code runs in ``NodeActor``\\ s (``ray_actor.py``), kept per *class* of task, (device,
  node pack): CPU actors (``num_cpus=1`` each, up to one per CPU of the cluster, made when a
  batch has work for one more); when the cluster has GPUs, nodes that need torch
  (``NodeSpec.heavy``: what the worker pool puts on its GPU workers) run in ``num_gpus=1``
  actors, one per GPU; a node pack's nodes run in one actor per pack, whose Ray runtime env
  runs the pack environment's python (``py_executable``; ``packages/runtime.pack_worker``).
  GPU and pack actors reserve no CPU (``num_cpus=0``), so CPU actors never starve them.
  Node specs are cloudpickled once (``ray.put``) and unpickled once per actor.
- Outputs stay in Ray's object store: the engine's cache holds ``RayRef``\\ s (an ObjectRef
  and what it is); ``fetch`` is ``ray.get`` (numpy arrays come back as zero-copy, read-only
  views). Objects that are not plain data (models, CUDA tensors) stay in the actor that made
  them (``ray_actor.Resident``): later nodes run there (a GPU actor keeps its models loaded);
  ``fetch`` gives the kernel a ``WorkerObject`` description of a model, as the worker pool does.
- One batch at a time (concurrent runs take turns); ``ray_batch.py`` runs it.

Faults: an output in the object store survives the actor that made it. A node that kills its
actor (``os._exit``, a segfault) fails alone with VE-502; Ray restarts the actor
(``max_restarts=-1``), the node's queued neighbours are submitted again. What lived in a dead
actor (``Resident`` outputs) is reported lost: through the batch's ``on_lost``, or by
``drain_lost`` before the next run (it pings actors that hold some), so the engine recomputes it.
Not done here: the worker pool's sandbox (pack actors run unsandboxed) and killing a node stuck
in C code (a timeout stops Python code only; see ``ray_actor.py``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cloudpickle

from ..engine.executor import BatchCallbacks, CancelToken, Task
from ..errors import VortexError, WorkerCrashedError
from ..nodes.spec import NodeSpec
from .codefiles import code_files
from .ray_actor import NodeActor, Resident

__all__ = ["RayExecutor", "RayRef"]

#: Where ``g.run(executor="ray")`` connects (``vortex run --address`` sets it); unset: a local Ray.
ADDRESS_ENV = "VORTEX_RAY_ADDRESS"


@dataclass(eq=False, slots=True)
class RayRef:
    """The engine's reference to output ``index`` of node ``node`` (cache key ``key``)."""

    ref: Any  # ray.ObjectRef
    node: str
    index: int
    type_name: str = ""
    nbytes: int = 0
    key: str = ""
    #: the name of the actor that holds the value itself (``""``: it is in the object store)
    resident: str = ""
    incarnation: str = ""

    def __repr__(self) -> str:
        where = f"actor {self.resident}" if self.resident else "ray object store"
        return f"<RayRef {self.node or self.key[:8]}[{self.index}] {self.type_name} in {where}>"


@dataclass(eq=False)
class RayActor:
    """The driver's record of one actor."""

    handle: Any
    name: str
    device: str
    pack: str
    #: the actor's incarnation as last heard (a restart makes a new one)
    incarnation: str = ""
    #: deaths seen by the driver (tasks submitted before the last one were queued behind it)
    epoch: int = 0


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise VortexError("executor 'ray' needs Ray, which is not installed",
                          hint='pip install "vortex-jupyter[ray]"') from None
    return ray


class RayExecutor:
    """``engine.executor.Executor`` running nodes in Ray actors (see the module docstring)."""

    name = "ray"

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None,
                 cpu_actors: int | None = None) -> None:
        self.ray = import_ray()
        self.address = address or os.environ.get(ADDRESS_ENV, "").strip() or None
        self.num_cpus = num_cpus
        self.cpu_actors = cpu_actors
        self.gpus = 0
        self.cpus = 0
        self.actors: dict[tuple[str, str], list[RayActor]] = {}
        self.lost: set[str] = set()
        self._by_name: dict[str, RayActor] = {}
        self._specs: dict[str, Any] = {}
        #: actor name -> key -> [incarnation, refs the engine holds] of resident outputs
        self._residents: dict[str, dict[str, list[Any]]] = {}
        self._lock = threading.Lock()
        self._run_lock = threading.Lock()
        self._batch_ids = itertools.count(1)
        self._actor_cls: Any = None
        self._session: tuple[str, str] = ("", "")
        self._started_ray = False

    # -- Ray and actors -------------------------------------------------------------------------
    def connect(self) -> None:
        """``ray.init`` unless connected; reads the cluster's CPUs and GPUs."""
        ray = self.ray
        self._session_gone()
        with self._lock:
            if not ray.is_initialized():
                kwargs: dict[str, Any] = {"address": self.address, "include_dashboard": False}
                if self.address is None and self.num_cpus is not None:
                    kwargs["num_cpus"] = self.num_cpus
                ray.init(**kwargs)
                self._started_ray = True
            if self._actor_cls is None:
                resources = ray.cluster_resources()
                self.cpus, self.gpus = int(resources.get("CPU", 1)), int(resources.get("GPU", 0))
                self._actor_cls = ray.remote(concurrency_groups={"io": 4})(NodeActor)
                self._session = self._session_now()

    def class_of(self, spec: NodeSpec) -> tuple[str, str]:
        """(device, pack) of the actors that run ``spec``'s nodes."""
        return ("cuda" if spec.heavy and self.gpus else "cpu"), spec.pack

    def room(self, cls: tuple[str, str]) -> int:
        if cls[1]:
            return 1  # one actor per pack, as one worker per pack
        if cls[0] == "cuda":
            return self.gpus
        return max(1, self.cpu_actors or self.cpus)

    def new_actor(self, cls: tuple[str, str]) -> RayActor:
        """One more actor of class ``cls`` (raises ``PackError`` for a pack that is not installed)."""
        from .pool import kernel_path
        from .supervisor import default_threads

        device, pack = cls
        opts: dict[str, Any] = {"max_restarts": -1, "max_task_retries": 0,
                                "num_cpus": 1 if device == "cpu" and not pack else 0,
                                "num_gpus": 1 if device == "cuda" else 0}
        paths = kernel_path()
        if pack:
            from ..packages.runtime import pack_worker

            info = pack_worker(pack)
            opts["runtime_env"] = {"py_executable": info.python}
            paths = list(info.paths)
        env = {"VORTEX_DEVICE": "cpu"} if device == "cpu" and self.gpus and "VORTEX_DEVICE" not in os.environ else {}
        with self._lock:
            mine = self.actors.setdefault(cls, [])
            name = f"ray:{pack or device}-{len(mine)}"
            actor = RayActor(self._actor_cls.options(**opts).remote(device, pack, paths, default_threads(), env),
                             name, device, pack)
            mine.append(actor)
            self._by_name[name] = actor
        return actor

    def spec_ref(self, spec: NodeSpec, sid: str) -> Any:
        """The ObjectRef of ``spec`` cloudpickled (with its code files), put once."""
        ref = self._specs.get(sid)
        if ref is None:
            if len(self._specs) > 10_000:  # notebooks redefine nodes; keep the memo bounded
                self._specs.clear()
            ref = self._specs[sid] = self.ray.put((cloudpickle.dumps(spec), code_files(spec.fn)))
        return ref

    # -- the Executor protocol ------------------------------------------------------------------
    def execute(self, batch: Sequence[Task], callbacks: BatchCallbacks, cancel: CancelToken) -> None:
        from .ray_batch import RayBatch

        with self._run_lock:
            self.connect()
            RayBatch(self, list(batch), callbacks, cancel, next(self._batch_ids)).run()

    def fetch(self, ref: Any) -> Any:
        if not isinstance(ref, RayRef):
            return ref
        ray = self.ray
        try:
            value = ray.get(ref.ref)
            if isinstance(value, Resident):
                reply = ray.get(value.actor.export.options(concurrency_group="io").remote(
                    value.key, value.index, True, value.incarnation))
                if reply[0] == "opaque":
                    from .pool import worker_object

                    return worker_object(str(reply[1]), str(reply[2]), int(reply[3]))
                return reply[1]
            return value
        except ray.exceptions.RayError as exc:
            with self._lock:
                self.lost.add(ref.key)
            raise WorkerCrashedError(
                f"output {ref.index} of node {ref.node!r} is gone from Ray ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:200] if str(exc) else ''})", node=ref.node,
                hint="run the graph again to recompute it") from None

    def release(self, refs: Sequence[Any]) -> None:
        """Drop the references (Ray frees an object with its last ObjectRef); resident values
        are released in their actor once the engine holds no ref of their key."""
        gone: dict[str, list[str]] = {}
        with self._lock:
            for r in refs:
                if not (isinstance(r, RayRef) and r.resident):
                    continue
                entry = self._residents.get(r.resident, {}).get(r.key)
                if entry is None or entry[0] != r.incarnation:
                    continue
                entry[1] -= 1
                if entry[1] <= 0:
                    del self._residents[r.resident][r.key]
                    gone.setdefault(r.resident, []).append(r.key)
        for name, keys in gone.items():
            actor = self._by_name.get(name)
            if actor is not None and self.ray.is_initialized():
                actor.handle.release.options(concurrency_group="io").remote(keys)

    def size_of(self, ref: Any) -> int:
        return max(64, ref.nbytes) if isinstance(ref, RayRef) else 64

    def drain_lost(self) -> list[str]:
        """Keys whose outputs were lost since the last call (a fetch failed, or an actor holding
        resident outputs restarted: checked now, by one ping per such actor)."""
        ray = self.ray
        self.lost.update(self._session_gone())
        with self._lock:
            names = [n for n, held in self._residents.items() if held]
        for name in names if ray.is_initialized() else ():
            actor = self._by_name[name]
            self.lost.update(self.forget_incarnations(actor, self.await_actor(actor, 60.0)))
        with self._lock:
            keys, self.lost = sorted(self.lost), set()
        return keys

    def close(self) -> None:
        ray = self.ray
        with self._lock:
            actors = [a for mine in self.actors.values() for a in mine]
            self.actors.clear()
            self._by_name.clear()
            self._residents.clear()
            self._specs.clear()
            self._actor_cls = None
        if ray.is_initialized():
            for a in actors:
                with contextlib.suppress(Exception):  # already gone
                    ray.kill(a.handle)
            if self._started_ray:
                ray.shutdown()
                self._started_ray = False

    def _session_gone(self) -> list[str]:
        """When Ray was shut down (``ray.shutdown()``, maybe ``ray.init()`` again, in a notebook)
        since this executor made its actors: forget them, and return every key the engine
        caches here (all of it is gone)."""
        if self._actor_cls is None or (self.ray.is_initialized() and self._session == self._session_now()):
            return []
        from ..engine.cache import cache_for

        with self._lock:
            self.actors.clear()
            self._by_name.clear()
            self._residents.clear()
            self._specs.clear()
            self._actor_cls = None
            self._started_ray = False
        return list(cache_for(self).index)

    def _session_now(self) -> tuple[str, str]:
        """Which Ray this process is connected to (a new ``ray.init`` gives a new one)."""
        ctx = self.ray.get_runtime_context()
        return str(ctx.gcs_address), str(ctx.get_node_id())

    def await_actor(self, actor: RayActor, limit: float) -> str:
        """``actor``'s incarnation once it answers (Ray may be restarting it); ``""`` if it does
        not within ``limit`` seconds."""
        ray, deadline = self.ray, time.monotonic() + limit
        while time.monotonic() < deadline:
            try:
                return str(ray.get(actor.handle.ping.options(concurrency_group="io").remote(),
                                   timeout=max(0.1, deadline - time.monotonic())))
            except ray.exceptions.RayActorError:
                time.sleep(0.05)
            except ray.exceptions.GetTimeoutError:
                break
        return ""

    # -- resident outputs -----------------------------------------------------------------------
    def hold(self, refs: Sequence[RayRef]) -> None:
        """The engine took these refs (``on_result``): count the resident ones."""
        with self._lock:
            for r in refs:
                if r.resident:
                    held = self._residents.setdefault(r.resident, {})
                    entry = held.get(r.key)
                    if entry is None or entry[0] != r.incarnation:
                        held[r.key] = entry = [r.incarnation, 0]
                    entry[1] += 1

    def forget_incarnations(self, actor: RayActor, incarnation: str) -> list[str]:
        """Keys resident in ``actor`` under another incarnation than ``incarnation`` (lost)."""
        with self._lock:
            actor.incarnation = incarnation or actor.incarnation
            held = self._residents.get(actor.name, {})
            lost = [k for k, (inc, _) in held.items() if inc != incarnation]
            for k in lost:
                del held[k]
        return lost
