"""What a worker's death means: whom to blame (``judge``) and the deadlines that kill (``Watch``).

``judge`` decides from what is *known*, never from a guess (the policy is the batch module's
docstring): the kernel's own kill reason, the worker's status words (which task of which batch
it ran, and whether a node broke its socket), how the process ended, and the system's OOM-kill
count. It returns a ``Verdict``; ``batch._Batch`` applies it (fails the victim, marks suspects,
counts arrivals).
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field

from ..engine.executor import Task
from . import protocol as p
from .process import WorkerProcess

KILLS = {  # the kernel's kill reason -> (code, error type)
    "timeout": ("VE-501", "NodeTimeoutError"),
    "oom": ("VE-503", "NodeOutOfMemoryError"),
    "cancel": ("VE-504", "RunCancelledError"),
}


def task_timeout(task: Task) -> float | None:
    return task.spec.timeout if task.spec.timeout is not None else task.timeout


def where(task: Task) -> str:
    return f"node {task.node_id!r} ({task.spec.type})"


@dataclass
class Verdict:
    how: str
    reason: str
    #: the worker had taken the segment up (or reported some of it)
    started: bool
    victim: Task | None = None
    code: str = "VE-502"
    error_type: str = "WorkerCrashedError"
    message: str = ""
    #: nodes that were in flight at an uncertain death: each runs again alone
    suspects: list[Task] = field(default_factory=list)
    #: nothing of the segment ran: the worker was dead on arrival
    arrival: bool = False


def judge(w: WorkerProcess, bid: int, tasks: list[Task], i: int, watched: int, alone_again: bool,
          memory_limit: int | None) -> Verdict:
    """``tasks[:i]`` were reported when worker ``w`` died under segment ``bid``; ``watched``:
    the task the kernel's deadlines followed; ``alone_again``: the segment is one suspect run
    alone after an uncertain death."""
    how = w.describe_death()  # waits briefly for the exit status
    reason = w.kill_reason or ""
    n = len(tasks)
    batch, index, fault, culprit = w.death_words or w.words()
    if not w.has_status:  # nothing better known: the first unreported task
        batch, index = bid, i
    started = batch == bid and index >= 0
    running = min(n - 1, max(i, index))
    v = Verdict(how, reason, i > 0 or started)
    if reason in KILLS:  # the kernel killed it, for a node it knows
        if started or reason == "timeout":
            v.victim = tasks[min(n - 1, max(i, watched)) if reason == "timeout" else running]
            v.message = death_message(v.victim, how, reason, memory_limit)
        v.code, v.error_type = KILLS[reason]
    elif fault == p.FAULT_CHANNEL_BROKEN and batch == bid and i <= culprit < n:
        v.victim = tasks[culprit]
        v.message = (f"{where(v.victim)} closed or replaced its worker's connection to the kernel (its socket "
                     "file descriptor); the worker was restarted and the other nodes ran on")
    elif not started and i == 0:
        v.arrival = True
    elif uncertain(w, reason, fault):
        if alone_again:  # ran alone and broke its worker again
            v.victim = tasks[0]
            v.message = (f"worker {how} while running {where(v.victim)}, for the second time: the first time "
                         "several nodes were in flight, so it ran again alone and broke its worker again")
        else:  # the reports in flight and the status words read late span tasks[i:running+1]
            v.suspects = tasks[i:running + 1]
    else:  # it died by itself (a signal, an exit code) while the status words named a node
        v.victim = tasks[running]
        if w.oom_killed:
            v.code, v.error_type = "VE-503", "NodeOutOfMemoryError"
            v.message = (f"{where(v.victim)} ran out of memory: its worker {how} and was restarted "
                         "(make the node use less memory, e.g. smaller images or batches, or free memory)")
        else:
            v.message = death_message(v.victim, how, reason, memory_limit)
    return v


def uncertain(w: WorkerProcess, reason: str, fault: int) -> bool:
    """Whether the process may have gone on after whatever broke it (so the status words,
    read now, may name a later node than the one that did it)."""
    if reason == "protocol" or fault == p.FAULT_GAVE_UP:
        return True
    # not exited within the wait (alive without a connection), or killed by us while it
    # still ran (bury kills a worker whose socket died): its status words may have moved on
    status = w.exit_status
    if status is None:
        return True
    return (w.killed_alive and os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
            and not w.oom_killed)


def death_message(task: Task, how: str, reason: str, memory_limit: int | None) -> str:
    at = where(task)
    if reason == "timeout":
        return (f"{at} did not finish within its timeout of {task_timeout(task)} s and did not stop when "
                "asked; its worker was killed and restarted (raise @vx.node(timeout=...) or "
                "run(node_timeout=...) if it needs longer)")
    if reason == "oom":
        limit = (memory_limit or 0) / 2**20
        return (f"{at} ran out of memory: its worker {how} of {limit:.0f} MiB and was restarted "
                "(raise PoolConfig.memory_limit or VORTEX_WORKER_MEMORY, or make the node use less memory)")
    if reason == "cancel":
        return f"run cancelled; {at} did not stop in time and its worker was killed"
    return f"worker {how} while running {at}; the worker was restarted"


class Watch:
    """Deadlines of one segment: the running node's timeout and the kill escalation.

    A node's timeout counts from when the worker starts it, not from when the kernel sent
    the batch: a worker still importing its ``late_preload`` (a fresh or respawned one) leaves
    the batch waiting, and the node must not pay that wait. (It once did: the run after a
    timeout went to the respawned worker, whose imports took longer than the node's timeout,
    and a 0.2 s node was killed for "not stopping when asked" a Cancel sent before it began.)"""

    def __init__(self, w: WorkerProcess, batch: int, grace: float) -> None:
        self.w, self.batch, self.grace = w, batch, grace
        self.index = -1
        #: the worker has started ``index`` (its deadline is set)
        self.begun = False
        self.next_check = 0.0
        self.deadline: float | None = None
        self.kill_at: float | None = None
        self.kill_sig = signal.SIGTERM
        self.cancel_sent = False
        self.timed_out = False

    def start(self, index: int, timeout: float | None) -> None:
        """Task ``index`` started (as far as the kernel can tell, within a poll interval)."""
        self.index, self.begun = index, True
        self.deadline = None if not timeout else time.monotonic() + timeout
        if not self.cancel_sent:
            self.kill_at, self.timed_out = None, False

    def wait_time(self) -> float:
        """How long the batch loop may wait for a report: until the next deadline, at most 50 ms.
        A deadline that already fired does not count: it made this 0 until the kill, so the
        loop never read the socket and a node that stopped politely was killed anyway."""
        now = time.monotonic()
        deadline = None if self.timed_out else self.deadline
        nxt = min([t for t in (deadline, self.kill_at) if t is not None], default=now + 0.05)
        return max(0.0, min(nxt - now, 0.05))

    def check(self, cancelled: bool, node: str) -> None:
        now = time.monotonic()
        self.next_check = now + 0.01
        if cancelled and not self.cancel_sent:
            self.cancel_sent = True
            self._ask(p.Cancel(self.batch, "", "cancel"), "cancel")
        if self.deadline is not None and now >= self.deadline and not self.timed_out:
            self.timed_out = True
            self._ask(p.Cancel(self.batch, node, "timeout"), "timeout")
        if self.kill_at is not None and now >= self.kill_at:
            self.w.kill(self.reason, self.kill_sig)
            self.kill_sig, self.kill_at = signal.SIGKILL, now + 0.25

    def _ask(self, msg: p.Cancel, reason: str) -> None:
        self.reason = reason
        self.w.send(msg)
        self.kill_at = time.monotonic() + self.grace

