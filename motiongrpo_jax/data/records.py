"""Sequence records: one motion sequence with every derived quantity.

A `SequenceRecord` (DESIGN.md §3.1) holds a body shape, per-frame pelvis
poses and local joint rotations, and the quantities derived from them that
training and evaluation read: floor contacts, the CPF (head) pose with the
floor at z = 0, the CPF motion from the previous frame, the CPF height and
the joints in the CPF frame. `from_motion` is the one place those are
computed.

Records are host data: numpy arrays, float32. Frame convention (EgoAllo's):
a motion of P frames gives a record of T = P − 1 frames, dropping the first,
so that every record frame k has a relative pose
`T_cpf_tm1_cpf_t[k] = T_world_cpf[k−1]⁻¹ ∘ T_world_cpf[k]` (indices of
the input motion shifted by one).

Contacts and the floor follow EgoAllo's preprocessing (from HuMoR): a joint
touches the floor when it is nearly static (per-frame displacement under
0.005 m at 30 fps, i.e. 0.15 m/s) and low (toes < 0.04 m, ankles, knees and
wrists < 0.08 m). The floor lies 0.01 m below the typical height of static
toe joints (the toe joint sits inside the foot).
"""

from __future__ import annotations

from collections.abc import Mapping

import flax.struct
import jax
import jax.numpy as jnp
import jaxlie
import numpy as np

from motiongrpo_jax import geometry
from motiongrpo_jax.body import model as body_model
from motiongrpo_jax.body import skeleton

NUM_BODY_JOINTS = skeleton.NUM_BODY_JOINTS
NUM_HAND_JOINTS = 30
NUM_BETAS = body_model.NUM_BETAS

# Contact rule: a joint is static when it moves less than this per frame at
# 30 fps (a speed of 0.15 m/s at any frame rate) ...
CONTACT_DISPLACEMENT_30FPS = 0.005
# ... and in contact when also this low above the floor (metres).
CONTACT_HEIGHT_TOE = 0.04
CONTACT_HEIGHT_OTHER = 0.08
# Joints (indices 0..21) that can touch the floor, with their height limits.
CONTACT_HEIGHTS: dict[int, float] = {
    skeleton.LEFT_FOOT: CONTACT_HEIGHT_TOE,
    skeleton.RIGHT_FOOT: CONTACT_HEIGHT_TOE,
    skeleton.LEFT_ANKLE: CONTACT_HEIGHT_OTHER,
    skeleton.RIGHT_ANKLE: CONTACT_HEIGHT_OTHER,
    skeleton.JOINT_NAMES.index("left_knee"): CONTACT_HEIGHT_OTHER,
    skeleton.JOINT_NAMES.index("right_knee"): CONTACT_HEIGHT_OTHER,
    skeleton.JOINT_NAMES.index("left_wrist"): CONTACT_HEIGHT_OTHER,
    skeleton.JOINT_NAMES.index("right_wrist"): CONTACT_HEIGHT_OTHER,
}
# The floor lies this far below the static toe-joint height.
FLOOR_BELOW_TOE = 0.01
# Static toe heights within this band above their 5th percentile form the
# lowest cluster, whose median is the toe height on the floor.
FLOOR_CLUSTER_BAND = 0.02
QUAT_NORM_TOLERANCE = 1e-3

# Array fields with their per-frame shapes (None: not per frame).
_FRAME_SHAPES: dict[str, tuple[int, ...]] = {
    "T_world_root": (7,),
    "body_quats": (NUM_BODY_JOINTS, 4),
    "hand_quats": (NUM_HAND_JOINTS, 4),
    "contacts": (NUM_BODY_JOINTS,),
    "T_world_cpf": (7,),
    "T_cpf_tm1_cpf_t": (7,),
    "height_from_floor": (1,),
    "joints_wrt_cpf": (NUM_BODY_JOINTS, 3),
}
ARRAY_FIELDS: tuple[str, ...] = ("betas",) + tuple(_FRAME_SHAPES)
METADATA_FIELDS: tuple[str, ...] = ("name", "source", "fps", "split")


@flax.struct.dataclass
class SequenceRecord:
  """One motion sequence of T frames (DESIGN.md §3.1).

  Attributes:
    betas: (16,) body shape.
    T_world_root: (T, 7) pelvis pose `wxyz_xyz`, floor at z = 0.
    body_quats: (T, 21, 4) local rotations of joints 1..21, `wxyz`.
    hand_quats: (T, 30, 4) local hand rotations (15 left, 15 right), or None.
    contacts: (T, 21) floor contact of joints 1..21, 0 or 1.
    T_world_cpf: (T, 7) CPF pose, floor at z = 0.
    T_cpf_tm1_cpf_t: (T, 7) CPF motion from the previous frame,
      T_world_cpf[k−1]⁻¹ ∘ T_world_cpf[k].
    height_from_floor: (T, 1) CPF height above the floor (its z).
    joints_wrt_cpf: (T, 21, 3) joints 1..21 in the CPF frame.
    name: sequence name (static).
    source: where it came from, e.g. "synthetic", "amass" (static).
    fps: frame rate (static).
    split: "train", "val" or "test" (static).
  """

  betas: np.ndarray
  T_world_root: np.ndarray
  body_quats: np.ndarray
  hand_quats: np.ndarray | None
  contacts: np.ndarray
  T_world_cpf: np.ndarray
  T_cpf_tm1_cpf_t: np.ndarray
  height_from_floor: np.ndarray
  joints_wrt_cpf: np.ndarray
  name: str = flax.struct.field(pytree_node=False, default="")
  source: str = flax.struct.field(pytree_node=False, default="")
  fps: float = flax.struct.field(pytree_node=False, default=30.0)
  split: str = flax.struct.field(pytree_node=False, default="train")

  @property
  def num_frames(self) -> int:
    """T."""
    return int(np.shape(self.T_world_root)[0])


def validate(record: SequenceRecord) -> SequenceRecord:
  """Checks a record; returns it unchanged.

  Checks: every array field has its shape with one T throughout, values are
  finite, quaternions (body, hand and the rotation parts of every pose) have
  unit norm within 1e-3, contacts lie in [0, 1], fps > 0.

  Args:
    record: the record.

  Returns:
    `record`.

  Raises:
    ValueError: naming the field and what was expected.
  """
  if not (isinstance(record.fps, (int, float, np.floating, np.integer))
          and np.isfinite(record.fps) and record.fps > 0):
    raise ValueError(f"fps: expected a positive number, got {record.fps!r}")
  for key in ("name", "source", "split"):
    if not isinstance(getattr(record, key), str):
      raise ValueError(
          f"{key}: expected a str, got {type(getattr(record, key)).__name__}")
  betas = np.asarray(record.betas)
  if betas.shape != (NUM_BETAS,):
    raise ValueError(
        f"betas: expected shape ({NUM_BETAS},), got {betas.shape}")
  num_frames = np.shape(record.T_world_root)[0] if np.ndim(
      record.T_world_root) >= 1 else None
  for key, frame_shape in _FRAME_SHAPES.items():
    value = getattr(record, key)
    if value is None:
      if key == "hand_quats":
        continue
      raise ValueError(f"{key}: missing (expected shape (T, "
                       f"{', '.join(map(str, frame_shape))}))")
    shape = np.shape(value)
    if num_frames is None or shape != (num_frames,) + frame_shape:
      raise ValueError(
          f"{key}: expected shape (T, {', '.join(map(str, frame_shape))}) "
          f"with T={num_frames}, got {shape}")
  if num_frames == 0:
    raise ValueError("T_world_root: expected at least one frame, got T=0")
  for key in ARRAY_FIELDS:
    value = getattr(record, key)
    if value is None:
      continue
    bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
    if bad:
      raise ValueError(f"{key}: {bad} non-finite values")
  for key, slicer in (("T_world_root", np.s_[..., :4]),
                      ("body_quats", np.s_[...]),
                      ("hand_quats", np.s_[...]),
                      ("T_world_cpf", np.s_[..., :4]),
                      ("T_cpf_tm1_cpf_t", np.s_[..., :4])):
    value = getattr(record, key)
    if value is None:
      continue
    deviation = np.abs(np.linalg.norm(
        np.asarray(value, np.float64)[slicer], axis=-1) - 1.0)
    if deviation.max() > QUAT_NORM_TOLERANCE:
      frame = int(np.unravel_index(np.argmax(deviation), deviation.shape)[0])
      raise ValueError(
          f"{key}: quaternion norms must be 1 (max deviation "
          f"{deviation.max():.3g} at frame {frame})")
  contacts = np.asarray(record.contacts)
  if contacts.min() < 0 or contacts.max() > 1:
    raise ValueError(
        f"contacts: expected values in [0, 1], got range "
        f"[{contacts.min():.3g}, {contacts.max():.3g}]")
  return record


def to_numpy_dict(record: SequenceRecord) -> dict[str, np.ndarray]:
  """Flat dict of float32 arrays plus metadata, for serialisation.

  `hand_quats` is absent when the record has no hands. Metadata become numpy
  scalars: `name`, `source`, `split` (str) and `fps` (float32).

  Args:
    record: the record.

  Returns:
    dict from field name to array.
  """
  out = {}
  for key in ARRAY_FIELDS:
    value = getattr(record, key)
    if value is not None:
      out[key] = np.asarray(value, np.float32)
  out["name"] = np.asarray(record.name)
  out["source"] = np.asarray(record.source)
  out["split"] = np.asarray(record.split)
  out["fps"] = np.asarray(record.fps, np.float32)
  return out


def from_numpy_dict(d: Mapping[str, np.ndarray]) -> SequenceRecord:
  """Inverse of `to_numpy_dict` (a missing `hand_quats` key means no hands).

  Metadata keys may be absent (defaults: name "", source "", fps 30, split
  "train"); bytes are decoded as UTF-8.

  Args:
    d: dict from field name to array.

  Returns:
    The record, float32 arrays.

  Raises:
    ValueError: a required array field is missing.
  """
  missing = [k for k in ARRAY_FIELDS if k != "hand_quats" and k not in d]
  if missing:
    raise ValueError(f"record dict: missing fields {missing}")
  arrays = {k: np.asarray(d[k], np.float32) for k in ARRAY_FIELDS if k in d}
  arrays.setdefault("hand_quats", None)

  def text(key, default):
    if key not in d:
      return default
    value = np.asarray(d[key]).item()
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)

  return SequenceRecord(
      **arrays,
      name=text("name", ""),
      source=text("source", ""),
      split=text("split", "train"),
      fps=float(np.asarray(d["fps"])) if "fps" in d else 30.0,
  )


def _displacements(joints: np.ndarray) -> np.ndarray:
  """Per-frame displacement |x[t+1] − x[t]|, the last frame repeating the
  one before (HuMoR / EgoAllo); (T, J) from (T, J, 3). Zero when T = 1."""
  if joints.shape[0] < 2:
    return np.zeros(joints.shape[:2])
  disp = np.linalg.norm(np.diff(joints, axis=0), axis=-1)
  return np.concatenate([disp, disp[-1:]], axis=0)


def _check_joints(joints_world: np.ndarray) -> np.ndarray:
  joints_world = np.asarray(joints_world, np.float64)
  if joints_world.ndim != 3 or joints_world.shape[1:] != (
      len(skeleton.JOINT_NAMES), 3):
    raise ValueError(
        f"joints_world: expected shape (T, {len(skeleton.JOINT_NAMES)}, 3), "
        f"got {joints_world.shape}")
  return joints_world


def contact_labels(joints_world: np.ndarray, fps_source: float,
                   floor_z: float = 0.0) -> np.ndarray:
  """EgoAllo's per-joint floor contacts.

  Joint j is in contact at frame t when its displacement is below
  0.005 m × (30 / fps_source) (0.005 m per frame at 30 fps) AND its height
  above the floor is below 0.04 m (toes: left_foot, right_foot) or 0.08 m
  (ankles, knees, wrists). Other joints are never in contact. The
  displacement of frame t is |x[t+1] − x[t]|; the last frame reuses the one
  before it (as EgoAllo's preprocessing), so the first frame has a true
  displacement and a one-frame sequence counts as static.

  Args:
    joints_world: (T, 22, 3) world joint positions (z up), metres.
    fps_source: frame rate of `joints_world`.
    floor_z: floor height.

  Returns:
    (T, 21) float32 labels in {0, 1} for joints 1..21.
  """
  joints_world = _check_joints(joints_world)
  if not fps_source > 0:
    raise ValueError(f"fps_source: expected > 0, got {fps_source}")
  static = _displacements(joints_world) < (
      CONTACT_DISPLACEMENT_30FPS * 30.0 / fps_source)
  height = joints_world[..., 2] - floor_z
  limits = np.full(joints_world.shape[1], -np.inf)
  for j, limit in CONTACT_HEIGHTS.items():
    limits[j] = limit
  contact = static & (height < limits)
  return contact[:, 1:].astype(np.float32)


def estimate_floor(joints_world: np.ndarray, fps: float) -> float:
  """Floor height from the heights of static toe joints.

  The toes (left_foot, right_foot) are static in frames where they move less
  than 0.005 m × (30 / fps). The lowest cluster of static toe heights (those
  within 0.02 m of their 5th percentile) has a median h; the floor is
  h − 0.01 m, since the toe joint sits inside the foot. With no static toe
  frame, h is the 5th percentile of all toe heights.

  Args:
    joints_world: (T, 22, 3) world joint positions (z up), metres.
    fps: frame rate of `joints_world`.

  Returns:
    Floor height z, metres.
  """
  joints_world = _check_joints(joints_world)
  if not fps > 0:
    raise ValueError(f"fps: expected > 0, got {fps}")
  toes = [skeleton.LEFT_FOOT, skeleton.RIGHT_FOOT]
  heights = joints_world[:, toes, 2]
  static = _displacements(joints_world[:, toes]) < (
      CONTACT_DISPLACEMENT_30FPS * 30.0 / fps)
  candidates = heights[static] if static.any() else heights.reshape(-1)
  low = np.percentile(candidates, 5)
  if static.any():
    toe_height = np.median(candidates[candidates <= low + FLOOR_CLUSTER_BAND])
  else:
    toe_height = low
  return float(toe_height - FLOOR_BELOW_TOE)


def bucket_length(length: int) -> int:
  """Smallest of 32, 48, 64, 96, 128, 192, … (2^k or 1.5·2^k) ≥ length.

  Per-sequence computations run on copies padded to these lengths, so a
  dataset of clips of hundreds of different lengths compiles a handful of
  XLA programs instead of one per length.
  """
  size = 32
  while size < length:
    size = size * 3 // 2 if (size & (size - 1)) == 0 else size * 4 // 3
  return size


def _pad(x: np.ndarray, length: int) -> np.ndarray:
  """Pads the time axis (0) to `length` by repeating the last frame."""
  pad = length - x.shape[0]
  return np.concatenate([x, np.repeat(x[-1:], pad, axis=0)]) if pad else x


@jax.jit
def _posed(body, betas, T_world_root, body_quats):
  joints = body.forward_kinematics(betas, T_world_root, body_quats)
  return (joints[..., :len(skeleton.JOINT_NAMES), 4:],
          body.T_world_cpf(betas, T_world_root, body_quats))


@jax.jit
def _in_cpf_frame(T_world_cpf, joints):
  relative = geometry.relative_poses(T_world_cpf)  # (L−1, 7)
  T_cpf_world = jaxlie.SE3(T_world_cpf[1:, None, :]).inverse()
  return relative, T_cpf_world @ joints[1:]  # (L−1, 21, 3)


def posed_joints_and_cpf(body: body_model.BodyModel, betas, T_world_root,
                         body_quats) -> tuple[np.ndarray, np.ndarray]:
  """World joints and CPF poses of a posed body, one XLA program per bucket.

  Args:
    body: the body model (a jit argument, so its arrays are not baked in).
    betas: (16,).
    T_world_root: (P, 7).
    body_quats: (P, 21, 4).

  Returns:
    joints (P, 22, 3) and T_world_cpf (P, 7), float64 numpy.
  """
  num = np.shape(T_world_root)[0]
  length = bucket_length(num)
  joints, T_world_cpf = _posed(
      body, jnp.asarray(betas, jnp.float32),
      jnp.asarray(_pad(np.asarray(T_world_root, np.float32), length)),
      jnp.asarray(_pad(np.asarray(body_quats, np.float32), length)))
  return (np.array(joints[:num], np.float64),
          np.array(T_world_cpf[:num], np.float64))


def from_motion(
    body: body_model.BodyModel,
    betas,
    T_world_root,
    body_quats,
    hand_quats=None,
    *,
    fps: float,
    name: str,
    source: str,
    split: str,
    contacts=None,
    floor_z: float | None = None,
) -> SequenceRecord:
  """Builds a record from P frames of motion; the output has T = P − 1.

  The world is shifted along z so that the floor is at z = 0 (the floor
  estimated from static toes when `floor_z` is None). The first frame only
  provides the previous CPF pose of the second and is dropped.

  Args:
    body: the body model (e.g. `body.builtin_body()`).
    betas: (16,) shape.
    T_world_root: (P, 7) pelvis poses, world z up.
    body_quats: (P, 21, 4) local rotations of joints 1..21.
    hand_quats: (P, 30, 4) local hand rotations, or None.
    fps: frame rate.
    name, source, split: provenance.
    contacts: (P, 21) contact labels of the input frames; computed by
      `contact_labels` (at `fps`) when None.
    floor_z: floor height in the input world; estimated when None.

  Returns:
    The validated record, float32.
  """
  betas = np.asarray(betas, np.float32)
  T_world_root = np.asarray(T_world_root, np.float32)
  body_quats = np.asarray(body_quats, np.float32)
  if T_world_root.ndim != 2 or T_world_root.shape[1] != 7:
    raise ValueError(
        f"T_world_root: expected shape (P, 7), got {T_world_root.shape}")
  num_poses = T_world_root.shape[0]
  if num_poses < 2:
    raise ValueError(
        f"T_world_root: expected at least 2 frames (the first is dropped), "
        f"got {num_poses}")
  expected = {"betas": (betas, (NUM_BETAS,)),
              "body_quats": (body_quats, (num_poses, NUM_BODY_JOINTS, 4))}
  if hand_quats is not None:
    hand_quats = np.asarray(hand_quats, np.float32)
    expected["hand_quats"] = (hand_quats, (num_poses, NUM_HAND_JOINTS, 4))
  if contacts is not None:
    contacts = np.asarray(contacts, np.float32)
    expected["contacts"] = (contacts, (num_poses, NUM_BODY_JOINTS))
  for key, (value, shape) in expected.items():
    if value.shape != shape:
      raise ValueError(f"{key}: expected shape {shape} with P={num_poses}, "
                       f"got {value.shape}")

  # --- Joints and CPF in the input world.
  joints, T_world_cpf = posed_joints_and_cpf(body, betas, T_world_root, body_quats)

  # --- Floor at z = 0.
  if floor_z is None:
    floor_z = estimate_floor(joints, fps)
  floor_z = float(floor_z)
  joints[..., 2] -= floor_z
  T_world_cpf[:, 6] -= floor_z
  T_world_root = T_world_root.astype(np.float64)
  T_world_root[:, 6] -= floor_z
  if contacts is None:
    contacts = contact_labels(joints, fps, floor_z=0.0)

  # --- Relative CPF motion; drop the first frame.
  length = bucket_length(num_poses)
  T_cpf_tm1_cpf_t, joints_wrt_cpf = _in_cpf_frame(
      jnp.asarray(_pad(T_world_cpf, length), jnp.float32),
      jnp.asarray(_pad(joints[:, 1:], length), jnp.float32))
  T_cpf_tm1_cpf_t = np.asarray(T_cpf_tm1_cpf_t[:num_poses - 1])  # (P−1, 7)
  joints_wrt_cpf = np.asarray(joints_wrt_cpf[:num_poses - 1])  # (P−1, 21, 3)
  record = SequenceRecord(
      betas=betas,
      T_world_root=T_world_root[1:].astype(np.float32),
      body_quats=body_quats[1:],
      hand_quats=None if hand_quats is None else hand_quats[1:],
      contacts=np.asarray(contacts[1:], np.float32),
      T_world_cpf=T_world_cpf[1:].astype(np.float32),
      T_cpf_tm1_cpf_t=T_cpf_tm1_cpf_t.astype(np.float32),
      height_from_floor=T_world_cpf[1:, 6:7].astype(np.float32),
      joints_wrt_cpf=joints_wrt_cpf.astype(np.float32),
      name=name, source=source, fps=float(fps), split=split,
  )
  return validate(record)
