"""Rotations, forward kinematics and two-bone IK for synthetic motion (numpy).

Host-side helpers of `data/synthetic.py`: the generator works in numpy on
whole sequences at once (vectorised over frames), so it needs no compilation
and runs at thousands of frames per second. Rotation matrices act on column
vectors. The body's canonical frame is SMPL's (+y up, +z forward, +x left);
the world is z-up. `R_CANON` maps the canonical frame into the world for a
body facing world +x: canonical y → world z, canonical z → world x,
canonical x → world y.

Angle conventions in the canonical frame (used throughout the generator):
a positive rotation about canonical x (`axis_rotation(0, a)`) pitches forward
(the +y axis tilts towards +z, the +z axis tilts down); a positive rotation
about canonical y yaws to the body's left; a positive rotation about
canonical z rolls towards the body's right (+y tilts towards −x).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import transform

from motiongrpo_jax.body import skeleton

R_CANON = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
UP = np.array([0.0, 0.0, 1.0])


def axis_rotation(axis: int, angle) -> np.ndarray:
  """Rotations by `angle` (...,) radians about coordinate axis 0, 1 or 2.

  Returns:
    (..., 3, 3) matrices.
  """
  angle = np.asarray(angle, np.float64)
  c, s = np.cos(angle), np.sin(angle)
  out = np.zeros(angle.shape + (3, 3))
  i, j = (axis + 1) % 3, (axis + 2) % 3
  out[..., axis, axis] = 1.0
  out[..., i, i] = c
  out[..., j, j] = c
  out[..., i, j] = -s
  out[..., j, i] = s
  return out


def heading_rotation(psi) -> np.ndarray:
  """Body-to-world rotation of an upright body facing world heading `psi`.

  Args:
    psi: (...,) heading about world z (0 = facing +x).

  Returns:
    (..., 3, 3) Rz(psi)·R_CANON.
  """
  return axis_rotation(2, psi) @ R_CANON


def heading_vectors(psi) -> tuple[np.ndarray, np.ndarray]:
  """World forward and left unit vectors (..., 3) of heading `psi`."""
  psi = np.asarray(psi, np.float64)
  zero = np.zeros_like(psi)
  forward = np.stack([np.cos(psi), np.sin(psi), zero], axis=-1)
  left = np.stack([-np.sin(psi), np.cos(psi), zero], axis=-1)
  return forward, left


def power(rotation: np.ndarray, weight) -> np.ndarray:
  """Fraction `weight` (...,) of rotations (..., 3, 3) about their own axis."""
  shape = rotation.shape[:-2]
  rotvec = transform.Rotation.from_matrix(rotation.reshape(-1, 3, 3)).as_rotvec()
  rotvec = rotvec.reshape(shape + (3,)) * np.asarray(weight)[..., None]
  return transform.Rotation.from_rotvec(rotvec.reshape(-1, 3)).as_matrix(
  ).reshape(shape + (3, 3))


def blend(a: np.ndarray, b: np.ndarray, weight) -> np.ndarray:
  """Geodesic interpolation from rotations `a` to `b` (..., 3, 3) by weight."""
  return a @ power(np.swapaxes(a, -1, -2) @ b, weight)


def matrix_to_wxyz(rotation: np.ndarray) -> np.ndarray:
  """Rotation matrices (..., 3, 3) to unit quaternions `wxyz` (..., 4), w ≥ 0."""
  shape = rotation.shape[:-2]
  xyzw = transform.Rotation.from_matrix(rotation.reshape(-1, 3, 3)).as_quat()
  wxyz = np.concatenate([xyzw[:, 3:], xyzw[:, :3]], axis=-1)
  wxyz *= np.where(wxyz[:, :1] < 0.0, -1.0, 1.0)
  return wxyz.reshape(shape + (4,))


def forward_kinematics(R_root: np.ndarray, t_root: np.ndarray,
                       local: np.ndarray, rest: np.ndarray,
                       upto: int = len(skeleton.PARENTS)
                       ) -> tuple[np.ndarray, np.ndarray]:
  """World rotations and positions of joints 0..upto−1 (SMPL tree).

  The same composition as `body.kinematics.forward_kinematics`, on numpy
  matrices: R_j = R_parent·L_j, p_j = p_parent + R_parent·(J_j − J_parent).

  Args:
    R_root: (P, 3, 3) pelvis rotations.
    t_root: (P, 3) pelvis positions.
    local: (P, 21, 3, 3) local rotations of joints 1..21 (only those below
      `upto` are read).
    rest: (22, 3) shaped rest joints.
    upto: number of leading joints to compute.

  Returns:
    (P, upto, 3, 3) world rotations and (P, upto, 3) world positions.
  """
  rotations, positions = [R_root], [t_root]
  for j in range(1, upto):
    p = skeleton.PARENTS[j]
    offset = rest[j] - rest[p]
    positions.append(positions[p] + rotations[p] @ offset)
    rotations.append(rotations[p] @ local[:, j - 1])
  return np.stack(rotations, axis=1), np.stack(positions, axis=1)


def _unit(v: np.ndarray) -> np.ndarray:
  return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _frame(direction: np.ndarray, axis: np.ndarray) -> np.ndarray:
  """Orthonormal frame (columns) [d, a, d × a]: d along `direction`, a the
  part of `axis` perpendicular to it."""
  d = _unit(direction)
  a = _unit(axis - np.sum(axis * d, axis=-1, keepdims=True) * d)
  return np.stack([d, a, np.cross(d, a)], axis=-1)


def two_bone_ik(base: np.ndarray, target: np.ndarray, pole: np.ndarray,
                rest_base: np.ndarray, rest_mid: np.ndarray,
                rest_end: np.ndarray, hinge: np.ndarray,
                min_bend: float = 0.0
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Analytic IK of a two-bone chain (hip–knee–ankle, shoulder–elbow–wrist).

  The middle joint is a hinge: its local rotation is a rotation about the
  canonical axis `hinge` (positive = bending), chosen so that the base–end
  distance equals the base–target distance; the rest skeleton's own small
  kinks are kept, so zero bend is the rest pose. The base joint's world
  rotation then points the base→end vector at the target and the hinge axis
  along unit(pole × (target − base)), which makes the chain bend towards
  `pole`. Out of reach (too far, or closer than `min_bend` allows), the
  chain stops short along the base–target line.

  Args:
    base: (P, 3) world position of the base joint.
    target: (P, 3) world position wanted for the end joint.
    pole: (P, 3) world direction the middle joint should bend towards.
    rest_base, rest_mid, rest_end: (3,) rest joint positions (canonical).
    hinge: (3,) unit hinge axis of the middle joint (canonical).
    min_bend: smallest bend angle (radians); 0 forbids hyperextension.

  Returns:
    R_base (P, 3, 3) world rotation of the base joint, R_mid (P, 3, 3) local
    rotation of the middle joint, and (P,) distance by which the end joint
    misses the target.
  """
  a, b = rest_mid - rest_base, rest_end - rest_mid
  # a·R(κ)b = a0 + ρ cos(κ − φ) for a rotation by κ about the hinge.
  b_par = np.dot(b, hinge) * hinge
  a0 = np.dot(a, b_par)
  p, q = np.dot(a, b - b_par), np.dot(a, np.cross(hinge, b))
  rho, phi = np.hypot(p, q), np.arctan2(q, p)
  delta = target - base
  dist = np.linalg.norm(delta, axis=-1)
  cos_term = (0.5 * (dist ** 2 - a @ a - b @ b) - a0) / rho
  bend = np.maximum(phi + np.arccos(np.clip(cos_term, -1.0, 1.0)), min_bend)
  R_mid = axis_angle(hinge, bend)
  end_local = a + R_mid @ b  # base → end in the base joint's rest frame
  world_hinge = np.cross(pole, delta)
  R_base = _frame(delta, world_hinge) @ np.swapaxes(
      _frame(end_local, np.broadcast_to(hinge, end_local.shape)), -1, -2)
  return R_base, R_mid, np.abs(dist - np.linalg.norm(end_local, axis=-1))


def axis_angle(axis: np.ndarray, angle) -> np.ndarray:
  """Rotations by `angle` (...,) about a fixed unit `axis` (3,), (..., 3, 3)."""
  angle = np.asarray(angle, np.float64)
  k = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]],
                [-axis[1], axis[0], 0.0]])
  s, c = np.sin(angle)[..., None, None], np.cos(angle)[..., None, None]
  return np.eye(3) + s * k + (1.0 - c) * (k @ k)


def soft_reach(base: np.ndarray, target: np.ndarray, length: float,
               top) -> np.ndarray:
  """Pulls targets (P, 3) smoothly towards `base` (P, 3) to within
  `top`·length (`top` (P,) or scalar); those nearer than (top − 0.03)·length
  are kept.

  Beyond k = top − 0.03 the distance d/length maps to
  k + 0.03·tanh((d/length − k)/0.03), continuous with its first derivative.
  """
  delta = target - base
  dist = np.linalg.norm(delta, axis=-1)
  x = dist / length
  knee = np.asarray(top) - 0.03
  soft = knee + 0.03 * np.tanh((x - knee) / 0.03)
  scale = np.where(x > knee, soft / np.maximum(x, 1e-12), 1.0)
  return base + delta * scale[..., None]
