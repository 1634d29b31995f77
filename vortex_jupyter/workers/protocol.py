"""The kernel <-> worker wire protocol, written once, as types.

Transport: a Unix domain stream socket carrying frames of a 4-byte big-endian length
followed by one msgpack array ``[tag, field1, field2, ...]``. Every message is a frozen
dataclass below; ``decode`` checks the tag, the arity and the type of every field, so a
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

import contextlib
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import msgpack

from ..errors import ProtocolError

VERSION = 1
#: Biggest frame either side accepts (previews and batches of 10k tasks fit comfortably).
MAX_FRAME = 64 * 1024 * 1024
EXT_TENSOR = 1
EXT_OPAQUE = 2
EXT_PICKLE = 3
_HEADER = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class Message:
    tag: ClassVar[str] = ""
    #: per field: the Python types a decoded value may have (filled by ``_message``).
    schema: ClassVar[tuple[tuple[str, tuple[type, ...]], ...]] = ()
    names: ClassVar[tuple[str, ...]] = ()

    def wire(self) -> list[Any]:
        return [self.tag, *[getattr(self, name) for name in self.names]]


MESSAGES: dict[str, type[Message]] = {}
_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,), "float": (float, int), "str": (str,), "bool": (bool,), "bytes": (bytes,),
    "list": (list,), "dict": (dict,), "Any": (object,), "float | None": (float, int, type(None)),
    "str | None": (str, type(None)), "int | None": (int, type(None)),
}


def _message(cls: type[Message]) -> type[Message]:
    cls.schema = tuple((f.name, _TYPES[str(f.type)]) for f in fields(cls))
    cls.names = tuple(name for name, _ in cls.schema)
    MESSAGES[cls.tag] = cls
    return cls


# ---- worker -> kernel ---------------------------------------------------------------------
@_message
@dataclass(frozen=True, slots=True)
class Hello(Message):
    """First frame of a worker: who it is and what it can do."""

    tag: ClassVar[str] = "hello"
    version: int
    uid: str
    pid: int
    device: str
    capabilities: list
    memory: dict


@_message
@dataclass(frozen=True, slots=True)
class Heartbeat(Message):
    tag: ClassVar[str] = "hb"
    time: float


@_message
@dataclass(frozen=True, slots=True)
class Pong(Message):
    tag: ClassVar[str] = "pong"
    seq: int


@_message
@dataclass(frozen=True, slots=True)
class Progress(Message):
    tag: ClassVar[str] = "progress"
    batch: int
    node: str
    value: float
    total: float | None
    text: str | None


@_message
@dataclass(frozen=True, slots=True)
class Preview(Message):
    tag: ClassVar[str] = "preview"
    batch: int
    node: str
    mime: str
    data: bytes
    final: bool


@_message
@dataclass(frozen=True, slots=True)
class Finished(Message):
    """A task ran. ``outputs``: per output ``["v", value]`` (small, inline) or
    ``["h", type_name, nbytes]`` (stays in the worker, fetch on demand)."""

    tag: ClassVar[str] = "finished"
    batch: int
    node: str
    key: str
    outputs: list
    ui: dict
    elapsed: float


@_message
@dataclass(frozen=True, slots=True)
class Failed(Message):
    tag: ClassVar[str] = "failed"
    batch: int
    node: str
    key: str
    code: str
    error_type: str
    message: str
    traceback: str


@_message
@dataclass(frozen=True, slots=True)
class BatchDone(Message):
    tag: ClassVar[str] = "done"
    batch: int


@_message
@dataclass(frozen=True, slots=True)
class Fetched(Message):
    """Reply to ``Fetch``: the value as msgpack with EXT_TENSOR/EXT_OPAQUE leaves, or an error."""

    tag: ClassVar[str] = "fetched"
    req: int
    value: Any
    error: str | None


# ---- kernel -> worker ---------------------------------------------------------------------
@_message
@dataclass(frozen=True, slots=True)
class Ping(Message):
    tag: ClassVar[str] = "ping"
    seq: int


@_message
@dataclass(frozen=True, slots=True)
class DefineNodes(Message):
    """``specs``: ``[[spec_id, cloudpickle(NodeSpec)], ...]`` (importable functions pickle by
    reference, i.e. ``module:qualname``; ``__main__`` functions by value)."""

    tag: ClassVar[str] = "define"
    specs: list


@_message
@dataclass(frozen=True, slots=True)
class Execute(Message):
    """A chunk of a batch in topological order: ``[[node_id, key, spec_id, args, timeout], ...]``
    where ``args`` maps a name to ``["lit", v]``, ``["pkl", bytes]``, ``["ref", key, index]`` or
    ``["shm", tree]``. A big batch streams in several chunks with the same ``batch`` (the worker
    starts on the first while the kernel still prepares the rest); ``last`` ends it."""

    tag: ClassVar[str] = "exec"
    batch: int
    tasks: list
    last: bool


@_message
@dataclass(frozen=True, slots=True)
class Cancel(Message):
    """Stop ``node`` (``""``: the whole batch). ``reason``: "cancel" or "timeout"."""

    tag: ClassVar[str] = "cancel"
    batch: int
    node: str
    reason: str


@_message
@dataclass(frozen=True, slots=True)
class Fetch(Message):
    tag: ClassVar[str] = "fetch"
    req: int
    key: str
    index: int


@_message
@dataclass(frozen=True, slots=True)
class Release(Message):
    tag: ClassVar[str] = "release"
    keys: list


@_message
@dataclass(frozen=True, slots=True)
class Shutdown(Message):
    tag: ClassVar[str] = "shutdown"
    reason: str


# ---- kernel <-> fork server ----------------------------------------------------------------
@_message
@dataclass(frozen=True, slots=True)
class Spawn(Message):
    tag: ClassVar[str] = "spawn"
    uid: str
    config: dict


@_message
@dataclass(frozen=True, slots=True)
class Spawned(Message):
    tag: ClassVar[str] = "spawned"
    uid: str
    pid: int


@_message
@dataclass(frozen=True, slots=True)
class Exited(Message):
    """A child of the fork server ended; ``status`` is the raw ``waitpid`` status."""

    tag: ClassVar[str] = "exited"
    pid: int
    status: int


def encode(msg: Message, default: Any = None) -> bytes:
    body = msgpack.packb(msg.wire(), use_bin_type=True, default=default)
    if len(body) > MAX_FRAME:
        raise ProtocolError(f"{msg.tag} message of {len(body)} bytes exceeds the {MAX_FRAME}-byte frame limit",
                            hint="keep large values in shared memory and send handles")
    return _HEADER.pack(len(body)) + body


def _ext_hook(allow_pickle: bool) -> Any:
    def hook(code: int, data: bytes) -> Any:
        if code in (EXT_TENSOR, EXT_OPAQUE) or (code == EXT_PICKLE and allow_pickle):
            return msgpack.ExtType(code, data)
        raise ProtocolError(f"extension type {code} is not allowed on this channel")
    return hook


_HOOKS = {False: _ext_hook(False), True: _ext_hook(True)}


def decode(body: bytes | memoryview, allow_pickle: bool = False) -> Message:
    """Parse one frame body into its message; anything unexpected is a ``ProtocolError``."""
    try:
        items = msgpack.unpackb(body, raw=False, use_list=True, strict_map_key=False,
                                ext_hook=_HOOKS[allow_pickle])
    except ProtocolError:
        raise
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise ProtocolError(f"undecodable frame ({type(exc).__name__}: {exc})") from None
    if not isinstance(items, list) or not items or not isinstance(items[0], str):
        raise ProtocolError(f"frame is not a [tag, ...] array: {str(items)[:80]!r}")
    cls = MESSAGES.get(items[0])
    if cls is None:
        raise ProtocolError(f"unknown message tag {items[0][:40]!r}")
    values = items[1:]
    if len(values) != len(cls.schema):
        raise ProtocolError(f"{cls.tag} message has {len(values)} fields, expected {len(cls.schema)}")
    for (name, types), value in zip(cls.schema, values):
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types and int in types):
            raise ProtocolError(f"{cls.tag}.{name} has type {type(value).__name__}")
    return cls(*values)


class Channel:
    """One end of a framed socket. ``send`` is thread-safe; ``recv`` is for one reader thread.

    Reads go through a buffer so a burst of small frames costs one syscall.
    """

    def __init__(self, sock: socket.socket, *, allow_pickle: bool, max_frame: int = MAX_FRAME,
                 frame_timeout: float = 10.0) -> None:
        self.sock = sock
        self.allow_pickle = allow_pickle
        self.max_frame = max_frame
        self.frame_timeout = frame_timeout
        self._send_lock = threading.Lock()
        self._buf = bytearray()
        self._closed = False
        sock.settimeout(None)
        self._chunk = bytearray(1 << 20)
        self._chunk_view = memoryview(self._chunk)
        self._poller = select.poll()
        self._poller.register(sock, select.POLLIN)

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, msg: Message, default: Any = None) -> None:
        self.send_raw(encode(msg, default))

    def send_raw(self, frame: bytes) -> None:
        with self._send_lock:
            self.sock.sendall(frame)

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
        if not self._fill_to(4, timeout) and not self._buf:
            return None
        if len(self._buf) < 4 and not self._fill_to(4, self.frame_timeout):
            raise self._truncated(4)
        (length,) = _HEADER.unpack_from(self._buf)
        if length > self.max_frame:
            raise ProtocolError(f"frame of {length} bytes exceeds the {self.max_frame}-byte limit",
                                hint="the peer is corrupt or not a vortex worker")
        if not self._fill_to(4 + length, self.frame_timeout):
            raise self._truncated(4 + length)
        body = bytes(self._buf[4:4 + length])
        del self._buf[:4 + length]
        return decode(body, self.allow_pickle)

    def _truncated(self, n: int) -> ProtocolError:
        if self._closed:
            return ProtocolError(f"connection closed inside a frame ({len(self._buf)} of {n} bytes)")
        return ProtocolError(f"frame truncated: {len(self._buf)} of {n} bytes arrived within "
                             f"{self.frame_timeout} s")

    def _fill_to(self, n: int, timeout: float | None) -> bool:
        """Read until ``n`` bytes are buffered; False on EOF or when ``timeout`` passes.

        The socket itself stays blocking (a socket timeout would also apply to ``sendall``
        from other threads); waiting with a timeout is a ``poll`` before the ``recv``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while len(self._buf) < n:
            if self._closed:
                return False
            if deadline is not None:
                left = deadline - time.monotonic()
                if not self._poller.poll(max(0, int(left * 1000 + 0.999))):
                    if time.monotonic() >= deadline:
                        return False
                    continue
            try:  # recv_into a reused buffer: recv(1 MiB) would allocate 1 MiB per call
                got = self.sock.recv_into(self._chunk)
            except InterruptedError:
                continue
            except OSError:
                got = 0
            if not got:
                self._closed = True
                return False
            self._buf += self._chunk_view[:got]
        return True

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self.sock.close()
