"""Tests for the body animation: camera maths, frame counts and pixels,
capsules drawn by depth, the recording's points, GIF/MP4 files, and reading
motion npz files."""

import sys

import imageio.v2 as imageio
import numpy as np
import pytest

import render_motions
from motiongrpo_jax import body as body_lib
from motiongrpo_jax import render
from motiongrpo_jax.body import skeleton
from motiongrpo_jax.render import gif_mp4
from motiongrpo_jax.render import motion_file
from motiongrpo_jax.render import scene_points
from motiongrpo_jax.render import skeleton_frames

_SIDES = (skeleton_frames.LEFT_COLOR, skeleton_frames.RIGHT_COLOR,
          skeleton_frames.CENTER_COLOR)


def _near(image, color, tol):
  target = np.asarray([round(255 * c) for c in color])
  return np.all(np.abs(image.astype(int) - target) <= tol, axis=-1)


def _count_near(image, color, tol=40):
  return int(np.sum(_near(image, color, tol)))


def test_camera_axes_by_hand():
  # az = 0, el = 0: the camera looks along −x, so right = +y, up = +z.
  right, up = skeleton_frames.camera_axes(0.0, 0.0)
  np.testing.assert_allclose(right, [0, 1, 0], atol=1e-12)
  np.testing.assert_allclose(up, [0, 0, 1], atol=1e-12)
  # az = 90°, el = 30°: back = (0, cos30, sin30); right = z × back = −x;
  # up = back × right = (0, −sin30, cos30).
  right, up = skeleton_frames.camera_axes(90.0, 30.0)
  np.testing.assert_allclose(right, [-1, 0, 0], atol=1e-12)
  np.testing.assert_allclose(up, [0, -0.5, np.sqrt(3) / 2], atol=1e-12)
  screen = skeleton_frames.project(np.array([[1.0, 2.0, 3.0]]),
                                   np.array([1.0, 0.0, 1.0]), right, up)
  # offset (0, 2, 2): right·offset = 0, up·offset = −1 + √3.
  np.testing.assert_allclose(screen, [[0.0, -1.0 + np.sqrt(3)]], atol=1e-12)


def test_render_frames_count_size_and_colours():
  motion = render_motions.walking_motion(num_frames=7)
  frames = list(skeleton_frames.render_frames(motion, stride=3, size=96))
  assert len(frames) == 3  # Frames 0, 3, 6.
  assert all(f.shape == (96, 96, 3) and f.dtype == np.uint8 for f in frames)
  # Both sides of the body and a contact dot are drawn.
  for colour in (skeleton_frames.LEFT_COLOR, skeleton_frames.RIGHT_COLOR,
                 skeleton_frames.CONTACT_COLOR):
    assert _count_near(frames[0], colour) > 5, colour
  truth = render_motions.walking_motion(num_frames=5, label="gt")
  side = list(skeleton_frames.render_frames(
      motion, truth, layout="side_by_side", stride=4, size=80))
  assert len(side) == 2 and side[0].shape == (80, 160, 3)
  # The right panel shows the ground truth alone: grey, no side colours.
  assert _count_near(side[0][:, 80:], skeleton_frames.LEFT_COLOR, 30) == 0
  assert _count_near(side[0][:, 80:], skeleton_frames.GROUND_TRUTH_COLOR,
                     10) > 5
  with pytest.raises(ValueError, match="layout"):
    next(skeleton_frames.render_frames(motion, layout="grid"))


def test_capsules_cover_area_and_near_bones_hide_far_ones():
  motion = render_motions.walking_motion(num_frames=1)
  size, radius = 360, 1.4
  frame = next(skeleton_frames.render_frames(motion, size=size,
                                             radius=radius))
  # The most that lines 2.5 points wide (the old skeleton) could cover: the
  # bones' projected length times the width.
  right, up = skeleton_frames.camera_axes(-60.0, 20.0)
  screen = skeleton_frames.project(motion.joints[0], np.zeros(3), right, up)
  parents = list(skeleton.PARENTS[1:])
  length = np.linalg.norm(screen[1:] - screen[parents], axis=-1).sum()
  line_area = length * size / (2 * radius) * 2.5 * 100 / 72
  shades = [s for c in _SIDES for s in skeleton_frames.shades(c)]
  body = np.any([_near(frame, s, 20) for s in shades], axis=0).sum()
  assert body > 2.5 * line_area, (body, line_area)  # measured 3.8×
  # Level with the body and looking at its left side (+y), the left half
  # exactly hides the right half, which is drawn first: no blue shows; from
  # the other side no red.
  seen = {az: next(skeleton_frames.render_frames(
      motion, size=size, azimuth_deg=az, elevation_deg=0.0))
          for az in (90.0, -90.0)}
  assert _count_near(seen[90.0], skeleton_frames.LEFT_COLOR) > 200
  assert _count_near(seen[90.0], skeleton_frames.RIGHT_COLOR) == 0
  assert _count_near(seen[-90.0], skeleton_frames.RIGHT_COLOR) > 200
  assert _count_near(seen[-90.0], skeleton_frames.LEFT_COLOR) == 0


def test_points_coloured_by_height_with_a_cutaway():
  motion = render_motions.walking_motion(num_frames=1)
  palette = scene_points.palette()

  def frame(points):
    return next(skeleton_frames.render_frames(motion, size=200,
                                              points=points))

  def levels(wall_y):
    return [_count_near(frame(render_motions.wall_points(wall_y)), c, 12)
            for c in palette]

  # A wall behind the body (the camera is at −y): its bands of 0.15 m show
  # up to the top of the view (~2.2 m).
  behind = levels(2.0)
  assert min(behind[:12]) > 20, behind
  # The same wall between the camera and the body: only its foot (up to
  # 0.5 m, bands 0-3; band 4 and 5 colours are within the tolerance of 3).
  front = levels(-1.5)
  assert min(front[:4]) > 20 and sum(front[6:]) == 0, front
  # Farther than POINT_RADIUS view radii from the centre: not drawn.
  np.testing.assert_array_equal(frame(render_motions.wall_points(10.0)),
                                frame(None))


def test_gif_and_mp4_files(tmp_path):
  motion = render_motions.walking_motion(num_frames=6)
  gif = render.render_motion(motion, tmp_path / "m.gif", stride=2, size=64)
  frames = imageio.mimread(gif)
  assert len(frames) == 3 and frames[0].shape[:2] == (64, 64)
  # 30 fps / stride 2: 1/15 s per frame (GIF stores hundredths: 60-70 ms).
  duration = imageio.get_reader(gif).get_meta_data()["duration"]
  assert 60 <= duration <= 70
  try:
    gif_mp4.require_ffmpeg()
  except ImportError:
    pytest.skip("imageio-ffmpeg not installed: MP4 not tested")
  mp4 = render.render_motion(motion, tmp_path / "m.mp4", size=64)
  reader = imageio.get_reader(mp4)
  assert reader.count_frames() == 6
  assert reader.get_meta_data()["size"] == (64, 64)


def test_mp4_without_ffmpeg_says_how_to_install(monkeypatch, tmp_path):
  monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
  with pytest.raises(ImportError, match="pip install imageio-ffmpeg"):
    render.render_motion(render_motions.walking_motion(), tmp_path / "m.mp4")
  assert not (tmp_path / "m.mp4").exists()


def test_unknown_suffix(tmp_path):
  with pytest.raises(ValueError, match=r"\.avi"):
    render.render_motion(render_motions.walking_motion(), tmp_path / "m.avi")


def test_load_motion_from_joints_and_from_egoallo_layout(tmp_path):
  joints = np.stack([render_motions.walking_joints(4, 0.2),
                     render_motions.walking_joints(4, 0.5)])  # (2, 4, 22, 3)
  cpf = np.zeros((4, 7))
  cpf[:, 0] = 1.0
  cpf[:, 4:] = [[0.0, 0.0, 1.7]] * 4
  np.savez(tmp_path / "a.npz", joints_world=joints, Ts_world_cpf=cpf,
           floor_z=0.2, fps=15.0)
  motion = render.load_motion(tmp_path / "a.npz", sample=1)
  np.testing.assert_array_equal(motion.joints, joints[1])
  np.testing.assert_array_equal(motion.head, cpf[:, 4:])
  assert (motion.floor_z, motion.fps, motion.contacts) == (0.2, 15.0, None)
  with pytest.raises(ValueError, match="sample 2 out of range"):
    render.load_motion(tmp_path / "a.npz", sample=2)

  # EgoAllo's layout (no joints_world): posed with the built-in body; the
  # floor defaults to the lowest foot joint; the head line is the head joint.
  rng = np.random.default_rng(0)
  root = np.concatenate([np.tile([1.0, 0, 0, 0], (1, 3, 1)),
                         rng.normal(size=(1, 3, 3))], axis=-1)
  quats = rng.normal(size=(1, 3, 21, 4))
  quats /= np.linalg.norm(quats, axis=-1, keepdims=True)
  betas = np.zeros((1, 3, 16))
  np.savez(tmp_path / "b.npz", Ts_world_root=root, body_quats=quats,
           betas=betas)
  motion = render.load_motion(tmp_path / "b.npz")
  expected = np.asarray(body_lib.builtin_body().forward_kinematics(
      betas[0], root[0], quats[0]))[:, :22, 4:]
  np.testing.assert_allclose(motion.joints, expected, atol=1e-5)
  np.testing.assert_allclose(motion.head, expected[:, skeleton.HEAD])
  assert motion.floor_z == pytest.approx(
      expected[:, [skeleton.LEFT_FOOT, skeleton.RIGHT_FOOT], 2].min())
  assert not motion_file.has_unguided(tmp_path / "b.npz")
  assert motion_file.load_points(tmp_path / "b.npz") is None
  with pytest.raises(ValueError, match="no unguided samples"):
    render.load_motion(tmp_path / "b.npz", unguided=True)
  np.savez(tmp_path / "c.npz", something=np.zeros(3))
  with pytest.raises(ValueError, match="no 'joints_world'"):
    render.load_motion(tmp_path / "c.npz")
  with pytest.raises(ValueError, match=r"expected \(T, 22, 3\)"):
    motion_file.Motion(joints=np.zeros((3, 21, 3)), head=np.zeros((3, 3)),
                       floor_z=0.0)


def test_load_unguided_samples_and_points(tmp_path):
  guided = np.stack([render_motions.walking_joints(4)] * 2)  # (2, 4, 22, 3)
  unguided = render_motions.arms_down(guided.reshape(8, 22, 3)).reshape(
      guided.shape)
  points = np.array([[0.0, 1.0, 2.0], [np.nan, 0.0, 0.0], [1.0, 1.0, 1.0]])
  np.savez(tmp_path / "out.npz", joints_world=guided,
           unguided_joints_world=unguided, contacts=np.zeros((2, 4, 21)),
           unguided_contacts=np.ones((2, 4, 21)), semidense_points=points)
  assert motion_file.has_unguided(tmp_path / "out.npz")
  motion = render.load_motion(tmp_path / "out.npz", 1, unguided=True)
  np.testing.assert_array_equal(motion.joints, unguided[1])
  np.testing.assert_array_equal(motion.contacts, 1.0)
  assert motion.label == "out[1] unguided"
  np.testing.assert_array_equal(render.load_motion(tmp_path / "out.npz").joints,
                                guided[0])
  # Rows with a non-finite coordinate are dropped.
  np.testing.assert_array_equal(motion_file.load_points(tmp_path / "out.npz"),
                                points[[0, 2]])
  np.savez(tmp_path / "bad.npz", joints_world=guided,
           semidense_points=np.zeros((3, 2)))
  with pytest.raises(ValueError,
                     match=r"semidense_points has shape \(3, 2\)"):
    motion_file.load_points(tmp_path / "bad.npz")
