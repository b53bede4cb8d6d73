"""Body-motion evaluation metrics as pure, batched, jit-friendly functions.

Every metric takes world-frame quantities in metres (z up) with time on the
axis before the joint axis, e.g. joints `(..., T, J, 3)`, and returns one value
per sequence, shape `(...)`. The optional `mask (..., T)` marks the valid
(unpadded) frames; a quantity built from several frames (a velocity, a jerk,
a foot step) counts only when all of its frames are valid. Averages go over
joints first, then over the valid frames of the sequence; `summarize` then
averages over sequences. A sequence without a single valid term gives NaN.

Joint arrays are the pelvis + 21 body joints in SMPL order
(`body.skeleton.JOINT_NAMES`); the caller places the predicted root from the
input CPF, as EgoAllo's evaluation does. Definitions follow EgoAllo's
`metrics_helpers.py` and `5_eval_body_metrics.py` where EgoAllo has the metric
(MPJPE, PA-MPJPE, T_head, foot skate, foot contact); the differences are
stated in each docstring.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import jaxlie
import numpy as np

from motiongrpo_jax import geometry
from motiongrpo_jax.body import skeleton

# Names and units of the metrics `compute_all` returns, in report order.
UNITS: dict[str, str] = {
    "mpjpe": "mm",
    "pampjpe": "mm",
    "pampjpe_egoallo_compat": "mm",
    "t_head": "mm",
    "pelvis_error": "mm",
    "root_relative_mpjpe": "mm",
    "arm_mpjpe": "mm",
    "wrist_error": "mm",
    "mpjve": "mm/s",
    "mpjre": "deg",
    "jitter": "m/s^3",
    "ground_penetration": "mm",
    "foot_skate": "m",
    "foot_contact": "fraction of sequences",
}
METRIC_NAMES: tuple[str, ...] = tuple(UNITS)

NUM_JOINTS = len(skeleton.JOINT_NAMES)  # 22: pelvis + 21 body joints
# EgoAllo's foot joints, (left ankle, right ankle, left foot, right foot).
# EgoAllo writes them as 6, 7, 9, 10, indices into its 21 non-pelvis joints
# (`Ts_world_joint[..., :21, :]`); in the 22-joint list they are 7, 8, 10, 11.
FOOT_JOINTS: tuple[int, ...] = (
    skeleton.LEFT_ANKLE, skeleton.RIGHT_ANKLE, skeleton.LEFT_FOOT,
    skeleton.RIGHT_FOOT)
# Contact height thresholds H per foot joint, metres (EgoEgo / Kinpoly).
FOOT_HEIGHT_THRESHOLDS: tuple[float, ...] = (0.08, 0.08, 0.04, 0.04)


def _check_same_shape(name: str, pred: jax.Array, gt: jax.Array) -> None:
  if pred.shape != gt.shape:
    raise ValueError(
        f"{name}: prediction shape {pred.shape} != ground-truth shape "
        f"{gt.shape}; broadcast them before calling")


def _check_points(name: str, x: jax.Array, min_frames: int = 1) -> None:
  if x.ndim < 3 or x.shape[-1] != 3 or x.shape[-3] < min_frames:
    raise ValueError(
        f"{name}: expected joints (..., T, J, 3) with T >= {min_frames}, "
        f"got shape {x.shape}")


def _frame_mask(
    mask: jax.Array | None, batch_time: tuple[int, ...]) -> jax.Array:
  """The validity mask `(..., T)` as bool; all frames when None."""
  if mask is None:
    return jnp.ones(batch_time, dtype=bool)
  mask = jnp.asarray(mask)
  if mask.shape != batch_time:
    raise ValueError(
        f"mask: expected shape {batch_time} (the leading dims and T of the "
        f"data), got {mask.shape}")
  return mask.astype(bool)


def _window_mask(mask: jax.Array, width: int) -> jax.Array:
  """Validity of every run of `width` consecutive frames, (..., T−width+1)."""
  num = mask.shape[-1] - width + 1
  valid = mask[..., :num]
  for k in range(1, width):
    valid = valid & mask[..., k:k + num]
  return valid


def _masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean of `values (..., T)` over the last axis where `mask`; NaN if empty."""
  total = jnp.sum(jnp.where(mask, values, 0.0), axis=-1)
  count = jnp.sum(mask, axis=-1)
  return jnp.where(count > 0, total / jnp.maximum(count, 1), jnp.nan)


def umeyama(
    src: jax.Array, dst: jax.Array, with_scale: bool = True
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Similarity transform aligning `src` to `dst` (Umeyama 1991).

  Minimises mean_i |s·R·src_i + t − dst_i|² over s > 0, R ∈ SO(3) (no
  reflections: the smallest singular direction is flipped when
  det(U)·det(V) < 0) and t ∈ R³. With μ the means, Σ = (1/N)·Σ_i
  (dst_i − μ_dst)(src_i − μ_src)ᵀ = U·D·Vᵀ and S = diag(1, 1, ±1):
  R = U·S·Vᵀ, s = tr(D·S)/σ²_src with σ²_src = (1/N)·Σ_i |src_i − μ_src|²,
  t = μ_dst − s·R·μ_src. A degenerate `src` (all points equal) gives s = 0.

  Args:
    src: (..., N, 3) points to be moved.
    dst: (..., N, 3) target points.
    with_scale: if False, s = 1 (a rigid alignment).

  Returns:
    s (...), R (..., 3, 3), t (..., 3) such that dst ≈ s·R·src + t.
  """
  _check_same_shape("umeyama", src, dst)
  mu_src = jnp.mean(src, axis=-2)
  mu_dst = jnp.mean(dst, axis=-2)
  src0 = src - mu_src[..., None, :]
  dst0 = dst - mu_dst[..., None, :]
  cov = jnp.einsum("...ni,...nj->...ij", dst0, src0) / src.shape[-2]
  rot, trace = geometry.nearest_rotation(cov)  # R = U·S·Vᵀ, tr(D·S)
  if with_scale:
    var = jnp.mean(jnp.sum(src0**2, axis=-1), axis=-1)
    scale = trace / jnp.where(var > 0, var, 1.0)
    scale = jnp.where(var > 0, scale, 0.0)
  else:
    scale = jnp.ones(rot.shape[:-2], rot.dtype)
  rotated_mu = jnp.einsum("...ij,...j->...i", rot, mu_src)
  trans = mu_dst - scale[..., None] * rotated_mu
  return scale, rot, trans


def apply_similarity(
    s: jax.Array, rot: jax.Array, t: jax.Array, points: jax.Array) -> jax.Array:
  """s·R·p + t for points (..., N, 3)."""
  return (s[..., None, None] * jnp.einsum("...ij,...nj->...ni", rot, points)
          + t[..., None, :])


def mpjpe(
    pred_joints: jax.Array, gt_joints: jax.Array, mask: jax.Array | None = None
) -> jax.Array:
  """Mean per-joint position error, millimetres.

  MPJPE = 1000 · mean over valid frames t of mean over joints j of
  |p̂_tj − p_tj|₂, in the world frame, without any alignment; the joints are
  the pelvis + 21 body joints (EgoAllo's `compute_mpjpe`).

  Args:
    pred_joints: (..., T, J, 3) predicted joint positions, metres.
    gt_joints: (..., T, J, 3) ground-truth joint positions, metres.
    mask: optional (..., T) bool, True on valid frames.

  Returns:
    (...) MPJPE per sequence, mm.
  """
  _check_same_shape("mpjpe", pred_joints, gt_joints)
  _check_points("mpjpe", pred_joints)
  mask = _frame_mask(mask, pred_joints.shape[:-2])
  err = jnp.mean(jnp.linalg.norm(pred_joints - gt_joints, axis=-1), axis=-1)
  return 1000.0 * _masked_mean(err, mask)


def root_relative_mpjpe(
    pred_joints: jax.Array, gt_joints: jax.Array, mask: jax.Array | None = None
) -> jax.Array:
  """MPJPE of the joints relative to each body's own pelvis, millimetres.

  With `mpjpe` of the pelvis alone (`pelvis_error`) it splits the world error
  into where the body is and how it is posed around its pelvis: the pelvis
  hangs from the head through the spine, so a spine that leans wrongly moves
  the whole body, which PA-MPJPE (a similarity fit) hides.

  Args:
    pred_joints: (..., T, J, 3) predicted joint positions, pelvis first.
    gt_joints: (..., T, J, 3) ground-truth joint positions, pelvis first.
    mask: optional (..., T) bool, True on valid frames.

  Returns:
    (...) per sequence, mm.
  """
  _check_same_shape("root_relative_mpjpe", pred_joints, gt_joints)
  _check_points("root_relative_mpjpe", pred_joints)
  return mpjpe(pred_joints - pred_joints[..., :1, :],
               gt_joints - gt_joints[..., :1, :], mask)


def pampjpe(
    pred_joints: jax.Array, gt_joints: jax.Array, mask: jax.Array | None = None
) -> jax.Array:
  """Procrustes-aligned MPJPE (the standard convention), millimetres.

  Per frame, the PREDICTED joints are moved onto the ground truth by the
  similarity transform (scale, rotation, translation; `umeyama(pred, gt)`)
  that minimises their squared distance, then MPJPE is taken. The result is
  invariant to any similarity transform of the prediction; it is 0 whenever
  the prediction is a similarity transform of the ground truth.

  Args:
    pred_joints: (..., T, J, 3) predicted joint positions, metres.
    gt_joints: (..., T, J, 3) ground-truth joint positions, metres.
    mask: optional (..., T) bool, True on valid frames.

  Returns:
    (...) PA-MPJPE per sequence, mm.
  """
  _check_same_shape("pampjpe", pred_joints, gt_joints)
  aligned = apply_similarity(*umeyama(pred_joints, gt_joints), pred_joints)
  return mpjpe(aligned, gt_joints, mask)


def pampjpe_egoallo_compat(
    pred_joints: jax.Array, gt_joints: jax.Array, mask: jax.Array | None = None
) -> jax.Array:
  """PA-MPJPE in EgoAllo's convention: the LABEL is aligned to the prediction.

  EgoAllo's `compute_mpjpe(per_frame_procrustes_align=True)` calls
  `procrustes_align(points_y=pred, points_x=label)`, which moves the
  ground truth onto the prediction by a similarity transform
  (`umeyama(gt, pred)`, scale included), then measures the error in the
  prediction's frame. Both conventions give 0 when one pose is a similarity
  transform of the other (a rigid or scaled copy of the ground truth gives 0
  here too) and neither changes under a rigid motion of the prediction, but
  they differ otherwise: this one scales with the prediction (if
  pred → c·pred, this error → c·error, while `pampjpe` is unchanged). It is
  not symmetric with `pampjpe` either. Example: ground truth
  ±e_x, ±e_y, ±e_z and a prediction stretched ×2 along z give
  `pampjpe` = 1/3 m and this = 4/9 m.

  Args:
    pred_joints: (..., T, J, 3) predicted joint positions, metres.
    gt_joints: (..., T, J, 3) ground-truth joint positions, metres.
    mask: optional (..., T) bool, True on valid frames.

  Returns:
    (...) EgoAllo-convention PA-MPJPE per sequence, mm.
  """
  _check_same_shape("pampjpe_egoallo_compat", pred_joints, gt_joints)
  aligned_gt = apply_similarity(*umeyama(gt_joints, pred_joints), gt_joints)
  return mpjpe(pred_joints, aligned_gt, mask)


def t_head(
    pred_head: jax.Array, gt_head: jax.Array, mask: jax.Array | None = None
) -> jax.Array:
  """Head position error T_head, millimetres.

  T_head = 1000 · mean over valid frames of |ĥ_t − h_t|₂ for the head
  positions (the head joint, or the CPF), world frame. EgoAllo's
  `compute_head_trans` is the same on the head joint but reported in
  metres (its paper's 0.0062 is 6.2 mm).

  Args:
    pred_head: (..., T, 3) predicted head positions, metres.
    gt_head: (..., T, 3) ground-truth head positions, metres.
    mask: optional (..., T) bool, True on valid frames.

  Returns:
    (...) T_head per sequence, mm.
  """
  _check_same_shape("t_head", pred_head, gt_head)
  if pred_head.ndim < 2 or pred_head.shape[-1] != 3:
    raise ValueError(
        f"t_head: expected head positions (..., T, 3), got {pred_head.shape}")
  mask = _frame_mask(mask, pred_head.shape[:-1])
  err = jnp.linalg.norm(pred_head - gt_head, axis=-1)
  return 1000.0 * _masked_mean(err, mask)


def mpjve(
    pred_joints: jax.Array, gt_joints: jax.Array, fps: float | jax.Array,
    mask: jax.Array | None = None,
) -> jax.Array:
  """Mean per-joint velocity error, millimetres per second.

  With forward-difference velocities v_tj = (p_{t+1,j} − p_tj)·fps,
  MPJVE = 1000 · mean over valid frame pairs (t, t+1) of mean over joints of
  |v̂_tj − v_tj|₂.

  Args:
    pred_joints: (..., T, J, 3) predicted joint positions, metres, T ≥ 2.
    gt_joints: (..., T, J, 3) ground-truth joint positions, metres.
    fps: frames per second.
    mask: optional (..., T) bool, True on valid frames.

  Returns:
    (...) MPJVE per sequence, mm/s.
  """
  _check_same_shape("mpjve", pred_joints, gt_joints)
  _check_points("mpjve", pred_joints, min_frames=2)
  mask = _window_mask(_frame_mask(mask, pred_joints.shape[:-2]), 2)
  dv = jnp.diff(pred_joints - gt_joints, axis=-3) * fps
  err = jnp.mean(jnp.linalg.norm(dv, axis=-1), axis=-1)
  return 1000.0 * _masked_mean(err, mask)


def mpjre(
    pred_body_quats: jax.Array, gt_body_quats: jax.Array,
    mask: jax.Array | None = None,
) -> jax.Array:
  """Mean per-joint local rotation error, degrees.

  For each of the 21 body joints' local (parent-relative) rotations, the
  geodesic angle of R̂ᵀ·R, i.e. 2·atan2(|v|, |w|) for the quaternion
  (w, v) = q̂⁻¹·q, so q and −q are the same rotation; the quaternions need not
  be normalised. MPJRE = mean over valid frames of mean over joints.

  Args:
    pred_body_quats: (..., T, 21, 4) predicted local rotations, wxyz.
    gt_body_quats: (..., T, 21, 4) ground-truth local rotations, wxyz.
    mask: optional (..., T) bool, True on valid frames.

  Returns:
    (...) MPJRE per sequence, degrees.
  """
  _check_same_shape("mpjre", pred_body_quats, gt_body_quats)
  if pred_body_quats.ndim < 3 or pred_body_quats.shape[-1] != 4:
    raise ValueError(
        f"mpjre: expected quaternions (..., T, J, 4), got "
        f"{pred_body_quats.shape}")
  mask = _frame_mask(mask, pred_body_quats.shape[:-2])
  rel = (jaxlie.SO3(pred_body_quats).inverse()
         @ jaxlie.SO3(gt_body_quats)).wxyz
  angle = 2.0 * jnp.arctan2(
      jnp.linalg.norm(rel[..., 1:], axis=-1), jnp.abs(rel[..., 0]))
  return _masked_mean(jnp.mean(jnp.degrees(angle), axis=-1), mask)


def jitter(
    joints: jax.Array, fps: float | jax.Array, mask: jax.Array | None = None
) -> jax.Array:
  """Mean jerk magnitude of the joint positions, metres per second cubed.

  With the third forward difference as jerk,
  j_tj = (p_{t+3,j} − 3·p_{t+2,j} + 3·p_{t+1,j} − p_tj)·fps³,
  jitter = mean over valid 4-frame windows of mean over joints of |j_tj|₂.
  (Papers often print it in 10² m/s³ or km/s³; divide accordingly.) For
  p = A·sin(2π·t·fps/4) (a period of 4 frames) every |j| is exactly 2·A·fps³.

  Args:
    joints: (..., T, J, 3) joint positions, metres, T ≥ 4.
    fps: frames per second.
    mask: optional (..., T) bool, True on valid frames.

  Returns:
    (...) jitter per sequence, m/s³.
  """
  _check_points("jitter", joints, min_frames=4)
  mask = _window_mask(_frame_mask(mask, joints.shape[:-2]), 4)
  jerk = jnp.diff(joints, n=3, axis=-3) * fps**3
  return _masked_mean(jnp.mean(jnp.linalg.norm(jerk, axis=-1), axis=-1), mask)


def ground_penetration(
    joints: jax.Array, floor_z: float | jax.Array = 0.0,
    mask: jax.Array | None = None,
) -> jax.Array:
  """Mean depth of the lowest joint below the floor, millimetres.

  Per frame, depth_t = max(0, floor_z − min_j z_tj) over all given joints;
  the metric is 1000 · mean of depth_t over valid frames (frames above the
  floor count as 0). Joint-based: it ignores the sole below the foot joints,
  so it understates a mesh-based penetration.

  Args:
    joints: (..., T, J, 3) joint positions, metres, world z up.
    floor_z: floor height, metres.
    mask: optional (..., T) bool, True on valid frames.

  Returns:
    (...) ground penetration per sequence, mm.
  """
  _check_points("ground_penetration", joints)
  mask = _frame_mask(mask, joints.shape[:-2])
  depth = jnp.maximum(floor_z - jnp.min(joints[..., 2], axis=-1), 0.0)
  return 1000.0 * _masked_mean(depth, mask)


def _check_body_joints(name: str, joints: jax.Array, min_frames: int) -> None:
  _check_points(name, joints, min_frames)
  if joints.shape[-2] != NUM_JOINTS:
    raise ValueError(
        f"{name}: expected the {NUM_JOINTS} joints (pelvis + 21 body joints, "
        f"SMPL order), got shape {joints.shape}")


def foot_skate(joints: jax.Array, mask: jax.Array | None = None) -> jax.Array:
  """Foot skating, EgoAllo's definition (from EgoEgo / Kinpoly), metres.

  1. Drop the body to the floor: subtract the lowest z of the 21 non-pelvis
     joints over the sequence's valid frames (EgoAllo takes this minimum over
     all samples of a batch at once; here it is per sequence, the same for
     one sample).
  2. For each foot joint f ∈ (left/right ankle, left/right foot) =
     22-joint indices (7, 8, 10, 11) with height threshold
     H_f = (0.08, 0.08, 0.04, 0.04) m and each valid frame pair (t−1, t):
     the L1 horizontal step d = |Δx| + |Δy| counts, when z_t < H_f (height
     at the later frame), with weight 2 − 2^(z_t/H_f), which lies in (0, 1]
     after step 1.
  3. foot_skate = Σ_t Σ_f [z_t < H_f]·d·(2 − 2^(z_t/H_f)): a SUM over frame
     pairs and the 4 feet, not a mean, so it grows with the sequence length
     (EgoAllo: 0.417 at 128 frames, 0.185 at 32). Independent of fps.

  Args:
    joints: (..., T, 22, 3) joint positions, metres, world z up, T ≥ 2.
    mask: optional (..., T) bool, True on valid frames.

  Returns:
    (...) foot skating per sequence, metres.
  """
  _check_body_joints("foot_skate", joints, min_frames=2)
  frame_mask = _frame_mask(mask, joints.shape[:-2])
  body_z = jnp.where(frame_mask[..., None], joints[..., 1:, 2], jnp.inf)
  lowest = jnp.min(body_z, axis=(-1, -2))
  feet = joints[..., FOOT_JOINTS, :]  # (..., T, 4, 3)
  height = feet[..., 1:, :, 2] - lowest[..., None, None]  # (..., T−1, 4)
  step = jnp.sum(jnp.abs(jnp.diff(feet[..., :2], axis=-3)), axis=-1)
  thresh = jnp.asarray(FOOT_HEIGHT_THRESHOLDS, joints.dtype)
  weight = jnp.where(height < thresh, 2.0 - 2.0**(height / thresh), 0.0)
  valid = _window_mask(frame_mask, 2)[..., None]
  return jnp.sum(jnp.where(valid, step * weight, 0.0), axis=(-1, -2))


def foot_contact(
    joints: jax.Array, floor_z: float | jax.Array = 0.0,
    mask: jax.Array | None = None,
) -> jax.Array:
  """Ground contact, EgoAllo's "foot contact (GND)": 1 or 0 per sequence.

  1 if in any valid frame any foot joint f (22-joint indices 7, 8, 10, 11)
  is below its threshold, z − floor_z < H_f with H_f = (0.08, 0.08, 0.04,
  0.04) m; else 0. No drop to the floor (unlike `foot_skate`). Averaged by
  `summarize`, it is the fraction of sequences that touch the ground at all
  (EgoAllo: 1.0 at 128 frames, 0.98 at 32).

  Args:
    joints: (..., T, 22, 3) joint positions, metres, world z up.
    floor_z: floor height, metres.
    mask: optional (..., T) bool, True on valid frames.

  Returns:
    (...) 1.0 or 0.0 per sequence.
  """
  _check_body_joints("foot_contact", joints, min_frames=1)
  frame_mask = _frame_mask(mask, joints.shape[:-2])
  thresh = jnp.asarray(FOOT_HEIGHT_THRESHOLDS, joints.dtype)
  below = joints[..., FOOT_JOINTS, 2] - floor_z < thresh  # (..., T, 4)
  contact = jnp.any(below & frame_mask[..., None], axis=(-1, -2))
  return contact.astype(joints.dtype)


def compute_all(
    pred_joints: jax.Array,
    gt_joints: jax.Array,
    pred_body_quats: jax.Array,
    gt_body_quats: jax.Array,
    fps: float | jax.Array,
    mask: jax.Array | None = None,
    pred_head: jax.Array | None = None,
    gt_head: jax.Array | None = None,
    floor_z: float | jax.Array = 0.0,
) -> dict[str, jax.Array]:
  """Every metric of `METRIC_NAMES`, one value per sequence.

  The pose metrics compare prediction and ground truth; `jitter`,
  `ground_penetration`, `foot_skate` and `foot_contact` are of the prediction
  alone.

  Args:
    pred_joints: (..., T, 22, 3) predicted joints (pelvis + 21), world, metres.
    gt_joints: (..., T, 22, 3) ground-truth joints.
    pred_body_quats: (..., T, 21, 4) predicted local body rotations, wxyz.
    gt_body_quats: (..., T, 21, 4) ground-truth local body rotations.
    fps: frames per second.
    mask: optional (..., T) bool, True on valid frames.
    pred_head: optional (..., T, 3) predicted head (or CPF) positions;
      default the head joint of `pred_joints`.
    gt_head: optional (..., T, 3) ground-truth head positions; default the
      head joint of `gt_joints`.
    floor_z: floor height, metres (ground penetration, foot contact).

  Returns:
    {name: (...) per-sequence values} for every name in `METRIC_NAMES`.
  """
  _check_body_joints("compute_all: pred_joints", pred_joints, min_frames=4)
  if pred_head is None:
    pred_head = pred_joints[..., skeleton.HEAD, :]
  if gt_head is None:
    gt_head = gt_joints[..., skeleton.HEAD, :]
  return {
      "mpjpe": mpjpe(pred_joints, gt_joints, mask),
      "pampjpe": pampjpe(pred_joints, gt_joints, mask),
      "pampjpe_egoallo_compat": pampjpe_egoallo_compat(
          pred_joints, gt_joints, mask),
      "t_head": t_head(pred_head, gt_head, mask),
      "pelvis_error": mpjpe(pred_joints[..., :1, :], gt_joints[..., :1, :],
                            mask),
      "root_relative_mpjpe": root_relative_mpjpe(pred_joints, gt_joints, mask),
      # What wrist observations (Aria wrist guidance) should improve.
      "arm_mpjpe": mpjpe(pred_joints[..., skeleton.ARM_JOINTS, :],
                         gt_joints[..., skeleton.ARM_JOINTS, :], mask),
      "wrist_error": mpjpe(pred_joints[..., skeleton.WRIST_JOINTS, :],
                           gt_joints[..., skeleton.WRIST_JOINTS, :], mask),
      "mpjve": mpjve(pred_joints, gt_joints, fps, mask),
      "mpjre": mpjre(pred_body_quats, gt_body_quats, mask),
      "jitter": jitter(pred_joints, fps, mask),
      "ground_penetration": ground_penetration(pred_joints, floor_z, mask),
      "foot_skate": foot_skate(pred_joints, mask),
      "foot_contact": foot_contact(pred_joints, floor_z, mask),
  }


def summarize(
    per_sequence: Mapping[str, jax.Array | np.ndarray]
) -> dict[str, dict[str, float]]:
  """Mean and standard error over sequences, as written to eval_metrics.json.

  stderr = std(x, ddof=1)/√N over the N values (all entries of the array,
  flattened), NaN when N = 1. EgoAllo's script prints std with ddof=0
  instead, smaller by √((N−1)/N), negligible at its N.

  Args:
    per_sequence: {name: values of any shape, one per sequence (or sample)}.

  Returns:
    {name: {"mean": float, "stderr": float}}.

  Raises:
    ValueError: a metric has no values or a non-finite one (a sequence without
      valid frames, or too short for the metric).
  """
  out = {}
  for name, values in per_sequence.items():
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.size == 0 or not np.all(np.isfinite(x)):
      raise ValueError(
          f"summarize: metric {name!r} has {x.size} values, "
          f"{int(np.sum(~np.isfinite(x)))} non-finite; expected finite values "
          "(are some sequences fully masked or too short?)")
    stderr = (float(np.std(x, ddof=1) / math.sqrt(x.size)) if x.size > 1
              else math.nan)
    out[name] = {"mean": float(np.mean(x)), "stderr": stderr}
  return out
