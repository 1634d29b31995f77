"""``VORTEX_SANDBOX=strict``: graphs of different owners cannot see each other (issue 10).

Each check runs in a kernel of its own (a subprocess): a strict pool makes its kernel
non-dumpable for good, which the rest of the test session must not inherit. The hostile
node (``nodes_lib.snoop``) tries everything a node of the same user can: every file in
``/dev/shm``, every descriptor of every process through ``/proc/<pid>/fd``, and the memory of
the other graph's worker and of the kernel through ``/proc/<pid>/mem``. Without the sandbox
it finds the other graph's output (the test can fail); with it, nowhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

KERNEL = textwrap.dedent("""
    import json, os, secrets, sys, cloudpickle
    sys.path.insert(0, {tests!r})
    from workers import nodes_lib
    cloudpickle.register_pickle_by_value(nodes_lib)
    from workers.conftest import FAST, run, task
    from vortex_jupyter.workers.pool import WorkerPool
    from vortex_jupyter.workers.executor import WorkerExecutor
    from vortex_jupyter.workers.supervisor import PoolConfig
    a = WorkerPool(PoolConfig(**FAST, sandbox={mode!r}))
    b = WorkerPool(PoolConfig(**FAST, sandbox={mode!r}))
    ex_a, ex_b = WorkerExecutor(a), WorkerExecutor(b)
    token = secrets.token_hex(16)
    rec = run(ex_a, [task("secret", nodes_lib.secret, token=token)])
    seen = ex_a.fetch(rec.results["secret"][0])  # the kernel maps A's segment too
    assert bytes(seen[0]).hex() == token
    pid_a = a.worker(0).pid
    snoop = run(ex_b, [task("snoop", nodes_lib.snoop, token=token, pids=[pid_a, os.getpid()])])
    out = ex_b.fetch(snoop.results["snoop"][0])
    shm = [n for n in os.listdir("/dev/shm") if n.startswith(a.supervisor.shm_prefix)]
    print(json.dumps(dict(out, workers=[pid_a, b.worker(0).pid], shm=shm)), flush=True)
    a.close(); b.close()
""")


def _kernel(mode: str) -> dict:
    tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", KERNEL.format(tests=tests, mode=mode)], capture_output=True,
                          text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_without_the_sandbox_a_node_of_another_pool_can_read_an_output():
    """The baseline that proves the snoop works: named segments are there for anyone."""
    out = _kernel("")
    assert out["found"], out
    assert out["shm"]  # A's arena has names in /dev/shm


def test_under_strict_a_node_of_another_owner_finds_the_output_nowhere():
    out = _kernel("strict")
    assert out["found"] == [], out
    assert out["shm"] == []  # memfd segments: no names at all
    assert out["workers"][0] != out["workers"][1]
    denied = "\n".join(out["denied"])
    for pid in out["workers"][:1]:  # the other graph's worker: its descriptors and memory are closed
        assert f"/proc/{pid}/fd" in denied and f"/proc/{pid}/mem" in denied, denied


GRAPHS = textwrap.dedent("""
    import os
    import vortex_jupyter as vx
    @vx.node(category="test")
    def worker_pid(seed: int = 0) -> int:
        return os.getpid()
    def pid_of(g):
        n = next(iter(g.model.nodes))
        return g.run().outputs[n][0]
    g1, g2, g3 = vx.Graph(), vx.Graph(), vx.Graph()
    for i, g in enumerate((g1, g2, g3)):
        g.add("worker_pid", seed=i)
    g3.owner = "team"
    g4 = vx.Graph(); g4.add("worker_pid", seed=4); g4.owner = "team"
    print(pid_of(g1), pid_of(g2), pid_of(g3), pid_of(g4), os.getpid())
""")


@pytest.mark.parametrize("mode", ["strict", ""])
def test_graphs_of_different_owners_get_different_workers_only_under_strict(tmp_path, mode):
    script = tmp_path / "graphs.py"
    script.write_text(GRAPHS)
    env = {**os.environ, "VORTEX_SANDBOX": mode, "VORTEX_NO_TORCH_PRELOAD": "1"}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=240,
                          cwd=tmp_path, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    p1, p2, p3, p4, kernel = (int(x) for x in proc.stdout.split())
    assert kernel not in (p1, p2, p3, p4)  # the work ran in workers
    if mode == "strict":
        assert len({p1, p2, p3}) == 3 and p3 == p4  # an owner per graph, unless they share one
    else:
        assert p1 == p2 == p3 == p4  # one user's notebook: one pool
