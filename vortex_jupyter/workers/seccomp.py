"""The worker sandbox's system-call filter (seccomp-bpf through pyseccomp / libseccomp).

Default: allow. Denied with ``EPERM`` (Python raises ``PermissionError``; nothing is killed):

- new programs: ``execve``, ``execveat``;
- new processes: ``fork``, ``vfork``, and ``clone`` without ``CLONE_THREAD`` (threads still
  work: torch starts them). ``clone3`` passes its flags in memory, where seccomp cannot look,
  so it answers ``ENOSYS`` and glibc falls back to ``clone`` (as Docker's profile does);
- new sockets of any family (``AF_INET``/``AF_INET6``, netlink, packet, and ``AF_UNIX``: the
  worker connects to the kernel before the filter is loaded, and a new Unix socket could reach
  the kernel's listener or another local service), and ``io_uring`` (it could open sockets and
  files behind this filter's back); ``socketpair`` (an unnamed pair, reaching nobody) stays;
- other processes: ``ptrace``, ``process_vm_readv``/``writev``, ``pidfd_getfd``,
  ``pidfd_send_signal``, ``kcmp``; ``kill``/``rt_sigqueueinfo`` to any pid but this process's own,
  ``tgkill``/``rt_tgsigqueueinfo`` to a thread of another process, ``tkill`` (a bare thread id
  could be any process's);
- namespaces and mounts: ``unshare``, ``setns``, ``mount``, ``umount2``, ``pivot_root``, ``chroot``,
  and ``bpf``, ``perf_event_open``, ``userfaultfd``, the key ring calls.

``processes=True`` / ``network=True`` (a pack's permissions) leave those groups allowed. The
filter is synchronised to every thread of the process (``TSYNC``) and can never be lifted.
"""

from __future__ import annotations

import errno
import os
from typing import Any

CLONE_THREAD = 0x00010000

PROCESSES = ("execve", "execveat", "fork", "vfork")
NETWORK = ("io_uring_setup", "io_uring_enter", "io_uring_register")
OTHERS = ("ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "pidfd_send_signal", "kcmp",
          "tkill", "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "bpf", "perf_event_open",
          "userfaultfd", "keyctl", "add_key", "request_key")


def available() -> bool:
    """pyseccomp imports and finds libseccomp, and the kernel has seccomp filters."""
    try:
        import pyseccomp

        pyseccomp.get_api()
    except Exception:  # ImportError, or libseccomp.so.2 missing (pyseccomp raises on load)
        return False
    try:
        with open("/proc/self/status") as f:
            return any(line.startswith("Seccomp:") for line in f)
    except OSError:
        return False


def install(*, network: bool = False, processes: bool = False) -> None:
    """Load the filter into this process (all threads)."""
    import pyseccomp as sc

    f = sc.SyscallFilter(sc.ALLOW)
    deny = sc.ERRNO(errno.EPERM)
    for name in OTHERS + (() if network else NETWORK):
        _rule(f, deny, name)
    if not processes:
        for name in PROCESSES:
            _rule(f, deny, name)
        _rule(f, deny, "clone", sc.Arg(0, sc.MASKED_EQ, CLONE_THREAD, 0))
    _rule(f, sc.ERRNO(errno.ENOSYS), "clone3")
    if not network:
        _rule(f, deny, "socket")
    me = os.getpid()
    for name in ("kill", "rt_sigqueueinfo", "tgkill", "rt_tgsigqueueinfo"):
        # only ``pid == me`` passes (a negative pid, a group, is huge as unsigned: denied too)
        _rule(f, deny, name, sc.Arg(0, sc.GT, me))
        _rule(f, deny, name, sc.Arg(0, sc.LT, me))
    f.set_attr(sc.Attr.CTL_TSYNC, 1)
    f.load()


def _rule(f: Any, action: int, name: str, *args: Any) -> None:
    f.add_rule(action, name, *args)
