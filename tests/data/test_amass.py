"""Tests of the AMASS importer on files written in AMASS's exact format.

The SMPL-H model is synthetic (a small `model.npz` with the real keys whose
joint regressor picks one vertex per joint), so the expected joints are
known exactly.
"""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from motiongrpo_jax.body import load_smplh
from motiongrpo_jax.body import skeleton
from motiongrpo_jax.data import amass
from motiongrpo_jax.data import batch_import
from motiongrpo_jax.data import mirror
from motiongrpo_jax.data import records
from motiongrpo_jax.data import splits

NUM_VERTS = 6300  # the CPF needs vertices up to 6262
# SMPL-H hands: per hand 5 fingers × 3 joints hanging off the wrist.
HAND_PARENTS = tuple(wrist if k % 3 == 0 else first + k - 1
                     for wrist, first in ((20, 22), (21, 37))
                     for k in range(15))
PARENTS = skeleton.PARENTS + HAND_PARENTS
# The model's rest pelvis is off the origin, as in SMPL (trans is added to it).
PELVIS = np.array([0.003, -0.22, 0.028])


def write_smplh(path, seed=0):
  """A synthetic SMPL-H `model.npz`; returns its rest joints (52, 3)."""
  rng = np.random.default_rng(seed)
  joints = np.zeros((52, 3))
  joints[:22] = np.asarray(skeleton.REST_JOINTS) + PELVIS
  for j in range(22, 52):
    joints[j] = joints[PARENTS[j]] + rng.normal(scale=0.02, size=3)
  v_template = rng.normal(scale=0.3, size=(NUM_VERTS, 3))
  v_template[:52] = joints
  regressor = np.zeros((52, NUM_VERTS))
  regressor[np.arange(52), np.arange(52)] = 1.0
  weights = np.zeros((NUM_VERTS, 52))
  weights[np.arange(NUM_VERTS), np.arange(NUM_VERTS) % 52] = 1.0
  np.savez(
      path, v_template=v_template,
      shapedirs=rng.normal(scale=0.002, size=(NUM_VERTS, 3, 16)),
      posedirs=np.zeros((NUM_VERTS, 3, 9)), J_regressor=regressor,
      weights=weights,
      kintree_table=np.stack([np.array(PARENTS) % 2**32,
                              np.arange(52)]).astype(np.uint32),
      f=rng.integers(0, NUM_VERTS, size=(10, 3)))
  return joints


def write_amass(path, num_frames, fps, seed, keys=None):
  """An AMASS SMPL-H `.npz`: poses (N, 156), trans, betas (16), gender,
  mocap_framerate; smooth synthetic values."""
  rng = np.random.default_rng(seed)
  t = np.linspace(0, 1, num_frames)[:, None]
  a, b = rng.normal(scale=0.3, size=(2, 1, 156))
  poses = a + b * np.sin(3 * t)
  poses[:, :3] = np.c_[np.full(num_frames, 1.5), 0.3 * t[:, 0],
                       0.0 * t[:, 0]]  # upright-ish root, slowly yawing
  trans = np.c_[2.0 * t, 0.1 * np.sin(5 * t), 0.9 + 0.02 * np.cos(9 * t)]
  data = dict(poses=poses, trans=trans,
              betas=rng.normal(scale=0.5, size=16),
              gender=np.array("female"), mocap_framerate=np.array(fps),
              dmpls=np.zeros((num_frames, 8)))
  if keys is not None:
    data = {k: v for k, v in data.items() if k in keys}
  path.parent.mkdir(parents=True, exist_ok=True)
  np.savez(path, **data)
  return data


@pytest.fixture(scope="module")
def smplh_body(tmp_path_factory):
  path = tmp_path_factory.mktemp("smplh") / "model.npz"
  write_smplh(path)
  return load_smplh(path)


@pytest.fixture()
def amass_root(tmp_path):
  root = tmp_path / "AMASS"
  files = {
      "ACCAD/Female1Walking_c3d/B3 - walk1_poses.npz": (150, 60.0, 0),
      "HumanEva/S1/Jog_1_poses.npz": (150, 60.0, 1),
      "Transitions_mocap/mazen_c3d/walk_turn_poses.npz": (150, 60.0, 2),
      "CMU/01/01_01_poses.npz": (60, 60.0, 3),  # 48 frames < 1 s: dropped
      "GRAB/s1/apple_poses.npz": (150, 60.0, 4),  # not an EgoAllo subset
  }
  data = {name: write_amass(root / name, *args)
          for name, args in files.items()}
  return root, data


def _wxyz(axis_angle):
  return np.roll(Rotation.from_rotvec(axis_angle.reshape(-1, 3)).as_quat(),
                 1, -1).reshape(axis_angle.shape[:-1] + (4,))


def _same_rotation(a, b, atol=1e-5):
  dot = np.abs(np.sum(np.asarray(a, np.float64) * b, -1))
  np.testing.assert_allclose(dot, 1.0, atol=atol)


def test_amass_processing(amass_root, smplh_body):
  root, data = amass_root
  report = batch_import.ImportReport()
  out = {r.name: r for r in amass.iter_records(str(root), smplh_body,
                                               mirror=True, report=report)}
  walk = "ACCAD/Female1Walking_c3d/B3 - walk1_poses"
  assert sorted(out) == sorted([
      walk, walk + "_mirror", "HumanEva/S1/Jog_1_poses",
      "HumanEva/S1/Jog_1_poses_mirror",
      "Transitions_mocap/mazen_c3d/walk_turn_poses",
      "Transitions_mocap/mazen_c3d/walk_turn_poses_mirror"])
  assert out[walk].split == "train"
  assert out["HumanEva/S1/Jog_1_poses"].split == "val"
  assert out["Transitions_mocap/mazen_c3d/walk_turn_poses"].split == "test"
  assert report.excluded == ["GRAB/s1/apple_poses.npz"]
  assert report.notes == {"CMU/01/01_01_poses.npz":
                          {"dropped": "shorter than 1 s"}}

  # 150 frames at 60 fps: middle 80 % = frames 15..134 (120); EgoAllo drops
  # the edge frames (118 left, source frames 16..133), keeps
  # int(30/60·118) = 59 by index; the record drops the first of those.
  d = data["ACCAD/Female1Walking_c3d/B3 - walk1_poses.npz"]
  kept = 16 + np.linspace(0, 117, 59).astype(int)
  record = out[walk]
  assert record.num_frames == 58 and record.fps == 30.0
  assert record.hand_quats.shape == (58, 30, 4)
  frames = kept[1:]
  _same_rotation(record.body_quats,
                 _wxyz(d["poses"][frames, 3:66].reshape(-1, 21, 3)))
  _same_rotation(record.hand_quats,
                 _wxyz(d["poses"][frames, 66:].reshape(-1, 30, 3)))
  _same_rotation(record.T_world_root[:, :4], _wxyz(d["poses"][frames, :3]))
  np.testing.assert_allclose(record.betas, d["betas"], atol=1e-6)

  # T_world_root is the pelvis joint (trans + shaped rest pelvis), with the
  # floor moved to z = 0; the floor and contacts come from the source-rate
  # joints.
  betas = jnp.asarray(d["betas"], jnp.float32)
  pelvis = np.asarray(smplh_body.J_regressor[0] @ smplh_body.vertices_rest(
      betas))
  source = np.arange(15, 135)
  T_source = np.concatenate([_wxyz(d["poses"][source, :3]),
                             d["trans"][source] + pelvis], -1)
  joints, _ = records.posed_joints_and_cpf(  # the body's FK
      smplh_body, d["betas"], T_source,
      _wxyz(d["poses"][source, 3:66].reshape(-1, 21, 3)))
  floor = records.estimate_floor(joints, 60.0)
  expected = d["trans"][frames] + pelvis - [0, 0, floor]
  np.testing.assert_allclose(record.T_world_root[:, 4:], expected, atol=2e-5)
  contacts = records.contact_labels(joints, 60.0, floor)
  np.testing.assert_array_equal(record.contacts, contacts[frames - 15])

  # The mirrored twin.
  twin = out[walk + "_mirror"]
  root_m, body_m, hands_m, contacts_m = mirror.mirror_motion(
      record.T_world_root, record.body_quats, record.hand_quats,
      record.contacts)
  np.testing.assert_allclose(twin.T_world_root, root_m, atol=1e-6)
  _same_rotation(twin.body_quats, body_m)
  _same_rotation(twin.hand_quats, hands_m)
  np.testing.assert_array_equal(twin.contacts, contacts_m)


def test_missing_poses_and_skip_bad(amass_root, smplh_body):
  root, _ = amass_root
  bad = root / "ACCAD/Female1Walking_c3d/A1 - Stand_poses.npz"
  write_amass(bad, 150, 60.0, 9, keys=("trans", "betas", "mocap_framerate"))
  with pytest.raises(ValueError) as info:
    list(amass.iter_records(str(root), smplh_body))
  assert str(bad) in str(info.value) and "'poses'" in str(info.value)
  report = batch_import.ImportReport()
  names = [r.name for r in amass.iter_records(
      str(root), smplh_body, skip_bad=True, report=report,
      split_rule="ACCAD/*=train,*=skip")]
  assert names == ["ACCAD/Female1Walking_c3d/B3 - walk1_poses"]
  assert [n for n, _ in report.skipped] == [str(bad)]


def test_read_checks_and_fps_fix(tmp_path):
  path = tmp_path / "BMLhandball/S01/x_poses.npz"
  write_amass(path, 30, 85.0, 0)
  assert amass.read_amass_npz(path)["fps"] == 240.0
  data = dict(np.load(path))
  data["poses"] = data["poses"][:, :72]  # SMPL, not SMPL-H
  np.savez(path, **data)
  with pytest.raises(ValueError, match=r"'poses' has shape \(30, 72\)"):
    amass.read_amass_npz(path)


def test_default_split_rule_is_egoallos():
  rule = splits.amass_default_rule()
  assert rule.split_of("DFaust_67/50002/x_poses.npz") == "train"
  assert rule.split_of("EKUT/x_poses.npz") == "train"
  assert rule.split_of("MPI_mosh/x_poses.npz") == "val"
  assert rule.split_of("SSM_synced/x_poses.npz") == "test"
  assert rule.split_of("BioMotionLab_NTroje/rub001/0001_treadmill_norm_poses"
                       ".npz") == "skip"
  assert rule.split_of("MPI_HDM05/dg/HDM_dg_07-01_01_120_poses.npz") == "skip"
  assert rule.split_of("MPI_HDM05/dg/HDM_dg_05-02_poses.npz") == "val"
  assert rule.split_of("SOMA/x.npz") == "skip"
