"""The tutorial notebooks: stripped in git, and each one executes from top to bottom.

Execution uses the tiny random-weight prior of ``tests/fixtures/sd_tiny/v1`` and shortened
settings (2 steps, 1 image), injected as a cell right after the notebook's settings cell (the
code cell tagged ``parameters``), as scico shortens its examples in its test suite. The
pictures are then noise; what is tested is that every cell runs with the library as it is.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
TINY_PRIOR = ROOT / "tests" / "fixtures" / "sd_tiny" / "v1"

#: Settings every notebook has; the test replaces their values.
SETTINGS = ("PRIOR", "STEPS", "N_IMAGES")
TINY = {"PRIOR": str(TINY_PRIOR), "STEPS": 2, "N_IMAGES": 1}
#: Extra shortened settings of individual notebooks.
EXTRA = {
    "05_p2l_vs_admm.ipynb": {"ADMM_ITERS": 3},
}


def _ids(paths):
    return [p.stem for p in paths]


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _settings_index(nb: dict) -> int:
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert "parameters" in cell.get("metadata", {}).get("tags", []), (
                "the first code cell must be the settings cell, tagged 'parameters'")
            return i
    raise AssertionError("no code cell")


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 6, [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_committed_notebook_is_stripped(path):
    nb = _load(path)
    dirty = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"
             and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, f"{path.name}: cells {dirty} have outputs or execution counts (strip them before committing)"
    assert "widgets" not in nb.get("metadata", {}), f"{path.name}: widget state in the metadata"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_first_code_cell_holds_the_settings(path):
    nb = _load(path)
    src = "".join(nb["cells"][_settings_index(nb)]["source"])
    for name in SETTINGS + tuple(EXTRA.get(path.name, {})):
        assert f"\n{name} = " in f"\n{src}", f"{path.name}: the settings cell does not set {name}"
    assert "\nPRIOR = None" in f"\n{src}", f"{path.name}: PRIOR must default to None (the bundled prior)"


@pytest.mark.slow
@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_executes(path, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")

    nb = nbformat.read(path, as_version=4)
    values = dict(TINY, **EXTRA.get(path.name, {}))
    injected = nbformat.v4.new_code_cell("\n".join(f"{k} = {v!r}" for k, v in values.items()))
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(_settings_index(nb) + 1, injected)

    monkeypatch.setenv("JAX_PLATFORMS", "cpu")  # the kernel inherits the environment
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as e:
        pytest.fail(f"{path.name} failed:\n{e}", pytrace=False)
