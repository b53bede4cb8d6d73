"""Aria MPS wrist estimates as world wrist targets for guidance.

Input: `hand_tracking/wrist_and_palm_poses.csv` of an MPS output, one row per
SLAM camera frame:

- `tracking_timestamp_us`: device time, the clock of the trajectory.
- `{left,right}_tracking_confidence`: in (0, 1]; ≤ 0 (MPS writes -1) means
  no estimate for that hand in that row.
- `t{x,y,z}_{left,right}_{wrist,palm}_device`: wrist and palm positions in
  the device frame (metres).
- `n{x,y,z}_{left,right}_{palm,wrist}_device`: their normals (files of MPS
  hand tracking v2 on; optional).

Read by projectaria-tools or the built-in CSV reader (`reader`, as in
`aria.load_mps`).

Targets (`wrist_targets`): for each frame of a trajectory, the estimate
nearest in time, valid when it is at most `MAX_OFFSET_FRAMES` frames away
and its confidence is > 0; its world position is
T_world_device(frame) · p_wrist_device. MPS gives positions and normals, not
the orientation of the body's wrist frame, so the rotation targets are
identity and masked off.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import NamedTuple

import numpy as np

from motiongrpo_jax.data import aria

WRIST_FILE = "wrist_and_palm_poses.csv"
HAND_FOLDER = "hand_tracking"
SIDES = ("left", "right")


def _xyz(prefix: str, name: str) -> tuple[str, ...]:
  return tuple(f"{prefix}{axis}_{name}_device" for axis in "xyz")


# The file's columns in its order: per side a confidence, the wrist and the
# palm position; then the normals, per side palm then wrist.
POSE_COLUMNS = ("tracking_timestamp_us",) + sum(
    ((f"{side}_tracking_confidence",) + _xyz("t", f"{side}_wrist")
     + _xyz("t", f"{side}_palm") for side in SIDES), ())
NORMAL_COLUMNS = sum((_xyz("n", f"{side}_{part}") for side in SIDES
                      for part in ("palm", "wrist")), ())
# Largest time from a frame to the estimate used for it, in frames.
MAX_OFFSET_FRAMES = 1.0


@dataclasses.dataclass(frozen=True)
class WristAndPalmPoses:
  """MPS wrist and palm estimates sorted by time; side axis (left, right).

  Attributes:
    timestamps_us: (N,) device time.
    confidence: (N, 2); ≤ 0: no estimate.
    wrist_device: (N, 2, 3) metres, device frame.
    palm_device: (N, 2, 3).
    wrist_normal_device: (N, 2, 3), or None (a file without normals).
    palm_normal_device: (N, 2, 3), or None.
  """
  timestamps_us: np.ndarray
  confidence: np.ndarray
  wrist_device: np.ndarray
  palm_device: np.ndarray
  wrist_normal_device: np.ndarray | None
  palm_normal_device: np.ndarray | None


class WristTargets(NamedTuple):
  """World wrist targets of guidance, per frame and side (left, right).

  Attributes:
    T_world_wrist: (T, 2, 7) `wxyz_xyz`; rotation identity (not estimated).
    position_mask: (T, 2) valid positions.
    rotation_mask: (T, 2) all False.
  """
  T_world_wrist: np.ndarray
  position_mask: np.ndarray
  rotation_mask: np.ndarray


def find_wrist_file(mps_input: str | os.PathLike) -> pathlib.Path | None:
  """The `wrist_and_palm_poses.csv` of an MPS recording, or None.

  Args:
    mps_input: what `aria.load_mps` takes: the MPS folder, its `slam/`
      folder or the trajectory CSV. Looked for in the MPS folder's
      `hand_tracking/`, then beside the trajectory.
  """
  try:
    trajectory, _ = aria.find_mps_files(mps_input)
  except aria.AriaError:
    return None
  slam = trajectory.parent
  root = slam.parent if slam.name in aria.SLAM_FOLDERS else slam
  for folder in (root / HAND_FOLDER, root, slam):
    if (folder / WRIST_FILE).is_file():
      return folder / WRIST_FILE
  return None


def _read_csv(path) -> tuple[np.ndarray, np.ndarray | None]:
  """The built-in reader: rows of `POSE_COLUMNS` and of `NORMAL_COLUMNS`
  (None when the file has not all of them)."""
  has_normals = set(NORMAL_COLUMNS) <= set(aria.read_csv_header(path))
  values = aria.read_csv_columns(
      path, POSE_COLUMNS + (NORMAL_COLUMNS if has_normals else ()))
  count = len(POSE_COLUMNS)
  return values[:, :count], values[:, count:] if has_normals else None


def read_wrist_and_palm_poses(path: str | os.PathLike,
                              reader: str = aria.DEFAULT_READER
                              ) -> WristAndPalmPoses:
  """`wrist_and_palm_poses.csv` → its estimates.

  Raises:
    AriaError: naming the file (and column and row): unreadable, a missing
      column or a bad or non-finite value.
  """
  # Checked for both readers: projectaria-tools' parser fills a missing
  # column with zeros or garbage, unreported.
  missing = [c for c in POSE_COLUMNS if c not in aria.read_csv_header(path)]
  if missing:
    raise aria.AriaError(f"{os.fspath(path)}: missing columns {missing}")
  rows, normals = aria.read_with(reader, path, _read_csv,
                                 "read_wrist_and_palm_poses")
  order = np.argsort(rows[:, 0], kind="stable")
  sides = rows[order, 1:].reshape(-1, 2, 7)  # confidence, wrist, palm
  if normals is not None:
    normals = normals[order].reshape(-1, 2, 2, 3)  # side, (palm, wrist)
  return WristAndPalmPoses(
      timestamps_us=rows[order, 0], confidence=sides[..., 0],
      wrist_device=sides[..., 1:4], palm_device=sides[..., 4:7],
      wrist_normal_device=None if normals is None else normals[:, :, 1],
      palm_normal_device=None if normals is None else normals[:, :, 0])


def wrist_targets(poses: WristAndPalmPoses,
                  trajectory: aria.AriaTrajectory) -> WristTargets:
  """World wrist targets at the frames of a trajectory (module docstring).

  Args:
    poses: the estimates.
    trajectory: T frames with their `T_world_device`, on the same clock.

  Returns:
    The targets of the T frames.
  """
  frame_us = trajectory.start_timestamp_us + trajectory.times * 1e6  # (T,)
  stamps = poses.timestamps_us
  after = np.searchsorted(stamps, frame_us).clip(0, len(stamps) - 1)
  before = (after - 1).clip(0)
  nearest = np.where(np.abs(stamps[before] - frame_us)
                     <= np.abs(stamps[after] - frame_us), before, after)
  close = (np.abs(stamps[nearest] - frame_us)
           <= MAX_OFFSET_FRAMES * 1e6 / trajectory.fps)
  mask = close[:, None] & (poses.confidence[nearest] > 0)  # (T, 2)
  identity = np.broadcast_to([1.0, 0.0, 0.0, 0.0], mask.shape + (4,))
  # The wrist positions as translations composed onto T_world_device.
  world = aria.compose(
      trajectory.T_world_device[:, None],
      np.concatenate([identity, poses.wrist_device[nearest]], axis=-1))
  return WristTargets(
      T_world_wrist=np.concatenate([identity, world[..., 4:]], axis=-1),
      position_mask=mask, rotation_mask=np.zeros_like(mask))
