"""Every notebook in ``notebooks/`` runs top to bottom as a user would run it, and what it shows holds.

Each runs on a real ipykernel (nbclient) with real workers, in a temporary copy of the notebook (and
of ``examples/``, which notebooks read as ``../examples``), with the input, output, temp and models
folders in temporary folders too: nothing a notebook writes lands in the repository. A new notebook
is picked up without a change here; ``CHECKS`` adds what a notebook must show beyond "no cell raised".
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, DeadKernelError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
#: Seconds one cell may take; the slowest builds the tiny model and samples with it (~30 s here).
CELL_TIMEOUT = 300
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One models folder for all notebooks: the tiny model is built once, not once per notebook."""
    return tmp_path_factory.mktemp("models")


def execute(notebook: Path, tmp_path: Path, models: Path) -> list[str]:
    """Runs a copy of ``notebook`` in ``tmp_path/notebooks`` and returns the text each output shows;
    fails the test with the failing cell's number, source and error."""
    work = tmp_path / "notebooks"
    work.mkdir()
    shutil.copy(notebook, work / notebook.name)
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    env = dict(os.environ, VORTEX_INPUT_DIR=str(tmp_path / "input"), VORTEX_OUTPUT_DIR=str(tmp_path / "output"),
               VORTEX_TEMP_DIR=str(tmp_path / "temp"), VORTEX_MODELS_DIR=str(models))
    nb = nbformat.read(work / notebook.name, as_version=4)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(work)}})
    failure = None
    with client.setup_kernel(env=env):
        for index, cell in enumerate(nb.cells):
            try:
                client.execute_cell(cell, index)
            except CellExecutionError as exc:  # its text: the cell's source, then the traceback
                failure = f"cell {index} failed. {exc}"
            except DeadKernelError as exc:
                failure = f"cell {index} killed the kernel ({exc}). The cell:\n{cell.source}"
            if failure is not None:
                break
    if failure is not None:  # failed outside the except block: the report is the notebook's error only
        pytest.fail(f"{notebook.name}: {_ANSI.sub('', failure)}", pytrace=False)
    return [_text(out) for cell in nb.cells for out in cell.get("outputs", [])]


def _text(output: dict) -> str:
    text = output.get("text") or output.get("data", {}).get("text/plain") or ""
    return "".join(text)


def comfyui_workflow_shows_custom_sampling_equals_ksampler(shown: list[str], folder: Path) -> None:
    assert "True" in shown  # SamplerCustomAdvanced's latent == KSampler's
    assert any("VE-105 3.steps" in t for t in shown)  # the broken copy says what to fix
    assert any('"class_type": "SamplerCustomAdvanced"' in t for t in shown)


def quickstart_shows_run_stats(shown: list[str], folder: Path) -> None:
    assert any("'ran'" in t for t in shown)


def collaboration_saves_files_in_their_own_format(shown: list[str], folder: Path) -> None:
    assert shown[0] == "True"  # vx.open gives one graph per file
    assert shown[1] == "2"  # the edit reached the file
    assert "4.5" in shown[2] and "'config'" in shown[2]  # a ComfyUI workflow stays one, with the edit
    assert (folder / "comfy.json").is_file()


def custom_node_reruns_only_the_redefined_type(shown: list[str], folder: Path) -> None:
    # the notebook asserts the same; this keeps a weakened notebook from passing quietly
    assert "ran: ['thrice', 'twice'] cached: ['three', 'word']" in "".join(shown)
    assert "('vortex vortex vortex!',) ('vortex vortex!',)" in "".join(shown)
    assert "('!xetrov xetrov xetrov',)" in "".join(shown)  # the ComfyUI class ran


CHECKS: dict[str, Callable[[list[str], Path], None]] = {
    "comfyui_workflow.ipynb": comfyui_workflow_shows_custom_sampling_equals_ksampler,
    "quickstart.ipynb": quickstart_shows_run_stats,
    "collaboration.ipynb": collaboration_saves_files_in_their_own_format,
    "custom_node.ipynb": custom_node_reruns_only_the_redefined_type,
}


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.stem)
def test_the_notebook_runs_top_to_bottom_and_shows_what_it_says(notebook: Path, tmp_path: Path,
                                                                 models_dir: Path) -> None:
    shown = execute(notebook, tmp_path, models_dir)
    check = CHECKS.get(notebook.name)
    if check is not None:
        check(shown, tmp_path / "notebooks")


def test_every_checked_notebook_exists() -> None:
    assert set(CHECKS) <= {path.name for path in NOTEBOOKS}, "CHECKS names a notebook that is gone"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.stem)
def test_the_notebook_is_committed_without_outputs(notebook: Path) -> None:
    nb = nbformat.read(notebook, as_version=4)
    nbformat.validate(nb)
    dirty = [i for i, cell in enumerate(nb.cells)
             if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)]
    assert not dirty, (f"{notebook.name}: cells {dirty} carry outputs or execution counts; clear them with "
                       f"`jupyter nbconvert --clear-output --inplace notebooks/{notebook.name}`")
