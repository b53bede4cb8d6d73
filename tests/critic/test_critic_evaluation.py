"""The critic evaluation's numbers on hand-built scores (the jitted batch
function runs end to end in tests/modes/test_mode_critic.py)."""

import numpy as np
import pytest
import scipy.stats

from motiongrpo_jax.critic import evaluation as critic_eval


def test_spearman_rows_matches_scipy_with_ties_and_constants():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(6, 7))
  y = rng.normal(size=(6, 7))
  x[1, 3] = x[1, 4]  # A tie.
  y[2] = -2.0 * x[2] + 1.0  # Perfect negative monotone relation.
  rho = critic_eval.spearman_rows(x, y)
  expected = [scipy.stats.spearmanr(a, b).statistic for a, b in zip(x, y)]
  np.testing.assert_allclose(rho, expected, atol=1e-12)
  assert rho[2] == pytest.approx(-1.0)
  # Hand-computed: ranks (1,2,3) vs (1,3,2) → 1 − 6·2/(3·8) = 0.5.
  assert critic_eval.spearman_rows([[1.0, 2.0, 3.0]], [[10.0, 30.0, 20.0]])[0] == (
      pytest.approx(0.5))
  const = critic_eval.spearman_rows([[1.0, 1.0, 1.0]], [[1.0, 2.0, 3.0]])
  assert np.isnan(const[0])
  with pytest.raises(ValueError, match="M >= 2"):
    critic_eval.spearman_rows(np.zeros((2, 1)), np.zeros((2, 1)))


def test_summarize_on_hand_built_scores():
  gt = np.array([2.0, 0.0, 1.0])
  base = np.array([[1.0, 1.5, 0.5],    # gt beats all
                   [0.5, -1.0, -2.0],  # gt beats 2 of 3
                   [0.0, 0.2, 0.9]])   # gt beats all
  # Row 0: lower error, higher score (ρ = −1); row 1: ρ = +1; row 2 constant.
  mpjpe = np.array([[20.0, 10.0, 30.0],
                    [30.0, 20.0, 10.0],
                    [50.0, 50.0, 50.0]])
  pert = np.array([[1.0, 3.0], [-1.0, 0.0], [0.0, 0.0]])
  valid = np.array([[True, True], [True, False], [True, False]])
  out = critic_eval.summarize(gt, base, mpjpe, pert, valid, ("a", "b"))
  assert out["num_trajectories"] == 3
  assert out["gt_beats_all_base"] == pytest.approx(2 / 3)
  assert out["gt_beats_base_pairwise"] == pytest.approx(8 / 9)
  assert out["spearman_score_mpjpe_mean"] == pytest.approx(0.0)
  assert out["spearman_negative_fraction"] == pytest.approx(0.5)
  assert out["spearman_num_trajectories"] == 2
  assert out["gt_beats_a"] == pytest.approx(1.0)
  assert out["gt_beats_b"] == pytest.approx(0.0)  # Only row 0: 2 < 3.
  assert out["base_mpjpe_mm"] == pytest.approx(np.mean(mpjpe))
  assert out["spearman_pooled"] == pytest.approx(
      scipy.stats.spearmanr(base.ravel(), mpjpe.ravel()).statistic)
  with pytest.raises(ValueError, match="does not match"):
    critic_eval.summarize(gt[:2], base, mpjpe, pert, valid, ("a", "b"))
