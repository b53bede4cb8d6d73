"""projectaria-tools behind the Aria readers (`pip install .[aria]`).

Each reader returns what its built-in counterpart in `aria` / `aria_hands`
returns, so the code after reading is shared. projectaria-tools' MPS readers
(`projectaria_tools.core.mps`: `read_closed_loop_trajectory`,
`read_global_point_cloud`, `hand_tracking.read_wrist_and_palm_poses`) log a
parse error from C++ and return the rows read until then, so a read counts
only when it returns one item per data row; the C++ log is captured (it
bypasses Python's streams) and quoted in the error otherwise.

The device calibration (`T_device_cpf`) comes from a VRS file
(`data_provider.create_vrs_data_provider(...).get_device_calibration()`) or a
factory calibration JSON (`calibration.device_calibration_from_json_string`),
then `DeviceCalibration.get_transform_device_cpf`: the CAD value of the
unit's subtype or the CPF aligned by SVD to the unit's calibrated camera
positions (`cpf_type=CpfType.CadBased/SvdBased` in projectaria-tools 2.3.0;
`use_svd=False/True` in the source `shared/reference/aria_cpf.md` cites).
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import os
import pathlib
import sys
import tempfile
import warnings

import numpy as np

from motiongrpo_jax.data import aria_csv

_US = datetime.timedelta(microseconds=1)
INSTALL = 'pip install -e ".[aria]"'


@functools.cache
def available() -> bool:
  """Whether projectaria-tools imports."""
  try:
    import projectaria_tools.core.mps  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    return False
  return True


def _require(path) -> None:
  if not available():
    raise aria_csv.AriaError(f"{os.fspath(path)}: reading it with projectaria-tools"
                         f" needs the package: {INSTALL}")


@contextlib.contextmanager
def _native_log():
  """Captures what C++ code writes to file descriptors 1 and 2.

  Yields a list that holds the text once the block has run.
  """
  sys.stdout.flush()
  sys.stderr.flush()
  saved = [os.dup(1), os.dup(2)]
  text = []
  with tempfile.TemporaryFile() as log:
    try:
      os.dup2(log.fileno(), 1)
      os.dup2(log.fileno(), 2)
      yield text
    finally:
      os.dup2(saved[0], 1)
      os.dup2(saved[1], 2)
      for fd in saved:
        os.close(fd)
      log.seek(0)
      text.append(log.read().decode("utf-8", "replace"))


def _data_rows(path) -> int:
  try:
    with aria_csv.open_text(path) as f:
      return sum(1 for line in f if line.strip()) - 1
  except (OSError, EOFError, UnicodeDecodeError) as e:
    raise aria_csv.AriaError(f"{os.fspath(path)}: cannot read ({e})") from e


def _check(path, items: list, log: list[str], *arrays: np.ndarray) -> None:
  """AriaError unless projectaria-tools read every row into finite values."""
  rows = _data_rows(path)
  if not items or len(items) != rows:
    said = [l for l in log[0].splitlines() if l and not l.startswith("Loaded")]
    raise aria_csv.AriaError(
        f"{os.fspath(path)}: projectaria-tools read {len(items)} of {rows} rows"
        f" ({said[-1] if said else 'no message'})")
  for values in arrays:
    if not np.all(np.isfinite(values)):
      row = int(np.argwhere(~np.isfinite(values))[0, 0])
      raise aria_csv.AriaError(f"{os.fspath(path)}: non-finite value in data row "
                           f"{row + 1}")


def read_trajectory(path) -> tuple[np.ndarray, np.ndarray]:
  """Timestamps (N,) µs and T_world_device (N, 7) `wxyz_xyz`, file order."""
  _require(path)
  from projectaria_tools.core import mps  # pylint: disable=g-import-not-at-top
  with _native_log() as log:
    poses = mps.read_closed_loop_trajectory(os.fspath(path))
  stamps = np.array([p.tracking_timestamp / _US for p in poses])
  T = np.array([p.transform_world_device.to_quat_and_translation()[0]
                for p in poses]).reshape(-1, 7)
  _check(path, poses, log, T)
  return stamps, T


def read_points(path) -> np.ndarray:
  """(N, 5): x, y, z, inv_dist_std, dist_std (stds stored as float32)."""
  _require(path)
  from projectaria_tools.core import mps  # pylint: disable=g-import-not-at-top
  with _native_log() as log:
    points = mps.read_global_point_cloud(os.fspath(path))
  values = np.array([(*p.position_world, p.inverse_distance_std,
                      p.distance_std) for p in points]).reshape(-1, 5)
  _check(path, points, log, values)
  return values


def read_wrist_and_palm_poses(path) -> tuple[np.ndarray, np.ndarray | None]:
  """Rows (N, 15) and normals (N, 12) or None, in the column order of
  `aria_hands.POSE_COLUMNS` and `NORMAL_COLUMNS` (the caller checks the
  header first: this parser fills a missing column with zeros or garbage,
  unreported).

  projectaria-tools drops the hands of confidence ≤ 0: theirs is 0 here.
  """
  _require(path)
  from projectaria_tools.core import mps  # pylint: disable=g-import-not-at-top
  with _native_log() as log, warnings.catch_warnings():
    # It announces the format's successor (hand_tracking_results.csv).
    warnings.filterwarnings("ignore", message=".*read_wrist_and_palm_poses")
    poses = mps.hand_tracking.read_wrist_and_palm_poses(os.fspath(path))
  rows, normals = [], []
  for pose in poses:
    row, normal = [pose.tracking_timestamp / _US], []
    for hand in (pose.left_hand, pose.right_hand):
      pair = hand and hand.wrist_and_palm_normal_device
      row += ([hand.confidence, *hand.wrist_position_device,
               *hand.palm_position_device] if hand else [0.0] * 7)
      normal += ([*pair.palm_normal_device, *pair.wrist_normal_device]
                 if pair else [np.nan] * 6)
    rows.append(row)
    normals.append(normal)
  # Timestamp, then per side: confidence, wrist xyz, palm xyz.
  rows = np.array(rows, np.float64).reshape(-1, 1 + 2 * 7)
  # Per side: palm normal, wrist normal.
  normals = np.array(normals, np.float64).reshape(-1, 2 * 6)
  # A file without normals has none for any hand; a missing hand none.
  has_normals = not np.all(np.isnan(normals))
  normals = np.nan_to_num(normals) if has_normals else None
  _check(path, poses, log, rows)
  return rows, normals


def T_device_cpf(path: str | os.PathLike, use_svd: bool) -> np.ndarray:
  """(7,) `wxyz_xyz` CPF pose in the device frame of a device calibration.

  Args:
    path: a VRS file (`.vrs`) or a factory calibration JSON.
    use_svd: the CPF aligned to the calibrated camera positions instead of
      the CAD value of the unit's subtype.

  Raises:
    AriaError: naming the file: missing, projectaria-tools absent, or no
      calibration read.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise aria_csv.AriaError(f"{path}: no such file (device calibration: the "
                         "recording's VRS file or its calibration JSON)")
  _require(path)
  from projectaria_tools.core import calibration  # pylint: disable=g-import-not-at-top
  from projectaria_tools.core import data_provider  # pylint: disable=g-import-not-at-top
  with _native_log() as log:
    try:
      if path.suffix == ".vrs":
        provider = data_provider.create_vrs_data_provider(str(path))
        device = provider.get_device_calibration() if provider else None
      else:
        device = calibration.device_calibration_from_json_string(
            path.read_text(encoding="utf-8"))
    except (RuntimeError, ValueError, OSError) as e:
      device, error = None, e
    else:
      error = None
  if device is None:
    said = error or (log[0].strip().splitlines() or ["no message"])[-1]
    raise aria_csv.AriaError(f"{path}: projectaria-tools read no device "
                         f"calibration ({said})")
  cpf_type = getattr(calibration, "CpfType", None)
  try:
    if cpf_type is not None:
      pose = device.get_transform_device_cpf(
          cpf_type=cpf_type.SvdBased if use_svd else cpf_type.CadBased)
    else:
      pose = device.get_transform_device_cpf(use_svd=use_svd)
  except TypeError as e:  # a version with neither argument: CAD only
    if use_svd:
      raise aria_csv.AriaError(f"{path}: this projectaria-tools has no SVD-aligned"
                           " CPF (use_svd)") from e
    pose = device.get_transform_device_cpf()
  pose = np.asarray(pose.to_quat_and_translation(), np.float64)[0]
  wxyz = pose[:4] if pose[0] >= 0 else -pose[:4]  # w ≥ 0, as T_DEVICE_CPF
  return np.concatenate([wxyz, pose[4:]])
