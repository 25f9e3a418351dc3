"""colab/demo.ipynb runs top to bottom offline, on the tiny bundle, as a person would run it."""

import os

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "colab", "demo.ipynb")
ARTIFACTS = os.environ.get("REGIONEDIT_TEST_ARTIFACTS", os.path.join(ROOT, "runs", "test-artifacts"))


def _texts(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


def test_outputs_are_cleared_in_git():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


def test_the_notebook_runs_offline_on_the_tiny_bundle(tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    try:
        client.execute()  # any cell's error fails here, naming the cell
    finally:
        os.makedirs(ARTIFACTS, exist_ok=True)
        nbformat.write(notebook, os.path.join(ARTIFACTS, "demo.executed.ipynb"))
    texts = "".join(_texts(c) for c in notebook.cells)
    assert "offline: the tiny random bundle" in texts
    assert "outside the region unchanged: True" in texts
    figures = [o for c in notebook.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(figures) == 4  # three photo grids and the loss curve
    assert os.path.isdir(tmp_path / "runs" / "notebook" / "train" / "checkpoints")
