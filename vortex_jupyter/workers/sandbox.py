"""The worker sandbox: what a node in a sandboxed worker may touch, and the words when it may not.

A worker in sandbox mode (``VORTEX_SANDBOX=strict``; pack workers later, with their pack's
permissions) calls ``apply(policy)`` after its heavy imports (torch) and its connection to the
kernel, before it starts a thread or runs any node. Three layers, in this order:

1. **Landlock** (``landlock.py``): the filesystem. Read: the Python environment (``sys.prefix``,
   the base prefix, site-packages, ``sys.path`` but the current folder), this package, the
   system libraries (``/usr``, ``/lib*``, a few files of ``/etc`` the loader reads), ``/sys``,
   this process's ``/proc/<pid>``, the models folders (models root and ``extra_model_paths``),
   the input folder. Read and write: the output and temp folders (``VORTEX_OUTPUT_DIR``,
   ``VORTEX_TEMP_DIR``; ``TMPDIR`` points at the latter), the worker's own log file, ``/dev/null``.
   GPUs: ``/dev/nvidia*`` (``nvidiactl``, ``nvidia-uvm``, ``nvidia-uvm-tools``, ``nvidia-modeset``,
   ``nvidiaN``, ``nvidia-caps/``), ``/dev/dri/``, and ``/proc/driver/nvidia`` when present, with
   ``ioctl`` allowed on those device files only. Everything else (the home folder, ``~/.ssh``,
   ``/etc/shadow``, ``/dev/shm``, other processes' ``/proc``) is denied (``EACCES``). With ABI 4+
   TCP bind/connect are denied too; with ABI 6+ signals to processes outside the sandbox.
2. **seccomp** (``seccomp.py``): no new programs or processes, no new sockets (the worker's
   own connection to the kernel is made before; a new ``AF_UNIX`` one could reach the kernel's
   listener or other local services), no ptrace or signals to other processes (``EPERM``).
3. **An audit hook**, only for the words: it notes each action the policy forbids (``open`` of
   a path outside it, a socket, ``subprocess``, ``os.kill`` of another pid, a libc call through
   ``ctypes``) and ``translate`` turns the ``PermissionError`` the kernel then gives into a
   ``SandboxViolation`` (VE-506) naming the action and the setting that allows it. ``os.system``
   is refused by the hook itself: ``system()`` reports a failed fork as exit status 127, not as
   an error. The hook enforces nothing that Landlock and seccomp do not: code that gets past it
   (``ctypes``) is still blocked, with a vaguer message.

Threads: seccomp reaches every thread (``TSYNC``); Landlock (ABI < 8) only the calling thread
and those it starts later, which is why ``apply`` runs before the worker's own threads start.
Threads that already run then are native ones (the CUDA driver's, after ``torch.cuda`` initialised
in ``_setup_device``): they run no node code.

Permissions a pack may ask for (``Policy``; the manifest's ``[tool.vortex.permissions]``):
``network = true``, ``processes = true``, ``read = [folders]``, ``write = [folders]``.

>>> sorted(capabilities())
['bubblewrap', 'landlock_abi', 'seccomp', 'user_namespaces']
"""

from __future__ import annotations

import glob
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import VortexError
from . import audit, landlock, seccomp

log = logging.getLogger("vortex_jupyter.sandbox")

GPU_DEVICES = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset",
               "/dev/nvidia-caps", "/dev/dri")
SYSTEM_READ = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sys", "/etc/ld.so.cache", "/etc/ld.so.conf",
               "/etc/ld.so.conf.d", "/etc/localtime", "/etc/mime.types", "/proc/cpuinfo", "/proc/meminfo",
               "/proc/stat", "/proc/driver/nvidia", "/dev/urandom", "/dev/random", "/dev/zero")


@dataclass
class Policy:
    """What a sandboxed worker's nodes may do beyond the defaults (see the module docstring)."""

    read: list[str] = field(default_factory=list)
    write: list[str] = field(default_factory=list)
    network: bool = False
    processes: bool = False
    #: where the permissions come from, for the error's fix (a pack's manifest, or the setting)
    source: str = "VORTEX_SANDBOX=strict"
    #: the setting that turns this sandbox off (named in every error's hint)
    off: str = "VORTEX_SANDBOX=off"


def capabilities() -> dict[str, Any]:
    """What this machine offers a sandbox (``vtx doctor``; logged when a strict pool starts)."""
    import shutil

    try:
        with open("/proc/sys/user/max_user_namespaces") as f:
            userns = int(f.read().strip()) > 0
    except (OSError, ValueError):
        userns = False
    return {"landlock_abi": landlock.abi_version(), "seccomp": seccomp.available(),
            "user_namespaces": userns, "bubblewrap": shutil.which("bwrap")}


def require(caps: dict[str, Any] | None = None) -> dict[str, Any]:
    """``capabilities()``, or a clear error if strict sandboxing cannot work here."""
    caps = capabilities() if caps is None else caps
    missing = []
    if not caps.get("landlock_abi"):
        missing.append("Landlock (Linux 5.13+ with CONFIG_SECURITY_LANDLOCK and 'landlock' in the lsm= boot list)")
    if not caps.get("seccomp"):
        missing.append("seccomp filters through pyseccomp (pip install pyseccomp; Debian package libseccomp2)")
    if missing:
        raise VortexError("VORTEX_SANDBOX=strict needs " + " and ".join(missing) + f"; this machine has {caps}",
                          hint="install what is missing, or unset VORTEX_SANDBOX to run nodes unsandboxed "
                               "(trusted code only)")
    log.info("sandbox: Landlock ABI %s, seccomp %s, user namespaces %s, bubblewrap %s", caps["landlock_abi"],
             caps["seccomp"], caps["user_namespaces"], caps["bubblewrap"] or "absent")
    return caps


# -- the rules ---------------------------------------------------------------------------------
def _python_paths() -> list[str]:
    import site

    here = {"", os.getcwd(), "/", str(Path.home())}
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, *site.getsitepackages()}
    paths.update(p for p in sys.path if p not in here)
    paths.add(str(Path(__file__).resolve().parents[1]))
    return sorted(paths)


def _data_paths() -> tuple[list[str], list[str]]:
    """(read, write) folders of the node library: models, input; output, temp."""
    from ..nodes import paths
    from ..nodes.diffusion import folders
    from ..nodes.diffusion.models import models_root

    read = [str(models_root()), str(paths.input_root())]
    for kind in folders.KINDS:
        read += [str(f) for f in folders.folders(kind, strict=False)]
    write = [str(paths.output_root()), str(paths.temp_root())]
    for folder in write:
        os.makedirs(folder, exist_ok=True)
    return read, write


def rules(policy: Policy, log_path: str = "") -> list[tuple[str, int]]:
    read, write = _data_paths()
    out = [(p, landlock.READ_EXEC) for p in _python_paths() + list(SYSTEM_READ)]
    out += [(p, landlock.READ) for p in read + policy.read + [f"/proc/{os.getpid()}"]]
    out += [(p, landlock.WRITE) for p in write + policy.write]
    out += [(p, landlock.DEVICE) for p in [*GPU_DEVICES, *glob.glob("/dev/nvidia[0-9]*"), "/dev/null"]]
    if log_path:
        out.append((log_path, landlock.WRITE_FILE | landlock.READ_FILE))
    return out


# -- applying it -------------------------------------------------------------------------------
_ACTIVE: list[Policy] = []


def apply(policy: Policy | None = None, log_path: str = "") -> None:
    """Sandbox this process for good (Landlock, then seccomp, then the audit hook). Raises if a
    layer cannot be applied: a worker must never run nodes believing it is sandboxed when it is not."""
    from ..nodes import paths

    policy = policy or Policy()
    require()
    table = rules(policy, log_path)
    os.environ["TMPDIR"] = str(paths.temp_root())  # tempfile.gettempdir() in a folder we may write
    import tempfile

    tempfile.tempdir = None
    landlock.restrict(table, network=policy.network)
    seccomp.install(network=policy.network, processes=policy.processes)
    _ACTIVE.append(policy)
    sys.addaudithook(audit.Hook(policy, [p for p, _ in table], [p for p, r in table if r & landlock.WRITE_FILE]))


def active() -> Policy | None:
    return _ACTIVE[0] if _ACTIVE else None


def begin_node() -> None:
    """Forget the last noted action (a node starts on this thread)."""
    audit.state.action = None


def translate(exc: BaseException) -> BaseException:
    """A ``PermissionError`` the sandbox caused, as the ``SandboxViolation`` that names it."""
    policy = active()
    action = getattr(audit.state, "action", None)
    if policy is None or action is None or not isinstance(exc, OSError) or exc.errno not in (1, 13):
        return exc
    what, fix = action
    if "through ctypes" in what:  # the node's own words say with what arguments
        what += f" ({exc})"
    return audit.violation(what, fix, policy)
