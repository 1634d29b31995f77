"""Fixtures of the Ray tests: one local Ray for the Ray tests, a tiny model, node functions for actors.

Ray starts once (``ray.init(num_cpus=2)``: two CPU actors at most, so two branches run in
parallel) and stops after the Ray tests (module scope: they are one module), so its raylet and
its memory monitor do not run beside the rest of the suite (a 30 GiB memory test stalled under
it); the ``"ray"`` executor singleton is closed first. The whole
folder is skipped when Ray is not installed (it is an optional extra: ``vortex-jupyter[ray]``).
No ``__init__.py`` here: this folder would then be a package named ``ray`` and hide Ray itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ray")
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # before Ray starts: no usage report, no prompt

import cloudpickle
import ray
import ray_nodes

# shipped by value, like a notebook's functions (whether or not the actors can import this folder)
cloudpickle.register_pickle_by_value(ray_nodes)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.ray)


@pytest.fixture(scope="module", autouse=True)
def ray_session() -> Iterator[None]:
    ray.init(num_cpus=2, object_store_memory=200 * 2**20, include_dashboard=False)
    yield
    from vortex_jupyter.engine import executors

    ex = executors._singletons.pop("ray", None)
    if ex is not None:
        ex.close()
    ray.shutdown()


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("models")
    before = os.environ.get("VORTEX_MODELS_DIR")
    os.environ["VORTEX_MODELS_DIR"] = str(root)  # forwarded to the actors with every task
    yield root
    if before is None:
        os.environ.pop("VORTEX_MODELS_DIR", None)
    else:
        os.environ["VORTEX_MODELS_DIR"] = before


@pytest.fixture(scope="module")
def tiny_path(models_dir: Path) -> Path:
    from vortex_jupyter.nodes.diffusion import models

    return models.tiny()


@pytest.fixture
def out_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    out = tmp_path / "output"
    out.mkdir()
    monkeypatch.setenv("VORTEX_OUTPUT_DIR", str(out))
    return out


@pytest.fixture
def ray_ex() -> Any:
    from vortex_jupyter.engine.executors import get_executor

    return get_executor("ray")
