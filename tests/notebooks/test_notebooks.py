"""The notebooks run top to bottom, headless, at a small size.

Each notebook's `parameters` cell is followed by an injected cell with small
sizes (as papermill does), then the notebook is executed with nbclient in a
fresh kernel (working directory: a temporary folder), which inherits
conftest's fast-compile XLA flags from the environment.
"""

import pathlib
import time

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")
pytest.importorskip("ipykernel")

REPO = pathlib.Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
CELL_TIMEOUT_S = 300

SMALL = {
    "01_data": dict(NUM_SEQUENCES=4, NUM_FRAMES=(40, 60), SEQ_LEN=32,
                    BATCH_SIZE=2),
    "02_sampling": dict(NUM_FRAMES=8, GROUP_SIZE=3, SAMPLER_STEPS=3,
                        SAMPLER_UPDATE="ddim"),
    "03_grpo": dict(PRETRAIN_STEPS=0, NUM_SEQUENCES=6, NUM_FRAMES=40,
                    SEQ_LEN=8, BATCH_SIZE=2, GROUP_SIZE=3, SAMPLER_STEPS=3,
                    SAMPLER_UPDATE="ddim", TRAIN_STEPS=0, NUM_ITERATIONS=2),
}


def _with_parameters(nb, overrides):
  """Inserts a cell assigning `overrides` after the `parameters` cell."""
  index = [i for i, c in enumerate(nb.cells)
           if "parameters" in c.metadata.get("tags", [])]
  assert len(index) == 1, "expected exactly one cell tagged 'parameters'"
  source = "\n".join(f"{k} = {v!r}" for k, v in overrides.items())
  cell = nbformat.v4.new_code_cell(source)
  cell.metadata["tags"] = ["injected-parameters"]
  nb.cells.insert(index[0] + 1, cell)
  # Every parameter overridden must exist in the notebook's own cell.
  names = {line.split("=")[0].strip()
           for line in nb.cells[index[0]].source.splitlines()
           if "=" in line and not line.startswith("#")}
  assert set(overrides) <= names, set(overrides) - names
  return nb


@pytest.mark.parametrize("name", sorted(SMALL))
def test_notebook_is_clean(name):
  nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
  nbformat.validate(nb)
  code = [c for c in nb.cells if c.cell_type == "code"]
  assert all(not c.outputs and c.execution_count is None for c in code), (
      f"{name}.ipynb has stored outputs; clear them before committing")
  assert "pip" in code[0].source and "find_spec" in code[0].source, (
      "the first code cell must be the install cell")


@pytest.mark.parametrize("name", sorted(SMALL))
def test_notebook_executes(name, tmp_path, monkeypatch):
  monkeypatch.setenv("MOTIONGRPO_REPO", str(REPO))
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
  nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
  nb = _with_parameters(nb, SMALL[name])
  client = nbclient.NotebookClient(
      nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
      resources={"metadata": {"path": str(tmp_path)}})
  start = time.perf_counter()
  client.execute()
  seconds = time.perf_counter() - start
  print(f"{name}: {seconds:.1f} s")
  errors = [o for c in nb.cells if c.cell_type == "code"
            for o in c.outputs if o.output_type == "error"]
  assert not errors
  images = sum(1 for c in nb.cells if c.cell_type == "code"
               for o in c.outputs if "image/png" in o.get("data", {}))
  assert images >= {"01_data": 3, "02_sampling": 2, "03_grpo": 1}[name]
  text = "".join(o.get("text", "") for c in nb.cells
                 if c.cell_type == "code" for o in c.outputs)
  if name == "02_sampling":
    assert "UNTRAINED" in text
  if name == "03_grpo":
    assert "UNTRAINED" in text and "reward: group mean" in text
