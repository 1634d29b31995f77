"""The protocol's messages: frozen dataclasses, ``encode`` and ``decode`` (see ``protocol``).

``decode`` checks the tag, the arity and the exact type of every field, so a malformed frame
becomes a ``ProtocolError`` (VE-600) at the edge. Both directions are hot (a round trip is two
encodes and two decodes), so each message class gets a precomputed ``wire()`` and field
checks, and ``encode`` reuses one msgpack ``Packer`` per thread.
"""

from __future__ import annotations

import struct
import threading
from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Any, ClassVar

import msgpack

from ..errors import ProtocolError

VERSION = 3
#: Biggest frame either side accepts (previews and batches of 10k tasks fit comfortably).
MAX_FRAME = 64 * 1024 * 1024
EXT_TENSOR = 1
EXT_OPAQUE = 2
EXT_PICKLE = 3
#: a CUDA tensor by CUDA IPC handle, from one worker to another on the same GPU (``tensors.export_cuda``)
EXT_CUDA = 4
_HEADER = struct.Struct(">I")

# The worker's status words: int64s at the start of its arena, mapped by the kernel at the
# handshake and readable after the worker died (they say what it was doing when it did).
ST_BATCH, ST_INDEX, ST_FAULT, ST_CULPRIT = 0, 1, 2, 3
#: ``ST_FAULT``: the node at ``ST_CULPRIT`` closed or replaced the worker's socket (the worker
#: checks it after every node) -- a certain blame.
FAULT_CHANNEL_BROKEN = 1
#: ``ST_FAULT``: the worker found its connection gone and exited; who broke it is not known.
FAULT_GAVE_UP = 2


@dataclass(frozen=True, slots=True)
class Message:
    tag: ClassVar[str] = ""
    #: per field: the Python types a decoded value may have (filled by ``_message``).
    schema: ClassVar[tuple[tuple[str, tuple[type, ...]], ...]] = ()
    names: ClassVar[tuple[str, ...]] = ()
    checks: ClassVar[tuple[tuple[int, frozenset[type]], ...]] = ()

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
    # decode's check per field: (position in the frame, the exact types allowed); msgpack
    # only ever produces these exact types, so `type(v) in set` is enough (and rejects a
    # bool where an int is expected, as isinstance would not). "Any" fields are not checked.
    cls.checks = tuple((i + 1, frozenset(types)) for i, (_, types) in enumerate(cls.schema) if object not in types)
    cls.wire = _wire(cls.tag, cls.names)  # type: ignore[method-assign]
    MESSAGES[cls.tag] = cls
    return cls


def _wire(tag: str, names: tuple[str, ...]) -> Any:
    """A fast ``wire()`` for one message class (an attrgetter, not a loop over the names)."""
    if not names:
        return lambda self: [tag]
    get = attrgetter(*names)
    if len(names) == 1:
        return lambda self: [tag, get(self)]
    return lambda self: [tag, *get(self)]


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
class SegmentFd(Message):
    """Sandboxed workers only: the file descriptor of arena segment ``name`` rides with this
    frame (``SCM_RIGHTS``); the segment has no name in ``/dev/shm`` (a memfd)."""

    tag: ClassVar[str] = "segfd"
    name: str


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
    """``specs``: ``[[spec_id, cloudpickle(NodeSpec), {"qualname:line": file}], ...]``
    (importable functions pickle by reference, i.e. ``module:qualname``; ``__main__`` functions
    by value, with their source file names beside them: see ``codefiles``). ``path``: the
    kernel's ``sys.path`` (``""`` made absolute), which the worker puts first in its own, so a
    module next to the kernel's script or notebook imports in the worker too."""

    tag: ClassVar[str] = "define"
    specs: list
    path: list


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
    #: the kernel's run span as a W3C ``traceparent`` (``""``: no tracing; ``telemetry.py``)
    trace: str = ""


#: The settings a worker reads from its environment while nodes run: the kernel forwards their
#: current values (``SetEnv``) before a batch whenever they changed since the worker last heard,
#: so ``os.environ["VORTEX_OUTPUT_DIR"] = ...`` in a notebook reaches workers started earlier.
FORWARDED_ENV = ("VORTEX_INPUT_DIR", "VORTEX_OUTPUT_DIR", "VORTEX_TEMP_DIR", "VORTEX_MODELS_DIR",
                 "VORTEX_EXTRA_MODEL_PATHS", "VORTEX_ALLOW_DOWNLOADS", "VORTEX_PREVIEW_INTERVAL", "VORTEX_TRACES")


@_message
@dataclass(frozen=True, slots=True)
class SetEnv(Message):
    """The kernel's values of ``FORWARDED_ENV`` (``""``: unset); other names are refused."""

    tag: ClassVar[str] = "env"
    values: dict


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
    """Ask for output ``index`` of ``key``; ``cuda``: for a worker on the same GPU, so CUDA
    tensors come as CUDA IPC handles (``EXT_CUDA``), not copied to the host."""

    tag: ClassVar[str] = "fetch"
    req: int
    key: str
    index: int
    cuda: bool = False


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


_LOCAL = threading.local()


def _packer() -> msgpack.Packer:
    """This thread's reusable packer (``packb`` builds and frees one per call: ~1 us a frame)."""
    packer = _LOCAL.packer = msgpack.Packer(use_bin_type=True)
    return packer


def encode(msg: Message, default: Any = None) -> bytes:
    if default is None:
        try:
            packer = _LOCAL.packer
        except AttributeError:
            packer = _packer()
        body = packer.pack(msg.wire())  # a failed pack resets the packer's buffer
    else:
        body = msgpack.packb(msg.wire(), use_bin_type=True, default=default)
    if len(body) > MAX_FRAME:
        raise ProtocolError(f"{msg.tag} message of {len(body)} bytes exceeds the {MAX_FRAME}-byte frame limit",
                            hint="keep large values in shared memory and send handles")
    return _HEADER.pack(len(body)) + body


def _ext_hook(allow_pickle: bool) -> Any:
    def hook(code: int, data: bytes) -> Any:
        if code in (EXT_TENSOR, EXT_OPAQUE, EXT_CUDA) or (code == EXT_PICKLE and allow_pickle):
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
    if type(items) is not list or not items or type(items[0]) is not str:
        raise ProtocolError(f"frame is not a [tag, ...] array: {str(items)[:80]!r}")
    cls = MESSAGES.get(items[0])
    if cls is None:
        raise ProtocolError(f"unknown message tag {items[0][:40]!r}")
    if len(items) != len(cls.schema) + 1:
        raise ProtocolError(f"{cls.tag} message has {len(items) - 1} fields, expected {len(cls.schema)}")
    for i, allowed in cls.checks:
        if type(items[i]) not in allowed:
            raise ProtocolError(f"{cls.tag}.{cls.names[i - 1]} has type {type(items[i]).__name__}")
    return cls(*items[1:])
