"""Tests of saving/loading a denoiser directory (Orbax params + JSON config)."""

import json

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from motiongrpo_jax.model import denoiser as denoiser_lib
from motiongrpo_jax.model import params_io

CONFIG = denoiser_lib.DenoiserConfig(
    d_latent=16, d_feedforward=24, d_noise_emb=8, num_heads=2,
    encoder_layers=1, decoder_layers=1, include_hands=False,
    mask_self_attention=False)


def _init():
  # Random values in the model's param shapes (no compilation needed).
  rng = np.random.default_rng(3)
  return jax.tree.map(
      lambda leaf: rng.standard_normal(leaf.shape).astype(np.float32),
      params_io.abstract_params(CONFIG))


def test_roundtrip(tmp_path):
  params = _init()
  path = params_io.save_model(tmp_path / "model", CONFIG, params)
  assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
  assert json.loads((path / "model_config.json").read_text())[
      "mask_self_attention"] is False
  model, loaded = params_io.load_model(path)
  assert model.config == CONFIG
  jax.tree.map(np.testing.assert_array_equal, loaded, params)


def test_existing_directory_needs_overwrite(tmp_path):
  params = _init()
  params_io.save_model(tmp_path / "m", CONFIG, params)
  with pytest.raises(FileExistsError, match="already exists"):
    params_io.save_model(tmp_path / "m", CONFIG, params)
  doubled = jax.tree.map(lambda p: 2 * p, params)
  params_io.save_model(tmp_path / "m", CONFIG, doubled, overwrite=True)
  _, loaded = params_io.load_model(tmp_path / "m")
  jax.tree.map(np.testing.assert_array_equal, loaded, doubled)
  assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_failed_save_leaves_nothing(tmp_path, monkeypatch):
  def fail(*args, **kwargs):
    raise RuntimeError("disk full")

  monkeypatch.setattr(ocp.StandardCheckpointer, "save", fail)
  with pytest.raises(RuntimeError, match="disk full"):
    params_io.save_model(tmp_path / "m", CONFIG, _init())
  assert list(tmp_path.iterdir()) == []


def test_mismatched_params_and_bad_config(tmp_path):
  params = _init()
  params["latent_from_cond"]["bias"] = np.zeros(3, np.float32)
  with pytest.raises(ValueError, match="do not match"):
    params_io.save_model(tmp_path / "m", CONFIG, params)
  assert list(tmp_path.iterdir()) == []
  (tmp_path / "bad").mkdir()
  (tmp_path / "bad" / "model_config.json").write_text(
      json.dumps({**CONFIG.to_dict(), "d_cond": 154}))
  with pytest.raises(ValueError, match="d_cond"):
    params_io.load_model(tmp_path / "bad")
