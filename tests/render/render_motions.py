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


def walking_motion(num_frames: int = 7, floor_z: float = 0.0,
                   label: str = "walk") -> motion_file.Motion:
  joints = walking_joints(num_frames, floor_z)
  contacts = np.zeros((num_frames, 21))
  contacts[:, skeleton.LEFT_FOOT - 1] = 1.0
  return motion_file.Motion(joints=joints, head=joints[:, skeleton.HEAD],
                            floor_z=floor_z, fps=30.0, contacts=contacts,
                            label=label)
