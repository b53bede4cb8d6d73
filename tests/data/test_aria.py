"""Tests of the Aria MPS reader: CPF trajectory at 30 fps and the floor."""

import gzip

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from motiongrpo_jax.data import aria

from conftest import write_trajectory_csv as _write_trajectory

HEADER = aria.TRAJECTORY_COLUMNS


def _yawing_walk(timestamps_us):
  """Device turning about world z at 0.5 rad/s, moving 1 m/s along x."""
  seconds = (timestamps_us - timestamps_us[0]) * 1e-6
  xyzw = Rotation.from_euler("z", 0.5 * seconds[:, None]).as_quat()
  wxyz = np.roll(xyzw, 1, axis=-1)
  position = np.stack([seconds, np.zeros_like(seconds),
                       np.full_like(seconds, 1.2)], -1)
  return np.concatenate([wxyz, position], -1)


def test_cad_T_device_cpf_matches_reference():
  # shared/reference/aria_cpf.md, Gen 1 DVT-S: wxyz and translation, quoted
  # to 6 decimals (≤ 5e-7).
  np.testing.assert_allclose(
      aria.T_DEVICE_CPF["gen1_dvt_s"],
      [0.663401, 0.209687, -0.244742, 0.675301, 0.004953, -0.049148,
       -0.049185], atol=2e-6)
  np.testing.assert_allclose(aria.T_DEVICE_CPF["gen1_dvt_l"][4:],
                             [0.004993, -0.051460, -0.049950], atol=2e-6)


def test_resampling_irregular_timestamps(tmp_path):
  rng = np.random.default_rng(0)
  timestamps = np.cumsum(rng.uniform(500, 1500, size=2100)).astype(np.int64)
  timestamps += 10_000_000
  _write_trajectory(tmp_path / "closed_loop_trajectory.csv", timestamps,
                    _yawing_walk(timestamps))
  identity = np.array([1.0, 0, 0, 0, 0, 0, 0])
  with pytest.warns(UserWarning):  # No points: head-height prior.
    traj = aria.load_mps(tmp_path, T_device_cpf=identity)
  np.testing.assert_allclose(np.diff(traj.times), 1 / 30, atol=1e-12)
  assert traj.times[-1] <= (timestamps[-1] - timestamps[0]) * 1e-6 + 1e-3
  expected = _yawing_walk(timestamps[0] + traj.times * 1e6)
  np.testing.assert_allclose(traj.T_world_cpf[:, 4:], expected[:, 4:],
                             atol=1e-6)
  angle = (Rotation.from_quat(np.roll(traj.T_world_cpf[:, :4], -1, -1)).inv() *
           Rotation.from_quat(np.roll(expected[:, :4], -1, -1))).magnitude()
  assert angle.max() < 1e-6
  # The device→CPF transform is applied on the right.
  offset = np.array([0.7071068, 0.0, 0.7071068, 0.0, 0.1, 0.0, 0.0])
  with pytest.warns(UserWarning):
    moved = aria.load_mps(tmp_path / "closed_loop_trajectory.csv",
                          T_device_cpf=offset)
  np.testing.assert_allclose(moved.T_world_cpf,
                             aria.compose(traj.T_world_device, offset),
                             atol=1e-9)
  # At t = 0 the device is at the origin with identity rotation (x = 0,
  # yaw 0): the CPF sits 0.1 m along world x.
  np.testing.assert_allclose(moved.T_world_cpf[0, 4:], [0.1, 0, 1.2],
                             atol=1e-6)


def test_no_points_falls_back_to_head_height(tmp_path):
  timestamps = np.arange(0, 2_000_000, 1000) + 5
  _write_trajectory(tmp_path / "closed_loop_trajectory.csv", timestamps,
                    _yawing_walk(timestamps))
  with pytest.warns(UserWarning, match="CPF is 1.6 m above"):
    traj = aria.load_mps(tmp_path)
  assert traj.floor_source == "head-height prior"
  assert np.percentile(traj.height_from_floor, 90) == pytest.approx(1.6)


def test_floor_from_points(tmp_path):
  rng = np.random.default_rng(1)
  floor = np.c_[rng.uniform(-3, 3, (3000, 2)), rng.normal(-1.3, 0.003, 3000)]
  table = np.c_[rng.uniform(-1, 0, (800, 2)), rng.normal(-0.6, 0.003, 800)]
  walls = rng.uniform([-3, -3, -1.3], [3, 3, 1.5], (4000, 3))
  stray = np.array([[0, 0, -9.0], [0, 0, -8.0], [1, 1, -2.5]])
  xyz = np.concatenate([floor, table, walls, stray])
  confident = np.c_[np.full(len(xyz), 5e-4), np.full(len(xyz), 0.01)]
  confident[::7] = [0.01, 0.5]  # unconfident points are ignored
  points = np.c_[xyz, confident]
  z, how = aria.estimate_floor(points)
  assert how == "points (loose filter)"
  assert z == pytest.approx(-1.3, abs=0.003)
  lines = ["uid,graph_uid,px_world,py_world,pz_world,inv_dist_std,dist_std"]
  lines += [f"{i},g,{p[0]},{p[1]},{p[2]},{p[3]},{p[4]}"
            for i, p in enumerate(points)]
  (tmp_path / "semidense_points.csv.gz").write_bytes(
      gzip.compress("\n".join(lines).encode()))
  np.testing.assert_array_equal(
      aria.read_points(tmp_path / "semidense_points.csv.gz", "builtin"),
      points)


def test_bad_csv_names_file_and_problem(tmp_path):
  timestamps = np.arange(0, 200_000, 1000)
  path = tmp_path / "closed_loop_trajectory.csv"
  _write_trajectory(path, timestamps, _yawing_walk(timestamps),
                    columns=[c for c in HEADER if c != "qw_world_device"])
  with pytest.raises(aria.AriaError) as info:
    aria.load_mps(tmp_path)
  assert str(path) in str(info.value)
  assert "qw_world_device" in str(info.value)
  _write_trajectory(path, timestamps, _yawing_walk(timestamps))
  text = path.read_text().splitlines()
  text[5] = text[5].replace(",1.2,", ",nan,")
  path.write_text("\n".join(text))
  with pytest.raises(aria.AriaError, match="non-finite.*tz_world_device"):
    aria.load_mps(tmp_path)
  with pytest.raises(aria.AriaError, match="no closed_loop_trajectory.csv"):
    aria.load_mps(tmp_path / "nowhere")


def test_mps_sample(shared_data):
  traj = aria.load_mps(shared_data / "aria_mps_sample")
  assert traj.fps == 30.0
  np.testing.assert_allclose(np.diff(traj.times), 1 / 30, atol=1e-12)
  assert traj.times[-1] == pytest.approx(11.395, abs=0.04)
  # Floor from the semi-dense points (README: RANSAC −1.494, 1-D −1.491).
  assert traj.floor_source.startswith("points")
  assert traj.floor_z == pytest.approx(-1.491, abs=0.005)
  walking = (traj.times > 0.5) & (traj.times < 8.5)
  height = traj.height_from_floor[walking]
  assert 1.45 < height.mean() < 1.7
  # Straight walk (0.5–3 s): CPF +y up, +z along the direction of travel
  # (README: the head is 0–30° left of the travel heading).
  straight = (traj.times > 0.5) & (traj.times < 3.0)
  axes = Rotation.from_quat(np.roll(traj.T_world_cpf[:, :4], -1,
                                    -1)).as_matrix()
  assert axes[straight, 2, 1].min() > 0.95
  travel = traj.T_world_cpf[straight][-1, 4:6] - traj.T_world_cpf[straight][
      0, 4:6]
  forward = axes[straight, :2, 2].mean(0)
  cos = forward @ travel / np.linalg.norm(forward) / np.linalg.norm(travel)
  assert cos > np.cos(np.deg2rad(35))


def test_without_projectaria_tools(tmp_path, monkeypatch):
  """"auto" is the built-in reader; asking for projectaria-tools or a
  device calibration says what to install."""
  from motiongrpo_jax.data import aria_tools  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(aria_tools, "available", lambda: False)
  timestamps = np.arange(0, 200_000, 1000)
  path = _write_trajectory(tmp_path / "closed_loop_trajectory.csv",
                           timestamps, _yawing_walk(timestamps))
  np.testing.assert_array_equal(aria.read_trajectory(path)[0], timestamps)
  with pytest.raises(aria.AriaError, match=r"closed_loop_trajectory.csv: "
                     r"reading it with projectaria-tools needs.*\[aria\]"):
    aria.read_trajectory(path, "projectaria_tools")
  calibration = tmp_path / "calibration.json"
  calibration.write_text("{}")
  with pytest.raises(aria.AriaError, match=r"calibration.json: .*needs"):
    aria.load_mps(tmp_path, device_calibration=calibration)
