"""The grpo mode end to end on a tiny config: iterations with every diagnostic
logged, the base-vs-GRPO summary, exact resume, and start-up errors.

The runs happen in one subprocess with JAX's persistent compilation cache
(set before JAX starts), so the resumed run reuses the first run's compiled
programs instead of compiling them again.
"""

import json
import math
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from motiongrpo_jax.configs import eval as eval_config
from motiongrpo_jax.configs import grpo as grpo_config
from motiongrpo_jax.modes import grpo as grpo_mode

from conftest import save_tiny_base



@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
  """A tiny base denoiser (model directory) and a dataset beside it."""
  return save_tiny_base(tmp_path_factory.mktemp("base"), num_frames=16,
                        encoder_layers=0)


def tiny_config(base_dir, **train):
  config = grpo_config.get_config("demo")
  config.init_checkpoint = str(base_dir / "model")
  config.bootstrap.enabled = False
  config.reward.weight_vis = 0.0  # no critic unless a test adds one
  config.data.update(data_dir=str(base_dir / "data"),
                     build_synthetic_if_missing=False, seq_len=6, batch_size=2)
  config.group.group_size = 2
  config.sampler.update(num_steps=3, update="ddim")
  config.iteration.num_minibatches = 2
  config.objective.update(kl_beta=0.1, num_train_steps=1)
  config.eval.update(batch_size=2, num_samples=1, val_batches=1,
                     max_batches=2)
  config.train.update(num_steps=2, log_every_steps=1, eval_every_steps=0,
                      checkpoint_every_steps=1, progress_every_seconds=0.0)
  config.train.update(train)
  return config


def eval_config_of(base_dir, workdir):
  """The eval mode on GRPO run `workdir` with its final table's windows,
  keys (the seed), samples and sampler."""
  grpo = tiny_config(base_dir)
  config = eval_config.get_config("demo")
  config.checkpoint = str(workdir)
  config.seed = grpo.seed
  config.num_samples = grpo.eval.num_samples
  config.data.update(data_dir=grpo.data.data_dir, split=grpo.eval.split,
                     seq_len=grpo.data.seq_len,
                     batch_size=grpo.eval.batch_size,
                     max_windows=grpo.eval.max_batches * grpo.eval.batch_size)
  config.sampler.update(num_steps=grpo.sampler.num_steps,
                        update=grpo.sampler["update"],
                        rotation_projection=grpo.sampler.rotation_projection)
  return config


# Runs: A = 2 iterations, then the eval mode on A; B = 1 iteration, then the
# same command with num_steps = 2 (resume). Prints the final parameters'
# difference.
_SCRIPT = r"""
import json, sys, pathlib
import jax, numpy as np
# The test module and `tests/` (its conftest).
sys.path[:0] = [sys.argv[3], str(pathlib.Path(sys.argv[3]).parent)]
import test_mode_grpo as t
from motiongrpo_jax.modes import eval as eval_mode
from motiongrpo_jax.modes import grpo as grpo_mode
from motiongrpo_jax.train import checkpoints
base, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
grpo_mode.run(t.tiny_config(base), str(out / "A"))
eval_mode.run(t.eval_config_of(base, out / "A"), str(out / "eval_A"))
grpo_mode.run(t.tiny_config(base, num_steps=1), str(out / "B"))
grpo_mode.run(t.tiny_config(base), str(out / "B"))
params = [checkpoints.load_denoiser(out / r)[1] for r in ("A", "B")]
diff = max(jax.tree.leaves(jax.tree.map(
    lambda a, b: float(np.abs(np.asarray(a) - np.asarray(b)).max()), *params)))
print("RESULT " + json.dumps({"resume_max_diff": diff}))
"""


@pytest.fixture(scope="module")
def runs(base_dir, tmp_path_factory):
  out = tmp_path_factory.mktemp("runs")
  env = dict(os.environ)
  env["JAX_PLATFORMS"] = "cpu"
  env["JAX_COMPILATION_CACHE_DIR"] = str(out / "jax_cache")
  env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
  proc = subprocess.run(
      [sys.executable, "-c", _SCRIPT, str(base_dir), str(out),
       str(pathlib.Path(__file__).parent)],
      env=env, capture_output=True, text=True, timeout=1200, check=False)
  assert proc.returncode == 0, proc.stderr[-4000:]
  line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")][-1]
  return out, json.loads(line[len("RESULT "):])


def test_end_to_end(runs):
  out, _ = runs
  rows = [json.loads(l) for l in
          (out / "A" / "metrics.jsonl").read_text().splitlines()]
  train = [r for r in rows if r["split"] == "train"]
  val = [r for r in rows if r["split"] == "val"]
  assert [r["step"] for r in train] == [1, 2]
  assert [r["step"] for r in val] == [0, 2]
  for r in train:
    for name in ("loss", "reward/rot_mean", "reward/pos_group_std",
                 "zero_advantage_fraction", "diversity_joint_distance",
                 "grad_norm", "clip_fraction", "approx_kl", "ratio_min",
                 "ratio_max", "kl", "first_log_ratio_abs_max"):
      assert math.isfinite(r[name]), name
    assert r["first_log_ratio_abs_max"] < 1e-4
    assert r["skipped"] == 0
  assert train[0]["first_kl"] < 1e-8 < train[1]["first_kl"]
  for r in val:
    assert r["mpjpe"] > 0 and 0 < r["reward/hybrid"] <= 1
  summary = json.loads((out / "A" / "summary.json").read_text())
  assert summary["iterations"] == 2
  assert summary["eval_split"] == "test"
  for column in ("base", "grpo"):
    for name in ("mpjpe", "pampjpe", "jitter", "foot_skate", "reward/hybrid",
                 "reward/rot", "reward/pos", "reward/pa_pos", "reward/vel"):
      assert math.isfinite(summary[column][name]), (column, name)
  # The base column is the initial policy: its MPJPE differs from GRPO's.
  assert summary["base"]["mpjpe"] != summary["grpo"]["mpjpe"]
  # Paired windows: the change and its 95 % interval, which holds it.
  low, high = summary["change_ci95_percent"]["mpjpe"]
  assert low <= summary["change_percent"]["mpjpe"] <= high
  assert summary["eval_windows"] > 1
  assert summary["base"]["mpjpe_stderr"] > 0
  # The per-window values behind the table: their means are its columns.
  with np.load(out / "A" / "summary_windows.npz") as windows:
    for column in ("base", "grpo"):
      for name in ("mpjpe", "pelvis_error", "root_relative_mpjpe"):
        values = windows[f"{column}/{name}"]
        assert values.shape == (summary["eval_windows"],)
        assert np.mean(values) == pytest.approx(summary[column][name],
                                                rel=1e-12), (column, name)
  assert (out / "A" / "checkpoints" / "2" / "state").is_dir()


def test_summary_is_the_eval_modes(runs):
  # One evaluator: the GRPO table's MPJPE of the final policy is the eval
  # mode's on the same checkpoint, windows, keys and sampler. The two
  # programs differ (GRPO's also scores rewards), so XLA may order float32
  # sums differently: ~1e-7 relative per operation, through 3 sampler steps
  # and the forward kinematics, far below 1e-4.
  out, _ = runs
  summary = json.loads((out / "A" / "summary.json").read_text())
  metrics = json.loads((out / "eval_A" / "eval_metrics.json").read_text())
  assert metrics["metadata"]["num_windows"] == summary["eval_windows"]
  for name in ("mpjpe", "pampjpe", "jitter", "foot_skate"):
    assert metrics[name]["mean"] == pytest.approx(summary["grpo"][name],
                                                  rel=1e-4), name


def test_resume_is_exact(runs):
  out, result = runs
  # B stopped after iteration 1 and resumed (it did not start over: one
  # train row per iteration), ending with the same parameters as A.
  rows = [json.loads(l) for l in
          (out / "B" / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in rows if r["split"] == "train"] == [1, 2]
  assert result["resume_max_diff"] < 1e-6


def test_startup_errors(base_dir, tmp_path):
  config = tiny_config(base_dir)
  config.group.group_size = 1
  with pytest.raises(ValueError, match="config.group.group_size=1"):
    grpo_mode.run(config, str(tmp_path / "g1"))
  config = tiny_config(base_dir)
  config.data.batch_size = 3
  config.iteration.num_minibatches = 1
  config.eval.batch_size = 2
  with pytest.raises(ValueError, match="data.batch_size=3"):
    grpo_mode.validate(config, num_devices=2)
  config = tiny_config(base_dir)
  config.iteration.num_minibatches = 3  # 2 sequences × G 2 = 4 samples
  with pytest.raises(ValueError, match="config.data.batch_size: .*"
                     "num_minibatches"):
    grpo_mode.validate(config, num_devices=1)
  config = tiny_config(base_dir)
  config.reward.weight_vis = 1.0
  with pytest.raises(ValueError, match="critic_checkpoint"):
    grpo_mode.run(config, str(tmp_path / "nocritic"))
  # A critic checkpoint that is not a critic workdir.
  config.critic_checkpoint = str(base_dir / "model")
  with pytest.raises(ValueError, match="critic_checkpoint"):
    grpo_mode.run(config, str(tmp_path / "badcritic"))
  config = tiny_config(base_dir)
  config.sampler.update = "egoallo"
  config.sampler.num_steps = 3
  with pytest.raises(ValueError, match="config.sampler: "):
    grpo_mode.run(config, str(tmp_path / "steps"))
  config = tiny_config(base_dir)
  config.ablation.settings = "vanilla,nope"
  with pytest.raises(ValueError, match="config.ablation.settings="):
    grpo_mode.run(config, str(tmp_path / "ablation"))
  # Nothing was written by the failed starts.
  assert not any((tmp_path / d / "checkpoints").exists()
                 for d in ("g1", "nocritic", "badcritic", "steps"))


def test_ablation_settings_are_config_overrides(base_dir):
  config = tiny_config(base_dir)
  config.ablation.settings = "vanilla, noise_only"
  assert grpo_mode.ablation_settings(config) == ["vanilla", "noise_only"]
  noise_only = grpo_mode.with_setting(config, "noise_only")
  assert noise_only.condition_noise.kind == "perlin"
  assert noise_only.reward.weight_vis == 0.0
  assert noise_only.ablation.settings == ""
  # The other settings and the original config are unchanged.
  assert noise_only.condition_noise.amplitude == config.condition_noise.amplitude
  assert config.condition_noise.kind == "none"
  assert not grpo_mode.needs_critic(config, ["vanilla", "noise_only"])
  assert grpo_mode.needs_critic(config, ["vanilla", "full"])
