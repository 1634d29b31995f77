"""The worker sandbox (issue 12, part 5): real hostile nodes on real sandboxed workers.

Each attack runs in its own batch beside an independent node, through the worker pool, in a
kernel of its own (a subprocess: a strict pool makes its kernel non-dumpable for good). Under
``strict`` each attack fails with VE-506 naming what it tried while the independent node
finishes and the worker, its fork server and the kernel live on; with the sandbox off the
*same* node succeeds, so the tests prove the sandbox and not a broken node. HOME is a temp
folder with a fake ``~/.ssh/id_rsa``; a TCP listener on 127.0.0.1 is the test's own.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from vortex_jupyter.errors import SandboxViolation, VortexError
from vortex_jupyter.workers import audit, sandbox

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or not sandbox.capabilities()["landlock_abi"]
                                or not sandbox.capabilities()["seccomp"], reason="needs Landlock and seccomp")

KERNEL = textwrap.dedent("""
    import json, os, secrets, socket, sys, threading, cloudpickle
    sys.path.insert(0, {tests!r})
    from workers import hostile_nodes as h
    cloudpickle.register_pickle_by_value(h)
    from workers.conftest import FAST, run, task
    from vortex_jupyter.workers.pool import WorkerPool
    from vortex_jupyter.workers.executor import WorkerExecutor
    from vortex_jupyter.workers.supervisor import PoolConfig
    mode, tmp = {mode!r}, {tmp!r}
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted = []
    threading.Thread(target=lambda: [accepted.append(listener.accept()) for _ in range(9)], daemon=True).start()
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(tmp + "/service.sock")
    unix.listen(8)
    victim = WorkerPool(PoolConfig(**FAST, sandbox=mode))
    pool = WorkerPool(PoolConfig(**{{**FAST, "preload": ("numpy", "torch")}}, sandbox=mode))
    ex_v, ex = WorkerExecutor(victim), WorkerExecutor(pool)
    token = secrets.token_hex(16)
    assert "secret" in run(ex_v, [task("secret", h.secret, token=token)]).finished()
    vpid = victim.worker(0).pid
    kill = 9 if mode else 18  # off: SIGCONT (9 would really kill the fork server, and the worker with it)
    attacks = dict(
        ssh=(h.reads_file, dict(path="~/.ssh/id_rsa")), shadow=(h.reads_file, dict(path="/etc/shadow")),
        write_outside=(h.writes_file, dict(path=tmp + "/elsewhere/notes.txt")),
        connect=(h.connects, dict(port=port)), unix=(h.connects_unix, dict(path=tmp + "/service.sock")),
        subprocess=(h.runs_subprocess, {{}}),
        os_system=(h.runs_os_system, {{}}), kill_parent=(h.signals_parent, dict(sig=kill)),
        shm_by_name=(h.reads_shm_by_name, dict(prefix=victim.supervisor.shm_prefix, token=token)),
        proc_fds=(h.lists_fds_of, dict(pid=vpid)),
        ctypes_open=(h.ctypes_open, dict(path="~/.ssh/id_rsa")), ctypes_connect=(h.ctypes_connect, dict(port=port)),
        ctypes_kill=(h.ctypes_kill_parent, dict(sig=kill)), ctypes_fork=(h.ctypes_fork, {{}}),
        torch=(h.tensor_op, dict(n=64)), model=(h.reads_model, dict(name="tiny.safetensors")),
        output=(h.saves_output, dict(name="out.txt")),
    )
    out = {{}}
    for name, (fn, kw) in attacks.items():
        rec = run(ex, [task("attack", fn, **kw), task("free", h.const, value=7)])
        free = ex.fetch(rec.results["free"][0]) if "free" in rec.finished() else None
        if "attack" in rec.finished():
            out[name] = dict(value=ex.fetch(rec.results["attack"][0]), free=free)
        else:
            f = rec.failed("attack")
            out[name] = dict(code=f.code, message=f.message, free=free)
    forkserver = pool.supervisor.launcher
    out["_alive"] = dict(forkserver=forkserver.alive, victim=victim.worker(0).pid == vpid, kernel=os.getpid())
    print(json.dumps(out, default=str), flush=True)
    victim.close(); pool.close()
""")


def _setup(tmp) -> dict[str, str]:
    home = tmp / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nfake\n")
    (tmp / "elsewhere").mkdir()
    (tmp / "models" / "checkpoints").mkdir(parents=True)
    (tmp / "models" / "checkpoints" / "tiny.safetensors").write_bytes(b"\0" * 1234)
    return {**os.environ, "HOME": str(home), "VORTEX_MODELS_DIR": str(tmp / "models"),
            "VORTEX_OUTPUT_DIR": str(tmp / "output"), "VORTEX_TEMP_DIR": str(tmp / "temp"),
            "VORTEX_INPUT_DIR": str(tmp / "input"), "VORTEX_EXTRA_MODEL_PATHS": "",
            "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module", params=["strict", ""], ids=["strict", "off"])
def outcome(request, tmp_path_factory) -> tuple[str, dict]:
    tmp = tmp_path_factory.mktemp(f"sandbox-{request.param or 'off'}")
    tests = os.path.join(ROOT, "tests")
    proc = subprocess.run([sys.executable, "-c", KERNEL.format(tests=tests, mode=request.param, tmp=str(tmp))],
                          capture_output=True, text=True, timeout=300, check=False, env=_setup(tmp), cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return request.param, json.loads(proc.stdout.strip().splitlines()[-1])


def _check(outcome: tuple[str, dict], attack: str, *words: str) -> dict:
    mode, out = outcome
    got = out[attack]
    assert got["free"] == 7, got  # the rest of the graph finished either way
    if mode:
        assert got.get("code") == "VE-506", got
        for word in words:
            assert word in got["message"], got["message"]
        assert "VORTEX_SANDBOX=off" in got["message"]
    else:
        assert "value" in got, got  # the same node works without the sandbox
    return got


def test_reading_an_ssh_key_in_home_is_blocked(outcome):
    _check(outcome, "ssh", "open(", ".ssh/id_rsa') for reading")


def test_reading_etc_shadow_is_blocked(outcome):
    _check(outcome, "shadow", "open('/etc/shadow') for reading", "[tool.vortex.permissions] read")


def test_writing_outside_the_output_folder_is_blocked(outcome, tmp_path_factory):
    got = _check(outcome, "write_outside", "elsewhere/notes.txt') for writing")
    if outcome[0]:
        assert "[tool.vortex.permissions] write" in got["message"]


def test_connecting_to_a_tcp_port_on_localhost_is_blocked(outcome):
    got = _check(outcome, "connect", "network", "127.0.0.1:")
    if outcome[0]:
        assert "network = true" in got["message"]


def test_connecting_to_a_local_unix_socket_is_blocked(outcome):
    got = _check(outcome, "unix", "open a Unix socket")
    if outcome[0]:
        assert "network = true" in got["message"]


def test_subprocess_run_is_blocked(outcome):
    got = _check(outcome, "subprocess", "run a program (subprocess: ['true'])", "processes = true")
    assert outcome[0] or got["value"] == 0


def test_os_system_is_blocked(outcome):
    got = _check(outcome, "os_system", "run a program (os.system('true'))")
    assert outcome[0] or got["value"] == 0


def test_killing_the_parent_is_blocked_and_everything_survives(outcome):
    out = outcome[1]
    _check(outcome, "kill_parent", "send signal 9 to process")
    assert out["_alive"]["forkserver"] and out["_alive"]["victim"]  # the worker's parent lives on


def test_reading_another_workers_segment_by_name_is_blocked(outcome):
    got = _check(outcome, "shm_by_name", "list the folder '/dev/shm'")
    assert outcome[0] or got["value"] is True  # off: the other pool's output, found by name


def test_listing_another_workers_descriptors_is_blocked(outcome):
    got = _check(outcome, "proc_fds", "/fd'")
    assert got["value"] > 0 if not outcome[0] else "no permission allows this" in got["message"]


def test_libc_open_through_ctypes_is_still_blocked_and_named(outcome):
    _check(outcome, "ctypes_open", "call libc open(", "id_rsa", "through ctypes")


def test_libc_connect_through_ctypes_is_still_blocked_and_named(outcome):
    _check(outcome, "ctypes_connect", "call libc socket() through ctypes", "network = true")


def test_libc_kill_through_ctypes_is_still_blocked_and_named(outcome):
    _check(outcome, "ctypes_kill", "call libc kill(", "through ctypes")
    assert outcome[1]["_alive"]["forkserver"]


def test_a_raw_fork_syscall_through_ctypes_is_still_blocked(outcome):
    _check(outcome, "ctypes_fork", "call libc syscall() through ctypes", "fork(2)")


def test_torch_models_and_the_output_folder_work_inside_the_sandbox(outcome):
    out = outcome[1]
    assert out["torch"]["value"] == 64.0 * 64 * 64, out["torch"]
    assert out["model"]["value"] == 1234, out["model"]
    assert out["output"]["value"].endswith("output/out.txt"), out["output"]


# -- doctor ----------------------------------------------------------------------------------
def test_capabilities_say_what_this_machine_supports():
    caps = sandbox.capabilities()
    assert caps["landlock_abi"] >= 1 and caps["seccomp"] is True
    assert set(caps) == {"landlock_abi", "seccomp", "user_namespaces", "bubblewrap"}


def test_strict_on_a_machine_without_landlock_or_seccomp_is_a_clear_error():
    with pytest.raises(VortexError, match=r"VORTEX_SANDBOX=strict needs Landlock .* and seccomp filters") as err:
        sandbox.require({"landlock_abi": 0, "seccomp": False, "user_namespaces": True, "bubblewrap": None})
    assert "unset VORTEX_SANDBOX" in str(err.value)


def test_outside_a_sandbox_a_permission_error_stays_what_it_is():
    exc = PermissionError(13, "Permission denied", "/x")
    assert sandbox.translate(exc) is exc


def test_the_audit_hook_words_what_the_policy_forbids_and_notes_nothing_else(tmp_path):
    hook = audit.Hook(sandbox.Policy(), [str(tmp_path / "models")], [str(tmp_path / "output")])
    sandbox.begin_node()
    hook("open", (str(tmp_path / "models" / "a.safetensors"), "rb", 0))
    hook("open", (str(tmp_path / "output" / "a.png"), "wb", 0))
    assert getattr(audit.state, "action", None) is None
    hook("socket.__new__", (None, socket.AF_UNIX, socket.SOCK_STREAM, 0))  # could reach the kernel's listener
    assert audit.state.action[0] == "open a Unix socket (to reach a local service)"
    hook("open", (str(tmp_path / "models" / "a.safetensors"), "wb", 0))
    assert audit.state.action[0] == f"open({str(tmp_path / 'models' / 'a.safetensors')!r}) for writing"
    hook("socket.getaddrinfo", ("example.org", 443, 0, 0, 0))
    hook("socket.__new__", (None, socket.AF_INET, socket.SOCK_STREAM, 0))
    assert audit.state.action == ("open a network socket to connect to example.org:443",
                                  "a pack may ask for the network with [tool.vortex.permissions] network = true")
    with pytest.raises(SandboxViolation, match=r"os\.system"):
        hook("os.system", (b"true",))
    sandbox.begin_node()
