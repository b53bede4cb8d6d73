"""Training plots from a hand-written metrics.jsonl."""

import json
import subprocess
import sys

import matplotlib
import numpy as np
import pytest

from motiongrpo_jax.tools import plot

matplotlib.use("Agg")


def _write(path, records):
  path.write_text("".join(json.dumps(r) + "\n" for r in records))
  return path


def _grpo_records():
  out = [{"step": 0, "split": "val", "time": 0.0, "mpjpe": 120.0,
          "mpjpe_stderr": 5.0, "reward/pos": 0.5, "foot_skate": 0.4}]
  for step in (1, 2, 3):
    out.append({"step": step, "split": "train", "time": 1.0 + step,
                "loss": -0.1 * step, "reward/pos_mean": 0.5 + 0.1 * step,
                "reward/pos_group_std": 0.05, "reward/rot_mean": 0.6,
                "reward/rot_group_std": 0.04,
                "zero_advantage_fraction": 0.25,
                "diversity_joint_distance": 0.06, "clip_fraction": 0.1,
                "approx_kl": 1e-3, "grad_norm": 0.5, "learning_rate": 2e-5})
  # Step 2 logged again after a resume: the later record wins; a NaN is a gap.
  out.append({"step": 2, "split": "train", "time": 9.0, "loss": "nan",
              "reward/pos_mean": 0.9, "reward/pos_group_std": 0.05,
              "reward/rot_mean": 0.6, "reward/rot_group_std": 0.04})
  out.append({"step": 3, "split": "val", "time": 10.0, "mpjpe": 100.0,
              "mpjpe_stderr": 4.0, "reward/pos": 0.7, "foot_skate": 0.3})
  return out


def test_grpo_panels_and_values(tmp_path):
  _write(tmp_path / "metrics.jsonl", _grpo_records())
  records = plot.read_records(tmp_path)
  fig, titles = plot.figure(records)
  assert titles == [
      "loss", "reward: group mean", "reward: within-group std",
      "zero-advantage fraction", "sample diversity (m)", "clip fraction",
      "KL", "validation rewards", "validation joint errors (mm)",
      "validation physics", "norms", "learning rate"]
  axes = [ax for ax in fig.axes if ax.get_visible()]
  assert [ax.get_title() for ax in axes] == titles
  reward = axes[1]
  lines = {ln.get_label(): ln for ln in reward.get_lines()}
  assert sorted(lines) == ["reward/pos_mean", "reward/rot_mean"]
  np.testing.assert_array_equal(lines["reward/pos_mean"].get_xdata(),
                                [1, 2, 3])
  np.testing.assert_allclose(lines["reward/pos_mean"].get_ydata(),
                             [0.6, 0.9, 0.8])
  loss = {ln.get_label(): ln for ln in axes[0].get_lines()}
  assert list(loss) == ["train/loss"]  # no val loss in a GRPO run
  y = loss["train/loss"].get_ydata()
  assert y[0] == pytest.approx(-0.1) and np.isnan(y[1])
  val = {ln.get_label(): ln for ln in axes[8].get_lines()}
  np.testing.assert_allclose(val["mpjpe"].get_ydata(), [120.0, 100.0])
  assert "mpjpe_stderr" not in val  # drawn as the line's 95 % band
  band = axes[8].collections[0].get_paths()[0].vertices[:, 1]
  np.testing.assert_allclose([band.min(), band.max()],
                             [100.0 - 1.96 * 4.0, 120.0 + 1.96 * 5.0])
  assert axes[10].get_yscale() == "log"


def test_pretrain_workdir_gets_loss_panels(tmp_path):
  records = [{"step": s, "split": "train", "loss": 1.0 / s,
              "loss_betas": 0.1 / s, "loss_body_rotmats": 0.5 / s}
             for s in (1, 2, 3)]
  records.append({"step": 3, "split": "val", "loss": 0.4,
                  "loss_betas": 0.05, "loss_body_rotmats": 0.2})
  _write(tmp_path / "metrics.jsonl", records)
  _, titles = plot.figure(plot.read_records(tmp_path))
  assert titles == ["loss", "loss terms (train)", "loss terms (val)"]


def test_folder_output_and_cli(tmp_path):
  _write(tmp_path / "metrics.jsonl", _grpo_records())
  written = plot.plot_workdir(tmp_path, tmp_path / "plots")
  assert len(written) == 12
  assert (tmp_path / "plots" / "reward_group_mean.png").stat().st_size > 1000
  result = subprocess.run(
      [sys.executable, "-m", "motiongrpo_jax.tools.plot",
       f"--workdir={tmp_path}", f"--output={tmp_path / 'all.png'}"],
      capture_output=True, text=True, timeout=120, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  assert (tmp_path / "all.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_empty_and_unplottable(tmp_path):
  with pytest.raises(FileNotFoundError, match="no metrics.jsonl"):
    plot.read_records(tmp_path)
  (tmp_path / "metrics.jsonl").write_text("")
  with pytest.raises(ValueError, match="no metric records"):
    plot.read_records(tmp_path)
  _write(tmp_path / "metrics.jsonl",
         [{"step": 1, "split": "train", "something_else": 1.0}])
  with pytest.raises(ValueError, match=r"no plottable metrics.*something_else"):
    plot.plot_workdir(tmp_path, tmp_path / "p.png")
