"""MotionGRPO's hybrid reward and group-normalised advantages.

Sub-rewards (each per sample, higher is better), against the ground truth
and the CLEAN head trajectory (never the noisy condition a member saw):
  * "rot": exp(−ω_rot·e_rot), local rotation error of the 21 body joints.
    `rotation_error="l1"` (the paper's L1): e = mean over valid frames and
    joints of Σ_{9 entries} |R̂ − R| over the rotation matrices (a rotation
    by θ about a coordinate axis gives 2·|sin θ| + 2·(1 − cos θ) ≈ 2θ).
    `"geodesic"`: e = mean angle of R̂ᵀR, radians.
  * "pos": exp(−ω_pos·e_pos), global joint position error: mean over valid
    frames and the 22 joints of ‖p̂ − p‖₂ (metres), the predicted root placed
    so that the predicted body's CPF sits on the clean CPF pose.
  * "pa_pos": exp(−ω_pa·e_pa), the same after a per-frame Procrustes
    (similarity) alignment of the prediction onto the ground truth
    (`eval.metrics.umeyama`, the standard PA-MPJPE convention).
  * "vel": exp(−ω_vel·e_vel), joint velocity error: mean over valid frame
    pairs and joints of ‖v̂ − v‖₂ with v = (p_{t+1} − p_t)·fps (m/s).
  * "skate": exp(−ω_skate·e_skate), foot skating of the SAMPLE as
    `eval.metrics.foot_skate` measures it (EgoAllo's: L1 horizontal steps
    of the four foot joints, weighted by how low each foot is), per valid
    frame pair and times fps: m/s summed over the feet. It needs no ground
    truth: like the model's own contacts in EgoAllo's guidance, it asks
    that a foot near the floor stand still.
  * "vis": exp(ω_vis·s), s the perceptual critic's score of the sample
    (optional; weight 0 switches it off and no critic is needed).

Advantages (GRPO), for rewards r of shape (B, G) (B groups of G members):
  * `normalisation="sum"` (default): the raw hybrid reward
    h = Σ_k w_k·r_k / Σ_k w_k is centred within its group, c = h − mean_g h,
    and divided once by a scale s: A = c / max(s, std_floor);
  * `normalisation="per_reward"`: each sub-reward is centred and scaled
    alone, r̃_k = c_k / max(s_k, std_floor), and A = Σ_k w_k·r̃_k (a
    near-constant sub-reward, e.g. the critic's, is blown up to full weight);
  * the scale s is the group's own std (`std_scope="group"`, ddof 0) or the
    std of the centred values over the whole batch (`"batch"`, all devices):
    with "batch", a group whose members barely differ gets small advantages
    instead of unit ones; `std_floor` bounds the amplification of round-off
    and noise in any case;
  * A ← clip(A, −A_max, A_max), after the normalisation;
  * with members sharing condition draws (`GroupConfig.rollouts_per_condition`
    K >= 2), "group" means each sub-group of K members.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp

from motiongrpo_jax.eval import metrics
from motiongrpo_jax.eval import posing

# Sub-rewards in report order.
REWARD_NAMES: tuple[str, ...] = ("rot", "pos", "pa_pos", "vel", "skate",
                                  "vis")
JOINT_REWARD_NAMES: tuple[str, ...] = REWARD_NAMES[:5]
# Joints compared: the pelvis and the 21 body joints (as the eval metrics).
_JOINTS = metrics.NUM_JOINTS


@dataclasses.dataclass(frozen=True)
class RewardConfig:
  """Weights and sharpness of the hybrid reward (hashable: jit-static)."""
  # Weight w_k of each sub-reward in the advantage (0: off): local rotation,
  # position, Procrustes-aligned position, velocity, foot skating (EgoAllo's
  # metric per frame), and the perceptual R_vis = exp(ω·s) (0: no critic).
  weight_rot: float = 1.0
  weight_pos: float = 1.0
  weight_pa_pos: float = 1.0
  weight_vel: float = 1.0
  weight_skate: float = 0.0
  weight_vis: float = 0.0
  # ω_k in exp(−ω·err) (exp(+ω·s) for "vis"); units 1/err: rotation L1 (sum
  # of |ΔR| entries), m, m, m/s, m/s.
  omega_rot: float = 1.0
  omega_pos: float = 5.0
  omega_pa_pos: float = 10.0
  omega_vel: float = 1.0
  omega_skate: float = 5.0
  omega_vis: float = 1.0
  # Local rotation error: "l1" (rotation matrices, the paper's) or
  # "geodesic" (radians).
  rotation_error: Literal["l1", "geodesic"] = "l1"
  # "sum": normalise the weighted raw sum once; "per_reward": each sub-reward
  # (a near-constant one is blown up to full weight). Chosen by measurement:
  # README, "GRPO recipe".
  normalisation: Literal["sum", "per_reward"] = "sum"
  # Scale of the normalisation: "group" std, or "batch" std of the centred
  # rewards (over all groups and devices; flat groups get small advantages).
  std_scope: Literal["group", "batch"] = "batch"
  # Lower bound of that scale (units of the normalised reward; bounds the
  # amplification of noise).
  std_floor: float = 1e-3
  # A_max: advantages are clipped to [−A_max, A_max].
  advantage_clip: float = 5.0
  # Frames per second (velocities; the data's).
  fps: float = dataclasses.field(default=30.0, metadata={"setting": False})

  def weight(self, name: str) -> float:
    return getattr(self, f"weight_{name}")

  def omega(self, name: str) -> float:
    return getattr(self, f"omega_{name}")

  @property
  def active(self) -> tuple[str, ...]:
    """Sub-rewards with a non-zero weight, in `REWARD_NAMES` order."""
    return tuple(n for n in REWARD_NAMES if self.weight(n) != 0)

  def validate(self) -> "RewardConfig":
    """Raises ValueError naming the option for an impossible value."""
    if self.rotation_error not in ("l1", "geodesic"):
      raise ValueError(f"reward.rotation_error={self.rotation_error!r}: "
                       "expected 'l1' or 'geodesic'")
    for name in REWARD_NAMES:
      if self.weight(name) < 0:
        raise ValueError(f"reward.weight_{name}={self.weight(name)}: expected "
                         ">= 0")
      if self.omega(name) < 0:
        raise ValueError(f"reward.omega_{name}={self.omega(name)}: expected "
                         ">= 0")
    if not self.active:
      raise ValueError("reward: every weight is 0; at least one sub-reward "
                       "must count")
    if self.normalisation not in ("sum", "per_reward"):
      raise ValueError(f"reward.normalisation={self.normalisation!r}: expected "
                       "'sum' or 'per_reward'")
    if self.std_scope not in ("group", "batch"):
      raise ValueError(f"reward.std_scope={self.std_scope!r}: expected "
                       "'group' or 'batch'")
    if self.std_floor <= 0 or self.advantage_clip <= 0 or self.fps <= 0:
      raise ValueError("reward.std_floor, reward.advantage_clip and reward.fps "
                       f"must be > 0, got {self.std_floor}, "
                       f"{self.advantage_clip}, {self.fps}")
    return self


def _masked_mean(values: jax.Array, mask: jax.Array | None) -> jax.Array:
  """Mean over the last axis of (..., T) where `mask` (0 if none valid)."""
  if mask is None:
    return jnp.mean(values, axis=-1)
  m = jnp.broadcast_to(mask, values.shape).astype(values.dtype)
  return jnp.sum(values * m, axis=-1) / jnp.maximum(jnp.sum(m, axis=-1), 1.0)


def _rotation_error(pred: jax.Array, gt: jax.Array, kind: str) -> jax.Array:
  """(..., L) mean over joints of the rotation error of (..., L, 21, 3, 3)."""
  if kind == "l1":
    err = jnp.sum(jnp.abs(pred - gt), axis=(-1, -2))
  else:
    # θ = atan2(sin θ, cos θ) from R̂ᵀR (accurate near 0, unlike arccos).
    rel = jnp.swapaxes(pred, -1, -2) @ gt
    cos = (jnp.trace(rel, axis1=-2, axis2=-1) - 1.0) / 2.0
    axis = jnp.stack([rel[..., 2, 1] - rel[..., 1, 2],
                      rel[..., 0, 2] - rel[..., 2, 0],
                      rel[..., 1, 0] - rel[..., 0, 1]], axis=-1)
    err = jnp.arctan2(0.5 * jnp.linalg.norm(axis, axis=-1), cos)
  return jnp.mean(err, axis=-1)


def _procrustes_aligned(pred: jax.Array, gt: jax.Array) -> jax.Array:
  """Per frame, `pred (..., J, 3)` moved onto `gt` by a similarity."""
  return metrics.apply_similarity(*metrics.umeyama(pred, gt), pred)


def joint_errors(pred: posing.PosedMotion, gt: posing.PosedMotion, mask: jax.Array | None,
                 config: RewardConfig) -> dict[str, jax.Array]:
  """The joint-level errors per sequence (module docstring).

  Args:
    pred: posed sample, (..., L, ...) fields.
    gt: posed ground truth, broadcastable to `pred`.
    mask: (..., L) valid frames, or None.
    config: `rotation_error` and `fps`.

  Returns:
    {"rot", "pos", "pa_pos", "vel", "skate"}: (...) errors.
  """
  gt_joints = jnp.broadcast_to(gt.joints, pred.joints.shape)
  rot = _rotation_error(pred.body_rotmats, gt.body_rotmats,
                        config.rotation_error)
  pos = jnp.mean(jnp.linalg.norm(pred.joints - gt_joints, axis=-1), axis=-1)
  aligned = _procrustes_aligned(pred.joints, gt_joints)
  pa = jnp.mean(jnp.linalg.norm(aligned - gt_joints, axis=-1), axis=-1)
  dv = jnp.diff(pred.joints - gt_joints, axis=-3) * config.fps
  vel = jnp.mean(jnp.linalg.norm(dv, axis=-1), axis=-1)
  pair_mask = None if mask is None else mask[..., 1:] & mask[..., :-1]
  pair_count = (jnp.float32(pred.joints.shape[-3] - 1) if pair_mask is None
                else jnp.maximum(jnp.sum(pair_mask, axis=-1), 1))
  skate = (metrics.foot_skate(pred.joints, None if mask is None else
                              jnp.broadcast_to(mask, pred.joints.shape[:-2]))
           * config.fps / pair_count)
  return {
      "rot": _masked_mean(rot, mask),
      "pos": _masked_mean(pos, mask),
      "pa_pos": _masked_mean(pa, mask),
      "vel": _masked_mean(vel, pair_mask),
      "skate": skate,
  }


def rewards_from_errors(errors: dict[str, jax.Array],
                        config: RewardConfig,
                        critic_scores: jax.Array | None = None,
                        ) -> dict[str, jax.Array]:
  """exp(−ω·err) per joint sub-reward, and exp(ω·s) for the critic score.

  Args:
    errors: from `joint_errors`.
    config: the ω's and weights.
    critic_scores: (...) critic scores s, or None. Required when
      `weight_vis` > 0.

  Returns:
    {name: (...) reward} for the joint rewards and, with scores, "vis".
  """
  out = {n: jnp.exp(-config.omega(n) * errors[n]) for n in JOINT_REWARD_NAMES}
  if critic_scores is not None:
    out["vis"] = jnp.exp(config.omega_vis * critic_scores)
  elif config.weight_vis != 0:
    raise ValueError("reward.weight_vis > 0 needs critic scores (configure a "
                     "critic checkpoint or set reward.weight_vis=0)")
  return out


def hybrid(rewards: dict[str, jax.Array], config: RewardConfig) -> jax.Array:
  """The raw hybrid reward Σ_k w_k·r_k / Σ_k w_k over the weighted sub-rewards
  present in `rewards` (shapes (...) each; the result has the same shape)."""
  active = [n for n in config.active if n in rewards]
  total = sum(config.weight(n) * rewards[n] for n in active)
  return total / sum(config.weight(n) for n in active)


def group_normalise(rewards: jax.Array, std_floor: float,
                    scope: str = "group",
                    axis_name: str | None = None) -> jax.Array:
  """(r − mean_g r) / max(s, std_floor) for rewards of shape (B, G).

  Args:
    rewards: (B, G) one reward per member.
    std_floor: lower bound of the scale s.
    scope: "group": s = std over the group (ddof 0); "batch": s = the root
      mean square of the centred rewards over the batch (and over the devices
      of `axis_name`, which must each hold the same number of groups).
    axis_name: the data-parallel axis for scope "batch" inside `shard_map`.

  Returns:
    (B, G) normalised rewards.
  """
  centred = rewards - jnp.mean(rewards, axis=-1, keepdims=True)  # shape [B, G]
  if scope == "group":
    scale = jnp.std(rewards, axis=-1, keepdims=True)
  else:
    mean_square = jnp.mean(jnp.square(centred))
    if axis_name is not None:
      mean_square = jax.lax.pmean(mean_square, axis_name)
    scale = jnp.sqrt(mean_square)
  return centred / jnp.maximum(scale, std_floor)


def advantages(rewards: dict[str, jax.Array], config: RewardConfig,
               axis_name: str | None = None, baseline_size: int | None = None
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """GRPO advantages from sub-rewards of shape (B, G) (module docstring).

  Args:
    rewards: {name: (B, G)}; must hold every sub-reward with a non-zero
      weight.
    config: weights, normalisation, floor and clip.
    axis_name: the data-parallel axis (`std_scope="batch"` under shard_map).
    baseline_size: members per baseline: consecutive sub-groups of this size
      (a divisor of G) are centred (and, for "group", scaled) on their own;
      None: the whole group.

  Returns:
    (A (B, G), {name: (B, G) normalised value}): the normalised hybrid reward
    ("hybrid") or each normalised sub-reward, before the clip.
  """
  missing = [n for n in config.active if n not in rewards]
  if missing:
    raise ValueError(f"advantages: no values for the weighted sub-rewards "
                     f"{missing}")
  shape = next(iter(rewards.values())).shape  # (B, G)
  size = baseline_size or shape[-1]

  def norm(r):
    out = group_normalise(r.reshape(-1, size), config.std_floor,
                          config.std_scope, axis_name)
    return out.reshape(shape)

  if config.normalisation == "sum":
    normalised = {"hybrid": norm(hybrid(rewards, config))}
    total = normalised["hybrid"]
  else:
    normalised = {n: norm(rewards[n]) for n in config.active}
    total = sum(config.weight(n) * normalised[n] for n in config.active)
  clipped = jnp.clip(total, -config.advantage_clip, config.advantage_clip)
  return clipped, normalised
