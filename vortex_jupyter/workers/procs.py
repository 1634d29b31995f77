"""Process hygiene for workers: what a node starts dies with its worker, and memory deaths are named.

Containment (Linux; each step is best effort elsewhere):
- every worker leads its own process group (``setpgid(0, 0)`` right after the fork), so what a
  node starts (``subprocess``, ``multiprocessing``, a shell pipeline) is in that group unless
  it leaves it on purpose;
- a worker forked by the fork server dies with it (``PR_SET_PDEATHSIG``); the fork server dies
  of nothing quietly: it reads EOF when the kernel goes, even a SIGKILLed kernel;
- the fork server is a *child subreaper* (``PR_SET_CHILD_SUBREAPER``): a process that leaves
  its group (``setsid``, a double-forked daemon) is re-parented to it, not to init, when its
  own parent dies, and ``VORTEX_WORKER=<uid>`` in its environment (inherited from the worker)
  says whose it is;
- so when a worker dies, its parent kills the worker's group while the dead leader still holds
  the pid (``waitid(WNOWAIT)`` first: no recycled pid can be hit), then every process marked
  with its uid wherever it lives now (``kill_marked``), then every adopted process of a worker
  that is gone; when the kernel goes, the fork server kills every group and every adopted
  process before it exits, and a worker that finds its kernel gone kills its group and its
  marked processes itself (a worker started without the fork server has no other guard).

Memory: ``oom_kills()`` is the kernel's count of OOM-killer kills (``/proc/vmstat``), read
before a batch and after a worker's SIGKILL: a count that moved means the system, not a bug,
killed it (reported as VE-503 with the worker's last sampled memory). Workers also set their
``oom_score_adj`` to the maximum so that the OOM killer takes a worker, never the kernel or
the Jupyter server.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
#: Environment marker a worker passes to everything it starts.
MARKER = "VORTEX_WORKER"

_libc: ctypes.CDLL | None = None


def _prctl(option: int, value: int) -> bool:
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        return int(_libc.prctl(option, value, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def become_subreaper() -> bool:
    """Orphaned descendants are re-parented to this process instead of init."""
    return _prctl(PR_SET_CHILD_SUBREAPER, 1)


def die_with_parent(parent: int, sig: int = signal.SIGKILL) -> None:
    """Get ``sig`` when the parent exits; exit at once if it already has (the fork raced it)."""
    _prctl(PR_SET_PDEATHSIG, int(sig))
    if os.getppid() != parent:
        os._exit(0)


def lead_own_group() -> None:
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)


def worst_oom_score() -> None:
    """Make this process the OOM killer's first choice (raising it needs no privilege)."""
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as f:
        f.write("1000")


def kill_group(pgid: int) -> None:
    """SIGKILL every process of group ``pgid`` (never our own group)."""
    if pgid <= 1 or pgid == os.getpgrp():
        return
    with contextlib.suppress(OSError):
        os.killpg(pgid, signal.SIGKILL)


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, process group) of ``pid`` from ``/proc``; None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data.rpartition(b")")[2].split()
    try:
        return int(fields[1]), int(fields[2])
    except (IndexError, ValueError):
        return None


def children_of(parent: int) -> list[int]:
    out: list[int] = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for name in names:
        if name.isdigit():
            st = _stat(int(name))
            if st is not None and st[0] == parent:
                out.append(int(name))
    return out


def marker_of(pid: int) -> str | None:
    """The ``VORTEX_WORKER`` marker in ``pid``'s environment (None: absent or unreadable)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read()
    except OSError:
        return None
    key = MARKER.encode() + b"="
    for item in env.split(b"\0"):
        if item.startswith(key):
            return item[len(key):].decode("utf-8", "replace")
    return None


def kill_adopted(keep: set[int], alive_uids: set[str] | None = None) -> int:
    """Kill this process's adopted children (any child not in ``keep``) and their groups.

    ``alive_uids``: spare those whose marker names a worker that still runs (None: kill all).
    (An adopted process of another kernel's worker cannot be here: only our workers' orphans
    are re-parented to us.)
    Returns how many were killed."""
    me, killed = os.getpid(), 0
    for pid in children_of(me):
        if pid in keep:
            continue
        if alive_uids is not None and marker_of(pid) in alive_uids:
            continue
        st = _stat(pid)
        if st is not None and st[1] != os.getpgrp():
            kill_group(st[1])
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        killed += 1
    return killed


def kill_marked(uid: str) -> int:
    """Kill every process whose environment says it came from the worker marked ``uid`` (wherever it was
    re-parented to: init, a subreaper, a ``setsid`` session); returns how many."""
    me, killed = os.getpid(), 0
    try:
        names = os.listdir("/proc")
    except OSError:
        return 0
    for name in names:
        if name.isdigit() and int(name) != me and marker_of(int(name)) == uid:
            with contextlib.suppress(OSError):
                os.kill(int(name), signal.SIGKILL)
                killed += 1
    return killed


PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
_CAPSET = {"x86_64": 126, "aarch64": 91}


def sandbox_self() -> None:
    """Close this process to its peers: not dumpable (another process of the same user can no
    longer open its ``/proc/<pid>/fd``, ``mem``, ``environ``), no new privileges, and -- when it
    runs as root -- no capabilities left (root without ``CAP_SYS_PTRACE`` cannot open another
    non-dumpable process's files either)."""
    _prctl(PR_SET_DUMPABLE, 0)
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    drop_capabilities()


def close_to_peers() -> None:
    """Not dumpable: other processes of this user cannot read this one's memory or open its
    descriptors through ``/proc`` (the sandboxed kernel; also no core dumps, no ptrace)."""
    _prctl(PR_SET_DUMPABLE, 0)


def drop_capabilities() -> bool:
    """capset(2) to empty effective, permitted and inheritable sets (v3 header)."""
    import platform

    number = _CAPSET.get(platform.machine())
    if number is None:
        return False
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()  # two {effective, permitted, inheritable} words, all zero
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.syscall(number, ctypes.byref(header), ctypes.byref(data))) == 0
    except (OSError, AttributeError):
        return False


def oom_kills() -> int | None:
    """The system's OOM-killer kill count (``/proc/vmstat`` ``oom_kill``; None if unknown)."""
    try:
        with open("/proc/vmstat", "rb") as f:
            for line in f:
                if line.startswith(b"oom_kill "):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _cgroup_limit() -> int | None:
    """The memory limit of this process's cgroup (v2 ``memory.max``, v1 ``memory.limit_in_bytes``)."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            candidates = [f"/sys/fs/cgroup{path}/memory.max"]
        elif "memory" in controllers.split(","):
            candidates = [f"/sys/fs/cgroup/memory{path}/memory.limit_in_bytes"]
        else:
            continue
        for file in candidates:
            try:
                with open(file) as f:
                    raw = f.read().strip()
            except OSError:
                continue
            if raw.isdigit() and int(raw) < 2**60:
                return int(raw)
    return None


def physical_memory() -> int:
    """What this machine (or container) may use: RAM, or a smaller cgroup limit."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limit = _cgroup_limit()
    return min(total, limit) if limit else total


def parse_bytes(raw: str) -> int:
    """``"8G"``, ``"512M"``, ``"1.5g"``, ``"1073741824"`` -> bytes (ValueError otherwise)."""
    text = raw.strip().upper().removesuffix("B").removesuffix("I")
    scale = 1
    if text and text[-1] in "KMGT":
        scale = 1024 ** ("KMGT".index(text[-1]) + 1)
        text = text[:-1]
    value = float(text)
    if value <= 0:
        raise ValueError(raw)
    return int(value * scale)
