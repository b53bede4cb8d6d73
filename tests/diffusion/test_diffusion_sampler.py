"""The sampler step: EgoAllo's update, windows and the Gaussian log-probs."""

import dataclasses
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from motiongrpo_jax.diffusion import sampler
from motiongrpo_jax.diffusion import schedule as schedule_lib
from motiongrpo_jax.diffusion import windows
from motiongrpo_jax.model import packing
from motiongrpo_jax.model.denoiser import Denoiser, DenoiserConfig
from motiongrpo_jax.model.egoallo_import import load_egoallo_checkpoint

CONFIG = sampler.SamplerConfig()
EPS = float(np.finfo(np.float32).eps)  # 1.19e-7


def _step_constants(index, config=CONFIG):
  return jax.tree.map(lambda c: c[index], sampler.step_constants(config))


def _walk(batch, num_poses, seed=0):
  """Head poses walking along +x with a little bob; CPF looking along +x."""
  k = np.arange(num_poses)
  rng = np.random.default_rng(seed)
  poses = np.zeros((batch, num_poses, 7), np.float32)
  # CPF +z forward along world +x, +y up along world +z: R = [[0,0,1],[1,0,0],[0,1,0]].
  poses[..., :4] = [0.5, 0.5, 0.5, 0.5]
  poses[..., 4] = 0.04 * k + rng.normal(0, 0.01, (batch, 1))
  poses[..., 5] = 0.02 * np.sin(0.2 * k)
  poses[..., 6] = 1.6 + 0.02 * np.sin(0.4 * k)
  return jnp.asarray(poses)


def test_condition_matches_golden(egoallo_reference):
  golden = np.load(egoallo_reference / "golden_step.npz")
  cond = sampler.sampler_condition(
      jnp.broadcast_to(golden["Ts_world_cpf"], (2,) + golden["Ts_world_cpf"].shape),
      jnp.full((2,), golden["floor_z"]))
  np.testing.assert_array_equal(cond.T_world_cpf, golden["T_world_cpf_shifted"])
  # T₁⁻¹T₂'s translation R₁ᵀt₂ − R₁ᵀt₁ (|t| ≤ 2.16 m): ≲ 16 roundings of
  # terms ≤ 2.16 per side: 2·16·eps·2.16.
  np.testing.assert_allclose(cond.T_cpf_tm1_cpf_t, golden["T_cpf_tm1_cpf_t"],
                             rtol=0, atol=2 * 16 * EPS * 2.16)


def test_update_in_isolation(egoallo_reference):
  """Blend, projection and update from the recorded network output."""
  golden = np.load(egoallo_reference / "golden_step.npz")
  x_t = jnp.asarray(golden["x_t"])
  # Single window: (0 + o·w)/(0 + w).
  blended = windows.blended_x0(
      lambda x, *_: jnp.asarray(golden["x0_net_out"]), x_t,
      jnp.zeros((2, 16, 7)), jnp.zeros((2, 16, 7)), None, ((0, 16),))
  # o·w/w: 2 correctly rounded ops on |o| ≤ 0.5 per side: 2·eps·0.5.
  np.testing.assert_allclose(blended, golden["x0_blended"], rtol=0,
                             atol=2 * EPS * 0.5006)
  np.testing.assert_array_equal(windows.canonical_weights(16),
                                golden["overlap_weights"])
  projected = packing.project_body_rotmats(jnp.asarray(golden["x0_blended"]), True)
  np.testing.assert_allclose(projected, golden["x0_pred"], rtol=0, atol=1e-5)
  out = sampler.sampler_step(
      None, None, x_t, _step_constants(int(golden["step_index"])), None,
      noise=jnp.asarray(golden["noise"]), x0=jnp.asarray(golden["x0_pred"]))
  # The update: ≲ 8 roundings on terms ≤ 3.6 ((x_t − c·x̂0)/denom) per side.
  np.testing.assert_allclose(out.x_next, golden["x_next"], rtol=0,
                             atol=2 * 8 * EPS * 3.6)
  # σ: the float64 value cast to float32, ≤ eps/2 = 6e-8 relative.
  assert float(out.std) == pytest.approx(float(golden["sigma"]), rel=1e-7)


def test_step_with_network(egoallo_reference):
  golden = np.load(egoallo_reference / "golden_step.npz")
  model, params = load_egoallo_checkpoint(egoallo_reference / "small_exp" /
                                          "checkpoints_0")
  apply_fn = sampler.model_apply_fn(model)

  @jax.jit
  def step(params, x_t, Ts_world_cpf, floor_z, noise):
    cond = sampler.sampler_condition(Ts_world_cpf, floor_z)
    return sampler.sampler_step(
        apply_fn, params, x_t, _step_constants(int(golden["step_index"])),
        cond, noise=noise)

  out = step(params, jnp.asarray(golden["x_t"]),
             jnp.broadcast_to(golden["Ts_world_cpf"], (2, 17, 7)),
             jnp.full((2,), golden["floor_z"]), jnp.asarray(golden["noise"]))
  x0_err = np.abs(np.asarray(out.x0) - golden["x0_pred"]).max()
  x_next_err = np.abs(np.asarray(out.x_next) - golden["x_next"]).max()
  print(f"golden_step: max|Δx̂0| = {x0_err:.2e}, max|Δx_next| = {x_next_err:.2e}")
  assert x0_err <= 1e-4 and x_next_err <= 1e-4


@pytest.mark.parametrize("batch_equal", [False, True])
def test_blend_weights_long(egoallo_reference, batch_equal):
  """Each window returns its own constant; the blend must weight them as
  EgoAllo does (golden `window_weights`, 4 windows over 300 frames)."""
  golden = np.load(egoallo_reference / "golden_rollout_long.npz")
  seq_len = 300
  spans = windows.window_spans(seq_len)
  x_t = jnp.broadcast_to(jnp.arange(seq_len, dtype=jnp.float32)[None, :, None],
                         (2, seq_len, 3))
  # window j sees x[:, 0] = s_j and returns s_j + 1 everywhere.
  fn = lambda x, *_: jnp.ones_like(x) * (x[:, :1, :1] + 1.0)
  dummy = jnp.zeros((2, seq_len, 7))
  out = windows.blended_x0(fn, x_t, dummy, dummy, None, spans,
                           batch_equal=batch_equal)
  ww = golden["window_weights"].astype(np.float64)
  starts = golden["window_starts"].astype(np.float64)
  expected = (ww * (starts[:, None] + 1)).sum(0) / ww.sum(0)
  np.testing.assert_allclose(out[0, :, 0], expected, rtol=1e-6)
  np.testing.assert_allclose(out[1, :, 2], expected, rtol=1e-6)


def test_log_prob_closed_form():
  """log π against a float64 Gaussian density, with and without a mask."""
  rng = np.random.default_rng(0)
  shape = (3, 10, 226)
  x_t, x0, x_next = (rng.normal(size=shape).astype(np.float32) for _ in range(3))
  index = 12
  consts = _step_constants(index)
  coeffs = sampler.step_coefficients(CONFIG)
  mask = np.ones(shape[:2], bool)
  mask[1, 7:] = False
  mask[2, :] = False
  out = sampler.sampler_step(None, None, jnp.asarray(x_t), consts, None,
                             x_next=jnp.asarray(x_next), x0=jnp.asarray(x0),
                             mask=jnp.asarray(mask))
  c = {k: getattr(coeffs, k)[index] for k in
       ("c_x0", "c_dir", "c_xt", "denom", "sigma")}
  mean = c["c_x0"] * x0 + c["c_dir"] * (x_t - c["c_xt"] * x0) / c["denom"]
  # 6 float32 ops and 4 coefficient casts, each ≤ eps/2 of the largest
  # intermediate ((x_t − c_xt·x̂0)/denom ≤ 8.5), against float64.
  np.testing.assert_allclose(out.mean, mean, rtol=0, atol=10 * EPS / 2 * 8.5)
  s = c["sigma"]
  dens = (-0.5 * ((x_next - mean) / s) ** 2 - math.log(s)
          - 0.5 * math.log(2 * math.pi))
  expected = (dens.sum(-1) * mask).sum(-1)
  np.testing.assert_allclose(out.log_prob, expected, rtol=1e-5)
  assert out.log_prob[2] == 0.0  # no valid frame
  # "mean": the same divided by the number of valid scalars.
  out_mean = sampler.sampler_step(
      None, None, jnp.asarray(x_t), consts, None, x_next=jnp.asarray(x_next),
      x0=jnp.asarray(x0), mask=jnp.asarray(mask),
      config=sampler.SamplerConfig(log_prob_reduction="mean"))
  count = mask.sum(-1) * shape[-1]
  np.testing.assert_allclose(out_mean.log_prob[:2], expected[:2] / count[:2],
                             rtol=1e-5)
  # Frames outside the mask do not count.
  moved = x_next.copy()
  moved[1, 8] += 5.0
  out_moved = sampler.sampler_step(
      None, None, jnp.asarray(x_t), consts, None, x_next=jnp.asarray(moved),
      x0=jnp.asarray(x0), mask=jnp.asarray(mask))
  np.testing.assert_array_equal(out_moved.log_prob, out.log_prob)
  # Sampling: x_next = μ + σ·ε, so log π = Σ(−ε²/2) − n·log σ − n/2·log 2π.
  eps = rng.normal(size=shape).astype(np.float32)
  sampled = sampler.sampler_step(None, None, jnp.asarray(x_t), consts, None,
                                 noise=jnp.asarray(eps), x0=jnp.asarray(x0))
  n = shape[1] * shape[2]
  expected = ((-0.5 * eps.astype(np.float64) ** 2).sum((1, 2))
              - n * (math.log(s) + 0.5 * math.log(2 * math.pi)))
  np.testing.assert_allclose(sampled.log_prob, expected, rtol=1e-5)


def test_log_prob_difference_closed_form():
  """The GRPO log-ratio from two means, against float64 densities."""
  rng = np.random.default_rng(1)
  shape = (2, 128, 496)
  index = 20
  consts = _step_constants(index)
  sigma = float(sampler.step_coefficients(CONFIG).sigma[index])
  mean_old = rng.normal(size=shape).astype(np.float32)
  mean_new = mean_old + (1e-4 * rng.normal(size=shape)).astype(np.float32)
  x_next = (mean_old + sigma * rng.normal(size=shape)).astype(np.float32)
  mask = np.ones(shape[:2], bool)
  mask[1, 100:] = False
  diff = sampler.log_prob_difference(
      jnp.asarray(x_next), jnp.asarray(mean_new), jnp.asarray(mean_old), consts,
      jnp.asarray(mask))
  x, a, b = (v.astype(np.float64) for v in (x_next, mean_new, mean_old))
  expected = ((((x - b) ** 2 - (x - a) ** 2) / (2 * sigma**2)).sum(-1)
              * mask).sum(-1)
  np.testing.assert_allclose(diff, expected, rtol=1e-4)
  same = sampler.log_prob_difference(
      jnp.asarray(x_next), jnp.asarray(mean_old), jnp.asarray(mean_old), consts,
      None)
  np.testing.assert_array_equal(same, 0.0)


def test_deterministic_step_has_no_log_prob():
  last = sampler.step_constants(CONFIG).t.shape[0] - 1
  consts = _step_constants(last)
  x = jnp.ones((1, 4, 226))
  out = sampler.sampler_step(None, None, x, consts, None, x_next=2.0 * x,
                             x0=0.5 * x)
  assert float(out.std) == 0.0
  np.testing.assert_array_equal(out.log_prob, 0.0)
  np.testing.assert_array_equal(out.mean, 0.5 * x)  # √ᾱ_0 = 1, no direction


def test_step_requires_one_source():
  with pytest.raises(ValueError, match="exactly one"):
    sampler.sampler_step(None, None, jnp.ones((1, 2, 226)), _step_constants(0),
                         None, x0=jnp.ones((1, 2, 226)))


TINY = DenoiserConfig(d_latent=16, d_feedforward=24, d_noise_emb=8, num_heads=2,
                      encoder_layers=1, decoder_layers=1, include_hands=False)
# Windows of 16 with overlap 4: a 28-frame sequence has two, [0, 16) and
# [12, 28), run as one network call (equal lengths).
TINY_SAMPLER = sampler.SamplerConfig(window_size=16, overlap=4)


def test_rollout_rescore_and_no_recompile():
  """Re-scoring with the same params reproduces the rollout's log-probs
  exactly (ratio exactly 1); new params change them; a new batch of the same
  shapes does not retrace; the rollout is one scan over the 30 steps."""
  model = Denoiser(TINY)
  batch, seq_len = 2, 28
  condition_fn = jax.jit(sampler.sampler_condition)
  cond = condition_fn(_walk(batch, seq_len + 1), jnp.array([0.0, 0.1]))
  params = jax.jit(model.init)(
      jax.random.key(0), jnp.zeros((1, 4, 226)), jnp.ones((1,), jnp.int32),
      cond.T_world_cpf[:1, :4], cond.T_cpf_tm1_cpf_t[:1, :4])["params"]
  apply_fn = sampler.model_apply_fn(model)
  mask = jnp.ones((batch, seq_len), bool).at[1, 20:].set(False)

  chex.clear_trace_counter()

  @jax.jit
  @chex.assert_max_traces(n=1)
  def run(params, cond, key):
    return sampler.rollout(apply_fn, params, cond, key=key, mask=mask,
                           packed_dim=226, config=TINY_SAMPLER)

  @jax.jit
  def score(params, xs):
    return sampler.rescore(apply_fn, params, xs, cond, mask=mask,
                           config=TINY_SAMPLER)

  out = run(params, cond, jax.random.key(1))
  chex.assert_shape(out.xs, (31, batch, seq_len, 226))
  chex.assert_shape(out.log_probs, (30, batch))
  chex.assert_shape(out.means, (30, batch, seq_len, 226))
  chex.assert_shape(out.stds, (30,))
  assert out.x0_preds is None
  xs, means, stds, log_probs_old = (np.asarray(a) for a in (
      out.xs, out.means, out.stds, out.log_probs))
  np.testing.assert_array_equal(out.trainable, np.arange(30) < 29)
  np.testing.assert_array_equal(log_probs_old[-1], 0.0)
  assert np.all(np.isfinite(xs))
  # Each transition's log-prob is the Gaussian density of its stored mean/std.
  sigma = stds[:-1, None, None, None].astype(np.float64)
  valid = np.asarray(mask)[None, :, :, None]
  density = (-0.5 * ((xs[1:-1] - means[:-1]) / sigma) ** 2 - np.log(sigma)
             - 0.5 * np.log(2 * np.pi))
  np.testing.assert_allclose(log_probs_old[:-1],
                             (density * valid).sum((2, 3)), rtol=1e-5)
  np.testing.assert_array_equal(xs[-1], means[-1])

  log_probs, new_means = score(params, out.xs)
  np.testing.assert_array_equal(log_probs, log_probs_old)
  np.testing.assert_array_equal(new_means, means)
  np.testing.assert_array_equal(np.exp(np.asarray(log_probs) - log_probs_old),
                                1.0)

  new_params = jax.tree.map(lambda p: p * 1.01, params)
  new_log_probs, _ = score(new_params, out.xs)
  assert np.all(np.abs(np.asarray(new_log_probs)[:-1] - log_probs_old[:-1]) > 0)

  # A new batch of the same shapes: no retrace (assert_max_traces raises).
  cond2 = condition_fn(_walk(batch, seq_len + 1, seed=5), jnp.zeros((batch,)))
  out2 = run(params, cond2, jax.random.key(2))
  assert not np.allclose(np.asarray(out2.xs)[-1], xs[-1])

  # One program: a single scan of length 30 holds every network call.
  jaxpr = jax.make_jaxpr(run)(params, cond, jax.random.key(1))
  scans = [e for e in jaxpr.jaxpr.eqns[0].params["jaxpr"].eqns
           if e.primitive.name == "scan"]
  assert len(scans) == 1 and scans[0].params["length"] == 30


def test_exploration_steps_use_ddim_sigma_and_its_log_prob_by_hand():
  """The first `explore_steps` steps take DDIM-η's σ and update; the density
  of a given x_next is the Gaussian one with that σ (float64 by hand)."""
  config = sampler.SamplerConfig(num_steps=30, explore_steps=3,
                                 explore_eta=1.0, log_prob_reduction="sum")
  exact = sampler.SamplerConfig(num_steps=30)
  sched = schedule_lib.cosine_schedule()
  ts = schedule_lib.quadratic_ts(30)
  consts, exact_consts = (sampler.step_constants(c) for c in (config, exact))
  np.testing.assert_array_equal(consts.sigma[3:], exact_consts.sigma[3:])
  k = 1  # t = 841 → 784: EgoAllo's σ 0.088, DDIM's (η = 1) ~0.65
  ab, ab_next = sched.alpha_bar[ts[k]], sched.alpha_bar[ts[k + 1]]
  sigma = math.sqrt((1 - ab_next) / (1 - ab) * (1 - ab / ab_next))
  assert float(consts.sigma[k]) == pytest.approx(sigma, rel=1e-6)
  assert sigma > 5 * float(exact_consts.sigma[k])
  rng = np.random.default_rng(0)
  x_t, x0, x_next = (rng.normal(size=(1, 4, 226)) for _ in range(3))
  step = jax.tree.map(lambda c: c[k], consts)
  out = sampler.sampler_step(None, None, jnp.asarray(x_t, jnp.float32), step,
                             None, x_next=jnp.asarray(x_next, jnp.float32),
                             config=config, x0=jnp.asarray(x0, jnp.float32))
  # DDIM's mean: √ᾱ'·x̂0 + √(1 − ᾱ' − σ²)·(x_t − √ᾱ·x̂0)/√(1 − ᾱ).
  mean = (math.sqrt(ab_next) * x0 + math.sqrt(1 - ab_next - sigma**2)
          * (x_t - math.sqrt(ab) * x0) / math.sqrt(1 - ab))
  n = x_next.size
  log_prob = (-0.5 * np.sum((x_next - mean)**2) / sigma**2
              - n * math.log(sigma) - 0.5 * n * math.log(2 * math.pi))
  # Float32: ~1e3 terms of size ~1 summed (≈ 1e3·eps relative to the sum).
  assert float(out.log_prob[0]) == pytest.approx(log_prob, rel=1e-5)
  with pytest.raises(ValueError, match="explore_steps"):
    sampler.SamplerConfig(num_steps=3, explore_steps=4).validate()


# --- The x̂0 hook (inner guidance): 3 DDIM steps of the tiny network on one
# 8-frame window, two windows of a batch, one with masked frames.
HOOK_SAMPLER = sampler.SamplerConfig(num_steps=3, update="ddim",
                                     window_size=16, overlap=4,
                                     return_x0=True)


def _hook_setup():
  model = Denoiser(TINY)
  cond = sampler.sampler_condition(_walk(2, 9), jnp.array([0.0, 0.1]))
  params = model.init(
      jax.random.key(0), jnp.zeros((1, 4, 226)), jnp.ones((1,), jnp.int32),
      cond.T_world_cpf[:1, :4], cond.T_cpf_tm1_cpf_t[:1, :4])["params"]
  mask = jnp.ones((2, 8), bool).at[1, 6:].set(False)

  def run(**hook):  # {} (no argument) or {"x0_guide": a hook or None}
    return lambda p, k: sampler.rollout(
        sampler.model_apply_fn(model), p, cond, key=k, mask=mask,
        packed_dim=226, config=HOOK_SAMPLER, **hook)

  return params, run


def test_no_hook_and_an_identity_hook_are_the_plain_rollout():
  """x0_guide=None is the rollout without the argument, bit for bit. The
  identity hook traces the same operations in the same order (the network's
  x̂0 is handed to the same step as its precomputed x̂0), so the programs
  are identical and so are the bits: no tolerance is needed."""
  params, run = _hook_setup()
  key = jax.random.key(1)
  plain = jax.jit(run())(params, key)
  identity = lambda x0, step: x0  # pylint: disable=unnecessary-lambda-assignment
  for fn in (run(x0_guide=None), run(x0_guide=identity)):
    assert str(jax.make_jaxpr(fn)(params, key)) == str(
        jax.make_jaxpr(run())(params, key))
    for a, b in zip(jax.jit(fn)(params, key), plain):
      if a is not None:
        np.testing.assert_array_equal(a, b)


def test_a_constant_hook_by_hand():
  """A hook returning c_k = 0.25 + k at step k. The update then uses c_k as
  x̂0: step 0 is c_x0·c_0 + c_dir·(x_T − c_xt·c_0)/denom + σ·ε_0 (float32, a
  handful of roundings of terms ≤ 5 in size: ≤ 8·eps·5 apart, whatever the
  order); the last step has σ = 0, c_x0 = √ᾱ_0 = 1 and c_dir = 0, so the
  sample is exactly c_{S−1} = 2.25 (1·c + 0·(…)/denom = c in float)."""
  params, run = _hook_setup()
  key = jax.random.key(1)
  const = lambda x0, step: jnp.full_like(x0, 0.25) + step  # pylint: disable=unnecessary-lambda-assignment
  out = jax.jit(run(x0_guide=const))(params, key)
  consts = sampler.step_constants(HOOK_SAMPLER)
  last = consts.t.shape[0] - 1
  assert (float(consts.sigma[last]), float(consts.c_x0[last]),
          float(consts.c_dir[last])) == (0.0, 1.0, 0.0)
  np.testing.assert_array_equal(out.xs[-1], 0.25 + last)
  np.testing.assert_array_equal(
      out.x0_preds, np.broadcast_to(0.25 + np.arange(last + 1.0)[:, None, None,
                                                                   None],
                                    out.x0_preds.shape))
  x_T = np.asarray(out.xs[0], np.float64)
  eps0 = np.asarray(jax.random.normal(jax.random.fold_in(key, 1), x_T.shape),
                    np.float64)
  c = jax.tree.map(lambda a: float(a[0]), consts)
  step0 = (c.c_x0 * 0.25 + c.c_dir * (x_T - c.c_xt * 0.25) / c.denom
           + c.sigma * eps0)
  assert max(np.abs(x_T).max(), np.abs(eps0).max()) < 5.5
  np.testing.assert_allclose(out.xs[1], step0, rtol=0, atol=8 * EPS * 5.5)


# --- x̂0 reuse (fast mode): from step r on, the network runs every other step.


def test_network_steps_by_hand():
  """S = 30, reuse from 20: the network skips steps 20, 22, …, 28 (5 of 30);
  the last step, whose x̂0 is the sample, always runs it."""
  steps = sampler.network_steps(sampler.SamplerConfig(reuse_x0_from=20))
  np.testing.assert_array_equal(np.flatnonzero(~steps), [20, 22, 24, 26, 28])
  steps = sampler.network_steps(sampler.SamplerConfig(reuse_x0_from=21))
  np.testing.assert_array_equal(np.flatnonzero(~steps), [22, 24, 26, 28])
  assert sampler.network_steps(sampler.SamplerConfig()).all()
  with pytest.raises(ValueError, match="reuse_x0_from"):
    sampler.SamplerConfig(reuse_x0_from=30).validate()


def test_reused_steps_take_the_previous_x0_and_the_others_their_own():
  """5 DDIM steps, reuse from 1: steps 1 and 3 take steps 0's and 2's x̂0
  (the same bits); steps 0, 2, 4 the network's x̂0 of their own state. A
  separate call runs the same float32 operations (measured equal here); a
  compiler may fuse them in another order, a few ulps per operation over the
  network's ~20 sequential ones: 1e-5 (~80 ulps of |x̂0| < 1) bounds that,
  while a reused step is > 1e-3 away from its own x̂0."""
  params, _ = _hook_setup()
  model = Denoiser(TINY)
  cond = sampler.sampler_condition(_walk(2, 9), jnp.array([0.0, 0.1]))
  config = dataclasses.replace(HOOK_SAMPLER, num_steps=5, reuse_x0_from=1)
  out = jax.jit(lambda p, k: sampler.rollout(
      sampler.model_apply_fn(model), p, cond, key=k, packed_dim=226,
      config=config))(params, jax.random.key(1))
  x0 = np.asarray(out.x0_preds)
  np.testing.assert_array_equal(x0[1], x0[0])
  np.testing.assert_array_equal(x0[3], x0[2])
  consts = sampler.step_constants(config)
  own = jax.jit(lambda p, x, t: sampler.predict_x0(
      sampler.model_apply_fn(model), p, x, t, cond, None, config))
  for k in (0, 2, 4):
    np.testing.assert_allclose(x0[k], own(params, out.xs[k], consts.t[k]),
                               rtol=0, atol=1e-5)
  assert np.abs(x0[3] - own(params, out.xs[3], consts.t[3])).max() > 1e-3
