"""Group sampling: G rollouts per head trajectory, each with its own condition.

For every sequence b (key k_b) and member g = 0 … G−1:
  1. k_init, k_member, k_cond = split(k_b, 3);
  2. condition noise P_bg from fold_in(k_cond, g // K) (`condition_noise`;
     K = `rollouts_per_condition` members share a draw), added
     to the CPF translations: H̃_bg = {R, τ + λ·P_bg}; the conditioning
     features are computed from H̃_bg (`sampler.sampler_condition`);
  3. x_T: shared within the group, N(0, I) from k_init
     (`shared_initial_noise`), or per member from fold_in(k_member_g, 0);
  4. the rollout (`sampler.rollout`, one `lax.scan`) with key
     k_member_g = fold_in(k_member, g), vmapped over members and sequences.
Every draw depends on the sequence's own key only, so a group's samples do
not depend on the batch it sits in or on the number of devices.

Outputs (`GroupRollout`; B sequences, G members, S steps, L frames, d the
packed size):
  xs               (B, G, S+1, L, d)  x_T … x_0; xs[:, :, -1] is the sample
  log_probs        (B, G, S)          log π_old of each transition (0 at σ=0)
  condition        (B, G, L, 7) ×2    the (noisy) condition each member saw
  mask             (B, L)             valid frames 1..L
  condition_noise  (B, G, L+1, 3)     λ·P added to the L+1 CPF translations
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from motiongrpo_jax.data import condition_noise as noise_lib
from motiongrpo_jax.diffusion import sampler as sampler_lib


@dataclasses.dataclass(frozen=True)
class GroupConfig:
  """How a group is drawn (hashable: jit-static)."""
  # G, rollouts per head trajectory (≥ 2: GRPO normalises within groups).
  group_size: int = 8
  # One initial noise x_T per group (True) or one per member (False).
  shared_initial_noise: bool = True
  # K consecutive members share one condition-noise draw (G/K conditions per
  # group); with K >= 2 the advantages' baselines are taken within those
  # sub-groups, so the spread a condition causes is not credited to the
  # policy. 1: one condition per member, the baseline is the whole group.
  rollouts_per_condition: int = 1
  # Per-member noise on the CPF translations.
  noise: noise_lib.ConditionNoiseConfig = noise_lib.ConditionNoiseConfig()

  def validate(self) -> "GroupConfig":
    """Raises ValueError naming the option for an impossible value."""
    if self.group_size < 2:
      raise ValueError(
          f"group.group_size={self.group_size}: expected >= 2 (advantages are "
          "normalised within a group; a group of 1 has no spread)")
    if (self.rollouts_per_condition < 1
        or self.group_size % self.rollouts_per_condition):
      raise ValueError(
          f"group.rollouts_per_condition={self.rollouts_per_condition}: "
          f"expected a divisor of group.group_size={self.group_size}")
    self.noise.validate()
    return self

  @property
  def baseline_size(self) -> int:
    """Members per advantage baseline: the sub-group, or the whole group."""
    k = self.rollouts_per_condition
    return k if k >= 2 else self.group_size


class GroupInputs(NamedTuple):
  """The head trajectories of a batch.

  Attributes:
    Ts_world_cpf: (B, L+1, 7) clean world CPF poses `wxyz_xyz`.
    floor_z: (B,) floor height.
    mask: (B, L+1) valid poses.
  """
  Ts_world_cpf: jax.Array
  floor_z: jax.Array
  mask: jax.Array


class GroupRollout(NamedTuple):
  """Rollouts of a batch of groups; shapes in the module docstring."""
  xs: jax.Array
  log_probs: jax.Array
  condition: sampler_lib.Condition
  mask: jax.Array
  condition_noise: jax.Array

  @property
  def samples(self) -> jax.Array:
    """(B, G, L, d) the final samples x_0."""
    return self.xs[:, :, -1]


def rollout_config(config: sampler_lib.SamplerConfig
                   ) -> sampler_lib.SamplerConfig:
  """The sampler options GRPO rolls out with: no per-step means or x̂0 kept."""
  return dataclasses.replace(config, return_means=False, return_x0=False)


def sample_groups(apply_fn: sampler_lib.ApplyFn, params: Any,
                  inputs: GroupInputs, keys: jax.Array, *, packed_dim: int,
                  config: GroupConfig,
                  sampler_config: sampler_lib.SamplerConfig
                  ) -> GroupRollout:
  """Draws G rollouts per sequence (module docstring).

  Args:
    apply_fn: the network (`sampler.ApplyFn`).
    params: the policy parameters (sampling is not differentiated).
    inputs: the batch's head trajectories.
    keys: (B,) or (B, 2) one PRNG key per sequence.
    packed_dim: d, the packed state size.
    config: group options.
    sampler_config: sampler options (means and x̂0 are not kept).

  Returns:
    The group rollouts.
  """
  config.validate()
  sampler_config = rollout_config(sampler_config)
  params = jax.lax.stop_gradient(params)
  num_poses = inputs.Ts_world_cpf.shape[1]
  seq_len = num_poses - 1
  members = jnp.arange(config.group_size)

  def member(Ts_tilde, floor_z, frame_mask, key, x_init):
    condition = sampler_lib.sampler_condition(Ts_tilde[None], floor_z[None])
    out = sampler_lib.rollout(apply_fn, params, condition, key=key,
                              x_init=x_init[None], mask=frame_mask[None],
                              config=sampler_config)
    squeeze = lambda c: c[0]  # pylint: disable=unnecessary-lambda-assignment
    return (out.xs[:, 0], out.log_probs[:, 0],
            jax.tree.map(squeeze, condition))

  def sequence(key, Ts_world_cpf, floor_z, pose_mask):
    k_init, k_member, k_cond = jax.random.split(key, 3)
    member_keys = jax.vmap(jax.random.fold_in, (None, 0))(k_member, members)
    cond_keys = jax.vmap(jax.random.fold_in, (None, 0))(
        k_cond, members // config.rollouts_per_condition)
    noise = jax.vmap(lambda k: noise_lib.sample_noise(
        k, num_poses, config.noise, pose_mask))(cond_keys)  # shape [G, L+1, 3]
    Ts_tilde = noise_lib.perturb_translations(Ts_world_cpf[None], noise)
    if config.shared_initial_noise:
      x_init = jnp.broadcast_to(
          jax.random.normal(k_init, (seq_len, packed_dim), jnp.float32),
          (config.group_size, seq_len, packed_dim))
    else:
      x_init = jax.vmap(lambda k: jax.random.normal(
          jax.random.fold_in(k, 0), (seq_len, packed_dim), jnp.float32))(
              member_keys)  # shape [G, L, d]
    xs, log_probs, condition = jax.vmap(member, (0, None, None, 0, 0))(
        Ts_tilde, floor_z, pose_mask[1:], member_keys, x_init)
    return xs, log_probs, condition, noise

  if inputs.Ts_world_cpf.ndim != 3 or inputs.Ts_world_cpf.shape[-1] != 7:
    raise ValueError(f"sample_groups: Ts_world_cpf has shape "
                     f"{inputs.Ts_world_cpf.shape}, expected (B, L+1, 7)")
  xs, log_probs, condition, noise = jax.vmap(sequence)(
      keys, inputs.Ts_world_cpf, inputs.floor_z, inputs.mask.astype(bool))
  return GroupRollout(xs=xs, log_probs=log_probs, condition=condition,
                      mask=inputs.mask[:, 1:].astype(bool),
                      condition_noise=noise)
