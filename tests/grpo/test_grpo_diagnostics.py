"""Tests for the group diagnostics on hand-built rewards and joints."""

import jax.numpy as jnp
import numpy as np

from motiongrpo_jax.grpo import diagnostics
from motiongrpo_jax.grpo import rewards as rewards_lib


def test_hybrid_is_the_weighted_mean_of_the_weighted_sub_rewards():
  config = rewards_lib.RewardConfig(weight_rot=1.0, weight_pos=3.0,
                                    weight_pa_pos=0.0, weight_vel=0.0)
  rewards = {"rot": jnp.array([[0.2, 0.6]]), "pos": jnp.array([[1.0, 0.2]]),
             "pa_pos": jnp.array([[5.0, 5.0]])}  # weight 0: ignored
  # (1·0.2 + 3·1.0)/4 = 0.8 and (1·0.6 + 3·0.2)/4 = 0.3.
  np.testing.assert_allclose(rewards_lib.hybrid(rewards, config),
                             [[0.8, 0.3]], atol=1e-7)


def test_zero_advantage_fraction_counts_groups_with_a_flat_raw_reward():
  hybrid = jnp.array([[0.5, 0.5, 0.5, 0.5],        # std 0: no signal
                      [0.50, 0.51, 0.50, 0.51],    # std 0.005 < 0.01
                      [0.3, 0.5, 0.7, 0.5]])       # std 0.141
  assert float(diagnostics.zero_advantage_fraction(hybrid, 0.01)) == (
      np.float32(2 / 3))
  assert float(diagnostics.zero_advantage_fraction(hybrid, 0.004)) == (
      np.float32(1 / 3))


def test_group_diagnostics_on_a_collapsed_and_a_spread_group():
  config = rewards_lib.RewardConfig()
  flat = jnp.full((1, 3), 0.4)
  spread = jnp.array([[0.1, 0.4, 0.7]])
  rewards = {n: jnp.concatenate([flat, spread]) for n in config.active}
  advantages, _ = rewards_lib.advantages(rewards, config)
  # Members of group 0 coincide; in group 1 member g sits at x = g metres.
  joints = jnp.zeros((2, 3, 4, 22, 3))
  joints = joints.at[1, :, :, :, 0].set(jnp.arange(3.0)[:, None, None])
  out = diagnostics.group_diagnostics(rewards, advantages, joints, None,
                                      config, 0.01)
  assert float(out["zero_advantage_fraction"]) == 0.5
  # Pairwise distances in group 1: 1, 2, 1 → mean 4/3; group 0: 0.
  np.testing.assert_allclose(out["diversity_joint_distance"], (4 / 3) / 2,
                             rtol=1e-6)
  np.testing.assert_allclose(out["reward/hybrid_group_std"],
                             np.std([0.1, 0.4, 0.7]) / 2, rtol=1e-5)
  # The hybrid reward is normalised once by the batch RMS of the centred
  # values, √((0.09 + 0.09)/6) = 0.1732: the flat group's advantages are
  # float32 rounding of its mean (~3e-8) / 0.17, the spread group's
  # (−0.3, 0, 0.3)/0.1732.
  np.testing.assert_allclose(advantages[0], 0.0, atol=1e-6)
  np.testing.assert_allclose(
      advantages[1], np.array([-1.7321, 0.0, 1.7321]), atol=1e-4)
