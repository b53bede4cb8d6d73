"""Tests for the infer mode: EgoAllo's output layout in the unshifted world
frame, windowed sampling of a long input, the GIF, Aria input and its
semi-dense points, guidance to Aria wrist estimates, bad input."""

import gzip
import json
import re
import warnings

import imageio.v2 as imageio
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from motiongrpo_jax import body as body_lib
from motiongrpo_jax.configs import infer as infer_config
from motiongrpo_jax.data import aria
from motiongrpo_jax.data import aria_hands
from motiongrpo_jax.diffusion import windows
from motiongrpo_jax.guidance import residuals as guidance
from motiongrpo_jax.modes import infer

from conftest import save_tiny_denoiser
from conftest import write_trajectory_csv
from conftest import write_wrist_csv

# 24 input poses -> T = 23 output frames; windows of 8 frames sharing 2, so
# the sampler stitches 4 windows.
_POSES, _SAMPLES, _WINDOW, _OVERLAP = 24, 2, 8, 2
_FLOOR = 0.7
_T0_NS = 5_000_000_000



def _head_poses(num_poses):
  """(N, 7) CPF poses 1.6 m above the floor, walking and turning left.

  CPF axes in the world when facing +x: x (left) = +y, y (up) = +z,
  z (forward) = +x; then a yaw of 2° per frame.
  """
  facing_x = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
  yaw = np.radians(2.0 * np.arange(num_poses))
  rot = Rotation.from_euler("z", yaw[:, None]) * Rotation.from_matrix(facing_x)
  xyzw = rot.as_quat()
  wxyz = np.concatenate([xyzw[:, 3:], xyzw[:, :3]], axis=-1)
  pos = np.stack([0.03 * np.arange(num_poses), 0.001 * np.arange(num_poses)**2,
                  np.full(num_poses, _FLOOR + 1.6)], axis=-1)
  return np.concatenate([wxyz, pos], axis=-1)


@pytest.fixture(scope="module")
def input_npz(tmp_path_factory):
  path = tmp_path_factory.mktemp("input") / "head.npz"
  stamps = _T0_NS + np.round(np.arange(_POSES) * 1e9 / 30).astype(np.int64)
  np.savez(path, T_world_cpf=_head_poses(_POSES), floor_z=_FLOOR,
           timestamps_ns=stamps)
  return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
  """A tiny denoiser with random params, body rotations near 3·I + noise."""
  return save_tiny_denoiser(tmp_path_factory.mktemp("models") / "tiny",
                            param_std=0.2, rotation_bias=3.0)


def _config(input_path, checkpoint, **render):
  config = infer_config.get_config()
  config.input = str(input_path)
  config.checkpoint = str(checkpoint)
  config.num_samples = _SAMPLES
  config.sampler.update = "ddim"  # EgoAllo's σ needs more than 2 steps.
  config.sampler.num_steps = 2
  config.sampler.window_size = _WINDOW
  config.sampler.overlap = _OVERLAP
  config.render.update(kind="gif", size=64, stride=4)
  config.render.update(render)
  return config


@pytest.fixture(scope="module")
def first_run(input_npz, model_dir, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("infer")
  metadata = infer.run(_config(input_npz, model_dir), str(workdir))
  with np.load(workdir / infer.OUTPUT_FILE) as data:
    outputs = {k: data[k] for k in data.files}
  return workdir, metadata, outputs


def test_outputs_layout(first_run):
  workdir, metadata, out = first_run
  s, t = _SAMPLES, _POSES - 1
  shapes = {
      "Ts_world_cpf": (t, 7), "Ts_world_root": (s, t, 7),
      "body_quats": (s, t, 21, 4), "left_hand_quats": (s, t, 15, 4),
      "right_hand_quats": (s, t, 15, 4), "contacts": (s, t, 21),
      "betas": (s, t, 16), "timestamps_ns": (t,),
      "joints_world": (s, t, 22, 3), "floor_z": (), "fps": (),
      "metadata": ()}
  assert {k: v.shape for k, v in out.items()} == shapes
  assert out["timestamps_ns"].dtype == np.int64
  for key in shapes:
    if key not in ("timestamps_ns", "metadata"):
      assert out[key].dtype == np.float32 and np.all(np.isfinite(out[key])), key
  # Output frame k is input pose k + 1.
  expected = _T0_NS + np.round(np.arange(1, _POSES) * 1e9 / 30)
  np.testing.assert_array_equal(out["timestamps_ns"], expected)
  stored = json.loads(str(out["metadata"]))
  assert stored["num_frames"] == t and stored["checkpoint_kind"] == "model"
  assert stored["floor_source"] == "npz floor_z"
  assert metadata["render"] == str(workdir / "motion.gif")
  assert not list(workdir.glob(".*tmp*"))  # The atomic write cleaned up.


@pytest.mark.parametrize("options", [
    dict(iterations=5),  # post
    dict(inner=True, inner_iterations=2, post=False),  # inner only
], ids=["post", "inner"])
def test_guidance_keeps_the_unguided_samples(first_run, input_npz,
                                             model_dir, tmp_path, options):
  """With post or inner guidance the sample fields are guided and
  `unguided_*` are the guidance-off run's samples (same keys); the head
  stays on the input and the guided motion is smoother (less jitter)."""
  _, _, plain = first_run
  config = _config(input_npz, model_dir, kind="none")
  config.guidance.update(mode="no_hands", **options)
  infer.run(config, str(tmp_path))
  with np.load(tmp_path / infer.OUTPUT_FILE) as data:
    out = {k: data[k] for k in data.files}
  # The same sampler in a larger program: float32 rounding of the joints.
  np.testing.assert_allclose(out["unguided_joints_world"],
                             plain["joints_world"], atol=1e-5)
  if not config.guidance.inner:  # post keeps the sample's betas
    np.testing.assert_array_equal(out["betas"], out["unguided_betas"])

  def jitter(joints):  # mean |third difference|, (S, T, 22, 3)
    return np.mean(np.linalg.norm(np.diff(joints, 3, axis=1), axis=-1))

  assert jitter(out["joints_world"]) < jitter(out["unguided_joints_world"])
  with pytest.raises(ValueError, match="config.guidance.mode"):
    config.guidance.mode = "aria_wrist_only"
    infer.run(config, str(tmp_path / "wrists"))


def test_unshifted_world_frame_and_root_placement(first_run):
  _, _, out = first_run
  # The CPF is the input's poses 1..T, in the input's world frame.
  np.testing.assert_allclose(out["Ts_world_cpf"], _head_poses(_POSES)[1:],
                             atol=1e-6)
  assert float(out["floor_z"]) == pytest.approx(_FLOOR)
  body = body_lib.builtin_body()
  betas, root, quats = (jnp.asarray(out[k]) for k in
                        ("betas", "Ts_world_root", "body_quats"))
  # The posed body's CPF sits on the input CPF (position 1e-4 m; rotation
  # as |w·w'| within 1e-5 of 1).
  cpf = np.asarray(body.T_world_cpf(betas, root, quats))
  np.testing.assert_allclose(cpf[..., 4:],
                             np.broadcast_to(out["Ts_world_cpf"][:, 4:],
                                             cpf[..., 4:].shape), atol=1e-4)
  dots = np.abs(np.sum(cpf[..., :4] * out["Ts_world_cpf"][:, :4], axis=-1))
  np.testing.assert_allclose(dots, 1.0, atol=1e-5)
  # The stored joints are those of the stored root, rotations and betas.
  joints = np.asarray(body.forward_kinematics(betas, root, quats))[..., 4:]
  np.testing.assert_allclose(out["joints_world"], joints, atol=1e-4)
  # Unit quaternions; identity hands for a model without hands.
  np.testing.assert_allclose(np.linalg.norm(out["body_quats"], axis=-1), 1.0,
                             atol=1e-5)
  np.testing.assert_array_equal(out["left_hand_quats"][..., 0], 1.0)
  np.testing.assert_array_equal(out["right_hand_quats"][..., 1:], 0.0)
  # Different keys, different samples (the tiny random network barely
  # depends on x_t, hence the small threshold; equal keys give exactly 0).
  assert np.abs(out["contacts"][0] - out["contacts"][1]).max() > 1e-5


def test_long_input_sampled_in_windows(first_run):
  _, _, out = first_run
  spans = windows.window_spans(_POSES - 1, _WINDOW, _OVERLAP)
  assert len(spans) == 4 and spans[-1][1] == _POSES - 1
  # Every frame, including those only the last windows cover, is posed.
  assert np.all(np.isfinite(out["joints_world"]))
  assert np.all(np.std(out["betas"][:, spans[-1][0]:], axis=-1) > 0)


def test_gif_written(first_run):
  workdir, _, _ = first_run
  frames = imageio.mimread(workdir / "motion.gif")
  assert len(frames) == 6  # ceil(23 / 4).
  assert frames[0].shape[:2] == (64, 64)


def test_select_frames():
  poses = _head_poses(20)
  trajectory = infer.HeadTrajectory(poses, np.arange(20), 0.0, "x", "f.npz")
  cut = infer.select_frames(trajectory, start_frame=3, max_frames=5)
  np.testing.assert_array_equal(cut.Ts_world_cpf, poses[3:9])
  np.testing.assert_array_equal(cut.timestamps_ns, np.arange(3, 9))
  assert len(infer.select_frames(trajectory, 0, 0).Ts_world_cpf) == 20
  with pytest.raises(ValueError, match="only 4 remain.*at least 5"):
    infer.select_frames(trajectory, start_frame=16, max_frames=0)


def _truncated_mps(shared_data, tmp_path, rows):
  source = shared_data / "aria_mps_sample" / "slam" / aria.TRAJECTORY_FILE
  folder = tmp_path / "mps" / "slam"
  folder.mkdir(parents=True)
  with open(source) as f:
    lines = [next(f) for _ in range(rows + 1)]
  (folder / aria.TRAJECTORY_FILE).write_text("".join(lines))
  return folder.parent


def _wrist_recording(root):
  """An MPS folder of `_POSES` poses at 30 Hz: the device poses that put the
  Gen 1 DVT-S CPF on `_head_poses`, and wrist estimates of the built-in body
  in its rest pose under that CPF, in the device frame; the left hand
  missing at poses 5-9.

  Returns:
    (folder, world wrists (N, 2, 3), estimate present (N, 2)).
  """
  cpf = _head_poses(_POSES)
  w, x, y, z, *t = aria.T_DEVICE_CPF["gen1_dvt_s"]
  cpf_device = Rotation.from_quat([x, y, z, w]).inv()
  xyzw = cpf_device.as_quat()
  T_world_device = aria.compose(
      cpf, np.r_[xyzw[3], xyzw[:3], -cpf_device.apply(t)])
  stamps = _T0_NS // 1000 + np.round(np.arange(_POSES) * 1e6 / 30)
  (root / "slam").mkdir(parents=True)
  (root / aria_hands.HAND_FOLDER).mkdir()
  write_trajectory_csv(root / "slam" / aria.TRAJECTORY_FILE, stamps,
                       T_world_device)
  body = body_lib.builtin_body()
  betas = jnp.zeros((_POSES, 16))
  rest = jnp.broadcast_to(jnp.array([1.0, 0, 0, 0]), (_POSES, 21, 4))
  root_poses = body.T_world_root_from_cpf(betas, jnp.asarray(cpf), rest)
  joints = np.asarray(body.forward_kinematics(betas, root_poses, rest))
  world = joints[:, list(guidance.WRIST_JOINTS), 4:].astype(np.float64)
  rotation = Rotation.from_quat(np.roll(T_world_device[:, :4], -1, -1))
  device = np.stack([rotation.inv().apply(world[:, side]
                                          - T_world_device[:, 4:])
                     for side in range(2)], axis=1)
  confidence = np.full((_POSES, 2), 0.8)
  confidence[5:10, 0] = -1.0
  write_wrist_csv(root / aria_hands.HAND_FOLDER / aria_hands.WRIST_FILE,
                  stamps, confidence, device, device + 0.05)
  return root, world, confidence > 0


def test_guidance_to_aria_wrists(model_dir, tmp_path):
  """aria_wrist_only on an MPS recording with wrist estimates: the guided
  wrists end much closer to the estimates than the sampler's; frames
  without an estimate are counted out. Without the file: one error naming
  it and the option."""
  folder, world, present = _wrist_recording(tmp_path / "mps")
  config = _config(folder, model_dir, kind="none")
  config.guidance.update(mode="aria_wrist_only", iterations=5)
  with pytest.warns(UserWarning, match="floor"):  # no points: the prior
    metadata = infer.run(config, str(tmp_path / "run"))
  assert metadata["wrist_frames"] == present[1:].sum(0).tolist() == [18, 23]
  with np.load(tmp_path / "run" / infer.OUTPUT_FILE) as data:
    out = {k: data[k] for k in data.files}
  np.testing.assert_allclose(out["Ts_world_cpf"], _head_poses(_POSES)[1:],
                             atol=1e-5)

  def distance(joints):  # mean over samples and present estimates
    wrists = joints[..., list(guidance.WRIST_JOINTS), :]
    error = np.linalg.norm(wrists - world[1:], axis=-1)
    return error[:, present[1:]].mean()

  guided = distance(out["joints_world"])
  unguided = distance(out["unguided_joints_world"])
  # Measured: 1.1 mm guided, 59 mm unguided (5 LM iterations).
  assert guided < 0.2 * unguided, (guided, unguided)
  (folder / aria_hands.HAND_FOLDER / aria_hands.WRIST_FILE).unlink()
  with pytest.raises(ValueError, match=r"config.guidance.mode="
                     r"'aria_wrist_only' needs .*hand_tracking/"
                     r"wrist_and_palm_poses.csv"):
    infer.run(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


def _write_points(path, xyz, stds):
  """A semidense_points.csv.gz with MPS's columns: (P, 3) positions, (P, 2)
  inv_dist_std and dist_std."""
  lines = ["uid,graph_uid,px_world,py_world,pz_world,inv_dist_std,dist_std"]
  lines += [f"{i},ea7288b8-b6a0-012d-8156-257aba6bd796,{p[0]:.6f},"
            f"{p[1]:.6f},{p[2]:.6f},{s[0]},{s[1]}"
            for i, (p, s) in enumerate(zip(xyz, stds))]
  path.write_bytes(gzip.compress("\n".join(lines).encode()))


def test_aria_points_in_outputs_and_page(model_dir, tmp_path):
  """An MPS recording with semi-dense points: the floor comes from them,
  `outputs.npz` adds the confident ones in a box 4 m around the CPF path
  (`semidense_points`, file order, float32) and the page draws them."""
  folder, _, _ = _wrist_recording(tmp_path / "mps")
  rng = np.random.default_rng(0)
  floor = np.c_[rng.uniform(-2, 3, (1500, 2)),
                rng.normal(_FLOOR, 0.002, 1500)]
  wall = np.c_[rng.uniform(-2, 3, 500), np.full(500, 2.5),
               rng.uniform(_FLOOR, _FLOOR + 2.5, 500)]
  far = np.c_[np.full(20, 50.0), np.zeros(20), np.full(20, _FLOOR + 1)]
  shaky = rng.uniform(-1, 1, (200, 3)) + [0, 0, _FLOOR + 1]
  confident, unsure = [5e-4, 0.01], [0.01, 0.2]  # loose filter: in, out
  xyz = np.concatenate([floor, wall, far, shaky])
  stds = np.array([confident] * 2020 + [unsure] * 200)
  _write_points(folder / "slam" / aria.POINT_FILES[0], xyz, stds)
  config = _config(folder, model_dir, kind="html")
  metadata = infer.run(config, str(tmp_path / "run"))
  with np.load(tmp_path / "run" / infer.OUTPUT_FILE) as data:
    out = {k: data[k] for k in data.files}
  assert set(out) == {
      "Ts_world_cpf", "Ts_world_root", "body_quats", "left_hand_quats",
      "right_hand_quats", "contacts", "betas", "timestamps_ns",
      "joints_world", "floor_z", "fps", "metadata", "semidense_points"}
  assert metadata["floor_source"] == "points (loose filter)"
  assert float(out["floor_z"]) == pytest.approx(_FLOOR, abs=0.003)
  points = out["semidense_points"]
  assert points.dtype == np.float32
  np.testing.assert_allclose(points, np.concatenate([floor, wall]),
                             atol=1e-6)
  assert json.loads(str(out["metadata"]))["semidense_points"] == 2000
  page = (tmp_path / "run" / "motion.html").read_text()
  data = json.loads(re.search(r'id="motion-data">(.*?)</script>', page,
                              re.S).group(1))
  assert len(data["points_mm"]) == 3 * 2000


def test_points_near_box_and_subset():
  points = np.array([[0.0, 0, 0], [5, 0, 0], [0, 0, 4.5], [1, 1, 1]])
  path = np.array([[0.0, 0, 0], [0.5, 0, 0]])
  # The box: x in [-4, 4.5], y and z in [-4, 4].
  np.testing.assert_array_equal(aria.points_near(points, path, margin=4.0),
                                points[[0, 3]])
  many = np.random.default_rng(0).uniform(-1, 1, (100, 3))
  kept = aria.points_near(many, path, max_points=10)
  assert kept.shape == (10, 3) and kept.dtype == np.float32
  rows = [int(np.argmin(np.abs(many - k).sum(-1))) for k in kept]
  assert rows == sorted(rows)  # a subset, in file order
  np.testing.assert_array_equal(aria.points_near(many, path, max_points=10),
                                kept)  # the same subset every time
  stds = np.array([[5e-4, 0.01], [0.01, 0.01], [5e-4, 0.2], [5e-4, 0.01]])
  np.testing.assert_array_equal(
      aria.confident_points(np.c_[points, stds]), points[[0, 3]])
  assert aria.confident_points(None) is None


def test_aria_input(shared_data, tmp_path):
  # 400 rows of the 1 kHz sample: 0.4 s, 12 poses at 30 fps, no points.
  folder = _truncated_mps(shared_data, tmp_path, 400)
  with pytest.warns(UserWarning, match="floor"):
    trajectory = infer.load_head_trajectory(folder)
  with pytest.warns(UserWarning):
    expected = aria.load_mps(folder)
  np.testing.assert_array_equal(trajectory.Ts_world_cpf, expected.T_world_cpf)
  assert len(trajectory.Ts_world_cpf) == 12
  assert trajectory.timestamps_ns[0] == 149_202_610_000
  np.testing.assert_allclose(np.diff(trajectory.timestamps_ns), 1e9 / 30,
                             atol=1)
  assert trajectory.floor_source == "head-height prior"
  assert trajectory.source.endswith("closed_loop_trajectory.csv")


@pytest.mark.parametrize("rows", [1, 3, 100])
def test_mps_csv_with_too_few_rows(shared_data, tmp_path, rows, model_dir):
  folder = _truncated_mps(shared_data, tmp_path, rows)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # No points: the floor prior's warning.
    with pytest.raises(ValueError,
                       match=r"closed_loop_trajectory.csv: too few rows.*at "
                       r"least 5 poses"):
      infer.run(_config(folder, model_dir), str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


def test_critic_checkpoint_rejected(input_npz, tmp_path):
  critic = tmp_path / "critic_run"
  (critic / "checkpoints" / "10" / "state").mkdir(parents=True)
  (critic / "critic_config.json").write_text("{}")
  for path in (critic, critic / "checkpoints" / "10"):
    with pytest.raises(ValueError, match="is a critic checkpoint.*needs a "
                       "denoiser"):
      infer.run(_config(input_npz, path), str(tmp_path / "w"))
  with pytest.raises(ValueError, match="is not a checkpoint"):
    infer.run(_config(input_npz, tmp_path), str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


def test_missing_and_malformed_input(model_dir, tmp_path):
  with pytest.raises(FileNotFoundError, match="config.input=.*nothere"):
    infer.run(_config(tmp_path / "nothere", model_dir), str(tmp_path / "w"))
  with pytest.raises(ValueError, match="config.input is empty"):
    infer.run(_config("", model_dir), str(tmp_path / "w"))
  with pytest.raises(ValueError, match="config.checkpoint is empty"):
    infer.run(_config(tmp_path, ""), str(tmp_path / "w"))
  np.savez(tmp_path / "a.npz", poses=np.zeros((9, 7)))
  with pytest.raises(ValueError, match="a.npz: no 'T_world_cpf'"):
    infer.load_head_trajectory(tmp_path / "a.npz")
  np.savez(tmp_path / "b.npz", T_world_cpf=_head_poses(9),
           timestamps_ns=np.arange(9) * 10_000_000)
  with pytest.raises(ValueError, match="10.00 ms apart, expected 33.33 ms"):
    infer.load_head_trajectory(tmp_path / "b.npz")
  np.savez(tmp_path / "c.npz", T_world_cpf=_head_poses(3))
  with pytest.raises(ValueError, match="c.npz: too few rows: 3 pose"):
    infer.load_head_trajectory(tmp_path / "c.npz")
  # Without floor_z: 1.6 m under the head (90th percentile of its height).
  np.savez(tmp_path / "d.npz", T_world_cpf=_head_poses(9))
  trajectory = infer.load_head_trajectory(tmp_path / "d.npz")
  assert trajectory.floor_z == pytest.approx(_FLOOR)
  assert trajectory.floor_source == "head-height prior"
  np.testing.assert_array_equal(trajectory.timestamps_ns,
                                np.round(np.arange(9) * 1e9 / 30))
  (tmp_path / "mps").mkdir()
  with pytest.raises(aria.AriaError, match="no closed_loop_trajectory.csv"):
    infer.load_head_trajectory(tmp_path / "mps")


def test_config_variants_and_bad_fields(input_npz, model_dir, tmp_path):
  quick = infer_config.get_config("quick")
  assert (quick.sampler.num_steps, quick.render.stride) == (10, 2)
  for variant in infer_config.VARIANTS:
    config = infer_config.get_config(variant)
    config.update(input=str(input_npz), checkpoint=str(model_dir))
    infer.validate(config)  # Every variant is valid once given its paths.
  with pytest.raises(ValueError, match="unknown variant 'fast'"):
    infer_config.get_config("fast")
  for overrides, message in (({"kind": "png"}, "config.render.kind='png'"),
                             ({"sample": 2}, "config.render.sample=2")):
    with pytest.raises(ValueError, match=message):
      infer.validate(_config(input_npz, model_dir, **overrides))
  config = _config(input_npz, model_dir)
  config.sampler.overlap = 8
  with pytest.raises(ValueError, match="config.sampler"):
    infer.validate(config)
  for overrides, error, message in (
      ({"aria_reader": "fast"}, ValueError, "config.aria_reader='fast'"),
      ({"aria_use_svd": True}, ValueError,
       "config.aria_use_svd=True needs config.aria_calibration"),
      ({"aria_calibration": str(tmp_path / "calib.json")}, FileNotFoundError,
       "config.aria_calibration=.*calib.json.*no such file")):
    config = _config(input_npz, model_dir)
    config.update(overrides)
    with pytest.raises(error, match=message):
      infer.validate(config)
