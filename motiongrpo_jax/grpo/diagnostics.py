"""GRPO diagnostics: do groups carry a learning signal, and how diverse are they?

These measure what the paper's reviewers asked for (and what the condition
noise is meant to change):
  * per sub-reward: the mean, and the within-group std (std over the G
    members, averaged over groups): the raw signal GRPO normalises;
  * zero-advantage groups: the fraction of groups whose advantage spread
    (std over members) is below a threshold, i.e. groups that teach nothing;
  * sample diversity: the mean pairwise distance between members' joints,
    mean over pairs g < g′, valid frames and joints of ‖p_g − p_g′‖₂ (metres);
  * the optimisation side (gradient norm, clip fraction, approximate KL,
    ratio statistics) comes from `objective.grpo_loss` and the update;
  * held-out: `heldout_metrics` samples a fixed batch with the policy (clean
    condition, no group) and reports the rewards and the evaluation metrics
    (MPJPE, PA-MPJPE, jitter, foot skating, …) per sequence.
The group diagnostics return per-device means that `pmean` turns into global
values (every device holds the same number of groups).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Callable

import jax
import jax.numpy as jnp

from motiongrpo_jax import geometry
from motiongrpo_jax.body import model as body_model
from motiongrpo_jax.diffusion import sampler as sampler_lib
from motiongrpo_jax.eval import metrics as metrics_lib
from motiongrpo_jax.grpo import rewards as rewards_lib


def reward_stats(rewards: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
  """Mean and mean within-group std of each sub-reward.

  Args:
    rewards: {name: (B, G) raw sub-rewards}.

  Returns:
    {"reward/<name>_mean", "reward/<name>_group_std"}: () each.
  """
  out = {}
  for name, r in rewards.items():
    out[f"reward/{name}_mean"] = jnp.mean(r)
    out[f"reward/{name}_group_std"] = jnp.mean(jnp.std(r, axis=-1))
  return out


def zero_advantage_fraction(hybrid_rewards: jax.Array,
                            threshold: float) -> jax.Array:
  """Fraction of groups whose raw hybrid reward barely varies over members.

  Group normalisation rescales any non-zero spread to unit advantages, so the
  normalised advantages never vanish; what vanishes when a group's samples
  collapse is the spread of the raw reward. A group whose raw hybrid reward
  std is below `threshold` carries (almost) no signal: its advantages are
  mostly amplified noise.

  Args:
    hybrid_rewards: (B, G) raw hybrid rewards (`rewards.hybrid`).
    threshold: spread below which a group counts as carrying no signal.

  Returns:
    () fraction in [0, 1].
  """
  spread = jnp.std(hybrid_rewards, axis=-1)  # shape [B]
  return jnp.mean((spread < threshold).astype(jnp.float32))


def pairwise_joint_distance(joints: jax.Array,
                            mask: jax.Array | None = None) -> jax.Array:
  """Within-group diversity: mean pairwise joint distance per group.

  Args:
    joints: (B, G, L, J, 3) members' world joint positions, G ≥ 2.
    mask: (B, L) valid frames, or None.

  Returns:
    (B,) mean over pairs g < g′, valid frames and joints of ‖p_g − p_g′‖₂.
  """
  num_members = joints.shape[1]
  if num_members < 2:
    raise ValueError(f"pairwise_joint_distance: need G >= 2 members, got "
                     f"{num_members}")
  diff = joints[:, :, None] - joints[:, None, :]  # shape [B, G, G, L, J, 3]
  dist = jnp.mean(jnp.linalg.norm(diff, axis=-1), axis=-1)  # shape [B, G, G, L]
  if mask is None:
    per_pair = jnp.mean(dist, axis=-1)
  else:
    m = mask[:, None, None, :].astype(dist.dtype)
    per_pair = jnp.sum(dist * m, axis=-1) / jnp.maximum(jnp.sum(m, axis=-1), 1)
  # Diagonal pairs are 0; the mean over g ≠ g′ equals the mean over g < g′.
  num_pairs = num_members * (num_members - 1)
  return jnp.sum(per_pair, axis=(1, 2)) / num_pairs


def group_diagnostics(rewards: Mapping[str, jax.Array], advantages: jax.Array,
                      joints: jax.Array, mask: jax.Array | None,
                      reward_config: rewards_lib.RewardConfig,
                      zero_advantage_threshold: float
                      ) -> dict[str, jax.Array]:
  """Every group-level diagnostic of one iteration.

  Args:
    rewards: {name: (B, G)} raw sub-rewards.
    reward_config: the weights of the hybrid reward.
    advantages: (B, G) clipped advantages.
    joints: (B, G, L, J, 3) members' world joints.
    mask: (B, L) valid frames, or None.
    zero_advantage_threshold: see `zero_advantage_fraction`.

  Returns:
    {name: ()}: reward stats, `advantage_mean`, `advantage_abs_mean`,
    `advantage_group_std`,
    `zero_advantage_fraction`, `diversity_joint_distance` (metres).
  """
  out = reward_stats(rewards)
  out["advantage_mean"] = jnp.mean(advantages)
  out["advantage_abs_mean"] = jnp.mean(jnp.abs(advantages))
  out["advantage_group_std"] = jnp.mean(jnp.std(advantages, axis=-1))
  hybrid = rewards_lib.hybrid(dict(rewards), reward_config)
  out["reward/hybrid_group_std"] = jnp.mean(jnp.std(hybrid, axis=-1))
  out["zero_advantage_fraction"] = zero_advantage_fraction(
      hybrid, zero_advantage_threshold)
  out["diversity_joint_distance"] = jnp.mean(
      pairwise_joint_distance(joints, mask))
  return out


def heldout_metrics(apply_fn: sampler_lib.ApplyFn, params: Any,
                    batch: Mapping[str, jax.Array], key: jax.Array, *,
                    body: body_model.BodyModel, packed_dim: int,
                    sampler_config: sampler_lib.SamplerConfig,
                    reward_config: rewards_lib.RewardConfig,
                    num_samples: int = 1,
                    score_fn: Callable[..., jax.Array] | None = None,
                    critic_params: Any = None) -> dict[str, jax.Array]:
  """Rewards and evaluation metrics of policy samples on a fixed batch.

  Each sequence b is sampled `num_samples` times with the clean condition,
  sample s from fold_in(fold_in(key, b), s) (so two policies compared with
  the same key see the same initial noise). Everything is computed against
  the ground truth with the root placed from the clean CPF.

  Args:
    apply_fn: the network.
    params: the policy's parameters.
    batch: L+1 poses per sequence (`update.BATCH_FIELDS`).
    key: PRNG key of the batch.
    body: the body model.
    packed_dim: d.
    sampler_config: sampler options.
    reward_config: reward options (ω's, weights, fps).
    num_samples: samples per sequence (metrics are averaged over them).
    score_fn: the critic (`update.ScoreFn`), or None.
    critic_params: its parameters.

  Returns:
    {name: (B,)}: the `eval.metrics.METRIC_NAMES` (mm, …), "reward/<name>"
    for each sub-reward, "reward/hybrid" = Σ_k w_k·r_k / Σ_k w_k over the
    weighted ones, and "valid" (1 for sequences with a valid frame).
  """
  # Imported here: update imports this module.
  from motiongrpo_jax.grpo import update  # pylint: disable=import-outside-toplevel
  config = dataclasses.replace(sampler_config, return_means=False,
                               return_x0=False)
  clean = update.clean_condition(batch)
  mask = batch["mask"][:, 1:].astype(bool)  # shape [B, L]
  num_seq, seq_len = mask.shape

  def one(cond_T, cond_rel, frame_mask, k):
    out = sampler_lib.rollout(
        apply_fn, params, sampler_lib.Condition(cond_T[None], cond_rel[None]),
        key=k, mask=frame_mask[None], packed_dim=packed_dim, config=config)
    return out.xs[-1, 0]

  seq_keys = jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.arange(num_seq))
  keys = jax.vmap(lambda k: jax.vmap(jax.random.fold_in, (None, 0))(
      k, jnp.arange(num_samples)))(seq_keys)  # shape [B, S_eval]
  samples = jax.vmap(jax.vmap(one, (None, None, None, 0)))(
      clean.T_world_cpf, clean.T_cpf_tm1_cpf_t, mask, keys)
  rewards, posed = update.score_samples(samples, dict(batch), body,
                                        reward_config, score_fn, critic_params)
  gt = update.ground_truth(batch, body)
  expand = lambda x: jnp.broadcast_to(  # pylint: disable=unnecessary-lambda-assignment
      x[:, None], (num_seq, num_samples) + x.shape[1:])
  sample_mask = expand(mask)
  # Sequences without a valid frame (eval filler) get finite dummy values.
  valid = jnp.any(mask, axis=-1)
  safe_mask = sample_mask | ~valid[:, None, None]
  values = metrics_lib.compute_all(
      posed.joints, expand(gt.joints),
      geometry.matrix_to_quat(posed.body_rotmats),
      geometry.matrix_to_quat(expand(gt.body_rotmats)), reward_config.fps,
      safe_mask, floor_z=0.0)
  out = {name: jnp.mean(v, axis=1) for name, v in values.items()}
  for name, r in rewards.items():
    out[f"reward/{name}"] = jnp.mean(r, axis=1)
  out["reward/hybrid"] = jnp.mean(rewards_lib.hybrid(rewards, reward_config),
                                  axis=1)
  out["valid"] = valid.astype(jnp.float32)
  return out
