"""The kernel's handle on one worker process: its connection, liveness and what it holds.

No reader thread: whoever waits for something from the worker (the batch loop for node
events, a fetch for its reply) reads the socket itself (``pump``), so the common path has no
thread hand-off; one waiter reads at a time, the others sleep until a frame arrives. The
supervisor's monitor thread reads for idle workers (heartbeats, EOF). Every wait also ends
when the worker is marked dead, so nothing hangs on a dead worker.

The worker's status words (the first bytes of its arena, mapped here at handshake) say which
task of which batch it is running, even when its last reports died with it.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import os
import signal
import threading
import time
from typing import Any

import numpy as np

from ..errors import ProtocolError
from . import procs
from . import protocol as p
from .shm import CONTROL_BYTES, Segment


def signal_name(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            return f"crashed with {signal.Signals(sig).name}"
        except ValueError:
            return f"crashed with signal {sig}"
    if os.WIFEXITED(status):
        return f"exited with code {os.WEXITSTATUS(status)}"
    return f"ended (status {status})"


_PF_EXITING = 0x4  # linux/sched.h: the task is in do_exit()


def process_running(pid: int) -> bool:
    """``pid`` exists and is not on its way out: not a zombie waiting to be reaped, nor dying
    (a process whose socket reached EOF because it is exiting is already ``PF_EXITING``)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rpartition(b")")[2].split()
        state, flags = fields[0], int(fields[6])
    except (OSError, IndexError, ValueError):
        return False
    return state not in (b"Z", b"X") and not flags & _PF_EXITING


def _crash_first(dump: str, limit: int) -> str:
    """faulthandler's dump reordered: the header, the crashing thread, then the others.

    faulthandler lists threads newest first, so with many threads the one that crashed
    (marked "Current thread") comes last and would be cut by any size limit.
    """
    blocks = dump.split("\n\n")
    current = [b for b in blocks[1:] if b.startswith("Current thread")]
    rest = [b for b in blocks[1:] if not b.startswith("Current thread")]
    out = "\n\n".join([blocks[0], *current, *rest])
    return out if len(out) <= limit else out[:limit] + "\n... (log cut)"


class WorkerProcess:
    """The kernel's view of one worker: its connection, liveness and what it holds."""

    def __init__(self, slot: int, uid: str, device: str, prefix: str, log_path: str) -> None:
        self.slot, self.uid, self.device, self.prefix, self.log_path = slot, uid, device, prefix, log_path
        self.pid = 0
        #: runs sandboxed (its segments are memfds sent to the kernel, not names in /dev/shm)
        self.sandboxed = False
        #: the node pack it runs (``""``: a core worker)
        self.pack = ""
        self.chan: p.Channel | None = None
        self.hello: p.Hello | None = None
        self.events: collections.deque[p.Message] = collections.deque()
        self.last_seen = time.monotonic()
        self.dead = threading.Event()
        self.exited = threading.Event()
        self.exit_status: int | None = None
        self.kill_reason: str | None = None
        self.defined: set[str] = set()
        self.peak_rss = 0
        #: the system's OOM-kill count when the current batch began (``procs.oom_kills``)
        self.oom_mark: int | None = None
        self.death = ""
        #: we signalled it while it still ran (a SIGKILL exit status is then ours)
        self.killed_alive = False
        #: the status words when the death was seen (``words()``), before anything else moved
        self.death_words: tuple[int, int, int, int] | None = None
        self._status: Any = None
        self.buried = False
        self._replies: dict[int, p.Message] = {}
        self._read_lock = threading.Lock()
        self._cv = threading.Condition()
        self._sleepers = 0
        self._pumpers: set[int] = set()
        self._req = itertools.count(1)
        self._env_sent: dict[str, str] = {}
        #: maps a sandboxed worker's segment from its descriptor: ``(name, fd) -> Segment``
        self.on_segment: Any = None

    def __repr__(self) -> str:
        return f"<worker {self.uid} pid={self.pid} {self.device}{' dead' if self.dead.is_set() else ''}>"

    @property
    def alive(self) -> bool:
        return not self.dead.is_set()

    def attach(self, chan: p.Channel, hello: p.Hello, first: Segment | None = None) -> None:
        """``first``: segment 0, already mapped from the descriptor a sandboxed worker sent."""
        self.chan, self.hello = chan, hello
        self.last_seen = time.monotonic()
        try:  # map the status words now: they stay readable after the worker dies
            seg = first or Segment(f"/{self.prefix}0", 0, create=False, private=True)
            self._status = seg.view(0, CONTROL_BYTES).view(np.int64)
        except OSError:
            self._status = None

    @property
    def has_status(self) -> bool:
        """Whether the status words are mapped (else ``running()`` knows nothing)."""
        return self._status is not None

    def running(self) -> tuple[int, int]:
        """(batch id, index of the task it runs) from the worker's shared status words."""
        if self._status is None:
            return -1, -1
        return int(self._status[0]), int(self._status[1])

    def words(self) -> tuple[int, int, int, int]:
        """(batch, task index, fault, culprit): ``protocol.ST_*``; all -1 when not mapped."""
        st = self._status
        if st is None:
            return -1, -1, -1, -1
        return int(st[p.ST_BATCH]), int(st[p.ST_INDEX]), int(st[p.ST_FAULT]), int(st[p.ST_CULPRIT])

    def mark_batch(self) -> None:
        """A batch starts: note the OOM-kill count, so a later SIGKILL can be told apart."""
        self.oom_mark = procs.oom_kills()

    @property
    def oom_killed(self) -> bool:
        """Killed by the system's OOM killer (a SIGKILL we did not send while the count moved)."""
        if self.kill_reason not in (None, "dead") or self.exit_status is None:
            return False
        if not (os.WIFSIGNALED(self.exit_status) and os.WTERMSIG(self.exit_status) == signal.SIGKILL):
            return False
        now = procs.oom_kills()
        return self.oom_mark is not None and now is not None and now > self.oom_mark

    def sync_env(self) -> bool:
        """Tell the worker the kernel's ``FORWARDED_ENV`` values if they changed since last time."""
        now = {name: os.environ.get(name, "") for name in p.FORWARDED_ENV}
        if now == self._env_sent:
            return True
        self._env_sent = now
        return self.send(p.SetEnv(now))

    def send(self, msg: p.Message, default: Any = None) -> bool:
        if self.chan is None or self.dead.is_set():
            return False
        try:
            self.chan.send(msg, default)
            return True
        except OSError:
            self._mark_dead("connection lost while sending")
            return False

    # -- reading: whoever waits reads (no reader thread, no hand-off on the fast path) -------
    def pump(self, until: Any, timeout: float | None) -> bool:
        """Read and dispatch frames until ``until()`` holds, the worker dies, or ``timeout``.

        One waiting thread at a time reads the socket (``_read_lock``); the others sleep on
        ``_cv`` and are woken by every dispatched frame."""
        now = time.monotonic
        deadline = None if timeout is None else now() + timeout
        me = threading.get_ident()
        pumpers, dead, lock = self._pumpers, self.dead, self._read_lock
        pumpers.add(me)  # keeps the monitor's poll() off the socket meanwhile (set ops are atomic)
        try:
            while not until():
                if dead.is_set():
                    return False
                wait = 0.05
                if deadline is not None:
                    wait = deadline - now()
                    if wait <= 0:
                        return False
                    wait = wait if wait < 0.05 else 0.05
                if lock.acquire(False):
                    try:
                        self._read_once(wait)
                    finally:
                        lock.release()
                else:
                    with self._cv:
                        self._sleepers += 1
                        self._cv.wait(min(wait, 0.005))
                        self._sleepers -= 1
            return True
        finally:
            pumpers.discard(me)

    @contextlib.contextmanager
    def reading(self) -> Any:
        """Keep the monitor's ``poll()`` off this worker's socket for a while (a batch being
        followed): between two waits of the batch the monitor would otherwise parse the
        coalesced frames itself and hold the GIL the batch loop needs (~5 ms a switch)."""
        token = -threading.get_ident() - 1  # distinct from pump()'s own entry
        self._pumpers.add(token)
        try:
            yield
        finally:
            self._pumpers.discard(token)

    def poll(self) -> None:
        """Consume whatever arrived (heartbeats, EOF) if nobody else is reading."""
        if self._pumpers or self.chan is None or self.dead.is_set():
            return
        if self._read_lock.acquire(blocking=False):
            try:
                self._read_once(0.0)
                while self.chan.has_frame():
                    self._read_once(0.0)
            finally:
                self._read_lock.release()

    def _read_once(self, timeout: float) -> None:
        assert self.chan is not None
        try:
            msg = self.chan.recv(timeout)
        except ProtocolError as exc:
            self.death_words = self.words()  # before the kill: what ran when the garbage came
            self.kill("protocol")
            self._mark_dead(f"protocol error: {exc}")
            return
        if msg is None:
            if self.chan.closed:
                self._mark_dead("connection closed")
            return
        self.last_seen = time.monotonic()
        kind = type(msg)
        if kind is p.SegmentFd:  # a sandboxed worker's new segment: map it before its frames
            self._adopt(msg)  # type: ignore[arg-type]
        elif kind is p.Pong:
            self._replies[msg.seq] = msg  # type: ignore[attr-defined]
        elif kind is p.Fetched:
            self._replies[msg.req] = msg  # type: ignore[attr-defined]
        elif kind is not p.Heartbeat:
            self.events.append(msg)
        if self._sleepers:  # only threads parked on _cv need waking
            with self._cv:
                self._cv.notify_all()

    def _adopt(self, msg: p.SegmentFd) -> None:
        chan = self.chan
        assert chan is not None
        if not chan.fds or not msg.name.startswith(f"/{self.prefix}") or self.on_segment is None:
            self.kill("protocol")
            self._mark_dead(f"protocol error: segment {msg.name[:60]!r} came without its descriptor "
                            "or is not this worker's")
            return
        self.on_segment(msg.name, chan.fds.popleft())

    def _mark_dead(self, why: str) -> None:
        if not self.dead.is_set():
            if self.death_words is None:
                self.death_words = self.words()
            self.death = why
            self.dead.set()
            with self._cv:
                self._cv.notify_all()

    def next_event(self, timeout: float | None) -> p.Message | None:
        """The next node event, or ``None`` when ``timeout`` passes or the worker is dead."""
        events = self.events
        if not events:  # fast path: a burst of coalesced frames is already parsed
            self.pump(events.__len__, timeout)
        return events.popleft() if events else None

    def request(self, make: Any, timeout: float = 60.0) -> p.Message:
        """Send ``make(req_id)`` and wait for the reply with that id."""
        req = next(self._req)
        if not self.send(make(req)):
            raise ConnectionError(f"worker {self.uid} is not running")
        replies = self._replies
        self.pump(lambda: req in replies, timeout)
        reply = replies.pop(req, None)
        if reply is None:
            raise ConnectionError(f"worker {self.uid} {'died' if self.dead.is_set() else 'did not answer'} "
                                  "during the request")
        return reply

    def kill(self, reason: str, sig: int = signal.SIGKILL) -> None:
        """Stop the process now; ``reason`` ("timeout", "oom", "cancel", ...) is what we report."""
        self.kill_reason = self.kill_reason or reason
        if self.pid:
            if not self.exited.is_set() and process_running(self.pid):
                self.killed_alive = True  # so its SIGKILL status is ours, not the system's
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def rss(self) -> int:
        try:
            with open(f"/proc/{self.pid}/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return 0

    def describe_death(self, wait: float = 0.5) -> str:
        """"crashed with SIGSEGV", "exited with code 3", ... (waits briefly for the status;
        longer when the process is gone or going: then its status is on its way, and a busy
        machine may be slow to deliver it)."""
        if not self.exited.wait(wait) and wait and self.pid and not process_running(self.pid):
            self.exited.wait(10.0)
        if self.kill_reason == "oom":
            return f"was killed for using {self.peak_rss / 2**20:.0f} MiB, over its memory limit"
        if self.kill_reason == "heartbeat":
            return "stopped answering (no heartbeat) and was killed"
        if self.kill_reason == "protocol":
            return "sent a malformed message and was killed"
        if self.oom_killed:
            return (f"was killed by the system's out-of-memory killer at {self.peak_rss / 2**20:.0f} MiB "
                    f"resident (of {procs.physical_memory() / 2**20:.0f} MiB on this machine)")
        if self.exit_status is not None:
            return signal_name(self.exit_status)
        return "lost its connection"

    def log_tail(self, nbytes: int = 3000, *, fatal_window: int = 65536, fatal_max: int = 12000) -> str:
        """The end of the worker's log: what it printed last, for an error message.

        When the worker died of a fatal signal, faulthandler's dump (every thread's stack)
        can be longer than ``nbytes``; then the tail starts at its "Fatal Python error"
        header, so the signal and the crashing thread's stack (listed first) are never cut.
        """
        try:
            with open(self.log_path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                f.seek(max(0, size - max(nbytes, fatal_window)))
                data = f.read()
        except OSError:
            return ""
        at = data.rfind(b"Fatal Python error")
        if at >= 0:
            return _crash_first(data[at:].decode("utf-8", "replace"), max(nbytes, fatal_max))
        return data[-nbytes:].decode("utf-8", "replace")
