"""Left/right mirrored copies of a motion (EgoAllo's reflected sequences).

The mirror image through the world plane x = 0 of a body whose canonical
frame has +x to its left. With S = diag(−1, 1, 1), every world joint rotation
becomes S·R·S, with left and right joints exchanged; local rotations
therefore become S·L·S of the partner joint, which for a quaternion
(w, x, y, z) is (w, x, −y, −z). Positions become S·p. The body shape is kept
(mirroring a left/right-symmetric body gives the same body).
"""

from __future__ import annotations

import numpy as np

from motiongrpo_jax.body import skeleton


def _partner_joints() -> np.ndarray:
  """Index of each of the 22 SMPL joints' mirror partner."""
  names = skeleton.JOINT_NAMES
  out = []
  for name in names:
    if name.startswith("left_"):
      name = "right_" + name[5:]
    elif name.startswith("right_"):
      name = "left_" + name[6:]
    out.append(names.index(name))
  return np.array(out)


PARTNER = _partner_joints()  # (22,)
# Joints 1..21 indexed from 0 (body_quats / contacts order).
BODY_PARTNER = PARTNER[1:] - 1  # (21,)
# Hand joints: 15 left then 15 right, in the same order on both sides.
HAND_PARTNER = np.concatenate([np.arange(15, 30), np.arange(15)])  # (30,)


def mirror_quats(wxyz: np.ndarray) -> np.ndarray:
  """S·R·S for S = diag(−1, 1, 1): (w, x, y, z) → (w, x, −y, −z)."""
  return np.asarray(wxyz) * np.array([1.0, 1.0, -1.0, -1.0])


def mirror_motion(
    T_world_root: np.ndarray,
    body_quats: np.ndarray,
    hand_quats: np.ndarray | None = None,
    contacts: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
  """Mirrors a motion through the world plane x = 0.

  Args:
    T_world_root: (..., 7) pelvis poses `wxyz_xyz`.
    body_quats: (..., 21, 4) local rotations of joints 1..21.
    hand_quats: (..., 30, 4) or None.
    contacts: (..., 21) or None.

  Returns:
    The mirrored (T_world_root, body_quats, hand_quats, contacts).
  """
  T_world_root = np.asarray(T_world_root)
  root = np.concatenate([mirror_quats(T_world_root[..., :4]),
                         T_world_root[..., 4:] * np.array([-1.0, 1.0, 1.0])],
                        axis=-1)
  body = mirror_quats(np.asarray(body_quats)[..., BODY_PARTNER, :])
  hands = None if hand_quats is None else mirror_quats(
      np.asarray(hand_quats)[..., HAND_PARTNER, :])
  labels = None if contacts is None else np.asarray(contacts)[..., BODY_PARTNER]
  return root, body, hands, labels
