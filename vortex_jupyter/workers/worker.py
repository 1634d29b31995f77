"""The worker process: ``python -m vortex_jupyter.workers`` (or forked by the fork server).

State and threads:
- main thread: runs batches (``runner.Runner``), one at a time, from ``self.queue``;
- control thread: reads the socket; answers ``Ping``/``Fetch``/``Release`` at once (even
  while a node runs), unpickles ``DefineNodes``, queues ``Execute``, forwards ``Cancel``;
- heartbeat thread: a ``Heartbeat`` every ``heartbeat`` seconds.

The socket is the only control channel. File descriptors 1 and 2 point at a log file (node
code may print 50 MB without blocking anything); the supervisor reads its tail when a node
crashes the process, and ``faulthandler`` writes the Python stack of a fatal signal there.
If the kernel goes away (EOF) or talks garbage (``ProtocolError``) the worker unlinks its
arena and exits, killing its process group: neither it nor what its nodes started outlives
its kernel (``procs.py``).

What a node may break, checked after every node before anything is sent (``after_node``):
- the socket (closed, ``dup2``'d over): the status words name the node (``FAULT_CHANNEL_BROKEN``)
  and the worker exits; the kernel blames exactly that node;
- fds 1/2 (closed or redirected): pointed at the log again;
- the process itself: a node that ``fork()``ed and returned in the child finds the child's copy
  of the socket closed (at-fork hook) and the child exits here, silently, so only the real
  worker ever reports.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import queue
import signal
import socket
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any

import msgpack

from ..errors import ProtocolError
from . import cuda_ipc, procs
from . import protocol as p
from .preload import load
from .runner import Runner
from .shm import DEFAULT_SEGMENT, Arena, Attachments, Segment, set_worker_arena
from .store import ObjectStore
from .tensors import TensorHandle, register_pinned, to_torch, wrap

LOG_TRUNCATE = 16 * 1024 * 1024


@dataclass
class WorkerConfig:
    uid: str
    connect: str
    prefix: str
    device: str = "cpu"
    arena_bytes: int = DEFAULT_SEGMENT
    heartbeat: float = 0.5
    log_path: str = ""
    threads: int = 0
    #: Imported in a background thread after the handshake (``preload.py``).
    late_preload: list[str] = field(default_factory=list)
    #: ``"strict"``: memfd segments handed to the kernel only, a non-dumpable process without
    #: capabilities (``procs.sandbox_self``); ``""``: named segments (fast, one user).
    sandbox: str = ""
    #: A node pack's worker: the pack (canonical name), its import folders (first on
    #: ``sys.path``) and its ``[tool.vortex.permissions]`` (``sandbox.Policy`` fields).
    pack: str = ""
    paths: list[str] = field(default_factory=list)
    permissions: dict[str, Any] = field(default_factory=dict)
    #: how many general workers share the host's RAM and this worker's GPU: the memory
    #: arbiter's budgets are divided by them (``arbiter.SHARE_ENV``)
    ram_share: int = 1
    vram_share: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WorkerConfig:
        return cls(**d)


def _apply_env(values: dict[Any, Any]) -> None:
    """Take the kernel's settings (``protocol.FORWARDED_ENV`` only; ``""`` unsets one)."""
    for name, value in values.items():
        if name not in p.FORWARDED_ENV or not isinstance(value, str):
            raise ProtocolError(f"SetEnv may not set {name!r}; only {', '.join(p.FORWARDED_ENV)}")
    for name, value in values.items():
        if value:
            os.environ[name] = value
        else:
            os.environ.pop(name, None)


def _redirect_output(log_path: str) -> None:
    """Point fds 1/2 at the log (O_APPEND: truncating it later is safe)."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(log_path or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    faulthandler.enable(file=sys.stderr, all_threads=True)


def _setup_device(cfg: WorkerConfig) -> list[str]:
    caps = ["numpy"]
    if cfg.device.startswith("cuda"):
        index = cfg.device.partition(":")[2] or "0"
        os.environ["CUDA_VISIBLE_DEVICES"] = index  # before CUDA initialises in this process
    if "torch" in sys.modules or cfg.device.startswith("cuda"):
        import torch

        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        caps.append("torch")
        if cfg.device.startswith("cuda") and torch.cuda.is_available():
            caps.append("cuda")
    return caps


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


class Worker:
    def __init__(self, cfg: WorkerConfig, chan: p.Channel, arena: Arena) -> None:
        self.cfg, self.chan, self.arena = cfg, chan, arena
        self.store = ObjectStore(arena)
        self.attachments = Attachments()
        self.queue: queue.Queue[tuple[int, queue.SimpleQueue[Any]] | None] = queue.Queue()
        #: batches still receiving chunks (control thread only)
        self.feeds: dict[int, queue.SimpleQueue[Any]] = {}
        self.outbox = Outbox(chan, self._die)
        self.runner = Runner(self.store, self.outbox.put, self.resolve_shm, arena.control, self.after_node)
        self._stop = threading.Event()
        self.pid = os.getpid()
        self.sock_fd = chan.fileno()
        self._ids = {fd: _identity(fd) for fd in (self.sock_fd, 1, 2)}
        os.register_at_fork(after_in_child=self._forked)

    def _forked(self) -> None:
        """In a child a node forked: it must never talk to the kernel as this worker."""
        with contextlib.suppress(OSError):
            os.close(self.sock_fd)

    def after_node(self) -> None:
        """Runs after every node (main thread): is this process still a usable worker?"""
        if os.getpid() != self.pid:  # a fork's child came back from the node: not the worker
            os._exit(0)
        ids = self._ids
        if _identity(self.sock_fd) != ids[self.sock_fd]:
            status = self.arena.control
            status[p.ST_CULPRIT] = status[p.ST_INDEX]
            status[p.ST_FAULT] = p.FAULT_CHANNEL_BROKEN
            self._die(f"node at index {int(status[p.ST_INDEX])} of batch {int(status[p.ST_BATCH])} closed or "
                      "replaced the connection to the kernel")
        if _identity(1) != ids[1] or _identity(2) != ids[2]:
            _redirect_output(self.cfg.log_path)
            self._ids[1], self._ids[2] = _identity(1), _identity(2)

    def send(self, msg: p.Message) -> None:
        try:
            self.chan.send(msg)
        except OSError:
            self._die("kernel connection lost")

    def serve(self) -> int:
        threading.Thread(target=self._control, name="vx-control", daemon=True).start()
        threading.Thread(target=self._heartbeat, name="vx-heartbeat", daemon=True).start()
        threading.Thread(target=self.outbox.run, name="vx-outbox", daemon=True).start()
        late = list(self.cfg.late_preload)
        while True:
            item = self._next_batch(late)
            if item is None:
                break
            batch, feed = item
            self._trim_log()
            self.outbox.active.set()
            try:
                self.runner.run(batch, feed)
            finally:
                self.outbox.active.clear()
            self.outbox.put(p.BatchDone(batch))
            self.outbox.flush()
        self._stop.set()
        self.arena.close()
        return 0

    def _next_batch(self, late: list[str]) -> Any:
        """The next queued batch; while none is queued, import the next ``late_preload`` entry.

        On this (main) thread, one entry at a time, never beside a running node: diffusers'
        lazy modules are not thread-safe (a node importing ``AutoencoderKL`` while a background
        thread did got an ImportError). A batch that arrives meanwhile waits for one entry."""
        while late:
            try:
                return self.queue.get_nowait()
            except queue.Empty:
                load(late.pop(0))
        return self.queue.get()

    def _control(self) -> None:
        recv, send, ping, pong = self.chan.recv, self.chan.send, p.Ping, p.Pong
        try:
            while True:
                msg = recv(None)
                if type(msg) is ping:  # the latency-critical message: no dispatch chain
                    try:
                        send(pong(msg.seq))  # type: ignore[union-attr]
                    except OSError:
                        self._die("kernel connection lost")
                elif msg is None:
                    self._die("kernel closed the connection")
                else:
                    self._dispatch(msg)
        except ProtocolError as exc:
            self._die(f"protocol error from the kernel: {exc}")
        except BaseException:
            self._die("control thread failed:\n" + traceback.format_exc())

    def _dispatch(self, msg: p.Message) -> None:
        if isinstance(msg, p.Ping):
            self.send(p.Pong(msg.seq))
        elif isinstance(msg, p.Fetch):
            self._fetch(msg)
        elif isinstance(msg, p.Release):
            self.runner.release([k for k in msg.keys if isinstance(k, str)])
        elif isinstance(msg, p.Cancel):
            self.runner.cancel(msg.batch, msg.node, msg.reason)
        elif isinstance(msg, p.DefineNodes):
            # a pack's worker keeps its environment's own sys.path: the kernel's would put the
            # core's site-packages before the pack's (its nodes are PackCalls: nothing to find there)
            self.runner.define(msg.specs, [] if self.cfg.pack else msg.path)
        elif isinstance(msg, p.Execute):
            self.runner.pin(msg.tasks)
            if msg.trace:
                self.runner.traces[msg.batch] = msg.trace
            feed = self.feeds.get(msg.batch)
            if feed is None:  # first chunk: the main thread starts this batch
                feed = self.feeds[msg.batch] = queue.SimpleQueue()
                self.queue.put((msg.batch, feed))
            feed.put((msg.tasks, msg.last))
            if msg.last:
                del self.feeds[msg.batch]
        elif isinstance(msg, p.SetEnv):
            _apply_env(msg.values)
        elif isinstance(msg, p.Shutdown):
            self.queue.put(None)
        else:
            raise ProtocolError(f"a worker does not accept {msg.tag!r} messages")

    def _fetch(self, msg: p.Fetch) -> None:
        try:
            value, error = self.store.export(msg.key, msg.index, msg.cuda), None
        except Exception as exc:
            value, error = None, f"{type(exc).__name__}: {exc}"
        self.send(p.Fetched(msg.req, value, error))

    def resolve_shm(self, tree: Any) -> Any:
        """Turn handles sent by the kernel (outputs of other workers) into zero-copy views."""
        if isinstance(tree, msgpack.ExtType) and tree.code == p.EXT_TENSOR:
            handle = TensorHandle.from_ext(tree.data)
            view = wrap(handle, self.attachments)
            return to_torch(view, handle) if handle.kind == "torch" else view
        if isinstance(tree, msgpack.ExtType) and tree.code == p.EXT_CUDA:
            return cuda_ipc.open_handle(tree.data)
        if isinstance(tree, list):
            return [self.resolve_shm(v) for v in tree]
        if isinstance(tree, dict):
            return {k: self.resolve_shm(v) for k, v in tree.items()}
        if isinstance(tree, msgpack.ExtType):
            raise ValueError("an object that lives in another worker cannot be passed here")
        return tree

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.cfg.heartbeat):
            self.send(p.Heartbeat(time.time()))

    def _trim_log(self) -> None:
        try:
            if os.fstat(1).st_size > LOG_TRUNCATE:
                sys.stdout.flush()
                os.ftruncate(1, 0)
        except OSError:
            pass

    def _die(self, why: str) -> None:
        status = self.arena.control
        if status[p.ST_FAULT] != p.FAULT_CHANNEL_BROKEN:
            status[p.ST_FAULT] = p.FAULT_GAVE_UP
        with contextlib.suppress(Exception):
            print(f"vortex worker {self.cfg.uid} exiting: {why}", file=sys.stderr, flush=True)
        self.arena.close()
        procs.kill_marked(self.cfg.prefix)  # what our nodes started, wherever it went ...
        if os.getpgrp() == os.getpid():  # ... and our group, ourselves included
            with contextlib.suppress(OSError):  # (a sandboxed worker may signal only itself)
                os.killpg(os.getpid(), signal.SIGKILL)
        os._exit(0)


def _identity(fd: int) -> tuple[int, int] | None:
    """(device, inode) of what ``fd`` refers to now (None: closed)."""
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    return st.st_dev, st.st_ino


class Outbox:
    """Node events, coalesced: a batch of 10k tiny nodes costs a few hundred writes, not 10k.

    Frames wait at most ``delay`` seconds: the main thread flushes when the oldest is that
    old, and while a batch runs a flusher thread does it too (for a node that runs long right
    after one that finished). Losing unflushed frames in a crash costs nothing: the kernel
    reads which task was running from the arena's status words, not from these messages."""

    def __init__(self, chan: p.Channel, die: Any, delay: float = 0.002, limit: int = 256 * 1024) -> None:
        self.chan, self.die, self.delay, self.limit = chan, die, delay, limit
        self.frames: list[bytes] = []
        self.size = 0
        self.first = 0.0
        self.lock = threading.Lock()
        self.active = threading.Event()

    def put(self, msg: p.Message) -> None:
        frame = p.encode(msg)
        with self.lock:
            now = time.monotonic()
            if not self.frames:
                self.first = now
            self.frames.append(frame)
            self.size += len(frame)
            if self.size >= self.limit or now - self.first >= self.delay:
                self._flush()

    def flush(self) -> None:
        with self.lock:
            self._flush()

    def _flush(self) -> None:
        if self.frames:
            data, self.frames, self.size = b"".join(self.frames), [], 0
            try:
                self.chan.send_raw(data)
            except OSError:
                self.die("kernel connection lost")

    def run(self) -> None:
        while True:
            self.active.wait()
            time.sleep(self.delay)
            self.flush()


class _Segments:
    """What happens to each new arena segment: pinned for CUDA, and in a sandbox its memfd is
    sent to the kernel (once the handshake is done: segment 0 exists before it) and closed."""

    def __init__(self, cfg: WorkerConfig) -> None:
        self.cfg = cfg
        self.chan: p.Channel | None = None
        self.waiting: list[Segment] = []

    def __call__(self, seg: Segment) -> None:
        if self.cfg.device.startswith("cuda"):
            register_pinned(seg)
        if seg.fd >= 0:
            self.waiting.append(seg)
            self.flush()

    def ready(self, chan: p.Channel) -> None:
        self.chan = chan
        self.flush()

    def flush(self) -> None:
        if self.chan is None:
            return
        while self.waiting:  # before any frame that names it (the outbox sends later)
            seg = self.waiting.pop(0)
            self.chan.send_fds(p.SegmentFd(seg.name), [seg.fd])
            seg.close_fd()


def main(cfg: WorkerConfig) -> int:
    """Run a worker until the kernel says ``Shutdown`` or goes away."""
    procs.lead_own_group()  # (the fork server's child did already; a spawned one leads too)
    procs.worst_oom_score()  # the OOM killer takes a worker, not the kernel
    os.environ[procs.MARKER] = cfg.prefix  # inherited by what nodes start; unique (kernel pid, pool, uid)
    os.environ["VORTEX_RAM_SHARE"], os.environ["VORTEX_VRAM_SHARE"] = str(cfg.ram_share), str(cfg.vram_share)
    if cfg.pack:  # its nodes import the pack (``packages.runtime.PackCall``), and only here
        sys.path[:0] = [path for path in cfg.paths if path not in sys.path]
        os.environ["VORTEX_WORKER_PACK"] = cfg.pack
    strict = cfg.sandbox == "strict"
    _redirect_output(cfg.log_path)
    caps = _setup_device(cfg)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(cfg.connect)
    if strict:  # after connecting: from here on, nothing of this process opens to its peers
        procs.sandbox_self()
    chan = p.Channel(sock, allow_pickle=True)
    segments = _Segments(cfg)
    arena = Arena(cfg.prefix, cfg.arena_bytes, on_segment=segments, memfd=strict)
    set_worker_arena(arena)
    worker = Worker(cfg, chan, arena)
    if strict:  # after the heavy imports, before any thread or node: Landlock, seccomp, audit hook
        from . import sandbox

        policy = sandbox.Policy(**cfg.permissions)
        if cfg.pack:
            policy.source = f"pack {cfg.pack!r}, with its [tool.vortex.permissions]"
            policy.off = "VORTEX_PACK_SANDBOX=off"
        sandbox.apply(policy, cfg.log_path)
    memory = {"rss": _rss(), "arena": arena.segment_bytes,
              "total": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")}
    chan.send(p.Hello(p.VERSION, cfg.uid, os.getpid(), cfg.device, caps + (["sandbox"] if strict else []), memory))
    segments.ready(chan)
    return worker.serve()
