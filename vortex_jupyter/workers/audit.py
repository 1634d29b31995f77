"""The sandbox's audit hook: it notes, per thread, the last action the sandbox will refuse, so
that the ``PermissionError`` that follows can be reported as that action (``sandbox.translate``).

It enforces nothing (Landlock and seccomp do), with one exception: ``os.system``, whose failed
fork comes back as exit status 127 instead of an error, is refused here with the same
``SandboxViolation``. Libc functions a node looks up through ``ctypes`` are noted by name
(``ctypes.dlsym``), so a node that bypasses Python's ``open`` still gets a message naming
``open`` -- and Landlock's denial either way. (A function looked up by an earlier node, or
reached another way, is still denied; its error is then a plain ``PermissionError``.)
"""

from __future__ import annotations

import os
import socket
import threading
from typing import Any

from ..errors import SandboxViolation

state = threading.local()
PERMS = "[tool.vortex.permissions]"
LIBC_CALLS = ("open", "open64", "openat", "openat64", "fopen", "fopen64", "creat", "connect", "socket", "bind",
              "execve", "execv", "execvp", "execl", "execlp", "system", "popen", "fork", "vfork", "posix_spawn",
              "posix_spawnp", "kill", "killpg", "tgkill", "ptrace", "process_vm_readv", "process_vm_writev",
              "syscall", "unlink", "mkdir", "rename")
WRITE_EVENTS = ("os.mkdir", "os.remove", "os.rmdir", "os.rename", "os.truncate", "os.link", "os.symlink")
NEVER = ""  # no permission allows it


def violation(what: str, fix: str, policy: Any) -> SandboxViolation:
    off = getattr(policy, "off", "VORTEX_SANDBOX=off")
    hint = (f"{fix}, or set {off} (trusted code only)" if fix
            else f"no permission allows this; only {off} does (trusted code only)")
    return SandboxViolation(f"the sandbox ({policy.source}) blocked an attempt to {what}", hint=hint)


def _note(what: str, fix: str) -> None:
    state.action = (what, fix)


def _under(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


class Hook:
    """``sys.addaudithook`` callable for a sandboxed worker (``policy``: ``sandbox.Policy``)."""

    def __init__(self, policy: Any, readable: list[str], writable: list[str]) -> None:
        self.policy = policy
        self.readable = [os.path.abspath(p) for p in readable] + ["/proc/self", "/proc/thread-self"]
        self.writable = [os.path.abspath(p) for p in writable]
        self.me = os.getpid()
        self.handlers = {
            "open": self._open, "os.listdir": self._listdir, "os.scandir": self._listdir,
            "socket.getaddrinfo": self._getaddrinfo, "socket.__new__": self._socket,
            "socket.connect": self._connect, "socket.bind": self._connect,
            "subprocess.Popen": self._popen, "os.exec": self._exec, "os.posix_spawn": self._exec,
            "os.fork": self._fork, "os.forkpty": self._fork, "os.system": self._system,
            "os.kill": self._kill, "os.killpg": self._killpg, "ctypes.dlsym": self._ctypes,
            **{event: self._write_event for event in WRITE_EVENTS},
        }

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        handler = self.handlers.get(event)
        if handler is None:
            return
        try:
            handler(event, args)
        except SandboxViolation:
            raise
        except Exception:  # the words must never break the call they describe
            pass

    def _path(self, raw: Any) -> str | None:
        if isinstance(raw, int) or raw is None:
            return None
        return os.path.abspath(os.fsdecode(raw))

    def _open(self, event: str, args: tuple[Any, ...]) -> None:
        path = self._path(args[0])
        if path is None:
            return
        mode, flags = args[1] if len(args) > 1 else None, args[2] if len(args) > 2 else 0
        writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(
            (flags or 0) & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND))
        if writing and not _under(path, self.writable):
            _note(f"open({path!r}) for writing", self._grant("write", path))
        elif not writing and not _under(path, self.readable):
            _note(f"open({path!r}) for reading", self._grant("read", path))

    def _grant(self, kind: str, path: str) -> str:
        if path.startswith(("/proc/", "/dev/shm/")):  # other processes' memory: no permission opens it
            return NEVER
        folder = os.path.dirname(path) or path
        return f'a pack may be granted the folder with {PERMS} {kind} = ["{folder}"] in its pyproject.toml'

    def _listdir(self, event: str, args: tuple[Any, ...]) -> None:
        path = self._path(args[0] if args else ".")
        if path is not None and not _under(path, self.readable):
            _note(f"list the folder {path!r}", self._grant("read", path + "/x"))

    def _write_event(self, event: str, args: tuple[Any, ...]) -> None:
        path = self._path(args[0])
        if path is not None and not _under(path, self.writable):
            _note(f"{event}({path!r})", self._grant("write", path))

    def _getaddrinfo(self, event: str, args: tuple[Any, ...]) -> None:
        state.target = f"{args[0]}:{args[1]}"

    def _socket(self, event: str, args: tuple[Any, ...]) -> None:
        if self.policy.network:
            return
        if args[1] == socket.AF_UNIX:  # the worker's own socket exists already; a new one could
            _note("open a Unix socket (to reach a local service)", self._net())  # reach the kernel's
            return
        target = getattr(state, "target", None)
        _note("open a network socket" + (f" to connect to {target}" if target else ""), self._net())

    def _connect(self, event: str, args: tuple[Any, ...]) -> None:
        address = args[1]
        if isinstance(address, tuple) and not self.policy.network:
            verb = "connect to" if event == "socket.connect" else "listen on"
            _note(f"{verb} {address[0]}:{address[1]}", self._net())

    def _net(self) -> str:
        return f"a pack may ask for the network with {PERMS} network = true"

    def _procs(self) -> str:
        return f"a pack may ask to run programs with {PERMS} processes = true"

    def _popen(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.policy.processes:
            _note(f"run a program (subprocess: {args[1]!r})", self._procs())

    def _exec(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.policy.processes:
            _note(f"run a program ({event} {os.fsdecode(args[0])!r})", self._procs())

    def _fork(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.policy.processes:
            _note(f"start a process ({event})", self._procs())

    def _system(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.policy.processes:
            raise violation(f"run a program (os.system({os.fsdecode(args[0])!r}))", self._procs(), self.policy)

    def _kill(self, event: str, args: tuple[Any, ...]) -> None:
        if args[0] != self.me:
            _note(f"send signal {int(args[1])} to process {args[0]} (not this worker)", NEVER)

    def _killpg(self, event: str, args: tuple[Any, ...]) -> None:
        _note(f"send signal {int(args[1])} to process group {args[0]}", NEVER)

    def _ctypes(self, event: str, args: tuple[Any, ...]) -> None:
        """A libc function looked up through ctypes (``ctypes.dlsym``; 3.11 has no event per call)."""
        name = args[1] if isinstance(args[1], str) else None
        if name in LIBC_CALLS:
            fix = (self._procs() if name in ("system", "popen", "fork", "vfork") or name.startswith(("exec", "posix"))
                   else self._net() if name in ("connect", "socket", "bind")
                   else f"a pack may be granted folders with {PERMS} read = [...] / write = [...]"
                   if name in ("open", "open64", "openat", "openat64", "fopen", "fopen64", "creat") else NEVER)
            _note(f"call libc {name}() through ctypes", fix)
