"""Tests for train/state.py: the optimiser against hand-computed AdamW, skips."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from motiongrpo_jax.train import state as state_lib

EPS = float(np.finfo(np.float32).eps)  # 1.19e-7


def _adam_step_rtol(t, b2=0.999):
  """Relative error of optax's float32 Adam step t: 1 − b2ᵗ carries
  ≤ (t/2 + 1)·eps (b2's cast, the power, the subtraction), which v̂ divides by
  and the step's 1/√v̂ halves."""
  return (t / 2 + 1) * EPS / (2 * (1 - b2**t))


def _opt_config(**overrides):
  config = ml_collections.ConfigDict(dict(
      learning_rate=0.1, warmup_steps=2, weight_decay=0.01, grad_clip_norm=1.0,
      b1=0.9, b2=0.999, eps=1e-8, ema_decay=0.0, schedule="constant",
      trainable=""))
  config.update(overrides)
  return config


def test_cosine_schedule_reaches_zero_at_the_last_update():
  schedule = state_lib.make_schedule(
      _opt_config(learning_rate=1e-4, warmup_steps=10, schedule="cosine"),
      total_updates=110)
  # Warm-up as the constant schedule, then peak · (1 + cos(π·s/100)) / 2 for
  # s updates after it: s = 50 is half the peak, s = 100 is 0.
  for count, expected in [(0, 0.0), (5, 5e-5), (10, 1e-4), (60, 5e-5),
                          (110, 0.0), (200, 0.0)]:
    # A float32 cosine of an argument ≤ π (a few roundings of ≤ 1e-4).
    np.testing.assert_allclose(schedule(count), expected, rtol=4 * EPS,
                               atol=4 * EPS * 1e-4)
  with pytest.raises(ValueError, match="optimizer.schedule='cosine'"):
    state_lib.make_schedule(_opt_config(schedule="cosine"))
  with pytest.raises(ValueError, match="optimizer.schedule='linear'"):
    state_lib.make_schedule(_opt_config(schedule="linear"))


def test_schedule_is_linear_warmup_from_zero_then_constant():
  schedule = state_lib.make_schedule(_opt_config(learning_rate=1e-4,
                                                 warmup_steps=1000))
  # EgoAllo: lr · min(1, s / warmup) for update s = 0, 1, …
  for count, expected in [(0, 0.0), (1, 1e-7), (500, 5e-5), (1000, 1e-4),
                          (5000, 1e-4)]:
    # optax forms (init − peak)·(1 − s/w) + peak in float32: ≲ 3 roundings of
    # ≤ 1e-4, which the small early rates (1e-7) do not shrink.
    np.testing.assert_allclose(schedule(count), expected, rtol=4 * EPS,
                               atol=3 * EPS * 1e-4)
  constant = state_lib.make_schedule(_opt_config(warmup_steps=0))
  assert float(constant(0)) == pytest.approx(0.1)


def test_optimizer_matches_hand_computed_clipped_adamw():
  config = _opt_config()
  tx = state_lib.make_optimizer(config)
  p0 = np.array([1.0, -2.0, 0.5], np.float32)
  g1 = np.array([3.0, 4.0, 0.0], np.float32)  # norm 5 → clipped to 1
  g2 = np.array([0.1, -0.2, 0.3], np.float32)  # norm < 1 → unchanged
  opt_state = tx.init(jnp.asarray(p0))
  p = jnp.asarray(p0)
  for g in (g1, g2):
    updates, opt_state = tx.update(jnp.asarray(g), opt_state, p)
    p = p + updates

  # By hand: update 0 has lr 0 (warm-up), update 1 has lr 0.05.
  c1 = g1 / 5.0
  c2 = g2
  m = 0.9 * (0.1 * c1) + 0.1 * c2
  v = 0.999 * (0.001 * c1**2) + 0.001 * c2**2
  m_hat = m / (1 - 0.9**2)
  v_hat = v / (1 - 0.999**2)
  expected = p0 - 0.05 * (m_hat / (np.sqrt(v_hat) + 1e-8) + 0.01 * p0)
  # Step 2 (lr 0.05, |m̂/√v̂| ≤ 0.8) off by _adam_step_rtol(2), plus ≲ 4
  # roundings of p (≤ 2).
  step = 0.05 * np.abs(m_hat / np.sqrt(v_hat)).max()
  np.testing.assert_allclose(p, expected, rtol=0,
                             atol=step * _adam_step_rtol(2) + 4 * EPS * 2)


def test_optimizer_without_clipping():
  tx = state_lib.make_optimizer(_opt_config(grad_clip_norm=0.0, warmup_steps=0))
  p0 = jnp.zeros(2)
  updates, _ = tx.update(jnp.array([30.0, -40.0]), tx.init(p0), p0)
  # First Adam step: m̂/√v̂ = sign(g); no clipping, no decay (p = 0).
  np.testing.assert_allclose(updates, [-0.1, 0.1], rtol=_adam_step_rtol(1))


def _state():
  tx = state_lib.make_optimizer(_opt_config(warmup_steps=0))
  params = {"w": jnp.array([1.0, 2.0])}
  return state_lib.create(params, tx, jax.random.PRNGKey(0)), tx


@pytest.mark.parametrize("bad", ["nan_grad", "inf_grad", "nan_loss"])
def test_nonfinite_step_is_skipped_and_counted(bad):
  state, tx = _state()
  grads = {"w": jnp.array([0.5, 0.5])}
  loss = jnp.float32(1.0)
  if bad == "nan_grad":
    grads = {"w": jnp.array([jnp.nan, 0.5])}
  elif bad == "inf_grad":
    grads = {"w": jnp.array([0.5, jnp.inf])}
  else:
    loss = jnp.float32(jnp.nan)
  skipped, stats = state_lib.apply_gradients(state, grads, loss, tx)
  np.testing.assert_array_equal(skipped.params["w"], state.params["w"])
  same = jax.tree.map(lambda a, b: np.array_equal(a, b),
                            skipped.opt_state, state.opt_state)
  assert all(jax.tree.leaves(same))
  assert int(skipped.step) == 1
  assert int(skipped.nonfinite_steps) == 1
  assert int(skipped.nonfinite_in_a_row) == 1
  assert float(stats["skipped"]) == 1.0
  assert float(stats["update_norm"]) == 0.0

  # A second bad step counts on; a good one applies and resets the run.
  again, _ = state_lib.apply_gradients(skipped, grads, loss, tx)
  assert (int(again.nonfinite_steps), int(again.nonfinite_in_a_row)) == (2, 2)
  good, stats = state_lib.apply_gradients(
      again, {"w": jnp.array([0.5, 0.5])}, jnp.float32(1.0), tx)
  assert int(good.step) == 3
  assert (int(good.nonfinite_steps), int(good.nonfinite_in_a_row)) == (2, 0)
  assert float(stats["skipped"]) == 0.0
  # Adam's first step moves each coordinate by lr·sign(g) (+ decay).
  # Step (lr 0.1) off by _adam_step_rtol(1), plus ≲ 4 roundings of w (≤ 2).
  np.testing.assert_allclose(good.params["w"],
                             [1.0 - 0.1 * (1 + 0.01), 2.0 - 0.1 * (1 + 0.02)],
                             rtol=0,
                             atol=0.1 * _adam_step_rtol(1) + 4 * EPS * 2)


def test_negative_warmup_is_an_error():
  with pytest.raises(ValueError, match="optimizer.warmup_steps=-1"):
    state_lib.make_schedule(_opt_config(warmup_steps=-1))


def test_parameter_average_by_hand():
  """ema ← d·ema + (1 − d)·params after each update, from the initial
  parameters; the updates themselves are unchanged by it."""
  config = _opt_config(grad_clip_norm=0.0, warmup_steps=0, weight_decay=0.0,
                       learning_rate=0.5, ema_decay=0.75)
  plain = state_lib.make_optimizer(_opt_config(
      grad_clip_norm=0.0, warmup_steps=0, weight_decay=0.0, learning_rate=0.5))
  params = {"w": jnp.array([1.0, -2.0])}
  state = state_lib.create(params, state_lib.make_optimizer(config),
                           jax.random.PRNGKey(0))
  reference = state_lib.create(params, plain, jax.random.PRNGKey(0))
  np.testing.assert_array_equal(state_lib.averaged_params(state)["w"],
                                [1.0, -2.0])
  assert state_lib.averaged_params(reference) is reference.params
  expected = np.array([1.0, -2.0])
  for grad in ([1.0, -1.0], [0.5, 2.0]):
    grads = {"w": jnp.array(grad)}
    state, _ = state_lib.apply_gradients(
        state, grads, jnp.float32(0), state_lib.make_optimizer(config))
    reference, _ = state_lib.apply_gradients(reference, grads,
                                             jnp.float32(0), plain)
    np.testing.assert_array_equal(state.params["w"], reference.params["w"])
    expected = 0.75 * expected + 0.25 * np.asarray(state.params["w"])
    np.testing.assert_allclose(state_lib.averaged_params(state)["w"],
                               expected, rtol=4 * np.finfo(np.float32).eps)
  with pytest.raises(ValueError, match="ema_decay=1.0"):
    state_lib.make_optimizer(_opt_config(ema_decay=1.0))


def test_grad_cosine_by_hand():
  """cos(g_k, g_{k−1}) of the raw gradients (before clipping), 0 first; the
  updates are those of the optimiser without tracking."""
  config = _opt_config(grad_clip_norm=0.1, warmup_steps=0, learning_rate=0.5)
  tracked = state_lib.make_optimizer(config, grad_cosine=True)
  plain = state_lib.make_optimizer(config)
  params = {"a": jnp.array([1.0, -2.0]), "b": jnp.array(3.0)}
  state = state_lib.create(params, tracked, jax.random.PRNGKey(0))
  reference = state_lib.create(params, plain, jax.random.PRNGKey(0))
  # (1, 0, 0) then (1, 1, 0) then (−2, −2, 0): cosines 0, 1/√2, −1.
  for grad, cosine in (((1.0, 0.0, 0.0), 0.0),
                       ((1.0, 1.0, 0.0), 2**-0.5),
                       ((-2.0, -2.0, 0.0), -1.0)):
    grads = {"a": jnp.array(grad[:2]), "b": jnp.array(grad[2])}
    state, stats = state_lib.apply_gradients(state, grads, jnp.float32(0),
                                             tracked)
    reference, ref_stats = state_lib.apply_gradients(
        reference, grads, jnp.float32(0), plain)
    assert "grad_cosine" not in ref_stats
    np.testing.assert_allclose(stats["grad_cosine"], cosine,
                               atol=4 * np.finfo(np.float32).eps)
    np.testing.assert_array_equal(state.params["a"], reference.params["a"])


def test_trainable_parameters_only():
  """optimizer.trainable = "emb": only `emb` moves, by the clipped AdamW step
  of its own gradient (the frozen gradient [30, 40] is left out of the clip's
  norm: emb's [3, 4] has norm 5 → clipped to [0.6, 0.8]; first Adam step
  m̂/√v̂ = sign, lr 0.1, decay 0.01·p)."""
  tx = state_lib.make_optimizer(_opt_config(warmup_steps=0, trainable="emb"))
  params = {"emb": jnp.array([1.0, -1.0]), "dense": {"kernel": jnp.ones(2)}}
  grads = {"emb": jnp.array([3.0, 4.0]), "dense": {"kernel": jnp.array(
      [30.0, 40.0])}}
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_array_equal(updates["dense"]["kernel"], [0.0, 0.0])
  np.testing.assert_allclose(updates["emb"], [-0.1 - 0.001, -0.1 + 0.001],
                             rtol=_adam_step_rtol(1) + 4 * EPS)
  with pytest.raises(ValueError, match="optimizer.trainable='nothing'"):
    state_lib.make_optimizer(_opt_config(trainable="nothing")).init(params)
