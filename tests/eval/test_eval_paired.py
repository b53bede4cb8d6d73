"""Paired relative change and its bootstrap interval."""

import numpy as np
import pytest

from motiongrpo_jax.eval import paired


def test_relative_change_by_hand():
  assert paired.relative_change(np.array([100.0, 200.0]),
                                np.array([90.0, 180.0])) == pytest.approx(-10)


def test_interval_covers_a_known_paired_shift():
  """new = 0.95·base + small noise: the change is −5 % and the paired
  interval is narrow although the windows differ by ±10 %."""
  rng = np.random.default_rng(0)
  base = rng.normal(100.0, 10.0, 400)
  new = 0.95 * base + rng.normal(0.0, 1.0, 400)
  out = paired.paired_change(base, new)
  assert out["ci_low"] < out["change_percent"] < out["ci_high"]
  assert out["ci_low"] < -5 + 0.3 and out["ci_high"] > -5 - 0.3
  assert out["ci_high"] - out["ci_low"] < 0.5
  # Unpaired, the same data would give an interval ~10× wider: pairing
  # matters. Shuffling the pairs widens it accordingly.
  shuffled = paired.paired_change(base, rng.permutation(new))
  assert shuffled["ci_high"] - shuffled["ci_low"] > 5 * (
      out["ci_high"] - out["ci_low"])
  assert paired.paired_change(base, new) == out  # fixed seed


def test_no_change_interval_contains_zero_and_nonfinite_windows_dropped():
  rng = np.random.default_rng(1)
  base = rng.normal(50.0, 5.0, 300)
  new = base + rng.normal(0.0, 1.0, 300)
  new[:3] = np.nan
  out = paired.paired_change(base, new)
  assert out["windows"] == 297
  assert out["ci_low"] < 0 < out["ci_high"]
  with pytest.raises(ValueError, match="expected two"):
    paired.paired_change(base, new[:10])
