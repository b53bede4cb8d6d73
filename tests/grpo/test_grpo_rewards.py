"""Hybrid reward and group advantages against hand-computed values."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import jaxlie
import numpy as np
import pytest

from motiongrpo_jax import body as body_lib
from motiongrpo_jax import geometry
from motiongrpo_jax.eval import posing
from motiongrpo_jax.grpo import rewards
from motiongrpo_jax.model import packing

CONFIG = rewards.RewardConfig()


def _motion(seed=0, frames=6):
  """A random ground-truth motion: betas, root poses, body quats."""
  rng = np.random.default_rng(seed)
  betas = rng.normal(0, 0.5, 16).astype(np.float32)
  quats = jaxlie.SO3.exp(jnp.asarray(rng.normal(0, 0.3, (frames, 21, 3)),
                                     jnp.float32)).wxyz
  root_rot = jaxlie.SO3.from_x_radians(jnp.full((frames,), math.pi / 2))
  root_t = jnp.asarray(np.c_[0.03 * np.arange(frames), np.zeros(frames),
                             np.full(frames, 0.95)], jnp.float32)
  T_world_root = jaxlie.SE3.from_rotation_and_translation(root_rot,
                                                          root_t).wxyz_xyz
  return jnp.asarray(betas), T_world_root, quats


def test_group_normalise_by_hand():
  r = jnp.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0], [0.0, 0.0, 0.003]])
  out = np.asarray(rewards.group_normalise(r, 1e-2, "group"))
  std = math.sqrt(2.0 / 3.0)
  np.testing.assert_allclose(out[0], [-1 / std, 0, 1 / std], rtol=1e-6)
  np.testing.assert_array_equal(out[1], [0, 0, 0])
  # A flat group (std √2·0.001 < the floor 0.01) is divided by the floor.
  np.testing.assert_allclose(out[2], [-0.1, -0.1, 0.2], rtol=1e-5)
  # "batch": one scale, the RMS of all centred rewards: √((2 + 0 + 6e-6)/9).
  batch = np.asarray(rewards.group_normalise(r, 1e-2, "batch"))
  scale = math.sqrt((2.0 + 6e-6) / 9.0)
  np.testing.assert_allclose(batch[0], [-1 / scale, 0, 1 / scale], rtol=1e-5)
  np.testing.assert_allclose(batch[2], np.array([-1, -1, 2]) * 1e-3 / scale,
                             rtol=1e-4)


def test_batch_scale_spans_devices():
  """Under shard_map the "batch" scale is the RMS over every device."""
  r = jnp.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.003]])
  whole = rewards.group_normalise(r, 1e-2, "batch")
  per_device = jax.vmap(
      lambda x: rewards.group_normalise(x, 1e-2, "batch", axis_name="d"),
      axis_name="d")(r[:, None])
  np.testing.assert_allclose(np.asarray(per_device)[:, 0], whole, rtol=1e-6)


def test_advantages_per_reward_sum_and_clip_by_hand():
  config = rewards.RewardConfig(weight_rot=2.0, weight_pos=0.5,
                                weight_pa_pos=0.0, weight_vel=0.0,
                                normalisation="per_reward", std_scope="group",
                                std_floor=1e-4, advantage_clip=2.5)
  r = {"rot": jnp.array([[0.1, 0.2, 0.3, 0.4]]),
       "pos": jnp.array([[1.0, 1.0, 1.0, 3.0]]),
       "pa_pos": jnp.array([[9.0, 0.0, 0.0, 0.0]])}  # weight 0: ignored
  adv, norm = rewards.advantages(r, config)
  # rot: mean .25, std √0.0125; pos: mean 1.5, std √0.75.
  rot = np.array([-0.15, -0.05, 0.05, 0.15]) / math.sqrt(0.0125)
  pos = np.array([-0.5, -0.5, -0.5, 1.5]) / math.sqrt(0.75)
  expected = np.clip(2.0 * rot + 0.5 * pos, -2.5, 2.5)
  np.testing.assert_allclose(np.asarray(adv)[0], expected, rtol=1e-5)
  assert set(norm) == {"rot", "pos"}
  # Raw sums −2.97, −1.18, 0.61, 3.55: the outer two are clipped to ∓2.5.
  np.testing.assert_allclose(np.asarray(adv)[0, [0, 3]], [-2.5, 2.5])
  assert float(adv[0, 1]) == pytest.approx(-1.1833, abs=1e-3)


def test_advantages_of_the_weighted_sum_by_hand():
  """"sum": the raw hybrid Σw·r/Σw normalised once, then clipped."""
  config = rewards.RewardConfig(weight_rot=3.0, weight_pos=1.0,
                                weight_pa_pos=0.0, weight_vel=0.0,
                                std_scope="group", std_floor=1e-3,
                                advantage_clip=1.2)
  r = {"rot": jnp.array([[0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.5, 0.5]]),
       "pos": jnp.array([[1.0, 1.0, 1.0, 3.0], [0.2, 0.2, 0.2, 0.2008]])}
  adv, norm = rewards.advantages(r, config)
  # Group 0: h = (3·rot + pos)/4 = [.325, .4, .475, 1.05]; mean .5625.
  h = np.array([0.325, 0.4, 0.475, 1.05])
  a0 = (h - h.mean()) / h.std()
  np.testing.assert_allclose(np.asarray(norm["hybrid"])[0], a0, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(adv)[0], np.clip(a0, -1.2, 1.2),
                             rtol=1e-5)
  # Group 1: h varies by 0.0002 only (std 8.7e-5 < the floor 1e-3): the
  # advantages stay small instead of being blown up to ±1.7.
  h1 = np.array([0.0, 0.0, 0.0, 0.0002])
  # Float32 h ≈ 0.35 carries ~3e-8 per rounding (a few roundings), /1e-3.
  np.testing.assert_allclose(np.asarray(adv)[1], (h1 - h1.mean()) / 1e-3,
                             atol=2e-4)
  assert float(jnp.max(jnp.abs(adv[1]))) < 0.2


def test_identical_motion_has_zero_error_and_root_from_cpf():
  """A packed ground truth, rooted from its own CPF, reproduces its joints."""
  body = body_lib.builtin_body()
  betas, T_world_root, quats = _motion()
  gt = posing.pose_ground_truth(betas, T_world_root, quats, body)
  T_world_cpf = body.T_world_cpf(betas, T_world_root, quats)
  x0 = packing.pack(betas[None], geometry.quat_to_matrix(quats),
                    jnp.zeros((6, 21)))
  pred = posing.pose_sample(x0, T_world_cpf, body)
  np.testing.assert_allclose(pred.joints, gt.joints, atol=2e-5)
  errors = rewards.joint_errors(pred, gt, None, CONFIG)
  relative = [n for n in rewards.JOINT_REWARD_NAMES if n != "skate"]
  for name in relative:
    assert float(errors[name]) == pytest.approx(0.0, abs=2e-4), name
  r = rewards.rewards_from_errors(errors, CONFIG)
  for name in relative:
    assert float(r[name]) == pytest.approx(1.0, abs=2e-3), name


def _posed_feet(slide_per_frame, frames=5, foot_height=0.0):
  """22 joints at 1 m; ankles 4 cm and toes `foot_height` m above the floor,
  the four foot joints moving `slide_per_frame` metres along x per frame."""
  joints = np.ones((frames, 22, 3), np.float32)
  joints[:, 0, 2] = 0.0  # the pelvis does not set the floor
  feet = list(rewards.metrics.FOOT_JOINTS)
  joints[:, feet, 2] = [0.04, 0.04, foot_height, foot_height]
  joints[:, 3, 2] = 0.0  # spine1 sets the floor at 0
  joints[:, feet, 0] = np.arange(frames)[:, None] * slide_per_frame
  rotmats = jnp.broadcast_to(jnp.eye(3), (frames, 21, 3, 3))
  return posing.PosedMotion(body_rotmats=rotmats, joints=jnp.asarray(joints))


def test_skate_error_is_the_samples_foot_skate_per_second():
  config = dataclasses.replace(CONFIG, fps=30.0)
  truth = _posed_feet(0.0)
  # Feet sliding 1 cm/frame along x: per frame pair the ankles (z/H = 0.5)
  # weigh 2 − √2 and the toes (z = 0) 1, so e = 30 · 0.01 · (2(2 − √2) + 2)
  # = 0.9515 m/s, whatever the truth does.
  expected = 30 * 0.01 * (2 * (2 - math.sqrt(2)) + 2)
  for gt in (truth, _posed_feet(0.02)):
    errors = rewards.joint_errors(_posed_feet(0.01), gt, None, config)
    assert float(errors["skate"]) == pytest.approx(expected, rel=1e-5)
  r = rewards.rewards_from_errors(errors, config)
  assert float(r["skate"]) == pytest.approx(math.exp(-5.0 * expected),
                                            rel=1e-5)
  # Toes lifted above their 4 cm threshold: only the ankles count.
  lifted = rewards.joint_errors(_posed_feet(0.01, foot_height=0.05), truth,
                                None, config)
  assert float(lifted["skate"]) == pytest.approx(
      30 * 0.01 * 2 * (2 - math.sqrt(2)), rel=1e-5)
  # Feet planted: 0. A slide only on a masked-out frame pair costs nothing,
  # and the mean is over the 3 valid pairs.
  assert float(rewards.joint_errors(truth, truth, None, config)["skate"]) == 0
  mask = jnp.array([True, True, True, True, False])
  jump = truth._replace(joints=truth.joints.at[4, list(
      rewards.metrics.FOOT_JOINTS), 0].add(1.0))
  assert float(rewards.joint_errors(jump, truth, mask,
                                    config)["skate"]) == 0.0


def test_joint_errors_by_hand():
  body = body_lib.builtin_body()
  betas, T_world_root, quats = _motion(frames=5)
  gt = posing.pose_ground_truth(betas, T_world_root, quats, body)
  # Shift every joint by a drift 0.02·t m along x plus 0.1 m: position error
  # 0.1 + 0.02·t, Procrustes error 0, velocity error 0.02·fps = 0.6 m/s.
  t = jnp.arange(5, dtype=jnp.float32)[:, None, None]
  shift = jnp.array([1.0, 0.0, 0.0]) * (0.1 + 0.02 * t)
  # Rotate joint 3's local rotation by θ about its local z.
  theta = 0.3
  rot_z = geometry.quat_to_matrix(jaxlie.SO3.from_z_radians(theta).wxyz)
  pred_rot = gt.body_rotmats.at[:, 3].set(gt.body_rotmats[:, 3] @ rot_z)
  pred = posing.PosedMotion(body_rotmats=pred_rot, joints=gt.joints + shift)
  mask = jnp.array([True, True, True, True, False])
  errors = rewards.joint_errors(pred, gt, mask, CONFIG)
  assert float(errors["pos"]) == pytest.approx(0.1 + 0.02 * 1.5, rel=1e-5)
  assert float(errors["pa_pos"]) == pytest.approx(0.0, abs=1e-5)
  assert float(errors["vel"]) == pytest.approx(0.6, rel=1e-4)
  # L1 of R·Rz(θ) − R is the L1 of R·(Rz − I); by hand for R = I it is
  # 2·sin θ + 2·(1 − cos θ); for a general R compute Σ|R(Rz − I)| directly.
  expected_l1 = np.mean(np.abs(np.asarray(pred_rot[:4, 3] - gt.body_rotmats[:4, 3]))
                        .sum(axis=(-1, -2))) / 21
  assert float(errors["rot"]) == pytest.approx(expected_l1, rel=1e-5)
  identity_case = rewards.joint_errors(
      posing.PosedMotion(jnp.broadcast_to(rot_z, (2, 21, 3, 3)),
                          jnp.zeros((2, 22, 3))),
      posing.PosedMotion(jnp.broadcast_to(jnp.eye(3), (2, 21, 3, 3)),
                          jnp.zeros((2, 22, 3))), None, CONFIG)
  assert float(identity_case["rot"]) == pytest.approx(
      2 * math.sin(theta) + 2 * (1 - math.cos(theta)), rel=1e-5)
  geo = rewards.joint_errors(pred, gt, mask, dataclasses.replace(
      CONFIG, rotation_error="geodesic"))
  assert float(geo["rot"]) == pytest.approx(theta / 21, rel=1e-3)
  r = rewards.rewards_from_errors(errors, CONFIG)
  assert float(r["pos"]) == pytest.approx(math.exp(-5.0 * 0.13), rel=1e-5)
  assert float(r["vel"]) == pytest.approx(math.exp(-1.0 * 0.6), rel=1e-4)


def test_visual_reward_and_missing_critic():
  errors = {n: jnp.zeros((2,)) for n in rewards.JOINT_REWARD_NAMES}
  config = dataclasses.replace(CONFIG, weight_vis=1.0, omega_vis=2.0)
  r = rewards.rewards_from_errors(errors, config, jnp.array([0.5, -1.0]))
  np.testing.assert_allclose(r["vis"], np.exp([1.0, -2.0]), rtol=1e-6)
  with pytest.raises(ValueError, match="weight_vis"):
    rewards.rewards_from_errors(errors, config, None)
  with pytest.raises(ValueError, match="every weight is 0"):
    rewards.RewardConfig(weight_rot=0, weight_pos=0, weight_pa_pos=0,
                         weight_vel=0).validate()


def test_sub_group_baselines_by_hand():
  """Baselines within sub-groups of 2 (members sharing a condition): the
  spread between the sub-groups (the conditions') is not credited."""
  config = rewards.RewardConfig(weight_pos=0.0, weight_pa_pos=0.0,
                                weight_vel=0.0, std_scope="group",
                                std_floor=1e-3)
  r = {"rot": jnp.array([[0.1, 0.3, 0.8, 0.9]])}
  adv, _ = rewards.advantages(r, config, baseline_size=2)
  # Sub-groups (0.1, 0.3) and (0.8, 0.9): ±0.1/0.1 and ±0.05/0.05.
  np.testing.assert_allclose(np.asarray(adv)[0], [-1, 1, -1, 1], rtol=1e-5)
  whole, _ = rewards.advantages(r, config)
  assert float(whole[0, 0]) < -1 and float(whole[0, 3]) > 1
