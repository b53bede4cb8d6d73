"""Group sampling: shared x_T, per-member condition noise, stored log-probs
that re-scoring with the same parameters reproduces (ratio = 1)."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from motiongrpo_jax.data import condition_noise as cn
from motiongrpo_jax.diffusion import sampler
from motiongrpo_jax.grpo import group_sampler
from motiongrpo_jax.grpo import objective
from motiongrpo_jax.model.denoiser import Denoiser, DenoiserConfig

MODEL = Denoiser(DenoiserConfig(
    d_latent=16, d_feedforward=32, d_noise_emb=16, num_heads=2,
    encoder_layers=0, decoder_layers=1, include_hands=False))
DIM = 226
SAMPLER = sampler.SamplerConfig(num_steps=3, update="ddim",
                                log_prob_reduction="mean")
GROUP = group_sampler.GroupConfig(
    group_size=3, shared_initial_noise=True,
    noise=cn.ConditionNoiseConfig(kind="perlin", amplitude=0.05))
B, L = 2, 6


def _params():
  pose = jnp.zeros((1, 2, 7)).at[..., 0].set(1.0)
  return MODEL.init(jax.random.key(0), jnp.zeros((1, 2, DIM)),
                    jnp.ones((1,), jnp.int32), pose, pose)["params"]


def _inputs():
  k = np.arange(L + 1)
  poses = np.zeros((B, L + 1, 7), np.float32)
  poses[..., :4] = [0.5, 0.5, 0.5, 0.5]
  poses[..., 4] = 0.04 * k + np.arange(B)[:, None]
  poses[..., 6] = 1.6 + 0.02 * np.sin(0.4 * k)
  mask = np.ones((B, L + 1), bool)
  mask[1, -2:] = False
  return group_sampler.GroupInputs(jnp.asarray(poses), jnp.zeros((B,)),
                                   jnp.asarray(mask))


@functools.partial(jax.jit, static_argnums=(3,))
def _sample(params, inputs, keys, config):
  return group_sampler.sample_groups(
      sampler.model_apply_fn(MODEL), params, inputs, keys, packed_dim=DIM,
      config=config, sampler_config=SAMPLER)


@pytest.fixture(scope="module")
def groups():
  params = _params()
  keys = jax.random.split(jax.random.key(1), B)
  return params, keys, _sample(params, _inputs(), keys, GROUP)


def test_shapes_shared_init_and_member_noise(groups):
  _, _, out = groups
  S = SAMPLER.num_steps
  assert out.xs.shape == (B, 3, S + 1, L, DIM)
  assert out.log_probs.shape == (B, 3, S)
  assert out.condition.T_world_cpf.shape == (B, 3, L, 7)
  np.testing.assert_array_equal(out.mask, np.asarray(_inputs().mask)[:, 1:])
  xs = np.asarray(out.xs)
  # One x_T per group, different groups differ; members then diverge.
  np.testing.assert_array_equal(xs[:, 1, 0], xs[:, 0, 0])
  assert not np.allclose(xs[0, 0, 0], xs[1, 0, 0])
  assert not np.allclose(xs[:, 0, -1], xs[:, 1, -1])
  # The condition each member saw is that of its own perturbed trajectory.
  noise = np.asarray(out.condition_noise)
  assert np.abs(noise[:, 0] - noise[:, 1]).max() > 0.01
  assert np.all(noise[1, :, -2:] == 0)  # padded poses get no noise
  inputs = _inputs()
  tilde = cn.perturb_translations(inputs.Ts_world_cpf[:, None],
                                  out.condition_noise)
  expected = sampler.sampler_condition(tilde.reshape(B * 3, L + 1, 7),
                                       jnp.zeros((B * 3,)))
  np.testing.assert_allclose(
      np.asarray(out.condition.T_world_cpf).reshape(B * 3, L, 7),
      expected.T_world_cpf, atol=1e-6)
  # The last step has σ = 0 and carries no log-prob.
  assert np.all(np.asarray(out.log_probs)[..., -1] == 0)
  assert np.all(np.isfinite(xs))


def test_rescoring_reproduces_the_sampling_log_probs(groups):
  """Ratio = 1 and KL = 0 before any update (same step function)."""
  params, _, out = groups
  flat = lambda x: x.reshape((B * 3,) + x.shape[2:])
  steps = jnp.asarray(objective.trainable_steps(SAMPLER))
  log_probs, kl = jax.jit(lambda p: objective.rescore_steps(
      sampler.model_apply_fn(MODEL), p, p, flat(out.xs),
      jax.tree.map(flat, out.condition), jnp.repeat(out.mask, 3, axis=0),
      steps, SAMPLER, remat=True))(params)
  old = flat(out.log_probs)[:, steps]
  np.testing.assert_allclose(log_probs, old, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(kl, 0.0, atol=1e-9)


def test_independent_initial_noise_and_no_condition_noise(groups):
  params, keys, shared = groups
  config = dataclasses.replace(
      GROUP, shared_initial_noise=False,
      noise=dataclasses.replace(GROUP.noise, kind="none"))
  out = _sample(params, _inputs(), keys, config)
  xs = np.asarray(out.xs)
  assert not np.allclose(xs[:, 0, 0], xs[:, 1, 0])
  assert np.all(np.asarray(out.condition_noise) == 0)
  # Without condition noise every member sees the clean condition.
  clean = sampler.sampler_condition(_inputs().Ts_world_cpf, jnp.zeros((B,)))
  np.testing.assert_allclose(out.condition.T_world_cpf[:, 2],
                             clean.T_world_cpf, atol=0)


def test_group_of_one_is_rejected():
  with pytest.raises(ValueError, match="group_size"):
    group_sampler.GroupConfig(group_size=1).validate()


def test_members_sharing_a_condition():
  """rollouts_per_condition = 2 of G = 4: members 0, 1 and 2, 3 share a
  noise draw; the pairs differ; baselines are per pair."""
  config = dataclasses.replace(GROUP, group_size=4, rollouts_per_condition=2)
  assert config.baseline_size == 2 and GROUP.baseline_size == 3
  keys = jax.random.split(jax.random.key(1), B)
  noise = np.asarray(_sample(_params(), _inputs(), keys,
                             config).condition_noise)  # shape [B, 4, L+1, 3]
  np.testing.assert_array_equal(noise[:, 0], noise[:, 1])
  np.testing.assert_array_equal(noise[:, 2], noise[:, 3])
  assert np.abs(noise[:, 0] - noise[:, 2]).max() > 1e-3
  with pytest.raises(ValueError, match="rollouts_per_condition=3"):
    dataclasses.replace(GROUP, group_size=4,
                        rollouts_per_condition=3).validate()
