"""MPS wrist estimates: both readers, world targets at the trajectory's
frames, masks, the file's place in an MPS folder, bad input."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from motiongrpo_jax.data import aria
from motiongrpo_jax.data import aria_hands
from motiongrpo_jax.data import aria_tools

from conftest import write_trajectory_csv
from conftest import write_wrist_csv

NEEDS_TOOLS = pytest.mark.skipif(
    not aria_tools.available(),
    reason="projectaria-tools not installed (pip install '.[aria]')")
READERS = ["builtin", pytest.param("projectaria_tools", marks=NEEDS_TOOLS)]
T0_US = 7_000_000
NUM_FRAMES = 30  # 1 s at 30 fps
GAP = list(range(10, 15))  # frames without an estimate within a frame
LEFT_MISSING, RIGHT_ZERO = 3, 5  # confidence -1 (left), 0 (right)


def _T_world_device(times_s):
  """(N, 7): device +x down, yawing at 0.5 rad/s, walking 1 m/s along x.

  A constant-rate rotation about a fixed axis: slerp between samples is
  exact, so resampled poses are these up to float rounding.
  """
  down = Rotation.from_euler("y", 90, degrees=True)
  xyzw = (Rotation.from_euler("z", 0.5 * times_s[:, None]) * down).as_quat()
  position = np.stack([times_s, np.full_like(times_s, 0.1),
                       np.full_like(times_s, 1.5)], -1)
  return np.c_[xyzw[:, 3:], xyzw[:, :3], position]


def _to_device(T_world_device, p_world):
  """(T, 2, 3) world points in the device frames of (T, 7) poses."""
  rotation = Rotation.from_quat(np.roll(T_world_device[:, :4], -1, axis=-1))
  return np.stack([rotation.inv().apply(p_world[:, side]
                                        - T_world_device[:, 4:])
                   for side in range(2)], axis=1)


def _recording(root, normals=True):
  """An MPS folder: a 1 kHz trajectory, and wrist estimates 5 ms from each
  30 fps frame (before it up to GAP, after it from GAP on; none for the
  frames in GAP, so their nearest estimates are 38 ms away) holding the
  wrists of a walking body in the device frame of the frame's pose; the
  left hand missing at one frame (confidence -1), the right at confidence 0
  at another.

  Returns:
    (folder, world wrists (T, 2, 3), expected mask (T, 2)).
  """
  (root / "slam").mkdir(parents=True)
  (root / aria_hands.HAND_FOLDER).mkdir()
  stamps = T0_US + np.arange(0, 1_020_000, 1000)
  write_trajectory_csv(root / "slam" / aria.TRAJECTORY_FILE, stamps,
                       _T_world_device((stamps - T0_US) * 1e-6))
  times = np.arange(NUM_FRAMES) / 30
  swing = 0.2 * np.sin(2 * np.pi * times)
  world = np.stack([np.c_[times + swing, np.full(NUM_FRAMES, 0.3),
                          np.full(NUM_FRAMES, 0.9)],
                    np.c_[times - swing, np.full(NUM_FRAMES, -0.1),
                          np.full(NUM_FRAMES, 0.9)]], axis=1)
  device = _to_device(_T_world_device(times), world)
  confidence = np.full((NUM_FRAMES, 2), 0.9)
  confidence[LEFT_MISSING, 0], confidence[RIGHT_ZERO, 1] = -1.0, 0.0
  rows = [k for k in range(NUM_FRAMES) if k not in GAP]
  write_wrist_csv(root / aria_hands.HAND_FOLDER / aria_hands.WRIST_FILE,
                  T0_US + np.round(times[rows] * 1e6)
                  + np.where(np.array(rows) < GAP[0], -5000, 5000),
                  confidence[rows], device[rows], device[rows] + 0.05,
                  normals=normals)
  mask = confidence > 0
  mask[GAP] = False
  return root, world, mask


@pytest.mark.parametrize("reader", READERS)
def test_world_wrists_at_the_frames(tmp_path, reader):
  """Targets are T_world_device(frame) · p_device: the world wrists to
  1e-9 m (float64 resampling of poses written with 12 digits: measured
  2.5e-13 with either reader);
  frames without a close estimate or with confidence ≤ 0 are masked, and
  every orientation is masked (MPS has none)."""
  folder, world, mask = _recording(tmp_path)
  with pytest.warns(UserWarning):  # no points: the floor prior
    trajectory = aria.load_mps(folder)
  assert len(trajectory.times) == NUM_FRAMES + 1  # 1.019 s of poses
  path = aria_hands.find_wrist_file(folder)
  poses = aria_hands.read_wrist_and_palm_poses(path, reader)
  targets = aria_hands.wrist_targets(poses, trajectory)
  got = targets.position_mask[:NUM_FRAMES]
  np.testing.assert_array_equal(got, mask)
  np.testing.assert_allclose(targets.T_world_wrist[:NUM_FRAMES, :, 4:][mask],
                             world[mask], atol=1e-9)
  np.testing.assert_array_equal(targets.T_world_wrist[..., :4],
                                np.broadcast_to([1.0, 0, 0, 0], (
                                    NUM_FRAMES + 1, 2, 4)))
  assert not targets.rotation_mask.any()
  assert targets.position_mask.shape == targets.rotation_mask.shape == (
      NUM_FRAMES + 1, 2)


@NEEDS_TOOLS
@pytest.mark.parametrize("normals", [True, False])
def test_readers_agree(tmp_path, normals):
  """Same timestamps and, where a hand is present, the same confidence,
  positions and normals (both parse the text into float64: equal to 1e-15;
  projectaria-tools reports a missing hand, which we keep with its
  confidence ≤ 0, as absent)."""
  folder, _, _ = _recording(tmp_path, normals)
  path = aria_hands.find_wrist_file(folder)
  ours = aria_hands.read_wrist_and_palm_poses(path, "builtin")
  theirs = aria_hands.read_wrist_and_palm_poses(path, "projectaria_tools")
  np.testing.assert_array_equal(ours.timestamps_us, theirs.timestamps_us)
  present = ours.confidence > 0
  np.testing.assert_array_equal(theirs.confidence > 0, present)
  names = ["confidence", "wrist_device", "palm_device"]
  if normals:
    names += ["wrist_normal_device", "palm_normal_device"]
  else:
    assert ours.wrist_normal_device is None is theirs.wrist_normal_device
  for name in names:
    np.testing.assert_allclose(getattr(theirs, name)[present],
                               getattr(ours, name)[present], rtol=0,
                               atol=1e-12, err_msg=name)


def test_find_wrist_file(tmp_path):
  folder, _, _ = _recording(tmp_path / "mps")
  expected = folder / aria_hands.HAND_FOLDER / aria_hands.WRIST_FILE
  for given in (folder, folder / "slam",
                folder / "slam" / aria.TRAJECTORY_FILE):
    assert aria_hands.find_wrist_file(given) == expected
  expected.unlink()
  assert aria_hands.find_wrist_file(folder) is None
  assert aria_hands.find_wrist_file(tmp_path / "nowhere") is None


@pytest.mark.parametrize("reader", ["auto", "builtin"])
def test_bad_wrist_file_names_file_column_and_row(tmp_path, reader):
  folder, _, _ = _recording(tmp_path)
  path = aria_hands.find_wrist_file(folder)
  lines = path.read_text().splitlines()
  column = lines[0].split(",").index("ty_right_wrist_device")
  spoilt = lines[4].split(",")
  spoilt[column] = "nan"
  path.write_text("\n".join(lines[:4] + [",".join(spoilt)] + lines[5:]))
  with pytest.raises(aria.AriaError, match=r"wrist_and_palm_poses.csv: 1 "
                     r"non-finite values, first in column "
                     r"'ty_right_wrist_device' of data row 4"):
    aria_hands.read_wrist_and_palm_poses(path, reader)
  header = lines[0].replace("left_tracking_confidence", "left_confidence")
  path.write_text("\n".join([header] + lines[1:]))
  with pytest.raises(aria.AriaError, match=r"wrist_and_palm_poses.csv: "
                     r"missing columns \['left_tracking_confidence'\]"):
    aria_hands.read_wrist_and_palm_poses(path, reader)


@NEEDS_TOOLS
def test_projectaria_tools_reader_errors(tmp_path):
  """A partial read is an error quoting projectaria-tools; a missing column
  (which its parser would fill silently) is checked first."""
  folder, _, _ = _recording(tmp_path)
  path = aria_hands.find_wrist_file(folder)
  lines = path.read_text().splitlines()
  path.write_text("\n".join(lines[:4] + [lines[4].replace(",0.9,", ",abc,", 1)]
                            + lines[5:]))
  with pytest.raises(aria.AriaError,
                     match=r"projectaria-tools read 3 of 25 rows \(.*abc"):
    aria_hands.read_wrist_and_palm_poses(path, "projectaria_tools")
  column = lines[0].split(",").index("tz_right_wrist_device")
  path.write_text("\n".join(
      ",".join(v for i, v in enumerate(line.split(",")) if i != column)
      for line in lines))
  with pytest.raises(aria.AriaError, match=r"wrist_and_palm_poses.csv: "
                     r"missing columns \['tz_right_wrist_device'\]"):
    aria_hands.read_wrist_and_palm_poses(path, "projectaria_tools")
