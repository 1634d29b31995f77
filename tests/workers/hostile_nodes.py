"""Nodes that attack their worker's machine, for ``test_sandbox_policy.py``. Each returns a plain
value when it gets through (the sandbox off: proof that the node itself works) and raises when
it is refused. Pickled by value: workers cannot import this module."""

from __future__ import annotations

import ctypes
import os
import socket
import struct
import subprocess


def reads_file(path: str) -> int:
    with open(os.path.expanduser(path), "rb") as f:
        return len(f.read())


def writes_file(path: str) -> str:
    with open(path, "w") as f:
        f.write("written by a node")
    return path


def connects(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        return True


def connects_unix(path: str) -> bool:
    """A local service by its Unix socket (e.g. the kernel's own worker listener)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)
        return True


def runs_subprocess(x: int = 0) -> int:
    return subprocess.run(["true"], check=True).returncode


def runs_os_system(x: int = 0) -> int:
    return os.system("true")


def signals_parent(sig: int) -> int:
    parent = os.getppid()
    os.kill(parent, sig)
    return parent


def reads_shm_by_name(prefix: str, token: str) -> bool:
    found = False
    for name in os.listdir("/dev/shm"):
        if name.startswith(prefix):
            with open(f"/dev/shm/{name}", "rb") as f:
                found |= bytes.fromhex(token) in f.read()
    return found


def lists_fds_of(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def ctypes_open(path: str) -> bool:
    """libc ``open`` straight through ctypes: no Python ``open`` audit event."""
    fd = _libc().open(os.path.expanduser(path).encode(), os.O_RDONLY)
    if fd < 0:
        raise OSError(ctypes.get_errno(), f"libc open({path!r}) failed")
    os.close(fd)
    return True


def ctypes_connect(port: int) -> bool:
    libc = _libc()
    fd = libc.socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "libc socket(AF_INET) failed")
    address = struct.pack("<HH4s8x", socket.AF_INET, socket.htons(port), socket.inet_aton("127.0.0.1"))
    try:
        if libc.connect(fd, address, len(address)) != 0:
            raise OSError(ctypes.get_errno(), f"libc connect(127.0.0.1:{port}) failed")
    finally:
        os.close(fd)
    return True


def ctypes_kill_parent(sig: int) -> int:
    if _libc().kill(os.getppid(), sig) != 0:
        raise OSError(ctypes.get_errno(), "libc kill(parent) failed")
    return os.getppid()


def ctypes_fork(x: int = 0) -> bool:
    """fork(2) through libc ``syscall`` (57 on x86_64): no audit event, only seccomp stands in the way."""
    pid = os.getpid()
    child = _libc().syscall(57)
    if child < 0:
        raise OSError(ctypes.get_errno(), "fork(2) through libc syscall failed")
    if os.getpid() != pid:  # the child (with the sandbox off): leave at once
        os._exit(0)
    return True


def tensor_op(n: int = 64) -> float:
    import torch

    a = torch.ones(n, n)
    return float((a @ a).sum())


def reads_model(name: str) -> int:
    from vortex_jupyter.nodes.diffusion import folders

    return folders.find("checkpoints", name, "ckpt_name").stat().st_size


def saves_output(name: str) -> str:
    from vortex_jupyter.nodes import paths

    target = paths.output_root() / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("an image, say")
    return str(target)


def secret(token: str) -> object:
    """An output in this worker's arena (1 MiB of ``token``), as a victim of the snooping nodes."""
    import numpy as np

    from vortex_jupyter.workers import shm

    pattern = np.frombuffer(bytes.fromhex(token), np.uint8)
    out = shm.empty((2**20 // len(pattern), len(pattern)), np.uint8)
    out[:] = pattern
    return out


def const(value: int) -> int:
    return value
