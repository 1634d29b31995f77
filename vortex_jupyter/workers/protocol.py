"""The kernel <-> worker wire protocol, written once, as types.

Transport: a Unix domain stream socket carrying frames of a 4-byte big-endian length
followed by one msgpack array ``[tag, field1, field2, ...]``. Every message is a frozen
dataclass (``messages.py``, re-exported here); ``decode`` checks the tag, the arity and the type of every field, so a
malformed frame becomes a ``ProtocolError`` (VE-600) at the edge instead of an
``AttributeError`` deep inside the supervisor.

Trust: the kernel never unpickles anything a worker sends. Values travel as msgpack with two
extension types the kernel understands (``EXT_TENSOR``: a handle into a worker's shared
memory arena; ``EXT_OPAQUE``: a description of an object that stays in the worker). Only the
kernel -> worker direction may carry ``EXT_PICKLE`` (cloudpickle of node specs and of param
values msgpack cannot express); ``Channel(allow_pickle=False)`` on the kernel side rejects it.

Liveness: a frame whose header arrived must complete within ``frame_timeout`` seconds, so a
peer that stops mid-frame is a protocol error, not a hang; frames over ``max_frame`` bytes are
refused before any payload is read.
"""

from __future__ import annotations

import collections
import contextlib
import os
import socket
import struct
import threading
import time
from typing import Any

from .messages import (  # noqa: F401  (the protocol's public names live here too)
    _HEADER,
    EXT_CUDA,
    EXT_OPAQUE,
    EXT_PICKLE,
    EXT_TENSOR,
    FAULT_CHANNEL_BROKEN,
    FAULT_GAVE_UP,
    FORWARDED_ENV,
    MAX_FRAME,
    MESSAGES,
    ST_BATCH,
    ST_CULPRIT,
    ST_FAULT,
    ST_INDEX,
    VERSION,
    BatchDone,
    Cancel,
    DefineNodes,
    Execute,
    Exited,
    Failed,
    Fetch,
    Fetched,
    Finished,
    Heartbeat,
    Hello,
    Message,
    Ping,
    Pong,
    Preview,
    Progress,
    ProtocolError,
    Release,
    SegmentFd,
    SetEnv,
    Shutdown,
    Spawn,
    Spawned,
    decode,
    encode,
)


class Channel:
    """One end of a framed socket. ``send`` is thread-safe; ``recv`` is for one reader thread.

    Reads go through a buffer so a burst of small frames costs one syscall.
    """

    def __init__(self, sock: socket.socket, *, allow_pickle: bool, max_frame: int = MAX_FRAME,
                 frame_timeout: float = 10.0, fds: bool = False) -> None:
        self.sock = sock
        #: receive file descriptors sent with frames (``send_fds``) into ``self.fds``, in order
        self.pass_fds = fds
        self.fds: collections.deque[int] = collections.deque()
        self.allow_pickle = allow_pickle
        self.max_frame = max_frame
        self.frame_timeout = frame_timeout
        self._send_lock = threading.Lock()
        self._buf = bytearray()
        self._closed = False
        sock.settimeout(None)
        self._chunk = bytearray(1 << 20)
        self._chunk_view = memoryview(self._chunk)
        self._ticks = -1  # SO_RCVTIMEO in 10 ms units; -1: not set yet

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, msg: Message, default: Any = None) -> None:
        self.send_raw(encode(msg, default))

    def send_raw(self, frame: bytes) -> None:
        with self._send_lock:
            self.sock.sendall(frame)

    def send_fds(self, msg: Message, fds: list[int]) -> None:
        """Send ``msg`` with ``fds`` attached (the peer's channel must have ``fds=True``)."""
        with self._send_lock:
            socket.send_fds(self.sock, [encode(msg)], fds)

    def has_frame(self) -> bool:
        """A whole frame is already buffered (``recv`` will not block)."""
        if len(self._buf) < 4:
            return False
        return len(self._buf) >= 4 + _HEADER.unpack_from(self._buf)[0]

    @property
    def closed(self) -> bool:
        """The peer closed the connection (and every buffered frame was read)."""
        return self._closed and not self.has_frame()

    def recv(self, timeout: float | None = None) -> Message | None:
        """The next message; ``None`` on a clean EOF between frames (then ``closed`` is true) or
        when ``timeout`` passes with no frame started. EOF or a stall inside a frame, an
        oversized or undecodable frame raise ``ProtocolError``."""
        buf = self._buf
        if len(buf) < 4:
            if not self._fill_to(4, timeout) and not buf:
                return None
            if len(buf) < 4 and not self._fill_to(4, self.frame_timeout):
                raise self._truncated(4)
        (length,) = _HEADER.unpack_from(buf)
        if length > self.max_frame:
            raise ProtocolError(f"frame of {length} bytes exceeds the {self.max_frame}-byte limit",
                                hint="the peer is corrupt or not a vortex worker")
        end = 4 + length
        if len(buf) < end and not self._fill_to(end, self.frame_timeout):
            raise self._truncated(end)
        try:  # decode straight from the buffer (no copy); the view must go before the del
            with memoryview(buf)[4:end] as body:
                return decode(body, self.allow_pickle)
        finally:
            del buf[:end]

    def _truncated(self, n: int) -> ProtocolError:
        if self._closed:
            return ProtocolError(f"connection closed inside a frame ({len(self._buf)} of {n} bytes)")
        return ProtocolError(f"frame truncated: {len(self._buf)} of {n} bytes arrived within "
                             f"{self.frame_timeout} s")

    def _fill_to(self, n: int, timeout: float | None) -> bool:
        """Read until ``n`` bytes are buffered; False on EOF or when ``timeout`` passes.

        The socket stays blocking (a socket timeout would also apply to ``sendall`` from other
        threads); a wait with a timeout is a blocking ``recv`` bounded by ``SO_RCVTIMEO``
        (receives only), so a round trip costs one syscall to read, not ``poll`` + ``recv``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        buf = self._buf
        while len(buf) < n:
            if self._closed:
                return False
            flags = 0
            if deadline is None:
                self._recv_timeout(0.0)
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    flags = socket.MSG_DONTWAIT  # one look at what has arrived
                else:
                    self._recv_timeout(left)
            try:  # recv_into a reused buffer: recv(1 MiB) would allocate 1 MiB per call
                got = self._recv_fds(flags) if self.pass_fds else self.sock.recv_into(self._chunk, 0, flags)
            except (BlockingIOError, InterruptedError):  # SO_RCVTIMEO passed, or nothing there
                if flags or time.monotonic() >= deadline:  # type: ignore[operator]
                    return False
                continue
            except OSError:
                got = 0
            if not got:
                self._closed = True
                return False
            buf += self._chunk_view[:got]
        return True

    def _recv_fds(self, flags: int) -> int:
        """``recvmsg_into``: the descriptors that ride with the bytes are kept, in order (a
        plain ``recv`` would drop them; Linux ends a read at each frame carrying some)."""
        got, ancdata, _, _ = self.sock.recvmsg_into([self._chunk_view], socket.CMSG_SPACE(16 * 4), flags)
        for level, kind, data in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                count = len(data) // 4
                self.fds.extend(struct.unpack(f"{count}i", data[:count * 4]))
        return got

    def _recv_timeout(self, seconds: float) -> None:
        """Set ``SO_RCVTIMEO`` (0: none), rounded up to 10 ms so the usual waits (pump's 50 ms
        slices, ``frame_timeout``) reuse the value already set instead of a syscall each."""
        ticks = -int(-seconds // 0.01)
        if ticks != self._ticks:
            self._ticks = ticks
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                                 struct.pack("ll", ticks // 100, ticks % 100 * 10_000))

    def close(self) -> None:
        """Shut the socket down, then close it: ``close`` alone does not wake a thread blocked
        in ``recv`` on it (nor send EOF to the peer while that call holds the socket), which
        made the fork server wait for its 5 s kill at every kernel exit."""
        self._closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()
        while self.fds:
            with contextlib.suppress(OSError):
                os.close(self.fds.popleft())
