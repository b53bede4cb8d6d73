"""Project Aria MPS head trajectories: CPF poses at 30 fps and the floor.

Inputs (an MPS output folder, `slam/` in the current layout or the older
`trajectory/`):

- `closed_loop_trajectory.csv`: `T_world_device` per row, timestamp
  `tracking_timestamp_us`, translation `t{x,y,z}_world_device` (metres),
  rotation `q{x,y,z,w}_world_device` (Hamilton, **x, y, z, w** order). World
  z is up.
- `semidense_points.csv.gz` (older name `global_points.csv.gz`): world
  points `p{x,y,z}_world` with `inv_dist_std`, `dist_std` confidences.
- Optionally the recording's VRS file or its factory calibration JSON, for
  `T_device_cpf` (needs projectaria-tools).
- Wrist estimates (`hand_tracking/wrist_and_palm_poses.csv`): `aria_hands`.

Readers (`reader`): "projectaria_tools" reads the files with
projectaria-tools' MPS readers (`pip install .[aria]`, `aria_tools`),
"builtin" with the CSV reader here; "auto" uses projectaria-tools when it is
installed and reads the whole file, the built-in reader otherwise (files
without MPS's optional columns, a gzipped trajectory, and bad input, whose
error the built-in reader names by file, column and row). They give the
same values to float64 rounding (`tests/data/test_aria_tools.py`), except
that projectaria-tools keeps the point stds as float32 (a std written as
exactly a filter's bound may pass there: the sample's floor moves 5e-7 m)
and normalises quaternions that the built-in reader rejects as non-unit.

The CPF (central pupil frame: +x left, +y up, +z forward) is
`T_world_cpf = T_world_device @ T_device_cpf`: from the device calibration
when one is given (the CAD value of that unit's subtype, or with `use_svd`
the CPF aligned to its calibrated camera positions), otherwise the Aria
Gen 1 CAD value (`shared/reference/aria_cpf.md`; DVT-S by default, DVT-L or
any pose on request). Poses are resampled on their timestamps to 30 fps
(slerp + lerp).

Floor, as EgoAllo (`egoallo/data/aria_mps.py`): points with
`inv_dist_std < 1e-4` and `dist_std < 5e-3` (falling back to `< 1e-3`,
`< 0.05` when fewer than `MIN_STRICT_POINTS` pass, as in the Gen 1 sample),
the sorted heights trimmed by 1/10,000 at each end, the lowest 10 % (under
10,000 points) or 15 % of the height range kept, then a 1-D consensus search
for the height with the most points within ±1 cm (every candidate tried, so
the result is deterministic); a candidate with 3 or fewer points within
7.5 cm is noise: its points are removed and the search repeated. The floor
is the median of the winning inliers. Without usable points the floor is
`HEAD_HEIGHT_PRIOR` below the 90th percentile of the CPF height, with a
warning.

Points for pictures: those passing the loose filter (`confident_points`),
cut to a box around the frames shown and subsampled (`points_near`).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import warnings

import numpy as np

from motiongrpo_jax.data import aria_csv
from motiongrpo_jax.data import aria_tools
from motiongrpo_jax.data import resample

# The CSV reading and its error, shared with `aria_tools` and `aria_hands`.
AriaError = aria_csv.AriaError
open_text = aria_csv.open_text
read_csv_columns = aria_csv.read_csv_columns
read_csv_header = aria_csv.read_csv_header

TRAJECTORY_COLUMNS = (
    "tracking_timestamp_us", "tx_world_device", "ty_world_device",
    "tz_world_device", "qx_world_device", "qy_world_device",
    "qz_world_device", "qw_world_device")
POINT_COLUMNS = ("px_world", "py_world", "pz_world", "inv_dist_std",
                 "dist_std")
TRAJECTORY_FILE = "closed_loop_trajectory.csv"
POINT_FILES = ("semidense_points.csv.gz", "global_points.csv.gz",
               "semidense_points.csv", "global_points.csv")
SLAM_FOLDERS = ("slam", "trajectory")
# EgoAllo's point filters (inv_dist_std, dist_std upper bounds).
STRICT_FILTER = (1e-4, 5e-3)
LOOSE_FILTER = (1e-3, 5e-2)
MIN_STRICT_POINTS = 1000
MIN_FLOOR_POINTS = 10
FLOOR_BAND = 0.01  # ± inlier band of the 1-D consensus search, metres.
NOISE_RADIUS = 0.075
# Points drawn around a trajectory: margin of the box around its positions
# (metres) and the most kept.
POINT_MARGIN = 4.0
MAX_POINTS = 20_000
# Typical standing CPF height above the floor (metres) for the fallback.
HEAD_HEIGHT_PRIOR = 1.6
# Who reads the MPS files (module docstring, "Readers").
READERS = ("auto", "projectaria_tools", "builtin")
DEFAULT_READER = "auto"


def _cad_T_device_cpf(t_cpf_sensor, y_axis, z_axis) -> np.ndarray:
  """T_device_cpf from a CAD row of the device-origin sensor (T_cpf_sensor).

  Rows give the sensor's translation and Y, Z axes in CPF; X = Y × Z. The
  rounded axes are re-orthonormalised (SVD), then inverted.
  """
  y, z = np.asarray(y_axis, float), np.asarray(z_axis, float)
  r = np.stack([np.cross(y, z), y, z], axis=1)
  u, _, vt = np.linalg.svd(r)
  r = u @ vt
  r_device_cpf = r.T
  t_device_cpf = -r_device_cpf @ np.asarray(t_cpf_sensor, float)
  return np.concatenate([_matrix_to_wxyz(r_device_cpf), t_device_cpf])


def _matrix_to_wxyz(r: np.ndarray) -> np.ndarray:
  from scipy.spatial.transform import Rotation  # pylint: disable=g-import-not-at-top
  x, y, z, w = Rotation.from_matrix(r).as_quat()
  q = np.array([w, x, y, z])
  return -q if q[0] < 0 else q


# `camera-slam-left` rows of projectaria_tools' Gen 1 CAD tables
# (core/calibration/ConfigData.cpp), see shared/reference/aria_cpf.md.
_GEN1_Y = (0.793353, 0.0, -0.608761)
_GEN1_Z = (0.607927, -0.052336, 0.792266)
T_DEVICE_CPF = {
    "gen1_dvt_s": _cad_T_device_cpf((0.069051, 0.002372, 0.009254), _GEN1_Y,
                                    _GEN1_Z),
    "gen1_dvt_l": _cad_T_device_cpf((0.071351, 0.002372, 0.008454), _GEN1_Y,
                                    _GEN1_Z),
}
DEFAULT_DEVICE = "gen1_dvt_s"


@dataclasses.dataclass(frozen=True)
class AriaTrajectory:
  """A head trajectory at a fixed rate.

  Attributes:
    times: (T,) seconds from the first pose.
    T_world_device: (T, 7) `wxyz_xyz`, world z up.
    T_world_cpf: (T, 7) `wxyz_xyz`.
    floor_z: floor height in the world frame.
    floor_source: "points (strict filter)", "points (loose filter)" or
      "head-height prior".
    fps: frame rate.
    start_timestamp_us: device timestamp of the first pose.
    T_device_cpf: (7,) `wxyz_xyz`, the CPF pose used.
    points: (P, 3) float32 world positions of the semi-dense points that
      pass the loose filter (`confident_points`), or None without a point
      file.
  """

  times: np.ndarray
  T_world_device: np.ndarray
  T_world_cpf: np.ndarray
  floor_z: float
  floor_source: str
  fps: float
  start_timestamp_us: float
  T_device_cpf: np.ndarray
  points: np.ndarray | None = None

  @property
  def height_from_floor(self) -> np.ndarray:
    """(T,) CPF height above the floor."""
    return self.T_world_cpf[:, 6] - self.floor_z


def read_with(reader: str, path: str | os.PathLike, builtin, tools_name: str):
  """`builtin(path)`, or `aria_tools.<tools_name>(path)` as `reader` says.

  Args:
    reader: one of `READERS` (module docstring).
    path: the file.
    builtin: the built-in reader.
    tools_name: the projectaria-tools reader in `aria_tools`, which returns
      what `builtin` returns.

  Raises:
    AriaError: an unknown reader, projectaria-tools asked for but not
      installed, or the reader's own error.
  """
  if reader not in READERS:
    raise AriaError(f"reader={reader!r}: expected one of {list(READERS)}")
  if reader == "builtin":
    return builtin(path)
  if reader == "projectaria_tools" or aria_tools.available():
    try:
      return getattr(aria_tools, tools_name)(path)
    except AriaError:
      if reader == "projectaria_tools":
        raise
  return builtin(path)


def _read_trajectory_csv(path) -> tuple[np.ndarray, np.ndarray]:
  """The built-in reader: rows in file order, unit quaternions checked."""
  values = read_csv_columns(path, TRAJECTORY_COLUMNS)
  xyzw = values[:, 4:8]
  norms = np.linalg.norm(xyzw, axis=-1)
  if np.any(np.abs(norms - 1.0) > 1e-3):
    row = int(np.argmax(np.abs(norms - 1.0)))
    raise AriaError(f"{path}: quaternion q*_world_device of data row {row + 1} "
                    f"has norm {norms[row]:.4f}, expected 1")
  wxyz = np.concatenate([xyzw[:, 3:], xyzw[:, :3]], axis=-1) / norms[:, None]
  return values[:, 0], np.concatenate([wxyz, values[:, 1:4]], axis=-1)


def read_trajectory(path: str | os.PathLike, reader: str = DEFAULT_READER
                    ) -> tuple[np.ndarray, np.ndarray]:
  """`closed_loop_trajectory.csv` → timestamps (N,) µs, T_world_device (N, 7).

  Rows are sorted by timestamp; repeated timestamps keep the first row.

  Raises:
    AriaError: see `read_csv_columns` and `read_with`; also non-unit
      quaternions (built-in reader).
  """
  timestamps, poses = read_with(reader, path, _read_trajectory_csv,
                                "read_trajectory")
  order = np.argsort(timestamps, kind="stable")
  timestamps, poses = timestamps[order], poses[order]
  keep = np.concatenate([[True], np.diff(timestamps) > 0])
  return timestamps[keep], poses[keep]


def compose(T_a_b: np.ndarray, T_b_c: np.ndarray) -> np.ndarray:
  """T_a_c = T_a_b @ T_b_c for (..., 7) `wxyz_xyz` poses (numpy)."""
  from scipy.spatial.transform import Rotation  # pylint: disable=g-import-not-at-top
  T_a_b, T_b_c = (np.array(x) for x in np.broadcast_arrays(
      np.asarray(T_a_b, float), np.asarray(T_b_c, float)))
  shape = T_a_b.shape[:-1]
  rab = Rotation.from_quat(np.roll(T_a_b.reshape(-1, 7)[:, :4], -1, axis=-1))
  rbc = Rotation.from_quat(np.roll(T_b_c.reshape(-1, 7)[:, :4], -1, axis=-1))
  xyzw = (rab * rbc).as_quat()
  t = rab.apply(T_b_c.reshape(-1, 7)[:, 4:]) + T_a_b.reshape(-1, 7)[:, 4:]
  wxyz = np.roll(xyzw, 1, axis=-1)
  wxyz = np.where(wxyz[:, :1] < 0, -wxyz, wxyz)
  return np.concatenate([wxyz, t], axis=-1).reshape(shape + (7,))


def resample_poses(timestamps_us: np.ndarray, poses: np.ndarray,
                   fps: float) -> tuple[np.ndarray, np.ndarray]:
  """Poses at k/fps seconds from the first timestamp (slerp + lerp).

  Returns:
    times (T,) seconds and poses (T, 7).
  """
  seconds = (timestamps_us - timestamps_us[0]) * 1e-6
  times = resample.output_times(seconds[-1], fps)
  index, alpha = resample.interpolation_weights(seconds, times)
  return times, np.concatenate([
      resample.resample_quats(poses[:, :4], index, alpha),
      resample.resample_linear(poses[:, 4:], index, alpha)], axis=-1)


def floor_from_heights(zs: np.ndarray) -> float | None:
  """EgoAllo's floor height from point heights (see module docstring).

  Args:
    zs: (N,) heights of confidence-filtered points.

  Returns:
    The floor z, or None when no consistent floor band exists.
  """
  all_zs = np.sort(np.asarray(zs, np.float64))
  while all_zs.size >= MIN_FLOOR_POINTS:
    trim = all_zs.size // 10_000
    zs = all_zs[trim:all_zs.size - trim] if trim else all_zs
    alpha = 0.1 if all_zs.size < 10_000 else 0.15
    zs = zs[zs <= zs[0] + (zs[-1] - zs[0]) * alpha]
    counts = (np.searchsorted(zs, zs + FLOOR_BAND, side="left") -
              np.searchsorted(zs, zs - FLOOR_BAND, side="right"))
    best = zs[int(np.argmax(counts))]
    support = np.count_nonzero(np.abs(all_zs - best) <= NOISE_RADIUS)
    if support > 3:
      return float(np.median(zs[np.abs(zs - best) < FLOOR_BAND]))
    all_zs = all_zs[np.abs(all_zs - best) >= FLOOR_BAND]
  return None


def read_points(path: str | os.PathLike,
                reader: str = DEFAULT_READER) -> np.ndarray:
  """Semi-dense points (N, 5): x, y, z, inv_dist_std, dist_std."""
  return read_with(reader, path,
                   lambda p: read_csv_columns(p, POINT_COLUMNS), "read_points")


def estimate_floor(points: np.ndarray | None) -> tuple[float | None, str]:
  """Floor height from MPS points with EgoAllo's filters.

  Args:
    points: (N, 5) from `read_points`, or None.

  Returns:
    (floor z or None, which filter was used).
  """
  if points is None or points.size == 0:
    return None, "no points"
  for name, (inv_max, dist_max) in (("strict", STRICT_FILTER),
                                    ("loose", LOOSE_FILTER)):
    keep = (points[:, 3] < inv_max) & (points[:, 4] < dist_max)
    if name == "strict" and np.count_nonzero(keep) < MIN_STRICT_POINTS:
      continue
    floor = floor_from_heights(points[keep, 2])
    if floor is not None:
      return floor, f"points ({name} filter)"
  return None, "too few confident points"


def confident_points(points: np.ndarray | None) -> np.ndarray | None:
  """(P, 3) float32 positions of the points passing `LOOSE_FILTER`.

  The strict filter keeps too few points to show a room (72 of the
  sample's 99,472; the loose one 22,061).

  Args:
    points: (N, 5) from `read_points`, or None.
  """
  if points is None:
    return None
  keep = ((points[:, 3] < LOOSE_FILTER[0]) & (points[:, 4] < LOOSE_FILTER[1])
          & np.all(np.isfinite(points[:, :3]), axis=-1))
  return points[keep, :3].astype(np.float32)


def points_near(points: np.ndarray, positions: np.ndarray,
                margin: float = POINT_MARGIN, max_points: int = MAX_POINTS,
                seed: int = 0) -> np.ndarray:
  """The points in a box around a path, at most `max_points` of them.

  Args:
    points: (P, 3) world points.
    positions: (T, 3) the path (e.g. the CPF positions of the frames shown).
    margin: the box is the path's bounding box grown by this in x, y and z.
    max_points: most points returned: a fixed random subset (`seed`) in
      file order when more are in the box.
    seed: of the subset.

  Returns:
    (P', 3) float32 points, P' <= max_points.
  """
  lo = np.min(positions, axis=0) - margin
  hi = np.max(positions, axis=0) + margin
  inside = points[np.all((points >= lo) & (points <= hi), axis=-1)]
  if len(inside) > max_points:
    keep = np.random.default_rng(seed).choice(len(inside), max_points,
                                              replace=False)
    inside = inside[np.sort(keep)]
  return inside.astype(np.float32)


def find_mps_files(folder: str | os.PathLike) -> tuple[pathlib.Path,
                                                       pathlib.Path | None]:
  """The trajectory CSV and (if any) the point file of an MPS folder.

  Args:
    folder: the MPS output folder, its `slam/` (or `trajectory/`) folder,
      or the trajectory CSV itself.

  Raises:
    AriaError: no `closed_loop_trajectory.csv` found.
  """
  folder = pathlib.Path(folder)
  if folder.is_file():
    candidates = [folder.parent]
    trajectory = folder
  else:
    candidates = [folder / s for s in SLAM_FOLDERS] + [folder]
    trajectory = None
    for candidate in candidates:
      if (candidate / TRAJECTORY_FILE).is_file():
        trajectory = candidate / TRAJECTORY_FILE
        candidates = [candidate]
        break
    if trajectory is None:
      raise AriaError(
          f"{folder}: no {TRAJECTORY_FILE} here or in "
          f"{'/'.join(SLAM_FOLDERS)}/")
  for name in POINT_FILES:
    if (candidates[0] / name).is_file():
      return trajectory, candidates[0] / name
  return trajectory, None


def load_mps(
    folder: str | os.PathLike,
    *,
    T_device_cpf: str | np.ndarray = DEFAULT_DEVICE,
    fps: float = 30.0,
    points: str | os.PathLike | None = None,
    reader: str = DEFAULT_READER,
    device_calibration: str | os.PathLike | None = None,
    use_svd: bool = False,
) -> AriaTrajectory:
  """CPF trajectory and floor of an Aria MPS recording.

  Args:
    folder: MPS folder (or its `slam/`, or the trajectory CSV).
    T_device_cpf: "gen1_dvt_s" (default), "gen1_dvt_l", or a (7,)
      `wxyz_xyz` pose of the CPF in the device frame; not used with
      `device_calibration`.
    fps: output rate.
    points: point file to use instead of the one found beside the
      trajectory.
    reader: "auto", "projectaria_tools" or "builtin" (module docstring).
    device_calibration: the recording's VRS file or its factory calibration
      JSON: `T_device_cpf` from its device calibration (projectaria-tools).
    use_svd: with `device_calibration`, the CPF aligned to the unit's
      calibrated camera positions instead of the CAD value.

  Returns:
    The trajectory at `fps` with its floor.

  Raises:
    AriaError: missing or malformed files, an unknown device name or
      reader, or `use_svd` without `device_calibration`.
  """
  if device_calibration is not None:
    T_device_cpf = aria_tools.T_device_cpf(device_calibration, use_svd)
  elif use_svd:
    raise AriaError("use_svd needs device_calibration (the recording's VRS "
                    "file or calibration JSON)")
  if isinstance(T_device_cpf, str):
    if T_device_cpf not in T_DEVICE_CPF:
      raise AriaError(f"T_device_cpf: unknown device {T_device_cpf!r} "
                      f"(expected one of {sorted(T_DEVICE_CPF)} or a pose)")
    T_device_cpf = T_DEVICE_CPF[T_device_cpf]
  T_device_cpf = np.asarray(T_device_cpf, np.float64)
  if T_device_cpf.shape != (7,) or not np.all(np.isfinite(T_device_cpf)):
    raise AriaError(f"T_device_cpf: expected a (7,) wxyz_xyz pose, got shape "
                    f"{T_device_cpf.shape}")
  T_device_cpf = np.concatenate(
      [T_device_cpf[:4] / np.linalg.norm(T_device_cpf[:4]), T_device_cpf[4:]])
  trajectory_path, points_path = find_mps_files(folder)
  if points is not None:
    points_path = pathlib.Path(points)
  timestamps, T_world_device = read_trajectory(trajectory_path, reader)
  if timestamps.size < 2:
    raise AriaError(f"{trajectory_path}: needs at least 2 poses")
  times, T_world_device = resample_poses(timestamps, T_world_device, fps)
  T_world_cpf = compose(T_world_device, T_device_cpf)
  all_points = (read_points(points_path, reader) if points_path is not None
                else None)
  floor_z, how = estimate_floor(all_points)
  if floor_z is None:
    floor_z = float(np.percentile(T_world_cpf[:, 6], 90) - HEAD_HEIGHT_PRIOR)
    message = (f"{trajectory_path.parent}: {how} for the floor; assuming the "
               f"CPF is {HEAD_HEIGHT_PRIOR} m above it (90th percentile "
               f"height), floor z = {floor_z:.3f}")
    warnings.warn(message, stacklevel=2)
    how = "head-height prior"
  return AriaTrajectory(
      times=times, T_world_device=T_world_device, T_world_cpf=T_world_cpf,
      floor_z=floor_z, floor_source=how, fps=fps,
      start_timestamp_us=float(timestamps[0]), T_device_cpf=T_device_cpf,
      points=confident_points(all_points))
