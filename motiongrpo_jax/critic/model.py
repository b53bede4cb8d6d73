"""The perceptual critic: a learned score of how right a motion looks for a
head trajectory (DESIGN.md §1.4), and the reward R_vis = exp(ω·s) built on it.

Input representation (`motion_features`). A motion is a body shape (its
per-frame betas averaged over valid frames: one shape per sequence) and local
joint rotations; it is placed in the world from the *clean* CPF trajectory
(`T_world_root_from_cpf`), exactly as GRPO places a policy sample, so the
ground truth and every negative go through the same path. Forward kinematics
gives the 22 joints (pelvis + 21 body joints). Each joint of each frame is
described in that frame's **CPF heading frame**: origin at the CPF's floor
projection (CPF x, y; z = 0 is the floor), axes rotated about world z by the
CPF's heading (yaw of its +z axis), so that world +x becomes "where the head
looks" and z stays "up". Per joint (F = 15 with every part enabled):
  * position in the heading frame (3, metres; z = height above the floor);
  * velocity, (p_t − p_{t−1})·fps in the world, rotated into frame t's
    heading frame (3, m/s; 0 on a sequence's first valid frame), which shows
    foot sliding and jitter that positions alone hide;
  * rotation, 3×3 row-major (9): the local rotation for joints 1..21, the
    pelvis orientation in the heading frame for joint 0.
Everything is invariant to world x/y translation and rotation about world z,
as the trajectory condition is. Contacts are not an input (ground truth ones
are binary, predicted ones are not: a give-away, not a judgement).

Model (`Critic`): one token per (frame, joint) = Linear(F → D) + a learned
joint embedding; trajectory tokens = Linear(154 → D) refined by
`trajectory_layers` temporal self-attention blocks; one cross-attention from
every motion token to the trajectory tokens; `num_blocks` pre-LayerNorm blocks
of [spatial attention across the joints of a frame, temporal attention across
the frames of a joint, MLP]; a masked mean over valid frames and joints; an
MLP head to a scalar s. Temporal and cross-attention carry interleaved RoPE by
frame index, so relative timing (a time-shifted body) is visible.

Masking: padded frames are keys of no attention (temporal, cross), spatial
attention stays within a frame, velocities use only valid pairs of frames and
the pooling is over valid frames, so padded frames cannot change the score.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import jaxlie
import numpy as np

from motiongrpo_jax import geometry
from motiongrpo_jax.body import model as body_model
from motiongrpo_jax.body import skeleton
from motiongrpo_jax.model import conditioning
from motiongrpo_jax.model import denoiser as denoiser_lib
from motiongrpo_jax.model import packing

NUM_JOINTS = len(skeleton.JOINT_NAMES)  # 22: pelvis + 21 body joints


@dataclasses.dataclass(frozen=True)
class CriticConfig:
  """Critic hyperparameters (hashable: usable as a jit static argument)."""
  # Token width D.
  d_model: int = 128
  # Attention heads (head width D / num_heads, even for RoPE).
  num_heads: int = 4
  # Hidden width of every MLP.
  d_feedforward: int = 512
  # [spatial, temporal, MLP] blocks after the cross-attention.
  num_blocks: int = 4
  # Temporal self-attention blocks over the trajectory tokens.
  trajectory_layers: int = 1
  # Condition features (as the denoiser's: 22 raw numbers, Fourier-encoded).
  fourier_enc_freqs: int = 3
  include_canonicalized_cpf_rotation_in_cond: bool = True
  # Parts of the per-joint input (see the module docstring).
  use_positions: bool = True
  use_velocities: bool = True
  use_rotations: bool = True
  # Frame rate of the motion (velocities in m/s).
  fps: float = 30.0

  @property
  def d_cond(self) -> int:
    """Size of the condition features (154 by default)."""
    return conditioning.condition_dim(self)

  @property
  def num_features(self) -> int:
    """F, the per-joint input size."""
    return (3 * self.use_positions + 3 * self.use_velocities
            + 9 * self.use_rotations)

  def validate(self) -> "CriticConfig":
    """Raises ValueError naming the option for an impossible value."""
    for name in ("d_model", "num_heads", "d_feedforward", "fourier_enc_freqs"):
      if getattr(self, name) < 1:
        raise ValueError(f"CriticConfig.{name} must be >= 1, got "
                         f"{getattr(self, name)}")
    for name in ("num_blocks", "trajectory_layers"):
      if getattr(self, name) < 0:
        raise ValueError(f"CriticConfig.{name} must be >= 0, got "
                         f"{getattr(self, name)}")
    if self.d_model % self.num_heads or (self.d_model // self.num_heads) % 2:
      raise ValueError(
          f"CriticConfig.d_model={self.d_model} must split into num_heads="
          f"{self.num_heads} heads of even width (for RoPE)")
    if self.num_features == 0:
      raise ValueError("CriticConfig: enable at least one of use_positions, "
                       "use_velocities, use_rotations")
    if self.fps <= 0:
      raise ValueError(f"CriticConfig.fps must be > 0, got {self.fps}")
    return self

  def to_dict(self) -> dict[str, Any]:
    """All fields as a JSON-friendly dict."""
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, values: dict[str, Any]) -> "CriticConfig":
    """Builds a config; unknown keys raise ValueError naming them."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
      raise ValueError(f"unknown CriticConfig fields: {unknown}")
    return cls(**values).validate()


class Motion(NamedTuple):
  """A motion to score (no root: it is placed from the CPF).

  Attributes:
    betas: (..., T, 16) body shape per frame (a constant shape repeated).
    body_quats: (..., T, 21, 4) local rotations of joints 1..21, `wxyz`.
  """
  betas: jax.Array
  body_quats: jax.Array


def motion_from_packed(x: jax.Array, include_hands: bool) -> Motion:
  """The motion of a packed denoiser state (e.g. a sampler's x̂0).

  Args:
    x: (..., T, d) packed state; body rotations should be rotations (the
      sampler's x̂0 are SVD-projected).
    include_hands: whether d = 496 (hands are ignored) or 226.

  Returns:
    The motion with per-frame betas.
  """
  fields = packing.unpack(x, include_hands)
  return Motion(betas=fields.betas,
                body_quats=geometry.matrix_to_quat(fields.body_rotmats))


def motion_from_batch(batch: Any) -> Motion:
  """The ground-truth motion of a data batch (`betas` (B, 16) repeated)."""
  quats = batch["body_quats"]
  betas = jnp.broadcast_to(batch["betas"][..., None, :],
                           quats.shape[:-2] + (body_model.NUM_BETAS,))
  return Motion(betas=betas, body_quats=quats)


def _has_nonfinite(x: Any) -> bool:
  """True when `x` is a concrete array (not traced) holding NaN or inf."""
  if isinstance(x, jax.core.Tracer):
    return False
  return not bool(np.all(np.isfinite(np.asarray(x))))


def check_inputs(motion: Motion, T_world_cpf: jax.Array,
                 mask: jax.Array | None) -> None:
  """Shape checks (always) and NaN checks (when the arrays are concrete).

  Inside `jit` a NaN cannot raise; it makes the loss non-finite, and the
  train step skips and counts such steps.

  Raises:
    ValueError naming the field and what was expected.
  """
  quats = motion.body_quats
  if quats.ndim < 3 or quats.shape[-2:] != (skeleton.NUM_BODY_JOINTS, 4):
    raise ValueError(f"critic: body_quats has shape {quats.shape}, expected "
                     "(..., T, 21, 4)")
  lead = quats.shape[:-2]
  if motion.betas.shape != lead + (body_model.NUM_BETAS,):
    raise ValueError(f"critic: betas has shape {motion.betas.shape}, expected "
                     f"{lead + (body_model.NUM_BETAS,)} (per frame)")
  if T_world_cpf.shape != lead + (7,):
    raise ValueError(
        f"critic: the motion has {lead[-1]} frames (shape {lead}) but the "
        f"trajectory T_world_cpf has shape {T_world_cpf.shape}; expected "
        f"{lead + (7,)}: motion and trajectory must have the same length")
  if mask is not None and mask.shape != lead:
    raise ValueError(f"critic: mask has shape {mask.shape}, expected {lead}")
  for name, x in (("betas", motion.betas), ("body_quats", quats),
                  ("T_world_cpf", T_world_cpf)):
    if _has_nonfinite(x):
      raise ValueError(f"critic: {name} contains NaN or inf")


def heading_frame(T_world_cpf: jax.Array) -> tuple[jaxlie.SO3, jax.Array]:
  """The per-frame CPF heading frame.

  Args:
    T_world_cpf: (..., 7) CPF poses, floor at z = 0.

  Returns:
    (R_world_heading (...) a rotation about z, origin (..., 3) = (x, y, 0)).
  """
  yaw = geometry.yaw_of_forward(geometry.quat_to_matrix(T_world_cpf[..., :4]))
  origin = T_world_cpf[..., 4:7] * jnp.asarray([1.0, 1.0, 0.0],
                                               T_world_cpf.dtype)
  return geometry.rot_z(yaw), origin


def sequence_betas(betas: jax.Array, valid: jax.Array) -> jax.Array:
  """One body shape per sequence: the mean of per-frame betas over valid
  frames, repeated on every frame.

  A sampler's x̂0 predicts betas per frame; a real body has one shape, and
  bone lengths that flicker from frame to frame would let the critic tell
  samples from ground truth without judging the motion.

  Args:
    betas: (..., T, 16).
    valid: (..., T) bool.

  Returns:
    (..., T, 16) float32.
  """
  w = valid.astype(jnp.float32)[..., None]
  mean = (jnp.sum(betas.astype(jnp.float32) * w, axis=-2, keepdims=True)
          / jnp.maximum(jnp.sum(w, axis=-2, keepdims=True), 1.0))
  return jnp.broadcast_to(mean, betas.shape)


def motion_features(body: body_model.BodyModel, motion: Motion,
                    T_world_cpf: jax.Array, mask: jax.Array | None,
                    config: CriticConfig) -> jax.Array:
  """The critic's per-joint input (module docstring).

  Args:
    body: the body model (`builtin_body()` or SMPL-H; its first 22 joints).
    motion: betas (..., T, 16), body_quats (..., T, 21, 4).
    T_world_cpf: (..., T, 7) the clean CPF trajectory, floor at z = 0.
    mask: (..., T) valid frames, or None (all valid).
    config: which parts to include, fps.

  Returns:
    (..., T, 22, F) float32.
  """
  check_inputs(motion, T_world_cpf, mask)
  valid = (jnp.ones(motion.body_quats.shape[:-2], bool) if mask is None
           else mask.astype(bool))
  betas = sequence_betas(motion.betas, valid)
  quats = motion.body_quats.astype(jnp.float32)
  T_world_cpf = T_world_cpf.astype(jnp.float32)
  T_world_root = body.T_world_root_from_cpf(betas, T_world_cpf, quats)
  joints = body.forward_kinematics(betas, T_world_root, quats)
  joints = joints[..., :NUM_JOINTS, :]  # (..., T, 22, 7)
  R_world_heading, origin = heading_frame(T_world_cpf)
  R_heading_world = R_world_heading.inverse()
  # Broadcast the per-frame heading over the joint axis.
  R_hw = jaxlie.SO3(R_heading_world.wxyz[..., None, :])
  parts = []
  if config.use_positions:
    parts.append(R_hw @ (joints[..., 4:7] - origin[..., None, :]))
  if config.use_velocities:
    pair = jnp.concatenate(
        [jnp.zeros_like(valid[..., :1]), valid[..., 1:] & valid[..., :-1]],
        axis=-1)
    pos = joints[..., 4:7]
    delta = jnp.concatenate(
        [jnp.zeros_like(pos[..., :1, :, :]), pos[..., 1:, :, :] - pos[..., :-1, :, :]],
        axis=-3)
    delta = jnp.where(pair[..., None, None], delta, 0.0)
    parts.append(R_hw @ (delta * jnp.float32(config.fps)))
  if config.use_rotations:
    root = (R_heading_world @ jaxlie.SO3(joints[..., 0, :4])).as_matrix()
    local = geometry.quat_to_matrix(quats)
    rots = jnp.concatenate([root[..., None, :, :], local], axis=-3)
    parts.append(rots.reshape(rots.shape[:-2] + (9,)))
  return jnp.concatenate(parts, axis=-1)


def trajectory_features(T_world_cpf: jax.Array, T_cpf_tm1_cpf_t: jax.Array,
                        config: CriticConfig) -> jax.Array:
  """The head-trajectory features (..., T, 154), as the denoiser's condition."""
  return conditioning.condition_features(T_world_cpf.astype(jnp.float32),
                                         T_cpf_tm1_cpf_t.astype(jnp.float32),
                                         config)


# ----------------------------------------------------------------------------
# The network.


def _attention(q: jax.Array, k: jax.Array, v: jax.Array,
               key_mask: jax.Array | None) -> jax.Array:
  """Softmax attention (float32); fully masked rows give a finite output.

  Args:
    q: (N, Tq, H, dh).
    k, v: (N, Tk, H, dh).
    key_mask: (N, Tk) bool, True = attend; or None.

  Returns:
    (N, Tq, H·dh).
  """
  mask = None if key_mask is None else key_mask[:, None, None, :]
  out = jax.nn.dot_product_attention(q, k, v, mask=mask, implementation="xla")
  return out.reshape(out.shape[:2] + (-1,))


class _SelfAttention(nn.Module):
  """Pre-LN self-attention over axis 1 of (N, L, D), optional RoPE + mask."""
  num_heads: int

  @nn.compact
  def __call__(self, x: jax.Array, key_mask: jax.Array | None,
               rope: tuple[np.ndarray, np.ndarray] | None) -> jax.Array:
    n, length, width = x.shape
    head_dim = width // self.num_heads
    h = nn.LayerNorm(name="norm")(x)
    qkv = nn.Dense(3 * width, use_bias=False, name="qkv")(h)
    qkv = qkv.reshape(n, length, 3, self.num_heads, head_dim)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    if rope is not None:
      q = denoiser_lib.apply_rope(q, *rope)
      k = denoiser_lib.apply_rope(k, *rope)
    out = _attention(q, k, v, key_mask)
    return x + nn.Dense(width, use_bias=False, name="out")(out)


class _Mlp(nn.Module):
  """Pre-LN residual MLP."""
  d_feedforward: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    h = nn.LayerNorm(name="norm")(x)
    h = nn.gelu(nn.Dense(self.d_feedforward, name="fc1")(h), approximate=False)
    return x + nn.Dense(x.shape[-1], name="fc2")(h)


class _CrossAttention(nn.Module):
  """Motion tokens (B, T, J, D) attend to trajectory tokens (B, T, D)."""
  num_heads: int

  @nn.compact
  def __call__(self, x: jax.Array, traj: jax.Array, mask: jax.Array,
               rope: tuple[np.ndarray, np.ndarray]) -> jax.Array:
    batch, frames, joints, width = x.shape
    head_dim = width // self.num_heads
    h = nn.LayerNorm(name="norm_motion")(x)
    c = nn.LayerNorm(name="norm_trajectory")(traj)
    q = nn.Dense(width, use_bias=False, name="q")(h)
    q = q.reshape(batch, frames, joints, self.num_heads, head_dim)
    q = denoiser_lib.apply_rope(q, *rope)  # Position = the token's frame.
    kv = nn.Dense(2 * width, use_bias=False, name="kv")(c)
    kv = kv.reshape(batch, frames, 2, self.num_heads, head_dim)
    k = denoiser_lib.apply_rope(kv[:, :, 0], *rope)
    q = q.reshape(batch, frames * joints, self.num_heads, head_dim)
    out = _attention(q, k, kv[:, :, 1], mask)
    out = nn.Dense(width, use_bias=False, name="out")(out)
    return x + out.reshape(batch, frames, joints, width)


class _Block(nn.Module):
  """[spatial attention over joints, temporal attention over frames, MLP]."""
  config: CriticConfig

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array,
               rope: tuple[np.ndarray, np.ndarray]) -> jax.Array:
    cfg = self.config
    batch, frames, joints, width = x.shape
    # Spatial: the joints of one frame (padded frames only see themselves).
    x = _SelfAttention(cfg.num_heads, name="spatial")(
        x.reshape(batch * frames, joints, width), None, None)
    x = x.reshape(batch, frames, joints, width)
    # Temporal: the frames of one joint, padded frames masked out as keys.
    xt = jnp.swapaxes(x, 1, 2).reshape(batch * joints, frames, width)
    key_mask = jnp.repeat(mask, joints, axis=0)
    xt = _SelfAttention(cfg.num_heads, name="temporal")(xt, key_mask, rope)
    x = jnp.swapaxes(xt.reshape(batch, joints, frames, width), 1, 2)
    return _Mlp(cfg.d_feedforward, name="mlp")(x)


class Critic(nn.Module):
  """Scores motions given head trajectories: larger s = more plausible."""
  config: CriticConfig

  @nn.compact
  def __call__(self, motion_feats: jax.Array, trajectory_feats: jax.Array,
               mask: jax.Array | None = None) -> jax.Array:
    """The score of each sequence.

    Args:
      motion_feats: (B, T, 22, F) from `motion_features`.
      trajectory_feats: (B, T, 154) from `trajectory_features`.
      mask: (B, T) bool valid frames, or None (all valid).

    Returns:
      (B,) float32 scores s.
    """
    cfg = self.config.validate()
    if motion_feats.ndim != 4 or motion_feats.shape[2:] != (
        NUM_JOINTS, cfg.num_features):
      raise ValueError(
          f"critic: motion features have shape {motion_feats.shape}, expected "
          f"(B, T, {NUM_JOINTS}, {cfg.num_features})")
    batch, frames = motion_feats.shape[:2]
    if trajectory_feats.shape != (batch, frames, cfg.d_cond):
      raise ValueError(
          f"critic: the motion has shape (B, T) = {(batch, frames)} but the "
          f"trajectory features have shape {trajectory_feats.shape}; expected "
          f"{(batch, frames, cfg.d_cond)}")
    if mask is None:
      mask = jnp.ones((batch, frames), bool)
    elif mask.shape != (batch, frames):
      raise ValueError(f"critic: mask has shape {mask.shape}, expected "
                       f"{(batch, frames)}")
    mask = mask.astype(bool)
    for name, x in (("motion features", motion_feats),
                    ("trajectory features", trajectory_feats)):
      if _has_nonfinite(x):
        raise ValueError(f"critic: {name} contain NaN or inf")

    rope = denoiser_lib.rope_tables(frames, cfg.d_model // cfg.num_heads)
    # --- Trajectory tokens.
    traj = nn.Dense(cfg.d_model, name="trajectory_in")(
        trajectory_feats.astype(jnp.float32))
    for i in range(cfg.trajectory_layers):
      traj = _SelfAttention(cfg.num_heads, name=f"trajectory_attn_{i}")(
          traj, mask, rope)
      traj = _Mlp(cfg.d_feedforward, name=f"trajectory_mlp_{i}")(traj)
    # --- Motion tokens: one per (frame, joint).
    x = nn.Dense(cfg.d_model, name="motion_in")(motion_feats.astype(jnp.float32))
    joint_emb = self.param("joint_embedding", nn.initializers.normal(0.02),
                           (NUM_JOINTS, cfg.d_model))
    x = x + joint_emb
    # --- Cross-attention to the trajectory, then the blocks.
    x = _CrossAttention(cfg.num_heads, name="cross_attn")(x, traj, mask, rope)
    for i in range(cfg.num_blocks):
      x = _Block(cfg, name=f"block_{i}")(x, mask, rope)
    # --- Masked mean over valid frames and joints, then the head.
    x = nn.LayerNorm(name="final_norm")(x)
    weight = mask.astype(jnp.float32)[:, :, None, None]
    count = jnp.maximum(jnp.sum(weight, axis=(1, 2, 3)) * NUM_JOINTS, 1.0)
    pooled = jnp.sum(x * weight, axis=(1, 2)) / count[:, None]
    h = nn.gelu(nn.Dense(cfg.d_feedforward, name="head_0")(pooled),
                approximate=False)
    return nn.Dense(1, name="head_1")(h)[:, 0]


def score(model: Critic, params: Any, body: body_model.BodyModel,
          motion: Motion, T_world_cpf: jax.Array, T_cpf_tm1_cpf_t: jax.Array,
          mask: jax.Array | None = None) -> jax.Array:
  """Scores motions: features, then the network (pure; jit it with `model`
  and `body` bound).

  Args:
    model: the critic.
    params: its parameters.
    body: the body model the motions are posed with.
    motion: betas (B, T, 16), body_quats (B, T, 21, 4).
    T_world_cpf: (B, T, 7) the clean CPF trajectory, floor at z = 0.
    T_cpf_tm1_cpf_t: (B, T, 7) CPF motion from the previous frame.
    mask: (B, T) valid frames or None.

  Returns:
    (B,) scores.
  """
  feats = motion_features(body, motion, T_world_cpf, mask, model.config)
  traj = trajectory_features(T_world_cpf, T_cpf_tm1_cpf_t, model.config)
  return model.apply({"params": params}, feats, traj, mask)


def critic_reward(score_value: jax.Array, omega: float | jax.Array) -> jax.Array:
  """The perceptual reward R_vis = exp(ω·s), elementwise.

  Args:
    score_value: (...) critic scores s.
    omega: ω_vis, the reward's scale.

  Returns:
    (...) rewards, float32.
  """
  return jnp.exp(jnp.asarray(omega, jnp.float32)
                 * jnp.asarray(score_value, jnp.float32))


def init_params(model: Critic, key: jax.Array, num_frames: int = 4) -> Any:
  """Fresh parameters (shapes do not depend on B or T); one compiled call."""
  cfg = model.config.validate()
  feats = jnp.zeros((1, num_frames, NUM_JOINTS, cfg.num_features))
  traj = jnp.zeros((1, num_frames, cfg.d_cond))
  return jax.jit(model.init)(key, feats, traj)["params"]
