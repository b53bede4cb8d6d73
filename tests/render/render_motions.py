"""Small synthetic motions shared by the render tests (numpy only)."""

import numpy as np

from motiongrpo_jax.body import skeleton
from motiongrpo_jax.render import motion_file


def walking_joints(num_frames: int, floor_z: float = 0.0) -> np.ndarray:
  """(T, 22, 3) T-pose skeleton standing on `floor_z`, moving along +x.

  The canonical body (+y up, +z forward, +x left) is turned so that it
  faces world +x with +z up: world = (z, x, y) of the body coordinates.
  """
  rest = np.asarray(skeleton.REST_JOINTS, np.float64)
  world = np.stack([rest[:, 2], rest[:, 0], rest[:, 1]], axis=-1)
  world[:, 2] += floor_z - skeleton.REST_SOLE_Y
  step = np.zeros((num_frames, 1, 3))
  step[:, 0, 0] = 0.03 * np.arange(num_frames)
  return world[None] + step


def arms_down(joints: np.ndarray) -> np.ndarray:
  """(T, 22, 3) the same body with its arms hanging from the shoulders."""
  joints = joints.copy()
  for side in ("left", "right"):
    shoulder = joints[:, skeleton.JOINT_NAMES.index(f"{side}_shoulder")]
    for part, drop in (("elbow", 0.28), ("wrist", 0.53)):
      joints[:, skeleton.JOINT_NAMES.index(f"{side}_{part}")] = (
          shoulder - [0.0, 0.0, drop])
  return joints


def wall_points(y: float, floor_z: float = 0.0, spacing: float = 0.1
                ) -> np.ndarray:
  """(P, 3) a grid of points on the wall y = `y`: x in [-1, 3), heights
  0.05 .. 2.35 m above the floor."""
  xs, zs = np.meshgrid(np.arange(-1.0, 3.0, spacing),
                       np.arange(0.05, 2.4, spacing))
  return np.stack([xs.ravel(), np.full(xs.size, y), floor_z + zs.ravel()],
                  axis=-1)


def walking_motion(num_frames: int = 7, floor_z: float = 0.0,
                   label: str = "walk", down: bool = False
                   ) -> motion_file.Motion:
  """The T-pose walk (`walking_joints`), or with `down` its arms down; the
  left foot in contact throughout."""
  joints = walking_joints(num_frames, floor_z)
  if down:
    joints = arms_down(joints)
  contacts = np.zeros((num_frames, 21))
  contacts[:, skeleton.LEFT_FOOT - 1] = 1.0
  return motion_file.Motion(joints=joints, head=joints[:, skeleton.HEAD],
                            floor_z=floor_z, fps=30.0, contacts=contacts,
                            label=label)
