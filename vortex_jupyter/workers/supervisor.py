"""The supervisor: starts, watches, kills and respawns worker processes (kernel side).

State:
- one ``WorkerProcess`` per slot (a device: ``"cpu"``, ``"cuda:0"``, ...); when a worker
  dies the monitor thread unlinks its shared memory and starts a replacement at once, so the
  next batch finds a warm worker (a fork of the fork server: ~tens of ms);
- a ``WorkerProcess`` (``process.py``) per live worker; the monitor thread reads idle
  workers' sockets (heartbeats, EOF) and enforces the heartbeat and memory limits.

Death is detected three ways: EOF on the socket (exit, crash, kill), the fork server's exit
status (which names the signal), and the monitor (no heartbeat for ``heartbeat_timeout``;
resident memory over ``memory_limit`` -> SIGKILL, reported as out of memory). The monitor
samples every worker's resident memory every 20 ms, so a worker the system's OOM killer took
is reported with the memory it had (``procs.oom_kills``).

Memory limit: ``VORTEX_WORKER_MEMORY`` (``"8G"``, ``"512M"``, bytes; ``"off"``: none), else 90%
of the machine's (or the container's) memory: a node that touches more than the machine has
fails with VE-503 naming it, instead of the OOM killer's SIGKILL (or the kernel's death).
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import itertools
import os
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import ProtocolError
from . import procs
from . import protocol as p
from .copies import default_model_copies
from .launcher import ForkServer, Spawner
from .preload import default_late_preload, default_preload
from .process import WorkerProcess, signal_name
from .shm import DEFAULT_SEGMENT, unlink_prefix
from .worker import WorkerConfig

_POOL_IDS = itertools.count()
#: Logs of dead workers kept in the pool's folder (older ones are deleted).
KEEP_LOGS = 16


def default_devices() -> list[str]:
    """The general workers' devices, one entry per worker (without importing torch here).

    ``VORTEX_WORKER_DEVICES`` (``"cuda:0,cuda:1"``, ``"cpu,cpu"``) names them; else
    ``VORTEX_WORKERS=N`` makes N workers over the visible GPUs in turn (or N CPU workers); else
    one per visible GPU, and on a machine without one a single CPU worker: torch already spreads
    one CPU node over every core (its intra-op threads), so a second CPU worker pays off for
    branches of single-threaded Python nodes, not for diffusion on a CPU (``benchmarks/parallel.py``
    measures both). Several CPU workers share the cores: each gets ``cores / workers`` torch
    threads unless ``VORTEX_WORKER_THREADS`` says otherwise.
    """
    env = os.environ.get("VORTEX_WORKER_DEVICES")
    if env:
        return [d.strip() for d in env.split(",") if d.strip()]
    try:
        gpus = [f"cuda:{i}" for i in range(len(os.listdir("/proc/driver/nvidia/gpus")))]
    except OSError:
        gpus = []
    count = os.environ.get("VORTEX_WORKERS", "").strip()
    if count:
        if not count.isdigit() or int(count) < 1:
            from ..errors import VortexError

            raise VortexError(f"VORTEX_WORKERS = {count!r} is not a worker count",
                              hint="set it to a whole number >= 1 (unset: one per GPU, or one on a CPU)")
        base = gpus or ["cpu"]
        return [base[i % len(base)] for i in range(int(count))]
    return gpus or ["cpu"]


def threads_for(devices: list[str], device: str, threads: int) -> int:
    """torch threads of a worker on ``device``: ``threads`` if set, else a CPU worker's share of
    the cores when several CPU workers run (0: torch's default)."""
    cpu_workers = sum(1 for d in devices if d == "cpu")
    if threads or device != "cpu" or cpu_workers < 2:
        return threads
    return max(1, (os.cpu_count() or 1) // cpu_workers)


def default_threads() -> int:
    """torch intra-op threads per worker from ``VORTEX_WORKER_THREADS`` (0: torch's default)."""
    raw = os.environ.get("VORTEX_WORKER_THREADS", "").strip()
    if not raw:
        return 0
    try:
        threads = int(raw)
    except ValueError:
        threads = -1
    if threads < 0:
        from ..errors import VortexError

        raise VortexError(f"VORTEX_WORKER_THREADS = {raw!r} is not a thread count",
                          hint="set it to a whole number >= 1 (or 0 / unset for torch's default)")
    return threads


def default_memory_limit() -> int | None:
    """Resident bytes a worker may hold before the monitor stops it (see the module docstring)."""
    raw = os.environ.get("VORTEX_WORKER_MEMORY", "").strip()
    if raw.lower() in ("off", "none", "0"):
        return None
    if raw:
        try:
            return procs.parse_bytes(raw)
        except ValueError:
            from ..errors import VortexError

            raise VortexError(f"VORTEX_WORKER_MEMORY = {raw!r} is not a size",
                              hint='set it to e.g. "8G", "512M", a number of bytes, or "off"') from None
    return int(procs.physical_memory() * 0.9)


def sandbox_mode() -> str:
    """``VORTEX_SANDBOX``: ``"strict"`` or ``""`` (anything else is an error)."""
    raw = os.environ.get("VORTEX_SANDBOX", "").strip().lower()
    if raw in ("", "off", "none", "0"):
        return ""
    if raw == "strict":
        return "strict"
    from ..errors import VortexError

    raise VortexError(f"VORTEX_SANDBOX = {raw!r} is not a sandbox mode", hint='set it to "strict" or leave it unset')


def pack_sandbox_mode() -> str:
    """``VORTEX_PACK_SANDBOX`` for node packs' workers: ``"auto"`` (the default: strict where the
    machine supports it, else unsandboxed with a warning), ``"strict"`` (refuse to run a pack
    unsandboxed) or ``"off"``. Returns ``"strict"`` or ``""``."""
    raw = os.environ.get("VORTEX_PACK_SANDBOX", "").strip().lower() or "auto"
    if raw in ("off", "none", "0"):
        return ""
    if raw not in ("auto", "strict"):
        from ..errors import VortexError

        raise VortexError(f"VORTEX_PACK_SANDBOX = {raw!r} is not a sandbox mode",
                          hint='set it to "auto" (the default), "strict" or "off"')
    from . import sandbox

    if raw == "strict":
        sandbox.require()
        return "strict"
    caps = sandbox.capabilities()
    if caps["landlock_abi"] and caps["seccomp"]:
        return "strict"
    import warnings

    warnings.warn(f"vortex-jupyter: node packs run UNSANDBOXED: this machine lacks Landlock or seccomp ({caps}); "
                  "set VORTEX_PACK_SANDBOX=strict to refuse instead (`vtx doctor` says what is missing)",
                  stacklevel=2)
    return ""


@dataclass
class PoolConfig:
    devices: list[str] = field(default_factory=default_devices)
    preload: tuple[str, ...] = field(default_factory=default_preload)
    #: Imported in the background by the fork server and each worker (see ``preload.py``).
    late_preload: tuple[str, ...] = field(default_factory=default_late_preload)
    arena_bytes: int = DEFAULT_SEGMENT
    heartbeat: float = 0.5
    heartbeat_timeout: float = 30.0
    #: Resident memory limit per worker in bytes (None: no limit); over it -> VE-503.
    memory_limit: int | None = field(default_factory=default_memory_limit)
    #: Seconds a node gets to stop after a cancel/timeout before its worker is killed.
    kill_grace: float = 1.0
    #: torch intra-op threads in each worker (0: torch's default, one per core).
    threads: int = field(default_factory=default_threads)
    use_forkserver: bool = True
    spawn_timeout: float = 60.0
    #: Start the workers in the background as soon as the pool exists, so the fork server's
    #: torch import and the workers' late_preload overlap the kernel's validation and planning.
    warm_start: bool = True
    #: ``"strict"``: sandboxed workers (``VORTEX_SANDBOX``; see ``pool.py`` and ``shm.py``).
    sandbox: str = field(default_factory=lambda: sandbox_mode())
    #: Most general workers that may hold one model (``copies.py``; 0: one per device).
    model_copies: int = field(default_factory=default_model_copies)
    #: CUDA tensors between workers on one GPU by CUDA IPC handle (``cuda_ipc``);
    #: ``VORTEX_CUDA_IPC=off``: through host memory (e.g. where a container forbids CUDA IPC).
    cuda_ipc: bool = field(default_factory=lambda: os.environ.get("VORTEX_CUDA_IPC", "").strip().lower()
                           not in ("off", "0", "no", "false"))


class Supervisor:
    """Owns the workers of one pool: spawn, watch, respawn, clean up."""

    def __init__(self, config: PoolConfig | None = None, on_segment: Any = None) -> None:
        self.config = config or PoolConfig()
        if self.config.sandbox:  # the kernel maps every owner's segments: its memory is closed too
            from .sandbox import require

            require()  # says what this machine supports; a clear error if strict cannot work here
            procs.close_to_peers()
        self.pool_id = next(_POOL_IDS)
        self.shm_prefix = f"vx{os.getpid()}p{self.pool_id}-"
        self.tmpdir = tempfile.mkdtemp(prefix="vortex-workers-")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(os.path.join(self.tmpdir, "kernel.sock"))
        self._listener.listen(16)
        self.workers: dict[int, WorkerProcess] = {}
        #: logs of buried workers, newest last: the last few are kept for a look, older ones go
        self._old_logs: collections.deque[str] = collections.deque()
        self._by_pid: dict[int, WorkerProcess] = {}
        self._generation = itertools.count()
        self._spawn_lock = threading.RLock()
        self._closed = threading.Event()
        self.death_listeners: list[Any] = []
        #: maps a sandboxed worker's segment from its descriptor (the pool's ``Attachments.adopt``)
        self.on_segment: Any = on_segment
        self.launcher: ForkServer | Spawner = self._make_launcher()
        #: node packs' workers: pack -> slot (after the device slots), slot -> how to start it,
        #: and a launcher per pack environment's python (``packages.runtime``)
        self.pack_slots: dict[str, int] = {}
        self._pack_workers: dict[int, Any] = {}
        self._env_launchers: dict[str, ForkServer | Spawner] = {}
        self._pack_sandbox: str | None = None
        atexit.register(self.close)  # no orphans, no /dev/shm leaks when the kernel exits
        threading.Thread(target=self._monitor, name="vx-monitor", daemon=True).start()
        if self.config.warm_start:
            threading.Thread(target=self._warm, name="vx-warm", daemon=True).start()

    def _warm(self) -> None:
        with contextlib.suppress(Exception):  # the first batch spawns again and reports the error
            self.start()

    def _make_launcher(self, python: str = "", tag: str = "") -> ForkServer | Spawner:
        if self.config.use_forkserver:
            try:
                # a pack environment's server preloads torch & co. but not the core's diffusion
                # modules (late_preload): a pack's nodes import what they use
                return ForkServer(list(self.config.preload), self.shm_prefix + tag,
                                  os.path.join(self.tmpdir, f"forkserver{tag}.log"), self._on_exit,
                                  [] if python else list(self.config.late_preload), python)
            except OSError:
                pass
        return Spawner(os.path.join(self.tmpdir, f"spawner{tag}.log"), self._on_exit, python)

    # -- node packs ---------------------------------------------------------------------------
    def pack_slot(self, pack: str) -> int:
        """The slot of node pack ``pack``'s worker (its settings read now, its process started
        on first use). Raises ``PackError`` when the pack or its environment is missing."""
        from ..packages.runtime import pack_worker

        info = pack_worker(pack)  # read again each time: a pack installed anew gets a new worker
        with self._spawn_lock:
            if self._pack_sandbox is None:
                self._pack_sandbox = self.config.sandbox or pack_sandbox_mode()
            slot = self.pack_slots.get(pack)
            if slot is None:
                slot = len(self.config.devices) + len(self.pack_slots)
                self.pack_slots[pack] = slot
            elif self._pack_workers[slot] != info:
                self._pack_workers[slot] = info
                old = self.workers.get(slot)
                if old is not None and old.alive:  # its modules are the old code's
                    old.kill("pack reinstalled")
                    old.dead.wait(5.0)
                    self.bury(old)  # what it held is lost (recomputed); respawned with the new code
            self._pack_workers[slot] = info
            return slot

    def _launcher_of(self, slot: int) -> ForkServer | Spawner:
        info = self._pack_workers.get(slot)
        if info is None:
            if not self.launcher.alive:
                self.launcher = self._make_launcher()
            return self.launcher
        launcher = self._env_launchers.get(info.python)
        if launcher is None or not launcher.alive:  # one per environment; its workers fork from it
            tag = f"e{len(self._env_launchers)}"
            launcher = self._env_launchers[info.python] = self._make_launcher(info.python, tag)
        return launcher

    # -- spawning -----------------------------------------------------------------------------
    def start(self) -> None:
        for slot in range(len(self.config.devices)):
            self.worker(slot)

    def worker(self, slot: int = 0) -> WorkerProcess:
        """The live worker of ``slot``, (re)spawning it if needed."""
        w = self.workers.get(slot)
        if w is not None and w.alive and w.chan is not None:  # (no chan yet: its spawn is running)
            w.poll()  # an EOF waiting on its socket: it died since the monitor last looked
            if w.alive:
                return w
        if w is not None and not w.alive and not w.buried:
            self.bury(w)  # unlink its memory and tell the pool what it held; respawns
        with self._spawn_lock:  # waits for a spawn in progress (warm start, respawn)
            w = self.workers.get(slot)
            if w is None or not w.alive:
                w = self._spawn(slot)
            return w

    def _spawn(self, slot: int) -> WorkerProcess:
        if self._closed.is_set():
            raise RuntimeError("the worker pool is closed")
        uid = f"{slot}g{next(self._generation)}"
        info = self._pack_workers.get(slot)  # a node pack's worker: the first device, its env
        device = self.config.devices[0 if info else slot]
        sandbox = (self._pack_sandbox or "") if info else self.config.sandbox
        w = WorkerProcess(slot, uid, device, f"{self.shm_prefix}{uid}-",
                          os.path.join(self.tmpdir, f"worker-{uid}.log"))
        w.sandboxed, w.pack = bool(sandbox), info.pack if info else ""
        cfg = WorkerConfig(uid, self._listener.getsockname(), w.prefix, device, self.config.arena_bytes,
                           self.config.heartbeat, w.log_path,
                           threads_for(self.config.devices, device, self.config.threads),
                           [] if info else list(self.config.late_preload), sandbox, w.pack, list(info.paths) if info else [],
                           dict(info.permissions) if info else {},
                           1 if info else len(self.config.devices), 1 if info else self.config.devices.count(device))
        w.on_segment = self.on_segment
        w.pid = self._launcher_of(slot).spawn(uid, cfg.to_dict(), self.config.spawn_timeout)
        self._by_pid[w.pid] = w
        self.workers[slot] = w
        try:
            chan, hello = self._accept(uid, w)
            w.attach(chan, hello, self._first_segment(chan, w) if w.sandboxed else None)
        except BaseException:
            w.kill("spawn")
            w._mark_dead("handshake failed")
            raise
        return w

    def _accept(self, uid: str, w: WorkerProcess) -> tuple[p.Channel, p.Hello]:
        deadline = time.monotonic() + self.config.spawn_timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or w.exited.is_set():
                raise RuntimeError(f"worker {uid} did not start ({w.describe_death(0)}); log:\n{w.log_tail()}")
            self._listener.settimeout(min(left, 0.25))
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            sock.settimeout(None)
            chan = p.Channel(sock, allow_pickle=False, fds=w.sandboxed)
            try:
                hello = chan.recv(min(left, 10.0))
            except ProtocolError:
                hello = None
            if isinstance(hello, p.Hello) and hello.uid == uid and hello.version == p.VERSION:
                return chan, hello
            chan.close()  # a stale or foreign connection: keep waiting for ours

    def _first_segment(self, chan: p.Channel, w: WorkerProcess) -> Any:
        """A sandboxed worker sends segment 0 (its status words) right after ``Hello``."""
        msg = chan.recv(self.config.spawn_timeout)
        name = f"/{w.prefix}0"
        if not isinstance(msg, p.SegmentFd) or msg.name != name or not chan.fds or self.on_segment is None:
            raise RuntimeError(f"sandboxed worker {w.uid} did not send its first segment ({msg!r})")
        return self.on_segment(name, chan.fds.popleft())

    # -- watching -----------------------------------------------------------------------------
    def _on_exit(self, pid: int, status: int) -> None:
        w = self._by_pid.pop(pid, None)
        if w is not None:
            w.exit_status = status
            w.exited.set()
            w._mark_dead(signal_name(status))

    def _monitor(self) -> None:
        cfg = self.config
        while not self._closed.wait(0.02):
            for w in list(self.workers.values()):
                if w.dead.is_set():
                    self.bury(w)
                    continue
                if w.chan is None:
                    continue
                w.poll()
                if time.monotonic() - w.last_seen > cfg.heartbeat_timeout:
                    w.kill("heartbeat")
                rss = w.rss()  # always: an OOM-killed worker is reported with what it had
                if rss > w.peak_rss:
                    w.peak_rss = rss
                if cfg.memory_limit and rss > cfg.memory_limit:
                    w.kill("oom")

    def bury(self, w: WorkerProcess) -> None:
        """Clean up after a dead worker (once) and start its replacement."""
        with self._spawn_lock:
            if w.buried:
                return
            w.buried = True
        w.kill(w.kill_reason or "dead")  # a worker whose socket broke may still be running
        unlink_prefix(w.prefix)
        self._old_logs.append(w.log_path)
        while len(self._old_logs) > KEEP_LOGS:  # a soak of 10k runs left 2,600 of them
            with contextlib.suppress(OSError):
                os.unlink(self._old_logs.popleft())
        if w.chan is not None:
            w.chan.close()
        for listener in list(self.death_listeners):
            listener(w)
        if not self._closed.is_set() and self.workers.get(w.slot) is w:
            try:
                self.worker(w.slot)
            except Exception:  # retried by the next execute, which reports the error
                time.sleep(0.5)

    # -- shutdown -----------------------------------------------------------------------------
    def close(self, timeout: float = 2.0) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        with self._spawn_lock:
            workers = list(self.workers.values())
            for w in workers:
                w.send(p.Shutdown("pool closed"))
            deadline = time.monotonic() + timeout
            for w in workers:
                if not w.dead.wait(max(0.0, deadline - time.monotonic())):
                    w.kill("shutdown")
            for w in workers:
                w.exited.wait(max(0.0, deadline - time.monotonic()))
                if w.chan is not None:
                    w.chan.close()
            self.launcher.close()
            for launcher in self._env_launchers.values():
                launcher.close()
            self._listener.close()
            unlink_prefix(self.shm_prefix)
            shutil.rmtree(self.tmpdir, ignore_errors=True)
