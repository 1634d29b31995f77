"""Landlock through ctypes (syscalls 444-446 on x86_64 and aarch64): the worker sandbox's filesystem.

A ruleset *handles* a set of access rights; everything handled is denied except what a rule
grants beneath a folder (or on one file). ``restrict(read, write, ...)`` builds one with the
highest ABI the kernel has and enforces it on the calling thread and every thread it starts
later (Landlock before ABI 8 has no way to reach threads that already run: call it before
starting any).

Per ABI: 1 the file rights; 2 ``REFER`` (rename/link across folders); 3 ``TRUNCATE``;
4 TCP ``bind``/``connect`` (none granted unless ``network``); 5 ``IOCTL_DEV`` (ioctl on device
files: granted on the GPU devices only); 6 scopes: no signals to processes outside the
sandbox, no abstract Unix sockets outside it. An older kernel simply handles fewer rights.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterable

_SYSCALLS = {"x86_64": (444, 445, 446), "aarch64": (444, 445, 446)}
CREATE_RULESET_VERSION = 1
RULE_PATH_BENEATH = 1

EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
REMOVE_DIR, REMOVE_FILE, MAKE_CHAR, MAKE_DIR = 1 << 4, 1 << 5, 1 << 6, 1 << 7
MAKE_REG, MAKE_SOCK, MAKE_FIFO, MAKE_BLOCK, MAKE_SYM = 1 << 8, 1 << 9, 1 << 10, 1 << 11, 1 << 12
REFER, TRUNCATE, IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1

#: Every filesystem right each ABI knows.
FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1, 5: (1 << 16) - 1}
#: Rights that may be granted on a single file (the rest only on folders).
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV

READ = READ_FILE | READ_DIR
READ_EXEC = READ | EXECUTE
WRITE = (READ | WRITE_FILE | REMOVE_DIR | REMOVE_FILE | MAKE_DIR | MAKE_REG | MAKE_SYM | REFER
         | TRUNCATE)
DEVICE = READ | WRITE_FILE | IOCTL_DEV


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class LandlockError(OSError):
    pass


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def abi_version() -> int:
    """The kernel's Landlock ABI (0: none: not built in, disabled at boot, or another arch)."""
    import platform

    numbers = _SYSCALLS.get(platform.machine())
    if numbers is None:
        return 0
    try:
        version = int(_libc().syscall(numbers[0], None, ctypes.c_size_t(0), CREATE_RULESET_VERSION))
    except (OSError, AttributeError):
        return 0
    return max(version, 0)


def _fs_rights(abi: int) -> int:
    return FS_BY_ABI.get(abi, FS_BY_ABI[5])


def restrict(rules: Iterable[tuple[str, int]], *, network: bool = False) -> int:
    """Enforce a ruleset granting each ``(path, rights)`` (paths that do not exist are skipped);
    returns the ABI used. ``no_new_privs`` must be set already (``procs.sandbox_self``)."""
    import platform

    abi = abi_version()
    if abi < 1:
        raise LandlockError(0, "Landlock is not available on this kernel")
    create, add, enforce = _SYSCALLS[platform.machine()]
    handled = _fs_rights(abi)
    attr = _RulesetAttr(handled, NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 and not network else 0,
                        SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0)
    size = ctypes.sizeof(_RulesetAttr) if abi >= 6 else (16 if abi >= 4 else 8)
    libc = _libc()
    fd = int(libc.syscall(create, ctypes.byref(attr), ctypes.c_size_t(size), 0))
    if fd < 0:
        raise LandlockError(ctypes.get_errno(), "landlock_create_ruleset failed")
    try:
        for path, rights in rules:
            _add_rule(libc, add, fd, path, rights & handled)
        if int(libc.syscall(enforce, fd, 0)) != 0:
            raise LandlockError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(fd)
    return abi


def _add_rule(libc: ctypes.CDLL, add: int, ruleset: int, path: str, rights: int) -> None:
    try:
        target = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # a folder that is not there grants nothing
    try:
        import stat

        if not stat.S_ISDIR(os.fstat(target).st_mode):
            rights &= FILE_RIGHTS
        rule = _PathBeneath(rights, target)
        if int(libc.syscall(add, ruleset, RULE_PATH_BENEATH, ctypes.byref(rule), 0)) != 0:
            raise LandlockError(ctypes.get_errno(), f"landlock_add_rule failed for {path}")
    finally:
        os.close(target)
