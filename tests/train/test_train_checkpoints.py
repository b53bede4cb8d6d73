"""Tests for train/checkpoints.py: init_checkpoint layouts and bad input."""

import pathlib
import shutil

import jax
import numpy as np
import pytest

import train_toy as toy
from motiongrpo_jax.model import denoiser as denoiser_lib
from motiongrpo_jax.model import params_io
from motiongrpo_jax.train import checkpoints
from motiongrpo_jax.train import mesh as mesh_lib


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
  """A finished 4-step toy run (checkpoints at steps 2 and 4) and its params."""
  workdir = tmp_path_factory.mktemp("toy") / "run"
  result = toy.train(workdir, 4)
  return workdir, toy.params_of(result)


def _target(params):
  sharding = mesh_lib.replicated(mesh_lib.make_mesh())
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
      params)


def test_load_params_from_workdir_and_step_dir(toy_run):
  workdir, final = toy_run
  target = _target(final)
  assert checkpoints.checkpoint_kind(workdir) == "workdir"
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["2", "4"]
  from_workdir = checkpoints.load_params(workdir, target)
  for k in final:
    np.testing.assert_array_equal(from_workdir[k], final[k])
    assert from_workdir[k].sharding == target[k].sharding
  step2 = workdir / "checkpoints" / "2"
  assert checkpoints.checkpoint_kind(step2) == "step"
  from_step2 = checkpoints.load_params(step2, target)
  # Step 2 is an earlier state: different parameters.
  assert np.max(np.abs(from_step2["w1"] - final["w1"])) > 1e-4


def test_load_params_from_model_dir(tmp_path):
  config = denoiser_lib.DenoiserConfig(
      d_latent=8, d_feedforward=16, d_noise_emb=8, num_heads=2,
      encoder_layers=1, decoder_layers=1, include_hands=False)
  abstract = params_io.abstract_params(config)
  params = jax.tree.map(
      lambda s: np.random.default_rng(s.size).normal(size=s.shape).astype(s.dtype),
      abstract)
  model_dir = params_io.save_model(tmp_path / "model", config, params)
  assert checkpoints.checkpoint_kind(model_dir) == "model"
  loaded = checkpoints.load_params(model_dir, _target(params))
  jax.tree.map(np.testing.assert_array_equal, loaded, params)

  # The same directory against a model of another size: the error lists it.
  other = params_io.abstract_params(
      denoiser_lib.DenoiserConfig(**{**config.to_dict(), "d_latent": 16}))
  with pytest.raises(ValueError, match=r"do not match the configured model.*"
                     r"expected"):
    checkpoints.load_params(model_dir, _target(other))


def test_shape_mismatch_names_the_parameter(toy_run):
  workdir, final = toy_run
  wrong = dict(final, w1=np.zeros((4, 7), np.float32))
  with pytest.raises(ValueError, match=r"\['w1'\]: shape \(4, 16\), expected \(4, 7\)"):
    checkpoints.load_params(workdir, _target(wrong))


def test_missing_and_unrecognised_paths(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist: .*nowhere"):
    checkpoints.load_params(tmp_path / "nowhere", {})
  (tmp_path / "empty").mkdir()
  with pytest.raises(ValueError, match="empty is not a checkpoint: expected a "
                     "training workdir"):
    checkpoints.load_params(tmp_path / "empty", {})
  (tmp_path / "fresh" / "checkpoints").mkdir(parents=True)
  with pytest.raises(FileNotFoundError, match="no finished checkpoint in .*fresh"):
    checkpoints.load_params(tmp_path / "fresh", {})


def _corrupt(step_dir: pathlib.Path) -> None:
  for path in (step_dir / "state").rglob("*"):
    if path.is_file():
      path.write_bytes(b"garbage")


def test_corrupt_checkpoint_is_a_clear_error(toy_run, tmp_path):
  workdir, final = toy_run
  copy = tmp_path / "run"
  shutil.copytree(workdir, copy)
  _corrupt(copy / "checkpoints" / "4")
  with pytest.raises(ValueError, match=r"checkpoint .*run/checkpoints/4/state"):
    checkpoints.load_params(copy, _target(final))
  # Resuming the run from it fails too, naming the step directory, rather
  # than silently starting over or falling back.
  with pytest.raises(ValueError, match=r"cannot restore checkpoint .*run/checkpoints/4"):
    toy.train(copy, 6)
