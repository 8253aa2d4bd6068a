"""Every notebook in notebooks/ runs top to bottom on small settings.

A notebook marks its settings cell with the tag ``parameters``. The small settings used here are
stored in the notebook's own metadata under ``twin.test_parameters`` (a mapping of name to
value); they are injected as a cell right after the ``parameters`` cell, the way papermill does.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def _with_small_settings(nb):
    overrides = nb.metadata.get("twin", {}).get("test_parameters", {})
    if not overrides:
        return nb
    lines = [f"{name} = {json.dumps(value)}" for name, value in overrides.items()]
    cell = nbformat.v4.new_code_cell("# injected by tests/test_notebooks.py\n" + "\n".join(lines))
    for i, c in enumerate(nb.cells):
        if "parameters" in c.get("metadata", {}).get("tags", []):
            nb.cells.insert(i + 1, cell)
            return nb
    raise AssertionError("notebook has test_parameters but no cell tagged 'parameters'")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path):
    nb = _with_small_settings(nbformat.read(path, as_version=4))
    client = nbclient.NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError with the failing cell's traceback
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
