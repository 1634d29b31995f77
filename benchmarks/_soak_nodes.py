"""What ``soak.py`` runs: node functions (good ones with known outputs, one per fault it
injects), the fault table, and the batches built from them with what each node must end with.

The node functions are shipped to the workers by value (``cloudpickle.register_pickle_by_value``), as notebook
functions are. Every fault first appends a line to its ``mark`` file -- ``<name> <monotonic
time> <worker uid> [pids...]`` -- so the kernel knows when (``CLOCK_MONOTONIC`` is one clock
for every process) and in which worker it struck, and which processes it started. A fault
that the kernel re-runs (a suspect, see ``workers/batch.py``) appends a second line.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vortex_jupyter.engine.executor import Lit, Ref, Task
from vortex_jupyter.nodes.spec import NodeSpec, OutputSpec

#: how long the processes a node starts would live if nothing killed them (seconds)
SLEEPER_SECONDS = 900


def _mark(mark: str, name: str, *extra: int) -> None:
    line = " ".join([name, repr(time.monotonic()), os.environ.get("VORTEX_WORKER", "?"), *map(str, extra)])
    with open(mark, "a") as f:
        f.write(line + "\n")


# ---- good nodes ---------------------------------------------------------------------------------
def const(value):
    return (value,)


def add(a, b):
    return (a + b,)


def arange(n):
    """An array in the worker's arena: held there, lost with its worker."""
    from vortex_jupyter.workers import shm

    out = shm.empty((n,), "int64")
    out[:] = np.arange(n, dtype="int64")
    return (out,)


def total(x):
    return (int(np.asarray(x).sum()),)


# ---- faults that fail their node (the worker lives) ---------------------------------------------
def raises(mark, a):
    _mark(mark, "raises")
    raise ValueError(f"bad value {a}")


def bare_memory_error(mark, a):
    _mark(mark, "memory_error")
    raise MemoryError()


# ---- faults that kill their worker --------------------------------------------------------------
def segfault(mark, a):
    _mark(mark, "segfault")
    ctypes.string_at(0)


def exit3(mark, a):
    _mark(mark, "exit3")
    os._exit(3)


def deaf(mark, a):
    """Ignores SIGTERM and the polite interrupt: past its timeout only SIGKILL stops it."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    _mark(mark, "timeout")
    time.sleep(30)
    return (a,)


def hog(mark, a, cap_mib=1536):
    """Touches memory 16 MiB at a time (keeping it) until the pool's limit stops it."""
    _mark(mark, "memory_limit")
    held = [np.ones(16 * 2**20, np.uint8) for _ in range(cap_mib // 16)]
    time.sleep(30)  # not stopped at the cap: the benchmark sees the task's timeout instead
    return (len(held),)


def closes_fds(mark, a):
    _mark(mark, "close_fds")
    for fd in range(11):
        with contextlib.suppress(OSError):
            os.close(fd)
    return (a,)


def writes_socket(mark, a):
    """Garbage on every socket it has: the worker's connection to the kernel among them."""
    _mark(mark, "garbage")
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError, ValueError):
            if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                os.write(int(name), b"garbage!" * 8)
    return (a,)


def forks_and_exits(mark, a):
    """The worker exits after a fork; its child comes back from the node."""
    _mark(mark, "fork_exit")
    if os.fork():
        os._exit(0)
    time.sleep(0.2)
    return (a,)


def execs_itself(mark, a):
    _mark(mark, "exec_self")
    os.execv(sys.executable, [sys.executable, *sys.argv])


def execs_sleeper(mark, a):
    _mark(mark, "exec_sleeper")
    os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(30)"])


def _sleepers() -> list[int]:
    """A child, a child in its own session and a double-forked daemon; their pids."""
    child = subprocess.Popen(["sleep", str(SLEEPER_SECONDS)])
    session = subprocess.Popen(["sleep", str(SLEEPER_SECONDS)], start_new_session=True)
    out = subprocess.run(["sh", "-c", f"setsid sleep {SLEEPER_SECONDS} >/dev/null 2>&1 & echo $!"],
                         capture_output=True, text=True, check=True)
    return [child.pid, session.pid, int(out.stdout.strip())]


def spawns_then_crashes(mark, a):
    _mark(mark, "spawn_crash", *_sleepers())
    ctypes.string_at(0)


def sleeps_flagged(mark, a, seconds=5.0):
    """Says it runs (the kernel then SIGKILLs its worker from outside), then sleeps."""
    _mark(mark, "kill_running", os.getpid())
    time.sleep(seconds)
    return (a,)


# ---- hostile nodes that must finish (the worker lives on) ---------------------------------------
def forks_child_returns(mark, a):
    """fork(): the child comes back from the node as if it were the worker; the parent waits."""
    _mark(mark, "fork_child")
    pid = os.fork()
    if pid:
        os.waitpid(pid, 0)
    return (a * 2,)


def starts_sleepers(mark, a):
    """Leaves three processes behind; they must die with this worker, whenever it dies."""
    _mark(mark, "spawn", *_sleepers())
    return (a,)


# ---- the fault table and the batches built from the nodes ---------------------------------------
def _spec(fn: Callable[..., Any], timeout: float | None = None) -> NodeSpec:
    return NodeSpec(fn.__name__, (), (OutputSpec("out0", "*"),), fn=fn, timeout=timeout)


@dataclass(frozen=True)
class Fault:
    spec: NodeSpec | None  #: None: done from outside, before the run
    code: str | None  #: the code its node fails with (None: it must finish)
    #: how its worker dies: "" it lives, "node" by the node's hand, "kernel" killed by the
    #: kernel (timeout, memory limit), "outside" SIGKILLed by this benchmark
    death: str
    value: Callable[[int], int] = lambda a: a  #: its output when it must finish


FAULTS = {
    "raises": Fault(_spec(raises), "VE-500", ""),
    "memory_error": Fault(_spec(bare_memory_error), "VE-503", ""),
    "segfault": Fault(_spec(segfault), "VE-502", "node"),
    "exit3": Fault(_spec(exit3), "VE-502", "node"),
    "close_fds": Fault(_spec(closes_fds), "VE-502", "node"),
    "garbage": Fault(_spec(writes_socket), "VE-502", "node"),
    "fork_exit": Fault(_spec(forks_and_exits), "VE-502", "node"),
    "exec_self": Fault(_spec(execs_itself), "VE-502", "node"),
    "exec_sleeper": Fault(_spec(execs_sleeper), "VE-502", "node"),
    "spawn_crash": Fault(_spec(spawns_then_crashes), "VE-502", "node"),
    "kill_running": Fault(_spec(sleeps_flagged, 20.0), "VE-502", "outside"),
    "timeout": Fault(_spec(deaf, 0.2), "VE-501", "kernel"),
    "memory_limit": Fault(_spec(hog, 20.0), "VE-503", "kernel"),
    "fork_child": Fault(_spec(forks_child_returns), None, "", lambda a: 2 * a),
    "spawn": Fault(_spec(starts_sleepers), None, ""),
    "kill_idle": Fault(None, None, "outside"),
}
GOOD = {fn.__name__: _spec(fn) for fn in (const, add, arange, total)}


# ---- a run's plan: tasks, and what each must end with --------------------------------------------
@dataclass
class Node:
    task: Task
    fault: str = ""
    array: bool = False  #: its output stays in the worker (its expected "value" is the length)


@dataclass
class Plan:
    index: int
    nodes: list[Node]
    faults: list[str]
    mark: str
    #: node id -> ("ok", value) or ("fail", code), as the blame policy has it (``expect``)
    expected: dict[str, tuple[str, Any]] = field(default_factory=dict)

    def fires(self, fault: str) -> bool:
        """Whether ``fault`` runs at all (not below a failed node)."""
        return fault == "kill_idle" or any(n.fault == fault and self.expected[n.task.node_id] != ("fail", "VE-505")
                                           for n in self.nodes)


_VALUE: dict[str, Callable[..., Any]] = {
    "const": lambda value: value, "add": lambda a, b: a + b, "arange": lambda n: n,
    "total": lambda x: x * (x - 1) // 2,  # x: the array's length
}


def expect(plan: Plan, finished: frozenset[str] = frozenset()) -> dict[str, tuple[str, Any]]:
    """What each node must end with: a node below a failed one fails with VE-505, a fault's
    node with its code -- unless it is in ``finished`` (it ran again and finished: then its
    output, and what depends on it, are computed like a good node's)."""
    out: dict[str, tuple[str, Any]] = {}
    by_key: dict[str, tuple[str, Any]] = {}
    for node in plan.nodes:
        args: dict[str, Any] = {}
        for name, arg in node.task.args.items():
            args[name] = by_key[arg.key] if isinstance(arg, Ref) else ("ok", arg.value)
        if any(v[0] != "ok" for v in args.values()):
            got: tuple[str, Any] = ("fail", "VE-505")
        elif node.fault:
            fault = FAULTS[node.fault]
            ok = fault.code is None or node.task.node_id in finished
            got = ("ok", fault.value(args["a"][1])) if ok else ("fail", fault.code)
        else:
            got = ("ok", _VALUE[node.task.spec.type](**{k: v[1] for k, v in args.items()}))
        out[node.task.node_id] = by_key[node.task.key] = got
    return out


def _wire(rng: random.Random, numeric: list[Node]) -> Lit | Ref:
    """An int input: a literal, or (60%) a ref to an earlier node with an int output."""
    if numeric and rng.random() < 0.6:
        return Ref(rng.choice(numeric).task.key, 0)
    return Lit(rng.randint(0, 999))


def _node(plan: Plan, nid: str, spec: NodeSpec, args: dict[str, Lit | Ref], **kw: Any) -> Node:
    node = Node(Task(nid, f"{plan.index}:{nid}", spec, args, run_id=str(plan.index)), **kw)
    plan.nodes.append(node)
    return node


def _good(rng: random.Random, plan: Plan, nid: str, numeric: list[Node], arrays: list[Node]) -> Node:
    r = rng.random()
    if r < 0.15:
        return _node(plan, nid, GOOD["arange"], {"n": Lit(rng.randint(1, 4096))}, array=True)
    if r < 0.3 and arrays:
        return _node(plan, nid, GOOD["total"], {"x": Ref(rng.choice(arrays).task.key, 0)})
    if r < 0.7 and numeric:
        return _node(plan, nid, GOOD["add"], {"a": _wire(rng, numeric), "b": Lit(rng.randint(0, 999))})
    return _node(plan, nid, GOOD["const"], {"value": Lit(rng.randint(0, 999))})


def plan_run(rng: random.Random, index: int, faults: list[str], mark: str) -> Plan:
    """3-8 nodes; the faults (but ``kill_idle``) at random places, wired like good nodes."""
    plan = Plan(index, [], faults, mark)
    in_batch = [f for f in faults if f != "kill_idle"]
    size = rng.randint(max(3, len(in_batch)), 8)
    at = dict(zip(rng.sample(range(size), len(in_batch)), in_batch))
    numeric: list[Node] = []
    arrays: list[Node] = []
    for pos in range(size):
        nid = f"n{pos}"
        if pos in at:
            spec = FAULTS[at[pos]].spec
            assert spec is not None
            node = _node(plan, nid, spec, {"mark": Lit(mark), "a": _wire(rng, numeric)}, fault=at[pos])
        else:
            node = _good(rng, plan, nid, numeric, arrays)
        (arrays if node.array else numeric).append(node)
    plan.expected = expect(plan)
    return plan


def pick_faults(rng: random.Random, rate: float) -> list[str]:
    """No fault (1 - rate), else one, or (15% of those) two different ones."""
    if rng.random() >= rate:
        return []
    return rng.sample(sorted(FAULTS), 2 if rng.random() < 0.15 else 1)
