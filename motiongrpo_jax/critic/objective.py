"""The critic's training objective: InfoNCE over a positive and its negatives,
and the perturbed-ground-truth negatives (pure JAX, deterministic from keys).

For each head trajectory b the candidates are [ground truth, negatives …];
with critic scores s_bk and temperature τ (0.07),
  ℓ_b = −log softmax_k(s_bk / τ)[0] = logsumexp_k(s_bk/τ) − s_b0/τ,
over the valid candidates of b only, and the loss is the mean of w_b·ℓ_b over
the batch (w_b = 0 for trajectories without a valid frame).

Negatives of perturbed ground truth (each placed from the clean CPF like every
candidate, so the head always follows the trajectory and only the body is
wrong):
  * `time_shift`: the body's rotations shifted by ±[min_shift, max_shift]
    frames against the trajectory (frames clamped to the valid range);
  * `joint_noise`: every joint rotated by a random axis-angle offset (constant
    over time, std `noise_offset_std` rad) plus per-frame jitter (std
    `noise_jitter_std` rad);
  * `foot_sliding`: the leg joints (hips, knees, ankles, feet) replayed at a
    slower rate α ~ U[0, slide_rate_max] (frame α·t, interpolated), while the
    pelvis travels with the head: the legs stop stepping and the feet slide;
  * `mirrored_limbs`: the arms, the legs or both (equal odds) take the
    mirror image of the opposite side's rotations (reflection x → −x of SMPL's
    canonical frame: (w, x, y, z) → (w, x, −y, −z));
  * `other_motion`: the next sequence's body (shape and rotations) in the
    batch with this trajectory (invalid when both are the same sequence).
The base policy's own samples (hard negatives) come from the sampler; see
`base_negatives`. Their rollouts may see a head trajectory shaken by GRPO's
smooth condition noise (`noisy_condition`, amplitude λ per rollout): the
sample then fits a slightly wrong trajectory while the critic judges it
against the clean one, a graded negative (larger λ, larger mismatch).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import jaxlie

from motiongrpo_jax import geometry
from motiongrpo_jax.body import skeleton
from motiongrpo_jax.critic import model as critic_lib
from motiongrpo_jax.data import condition_noise

KINDS: tuple[str, ...] = ("time_shift", "joint_noise", "foot_sliding",
                          "mirrored_limbs", "other_motion")

_NAMES = skeleton.JOINT_NAMES


def _body_index(name: str) -> int:
  """Index into body_quats (joints 1..21) of a joint name."""
  return _NAMES.index(name) - 1


_ARM_PARTS = ("collar", "shoulder", "elbow", "wrist")
_LEG_PARTS = ("hip", "knee", "ankle", "foot")
# (left, right) body_quats indices of the arm and leg joints.
ARM_PAIRS = tuple((_body_index(f"left_{p}"), _body_index(f"right_{p}"))
                  for p in _ARM_PARTS)
LEG_PAIRS = tuple((_body_index(f"left_{p}"), _body_index(f"right_{p}"))
                  for p in _LEG_PARTS)
LEG_JOINTS = tuple(j for pair in LEG_PAIRS for j in pair)


@dataclasses.dataclass(frozen=True)
class PerturbationConfig:
  """Which perturbed-ground-truth negatives to make, and how strong."""
  # Kinds, one negative each, in this order (a subset of KINDS).
  kinds: tuple[str, ...] = KINDS
  # time_shift: |shift| in frames, uniform in [min_shift, max_shift].
  min_shift: int = 4
  max_shift: int = 15
  # joint_noise: std of the constant and the per-frame rotation noise (rad).
  noise_offset_std: float = 0.15
  noise_jitter_std: float = 0.05
  # foot_sliding: the legs' playback rate α ~ U[0, slide_rate_max].
  slide_rate_max: float = 0.5

  def validate(self) -> "PerturbationConfig":
    """Raises ValueError naming the option for an impossible value."""
    unknown = [k for k in self.kinds if k not in KINDS]
    if unknown or len(set(self.kinds)) != len(self.kinds):
      raise ValueError(f"perturbations.kinds={self.kinds!r}: expected distinct "
                       f"names among {KINDS}")
    if not 1 <= self.min_shift <= self.max_shift:
      raise ValueError(f"perturbations: need 1 <= min_shift <= max_shift, got "
                       f"{self.min_shift}, {self.max_shift}")
    if self.noise_offset_std < 0 or self.noise_jitter_std < 0:
      raise ValueError("perturbations: noise stds must be >= 0")
    if not 0 <= self.slide_rate_max < 1:
      raise ValueError(f"perturbations.slide_rate_max={self.slide_rate_max}: "
                       "expected in [0, 1)")
    return self


# ----------------------------------------------------------------------------
# The loss.


def info_nce(scores: jax.Array, valid: jax.Array | None = None,
             weight: jax.Array | None = None,
             temperature: float = 0.07) -> tuple[jax.Array, jax.Array]:
  """InfoNCE with the positive in column 0.

  Args:
    scores: (B, K) critic scores; column 0 the positive, 1.. the negatives.
    valid: (B, K) bool, which candidates take part (column 0 must be); None:
      all.
    weight: (B,) per-trajectory weight (0 for filler), None: all 1.
    temperature: τ.

  Returns:
    (loss (), per-trajectory losses ℓ (B,)): loss = mean_b(w_b·ℓ_b).
  """
  if scores.ndim != 2 or scores.shape[1] < 2:
    raise ValueError(f"info_nce: scores have shape {scores.shape}, expected "
                     "(B, K) with K >= 2 (a positive and negatives)")
  if temperature <= 0:
    raise ValueError(f"info_nce: temperature must be > 0, got {temperature}")
  logits = scores.astype(jnp.float32) / jnp.float32(temperature)
  if valid is not None:
    logits = jnp.where(valid, logits, -jnp.inf)
  per = jax.nn.logsumexp(logits, axis=1) - logits[:, 0]
  if weight is None:
    weight = jnp.ones_like(per)
  per = jnp.where(weight > 0, per, 0.0)
  return jnp.mean(weight * per), per


def ranking_stats(scores: jax.Array, valid: jax.Array | None = None
                  ) -> tuple[jax.Array, jax.Array]:
  """Whether the positive outscores each / every valid negative.

  Args:
    scores: (B, K), column 0 the positive.
    valid: (B, K) bool or None.

  Returns:
    (beats (B, K−1) bool: s_0 > s_k or k invalid; beats_all (B,) bool).
  """
  beats = scores[:, :1] > scores[:, 1:]
  if valid is not None:
    beats = beats | ~valid[:, 1:]
  return beats, jnp.all(beats, axis=1)


# ----------------------------------------------------------------------------
# Perturbations of one sequence: quats (T, 21, 4), mask (T,).


def _last_valid(mask: jax.Array) -> jax.Array:
  """Index of the last valid frame (0 if none)."""
  index = jnp.arange(mask.shape[0])
  return jnp.max(jnp.where(mask, index, 0))


def _gather_frames(quats: jax.Array, frames: jax.Array) -> jax.Array:
  """quats at fractional frames (T,), linearly interpolated and normalised."""
  lo = jnp.floor(frames).astype(jnp.int32)
  hi = jnp.minimum(lo + 1, quats.shape[0] - 1)
  frac = (frames - lo)[:, None, None]
  a, b = quats[lo], quats[hi]
  b = jnp.where(jnp.sum(a * b, axis=-1, keepdims=True) < 0, -b, b)
  q = (1.0 - frac) * a + frac * b
  return q / jnp.linalg.norm(q, axis=-1, keepdims=True)


def time_shift(key: jax.Array, quats: jax.Array, mask: jax.Array,
               min_shift: int, max_shift: int) -> jax.Array:
  """The rotations shifted by ±U{min_shift..max_shift} frames (clamped).

  Args:
    key: PRNG key.
    quats: (T, 21, 4).
    mask: (T,) valid frames (a prefix).
    min_shift, max_shift: range of |shift|.

  Returns:
    (T, 21, 4): frame t takes frame clip(t + shift, 0, last valid).
  """
  k_size, k_sign = jax.random.split(key)
  size = jax.random.randint(k_size, (), min_shift, max_shift + 1)
  sign = jnp.where(jax.random.bernoulli(k_sign), 1, -1)
  frames = jnp.clip(jnp.arange(quats.shape[0]) + sign * size, 0,
                    _last_valid(mask))
  return quats[frames]


def joint_noise(key: jax.Array, quats: jax.Array, offset_std: float,
                jitter_std: float) -> jax.Array:
  """Every local rotation composed with exp(offset_j + jitter_tj).

  Args:
    key: PRNG key.
    quats: (T, 21, 4).
    offset_std: std (rad) of the per-joint constant axis-angle offset.
    jitter_std: std (rad) of the per-frame, per-joint axis-angle jitter.

  Returns:
    (T, 21, 4).
  """
  k_off, k_jit = jax.random.split(key)
  offset = offset_std * jax.random.normal(k_off, quats.shape[1:2] + (3,))
  jitter = jitter_std * jax.random.normal(k_jit, quats.shape[:2] + (3,))
  noise = jaxlie.SO3.exp(offset[None] + jitter)
  return (jaxlie.SO3(quats) @ noise).wxyz


def foot_sliding(key: jax.Array, quats: jax.Array, mask: jax.Array,
                 slide_rate_max: float) -> jax.Array:
  """The leg joints replayed at rate α ~ U[0, slide_rate_max] (frame α·t).

  Args:
    key: PRNG key.
    quats: (T, 21, 4).
    mask: (T,) valid frames (a prefix).
    slide_rate_max: largest rate α.

  Returns:
    (T, 21, 4): legs (hips, knees, ankles, feet) slowed, the rest unchanged.
  """
  rate = jax.random.uniform(key, (), maxval=slide_rate_max)
  frames = jnp.minimum(rate * jnp.arange(quats.shape[0], dtype=jnp.float32),
                       _last_valid(mask).astype(jnp.float32))
  slowed = _gather_frames(quats, frames)
  legs = jnp.zeros((quats.shape[1],), bool).at[jnp.asarray(LEG_JOINTS)].set(True)
  return jnp.where(legs[None, :, None], slowed, quats)


def mirror_quats(quats: jax.Array) -> jax.Array:
  """Reflection through SMPL's sagittal plane (x → −x): (w, x, −y, −z)."""
  return quats * jnp.asarray([1.0, 1.0, -1.0, -1.0], quats.dtype)


def mirror_limbs(key: jax.Array, quats: jax.Array) -> jax.Array:
  """The arms, the legs or both (equal odds) mirrored from the other side.

  Args:
    key: PRNG key.
    quats: (T, 21, 4).

  Returns:
    (T, 21, 4): joint (left j) takes mirror(right j) and vice versa on the
    chosen limbs.
  """
  choice = jax.random.randint(key, (), 0, 3)  # 0 arms, 1 legs, 2 both.
  out = quats
  for pairs, on in ((ARM_PAIRS, choice != 1), (LEG_PAIRS, choice != 0)):
    left = jnp.asarray([p[0] for p in pairs])
    right = jnp.asarray([p[1] for p in pairs])
    swapped = out.at[:, left].set(mirror_quats(quats[:, right]))
    swapped = swapped.at[:, right].set(mirror_quats(quats[:, left]))
    out = jnp.where(on, swapped, out)
  return out


# ----------------------------------------------------------------------------
# Batched negatives.


def other_motion(motion: critic_lib.Motion, seq_index: jax.Array
                 ) -> tuple[critic_lib.Motion, jax.Array]:
  """Each trajectory with the next batch element's motion.

  Args:
    motion: betas (B, T, 16), body_quats (B, T, 21, 4).
    seq_index: (B,) sequence indices (−1 for filler).

  Returns:
    (the rolled motion, valid (B,): a different, real sequence).
  """
  rolled = jax.tree.map(lambda x: jnp.roll(x, -1, axis=0), motion)
  other = jnp.roll(seq_index, -1)
  valid = (other != seq_index) & (other >= 0) & (seq_index >= 0)
  return rolled, valid


def perturbed_negatives(keys: jax.Array, motion: critic_lib.Motion,
                        mask: jax.Array, seq_index: jax.Array,
                        config: PerturbationConfig
                        ) -> tuple[critic_lib.Motion, jax.Array]:
  """One negative per kind of `config.kinds`, for every trajectory.

  Args:
    keys: (B, 2) per-trajectory keys (a trajectory's negatives depend only on
      its key, its own data and, for `other_motion`, the next element).
    motion: ground truth, betas (B, T, 16), body_quats (B, T, 21, 4).
    mask: (B, T) valid frames.
    seq_index: (B,) sequence indices (−1 filler).
    config: kinds and strengths.

  Returns:
    (negatives with betas (B, N, T, 16), body_quats (B, N, T, 21, 4),
    valid (B, N)), N = len(config.kinds), in that order.
  """
  config.validate()
  batch = mask.shape[0]
  mask = mask.astype(bool)
  kind_keys = jax.vmap(lambda k: jax.random.split(k, len(KINDS)))(keys)
  ones = jnp.ones((batch,), bool)
  betas_out, quats_out, valid_out = [], [], []
  for kind in config.kinds:
    k = kind_keys[:, KINDS.index(kind)]
    betas, valid = motion.betas, ones
    if kind == "time_shift":
      quats = jax.vmap(time_shift, in_axes=(0, 0, 0, None, None))(
          k, motion.body_quats, mask, config.min_shift, config.max_shift)
    elif kind == "joint_noise":
      quats = jax.vmap(joint_noise, in_axes=(0, 0, None, None))(
          k, motion.body_quats, config.noise_offset_std,
          config.noise_jitter_std)
    elif kind == "foot_sliding":
      quats = jax.vmap(foot_sliding, in_axes=(0, 0, 0, None))(
          k, motion.body_quats, mask, config.slide_rate_max)
    elif kind == "mirrored_limbs":
      quats = jax.vmap(mirror_limbs)(k, motion.body_quats)
    else:  # other_motion
      other, valid = other_motion(motion, seq_index)
      betas, quats = other.betas, other.body_quats
    betas_out.append(betas)
    quats_out.append(quats)
    valid_out.append(valid)
  negatives = critic_lib.Motion(betas=jnp.stack(betas_out, axis=1),
                                body_quats=jnp.stack(quats_out, axis=1))
  return negatives, jnp.stack(valid_out, axis=1)


def base_negatives(x0_preds: jax.Array, last_steps: int, num_samples: int,
                   include_hands: bool) -> critic_lib.Motion:
  """Hard negatives: the base policy's x̂0 of the last sampling steps.

  Args:
    x0_preds: (S, B·G, L, d) per-step projected x̂0 of a rollout over the
      batch tiled G = num_samples times (sample-major: row g·B + b).
    last_steps: how many final steps to take (K ≤ S).
    num_samples: G.
    include_hands: whether d = 496.

  Returns:
    Motion with betas (B, G·K, L, 16), body_quats (B, G·K, L, 21, 4),
    ordered sample-major then step.
  """
  steps, rows, length, dim = x0_preds.shape
  if not 1 <= last_steps <= steps:
    raise ValueError(f"base_negatives: last_steps={last_steps} must be in "
                     f"1..{steps} (the rollout's steps)")
  if rows % num_samples:
    raise ValueError(f"base_negatives: {rows} rows do not split into "
                     f"num_samples={num_samples}")
  x = x0_preds[steps - last_steps:]  # (K, G·B, L, d)
  x = x.reshape(last_steps, num_samples, rows // num_samples, length, dim)
  x = jnp.transpose(x, (2, 1, 0, 3, 4)).reshape(
      rows // num_samples, num_samples * last_steps, length, dim)
  return critic_lib.motion_from_packed(x, include_hands)


def noisy_condition(keys: jax.Array, T_world_cpf: jax.Array,
                    T_cpf_tm1_cpf_t: jax.Array, mask: jax.Array,
                    amplitude: jax.Array,
                    config: condition_noise.ConditionNoiseConfig =
                    condition_noise.ConditionNoiseConfig(kind="perlin")
                    ) -> tuple[jax.Array, jax.Array]:
  """Head trajectories with smooth noise on the CPF translations (GRPO's).

  Frame t's translation moves by λ·P(t), P from `condition_noise` (zero
  mean, unit RMS per axis over valid frames); rotations are kept. Relative
  poses are recomputed between consecutive frames; the first frame's keeps
  its value (the pose before the window is taken to move with frame 0).

  Args:
    keys: (N, 2) one key per trajectory.
    T_world_cpf: (N, T, 7) CPF poses, floor at z = 0.
    T_cpf_tm1_cpf_t: (N, T, 7) CPF motion from the previous frame.
    mask: (N, T) valid frames.
    amplitude: () or (N,) λ, RMS displacement in metres (0: unchanged).
    config: the noise's shape (its `amplitude` is replaced by 1; λ scales).

  Returns:
    (T_world_cpf, T_cpf_tm1_cpf_t), each (N, T, 7).
  """
  unit = dataclasses.replace(config, amplitude=1.0)
  num_frames = T_world_cpf.shape[1]
  noise = jax.vmap(lambda k, m: condition_noise.sample_noise(
      k, num_frames, unit, m))(keys, mask.astype(bool))
  scale = jnp.broadcast_to(jnp.asarray(amplitude, jnp.float32),
                           (T_world_cpf.shape[0],))
  noisy = condition_noise.perturb_translations(
      T_world_cpf, scale[:, None, None] * noise)
  relative = jnp.concatenate(
      [T_cpf_tm1_cpf_t[:, :1], geometry.relative_poses(noisy)], axis=1)
  return noisy, relative


def candidate_scores(score_fn, motion: critic_lib.Motion,
                     T_world_cpf: jax.Array, T_cpf_tm1_cpf_t: jax.Array,
                     mask: jax.Array) -> jax.Array:
  """Scores K candidate motions per trajectory in one critic call.

  Args:
    score_fn: fn(motion (N, T, …), T_world_cpf (N, T, 7), T_cpf_tm1_cpf_t
      (N, T, 7), mask (N, T)) -> (N,), e.g. `critic.score` with the model,
      params and body bound.
    motion: betas (B, K, T, 16), body_quats (B, K, T, 21, 4).
    T_world_cpf, T_cpf_tm1_cpf_t: (B, T, 7) the trajectory of each row.
    mask: (B, T).

  Returns:
    (B, K) scores.
  """
  batch, num = motion.body_quats.shape[:2]
  flat = jax.tree.map(lambda x: x.reshape((batch * num,) + x.shape[2:]), motion)
  tile = lambda x: jnp.repeat(x, num, axis=0)  # pylint: disable=unnecessary-lambda-assignment
  scores = score_fn(flat, tile(T_world_cpf), tile(T_cpf_tm1_cpf_t), tile(mask))
  return scores.reshape(batch, num)
