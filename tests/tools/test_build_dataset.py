"""Tests of `python -m motiongrpo_jax.tools.build_dataset`."""

import importlib
import importlib.util
import pathlib
import subprocess
import sys
import textwrap

from absl import app
from absl import flags
from absl.testing import flagsaver
import pytest

from motiongrpo_jax.data import records
from motiongrpo_jax.data import tfds_builder
from motiongrpo_jax.tools import build_dataset

REPO = pathlib.Path(__file__).resolve().parents[2]


def _run(code: str) -> subprocess.CompletedProcess:
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                       text=True, timeout=300)
  assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
  return out


def test_cli_with_a_registered_source(tmp_path):
  """A source added with `register_source` is built, summarised and readable."""
  code = textwrap.dedent(f"""
      import sys
      import numpy as np
      from absl import app
      from motiongrpo_jax.data import records
      from motiongrpo_jax.tools import build_dataset

      def fake(flag_values):  # Sequence i: 3 + i still frames; splits cycle.
        for i in range(flag_values.num_sequences):
          t = 3 + i
          q = np.tile(np.float32([1, 0, 0, 0]), (t, 1))
          pose = np.concatenate([q, np.zeros((t, 3), np.float32)], 1)
          yield records.SequenceRecord(
              betas=np.zeros(16, np.float32), T_world_root=pose,
              body_quats=np.tile(q[:, None], (1, 21, 1)), hand_quats=None,
              contacts=np.zeros((t, 21), np.float32), T_world_cpf=pose,
              T_cpf_tm1_cpf_t=pose, height_from_floor=np.ones((t, 1), np.float32),
              joints_wrt_cpf=np.zeros((t, 21, 3), np.float32), name=f"fake/{{i}}",
              source="fake", split=("train", "val", "test")[i % 3])

      build_dataset.register_source("fake", fake)
      sys.argv = ["build_dataset", "--source=fake", "--output_dir={tmp_path}",
                  "--num_sequences=5"]
      app.run(build_dataset.main)
  """)
  out = _run(code)
  # Splits: train 0, 3 (3 + 6 frames); val 1, 4 (4 + 7); test 2 (5).
  assert "  train      2 sequences         9 frames" in out.stdout
  assert "  val        2 sequences        11 frames" in out.stdout
  assert "  test       1 sequences         5 frames" in out.stdout
  assert "total 5 sequences, 25 frames in" in out.stdout
  val = tfds_builder.load_split(tmp_path, "val")
  names = sorted(tfds_builder.record_from_example(val[i]).name for i in range(len(val)))
  assert names == ["fake/1", "fake/4"]


@pytest.mark.skipif(importlib.util.find_spec("motiongrpo_jax.data.synthetic") is None,
                    reason="motiongrpo_jax.data.synthetic is not available")
def test_cli_synthetic(tmp_path):
  # Two sequences keep the test short (each new length costs compilations
  # inside the generator); `--num_sequences=64` is timed by hand.
  out = subprocess.run(
      [sys.executable, "-m", "motiongrpo_jax.tools.build_dataset", "--source=synthetic",
       f"--output_dir={tmp_path}", "--num_sequences=2", "--seed=3"],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "total 2 sequences" in out.stdout
  meta = tfds_builder.metadata(tmp_path)
  assert sum(v["sequences"] for v in meta["splits"].values()) == 2
  assert meta["sources"] == ["synthetic"]
  names = []
  for split in meta["splits"]:
    source = tfds_builder.load_split(tmp_path, split)
    for i in range(len(source)):
      record = records.validate(tfds_builder.record_from_example(source[i]))
      assert record.split == split and record.source == "synthetic"
      names.append(record.name)
  assert sorted(names) == ["synthetic/000000", "synthetic/000001"]


def test_registry_names_the_importers():
  assert {"synthetic", "amass", "egoallo_hdf5", "bvh"} <= set(build_dataset.SOURCES)
  for name, module in build_dataset._IMPORTERS.items():  # pylint: disable=protected-access
    if importlib.util.find_spec(module) is not None:
      assert callable(importlib.import_module(module).records_from_options), name


def test_missing_importer_is_a_clear_error():
  importer = build_dataset._importer  # pylint: disable=protected-access
  source = importer("motiongrpo_jax.data.no_such_importer")

  class Flags:
    source = "nope"

  with pytest.raises(ValueError, match="--source=nope needs motiongrpo_jax.data"
                     r".no_such_importer.records_from_options"):
    source(Flags())


def test_unknown_source_and_missing_output_dir(tmp_path):
  with flagsaver.flagsaver():
    flags.FLAGS(["build_dataset", "--source=nope", f"--output_dir={tmp_path}"])
    with pytest.raises(app.UsageError, match="--source='nope': expected one of"):
      build_dataset.main(["build_dataset"])
    flags.FLAGS.source = "synthetic"
    flags.FLAGS.output_dir = None
    with pytest.raises(app.UsageError, match="--output_dir is required"):
      build_dataset.main(["build_dataset"])
  assert not any(tmp_path.iterdir())
