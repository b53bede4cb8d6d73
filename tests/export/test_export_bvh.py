"""BVH export: file layout, Euler convention, and the round trip through our
own BVH importer (`data.bvh` + `data.retarget` with the `smpl` preset)."""

import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from motiongrpo_jax.body import builtin_body
from motiongrpo_jax.body import skeleton
from motiongrpo_jax.data import bvh
from motiongrpo_jax.data import retarget
from motiongrpo_jax.export import bvh_writer
from motiongrpo_jax.export import motion as motion_lib
from motiongrpo_jax.tools import export as export_tool

NUM_FRAMES = 12
EPS = float(np.finfo(np.float32).eps)  # 1.19e-7


def _random_motion(seed, beta_std):
  rng = np.random.default_rng(seed)
  betas = np.zeros(16)
  betas[:8] = rng.normal(0.0, beta_std, 8)
  xyzw = Rotation.from_rotvec(
      rng.normal(0.0, 0.6, (NUM_FRAMES * 22, 3))).as_quat()
  quats = np.roll(xyzw, 1, axis=-1).reshape(NUM_FRAMES, 22, 4)
  position = rng.normal(0.0, 1.0, (NUM_FRAMES, 3))
  return motion_lib.Motion(
      betas=betas, T_world_root=np.concatenate([quats[:, 0], position], -1),
      body_quats=quats[:, 1:])


def _fk(body, motion):
  joints = body.forward_kinematics(
      jnp.asarray(motion.betas, jnp.float32),
      jnp.asarray(motion.T_world_root, jnp.float32),
      jnp.asarray(motion.body_quats, jnp.float32))
  return np.asarray(joints, np.float64)[..., 4:]


def _angle_deg(q1, q2):
  """Angles (degrees) between `wxyz` rotations, computed without arccos
  round-off (scipy's relative-rotation magnitude, float64)."""
  r1 = Rotation.from_quat(np.roll(np.asarray(q1, np.float64).reshape(-1, 4),
                                  -1, axis=-1))
  r2 = Rotation.from_quat(np.roll(np.asarray(q2, np.float64).reshape(-1, 4),
                                  -1, axis=-1))
  return np.degrees((r1.inv() * r2).magnitude())


@pytest.fixture(scope="module")
def body():
  return builtin_body()


@pytest.fixture(scope="module")
def retargeter(body):
  return retarget.Retargeter(retarget.load_preset("smpl"), body)


def test_hierarchy_names_channels_offsets_frame_time(body, tmp_path):
  motion = _random_motion(0, 0.5)
  path = bvh_writer.write_bvh(tmp_path / "m.bvh", motion)
  parsed = bvh.read_bvh(path)
  skel = parsed.skeleton
  assert sorted(skel.names) == sorted(skeleton.JOINT_NAMES)
  assert skel.names[0] == "pelvis"
  for j, name in enumerate(skel.names):
    parent = skeleton.PARENTS[skeleton.JOINT_NAMES.index(name)]
    expected = -1 if parent < 0 else skel.index(skeleton.JOINT_NAMES[parent])
    assert skel.parents[j] == expected, name
  assert skel.channels[0] == ("Xposition", "Yposition", "Zposition",
                              "Yrotation", "Zrotation", "Xrotation")
  for name, channels in zip(skel.names[1:], skel.channels[1:]):
    arm = name.split("_")[-1] in ("collar", "shoulder", "elbow", "wrist")
    assert channels == (("Zrotation", "Xrotation", "Yrotation") if arm else
                        ("Yrotation", "Zrotation", "Xrotation")), name
  assert parsed.frame_time == pytest.approx(1.0 / 30.0, abs=1e-8)
  assert parsed.num_frames == NUM_FRAMES
  # OFFSETs are the shaped rest bones in metres (6 decimals).
  rest = np.asarray(body.joints_rest(jnp.asarray(motion.betas, jnp.float32)))
  for j, name in enumerate(skel.names[1:], start=1):
    k = skeleton.JOINT_NAMES.index(name)
    bone = rest[k] - rest[skeleton.PARENTS[k]]
    # 6 decimals (≤ 5e-7) of float32 rest bones (≲ 2·eps·0.92 = 2.2e-7).
    np.testing.assert_allclose(skel.offsets[j], bone, atol=1e-6)
  np.testing.assert_array_equal(skel.offsets[0], np.zeros(3))
  # End sites on the five leaves, 8 cm long.
  leaves = sorted(skel.names[j] for j, _ in skel.end_sites)
  assert leaves == sorted(["head", "left_wrist", "right_wrist", "left_foot",
                           "right_foot"])
  for _, offset in skel.end_sites:
    assert np.linalg.norm(offset) == pytest.approx(0.08, abs=1e-5)


def test_axes_and_euler_convention_hand_computed():
  # Pelvis at world (1, 2, 3) turned 90° about world z (a left turn), left
  # elbow bent 30° about the body's +y (its rest frame = the file's axes).
  quats = np.tile([1.0, 0.0, 0.0, 0.0], (1, 21, 1))
  elbow = skeleton.JOINT_NAMES.index("left_elbow")
  quats[0, elbow - 1] = [np.cos(np.pi / 12), 0.0, np.sin(np.pi / 12), 0.0]
  # Root rotation: the canonical body frame (y up) stood up in the z-up world
  # (+90° about x), then turned 90° about world z.
  root = (Rotation.from_euler("z", 90, degrees=True)
          * Rotation.from_euler("x", 90, degrees=True))
  root_wxyz = np.roll(root.as_quat(), 1)
  motion = motion_lib.Motion(
      betas=np.zeros(16), body_quats=quats,
      T_world_root=np.concatenate([root_wxyz, [1.0, 2.0, 3.0]])[None])
  values = bvh_writer.frame_values(motion)[0]
  # World (x, y, z) → file (x, z, −y).
  np.testing.assert_allclose(values[:3], [1.0, 3.0, -2.0], atol=1e-12)
  # In the y-up file the body stands upright, turned 90° about file +y:
  # Y, Z, X angles (90, 0, 0).
  np.testing.assert_allclose(values[3:6], [90.0, 0.0, 0.0], atol=1e-9)
  order = bvh_writer.depth_first_order()
  column = 3 + 3 * order.index(elbow)
  # An arm joint: Z, X, Y angles (0, 0, 30).
  np.testing.assert_allclose(values[column:column + 3], [0.0, 0.0, 30.0],
                             atol=1e-9)
  others = np.delete(values[6:], np.s_[column - 6:column - 3])
  np.testing.assert_allclose(others, 0.0, atol=1e-9)


def test_round_trip_through_our_bvh_importer(body, retargeter, tmp_path):
  # Typical shapes (leading betas ~ N(0, 0.5²), as the synthetic data).
  motion = _random_motion(1, 0.5)
  path = bvh_writer.write_bvh(tmp_path / "m.bvh", motion)
  result = retargeter(bvh.read_bvh(path))
  expected = _fk(body, motion)
  # The importer's own FK of the file, in our z-up world: exact to the
  # written precision (6 decimals: ≤ 1e-6 m through the chain) plus our
  # float32 FK (≲ 24 roundings of coordinates ≤ 3.1 m).
  np.testing.assert_allclose(result.source_joints, expected,
                             atol=24 * EPS * 3.1 + 1e-6)
  # Retargeted onto the body: local rotations come back unchanged
  # (< 0.001°), joints within 1 mm (the importer refits the shape from the
  # bone lengths with a small ridge on β).
  assert _angle_deg(result.body_quats, motion.body_quats).max() < 1e-3
  assert _angle_deg(result.T_world_root[:, :4],
                    motion.T_world_root[:, :4]).max() < 1e-3
  error = np.linalg.norm(result.joints - expected, axis=-1)
  assert error.max() < 1e-3, error.max()
  assert result.mean_error < 1e-3


def test_round_trip_mean_shape_is_exact(body, retargeter, tmp_path):
  motion = _random_motion(2, 0.0)
  # Frame 0 at both Euler locks: the left hip turned 90° about z (middle
  # angle of Y Z X), the left elbow 90° about x (middle angle of Z X Y).
  quats = motion.body_quats.copy()
  half = np.sqrt(0.5)
  quats[0, skeleton.JOINT_NAMES.index("left_hip") - 1] = [half, 0, 0, half]
  quats[0, skeleton.JOINT_NAMES.index("left_elbow") - 1] = [half, half, 0, 0]
  motion = motion_lib.Motion(betas=motion.betas, body_quats=quats,
                             T_world_root=motion.T_world_root)
  path = bvh_writer.write_bvh(tmp_path / "m.bvh", motion)
  result = retargeter(bvh.read_bvh(path))
  np.testing.assert_allclose(result.betas, 0.0, atol=1e-3)
  np.testing.assert_allclose(result.joints, _fk(body, motion), atol=1e-5)
  assert _angle_deg(result.body_quats, motion.body_quats).max() < 1e-3


def _outputs(num_samples=2, num=NUM_FRAMES):
  rng = np.random.default_rng(3)
  quats = np.roll(Rotation.from_rotvec(rng.normal(
      0.0, 0.3, (num_samples * num * 52, 3))).as_quat(), 1, axis=-1)
  quats = quats.reshape(num_samples, num, 52, 4)
  roots = np.concatenate(
      [quats[:, :, 0], rng.normal(0.0, 1.0, (num_samples, num, 3))], -1)
  return {
      "Ts_world_cpf": roots[0],
      "Ts_world_root": roots,
      "body_quats": quats[:, :, 1:22],
      "left_hand_quats": quats[:, :, 22:37],
      "right_hand_quats": quats[:, :, 37:52],
      "contacts": np.zeros((num_samples, num, 21)),
      "betas": np.tile(rng.normal(0.0, 0.5, 16), (num_samples, num, 1)),
      "timestamps_ns": np.arange(num, dtype=np.int64) * 33_333_333 + 10**12,
  }


def test_motion_from_outputs_selects_the_sample(tmp_path):
  data = _outputs()
  np.savez(tmp_path / "outputs.npz", **data)
  motion = motion_lib.motion_from_outputs(tmp_path / "outputs.npz", sample=1)
  np.testing.assert_array_equal(motion.T_world_root, data["Ts_world_root"][1])
  np.testing.assert_array_equal(motion.body_quats, data["body_quats"][1])
  np.testing.assert_array_equal(motion.hand_quats[:, :15],
                                data["left_hand_quats"][1])
  np.testing.assert_array_equal(motion.hand_quats[:, 15:],
                                data["right_hand_quats"][1])
  np.testing.assert_allclose(motion.betas, data["betas"][1, 0])
  assert motion.fps == pytest.approx(30.0, rel=1e-6)


def test_bad_outputs_name_the_file_and_field(tmp_path):
  data = _outputs()
  del data["body_quats"]
  np.savez(tmp_path / "missing.npz", **data)
  with pytest.raises(ValueError, match=r"missing\.npz.*body_quats"):
    motion_lib.motion_from_outputs(tmp_path / "missing.npz")
  data = _outputs()
  data["betas"] = data["betas"][:, :, :10]
  np.savez(tmp_path / "shape.npz", **data)
  with pytest.raises(ValueError, match=r"shape\.npz.*'betas' has shape"):
    motion_lib.motion_from_outputs(tmp_path / "shape.npz")
  with pytest.raises(ValueError, match="sample 5 out of range.*2 samples"):
    motion_lib.motion_from_outputs(_outputs(), sample=5)
  data = _outputs()
  data["Ts_world_root"][0, 3, 5] = np.nan
  with pytest.raises(ValueError, match="T_world_root' has non-finite"):
    motion_lib.motion_from_outputs(data, sample=0)
  with pytest.raises(ValueError, match="unknown format '.fbx'"):
    export_tool.export(tmp_path / "missing.npz", tmp_path / "m.fbx")
  with pytest.raises(ValueError, match="--input=.*nothere.npz: no such file"):
    export_tool.export(tmp_path / "nothere.npz", tmp_path / "m.bvh")


def test_cli_writes_a_bvh_that_reads_back(tmp_path):
  data = _outputs()
  np.savez(tmp_path / "outputs.npz", **data)
  out = tmp_path / "motion.bvh"
  result = subprocess.run(
      [sys.executable, "-m", "motiongrpo_jax.tools.export",
       f"--input={tmp_path / 'outputs.npz'}", f"--output={out}",
       "--sample=1"], capture_output=True, text=True, timeout=120,
      check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  parsed = bvh.read_bvh(out)
  assert parsed.num_frames == NUM_FRAMES
  # Root position: world (x, y, z) → file (x, z, −y), sample 1.
  world = data["Ts_world_root"][1, :, 4:]
  # 6 decimals (≤ 5e-7) of float32 values ≤ 1.87 (≤ eps/2·1.87 = 1.1e-7).
  np.testing.assert_allclose(parsed.values[:, :3],
                             world[:, [0, 2, 1]] * [1, 1, -1], atol=1e-6)
