"""Node functions the worker tests run (shipped to workers by value, see conftest)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

from vortex_jupyter.nodes import context
from vortex_jupyter.nodes.spec import NodeResult


def add(a, b):
    return (a + b,)


def const(value):
    return (value,)


def arange(n, dtype="float32"):
    """An array built directly in the worker's arena (no copy on the way to the kernel)."""
    from vortex_jupyter.workers import shm

    out = shm.empty((n,), dtype)
    out[:] = np.arange(n, dtype=dtype)
    return (out,)


def plain_array(n):
    return (np.arange(n, dtype=np.float64).reshape(-1, 2),)


def torch_tensor(n):
    import torch

    return (torch.arange(n, dtype=torch.float32).reshape(2, -1),)


def torch_bf16(n):
    import torch

    return (torch.arange(n, dtype=torch.bfloat16),)


def latent(n):
    import torch

    return ({"samples": torch.ones(1, 4, n, n)},)


def opaque():
    return (object(),)


class ModelHandle:
    """Stands for a loaded model: it cannot leave its worker."""

    def __repr__(self):
        return "ModelHandle(tiny)"


def model():
    return (ModelHandle(),)


def total(x):
    return (float(np.asarray(x).sum()),)


def address(x):
    return (int(np.asarray(x).__array_interface__["data"][0]),)


def raises(a):
    raise ValueError(f"bad value {a}: expected something else")


def saves_under(root, name):
    """What SaveImage does with its filename prefix: a traversal is a PathError (VE-700)."""
    from vortex_jupyter.nodes.paths import safe_join

    return (str(safe_join(root, name)),)


def missing_checkpoint(name):
    from vortex_jupyter.errors import ModelError

    raise ModelError(f"checkpoint {name!r} not found", hint="put it in models/checkpoints")


def segfault(a):
    ctypes.string_at(0)


def exit3(a):
    os._exit(3)


def sleeps(seconds):
    time.sleep(seconds)
    return (seconds,)


def hangs_deaf(seconds):
    """Ignores every polite stop: only SIGKILL ends it."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGTERM})
    time.sleep(seconds)
    return (seconds,)


def allocates(mib):
    return (np.ones(mib * 2**20 // 8).sum(),)


def prints(mib):
    line = "x" * 1023 + "\n"
    for _ in range(mib * 1024):
        sys.stdout.write(line)
    sys.stdout.flush()
    print("the end", file=sys.stderr)
    return (mib,)


def steps(n):
    ctx = context.current()
    for i in range(n):
        ctx.raise_if_cancelled()
        ctx.progress(i + 1, n)
        ctx.preview(np.full((8, 8, 3), i / n, dtype=np.float32))
        time.sleep(0.06)
    ctx.preview(np.zeros((4, 4, 3), np.uint8), final=True)
    return NodeResult((n,), {"images": [{"filename": "x.png", "subfolder": "", "type": "output"}]})


def fast_steps(n):
    """Step previews faster than the worker's preview interval: step i is an image of value i."""
    ctx = context.current()
    for i in range(n):
        ctx.preview(np.full((8, 8, 3), i, dtype=np.uint8))
    return (n,)


# ---- CUDA (tests/workers/test_cuda.py) -------------------------------------------------------
def pinned_probe(n):
    import torch

    from vortex_jupyter.workers import shm

    block = torch.from_numpy(shm.empty((n,), np.float32))
    return (bool(block.is_pinned()), torch.cuda.device_count())


def cuda_output(n):
    import torch

    return (torch.arange(n, dtype=torch.float32, device="cuda") * 2,)


def h2d(n):
    import time

    import torch

    from vortex_jupyter.workers import shm

    src = torch.from_numpy(shm.empty((n,), np.float32)).fill_(1.0)
    src.to("cuda")
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    dst = src.to("cuda", non_blocking=True)
    torch.cuda.synchronize()
    return (float(dst.sum().item()), time.perf_counter() - t0)


def scaled_total(x, k=1.0):
    return (float(np.asarray(x).sum()) * k,)


def torch_workload(reps=10):
    """A fixed CPU torch workload (conv + matmul) and how long it took, measured where it ran."""
    import torch

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 32, 64, 64, generator=gen)
    w = torch.randn(32, 32, 3, 3, generator=gen)
    a, b = torch.randn(192, 192, generator=gen), torch.randn(192, 192, generator=gen)
    t0 = time.perf_counter()
    for _ in range(reps):
        torch.nn.functional.conv2d(x, w, padding=1)
        a @ b
    return (time.perf_counter() - t0,)


def modules_loaded(names):
    """{name: (imported?, pid that imported it or None)} as seen by the worker."""
    out = {}
    for name in names:
        mod = sys.modules.get(name)
        out[name] = [mod is not None, getattr(mod, "IMPORTED_BY", None), os.getpid()]
    return (out,)


def torch_threads():
    import torch

    return (torch.get_num_threads(),)


def env_value(name):
    import os

    return (os.environ.get(name, "<unset>"),)


# ---- hostile and broken nodes (tests/workers/test_hardening.py) -------------------------------
def closes_fds(a):
    """Closes fds 0-10: stdin, the log, and the worker's socket among them."""
    for fd in range(11):
        with contextlib.suppress(OSError):
            os.close(fd)
    return (a,)


def socket_fds():
    out = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                out.append(int(name))
        except OSError:
            pass
    return out


def writes_socket(a):
    """Writes garbage on every socket it has: the worker's connection to the kernel included."""
    for fd in socket_fds():
        with contextlib.suppress(OSError):
            os.write(fd, b"garbage!" * 8)
    return (a,)


def starts_sleeps(seconds):
    """Three ways a node leaves a process behind: a child, a child in its own session, and
    a double-forked daemon (its parent exits at once). Returns their pids."""
    import subprocess

    child = subprocess.Popen(["sleep", str(seconds)])
    session = subprocess.Popen(["sleep", str(seconds)], start_new_session=True)
    out = subprocess.run(["sh", "-c", f"setsid sleep {seconds} >/dev/null 2>&1 & echo $!"],
                         capture_output=True, text=True, check=True)
    return ([child.pid, session.pid, int(out.stdout.strip())],)


def forks_child_returns(a):
    """fork(): the child comes back from the node as if it were the worker; the parent waits."""
    pid = os.fork()
    if pid:
        os.waitpid(pid, 0)
    return (a * 2,)


def forks_and_exits(a):
    """fork(), then the worker (the parent) exits; the child comes back from the node."""
    if os.fork():
        os._exit(0)
    time.sleep(0.2)
    return (a,)


def execs_sleeper(seconds):
    """Replaces the worker's program (its socket closes: close-on-exec) with a sleeping one."""
    os.execv(sys.executable, [sys.executable, "-c", f"import time; time.sleep({seconds})"])


def execs_itself(a):
    """Execs the worker's own command line again."""
    os.execv(sys.executable, [sys.executable, *sys.argv])


def ignores_sigterm(seconds):
    """Ignores SIGTERM and the polite interrupt: only SIGKILL stops it."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    time.sleep(seconds)
    return (seconds,)


def touches(gib, chunk_mib=256):
    """Touches ``gib`` GiB, ``chunk_mib`` at a time, keeping all of it."""
    held = []
    for _ in range(int(gib * 1024 // chunk_mib)):
        held.append(np.ones(chunk_mib * 2**20, np.uint8))
    return (len(held),)


def bare_memory_error(a):
    raise MemoryError()


def slow_add(a, b, seconds=1.0):
    time.sleep(seconds)
    return (a + b,)


def pid():
    return (os.getpid(),)


# ---- sandbox (tests/workers/test_sandbox.py) -------------------------------------------------
def secret(token, mib=1):
    """An output in this worker's arena made of ``token`` repeated."""
    from vortex_jupyter.workers import shm

    pattern = np.frombuffer(bytes.fromhex(token), np.uint8)
    out = shm.empty((mib * 2**20 // len(pattern), len(pattern)), np.uint8)
    out[:] = pattern
    return (out,)


def _scan(read, token: bytes, limit: int = 256 * 2**20) -> bool:
    """Whether ``read(offset, n)`` returns ``token`` anywhere in its first ``limit`` bytes."""
    at, tail = 0, b""
    while at < limit:
        try:
            block = read(at, 4 * 2**20)
        except OSError:
            return False
        if not block:
            return False
        if token in tail + block:
            return True
        tail, at = block[-len(token):], at + len(block)
    return False


def snoop(token, pids):
    """Everything a hostile node can try to find another graph's output: every file in
    /dev/shm, every descriptor of every process it can open, the memory of ``pids``
    (shared mappings listed in their maps). Returns where ``token`` was found and what it
    could not open."""
    token_b = bytes.fromhex(token)
    found, denied = [], []

    def scan_file(path):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as exc:
            denied.append(f"{path}: {exc.strerror}")
            return
        try:
            if not os.path.isfile(f"/proc/self/fd/{fd}") and not os.readlink(f"/proc/self/fd/{fd}").startswith(
                    ("/memfd:", "/dev/shm")):
                return
            if _scan(lambda off, n: os.pread(fd, n, off), token_b):
                found.append(path)
        finally:
            os.close(fd)

    def listing(folder, instead):  # a Landlock sandbox (issue 12) denies the listings themselves
        try:
            return os.listdir(folder)
        except OSError as exc:
            denied.append(f"{folder}: {exc.strerror}")
            return instead

    for name in listing("/dev/shm", []):
        scan_file(f"/dev/shm/{name}")
    me = os.getpid()
    for pid in [p for p in listing("/proc", [str(p) for p in pids]) if p.isdigit() and int(p) != me]:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError as exc:
            denied.append(f"/proc/{pid}/fd: {exc.strerror}")
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError as exc:
                denied.append(f"/proc/{pid}/fd/{fd}: {exc.strerror}")
                continue
            if target.startswith(("/memfd:", "/dev/shm")):
                scan_file(f"/proc/{pid}/fd/{fd}")
    for pid in pids:
        try:
            with open(f"/proc/{pid}/maps") as f:
                regions = [line.split() for line in f]
            mem = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
        except OSError as exc:
            denied.append(f"/proc/{pid}/mem: {exc.strerror}")
            continue
        try:
            for r in regions:
                if len(r) >= 6 and (r[5].startswith(("/memfd:", "/dev/shm"))):
                    lo, hi = (int(x, 16) for x in r[0].split("-"))
                    if _scan(lambda off, n, lo=lo, hi=hi, mem=mem: os.pread(mem, min(n, hi - lo - off), lo + off)
                             if off < hi - lo else b"", token_b):
                        found.append(f"/proc/{pid}/mem {r[5]}")
        finally:
            os.close(mem)
    return ({"found": found, "denied": denied},)


def scaled(x, k=2.0, seconds=0.0):
    """An array from an array (a chain's middle link); ``seconds``: sleep first."""
    time.sleep(seconds)
    return (np.asarray(x) * k,)


def busy(seconds, seed=0):
    """Pure-Python CPU work for about ``seconds`` (one core, the GIL held): a branch to spread."""
    end = time.perf_counter() + seconds
    n, acc = 0, seed
    while time.perf_counter() < end:
        for i in range(2000):
            acc = (acc * 31 + i) % 1_000_003
        n += 1
    return (acc,)


def uses_model(m, i=0):
    """A sampler's stand-in: takes the model (it must be the real object, on its worker)."""
    assert isinstance(m, ModelHandle), type(m)
    return (f"{m!r} #{i}",)


def ram_budget():
    """This worker's memory arbiter's host RAM budget."""
    from vortex_jupyter.workers.arbiter import get_arbiter

    return (get_arbiter().budget("cpu"),)


def slow_model(seconds):
    """A model that takes ``seconds`` to load."""
    time.sleep(seconds)
    return (ModelHandle(),)


class LoadedModel:
    """A model that remembers which worker process loaded it."""

    def __init__(self):
        self.pid = os.getpid()


def logged_model(seconds, log, only_first=False):
    """Loads a model in ``seconds``, appending this worker's pid to ``log``; with
    ``only_first``, a second worker's load fails (e.g. its GPU is out of memory)."""
    if only_first and os.path.exists(log) and Path(log).read_text().split() != [str(os.getpid())]:
        raise MemoryError("no room for a second copy of the model")
    time.sleep(seconds)
    with open(log, "a") as f:
        f.write(f"{os.getpid()}\n")
    return (LoadedModel(),)


def samples_with(m, i, seconds):
    """A sampler's stand-in: the model it gets was loaded in this very process."""
    assert isinstance(m, LoadedModel) and m.pid == os.getpid(), (type(m), getattr(m, "pid", None), os.getpid())
    time.sleep(seconds)
    return (np.full(64, float(i)),)


def cuda_join(a, b):
    """Where two tensor inputs arrived (a node on a GPU worker), and their total."""
    return (a.device.type, b.device.type, float(a.double().sum() + b.double().sum()))
