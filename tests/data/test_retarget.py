"""Tests of BVH retargeting onto the SMPL body, presets and split rules."""

import itertools
import json
import warnings

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from motiongrpo_jax.body import builtin_body
from motiongrpo_jax.body import skeleton
from motiongrpo_jax.data import batch_import
from motiongrpo_jax.data import bvh
from motiongrpo_jax.data import retarget
from motiongrpo_jax.data import splits
from motiongrpo_jax.data import tfds_builder

NAMES = skeleton.JOINT_NAMES
EPS = float(np.finfo(np.float32).eps)  # 1.19e-7
CHILDREN = {j: [k for k, p in enumerate(skeleton.PARENTS) if p == j]
            for j in range(len(NAMES))}


def _proper_axis_frames():
  """The 24 rotations that permute and flip the coordinate axes."""
  out = []
  for perm in itertools.permutations(range(3)):
    for signs in itertools.product((1, -1), repeat=3):
      m = np.zeros((3, 3))
      m[list(perm), range(3)] = signs
      if np.linalg.det(m) > 0:
        out.append(m)
  return out


def _axes_text(m):
  return "".join(("+" if m[:, c].sum() > 0 else "-") + "xyz"[np.argmax(
      np.abs(m[:, c]))] for c in range(3))


def _smpl_rig_bvh(local, root_rot, root_pos_cm, frames, frame_time=1 / 30):
  """A BVH of SMPL's own skeleton (cm, y up, Z X Y channels) whose joint j
  has local axes `frames[j]` (canonical coordinates) at the T-pose."""
  rest = np.asarray(skeleton.REST_JOINTS) * 100.0
  lines = ["HIERARCHY"]
  # Source local rotation: Pᵀ_parent · L · P_j; root frame: G_root · P_root.
  src = np.empty(local.shape[:1] + (len(NAMES), 3, 3))
  src[:, 0] = root_rot @ frames[0]
  for j in range(1, len(NAMES)):
    src[:, j] = frames[skeleton.PARENTS[j]].T @ local[:, j - 1] @ frames[j]

  order = []  # joints in file (depth-first) order

  def write(j, depth):
    order.append(j)
    pad = "  " * depth
    kind = "ROOT" if j == 0 else "JOINT"
    offset = (np.zeros(3) if j == 0 else
              frames[skeleton.PARENTS[j]].T @ (rest[j] -
                                               rest[skeleton.PARENTS[j]]))
    channels = ("6 Xposition Yposition Zposition " if j == 0 else "3 ")
    lines.extend([f"{pad}{kind} src_{NAMES[j]}", f"{pad}{{",
                  f"{pad}  OFFSET {offset[0]:.9f} {offset[1]:.9f} "
                  f"{offset[2]:.9f}",
                  f"{pad}  CHANNELS {channels}Zrotation Xrotation Yrotation"])
    for k in CHILDREN[j]:
      write(k, depth + 1)
    if not CHILDREN[j]:
      lines.extend([f"{pad}  End Site", f"{pad}  {{", f"{pad}    OFFSET 0 4 0",
                    f"{pad}  }}"])
    lines.append(f"{pad}}}")

  write(0, 0)
  with warnings.catch_warnings():  # Gimbal lock is fine: any solution.
    warnings.simplefilter("ignore", UserWarning)
    eulers = Rotation.from_matrix(src.reshape(-1, 3, 3)).as_euler(
        "ZXY", degrees=True).reshape(src.shape[0], len(NAMES), 3)
  lines += ["MOTION", f"Frames: {src.shape[0]}", f"Frame Time: {frame_time}"]
  for f in range(src.shape[0]):
    values = list(root_pos_cm[f]) + list(eulers[f, order].reshape(-1))
    lines.append(" ".join(f"{v:.9f}" for v in values))
  return "\n".join(lines) + "\n"


def _rig_preset(frames, **extra):
  return retarget.preset_from_dict(dict(
      name="smpl_rig", units_to_meters=0.01, up_axis="+y", forward_axis="+z",
      joints={n: f"src_{n}" for n in NAMES},
      rest_axes={f"src_{n}": _axes_text(frames[j])
                 for j, n in enumerate(NAMES)}, **extra), "rig.json")


def _random_motion(num_frames, seed):
  rng = np.random.default_rng(seed)
  t = np.linspace(0, 1, num_frames)[:, None, None]
  a, b = rng.normal(scale=0.5, size=(2, 1, 21, 3))
  local = Rotation.from_rotvec((a + b * t).reshape(-1, 3)).as_matrix()
  local = local.reshape(num_frames, 21, 3, 3)
  root_rot = Rotation.from_rotvec(
      np.concatenate([0.2 * t[:, 0], 1.5 * t[:, 0], 0.1 * t[:, 0]],
                     axis=-1)).as_matrix()
  root_pos = np.concatenate([50 * t[:, 0], 95 + 3 * np.sin(6 * t[:, 0]),
                             120 * t[:, 0]], axis=-1)
  return local, root_rot, root_pos


@pytest.fixture(scope="module")
def body():
  return builtin_body()


@pytest.mark.parametrize("seed, axes, rotation_only", [
    (0, "identity", ()),
    (1, "permuted", ()),
    (2, "permuted", ("pelvis", "spine1", "spine3", "neck")),
])
def test_round_trip_of_smpl_rig(body, seed, axes, rotation_only):
  """A BVH of the body's own skeleton comes back exactly: same local
  rotations, root, zero shape, zero error (also with the joints' local axes
  permuted, i.e. a zero pose that is not a T-pose)."""
  frame_choices = _proper_axis_frames()
  rng = np.random.default_rng(seed + 10)
  frames = [np.eye(3) if axes == "identity" else
            frame_choices[rng.integers(len(frame_choices))]
            for _ in NAMES]
  local, root_rot, root_pos = _random_motion(64, seed)
  motion = bvh.parse_bvh(_smpl_rig_bvh(local, root_rot, root_pos, frames))
  preset = _rig_preset(frames, rotation_only=list(rotation_only))
  out = retarget.Retargeter(preset, body)(motion)

  assert out.mean_error < 1e-6
  # β = A⁺·δJ, δJ the float32 rounding of the body's 66 rest-joint coordinates
  # (≤ eps/2·0.92 each), A⁺'s rows of norm ≤ 143: |β| ≤ 143·√66·eps/2·0.92.
  np.testing.assert_allclose(out.betas, 0.0,
                             atol=143 * np.sqrt(66) * EPS / 2 * 0.92)
  got = Rotation.from_quat(np.roll(out.body_quats, -1, axis=-1).reshape(
      -1, 4)).as_matrix().reshape(local.shape)
  # float32 quaternions (≤ eps/2 per component) → R entries ≤ 8·eps/2.
  np.testing.assert_allclose(got, local, atol=1e-6)
  world = retarget.WORLD_FROM_CANONICAL
  root = Rotation.from_quat(np.roll(out.T_world_root[:, :4], -1,
                                    axis=-1)).as_matrix()
  np.testing.assert_allclose(root, world @ root_rot, atol=1e-6)
  np.testing.assert_allclose(out.T_world_root[:, 4:],
                             0.01 * root_pos @ world.T, atol=1e-6)
  # The retargeted joints are the body's own forward kinematics.
  fk = np.asarray(body.forward_kinematics(
      jnp.asarray(out.betas, jnp.float32),
      jnp.asarray(out.T_world_root, jnp.float32),
      jnp.asarray(out.body_quats, jnp.float32)))[..., 4:]
  np.testing.assert_allclose(out.joints, fk, atol=2e-5)


def test_shape_fit_recovers_scale(body):
  """A uniformly larger rig (β0 = 1.5 of the built-in body) is fitted."""
  frames = [np.eye(3)] * len(NAMES)
  local, root_rot, root_pos = _random_motion(5, 3)
  text = _smpl_rig_bvh(local, root_rot, root_pos, frames)
  scaled = []
  for line in text.splitlines():
    if line.strip().startswith("OFFSET"):
      values = np.array(line.split()[1:], float) * 1.06
      line = line.split("OFFSET")[0] + "OFFSET " + " ".join(map(str, values))
    scaled.append(line)
  motion = bvh.parse_bvh("\n".join(scaled) + "\n")
  out = retarget.Retargeter(_rig_preset(frames), body)(motion)
  rest = np.asarray(body.joints_rest(jnp.asarray(out.betas, jnp.float32)))
  expected = 1.06 * np.asarray(skeleton.REST_JOINTS)
  np.testing.assert_allclose(rest, expected, atol=3e-3)
  assert out.betas[0] == pytest.approx(1.5, abs=0.05)
  assert out.mean_error < 1e-3


def test_preset_errors(shared_data):
  content = json.loads((retarget.PRESET_DIR / "cmu.json").read_text())
  content["joints"]["head"] = "Skull"
  preset = retarget.preset_from_dict(content, "my_preset.json")
  motion = bvh.read_bvh(shared_data / "cmu/09_01.bvh.gz")
  with pytest.raises(retarget.PresetError) as info:
    retarget.Retargeter(preset, builtin_body())(motion)
  assert "09_01.bvh.gz" in str(info.value) and "Skull" in str(info.value)


def test_preset_lists_missing_joints():
  content = json.loads((retarget.PRESET_DIR / "cmu.json").read_text())
  del content["joints"]["head"], content["joints"]["left_wrist"]
  with pytest.raises(retarget.PresetError) as info:
    retarget.preset_from_dict(content, "mine.json")
  assert "mine.json" in str(info.value)
  assert "'head'" in str(info.value) and "'left_wrist'" in str(info.value)
  content = json.loads((retarget.PRESET_DIR / "bandai_namco.json").read_text())
  content["rest_axes"]["Hips"] = "+y+x+z"  # left-handed
  with pytest.raises(retarget.PresetError, match="right-handed"):
    retarget.preset_from_dict(content, "mine.json")
  with pytest.raises(retarget.PresetError, match="neither a shipped preset"):
    retarget.load_preset("no_such_preset")


def _cpf_forward_and_velocity(record):
  rot = Rotation.from_quat(np.roll(record.T_world_cpf[:, :4], -1, axis=-1))
  forward = rot.as_matrix()[:, :2, 2]
  velocity = np.gradient(record.T_world_root[:, 4:6], axis=0) * record.fps
  return forward, velocity


@pytest.mark.parametrize("preset, path, frames, max_error", [
    ("bandai_namco", "bandai_namco_2/train/dataset-2_walk_active_001.bvh.gz",
     60, 0.025),
    ("cmu", "cmu/08_01.bvh.gz", 241, 0.03),
])
def test_shared_clips(shared_data, body, preset, path, frames, max_error):
  motion = bvh.read_bvh(shared_data / path)
  if frames:  # Short clips keep the test fast.
    motion = bvh.BvhMotion(motion.skeleton, motion.frame_time,
                           motion.values[:frames], motion.source)
  retargeter = retarget.Retargeter(retarget.load_preset(preset), body)
  result = retargeter(motion)
  assert result.mean_error < max_error
  (record,) = retarget.records_from_retargeted(
      body, result, name="clip", source="bvh", split="train")
  assert record.fps == 30.0
  # CMU: the T-pose frame skipped, 240 frames at 120 fps give 60 at 30 fps.
  # Both give 60 poses, so both compile the same shapes. The first pose
  # only serves the first relative motion.
  assert record.num_frames == 59
  # A walking/running adult: CPF 1.3–1.6 m above the floor, facing the way
  # they move, level.
  height = record.height_from_floor[:, 0]
  assert 1.3 < np.median(height) < 1.6
  forward, velocity = _cpf_forward_and_velocity(record)
  cos = np.sum(forward * velocity, -1) / (
      np.linalg.norm(forward, axis=-1) * np.linalg.norm(velocity, axis=-1))
  assert np.median(cos) > 0.85
  up = Rotation.from_quat(np.roll(record.T_world_cpf[:, :4], -1,
                                  axis=-1)).as_matrix()[:, 2, 1]
  assert np.median(up) > 0.9
  # Toes in contact lie on the floor (1 cm on average, all under 4 cm).
  joints = record.joints_wrt_cpf
  quats = np.repeat(np.roll(record.T_world_cpf[:, :4], -1, axis=-1), 21, 0)
  world = Rotation.from_quat(quats).apply(joints.reshape(-1, 3)).reshape(
      joints.shape) + record.T_world_cpf[:, None, 4:]
  toes = np.array([skeleton.LEFT_FOOT, skeleton.RIGHT_FOOT]) - 1
  in_contact = record.contacts[:, toes] > 0.5
  heights = world[:, toes, 2][in_contact]
  assert heights.size > 5
  assert abs(np.mean(heights) - 0.01) < 0.01
  assert np.all(np.abs(heights) < 0.04)


def test_bandai_split_rule():
  rule = splits.rule_or_default(None,
                                retarget.load_preset("bandai_namco").split_rule)
  assert rule.split_of("train/dataset-2_walk_active_001.bvh.gz") == "train"
  assert rule.split_of("dataset-2_run_normal_010.bvh.gz") == "val"
  assert rule.split_of("dataset-2_run_youthful_010.bvh.gz") == "test"
  custom = splits.parse_split_rule("*_elderly_*=test, re:_walk_=val,*=train")
  assert custom.split_of("dataset-2_walk_elderly_001.bvh") == "test"
  assert custom.split_of("dataset-2_walk_active_001.bvh") == "val"
  assert custom.split_of("dataset-2_run_active_001.bvh") == "train"
  as_json = splits.parse_split_rule('{"02_*": "val", "*": "train"}')
  assert as_json.split_of("02_01.bvh.gz") == "val"
  with pytest.raises(splits.SplitRuleError, match="no split rule matches"):
    splits.parse_split_rule("*_walk_*=val").split_of("x_run_y.bvh")
  with pytest.raises(splits.SplitRuleError, match="must be one of"):
    splits.parse_split_rule("*=training")


@pytest.fixture()
def bvh_folder(tmp_path):
  """Two good rig clips and a truncated one, plus the rig's preset file."""
  frames = [np.eye(3)] * len(NAMES)
  folder = tmp_path / "clips"
  folder.mkdir()
  for i, name in enumerate(["a_walk_normal_001", "b_walk_active_001"]):
    local, root_rot, root_pos = _random_motion(60, i)
    (folder / f"{name}.bvh").write_text(
        _smpl_rig_bvh(local, root_rot, root_pos, frames))
  text = (folder / "a_walk_normal_001.bvh").read_text()
  (folder / "c_bad_active_001.bvh").write_text(text[:len(text) - 3000])
  preset = dict(name="smpl_rig", units_to_meters=0.01,
                joints={n: f"src_{n}" for n in NAMES},
                split_rule="*_normal_*=val,*=train")
  preset_path = tmp_path / "rig.json"
  preset_path.write_text(json.dumps(preset))
  return folder, str(preset_path)


def test_bad_file_fails_or_is_skipped(bvh_folder, body, tmp_path):
  folder, preset = bvh_folder
  with pytest.raises(bvh.BvhError) as info:
    list(retarget.iter_records(str(folder), preset, body))
  assert "c_bad_active_001.bvh" in str(info.value)
  assert "truncated" in str(info.value)

  # Through the dataset builder: nothing is left behind on failure ...
  out = tmp_path / "dataset"
  with pytest.raises(bvh.BvhError):
    tfds_builder.build(lambda: retarget.iter_records(str(folder), preset,
                                                     body), out)
  assert not (out / tfds_builder.NAME).exists()
  # ... and with skip_bad the good files are written, the bad one reported.
  report = batch_import.ImportReport()
  summary = tfds_builder.build(
      lambda: retarget.iter_records(str(folder), preset, body, skip_bad=True,
                                    mirror=True, report=report), out)
  assert summary.splits["val"]["sequences"] == 2  # a_… and its mirror
  assert summary.splits["train"]["sequences"] == 2
  assert [name for name, _ in report.skipped] == [
      str(folder / "c_bad_active_001.bvh")]
  assert report.imported == 2
