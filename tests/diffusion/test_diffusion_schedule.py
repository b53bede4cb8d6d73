"""Schedule, step coefficients and windows against EgoAllo's golden files."""

import numpy as np
import pytest

from motiongrpo_jax.diffusion import schedule
from motiongrpo_jax.diffusion import windows


def test_cosine_schedule_matches_golden(egoallo_reference):
  golden = np.load(egoallo_reference / "schedule.npz")
  sched = schedule.cosine_schedule(
      int(golden["timesteps"]), float(golden["cosine_s"]),
      float(golden["beta_clip_max"]), float(golden["sigma_factor"]),
      float(golden["loss_weight_padding"]))
  np.testing.assert_allclose(sched.alpha[1:], golden["alpha_t"], rtol=0, atol=1e-12)
  np.testing.assert_allclose(sched.alpha_bar, golden["alpha_bar_t"], rtol=0, atol=1e-12)
  np.testing.assert_allclose(sched.sigma, golden["sigma_t"], rtol=0, atol=1e-12)
  # Float32 tables: bit-exact.
  np.testing.assert_array_equal(sched.alpha_bar_f32, golden["alpha_bar_t_f32_training"])
  np.testing.assert_array_equal(sched.loss_weight[1:], golden["loss_weight_t"][1:])
  np.testing.assert_array_equal(schedule.quadratic_ts(), golden["ts"])
  # Values quoted in the reference README.
  assert sched.alpha_bar[1000] == pytest.approx(2.4288e-9, rel=1e-4)
  assert sched.sigma[1] == 0.0 and sched.sigma[0] == 0.0
  # Quoted to 3 significant digits: ≤ 1.05e-3 relative (0.478).
  np.testing.assert_allclose(sched.loss_weight[[1, 2, 11, 1000]],
                             [1.0, 0.478, 0.0667, 0.01], rtol=2e-3)


def test_egoallo_step_coefficients_match_golden_step(egoallo_reference):
  golden = np.load(egoallo_reference / "golden_step.npz")
  coeffs = schedule.step_coefficients(schedule.cosine_schedule(),
                                      schedule.quadratic_ts())
  i = int(golden["step_index"])
  assert (coeffs.t[i], coeffs.t_next[i]) == (golden["t"], golden["t_next"])
  for ours, theirs in [("c_x0", "coef_x0"), ("c_dir", "coef_dir"),
                       ("c_xt", "sqrt_alpha_bar_t"), ("denom", "denom"),
                       ("sigma", "sigma")]:
    assert getattr(coeffs, ours)[i] == pytest.approx(float(golden[theirs]),
                                                     rel=0, abs=1e-14), ours
  # The last step (t = 1 → 0) is deterministic and lands on x̂0.
  assert coeffs.sigma[-1] == 0.0 and coeffs.c_dir[-1] == 0.0
  assert coeffs.c_x0[-1] == 1.0
  assert np.all(coeffs.sigma[:-1] > 0)


def test_ddim_coefficients_closed_form():
  sched = schedule.cosine_schedule()
  ts = schedule.quadratic_ts()
  ab_t, ab_n = sched.alpha_bar[ts[:-1]], sched.alpha_bar[ts[1:]]
  # η = 0: deterministic DDIM, x̂ε = (x_t − √ᾱ_t x̂0)/√(1−ᾱ_t).
  c0 = schedule.step_coefficients(sched, ts, kind="ddim", eta=0.0)
  np.testing.assert_array_equal(c0.sigma, 0.0)
  np.testing.assert_allclose(c0.c_dir, np.sqrt(1 - ab_n), rtol=1e-14)
  np.testing.assert_allclose(c0.denom, np.sqrt(1 - ab_t), rtol=1e-14)
  # η = 1: the DDPM posterior q(x_t' | x_t, x0) of the jump t → t'.
  c1 = schedule.step_coefficients(sched, ts, kind="ddim", eta=1.0)
  a_jump = ab_t / ab_n
  var = (1 - ab_n) / (1 - ab_t) * (1 - a_jump)
  np.testing.assert_allclose(c1.sigma**2, var, rtol=1e-10)
  coef_xt = c1.c_dir / c1.denom
  coef_x0 = c1.c_x0 - coef_xt * c1.c_xt
  # c_dir² = 1 − ᾱ' − σ² cancels badly at the first step (coef_xt ≈ 2e-4).
  np.testing.assert_allclose(coef_xt, np.sqrt(a_jump) * (1 - ab_n) / (1 - ab_t),
                             rtol=1e-6)
  np.testing.assert_allclose(coef_x0, np.sqrt(ab_n) * (1 - a_jump) / (1 - ab_t),
                             rtol=1e-9, atol=1e-12)


def test_bad_schedule_options_raise():
  sched = schedule.cosine_schedule()
  with pytest.raises(ValueError, match="kind"):
    schedule.step_coefficients(sched, schedule.quadratic_ts(), kind="ddpm")
  with pytest.raises(ValueError, match="decreasing"):
    schedule.step_coefficients(sched, np.array([0, 10]))
  with pytest.raises(ValueError, match="σ too large"):
    schedule.step_coefficients(sched, schedule.quadratic_ts(), kind="ddim",
                               eta=3.0)


@pytest.mark.parametrize("name", ["golden_rollout", "golden_rollout_long"])
def test_window_spans_and_weights_match_golden(egoallo_reference, name):
  golden = np.load(egoallo_reference / f"{name}.npz")
  seq_len = len(golden["T_cpf_tm1_cpf_t"])
  spans = windows.window_spans(seq_len)
  assert spans == tuple(zip(golden["window_starts"].tolist(),
                            golden["window_ends"].tolist()))
  weights = windows.canonical_weights(seq_len)
  np.testing.assert_array_equal(weights, golden["canonical_overlap_weights"])
  total = np.zeros(seq_len, np.float32)
  for start, end in spans:
    total[start:end] += weights[:end - start]
  np.testing.assert_array_equal(total, golden["overlap_weights_total"])


def test_non_redundant_windows():
  assert windows.window_spans(128, non_redundant=True) == ((0, 128),)
  assert windows.window_spans(300, non_redundant=True) == (
      (0, 128), (96, 224), (192, 300))
  assert windows.window_spans(16) == ((0, 16),)
  assert windows.window_spans(97) == ((0, 97), (96, 97))
  with pytest.raises(ValueError, match="overlap"):
    windows.window_spans(10, window_size=8, overlap=8)
