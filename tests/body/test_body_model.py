"""Tests of the built-in skeleton body: shape space, FK, CPF, root placement."""

import jax
import jax.numpy as jnp
import jaxlie
import numpy as np
import pytest

from motiongrpo_jax.body import builtin_body
from motiongrpo_jax.body import skeleton

IDENTITY_QUAT = np.array([1.0, 0.0, 0.0, 0.0])
IDENTITY_POSE = np.array([1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
EPS = float(np.finfo(np.float32).eps)  # 1.19e-7


def _rot(axis, degrees):
  """Quaternion `wxyz` and matrix of a rotation about a unit axis."""
  half = np.deg2rad(degrees) / 2
  q = np.concatenate([[np.cos(half)], np.sin(half) * np.asarray(axis, float)])
  return q, np.asarray(jaxlie.SO3(jnp.asarray(q)).as_matrix(), np.float64)


def _random_quats(rng, shape):
  q = rng.normal(size=shape + (4,))
  return q / np.linalg.norm(q, axis=-1, keepdims=True)


def _random_poses(rng, shape):
  return np.concatenate(
      [_random_quats(rng, shape), rng.normal(size=shape + (3,))], axis=-1)


@pytest.fixture(scope="module")
def body():
  return builtin_body()


def test_mean_shape_is_rest_joints_and_plausible(body):
  joints = np.asarray(body.joints_rest(jnp.zeros(16)))
  # The float32 cast of the rest joints: ≤ eps/2·0.92 = 5.5e-8.
  np.testing.assert_allclose(joints, skeleton.REST_JOINTS, atol=1e-7)
  # Eye height above the sole ≈ 1.6 m for a ≈ 1.70 m adult.
  cpf = np.asarray(body.T_head_cpf(jnp.zeros(16)))
  np.testing.assert_allclose(cpf[:4], IDENTITY_QUAT)
  eye_height = joints[skeleton.HEAD, 1] + cpf[5] - skeleton.REST_SOLE_Y
  assert 1.55 < eye_height < 1.65


def test_shape_space_is_linear_symmetric_and_sized(body):
  basis = np.asarray(body.shape_basis)
  assert basis.shape == (16, 22, 3)
  # Left/right symmetry: mirroring x and swapping left/right names is a no-op.
  names = skeleton.JOINT_NAMES
  swap = [names.index(n.replace("left", "@").replace("right", "left")
                      .replace("@", "right")) for n in names]
  mirrored = basis[:, swap] * np.array([-1.0, 1.0, 1.0])
  np.testing.assert_allclose(mirrored, basis, atol=1e-9)
  np.testing.assert_allclose(
      np.asarray(skeleton.REST_JOINTS)[swap] * [-1, 1, 1],
      skeleton.REST_JOINTS, atol=1e-9)
  # Linear: joints(a + b) − mean = (joints(a) − mean) + (joints(b) − mean).
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(2, 16)).astype(np.float32)
  mean = np.asarray(body.joints_rest(jnp.zeros(16)))
  lhs = np.asarray(body.joints_rest(jnp.asarray(a + b))) - mean
  rhs = (np.asarray(body.joints_rest(jnp.asarray(a))) - mean
         + np.asarray(body.joints_rest(jnp.asarray(b))) - mean)
  np.testing.assert_allclose(lhs, rhs, atol=1e-6)
  # Every mode moves some joint by 0.4–7 cm per unit β (one s.d. ≈ a few cm).
  largest = np.abs(basis).max(axis=(1, 2))
  assert np.all(largest > 0.004) and np.all(largest < 0.07), largest
  # Modes are linearly independent.
  assert np.linalg.matrix_rank(basis.reshape(16, -1), tol=1e-6) == 16


def test_leading_betas_mean_what_the_docstring_says(body):
  mean = np.asarray(skeleton.REST_JOINTS)
  idx = skeleton.JOINT_NAMES.index

  def joints(i, value=1.0):
    betas = np.zeros(16, np.float32)
    betas[i] = value
    return np.asarray(body.joints_rest(jnp.asarray(betas)), np.float64)

  # β0: uniform 4 % scale; the CPF offset scales with it.
  np.testing.assert_allclose(joints(0), 1.04 * mean, atol=1e-6)
  betas = np.zeros(16, np.float32)
  betas[0] = 1.0
  cpf = np.asarray(body.T_head_cpf(jnp.asarray(betas)))
  np.testing.assert_allclose(cpf[4:], 1.04 * np.asarray(skeleton.HEAD_TO_CPF),
                             atol=1e-6)
  # β1: ankles lower by 3 % of their depth, head lower by the same 2.79 cm
  # the sole drops, so the stature is unchanged.
  d = joints(1) - mean
  np.testing.assert_allclose(d[idx("left_ankle"), 1], 0.03 * -0.865, atol=1e-6)
  np.testing.assert_allclose(d[idx("head"), 1], -0.03 * 0.93, atol=1e-6)
  # β2: shoulder width moves only collars and arms sideways, outwards.
  d = joints(2) - mean
  moved = set(np.nonzero(np.abs(d).max(axis=1) > 1e-5)[0])
  assert moved == {idx(f"{s}_{n}") for s in ("left", "right")
                   for n in ("collar", "shoulder", "elbow", "wrist")}
  assert d[idx("left_shoulder"), 0] == pytest.approx(0.012, abs=1e-6)
  assert d[idx("right_shoulder"), 0] == pytest.approx(-0.012, abs=1e-6)
  # β3 hip width, β4 arm length, β5 head height.
  assert (joints(3) - mean)[idx("left_hip"), 0] == pytest.approx(0.01, abs=1e-6)
  assert (joints(4) - mean)[idx("right_wrist"), 0] == pytest.approx(
      -0.025, abs=1e-6)
  assert (joints(5) - mean)[idx("head"), 1] == pytest.approx(0.016, abs=1e-6)
  assert (joints(6) - mean)[idx("head"), 2] == pytest.approx(0.02, abs=1e-6)


def test_rest_pose_reproduces_rest_joints(body):
  rng = np.random.default_rng(1)
  betas = rng.normal(size=16).astype(np.float32)
  root = _random_poses(rng, ())
  poses = np.asarray(body.forward_kinematics(
      jnp.asarray(betas), jnp.asarray(root), jnp.tile(IDENTITY_QUAT, (21, 1))))
  rest = np.asarray(body.joints_rest(jnp.asarray(betas)))
  R = np.asarray(jaxlie.SO3(jnp.asarray(root[:4])).as_matrix())
  np.testing.assert_allclose(poses[:, 4:], rest @ R.T + root[4:], atol=1e-5)
  np.testing.assert_allclose(np.abs(poses[:, :4] @ root[:4]), 1.0, atol=1e-6)


def test_hand_built_chain(body):
  """Left hip +90° about x and left knee −90° about x, root turned about z."""
  J = np.asarray(skeleton.REST_JOINTS, np.float64)
  hip, knee, ankle, foot = 1, 4, 7, 10
  q_hip, R_hip = _rot([1, 0, 0], 90)
  q_knee, R_knee = _rot([1, 0, 0], -90)
  q_root, R_root = _rot([0, 0, 1], 90)
  t_root = np.array([1.0, 2.0, 3.0])
  quats = np.tile(IDENTITY_QUAT, (21, 1))
  quats[hip - 1], quats[knee - 1] = q_hip, q_knee
  poses = np.asarray(body.forward_kinematics(
      jnp.zeros(16), jnp.asarray(np.concatenate([q_root, t_root])),
      jnp.asarray(quats)), np.float64)
  # R_x(90°) maps (x, y, z) ↦ (x, −z, y); the hip itself does not move.
  knee_local = J[hip] + (J[knee, 0] - J[hip, 0],
                         -(J[knee, 2] - J[hip, 2]), J[knee, 1] - J[hip, 1])
  # The knee undoes the hip, so the shank hangs straight down again.
  ankle_local = knee_local + (J[ankle] - J[knee])
  foot_local = ankle_local + (J[foot] - J[ankle])
  to_world = lambda p: R_root @ p + t_root
  # float32 FK: ≤ 4 joints deep, ≲ 6 roundings each, on coordinates ≤ 3.5 m.
  fk_atol = 24 * EPS * 3.5
  np.testing.assert_allclose(poses[hip, 4:], to_world(J[hip]), atol=fk_atol)
  np.testing.assert_allclose(poses[knee, 4:], to_world(knee_local),
                             atol=fk_atol)
  np.testing.assert_allclose(poses[ankle, 4:], to_world(ankle_local),
                             atol=fk_atol)
  np.testing.assert_allclose(poses[foot, 4:], to_world(foot_local),
                             atol=fk_atol)
  # World rotations: knee = R_root·R_hip·R_knee = R_root.
  R_knee_world = np.asarray(
      jaxlie.SO3(jnp.asarray(poses[knee, :4])).as_matrix())
  np.testing.assert_allclose(R_knee_world, R_root @ R_hip @ R_knee, atol=1e-6)
  np.testing.assert_allclose(R_knee_world, R_root, atol=1e-6)
  # The right leg is untouched.
  np.testing.assert_allclose(poses[8, 4:], to_world(J[8]), atol=fk_atol)


def test_bone_lengths_preserved(body):
  rng = np.random.default_rng(2)
  betas = rng.normal(size=(5, 16)).astype(np.float32)
  poses = np.asarray(body.forward_kinematics(
      jnp.asarray(betas), jnp.asarray(_random_poses(rng, (5,))),
      jnp.asarray(_random_quats(rng, (5, 21)))))
  rest = np.asarray(body.joints_rest(jnp.asarray(betas)))
  parents = list(skeleton.PARENTS[1:])
  posed_len = np.linalg.norm(poses[:, 1:, 4:] - poses[:, parents, 4:], axis=-1)
  rest_len = np.linalg.norm(rest[:, 1:] - rest[:, parents], axis=-1)
  np.testing.assert_allclose(posed_len, rest_len, atol=1e-5)


def test_cpf_is_head_pose_times_offset(body):
  rng = np.random.default_rng(3)
  betas = rng.normal(size=(4, 16)).astype(np.float32)
  root = _random_poses(rng, (4,))
  quats = _random_quats(rng, (4, 21))
  args = [jnp.asarray(betas), jnp.asarray(root), jnp.asarray(quats)]
  head = jaxlie.SE3(body.forward_kinematics(*args)[:, skeleton.HEAD])
  expected = head @ jaxlie.SE3(body.T_head_cpf(args[0]))
  np.testing.assert_allclose(np.asarray(body.T_world_cpf(*args)),
                             np.asarray(expected.wxyz_xyz), atol=1e-5)


def test_root_from_cpf_round_trip(body):
  """T_world_root_from_cpf inverts T_world_cpf (float32, tolerance 2e-5)."""
  rng = np.random.default_rng(4)
  betas = jnp.asarray(rng.normal(size=16).astype(np.float32))
  root = jnp.asarray(_random_poses(rng, (6,)))
  quats = jnp.asarray(_random_quats(rng, (6, 21)))
  cpf = body.T_world_cpf(betas, root, quats)
  recovered = body.T_world_root_from_cpf(betas, cpf, quats)
  same_sign = np.sign(np.sum(np.asarray(recovered[:, :4] * root[:, :4]), -1))
  np.testing.assert_allclose(np.asarray(recovered[:, :4]) * same_sign[:, None],
                             np.asarray(root[:, :4]), atol=2e-5)
  np.testing.assert_allclose(recovered[:, 4:], root[:, 4:], atol=2e-5)


def test_gradients_finite_under_jit_and_vmap(body):
  rng = np.random.default_rng(5)
  betas = jnp.asarray(rng.normal(size=(3, 16)).astype(np.float32))
  root = jnp.asarray(_random_poses(rng, (3,)).astype(np.float32))
  quats = jnp.asarray(_random_quats(rng, (3, 21)).astype(np.float32))
  target = jnp.asarray(rng.normal(size=(22, 3)).astype(np.float32))

  def loss(body, betas, root, quats):
    joints = body.forward_kinematics(betas, root, quats)[..., 4:]
    cpf = body.T_world_cpf(betas, root, quats)
    back = body.T_world_root_from_cpf(betas, cpf, quats)
    return jnp.sum((joints - target) ** 2) + jnp.sum(back[..., 4:] ** 2)

  grad_fn = jax.jit(jax.vmap(jax.grad(loss, argnums=(0, 1, 2, 3)),
                             in_axes=(None, 0, 0, 0)))
  g_body, g_betas, g_root, g_quats = grad_fn(body, betas, root, quats)
  for g in jax.tree.leaves((g_body, g_betas, g_root, g_quats)):
    assert np.all(np.isfinite(np.asarray(g)))
  # Directional derivative in β against central differences (float32).
  direction = jnp.asarray(rng.normal(size=16).astype(np.float32))
  eps = 1e-2
  at = lambda b: loss(body, b, root[0], quats[0])
  numeric = (at(betas[0] + eps * direction)
             - at(betas[0] - eps * direction)) / (2 * eps)
  analytic = jnp.dot(g_betas[0], direction)
  np.testing.assert_allclose(analytic, numeric, rtol=1e-2, atol=1e-3)


def test_bad_shapes_are_named(body):
  with pytest.raises(ValueError, match="body_quats"):
    body.forward_kinematics(jnp.zeros(16), jnp.asarray(IDENTITY_POSE),
                            jnp.tile(IDENTITY_QUAT, (22, 1)))
  with pytest.raises(ValueError, match="betas"):
    body.joints_rest(jnp.zeros(10))
