"""Tests for geometry.py against hand-computed values and properties."""

import jax
import jax.numpy as jnp
import jaxlie
import numpy as np
import pytest

from motiongrpo_jax import geometry

EPS = float(np.finfo(np.float32).eps)  # 1.19e-7


def _random_quats(n, seed=0):
  q = np.random.default_rng(seed).normal(size=(n, 4))
  return q / np.linalg.norm(q, axis=-1, keepdims=True)


def test_quat_to_matrix_hand_computed():
  # 90° about z: x → y, y → −x.
  q = jnp.array([np.cos(np.pi / 4), 0.0, 0.0, np.sin(np.pi / 4)])
  expected = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
  np.testing.assert_allclose(geometry.quat_to_matrix(q), expected, atol=1e-6)
  # Not normalised: EgoAllo normalises first.
  np.testing.assert_allclose(geometry.quat_to_matrix(3.0 * q), expected, atol=1e-6)


@pytest.mark.parametrize("angle", [0.0, 0.3, np.pi / 2, np.pi - 1e-3, np.pi - 1e-6, np.pi])
def test_matrix_to_quat_round_trip_up_to_180_degrees(angle):
  axes = _random_quats(16, seed=1)[:, 1:]
  axes /= np.linalg.norm(axes, axis=-1, keepdims=True)
  q = np.concatenate([np.full((16, 1), np.cos(angle / 2)), np.sin(angle / 2) * axes], -1)
  R = geometry.quat_to_matrix(jnp.asarray(q, jnp.float32))
  q_back = geometry.matrix_to_quat(R)
  # float32: the matrix → quaternion step stays accurate near 180°. Three
  # conversions of ≲ 10 roundings on values ≤ 1 (÷ a component ≥ 1/2): 32·eps.
  np.testing.assert_allclose(geometry.quat_to_matrix(q_back), R, atol=32 * EPS)
  q_sign = np.where(q[:, :1] < 0, -q, q)
  np.testing.assert_allclose(np.abs(q_back), np.abs(q_sign), atol=1e-5)
  assert np.all(np.asarray(q_back)[:, 0] >= 0.0)


def test_project_to_rotation_is_egoallo_uvt_and_keeps_reflections():
  m = np.random.default_rng(2).normal(size=(32, 3, 3)).astype(np.float32)
  out = np.asarray(geometry.project_to_rotation(jnp.asarray(m)))
  u, _, vh = np.linalg.svd(m)
  np.testing.assert_allclose(out, u @ vh, atol=1e-5)
  np.testing.assert_allclose(out @ np.swapaxes(out, -1, -2), np.broadcast_to(np.eye(3), out.shape), atol=1e-5)
  # U·Vᵀ has the sign of det(m): reflections stay reflections.
  np.testing.assert_array_equal(np.sign(np.linalg.det(out)), np.sign(np.linalg.det(m)))


def test_project_to_so3_returns_proper_nearest_rotation():
  rng = np.random.default_rng(3)
  R = np.asarray(geometry.quat_to_matrix(jnp.asarray(_random_quats(32, 4), jnp.float32)))
  noisy = R + 0.01 * rng.normal(size=R.shape)
  out = np.asarray(geometry.project_to_so3(jnp.asarray(noisy, jnp.float32)))
  np.testing.assert_allclose(np.linalg.det(out), 1.0, atol=1e-5)
  np.testing.assert_allclose(out, R, atol=0.03)
  reflected = -np.asarray(R)  # det −1
  fixed = np.asarray(geometry.project_to_so3(jnp.asarray(reflected, jnp.float32)))
  np.testing.assert_allclose(np.linalg.det(fixed), 1.0, atol=1e-5)


def _svd_nearest_rotation(m):
  """float64 reference: U·diag(1, 1, det(UVᵀ))·Vᵀ and tr(D·S)."""
  u, d, vh = np.linalg.svd(m.astype(np.float64))
  s = np.sign(np.linalg.det(u @ vh))
  flip = np.stack([np.ones_like(s), np.ones_like(s), s], axis=-1)
  return (u * flip[..., None, :]) @ vh, np.sum(d * flip, axis=-1)


def test_nearest_rotation_matches_the_svd_formula():
  rng = np.random.default_rng(5)
  R = np.asarray(geometry.quat_to_matrix(
      jnp.asarray(_random_quats(4096, 6), jnp.float32)))
  cases = {
      "near rotation": R + 0.05 * rng.normal(size=R.shape),
      "near reflection": -R + 0.05 * rng.normal(size=R.shape),
      "gaussian": rng.normal(size=R.shape),
      "rank 2": rng.normal(size=(4096, 3, 2)) @ rng.normal(size=(4096, 2, 3)),
  }
  for name, m in cases.items():
    m = m.astype(np.float32)
    rot, trace = map(np.asarray, jax.jit(geometry.nearest_rotation)(m))
    ref_rot, ref_trace = _svd_nearest_rotation(m)
    scale = np.abs(m).max(axis=(-1, -2))
    # Proper rotations to float32 round-off of the quaternion → matrix map.
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=16 * EPS)
    # The maximum tr(RᵀM) is well conditioned whatever the singular values:
    # Jacobi's backward error, a few eps·‖K‖ with ‖K‖ ≤ 4·max|M|, per sweep.
    assert np.all(np.abs(trace - ref_trace) <= 64 * EPS * scale), name
    achieved = np.einsum("bij,bij->b", rot, m)
    assert np.all(achieved >= ref_trace - 64 * EPS * scale), name
    if name == "near rotation":
      # R itself is well conditioned here (eigen-gap of K ≈ 4): ≤ 32 eps.
      np.testing.assert_allclose(rot, ref_rot, atol=32 * EPS)


def test_no_lapack_call_in_alignment_and_projection():
  """Two LAPACK batch loops running at once deadlock XLA's CPU thread pool
  on a 2-core machine; metrics and rewards therefore avoid LAPACK."""
  from motiongrpo_jax.eval import metrics  # pylint: disable=import-outside-toplevel

  def f(a, b):
    return (metrics.pampjpe(a, b), metrics.pampjpe_egoallo_compat(a, b), metrics.umeyama(b, a),
            geometry.project_to_so3(a[..., :3, :]),
            geometry.project_to_so3(b[..., :3, :]))

  x = jnp.ones((2, 5, 22, 3))
  text = jax.jit(f).lower(x, x).as_text()
  assert "lapack" not in text.lower()


def test_remove_yaw_is_invariant_to_world_yaw():
  # CPF looking along world +x with 0.3 rad downward pitch and a little roll.
  look_x = jaxlie.SO3.from_matrix(jnp.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
  base = look_x @ jaxlie.SO3.from_x_radians(0.3) @ jaxlie.SO3.from_z_radians(0.05)
  yaws = jnp.linspace(-3.0, 3.0, 7)
  rotated = jaxlie.SO3.from_z_radians(yaws) @ base
  canon = geometry.remove_yaw(rotated.wxyz)
  R = geometry.quat_to_matrix(canon)
  np.testing.assert_allclose(R, jnp.broadcast_to(R[0], R.shape), atol=1e-5)
  forward = R[:, :, 2]
  # Heading along +x, up to ≲ 16 roundings (matrix, atan2, sin/cos, product,
  # matrix) on values ≤ 1.
  np.testing.assert_allclose(forward[:, 1], 0.0, atol=16 * EPS)
  assert np.all(forward[:, 0] > 0)


def test_fourier_encode_hand_computed():
  x = jnp.array([[0.5, -1.0]])
  s = np.array([0.5, 1.0, -1.0, -2.0])  # channel-major: x_c · 2^k
  expected = np.concatenate([[0.5, -1.0], np.sin(s), np.sin(s + np.pi / 2)])
  # sin(s + π/2), |s + π/2| ≤ 2.6: π/2's cast, the sum and sin, ≤ eps·2.6 each.
  np.testing.assert_allclose(geometry.fourier_encode(x, 2)[0], expected,
                             atol=3 * EPS * 2.6)


def test_relative_poses_compose_back():
  q = _random_quats(5, 5)
  t = np.random.default_rng(6).normal(size=(5, 3))
  T = jnp.asarray(np.concatenate([q, t], -1), jnp.float32)
  rel = geometry.relative_poses(T)
  recomposed = jaxlie.SE3(T[:-1]) @ jaxlie.SE3(rel)
  np.testing.assert_allclose(recomposed.as_matrix(), jaxlie.SE3(T[1:]).as_matrix(), atol=1e-5)


def test_se3_matrix_3x4_row_major():
  T = jnp.array([1.0, 0.0, 0.0, 0.0, 1.0, 2.0, 3.0])
  np.testing.assert_allclose(
      geometry.se3_matrix_3x4(T), [1, 0, 0, 1, 0, 1, 0, 2, 0, 0, 1, 3], atol=0)


def test_helpers_are_differentiable_under_jit():
  def f(q):
    R = geometry.quat_to_matrix(q)
    return jnp.sum(geometry.project_to_so3(R + 0.1)) + jnp.sum(geometry.remove_yaw(q))
  g = jax.jit(jax.grad(f))(jnp.asarray(_random_quats(4, 7), jnp.float32))
  assert np.all(np.isfinite(np.asarray(g)))
