"""CUDA: the arena is registered as pinned memory, GPU outputs reach the kernel through it.

Needs a CUDA device (``-m gpu``); the lead runs these on a GPU machine together with
``python benchmarks/workers.py --cuda``. On CPU-only machines they are skipped.
"""

from __future__ import annotations

import pytest

from vortex_jupyter.workers.executor import WorkerExecutor

from . import nodes_lib as n
from .conftest import run, task

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.fixture(scope="module")
def cuda_ex():
    from vortex_jupyter.workers.pool import WorkerPool
    from vortex_jupyter.workers.supervisor import PoolConfig

    pool = WorkerPool(PoolConfig(devices=["cuda:0"], arena_bytes=512 * 2**20))
    yield WorkerExecutor(pool)
    pool.close()


def test_the_arena_of_a_cuda_worker_is_pinned(cuda_ex):
    rec = run(cuda_ex, [task("probe", n.pinned_probe, n_out=2, n=1024)])
    assert cuda_ex.fetch(rec.results["probe"][0]) is True
    assert cuda_ex.fetch(rec.results["probe"][1]) == 1  # CUDA_VISIBLE_DEVICES: one GPU per worker


def test_a_cuda_tensor_output_reaches_the_kernel_through_the_arena(cuda_ex):
    rec = run(cuda_ex, [task("gpu", n.cuda_output, n=1000)])
    t = cuda_ex.fetch(rec.results["gpu"][0])
    assert t.device.type == "cpu" and float(t[999]) == 1998.0
    assert cuda_ex.pool.attachments.locate(t.data_ptr()) is not None


def test_host_to_device_from_the_pinned_arena(cuda_ex):
    count = 64 * 2**20  # 256 MiB
    rec = run(cuda_ex, [task("h2d", n.h2d, n_out=2, n=count)])
    assert cuda_ex.fetch(rec.results["h2d"][0]) == float(count)
    seconds = cuda_ex.fetch(rec.results["h2d"][1])
    assert seconds < 0.1, f"256 MiB took {seconds * 1e3:.1f} ms: is the arena really pinned?"


def test_cuda_tensors_cross_between_workers_on_one_gpu_by_ipc_handle():
    """Two workers on one GPU: a join takes one input from the other worker as a CUDA tensor
    mapped by CUDA IPC (``cuda_ipc``), not copied through host memory."""
    from vortex_jupyter.workers.pool import WorkerPool
    from vortex_jupyter.workers.supervisor import PoolConfig

    from .conftest import ref

    pool = WorkerPool(PoolConfig(devices=["cuda:0", "cuda:0"], arena_bytes=256 * 2**20))
    try:
        ex = WorkerExecutor(pool)
        rec = run(ex, [task("a", n.cuda_output, n=1000), task("b", n.cuda_output, n=2000),
                       task("j", n.cuda_join, n_out=3, a=ref("a"), b=ref("b"))])
        assert [ex.fetch(r) for r in rec.results["j"]] == ["cuda", "cuda", float(999 * 1000 + 1999 * 2000)]
        assert pool.moves == 1  # one input came from the other worker
    finally:
        pool.close()
