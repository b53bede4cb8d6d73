"""The critic mode end to end on a tiny config: training steps with base-policy
and perturbed negatives, the held-out evaluation file, loading the trained
critic, and clear errors for bad configs."""

import json

import jax
import numpy as np
import pytest

from motiongrpo_jax.configs import critic as critic_config
from motiongrpo_jax.critic import checkpoint as critic_checkpoint
from motiongrpo_jax.critic import model as critic_lib
from motiongrpo_jax.critic import training as critic_training
from motiongrpo_jax.modes import critic as critic_mode
from motiongrpo_jax.train import metrics_writer

from conftest import save_tiny_base



@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
  """A tiny base denoiser (model directory) and a dataset beside it."""
  return save_tiny_base(tmp_path_factory.mktemp("base"), num_frames=20,
                        encoder_layers=1)


def _tiny_config(base_dir, **train):
  config = critic_config.get_config("demo")
  config.base_checkpoint = str(base_dir / "model")
  config.model.update(d_model=16, num_heads=2, d_feedforward=32, num_blocks=1)
  config.data.update(data_dir=str(base_dir / "data"),
                     build_synthetic_if_missing=False, seq_len=8, batch_size=2,
                     val_batch_size=2, max_val_batches=1)
  config.objective.update(base_samples=1, base_last_steps=2,
                          condition_noise_max=0.1)
  config.sampler.num_steps = 26
  config.eval.update(num_samples=2, batch_size=2, max_batches=2)
  config.train.update(num_steps=2, log_every_steps=1, eval_every_steps=0,
                      checkpoint_every_steps=2, progress_every_seconds=0.0)
  config.train.update(train)
  return config


def test_end_to_end(base_dir, tmp_path):
  result = critic_mode.run(_tiny_config(base_dir), str(tmp_path))
  assert not result.preempted and int(result.state.step) == 2
  assert (tmp_path / "checkpoints" / "2" / "state").is_dir()
  rows = metrics_writer.read_metrics(tmp_path)
  train = [r for r in rows if r["split"] == "train"]
  val = [r for r in rows if r["split"] == "val"]
  assert [r["step"] for r in train] == [1, 2] and [r["step"] for r in val] == [0, 2]
  # 1 positive + 2 base + 5 perturbed candidates: 0 < loss, accuracies in [0, 1].
  for r in train + val:
    assert 0.0 < r["loss"] < 1e4
    for name in ("acc_all", "acc_base", "acc_time_shift", "acc_joint_noise",
                 "acc_foot_sliding", "acc_mirrored_limbs", "acc_other_motion"):
      assert 0.0 <= r[name] <= 1.0, name
    assert r["score_gap"] == pytest.approx(r["score_gt"] - r["score_negative"],
                                           abs=1e-5)
  assert train[1]["update_norm"] > 0

  summary = json.loads((tmp_path / "critic_eval.json").read_text())
  assert summary["split"] == "test" and summary["step"] == 2
  assert summary["num_base_samples"] == 2
  # The test sequence (20 frames) gives 3 windows of 8 (the last padded).
  assert summary["num_trajectories"] == 3
  for name in ("gt_beats_all_base", "gt_beats_base_pairwise",
               "gt_beats_time_shift", "gt_beats_mirrored_limbs"):
    assert 0.0 <= summary[name] <= 1.0, name
  assert summary["base_mpjpe_mm"] > 0
  assert -1.0 <= summary["spearman_score_mpjpe_mean"] <= 1.0
  # One sequence only: "another sequence" never exists.
  assert np.isnan(summary["gt_beats_other_motion"])
  # The same with condition noise on the samples' rollouts.
  assert summary["noisy_condition_noise_m"] == 0.2
  assert summary["noisy_num_trajectories"] == 3
  assert 0.0 <= summary["noisy_gt_beats_all_base"] <= 1.0
  assert summary["noisy_base_mpjpe_mm"] != summary["base_mpjpe_mm"]

  model, params = critic_checkpoint.load(tmp_path)
  assert model.config == critic_training.critic_config(_tiny_config(base_dir))
  jax.tree.map(np.testing.assert_array_equal, params,
               jax.device_get(result.state.params))


def test_variants_validate():
  for variant in critic_config.VARIANTS:
    config = critic_config.get_config(variant)
    config.base_checkpoint = "somewhere"
    config.body.smplh_npz = "model.npz"
    critic_mode.validate(config, num_devices=8)
  demo = critic_config.get_config("demo")
  assert demo.objective.temperature == 0.07
  assert tuple(demo.objective.perturbations) == (
      "time_shift", "joint_noise", "foot_sliding", "mirrored_limbs",
      "other_motion")


@pytest.mark.parametrize("field,value,message", [
    ("base_checkpoint", "", r"config.base_checkpoint is empty"),
    ("data.batch_size", 6, r"config.data.batch_size=6 must be a positive "
     r"multiple of the number of devices \(4\)"),
    ("model.num_heads", 3, r"config.model: .*num_heads=3"),
    ("objective.perturbations", ("time_shift", "wobble"),
     r"config.objective: .*kinds"),
    ("objective.base_last_steps", 40, r"base_last_steps=40"),
    ("sampler.num_steps", 10, r"config.sampler: .*σ too large"),
    ("eval.num_samples", 1, r"config.eval.num_samples=1"),
    ("objective.condition_noise_max", -0.1, r"must be >= 0"),
    ("body.model", "smpl", r"config.body.model='smpl'"),
])
def test_bad_config_is_a_clear_error(field, value, message):
  config = critic_config.get_config("demo")
  config.base_checkpoint = "somewhere"
  *groups, name = field.split(".")
  target = config
  for group in groups:
    target = target[group]
  target[name] = value
  with pytest.raises(ValueError, match=message):
    critic_mode.validate(config, num_devices=4)


def test_workdir_of_another_critic_is_an_error(tmp_path):
  critic_checkpoint.write_config(str(tmp_path), critic_lib.CriticConfig())
  with pytest.raises(ValueError, match="another critic"):
    critic_checkpoint.write_config(str(tmp_path),
                                     critic_lib.CriticConfig(d_model=64))
  with pytest.raises(ValueError, match="unknown variant"):
    critic_config.get_config("nope")
