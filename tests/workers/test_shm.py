"""Shared memory: the arena allocator, and tensors crossing from a worker without a copy."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from vortex_jupyter.workers import shm
from vortex_jupyter.workers.pool import WorkerObject, WorkerPool
from vortex_jupyter.workers.tensors import (
    buffer_address,
    to_arrow_tensor,
    to_dlpack,
    to_fixed_shape_tensor_array,
)

from . import nodes_lib as n
from .conftest import ref, run, shm_names, task


@pytest.fixture
def arena():
    a = shm.Arena(f"vxtest{os.getpid()}-", segment_bytes=4 * 2**20)
    yield a
    a.close()


def test_allocations_are_64_byte_aligned_and_freed_blocks_are_reused(arena):
    a = arena.empty((3,), np.uint8)
    b = arena.empty((100,), np.float32)
    assert buffer_address(a) % 64 == 0 and buffer_address(b) % 64 == 0
    addr = buffer_address(b)
    del b
    c = arena.empty((100,), np.float32)
    assert buffer_address(c) == addr
    assert buffer_address(c) - buffer_address(a) == 64


def test_free_blocks_coalesce_back_into_one(arena):
    blocks = [arena.raw(1000) for _ in range(50)]
    assert arena.stats["free"] < arena.stats["bytes"]
    del blocks
    assert arena.stats["free"] == arena.stats["bytes"] - shm.CONTROL_BYTES  # the status words stay
    assert arena._lists[0].starts == [shm.CONTROL_BYTES]


def test_the_arena_grows_by_a_segment_when_an_allocation_does_not_fit(arena):
    big = arena.empty((6 * 2**20,), np.uint8)
    assert arena.stats["segments"] == 2
    assert arena.locate(buffer_address(big), big.nbytes)[0] is arena.segments[1]


def test_attaching_does_not_involve_the_resource_tracker(arena):
    """gh-82300: an attach-only process must not unlink the segment when it exits."""
    name = arena.segments[0].name
    code = ("from vortex_jupyter.workers.shm import Attachments; a = Attachments(); "
            f"print(a.get({name!r}).size)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == str(4 * 2**20)
    assert os.path.exists("/dev/shm" + name)


def _mapped(pool: WorkerPool, obj) -> bool:
    return pool.attachments.locate(buffer_address(obj)) is not None


def test_an_array_built_in_the_arena_reaches_the_kernel_as_a_view_of_the_mapping(ex, pool):
    rec = run(ex, [task("a", n.arange, n=1 << 20)])
    view = ex.fetch(rec.results["a"][0])
    seg, _ = pool.attachments.locate(buffer_address(view))
    assert seg.name.startswith("/" + pool.worker(0).prefix)
    assert view.shape == (1 << 20,) and view[12345] == 12345.0


def test_kernel_writes_never_reach_the_workers_copy(ex):
    rec = run(ex, [task("a", n.arange, n=16)])
    a = rec.results["a"][0]
    view = ex.fetch(a)
    view[:] = -1  # copy-on-write mapping: the kernel's private page, no segfault
    summed = run(ex, [task("sum", n.total, x=ref("a", held=a))])
    assert ex.fetch(summed.results["sum"][0]) == 120.0


def test_a_plain_numpy_output_is_copied_into_the_arena_once(ex, pool):
    rec = run(ex, [task("p", n.plain_array, n=100)])
    first, second = (ex.fetch(rec.results["p"][0]) for _ in range(2))
    assert _mapped(pool, first) and buffer_address(first) == buffer_address(second)
    np.testing.assert_array_equal(first, np.arange(100.0).reshape(-1, 2))


def test_torch_outputs_come_back_as_torch_tensors_on_the_mapping(ex, pool):
    torch = pytest.importorskip("torch")
    rec = run(ex, [task("t", n.torch_tensor, n=10), task("b", n.torch_bf16, n=8), task("l", n.latent, n=4)])
    t = ex.fetch(rec.results["t"][0])
    assert isinstance(t, torch.Tensor) and t.shape == (2, 5) and _mapped(pool, t)
    assert torch.equal(t, torch.arange(10.0).reshape(2, 5))
    b = ex.fetch(rec.results["b"][0])
    assert b.dtype == torch.bfloat16 and torch.equal(b, torch.arange(8, dtype=torch.bfloat16))
    lat = ex.fetch(rec.results["l"][0])
    assert lat["samples"].shape == (1, 4, 4, 4) and _mapped(pool, lat["samples"])


def test_views_wrap_as_torch_pyarrow_and_dlpack_without_copies(ex, pool):
    torch = pytest.importorskip("torch")
    rec = run(ex, [task("a", n.arange, n=4096)])
    view = ex.fetch(rec.results["a"][0])
    addr = buffer_address(view)
    assert torch.from_numpy(view).data_ptr() == addr
    assert buffer_address(to_arrow_tensor(view)) == addr
    fixed = to_fixed_shape_tensor_array(view.reshape(64, 8, 8))
    assert fixed.type.shape == [8, 8] and fixed.storage.values.buffers()[1].address == addr
    assert torch.from_dlpack(view).data_ptr() == addr
    assert np.from_dlpack(view).__array_interface__["data"][0] == addr
    assert to_dlpack(view) is not None


def test_objects_that_cannot_leave_the_worker_come_back_as_placeholders(ex):
    rec = run(ex, [task("o", n.opaque)])
    value = ex.fetch(rec.results["o"][0])
    assert isinstance(value, WorkerObject) and value.type == "builtins.object"


def test_a_placeholder_is_named_after_the_real_type_in_reprs_and_the_cli(ex):
    import pickle

    from vortex_jupyter.cli import _short

    rec = run(ex, [task("m", n.model)])
    ref = rec.results["m"][0]
    value = ex.fetch(ref)
    assert isinstance(value, WorkerObject) and type(value).__name__ == "ModelHandle"
    assert value.type.endswith("nodes_lib.ModelHandle") and "ModelHandle(tiny)" in repr(value)
    assert _short([value]) == "ModelHandle" and "ModelHandle" in repr(ref)
    again = pickle.loads(pickle.dumps(value))
    assert again == value and type(again) is type(value)


def test_an_output_is_freed_in_the_worker_only_after_release_and_its_last_view(ex, pool):
    from vortex_jupyter.workers import protocol as p

    rec = run(ex, [task("freed", n.arange, n=10)])
    ref = rec.results["freed"][0]
    view = ex.fetch(ref)
    ex.release([ref])

    def worker_has_it() -> bool:
        reply = pool.worker(0).request(lambda req: p.Fetch(req, ref.key, 0))
        return reply.error is None

    assert worker_has_it()  # the kernel's view keeps it alive
    del view
    assert not worker_has_it()
    with pytest.raises(Exception, match="released"):
        ex.fetch(ref)


def test_no_segment_is_left_after_the_pool_closes_even_after_a_crash(make_pool):
    from vortex_jupyter.workers.executor import WorkerExecutor

    pool = make_pool()
    ex = WorkerExecutor(pool)
    run(ex, [task("a", n.arange, n=10), task("crash", n.segfault, a=1), task("b", n.arange, n=10)])
    assert shm_names(pool.supervisor.shm_prefix)  # the live worker's arena
    pool.close()
    assert shm_names(pool.supervisor.shm_prefix) == []
