"""Rotation and pose helpers on top of jaxlie.

Conventions (DESIGN.md §2.3): quaternions are `wxyz`, poses `wxyz_xyz` (7),
matrices act on column vectors and are flattened row-major. Everything here is
a pure function of arrays, batched over leading dimensions and jit-friendly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jaxlie


def quat_to_matrix(wxyz: jax.Array) -> jax.Array:
  """Unit (or not) quaternions to rotation matrices.

  Normalises first, exactly as jaxlie and EgoAllo do
  (q' = q·√(2/|q|²), R from the outer product q'q'ᵀ).

  Args:
    wxyz: (..., 4) quaternions.

  Returns:
    (..., 3, 3) rotation matrices.
  """
  return jaxlie.SO3(wxyz).as_matrix()


def matrix_to_quat(matrix: jax.Array) -> jax.Array:
  """Rotation matrices to `wxyz` quaternions with w ≥ 0.

  jaxlie's branch-on-largest-diagonal conversion, which stays accurate near
  180°, where the trace-only formula loses all precision. The sign is fixed so
  that q and −q map to one canonical quaternion.

  Args:
    matrix: (..., 3, 3) rotation matrices.

  Returns:
    (..., 4) unit quaternions, w ≥ 0.
  """
  wxyz = jaxlie.SO3.from_matrix(matrix).wxyz
  wxyz = wxyz / jnp.linalg.norm(wxyz, axis=-1, keepdims=True)
  return jnp.where(wxyz[..., :1] < 0.0, -wxyz, wxyz)


def project_to_rotation(matrix: jax.Array) -> jax.Array:
  """EgoAllo's SVD projection U·Vᵀ of 3×3 matrices (no determinant fix).

  This is the orthogonal matrix nearest in Frobenius norm; it is a reflection
  (det −1) when det(matrix) < 0. EgoAllo's sampler uses exactly this, so
  parity requires it.

  Args:
    matrix: (..., 3, 3).

  Returns:
    (..., 3, 3) orthogonal matrices.
  """
  u, _, vh = jnp.linalg.svd(matrix)
  return u @ vh


def project_to_so3(matrix: jax.Array) -> jax.Array:
  """Nearest proper rotation (det +1) by SVD: U·diag(1, 1, det(UVᵀ))·Vᵀ.

  Args:
    matrix: (..., 3, 3).

  Returns:
    (..., 3, 3) rotation matrices.
  """
  u, _, vh = jnp.linalg.svd(matrix)
  det = jnp.linalg.det(u @ vh)
  flip = jnp.stack(
      [jnp.ones_like(det), jnp.ones_like(det), jnp.sign(det) + (det == 0)],
      axis=-1)
  return (u * flip[..., None, :]) @ vh


def yaw_of_forward(rotation: jax.Array, forward_axis: int = 2) -> jax.Array:
  """Heading angle about world z of a rotation's local `forward_axis`.

  Args:
    rotation: (..., 3, 3) world-from-local rotation matrices.
    forward_axis: which local axis is "forward" (2 = +z for the CPF).

  Returns:
    (...,) angle atan2(f_y, f_x) of the forward axis f in world coordinates.
  """
  forward = rotation[..., :, forward_axis]
  return jnp.arctan2(forward[..., 1], forward[..., 0])


def rot_z(angle: jax.Array) -> jaxlie.SO3:
  """Rotations about world z by `angle` (...,) radians."""
  return jaxlie.SO3.from_z_radians(angle)


def remove_yaw(wxyz: jax.Array, forward_axis: int = 2) -> jax.Array:
  """Rotates about world z so that the forward axis heads along world +x.

  R_can = Rz(−yaw)·R with yaw the heading of the forward axis; the result is
  invariant to any rotation of the world about z (EgoAllo's canonicalised
  CPF rotation, composed in quaternion form as EgoAllo does).

  Args:
    wxyz: (..., 4) world-from-local quaternions.
    forward_axis: local axis treated as forward (2 = +z for the CPF).

  Returns:
    (..., 4) yaw-free quaternions.
  """
  rotation = jaxlie.SO3(wxyz)
  yaw = yaw_of_forward(rotation.as_matrix(), forward_axis)
  return (rot_z(-yaw) @ rotation).wxyz


def fourier_encode(x: jax.Array, num_freqs: int) -> jax.Array:
  """EgoAllo's Fourier features [x, sin(S), sin(S + π/2)].

  S is channel-major: S[c·F + k] = x_c · 2^k. The cosine is computed
  literally as sin(S + π/2) in the input dtype, for bit-level parity.

  Args:
    x: (..., C) features.
    num_freqs: F, the number of octaves.

  Returns:
    (..., C·(1 + 2F)) features.
  """
  scales = 2.0 ** jnp.arange(num_freqs, dtype=x.dtype)
  s = (x[..., :, None] * scales).reshape(*x.shape[:-1], -1)
  return jnp.concatenate([x, jnp.sin(s), jnp.sin(s + jnp.pi / 2)], axis=-1)


def relative_poses(T_world_a: jax.Array) -> jax.Array:
  """Consecutive relative poses T_{k}⁻¹ ∘ T_{k+1} along the time axis.

  Args:
    T_world_a: (..., P, 7) poses `wxyz_xyz`.

  Returns:
    (..., P−1, 7) relative poses, entry k mapping frame k+1 into frame k.
  """
  T = jaxlie.SE3(T_world_a)
  prev = jaxlie.SE3(T.wxyz_xyz[..., :-1, :])
  nxt = jaxlie.SE3(T.wxyz_xyz[..., 1:, :])
  return (prev.inverse() @ nxt).wxyz_xyz


def se3_matrix_3x4(T: jax.Array) -> jax.Array:
  """Poses (..., 7) to row-major flattened [R | t] (..., 12)."""
  pose = jaxlie.SE3(T)
  rt = jnp.concatenate(
      [pose.rotation().as_matrix(), pose.translation()[..., :, None]], axis=-1)
  return rt.reshape(*T.shape[:-1], 12)
