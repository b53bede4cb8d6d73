"""Tests of the BVH parser and source-skeleton forward kinematics."""

import gzip

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from motiongrpo_jax.data import bvh

# Root with positions then Z X Y rotations; a child with only Y and X
# rotations (in that order); a grandchild with a position channel and a
# Z rotation; an End Site.
SMALL = """HIERARCHY
ROOT Hips
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
  JOINT Spine
  {
    OFFSET 0 10 0
    CHANNELS 2 Yrotation Xrotation
    JOINT Head
    {
      OFFSET 0 5 0
      CHANNELS 2 Xposition Zrotation
      End Site
      {
        OFFSET 0 3 0
      }
    }
  }
}
MOTION
Frames: 2
Frame Time: 0.0333333
1 2 3 0 0 0 0 0 7 0
1 2 3 90 0 0 90 0 7 90
"""


def test_parse_structure():
  motion = bvh.parse_bvh(SMALL, source="small.bvh")
  skel = motion.skeleton
  assert skel.names == ("Hips", "Spine", "Head")
  assert skel.parents == (-1, 0, 1)
  assert skel.num_channels == 10
  assert skel.channels[1] == ("Yrotation", "Xrotation")
  assert len(skel.end_sites) == 1 and skel.end_sites[0][0] == 2
  np.testing.assert_allclose(skel.end_sites[0][1], [0, 3, 0])
  assert motion.num_frames == 2
  assert motion.fps == pytest.approx(30.0, rel=1e-5)


def test_forward_kinematics_by_hand():
  motion = bvh.parse_bvh(SMALL)
  rot, pos = bvh.forward_kinematics(motion)
  # Frame 0: root at (1, 2, 3); Spine 10 up; Head's Xposition channel (7)
  # replaces its OFFSET x (0), so Head = Spine + (7, 5, 0).
  np.testing.assert_allclose(pos[0], [[1, 2, 3], [1, 12, 3], [8, 17, 3]],
                             atol=1e-12)
  # Frame 1: root Rz(90°) maps y → −x: Spine at (1 − 10, 2, 3). Spine's
  # Ry(90°) then Rx(0): its frame is Rz(90°)·Ry(90°); Head offset (7, 5, 0)
  # in that frame: Ry(90°)(7, 5, 0) = (0, 5, −7), Rz(90°) → (−5, 0, −7).
  np.testing.assert_allclose(pos[1, 1], [-9, 2, 3], atol=1e-12)
  np.testing.assert_allclose(pos[1, 2], [-14, 2, -4], atol=1e-12)
  expected = (Rotation.from_euler("z", 90, degrees=True) *
              Rotation.from_euler("y", 90, degrees=True) *
              Rotation.from_euler("z", 90, degrees=True)).as_matrix()
  np.testing.assert_allclose(rot[1, 2], expected, atol=1e-12)


@pytest.mark.parametrize("order", ["ZXY", "ZYX", "XYZ", "YZX"])
def test_euler_order_is_channel_order(order):
  channels = " ".join(f"{a}rotation" for a in order)
  text = f"""HIERARCHY
ROOT A
{{
  OFFSET 0 0 0
  CHANNELS 3 {channels}
  End Site
  {{
    OFFSET 1 0 0
  }}
}}
MOTION
Frames: 1
Frame Time: 0.01
30 -50 70
"""
  rot, _ = bvh.local_transforms(bvh.parse_bvh(text))
  # Intrinsic rotations in channel order: scipy's upper-case sequences.
  expected = Rotation.from_euler(order, [30, -50, 70], degrees=True)
  np.testing.assert_allclose(rot[0, 0], expected.as_matrix(), atol=1e-12)


def test_gzip_and_plain_read_alike(tmp_path):
  plain, packed = tmp_path / "a.bvh", tmp_path / "a.bvh.gz"
  plain.write_text(SMALL)
  packed.write_bytes(gzip.compress(SMALL.encode()))
  a, b = bvh.read_bvh(plain), bvh.read_bvh(packed)
  np.testing.assert_array_equal(a.values, b.values)
  assert b.source == str(packed)


def _error(tmp_path, text, name="bad.bvh"):
  path = tmp_path / name
  path.write_text(text)
  with pytest.raises(bvh.BvhError) as info:
    bvh.read_bvh(path)
  message = str(info.value)
  assert str(path) in message
  return message


def test_truncated_motion(tmp_path):
  message = _error(tmp_path, SMALL.rsplit("\n", 2)[0] + "\n")
  assert "truncated" in message and "2 frames" in message


def test_truncated_hierarchy(tmp_path):
  message = _error(tmp_path, SMALL.split("MOTION")[0][:120])
  assert "truncated" in message


def test_wrong_channel_count_in_a_frame(tmp_path):
  message = _error(tmp_path, SMALL.replace("1 2 3 0 0 0 0 0 7 0",
                                           "1 2 3 0 0 0 0 0 7 0 0"))
  assert "line 24" in message and "11 values" in message
  assert "10 channels" in message


def test_channel_count_disagrees_with_names(tmp_path):
  message = _error(tmp_path, SMALL.replace("CHANNELS 2 Yrotation Xrotation",
                                           "CHANNELS 3 Yrotation Xrotation"))
  assert "CHANNELS 3" in message and "Spine" in message


def test_nan_values(tmp_path):
  message = _error(tmp_path, SMALL.replace("90 0 7 90", "90 nan 7 90"))
  assert "non-finite" in message and "frame 1" in message
  assert "Spine Xrotation" in message


def test_unknown_channel(tmp_path):
  message = _error(tmp_path, SMALL.replace("Xposition Zrotation",
                                           "Wposition Zrotation"))
  assert "Wposition" in message


def test_shared_files_parse(shared_data):
  bandai = bvh.read_bvh(
      shared_data / "bandai_namco_2/train/dataset-2_walk_active_001.bvh.gz")
  assert len(bandai.skeleton.names) == 22
  assert bandai.skeleton.num_channels == 132
  assert bandai.fps == pytest.approx(30.0, rel=1e-4)
  _, pos = bvh.forward_kinematics(bandai)
  head = pos[:, bandai.skeleton.index("Head"), 1] * 0.01
  toes = pos[:, [bandai.skeleton.index("Toes_L"),
                 bandai.skeleton.index("Toes_R")], 1] * 0.01
  # README: Head ~1.34–1.38 m in walk clips, lowest toe joint ~4.2 cm.
  assert 1.30 < head.mean() < 1.42
  assert 0.03 < toes.min() < 0.055

  cmu = bvh.read_bvh(shared_data / "cmu/09_01.bvh.gz")
  assert len(cmu.skeleton.names) == 31
  assert cmu.skeleton.num_channels == 96
  assert cmu.skeleton.channels[1] == ("Zrotation", "Yrotation", "Xrotation")
  assert cmu.fps == pytest.approx(120.0, rel=1e-3)
  assert cmu.num_frames == 149
