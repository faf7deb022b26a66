"""The research notebooks in notebooks/ run end to end and are committed without outputs.

Each notebook is executed with nbclient in a ``python3`` kernel whose working directory is the
repository root (as a reader running ``jupyter lab`` from the checkout would have it), with a
120 s limit per cell; any cell error fails the test.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
EXPECTED = ("01_stop_and_sizing.ipynb", "02_margin_modes.ipynb", "03_liquidation_paths.ipynb")


def test_expected_notebooks_exist():
    assert [p.name for p in NOTEBOOKS if p.name in EXPECTED] == list(EXPECTED)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_committed_without_outputs(path):
    nbformat = pytest.importorskip("nbformat")
    book = nbformat.read(path, as_version=4)
    dirty = [i for i, cell in enumerate(book.cells) if cell.cell_type == "code"
             and (cell.get("outputs") or cell.get("execution_count") is not None)]
    assert not dirty, f"{path.name}: code cells {dirty} have outputs; strip them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("matplotlib")
    book = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(book, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(REPO)}})
    t0 = time.perf_counter()
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as exc:
        pytest.fail(f"{path.name} failed:\n{exc}")
    errors = [out for cell in book.cells if cell.cell_type == "code"
              for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert not errors, f"{path.name}: {errors[0].get('ename')}: {errors[0].get('evalue')}"
    images = sum("image/png" in out.get("data", {}) for cell in book.cells
                 if cell.cell_type == "code" for out in cell.get("outputs", []))
    assert images >= 1, f"{path.name} drew no figure"
    print(f"{path.name}: {time.perf_counter() - t0:.1f} s")
