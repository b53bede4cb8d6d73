"""AMASS-style npz export and the round trip through our AMASS importer
(`data.amass`)."""

import jax.numpy as jnp
import jaxlie
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from motiongrpo_jax.body import builtin_body
from motiongrpo_jax.body import load_smplh
from motiongrpo_jax.body import skeleton
from motiongrpo_jax.data import amass
from motiongrpo_jax.export import amass_npz
from motiongrpo_jax.export import motion as motion_lib
from motiongrpo_jax.tools import export as export_tool

# ≥ 30 frames survive the importer's 80 % crop (1 s at 30 fps).
NUM_FRAMES = 50


def _quats(rng, shape, std):
  xyzw = Rotation.from_rotvec(rng.normal(0.0, std, shape + (3,)).reshape(
      -1, 3)).as_quat()
  return np.roll(xyzw, 1, axis=-1).reshape(shape + (4,))


def _motion(seed=0, hands=True):
  rng = np.random.default_rng(seed)
  betas = np.zeros(16)
  betas[:8] = rng.normal(0.0, 0.7, 8)
  position = np.cumsum(rng.normal(0.0, 0.02, (NUM_FRAMES, 3)), axis=0)
  position[:, 2] += 0.95
  return motion_lib.Motion(
      betas=betas,
      T_world_root=np.concatenate(
          [_quats(rng, (NUM_FRAMES,), 0.5), position], -1),
      body_quats=_quats(rng, (NUM_FRAMES, 21), 0.4),
      hand_quats=_quats(rng, (NUM_FRAMES, 30), 0.4) if hands else None)


def _angle_deg(q1, q2):
  """Angles (degrees) between `wxyz` rotations, computed without arccos
  round-off (scipy's relative-rotation magnitude, float64)."""
  r1 = Rotation.from_quat(np.roll(np.asarray(q1, np.float64).reshape(-1, 4),
                                  -1, axis=-1))
  r2 = Rotation.from_quat(np.roll(np.asarray(q2, np.float64).reshape(-1, 4),
                                  -1, axis=-1))
  return np.degrees((r1.inv() * r2).magnitude())


def _wxyz(axis_angle):
  shape = axis_angle.shape[:-1]
  xyzw = Rotation.from_rotvec(axis_angle.reshape(-1, 3)).as_quat()
  return np.roll(xyzw, 1, axis=-1).reshape(shape + (4,))


def test_layout_and_read_back(tmp_path):
  motion = _motion()
  path = amass_npz.write_amass_npz(tmp_path / "m.npz", motion)
  data = amass.read_amass_npz(path)
  assert data["poses"].shape == (NUM_FRAMES, 156)
  assert data["fps"] == 30.0
  assert data["gender"] == "neutral"
  np.testing.assert_allclose(data["betas"], motion.betas)
  # Built-in body: rest pelvis at the origin, so trans is the pelvis.
  np.testing.assert_allclose(data["trans"], motion.T_world_root[:, 4:])
  poses = data["poses"]
  assert _angle_deg(_wxyz(poses[:, :3]), motion.T_world_root[:, :4]).max() < 1e-6
  assert _angle_deg(_wxyz(poses[:, 3:66].reshape(-1, 21, 3)),
                    motion.body_quats).max() < 1e-6
  assert _angle_deg(_wxyz(poses[:, 66:].reshape(-1, 30, 3)),
                    motion.hand_quats).max() < 1e-6
  with np.load(path) as npz:
    np.testing.assert_array_equal(npz["root_orient"], poses[:, :3])
    np.testing.assert_array_equal(npz["pose_body"], poses[:, 3:66])
    np.testing.assert_array_equal(npz["pose_hand"], poses[:, 66:])


def test_without_hands():
  arrays = amass_npz.amass_arrays(_motion(hands=False))
  np.testing.assert_array_equal(arrays["poses"][:, 66:], 0.0)  # flat hands
  assert arrays["poses"].shape == (NUM_FRAMES, 156)
  arrays = amass_npz.amass_arrays(_motion(), hands=False)
  assert arrays["poses"].shape == (NUM_FRAMES, 66)
  assert "pose_hand" not in arrays


def test_round_trip_through_the_importer(tmp_path):
  """Export → `amass.sequence_records` (crop, floor, 30 fps) → the record's
  joints in the CPF frame equal those of the original motion."""
  body = builtin_body()
  motion = _motion(1)
  path = amass_npz.write_amass_npz(tmp_path / "m.npz", motion)
  (record,) = amass.sequence_records(body, amass.read_amass_npz(path),
                                     name="m", split="train")
  # The importer keeps frames int(0.1 N):int(0.9 N), drops the first and last
  # (velocities) and then one more leading frame (relative CPF motion).
  start = int(0.1 * NUM_FRAMES) + 2
  kept = np.arange(start, start + record.num_frames)
  assert kept[-1] == int(0.9 * NUM_FRAMES) - 2
  assert _angle_deg(record.body_quats, motion.body_quats[kept]).max() < 1e-3
  assert _angle_deg(record.T_world_root[:, :4],
                    motion.T_world_root[kept, :4]).max() < 1e-3
  joints = np.asarray(body.forward_kinematics(
      jnp.asarray(motion.betas, jnp.float32),
      jnp.asarray(motion.T_world_root[kept], jnp.float32),
      jnp.asarray(motion.body_quats[kept], jnp.float32)))
  T_world_cpf = body.T_world_cpf(
      jnp.asarray(motion.betas, jnp.float32),
      jnp.asarray(motion.T_world_root[kept], jnp.float32),
      jnp.asarray(motion.body_quats[kept], jnp.float32))
  in_cpf = jaxlie.SE3(T_world_cpf[:, None]).inverse() @ joints[:, 1:, 4:]
  # Same joints in the CPF frame (the importer only shifts the floor):
  # float32 FK, within 0.02 mm.
  np.testing.assert_allclose(record.joints_wrt_cpf, np.asarray(in_cpf),
                             atol=2e-5)
  # The world only moved vertically (floor to z = 0).
  shift = record.T_world_root[:, 4:] - motion.T_world_root[kept, 4:]
  np.testing.assert_allclose(shift[:, :2], 0.0, atol=1e-5)
  np.testing.assert_allclose(shift[:, 2], shift[0, 2], atol=1e-5)


def test_trans_is_relative_to_the_smplh_rest_pelvis(tmp_path):
  # A small synthetic SMPL-H model: the rest pelvis is the regressor's first
  # row applied to the shaped vertices, far from the origin.
  rng = np.random.default_rng(0)
  verts = 6300
  regressor = np.zeros((52, verts))
  for j in range(52):
    regressor[j, rng.choice(verts, 4, replace=False)] = 0.25
  parents = skeleton.PARENTS + tuple(
      wrist if k % 3 == 0 else first + k - 1
      for wrist, first in ((20, 22), (21, 37)) for k in range(15))
  arrays = dict(
      v_template=rng.normal(0.0, 0.3, (verts, 3)) + [0.0, 0.3, 0.0],
      shapedirs=rng.normal(0.0, 0.01, (verts, 3, 16)),
      posedirs=np.zeros((verts, 3, 9)), J_regressor=regressor,
      weights=np.eye(52)[np.arange(verts) % 52],
      kintree_table=np.stack([np.array(parents) % 2**32,
                              np.arange(52)]).astype(np.uint32),
      f=np.zeros((1, 3), np.int64))
  np.savez(tmp_path / "model.npz", **arrays)
  body = load_smplh(tmp_path / "model.npz")
  motion = _motion(2)
  rest_pelvis = regressor[0] @ (arrays["v_template"]
                                + arrays["shapedirs"] @ motion.betas)
  assert np.linalg.norm(rest_pelvis) > 0.05
  path = amass_npz.write_amass_npz(tmp_path / "m.npz", motion, body)
  data = amass.read_amass_npz(path)
  np.testing.assert_allclose(data["trans"],
                             motion.T_world_root[:, 4:] - rest_pelvis,
                             atol=1e-5)
  # What the importer adds back gives the pelvis again.
  np.testing.assert_allclose(
      data["trans"] + amass.rest_pelvis(body, data["betas"]),
      motion.T_world_root[:, 4:], atol=1e-6)


def test_cli_function_writes_npz_from_outputs(tmp_path):
  motion = _motion(3)
  outputs = {
      "Ts_world_root": motion.T_world_root[None],
      "body_quats": motion.body_quats[None],
      "left_hand_quats": motion.hand_quats[None, :, :15],
      "right_hand_quats": motion.hand_quats[None, :, 15:],
      "betas": np.tile(motion.betas, (1, NUM_FRAMES, 1)),
  }
  np.savez(tmp_path / "outputs.npz", **outputs)
  path = export_tool.export(tmp_path / "outputs.npz", tmp_path / "m.npz")
  data = amass.read_amass_npz(path)
  assert data["fps"] == 30.0  # no timestamps: 30 fps
  assert _angle_deg(_wxyz(data["poses"][:, 66:].reshape(-1, 30, 3)),
                    motion.hand_quats).max() < 1e-6
