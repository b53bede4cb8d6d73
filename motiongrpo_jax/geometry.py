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


# Jacobi sweeps of `nearest_rotation`'s 4×4 eigenproblem: each sweep squares
# the off-diagonal error; float32 round-off is reached in 4–5 from any start.
_JACOBI_SWEEPS = 6
_JACOBI_PAIRS = ((0, 1), (2, 3), (0, 2), (1, 3), (0, 3), (1, 2))


def _jacobi_top_eigenvector(sym: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Largest eigenvalue (...) and its unit eigenvector (..., 4) of symmetric
  (..., 4, 4) matrices, by cyclic Jacobi rotations (elementwise on the batch:
  no LAPACK call, whose parallel batch loop can deadlock XLA's CPU thread
  pool when two run at once on a 2-core machine). The matrices are held as
  their 16 entries, each a (...) array, so that a rotation touches only rows
  and columns p, q as scalar arithmetic that XLA fuses into one loop (batched
  4×4 matmuls run ~500× slower on CPU)."""

  def rotate(a, v, p, q):
    apq, app, aqq = a[p][q], a[p][p], a[q][q]
    small = jnp.abs(apq) <= jnp.finfo(apq.dtype).tiny**0.5
    theta = (aqq - app) / jnp.where(small, 1.0, 2.0 * apq)
    t = jnp.where(small, 0.0, jnp.where(theta >= 0, 1.0, -1.0)
                  / (jnp.abs(theta) + jnp.sqrt(theta * theta + 1.0)))
    c = 1.0 / jnp.sqrt(t * t + 1.0)
    s = t * c
    # A ← JᵀAJ and V ← VJ for the Givens rotation J (c at (p, p) and (q, q),
    # s at (p, q), −s at (q, p)): columns p, q of A and V, then rows p, q of A.
    for m in (a, v):
      for row in m:
        row[p], row[q] = c * row[p] - s * row[q], s * row[p] + c * row[q]
    a[p], a[q] = ([c * x - s * y for x, y in zip(a[p], a[q])],
                  [s * x + c * y for x, y in zip(a[p], a[q])])

  def sweep(_, carry):
    a, v = [[list(row) for row in m] for m in carry]
    for p, q in _JACOBI_PAIRS:
      rotate(a, v, p, q)
    return a, v

  a0 = [[sym[..., i, j] for j in range(4)] for i in range(4)]
  # zeros_like: the identity with the input's shape (and shard_map axes).
  zero = jnp.zeros_like(sym[..., 0, 0])
  v0 = [[zero + (i == j) for j in range(4)] for i in range(4)]
  a, v = jax.lax.fori_loop(0, _JACOBI_SWEEPS, sweep, (a0, v0))
  values = jnp.stack([a[i][i] for i in range(4)], axis=-1)  # (..., 4)
  vectors = jnp.stack([jnp.stack(row, axis=-1) for row in v], axis=-2)
  top = jnp.argmax(values, axis=-1)
  vector = jnp.take_along_axis(vectors, top[..., None, None], axis=-1)[..., 0]
  return jnp.max(values, axis=-1), vector


def nearest_rotation(matrix: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The proper rotation R maximising tr(Rᵀ·M), and that maximum.

  R is U·diag(1, 1, det(U·Vᵀ))·Vᵀ of the SVD M = U·D·Vᵀ (the nearest
  rotation in Frobenius norm, det +1 even when det M < 0) and the maximum is
  tr(D·diag(1, 1, det(U·Vᵀ))) (Umeyama's scale numerator). Computed without
  an SVD by Horn's quaternion method: R is the rotation of the unit
  quaternion maximising qᵀ·K(M)·q, K the symmetric 4×4 matrix below, and
  the maximum is K's largest eigenvalue.

  Args:
    matrix: (..., 3, 3).

  Returns:
    R (..., 3, 3) and tr(Rᵀ·M) (...).
  """
  m = matrix
  xx, xy, xz = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
  yx, yy, yz = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
  zx, zy, zz = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
  k = jnp.stack([
      jnp.stack([xx + yy + zz, zy - yz, xz - zx, yx - xy], axis=-1),
      jnp.stack([zy - yz, xx - yy - zz, xy + yx, xz + zx], axis=-1),
      jnp.stack([xz - zx, xy + yx, yy - xx - zz, yz + zy], axis=-1),
      jnp.stack([yx - xy, xz + zx, yz + zy, zz - xx - yy], axis=-1),
  ], axis=-2)
  value, wxyz = _jacobi_top_eigenvector(k)
  return quat_to_matrix(wxyz), value


def project_to_so3(matrix: jax.Array) -> jax.Array:
  """Nearest proper rotation (det +1): U·diag(1, 1, det(UVᵀ))·Vᵀ
  (`nearest_rotation`).

  Args:
    matrix: (..., 3, 3).

  Returns:
    (..., 3, 3) rotation matrices.
  """
  return nearest_rotation(matrix)[0]


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
