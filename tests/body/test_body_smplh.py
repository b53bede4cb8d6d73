"""Tests of the SMPL-H loader, kinematics and skinning on a synthetic model.npz."""

import jax
import jax.numpy as jnp
import jaxlie
import numpy as np
import pytest
import scipy.sparse

from motiongrpo_jax.body import load_smplh
from motiongrpo_jax.body import skeleton
from motiongrpo_jax.body import SmplhBody

NUM_VERTS = 6300  # ≥ 6263 so that the CPF vertices exist.
IDENTITY_QUAT = np.array([1.0, 0.0, 0.0, 0.0])
# SMPL-H hands: per hand five fingers of three joints (index, middle, pinky,
# ring, thumb), each finger's first joint hanging off the wrist.
HAND_PARENTS = tuple(
    wrist if k % 3 == 0 else first + k - 1
    for wrist, first in ((20, 22), (21, 37)) for k in range(15))
PARENTS = skeleton.PARENTS + HAND_PARENTS


def _subtree(joint):
  nodes = {joint}
  for j, p in enumerate(PARENTS):
    if p in nodes:
      nodes.add(j)
  return nodes


def _synthetic_arrays(seed=0):
  rng = np.random.default_rng(seed)
  v_template = rng.normal(scale=0.3, size=(NUM_VERTS, 3))
  shapedirs = rng.normal(scale=0.01, size=(NUM_VERTS, 3, 16))
  posedirs = rng.normal(scale=0.002, size=(NUM_VERTS, 3, 51 * 9))
  regressor = np.zeros((52, NUM_VERTS))
  for j in range(52):
    picked = rng.choice(NUM_VERTS, size=4, replace=False)
    regressor[j, picked] = rng.uniform(0.5, 1.0, size=4)
  regressor /= regressor.sum(axis=1, keepdims=True)
  # Each vertex follows one joint; every third blends two joints.
  weights = np.zeros((NUM_VERTS, 52))
  first = np.arange(NUM_VERTS) % 52
  second = (first + 1 + rng.integers(0, 50, NUM_VERTS)) % 52
  weights[np.arange(NUM_VERTS), first] = 1.0
  blend = np.arange(NUM_VERTS) % 3 == 0
  weights[blend, first[blend]] = 0.7
  weights[blend, second[blend]] += 0.3
  kintree = np.stack([np.array(PARENTS, np.int64) % 2**32,
                      np.arange(52)]).astype(np.uint32)
  faces = rng.integers(0, NUM_VERTS, size=(20, 3))
  return dict(v_template=v_template, shapedirs=shapedirs, posedirs=posedirs,
              J_regressor=regressor, weights=weights, kintree_table=kintree,
              f=faces)


@pytest.fixture(scope="module")
def arrays():
  return _synthetic_arrays()


@pytest.fixture(scope="module")
def model_path(arrays, tmp_path_factory):
  path = tmp_path_factory.mktemp("smplh") / "model.npz"
  np.savez(path, **arrays)
  return path


@pytest.fixture(scope="module")
def body(model_path):
  return load_smplh(model_path)


def _shaped(arrays, betas):
  verts = arrays["v_template"] + arrays["shapedirs"] @ betas
  return verts, arrays["J_regressor"] @ verts


def test_loads_with_parents_and_float32(body):
  assert isinstance(body, SmplhBody)
  assert body.parents == PARENTS and body.num_joints == 52
  assert body.v_template.dtype == jnp.float32
  assert body.posedirs.shape == (NUM_VERTS, 3, 459)


def test_joints_rest_and_cpf(body, arrays):
  betas = np.random.default_rng(1).normal(size=16)
  verts, joints = _shaped(arrays, betas)
  np.testing.assert_allclose(
      body.joints_rest(jnp.asarray(betas, jnp.float32)), joints - joints[0],
      atol=1e-5)
  eyes = verts[[6260, 6262, 2800, 2802]].mean(axis=0)
  cpf = np.asarray(body.T_head_cpf(jnp.asarray(betas, jnp.float32)))
  np.testing.assert_allclose(cpf[:4], IDENTITY_QUAT)
  np.testing.assert_allclose(cpf[4:], eyes - joints[15], atol=1e-5)


def test_rest_pose_skinning_is_shaped_template(body, arrays):
  betas = np.random.default_rng(2).normal(size=16)
  verts, joints = _shaped(arrays, betas)
  skinned = body.skin(jnp.asarray(betas, jnp.float32),
                      jnp.array([1.0, 0, 0, 0, 0, 0, 0]),
                      jnp.tile(IDENTITY_QUAT, (21, 1)))
  np.testing.assert_allclose(skinned, verts - joints[0], atol=1e-5)


@pytest.mark.parametrize("with_posedirs", [True, False])
def test_single_joint_rotation_skinning(body, arrays, with_posedirs):
  """Left elbow (18) turned 90° about z, everything else at rest."""
  if not with_posedirs:
    body = body.replace(posedirs=jnp.zeros_like(body.posedirs))
  betas = np.random.default_rng(3).normal(size=16)
  verts, joints = _shaped(arrays, betas)
  elbow = 18
  R = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
  q = np.array([np.cos(np.pi / 4), 0.0, 0.0, np.sin(np.pi / 4)])
  quats = np.tile(IDENTITY_QUAT, (21, 1))
  quats[elbow - 1] = q
  # SMPL's pose feature: (R − I) row-major in the slot of joint 18.
  posed = verts.copy()
  if with_posedirs:
    posed += arrays["posedirs"][:, :, 9 * (elbow - 1):9 * elbow] @ (
        R - np.eye(3)).reshape(9)
  moved = sorted(_subtree(elbow))
  assert moved == [18, 20] + list(range(22, 37))
  w_moved = arrays["weights"][:, moved].sum(axis=1, keepdims=True)
  rotated = (posed - joints[elbow]) @ R.T + joints[elbow]
  expected = (1 - w_moved) * posed + w_moved * rotated - joints[0]
  skinned = np.asarray(body.skin(
      jnp.asarray(betas, jnp.float32), jnp.array([1.0, 0, 0, 0, 0, 0, 0]),
      jnp.asarray(quats)))
  np.testing.assert_allclose(skinned, expected, atol=2e-5)
  if not with_posedirs:
    # Without pose blend shapes only the vertices the subtree weights move.
    still = w_moved[:, 0] == 0
    assert still.sum() > 1000 and (~still).sum() > 100
    np.testing.assert_allclose(skinned[still], verts[still] - joints[0],
                               atol=1e-5)
    assert np.all(np.abs(skinned[~still] - (verts[~still] - joints[0]))
                  .max(axis=1) > 0)


def test_hand_fk(body, arrays):
  """Left index base (22) turned; the left index chain follows, the right
  hand does not; the root pose moves everything rigidly."""
  betas = np.zeros(16)
  _, joints = _shaped(arrays, betas)
  rest = joints - joints[0]
  R = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])  # x 90°
  hand = np.tile(IDENTITY_QUAT, (30, 1))
  hand[0] = [np.cos(np.pi / 4), np.sin(np.pi / 4), 0.0, 0.0]
  root = np.array([np.cos(np.pi / 4), 0.0, 0.0, np.sin(np.pi / 4),
                   0.5, -1.0, 2.0])
  R_root = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
  poses = np.asarray(body.forward_kinematics(
      jnp.zeros(16), jnp.asarray(root), jnp.tile(IDENTITY_QUAT, (21, 1)),
      jnp.asarray(hand)), np.float64)
  assert poses.shape == (52, 7)
  local = rest.copy()
  for j in (23, 24):
    local[j] = rest[22] + R @ (rest[j] - rest[22])
  expected = local @ R_root.T + root[4:]
  np.testing.assert_allclose(poses[:, 4:], expected, atol=1e-5)
  # Identity hands by default equal explicit identity hands.
  default = body.forward_kinematics(jnp.zeros(16), jnp.asarray(root),
                                    jnp.tile(IDENTITY_QUAT, (21, 1)))
  explicit = body.forward_kinematics(jnp.zeros(16), jnp.asarray(root),
                                     jnp.tile(IDENTITY_QUAT, (21, 1)),
                                     jnp.tile(IDENTITY_QUAT, (30, 1)))
  np.testing.assert_allclose(default, explicit, atol=0)


def test_root_from_cpf_round_trip_and_grad(body):
  rng = np.random.default_rng(4)
  q = rng.normal(size=(3, 21, 4))
  q /= np.linalg.norm(q, axis=-1, keepdims=True)
  root = np.concatenate([np.tile(IDENTITY_QUAT, (3, 1)),
                         rng.normal(size=(3, 3))], axis=-1)
  root[:, :4] = jaxlie.SO3.exp(jnp.asarray(rng.normal(size=(3, 3)))).wxyz
  betas = jnp.asarray(rng.normal(size=16), jnp.float32)
  cpf = body.T_world_cpf(betas, jnp.asarray(root, jnp.float32),
                         jnp.asarray(q, jnp.float32))
  back = np.array(body.T_world_root_from_cpf(betas, cpf,
                                              jnp.asarray(q, jnp.float32)))
  back[:, :4] *= np.sign(np.sum(back[:, :4] * root[:, :4], -1))[:, None]
  np.testing.assert_allclose(back, root, atol=2e-5)
  # Skinning is differentiable: finite gradients under jit.
  # (The body is an argument, not a closed-over constant, so XLA does not
  # constant-fold its large arrays.)
  grad = jax.jit(jax.grad(lambda model, b, qq: jnp.sum(
      model.skin(b, jnp.asarray(root[0], jnp.float32), qq) ** 2),
                          argnums=(1, 2)))(body, betas,
                                           jnp.asarray(q[0], jnp.float32))
  assert all(np.all(np.isfinite(np.asarray(g))) for g in grad)


def test_bad_file_names_every_bad_key(arrays, tmp_path):
  bad = dict(arrays)
  del bad["weights"]
  bad["J_regressor"] = bad["J_regressor"][:40]
  bad["shapedirs"] = bad["shapedirs"][:, :, :10]
  path = tmp_path / "bad_model.npz"
  np.savez(path, **bad)
  with pytest.raises(ValueError) as info:
    load_smplh(path)
  message = str(info.value)
  assert str(path) in message
  assert f"'weights' missing (expected shape ({NUM_VERTS}, 52))" in message
  assert (f"'J_regressor' has shape (40, {NUM_VERTS}), expected "
          f"(52, {NUM_VERTS})") in message
  assert "'shapedirs' has shape" in message and ">=16" in message
  with pytest.raises(FileNotFoundError, match="nowhere.npz"):
    load_smplh(tmp_path / "nowhere.npz")


def test_too_few_vertices_for_cpf(arrays, tmp_path):
  small = {k: v for k, v in arrays.items()}
  n = 6000
  small.update(v_template=arrays["v_template"][:n],
               shapedirs=arrays["shapedirs"][:n],
               posedirs=arrays["posedirs"][:n],
               J_regressor=arrays["J_regressor"][:, :n],
               weights=arrays["weights"][:n])
  path = tmp_path / "small.npz"
  np.savez(path, **small)
  with pytest.raises(ValueError, match="vertex 6262"):
    load_smplh(path)


def test_sparse_regressor_needs_allow_pickle(arrays, body, tmp_path):
  sparse = dict(arrays)
  sparse["J_regressor"] = np.array(
      scipy.sparse.csc_matrix(arrays["J_regressor"]), dtype=object)
  path = tmp_path / "sparse.npz"
  np.savez(path, **sparse)
  with pytest.raises(ValueError, match="'J_regressor'.*pickled.*allow_pickle"):
    load_smplh(path)
  loaded = load_smplh(path, allow_pickle=True)
  np.testing.assert_allclose(loaded.J_regressor, body.J_regressor, atol=0)
