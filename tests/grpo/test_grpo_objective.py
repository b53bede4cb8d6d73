"""The clipped GRPO objective: values and gradients on hand-built ratios."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from motiongrpo_jax.diffusion import sampler
from motiongrpo_jax.diffusion import schedule as schedule_lib
from motiongrpo_jax.grpo import objective

CONFIG = objective.ObjectiveConfig(clip_range=0.2)


def test_ratio_one_gives_minus_mean_advantage_and_zero_diagnostics():
  old = jnp.array([[-3.0, 1.0], [0.5, 2.0], [7.0, -1.0]])
  adv = jnp.array([1.5, -0.5, 2.0])
  loss, stats = objective.grpo_loss(old, old, adv, None, CONFIG)
  assert float(loss) == pytest.approx(-float(jnp.mean(adv)), rel=1e-6)
  assert float(stats["clip_fraction"]) == 0.0
  assert float(stats["approx_kl"]) == 0.0
  assert float(stats["ratio_min"]) == float(stats["ratio_max"]) == 1.0


def test_clipped_objective_value_and_gradient_by_hand():
  # One step per sample; ratios 0.5, 1.1, 1.5, 0.7 against advantages
  # +1, +1, +1, −2 (ε = 0.2):
  #   r=0.5, A=+1: min(0.5, 0.8) = 0.5 (unclipped, gradient flows)
  #   r=1.1, A=+1: min(1.1, 1.1) = 1.1 (inside the range)
  #   r=1.5, A=+1: min(1.5, 1.2) = 1.2 (clipped, no gradient)
  #   r=0.7, A=−2: min(−1.4, −1.6) = −1.6 (clipped, no gradient)
  ratios = np.array([0.5, 1.1, 1.5, 0.7])
  adv = jnp.array([1.0, 1.0, 1.0, -2.0])
  old = jnp.array([[0.3], [-1.0], [2.0], [0.0]])
  new = old + jnp.log(jnp.asarray(ratios))[:, None]
  loss, stats = objective.grpo_loss(new, old, adv, None, CONFIG)
  assert float(loss) == pytest.approx(-(0.5 + 1.1 + 1.2 - 1.6) / 4, rel=1e-5)
  assert float(stats["clip_fraction"]) == pytest.approx(0.75)  # 0.5, 1.5, 0.7
  assert float(stats["approx_kl"]) == pytest.approx(
      0.5 * np.mean(np.log(ratios)**2), rel=1e-5)
  assert float(stats["ratio_min"]) == pytest.approx(0.5, rel=1e-6)
  assert float(stats["ratio_max"]) == pytest.approx(1.5, rel=1e-6)
  # d loss / d log π_θ = −r·A/N where the unclipped term is chosen, else 0.
  grad = jax.grad(lambda lp: objective.grpo_loss(lp, old, adv, None,
                                                 CONFIG)[0])(new)
  np.testing.assert_allclose(np.asarray(grad)[:, 0],
                             [-0.5 / 4, -1.1 / 4, 0.0, 0.0], rtol=1e-5)
  # No gradient reaches the old log-probs or the advantages.
  g_old, g_adv = jax.grad(
      lambda o, a: objective.grpo_loss(new, o, a, None, CONFIG)[0],
      argnums=(0, 1))(old, adv)
  assert not np.any(np.asarray(g_old)) and not np.any(np.asarray(g_adv))


def test_kl_term_adds_beta_times_mean():
  old = jnp.zeros((2, 3))
  adv = jnp.array([1.0, -1.0])
  kl = jnp.array([[0.1, 0.2, 0.3], [0.0, 0.4, 0.2]])
  config = objective.ObjectiveConfig(clip_range=0.2, kl_beta=0.5)
  loss, stats = objective.grpo_loss(old, old, adv, kl, config)
  assert float(stats["kl"]) == pytest.approx(0.2, rel=1e-6)
  assert float(loss) == pytest.approx(0.0 + 0.5 * 0.2, rel=1e-6)


def test_gaussian_kl_closed_form_and_log_prob_identity():
  consts = jax.tree.map(lambda c: c[3], sampler.step_constants(
      sampler.SamplerConfig()))
  sigma = float(consts.sigma)
  rng = np.random.default_rng(0)
  mean = jnp.asarray(rng.normal(size=(2, 5, 4)), jnp.float32)
  mask = jnp.array([[True] * 5, [True, True, True, False, False]])
  # A constant offset c on every scalar: KL = n·c²/(2σ²), n valid scalars.
  c = 0.01
  kl = objective.gaussian_kl(mean + c, mean, consts, mask)
  np.testing.assert_allclose(kl, [20 * c**2 / (2 * sigma**2),
                                  12 * c**2 / (2 * sigma**2)], rtol=1e-4)
  kl_mean = objective.gaussian_kl(mean + c, mean, consts, mask, "mean")
  np.testing.assert_allclose(kl_mean, c**2 / (2 * sigma**2), rtol=1e-4)
  # For equal variances KL(p‖q) = log p(μ_p) − log q(μ_p).
  ref = mean + jnp.asarray(rng.normal(0, 0.01, mean.shape), jnp.float32)
  identity = (sampler.gaussian_log_prob(mean, mean, consts, mask)
              - sampler.gaussian_log_prob(mean, ref, consts, mask))
  np.testing.assert_allclose(objective.gaussian_kl(mean, ref, consts, mask),
                             identity, rtol=1e-4)
  assert np.all(np.asarray(objective.gaussian_kl(mean, mean, consts, mask)) == 0)
  last = jax.tree.map(lambda c: c[-1], sampler.step_constants(
      sampler.SamplerConfig()))
  assert np.all(np.asarray(objective.gaussian_kl(mean + 1, mean, last, None)) == 0)


def test_gaussian_kl_over_chosen_fields():
  """Offsets δ on the betas dims and 10·δ on the body dims of a (1, 3, 226)
  state: the KL over "betas" sees only δ (mean over its 3·16 scalars:
  δ²/(2σ²)); over "betas,contacts" the 21 zero-offset contact dims dilute it
  to 16/37 of that; over all fields it is (16 + 189·100)·δ²/(2σ²·226)."""
  consts = jax.tree.map(lambda c: c[3], sampler.step_constants(
      sampler.SamplerConfig()))
  sigma, delta = float(consts.sigma), 0.01
  ref = jnp.zeros((1, 3, 226), jnp.float32)
  mean = ref.at[..., :16].set(delta).at[..., 16:205].set(10 * delta)
  base = delta**2 / (2 * sigma**2)
  for fields, expected in [(("betas",), base),
                           (("betas", "contacts"), base * 16 / 37),
                           ((), base * (16 + 189 * 100) / 226)]:
    kl = objective.gaussian_kl(mean, ref, consts, None, "mean", fields)
    # A mean of ≤ 226 float32 squares: a few roundings, well inside 1e-5.
    np.testing.assert_allclose(kl, [expected], rtol=1e-5)
  with pytest.raises(ValueError, match="objective.anchor_fields='size'"):
    objective.ObjectiveConfig(anchor_fields="size").validate()
  assert objective.ObjectiveConfig(
      anchor_fields="betas, contacts").anchor_field_names == ("betas",
                                                              "contacts")


def test_trained_steps_all_and_random_subset():
  config = sampler.SamplerConfig(num_steps=30)
  trainable = objective.trainable_steps(config)
  np.testing.assert_array_equal(trainable, np.arange(29))  # last σ = 0
  all_steps = objective.select_steps(jax.random.key(0), trainable, 0)
  np.testing.assert_array_equal(all_steps, trainable)
  subset = np.asarray(objective.select_steps(jax.random.key(0), trainable, 5))
  assert len(set(subset.tolist())) == 5 and np.all(np.diff(subset) > 0)
  assert set(subset.tolist()) <= set(trainable.tolist())
  other = np.asarray(objective.select_steps(jax.random.key(1), trainable, 5))
  assert not np.array_equal(subset, other)
  with pytest.raises(ValueError, match="num_train_steps"):
    objective.ObjectiveConfig(num_train_steps=30).validate(len(trainable))
  with pytest.raises(ValueError, match="clip_range"):
    objective.ObjectiveConfig(clip_range=1.5).validate()


def test_train_window_keeps_the_noisiest_steps():
  config = sampler.SamplerConfig(num_steps=30)
  np.testing.assert_array_equal(objective.trainable_steps(config, 6),
                                np.arange(6))
  subset = np.asarray(objective.select_steps(
      jax.random.key(0), objective.trainable_steps(config, 6), 3))
  assert set(subset.tolist()) <= set(range(6))
  objective.ObjectiveConfig(train_window=6, num_train_steps=6).validate(29)
  with pytest.raises(ValueError, match="num_train_steps=7"):
    objective.ObjectiveConfig(train_window=6, num_train_steps=7).validate(29)
  # A window wider than the schedule's stochastic steps keeps them all.
  np.testing.assert_array_equal(objective.trainable_steps(config, 40),
                                np.arange(29))
  objective.ObjectiveConfig(train_window=40, num_train_steps=29).validate(29)
  with pytest.raises(ValueError, match="train_window=-1"):
    objective.ObjectiveConfig(train_window=-1).validate(29)


def test_anchor_candidates_are_the_untrained_stochastic_steps():
  """EgoAllo's 30 steps: σ > 0 on steps 0–28; a window of 3 leaves 3–28 to
  the anchor, a window over all of them (or 0: all trained) leaves none."""
  config = sampler.SamplerConfig(num_steps=30)
  np.testing.assert_array_equal(objective.anchor_candidates(config, 3),
                                np.arange(3, 29))
  assert objective.anchor_candidates(config, 29).size == 0
  assert objective.anchor_candidates(config, 0).size == 0
  objective.ObjectiveConfig(anchor_beta=1.0, anchor_steps=26).validate(29)
  with pytest.raises(ValueError, match="anchor_steps=27"):
    objective.ObjectiveConfig(anchor_beta=1.0, anchor_steps=27).validate(29)
  with pytest.raises(ValueError, match="anchor_steps=1"):
    objective.ObjectiveConfig(train_window=0, anchor_beta=1.0,
                              anchor_steps=1).validate(29)
  with pytest.raises(ValueError, match="anchor_beta=-1"):
    objective.ObjectiveConfig(anchor_beta=-1.0).validate(29)


def test_score_scale_and_weights_by_hand():
  """a_k/σ_k from the schedule's ᾱ by hand, and weights c·σ_k/a_k."""
  config = sampler.SamplerConfig(num_steps=30)
  scale = objective.score_scale(config)
  sched = schedule_lib.cosine_schedule()
  ts = schedule_lib.quadratic_ts(30)
  k = 10  # t = 400 → 361
  ab, ab_next = sched.alpha_bar[ts[k]], sched.alpha_bar[ts[k + 1]]
  sigma = 0.8 * math.sqrt((1 - sched.alpha_bar[ts[k] - 1]) / (1 - ab)
                          * (1 - sched.alpha[ts[k]]))
  a = (math.sqrt(ab_next) - math.sqrt(1 - ab_next - sigma**2) * math.sqrt(ab)
       / math.sqrt(1 - ab + 0.1))
  assert scale[k] == pytest.approx(a / sigma, rel=1e-9)
  assert scale[-1] == 0  # σ = 0
  none = objective.step_weights(config, "none")
  np.testing.assert_array_equal(none, np.r_[np.ones(29), 0.0])
  w = objective.step_weights(config, "score", train_window=8)
  c = math.sqrt(np.mean(scale[:8]**2))
  np.testing.assert_allclose(w[:29], c / scale[:29], rtol=1e-6)
  # Every weighted step's score has the same scale c.
  np.testing.assert_allclose(w[:29] * scale[:29], c, rtol=1e-6)
  assert w[-1] == 0
