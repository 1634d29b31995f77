"""How worker processes are started: a fork server (fast) or a fresh interpreter (fallback).

A cold worker spends almost all of its start-up importing numpy/torch. The fork server is a
single-threaded process (``python -m vortex_jupyter.workers forkserver``) that imports them
once and then ``fork()``s a worker per ``Spawn`` request, so a respawn costs a fork plus a
handshake. Forking is safe because the server never initialises CUDA or torch's thread
pools (the child sets its thread count itself), and its only other thread (the background
import of ``late_preload``, see ``preload.py``) holds ``fork_lock`` during each import, which
every ``fork()`` takes too.

The fork server is the workers' parent: it reaps them and reports each raw exit status
(``Exited``), which is how the kernel can say "worker crashed with SIGSEGV". It runs in its
own process group (terminal Ctrl-C does not reach it) but in the kernel's session: Linux
puts each session in its own scheduler autogroup, and a wake-up across groups cost every
kernel <-> worker round trip ~3 us (measured: 26.4 -> 23.7 us). When the kernel's end of its
socket closes, it SIGKILLs every worker and unlinks their shared memory: no orphans, no
leaks, even if the kernel itself is killed. Each worker leads its own process group and the
server is a child subreaper, so what nodes started dies with their worker too (``procs.py``).
"""

from __future__ import annotations

import contextlib
import gc
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable, Sequence

from . import procs
from . import protocol as p
from .preload import load_all
from .shm import unlink_prefix

ExitCallback = Callable[[int, int], None]


def serve(fd: int, preload: list[str], shm_prefix: str, late: Sequence[str] = ()) -> int:
    """The fork server's main loop (runs in its own process)."""
    load_all(preload)
    from . import worker  # noqa: F401  (preload our own modules too)

    # Preloaded modules (torch: ~10^5 objects) move to the permanent generation: the workers'
    # garbage collections skip them, and their pages stay shared copy-on-write after fork.
    gc.freeze()

    chan = p.Channel(socket.socket(fileno=fd), allow_pickle=False)
    procs.become_subreaper()  # what a node's process leaves behind comes back here, not to init
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    children: dict[int, str] = {}  # worker pid -> its marker (its shm prefix: unique)
    fork_lock = threading.Lock()
    try:
        while True:
            ready, _, _ = select.select([chan.fileno(), wake_r], [], [], None if children or not late else 1.0)
            if wake_r in ready:
                os.read(wake_r, 4096)
                _reap(chan, children)
            if chan.fileno() in ready and not _serve_requests(chan, children, (chan.sock, wake_r, wake_w),
                                                               fork_lock):
                return 0
            if late:  # after the first fork (or a second idle): the first worker must not wait for these
                threading.Thread(target=_late_imports, args=(late, fork_lock), name="vx-preload",
                                 daemon=True).start()
                late = ()
    finally:
        for pid in children:
            _kill(pid)
        for _ in range(3):  # processes of killed workers are adopted here as their parents die
            if not procs.kill_adopted(set()):
                break
            with contextlib.suppress(ChildProcessError):
                while os.waitpid(-1, os.WNOHANG)[0]:
                    pass
        unlink_prefix(shm_prefix)


def _late_imports(late: Sequence[str], fork_lock: threading.Lock) -> None:
    # Idle priority (Linux nices threads one by one): these imports are for later respawns and
    # must not take CPU from the first worker, which is importing the same modules right now.
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    load_all(late, fork_lock)
    with fork_lock:
        gc.freeze()  # as for the eager preload: children's collections skip these objects


def _serve_requests(chan: p.Channel, children: dict[int, str], close: tuple, fork_lock: threading.Lock) -> bool:
    while True:
        msg = chan.recv(None)
        if msg is None:
            return False
        if isinstance(msg, p.Spawn):
            parent = os.getpid()
            with fork_lock:  # never fork in the middle of a background import
                pid = os.fork()
            if pid == 0:
                _child(msg.config, close, parent)
            children[pid] = str(msg.config.get("prefix", msg.uid))  # unique across pools and kernels
            chan.send(p.Spawned(msg.uid, pid))
        if not chan.has_frame():
            return True


def _reap(chan: p.Channel, children: dict[int, str]) -> None:
    """Reap every exited child: a worker (report it, kill what it left in its group and what
    was adopted from it) or an adopted orphan (just reaped)."""
    lost_worker = False
    while True:
        try:  # look first, reap after: the zombie keeps its pid (= its group id) reserved
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            break
        if info is None or info.si_pid == 0:
            break
        pid = info.si_pid
        if pid in children:
            procs.kill_group(pid)
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            continue
        uid = children.pop(pid, None)
        if uid is not None:
            lost_worker = True
            procs.kill_marked(uid)
            chan.send(p.Exited(pid, status))
    if lost_worker:  # daemons a dead worker's nodes started (setsid, double fork) were adopted here
        procs.kill_adopted(set(children), set(children.values()))


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        procs.kill_group(pid)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def _child(config: dict, close: tuple, parent: int) -> None:
    code = 70
    try:
        procs.lead_own_group()
        procs.die_with_parent(parent)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for obj in close:
            obj.close() if hasattr(obj, "close") else os.close(obj)
        from .worker import WorkerConfig, main

        code = main(WorkerConfig.from_dict(config))
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


class ForkServer:
    """Kernel side of the fork server: ``spawn(config) -> pid``; exits go to ``on_exit``.
    ``python``: the interpreter to run it with (a node pack's environment; default: ours)."""

    def __init__(self, preload: list[str], shm_prefix: str, log_path: str, on_exit: ExitCallback,
                 late: Sequence[str] = (), python: str = "") -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        cmd = [python or sys.executable, "-m", "vortex_jupyter.workers", "forkserver", "--fd", str(theirs.fileno()),
               "--shm-prefix", shm_prefix, "--preload", ",".join(preload), "--late", ",".join(late)]
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, process_group=0)
        theirs.close()
        self.chan = p.Channel(ours, allow_pickle=False)
        self.on_exit = on_exit
        self._pids: dict[str, int] = {}
        self._spawned = threading.Condition()
        threading.Thread(target=self._read, name="vx-forkserver", daemon=True).start()

    def _read(self) -> None:
        try:
            while (msg := self.chan.recv(None)) is not None:
                if isinstance(msg, p.Spawned):
                    with self._spawned:
                        self._pids[msg.uid] = msg.pid
                        self._spawned.notify_all()
                elif isinstance(msg, p.Exited):
                    self.on_exit(msg.pid, msg.status)
        except Exception:  # the server died or lied: spawns fail and the pool falls back
            pass
        with self._spawned:
            self._pids["!dead"] = -1
            self._spawned.notify_all()

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def spawn(self, uid: str, config: dict, timeout: float = 60.0) -> int:
        self.chan.send(p.Spawn(uid, config))
        with self._spawned:
            if not self._spawned.wait_for(lambda: uid in self._pids or "!dead" in self._pids, timeout):
                raise TimeoutError("the fork server did not answer")
            if uid not in self._pids:
                raise RuntimeError("the fork server died")
            return self._pids.pop(uid)

    def close(self) -> None:
        self.chan.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Spawner:
    """Fallback: one fresh interpreter per worker (slow start, no fork)."""

    def __init__(self, log_path: str, on_exit: ExitCallback, python: str = "") -> None:
        self.log_path, self.on_exit, self.python = log_path, on_exit, python or sys.executable
        self.alive = True

    def spawn(self, uid: str, config: dict, timeout: float = 60.0) -> int:
        import json

        cmd = [self.python, "-m", "vortex_jupyter.workers", "worker", "--config", json.dumps(config)]
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, process_group=0)
        threading.Thread(target=self._wait, args=(proc, str(config.get("prefix", uid))), daemon=True).start()
        return proc.pid

    def _wait(self, proc: subprocess.Popen, marker: str) -> None:
        with contextlib.suppress(ChildProcessError):  # the group dies with its leader (see procs)
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
            procs.kill_group(proc.pid)
        procs.kill_marked(marker)
        self.on_exit(proc.pid, _status(proc.wait()))

    def close(self) -> None:
        pass


def _status(returncode: int) -> int:
    """Popen's returncode back to a waitpid-style status."""
    return (-returncode) & 0x7F if returncode < 0 else (returncode & 0xFF) << 8
