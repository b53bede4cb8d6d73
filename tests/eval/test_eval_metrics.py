"""Evaluation metrics on hand-computed cases."""

import math

import jax
import jax.numpy as jnp
import jaxlie
import numpy as np
import pytest

from motiongrpo_jax.body import skeleton
from motiongrpo_jax.eval import metrics

FPS = 30.0
# One jitted copy shared by the tests (jit compiles faster than eager ops).
_compute_all = jax.jit(metrics.compute_all)


def _body_motion(num_frames: int, seed: int = 0, batch: tuple[int, ...] = ()):
  """A jittered T-pose standing on the floor (world z up), (..., T, 22, 3)."""
  rest = np.asarray(skeleton.REST_JOINTS)
  # SMPL canonical (+y up, +z forward) to world z up: (x, y, z) → (x, −z, y).
  world = np.stack([rest[:, 0], -rest[:, 2], rest[:, 1]], axis=-1)
  world[:, 2] -= skeleton.REST_SOLE_Y
  rng = np.random.default_rng(seed)
  noise = 0.02 * rng.standard_normal(batch + (num_frames, 22, 3))
  walk = np.zeros(batch + (num_frames, 1, 3))
  walk[..., 0] = np.arange(num_frames)[:, None] * 0.04
  return (world + noise + walk).astype(np.float32)


def _random_quats(shape, seed):
  q = np.random.default_rng(seed).standard_normal(shape + (4,))
  return (q / np.linalg.norm(q, axis=-1, keepdims=True)).astype(np.float32)


def _similarity(points, scale, rot, trans):
  return scale * points @ np.asarray(rot).T + trans


def test_umeyama_recovers_known_similarity():
  # float32 throughout; tolerance 1e-5 on R, t (metres) and relative on s.
  src = _body_motion(2, seed=1)  # (2, 22, 3): two independent frames
  rot = np.asarray(jaxlie.SO3.exp(jnp.array([
      [0.3, -1.2, 0.7], [2.5, 0.4, -0.1]])).as_matrix())
  scale = np.array([1.7, 0.6], np.float32)
  trans = np.array([[0.5, -2.0, 1.0], [3.0, 0.1, -0.4]], np.float32)
  dst = np.stack([_similarity(src[i], scale[i], rot[i], trans[i])
                  for i in range(2)])
  s, r, t = metrics.umeyama(jnp.asarray(src), jnp.asarray(dst))
  np.testing.assert_allclose(s, scale, rtol=1e-5)
  np.testing.assert_allclose(r, rot, atol=1e-5)
  np.testing.assert_allclose(t, trans, atol=1e-5)
  # Rigid variant: s = 1 exactly and the rotation of a rigid copy recovered.
  rigid = np.stack([_similarity(src[i], 1.0, rot[i], trans[i]) for i in range(2)])
  s, r, t = metrics.umeyama(jnp.asarray(src), jnp.asarray(rigid), with_scale=False)
  np.testing.assert_array_equal(s, [1.0, 1.0])
  np.testing.assert_allclose(r, rot, atol=1e-5)
  np.testing.assert_allclose(t, trans, atol=1e-5)


def test_umeyama_never_returns_a_reflection():
  src = _body_motion(1, seed=2)[0]
  mirrored = src * np.array([-1.0, 1.0, 1.0], np.float32)
  _, r, _ = metrics.umeyama(jnp.asarray(src), jnp.asarray(mirrored))
  np.testing.assert_allclose(np.linalg.det(np.asarray(r)), 1.0, atol=1e-5)
  np.testing.assert_allclose(np.asarray(r) @ np.asarray(r).T, np.eye(3), atol=1e-5)


def test_mpjpe_of_a_constant_offset_is_the_offset():
  gt = _body_motion(5)
  pred = gt + np.array([0.03, 0.04, 0.0], np.float32)  # |offset| = 50 mm
  np.testing.assert_allclose(metrics.mpjpe(pred, gt), 50.0, atol=1e-3)
  np.testing.assert_allclose(metrics.t_head(pred[:, 15], gt[:, 15]), 50.0,
                             atol=1e-3)
  # A constant offset has no velocity error.
  np.testing.assert_allclose(metrics.mpjve(pred, gt, FPS), 0.0, atol=1e-2)


def test_pelvis_error_and_root_relative_mpjpe_split_the_world_error():
  gt = _body_motion(5)
  offset = np.array([0.03, 0.04, 0.0], np.float32)  # 50 mm
  shifted = gt + offset
  quats = _all_inputs(5, seed=3)[2:]
  got = metrics.compute_all(shifted, gt, *quats, FPS)
  np.testing.assert_allclose(got["pelvis_error"], 50.0, atol=1e-3)
  np.testing.assert_allclose(got["root_relative_mpjpe"], 0.0, atol=1e-3)
  # Only the pelvis moves: each of the other 21 joints is 50 mm off relative
  # to it, averaged over 22 joints.
  pelvis_only = gt.copy()
  pelvis_only[:, 0] += offset
  np.testing.assert_allclose(
      metrics.root_relative_mpjpe(pelvis_only, gt), 50.0 * 21 / 22, atol=1e-3)
  # Only the head moves: the pelvis is exact, one joint in 22 is 50 mm off.
  head_only = gt.copy()
  head_only[:, 15] += offset
  np.testing.assert_allclose(
      metrics.root_relative_mpjpe(head_only, gt), 50.0 / 22, atol=1e-3)
  got = metrics.compute_all(head_only, gt, *quats, FPS)
  np.testing.assert_allclose(got["pelvis_error"], 0.0, atol=1e-3)


def test_pampjpe_of_rigid_and_scaled_copies_is_zero_in_both_conventions():
  gt = _body_motion(3, seed=3)
  rot = np.asarray(jaxlie.SO3.exp(jnp.array([0.4, -0.2, 1.1])).as_matrix())
  trans = np.array([1.0, -0.5, 0.2], np.float32)
  for scale in (1.0, 1.5):
    pred = _similarity(gt, scale, rot, trans).astype(np.float32)
    assert metrics.mpjpe(pred, gt) > 100.0
    # 10 µm tolerance: float32 SVD on metre-sized coordinates.
    np.testing.assert_allclose(metrics.pampjpe(pred, gt), 0.0, atol=1e-2)
    np.testing.assert_allclose(
        metrics.pampjpe_egoallo_compat(pred, gt), 0.0, atol=1e-2)


def test_pampjpe_conventions_differ_on_a_stretched_pose():
  # Ground truth ±e_x, ±e_y, ±e_z; the prediction is stretched ×2 along z.
  # Aligning pred to gt: s = (1+1+2)/(1+1+4) = 2/3, every point is off by
  # 1/3 m → 333.33 mm. Aligning gt to pred: s = (1+1+2)/3 = 4/3; x, y points
  # are off by 1/3, z points by 2/3 → (1/3+1/3+2/3)/3 = 4/9 m → 444.44 mm.
  gt = np.concatenate([np.eye(3), -np.eye(3)]).astype(np.float32)[None]
  pred = gt * np.array([1.0, 1.0, 2.0], np.float32)
  np.testing.assert_allclose(metrics.pampjpe(pred, gt), 1000 / 3, rtol=1e-5)
  np.testing.assert_allclose(
      metrics.pampjpe_egoallo_compat(pred, gt), 4000 / 9, rtol=1e-5)
  # Scaling the prediction ×2 (plus a rigid motion) leaves the standard value
  # and doubles EgoAllo's: 888.89 mm.
  rot = np.asarray(jaxlie.SO3.exp(jnp.array([0.1, 0.9, -0.3])).as_matrix())
  moved = _similarity(pred, 2.0, rot, np.array([0.3, 0.2, 0.1])).astype(np.float32)
  np.testing.assert_allclose(metrics.pampjpe(moved, gt), 1000 / 3, rtol=1e-4)
  np.testing.assert_allclose(
      metrics.pampjpe_egoallo_compat(moved, gt), 8000 / 9, rtol=1e-4)


def test_mpjve_of_a_linear_drift():
  gt = _body_motion(6, seed=4)
  t = np.arange(6, dtype=np.float32)[:, None, None] / FPS
  pred = gt + t * np.array([0.0, 0.6, 0.8], np.float32)  # 1 m/s drift
  np.testing.assert_allclose(metrics.mpjve(pred, gt, FPS), 1000.0, rtol=1e-4)


def test_mpjre_is_the_geodesic_angle_in_degrees():
  gt = _random_quats((4, 21), seed=5)
  angles = np.where(np.arange(21) % 2 == 0, 10.0, 50.0)  # mean 29.52…
  delta = np.asarray(jaxlie.SO3.from_z_radians(jnp.radians(angles)).wxyz)
  pred = np.asarray((jaxlie.SO3(jnp.asarray(gt)) @ jaxlie.SO3(delta)).wxyz)
  np.testing.assert_allclose(metrics.mpjre(pred, gt), np.mean(angles), atol=1e-3)
  # q and −q are one rotation; scaling a quaternion changes nothing.
  np.testing.assert_allclose(metrics.mpjre(-3.0 * gt, gt), 0.0, atol=1e-3)


def test_jitter_of_a_sinusoid():
  # Period of 4 frames: the third difference of A·sin(kπ/2) is ±2A in every
  # window, so each jerk has magnitude 2·A·fps³ = 540 m/s³ for A = 1 cm.
  # The second joint stands still, so the mean over joints is 270 m/s³.
  amp = 0.01
  joints = np.zeros((9, 2, 3), np.float32)
  joints[:, 0, 1] = amp * np.sin(np.arange(9) * np.pi / 2)
  np.testing.assert_allclose(metrics.jitter(joints, FPS), amp * FPS**3,
                             rtol=1e-4)
  # A slow sinusoid approaches the continuous mean |jerk| = A·ω³·2/π
  # (60 frames per period, two whole periods of windows). Tolerance: the
  # third difference is (sin x/x)³ ≈ 1 − x²/2 = 1 − 1.4e-3 of it (x = π/60);
  # float32 p (8 roundings ≤ eps/2·A per jerk of 1.1e-3·A) adds ≤ 4e-4.
  omega = 2 * np.pi * FPS / 60
  t = np.arange(123) / FPS
  slow = np.zeros((123, 1, 3), np.float32)
  slow[:, 0, 2] = amp * np.sin(omega * t)
  np.testing.assert_allclose(metrics.jitter(slow, FPS),
                             amp * omega**3 * 2 / np.pi, rtol=3e-3)


def test_ground_penetration():
  joints = np.ones((4, 22, 3), np.float32)
  joints[0, 3, 2] = -0.02  # 20 mm below the floor
  joints[1, 5, 2] = -0.02
  joints[2, 7, 2] = 0.01  # above the floor: 0
  np.testing.assert_allclose(metrics.ground_penetration(joints), 10.0, atol=1e-3)
  # With the floor at z = 0.05, the frames' depths are 70, 70, 40, 0 mm.
  np.testing.assert_allclose(metrics.ground_penetration(joints, 0.05), 45.0,
                             atol=1e-3)


def _feet_scene(num_frames, slide, height_offset=0.0):
  """Body joints at 1 m; ankles at 4 cm, toes at 0 cm, feet sliding `slide`/frame."""
  joints = np.ones((num_frames, 22, 3), np.float32)
  feet = list(metrics.FOOT_JOINTS)
  joints[:, feet, 2] = np.array([0.04, 0.04, 0.0, 0.0], np.float32)
  joints[:, feet, :2] = np.arange(num_frames)[:, None, None] * np.asarray(slide)
  joints[..., 2] += height_offset
  return joints


def test_foot_skate_planted_versus_sliding():
  assert metrics.foot_skate(_feet_scene(5, (0.0, 0.0))) == 0.0
  # Sliding 1 cm/frame along x for 4 steps: ankles at z/H = 0.5 weigh 2 − √2,
  # toes at z = 0 weigh 1: 4 · 0.01 · (2·(2 − √2) + 2) = 0.126863 m.
  expected = 4 * 0.01 * (2 * (2 - math.sqrt(2)) + 2)
  np.testing.assert_allclose(metrics.foot_skate(_feet_scene(5, (0.01, 0.0))),
                             expected, rtol=1e-5)
  # The horizontal step is an L1 norm: a diagonal (1 cm, 1 cm) step counts 2 cm.
  np.testing.assert_allclose(
      metrics.foot_skate(_feet_scene(5, (0.01, 0.01))), 2 * expected, rtol=1e-5)
  # A floating person is first dropped to the floor: same value.
  np.testing.assert_allclose(
      metrics.foot_skate(_feet_scene(5, (0.01, 0.0), height_offset=0.3)),
      expected, rtol=1e-5)
  # Feet above their thresholds (ankles 9 cm, toes 5 cm after the drop, the
  # pelvis-free lowest joint being at 0) do not count.
  high = _feet_scene(5, (0.01, 0.0))
  high[:, list(metrics.FOOT_JOINTS), 2] += np.float32(0.05)
  high[:, 3, 2] = 0.0  # spine1 is now the lowest joint
  assert metrics.foot_skate(high) == 0.0


def test_foot_contact():
  joints = _feet_scene(3, (0.0, 0.0), height_offset=0.3)
  assert metrics.foot_contact(joints) == 0.0  # lowest toe at 30 cm
  joints[1, skeleton.LEFT_FOOT, 2] = 0.039  # one toe, one frame, below 4 cm
  assert metrics.foot_contact(joints) == 1.0
  # With the floor 1 cm lower the toe is 4.9 cm above it: no contact.
  assert metrics.foot_contact(joints, floor_z=-0.01) == 0.0
  assert metrics.foot_contact(
      joints, mask=np.array([True, False, True])) == 0.0


def _all_inputs(num_frames, seed, batch=()):
  gt = _body_motion(num_frames, seed=seed, batch=batch)
  pred = gt + 0.03 * np.random.default_rng(seed + 100).standard_normal(
      gt.shape).astype(np.float32)
  gt_q = _random_quats(batch + (num_frames, 21), seed + 200)
  pred_q = _random_quats(batch + (num_frames, 21), seed + 300)
  return pred, gt, pred_q, gt_q


def test_masks_exclude_padded_frames():
  pred, gt, pred_q, gt_q = _all_inputs(8, seed=6)
  want = _compute_all(pred, gt, pred_q, gt_q, FPS)
  pad = 3
  garbage = np.random.default_rng(7).standard_normal((pad, 22, 3)) * 5 - 3
  padded = [
      np.concatenate([pred, garbage.astype(np.float32)]),
      np.concatenate([gt, np.zeros((pad, 22, 3), np.float32)]),  # degenerate
      np.concatenate([pred_q, np.zeros((pad, 21, 4), np.float32)]),
      np.concatenate([gt_q, _random_quats((pad, 21), 8)]),
  ]
  mask = np.arange(8 + pad) < 8
  got = _compute_all(*padded, FPS, mask=mask)
  assert set(got) == set(metrics.METRIC_NAMES)
  for name in metrics.METRIC_NAMES:
    np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-5,
                               err_msg=name)
    assert np.isfinite(got[name]), name
  # Without the mask the garbage shows.
  unmasked = _compute_all(*padded, FPS)
  assert unmasked["mpjpe"] > 2 * want["mpjpe"]


def test_compute_all_jits_and_batches():
  pred, gt, pred_q, gt_q = _all_inputs(6, seed=9, batch=(2, 3))
  mask = np.ones((2, 3, 6), bool)
  mask[1, 2, 4:] = False
  eager = metrics.compute_all(pred, gt, pred_q, gt_q, FPS, mask=mask)
  jitted = _compute_all(pred, gt, pred_q, gt_q, FPS, mask=mask)
  for name in metrics.METRIC_NAMES:
    assert jitted[name].shape == (2, 3), name
    np.testing.assert_allclose(jitted[name], eager[name], rtol=1e-4,
                               atol=1e-4, err_msg=name)
  # Each batch element equals its own unbatched evaluation.
  single = _compute_all(pred[1, 2], gt[1, 2], pred_q[1, 2], gt_q[1, 2],
                        FPS, mask=mask[1, 2])
  for name in metrics.METRIC_NAMES:
    np.testing.assert_allclose(jitted[name][1, 2], single[name], rtol=1e-5,
                               atol=1e-5, err_msg=name)


def test_summarize_mean_and_stderr():
  out = metrics.summarize({"mpjpe": np.array([1.0, 2.0, 3.0, 4.0]),
                           "foot_contact": np.array([[1.0, 0.0]])})
  # std (ddof = 1) of 1..4 is √(5/3); /√4.
  assert out["mpjpe"] == {"mean": 2.5, "stderr": pytest.approx(math.sqrt(5 / 3) / 2)}
  assert out["foot_contact"]["mean"] == 0.5
  assert out["foot_contact"]["stderr"] == pytest.approx(math.sqrt(0.5) / math.sqrt(2))
  assert math.isnan(metrics.summarize({"x": np.array([3.0])})["x"]["stderr"])
  with pytest.raises(ValueError, match="'jitter'.*1 non-finite"):
    metrics.summarize({"jitter": np.array([1.0, np.nan])})


def test_bad_shapes_raise_clear_errors():
  gt = _body_motion(4)
  with pytest.raises(ValueError, match="mpjpe: prediction shape"):
    metrics.mpjpe(gt[:, :21], gt)
  with pytest.raises(ValueError, match="foot_skate: expected the 22 joints"):
    metrics.foot_skate(gt[:, :21])
  with pytest.raises(ValueError, match="mask: expected shape"):
    metrics.mpjpe(gt, gt, mask=np.ones(5, bool))
  with pytest.raises(ValueError, match="jitter: expected joints"):
    metrics.jitter(gt[:3], FPS)
