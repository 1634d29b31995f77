"""The wire protocol: typed round trips, and garbage that never crashes or hangs either side."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vortex_jupyter.errors import ProtocolError
from vortex_jupyter.workers import protocol as p
from vortex_jupyter.workers.process import WorkerProcess

from . import nodes_lib as n
from .conftest import run, task

SAMPLES = [
    p.Hello(p.VERSION, "0g0", 123, "cpu", ["numpy"], {"rss": 1}),
    p.Heartbeat(1.5), p.Ping(7), p.Pong(7), p.Progress(1, "n", 3.0, 10.0, None),
    p.Preview(1, "n", "image/png", b"\x89PNG", True),
    p.Finished(1, "n", "k", [["v", 3], ["h", "ndarray", 400]], {"images": []}, 0.25),
    p.Failed(1, "n", "k", "VE-500", "ValueError", "boom", "Traceback..."), p.BatchDone(1),
    p.Fetched(3, {"a": [1, 2]}, None), p.DefineNodes([["id", b"payload", {"f:1": "/x.py"}]], ["/src"]),
    p.Execute(2, [["n", "k", "id", {"a": ["lit", 1]}, 0.0]], True), p.Cancel(2, "", "cancel"),
    p.Fetch(3, "k", 0), p.Fetch(4, "k", 1, True), p.Fetched(4, [msgpack.ExtType(p.EXT_CUDA, b"\x90")], None),
    p.Release(["k"]), p.Shutdown("bye"), p.Spawn("0g1", {"uid": "0g1"}),
    p.Spawned("0g1", 42), p.Exited(42, 11),
]


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: m.tag)
def test_every_message_round_trips_through_a_frame(msg):
    frame = p.encode(msg)
    assert struct.unpack(">I", frame[:4])[0] == len(frame) - 4
    assert p.decode(frame[4:]) == msg


@pytest.mark.parametrize("body, match", [
    (msgpack.packb(["nope", 1]), "unknown message tag"),
    (msgpack.packb(["ping"]), "has 0 fields, expected 1"),
    (msgpack.packb(["ping", "x"]), r"ping.seq has type str"),
    (msgpack.packb(["ping", True]), r"ping.seq has type bool"),
    (msgpack.packb({"tag": "ping"}), "not a \\[tag, ...\\] array"),
    (b"\xc1", "undecodable frame"),
    (msgpack.packb(["fetched", 1, msgpack.ExtType(p.EXT_PICKLE, b"cos\nsystem\n"), None]),
     "extension type 3 is not allowed"),
])
def test_malformed_frames_are_protocol_errors_that_say_what_is_wrong(body, match):
    with pytest.raises(ProtocolError, match=match) as info:
        p.decode(body)
    assert info.value.code == "VE-600"


def _pair(**kw):
    a, b = socket.socketpair()
    return p.Channel(a, allow_pickle=False, **kw), b


def test_an_oversized_frame_is_refused_before_its_payload_is_read():
    chan, peer = _pair(max_frame=1024)
    peer.sendall(struct.pack(">I", 10**9))
    with pytest.raises(ProtocolError, match="exceeds the 1024-byte limit"):
        chan.recv(1.0)


def test_a_peer_that_stops_inside_a_frame_is_an_error_not_a_hang():
    chan, peer = _pair(frame_timeout=0.2)
    peer.sendall(struct.pack(">I", 100) + b"x" * 10)
    t0 = time.monotonic()
    with pytest.raises(ProtocolError, match="frame truncated: 14 of 104 bytes"):
        chan.recv(1.0)
    assert time.monotonic() - t0 < 2


def test_eof_inside_a_frame_is_an_error_and_eof_between_frames_is_a_clean_end():
    chan, peer = _pair()
    peer.sendall(p.encode(p.Ping(1)) + struct.pack(">I", 50) + b"abc")
    peer.close()
    assert chan.recv(1.0) == p.Ping(1)
    with pytest.raises(ProtocolError, match="connection closed inside a frame"):
        chan.recv(1.0)
    chan2, peer2 = _pair()
    peer2.close()
    assert chan2.recv(1.0) is None and chan2.closed


def test_an_oversized_message_is_refused_by_the_sender():
    with pytest.raises(ProtocolError, match="exceeds"):
        p.encode(p.Preview(1, "n", "image/png", b"x" * (p.MAX_FRAME + 1), False))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_decoding_random_bytes_gives_a_message_or_a_protocol_error(data):
    with contextlib.suppress(ProtocolError):
        p.decode(data)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=6), st.booleans())
def test_a_channel_fed_random_and_truncated_frames_never_hangs(chunks, framed):
    chan, peer = _pair(frame_timeout=0.05)
    data = b"".join((struct.pack(">I", len(c)) + c) if framed else c for c in chunks)
    peer.sendall(data[: max(0, len(data) - (len(data) % 7))])
    peer.close()
    t0 = time.monotonic()
    for _ in range(len(chunks) + 2):
        try:
            if chan.recv(0.5) is None:
                break
        except ProtocolError:
            break
    assert time.monotonic() - t0 < 2


def test_a_worker_sending_garbage_is_marked_dead_without_hanging_its_waiter():
    ours, theirs = socket.socketpair()
    w = WorkerProcess(0, "fake", "cpu", "vxfake-", "/dev/null")
    w.attach(p.Channel(ours, allow_pickle=False), SAMPLES[0])
    threading.Timer(0.1, lambda: theirs.sendall(struct.pack(">I", 3) + b"\xc1\xc1\xc1")).start()
    t0 = time.monotonic()
    assert w.next_event(5.0) is None
    assert w.dead.is_set() and "protocol error" in w.death
    assert time.monotonic() - t0 < 2


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(min_size=1, max_size=200))
def test_a_real_worker_fed_garbage_exits_cleanly_and_is_replaced(make_pool, data):
    from vortex_jupyter.workers.executor import WorkerExecutor

    pool = make_pool() if not hasattr(make_pool, "cached") else make_pool.cached
    make_pool.cached = pool
    w = pool.worker(0)
    try:
        p.decode(data, allow_pickle=True)
        valid = True
    except ProtocolError:
        valid = False
    w.chan.send_raw(struct.pack(">I", len(data)) + data)
    if not valid:  # the worker refuses it and exits; the kernel notices at once
        assert w.pump(lambda: w.dead.is_set(), 5.0)
        assert "protocol error from the kernel" in w.log_tail()
    rec = run(WorkerExecutor(pool), [task("after", n.add, a=2, b=3)])
    assert WorkerExecutor(pool).fetch(rec.results["after"][0]) == 5


@pytest.mark.parametrize("data, match", [
    (b"\xc1", "malformed CUDA IPC handle"),
    (msgpack.packb([[4], [1], 0, "torch.nothing", 0, b"h", 16, 0, b"c", 0, None, False]), "dtype 'torch.nothing'"),
    (msgpack.packb([[4], [1], 0, "torch.float32", 0, "not bytes", 16, 0, b"c", 0, None, False]), "malformed"),
    (msgpack.packb([[4, 4], [1], 0, "torch.float32", 0, b"h", 16, 0, b"c", 0, None, False]), "2 sizes, 1 strides"),
])
def test_a_malformed_cuda_ipc_handle_is_a_protocol_error_before_cuda_is_touched(data, match):
    pytest.importorskip("torch")
    from vortex_jupyter.workers import cuda_ipc

    with pytest.raises(ProtocolError, match=match):
        cuda_ipc.open_handle(data)


def test_cuda_ipc_only_between_workers_on_the_same_gpu():
    from vortex_jupyter.workers.cuda_ipc import same_gpu

    assert same_gpu("cuda:0", "cuda:0")
    assert not same_gpu("cuda:0", "cuda:1") and not same_gpu("cpu", "cpu")
