"""The perceptual critic: masking, no cross-sample leakage, invariances,
input features, bad input and the reward.

One tiny critic (D = 16) compiled once per input shape; scores compared at
1e-5 absolute (float32 attention over a handful of tokens).
"""

import functools

import jax
import jax.numpy as jnp
import jaxlie
import numpy as np
import pytest

from motiongrpo_jax.body import builtin_body
from motiongrpo_jax.body import skeleton
from motiongrpo_jax.critic import model as critic_lib

CONFIG = critic_lib.CriticConfig(d_model=16, num_heads=2, d_feedforward=32,
                                 num_blocks=1, trajectory_layers=1)
B, T = 3, 6


@functools.cache
def _model():
  model = critic_lib.Critic(CONFIG)
  params = critic_lib.init_params(model, jax.random.key(0))
  # Perturb every parameter so that no path is trivially zero at init.
  rng = np.random.default_rng(1)
  params = jax.tree.map(
      lambda x: x + 0.2 * rng.normal(size=x.shape).astype(np.float32), params)
  body = builtin_body()
  fn = jax.jit(lambda p, m, c, r, mask: critic_lib.score(model, p, body, m, c,
                                                         r, mask))
  return model, params, body, fn


def _random_inputs(seed, batch=B, frames=T):
  rng = np.random.default_rng(seed)
  quats = rng.normal(size=(batch, frames, 21, 4))
  quats[..., 0] += 3.0  # Moderate rotations.
  quats /= np.linalg.norm(quats, axis=-1, keepdims=True)
  betas = np.broadcast_to(rng.normal(size=(batch, 1, 16)) * 0.5,
                          (batch, frames, 16))
  cpf_q = rng.normal(size=(batch, frames, 4))
  cpf_q /= np.linalg.norm(cpf_q, axis=-1, keepdims=True)
  cpf_t = rng.normal(size=(batch, frames, 3)) + [0, 0, 1.6]
  cpf = np.concatenate([cpf_q, cpf_t], axis=-1)
  # Any relative poses will do: the critic reads them as given.
  rel_q = rng.normal(size=(batch, frames, 4)) + [4.0, 0, 0, 0]
  rel_q /= np.linalg.norm(rel_q, axis=-1, keepdims=True)
  rel = np.concatenate([rel_q, 0.05 * rng.normal(size=(batch, frames, 3))], -1)
  f32 = lambda x: jnp.asarray(x, jnp.float32)
  motion = critic_lib.Motion(f32(betas), f32(quats))
  return motion, f32(cpf), f32(rel)


def test_masked_frames_do_not_change_the_score():
  _, params, _, fn = _model()
  motion, cpf, rel = _random_inputs(0)
  mask = jnp.asarray(np.arange(T)[None, :] < np.array([[6], [4], [2]]))
  other, cpf2, rel2 = _random_inputs(1)
  keep = lambda a, b: jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 2)), a, b)
  motion2 = jax.tree.map(keep, motion, other)
  s1 = fn(params, motion, cpf, rel, mask)
  s2 = fn(params, motion2, keep(cpf, cpf2), keep(rel, rel2), mask)
  np.testing.assert_allclose(s1, s2, atol=1e-5)
  # The same data unmasked does depend on those frames (the test can fail).
  s3 = fn(params, motion2, keep(cpf, cpf2), keep(rel, rel2), jnp.ones_like(mask))
  assert np.max(np.abs(np.asarray(s3)[1:] - np.asarray(s1)[1:])) > 1e-3


def test_permuting_samples_permutes_scores():
  _, params, _, fn = _model()
  motion, cpf, rel = _random_inputs(2)
  mask = jnp.ones((B, T), bool).at[1, 4:].set(False)
  perm = np.array([2, 0, 1])
  s = np.asarray(fn(params, motion, cpf, rel, mask))
  sp = np.asarray(fn(params, jax.tree.map(lambda x: x[perm], motion),
                     cpf[perm], rel[perm], mask[perm]))
  np.testing.assert_allclose(sp, s[perm], atol=1e-5)
  assert np.ptp(s) > 1e-3  # Samples are told apart.


def test_score_is_invariant_to_world_translation_and_yaw():
  _, params, _, fn = _model()
  motion, cpf, rel = _random_inputs(3)
  mask = jnp.ones((B, T), bool)
  T_new_world = jaxlie.SE3.from_rotation_and_translation(
      jaxlie.SO3.from_z_radians(1.1), jnp.asarray([3.0, -2.0, 0.0]))
  cpf_moved = (T_new_world @ jaxlie.SE3(cpf)).wxyz_xyz
  s = fn(params, motion, cpf, rel, mask)
  s_moved = fn(params, motion, cpf_moved, rel, mask)
  np.testing.assert_allclose(s_moved, s, atol=1e-4)


def test_features_of_a_t_pose_walking_forward():
  """Identity rotations, CPF upright looking along world +y, moving +y at
  1.5 m/s: joint positions are the rest pose seen from the CPF, velocities
  (1.5, 0, 0) in the heading frame (forward = +x) except on the first frame
  and after a padded frame."""
  body = builtin_body()
  frames = 5
  # CPF axes: +z forward = world +y, +y up = world +z, +x left = world −x.
  R = np.array([[-1.0, 0, 0], [0, 0, 1], [0, 1, 0]])
  q = np.asarray(jaxlie.SO3.from_matrix(jnp.asarray(R)).wxyz)
  pos = np.stack([np.zeros(frames), 1.5 / 30 * np.arange(frames),
                  np.full(frames, 1.6)], axis=-1)
  cpf = jnp.asarray(np.concatenate([np.tile(q, (frames, 1)), pos], -1)[None],
                    jnp.float32)
  motion = critic_lib.Motion(jnp.zeros((1, frames, 16)),
                             jnp.tile(jnp.asarray([1.0, 0, 0, 0]), (1, frames, 21, 1)))
  mask = jnp.asarray([[True, True, False, True, True]])
  feats = np.asarray(jax.jit(
      lambda m, c, k: critic_lib.motion_features(body, m, c, k, CONFIG))(
          motion, cpf, mask))
  assert feats.shape == (1, frames, 22, 15)
  rest = np.asarray(skeleton.REST_JOINTS)
  cpf_rest = rest[skeleton.HEAD] + np.asarray(skeleton.HEAD_TO_CPF)
  # Body frame (x left, y up, z fwd) -> heading frame (x fwd, y left, z up).
  expected = (rest - cpf_rest) @ np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]])
  expected = expected + [0, 0, 1.6]
  for t in range(frames):
    np.testing.assert_allclose(feats[0, t, :, :3], expected, atol=1e-5)
  vel = feats[0, :, :, 3:6]
  np.testing.assert_allclose(vel[[0, 2, 3]], 0.0, atol=1e-5)
  np.testing.assert_allclose(vel[[1, 4]], np.broadcast_to([1.5, 0, 0], (2, 22, 3)),
                             atol=1e-4)
  # Rotations: identity locals; pelvis = heading-from-body rotation.
  rots = feats[0, :, :, 6:].reshape(frames, 22, 3, 3)
  np.testing.assert_allclose(rots[:, 1:], np.broadcast_to(np.eye(3), (frames, 21, 3, 3)),
                             atol=1e-6)
  np.testing.assert_allclose(rots[:, 0], np.broadcast_to(
      np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]]), (frames, 3, 3)), atol=1e-6)


def test_bad_inputs_raise_clear_errors():
  model, params, body, _ = _model()
  motion, cpf, rel = _random_inputs(4)
  with pytest.raises(ValueError, match="same length"):
    critic_lib.score(model, params, body, motion, cpf[:, :-1], rel[:, :-1])
  bad = motion._replace(body_quats=motion.body_quats.at[0, 1, 2, 0].set(jnp.nan))
  with pytest.raises(ValueError, match="body_quats contains NaN"):
    critic_lib.score(model, params, body, bad, cpf, rel)
  feats = jnp.zeros((B, T, 22, CONFIG.num_features))
  with pytest.raises(ValueError, match="trajectory features have shape"):
    model.apply({"params": params}, feats, jnp.zeros((B, T + 1, CONFIG.d_cond)))
  with pytest.raises(ValueError, match="trajectory features contain NaN"):
    model.apply({"params": params}, feats,
                jnp.full((B, T, CONFIG.d_cond), jnp.nan))
  with pytest.raises(ValueError, match="num_heads"):
    critic_lib.CriticConfig(d_model=16, num_heads=3).validate()
  with pytest.raises(ValueError, match="unknown CriticConfig fields"):
    critic_lib.CriticConfig.from_dict({"d_model": 16, "width": 3})


def test_reward_is_exp_omega_score():
  s = jnp.asarray([-1.0, 0.0, 0.5, 2.0])
  np.testing.assert_allclose(critic_lib.critic_reward(s, 0.5),
                             [np.exp(-0.5), 1.0, np.exp(0.25), np.e], rtol=1e-6)
  np.testing.assert_allclose(
      jax.jit(critic_lib.critic_reward)(s, 2.0), np.exp(2.0 * np.asarray(s)),
      rtol=1e-6)


def test_motion_from_packed_round_trips_rotations():
  rng = np.random.default_rng(5)
  q = rng.normal(size=(2, 3, 21, 4))
  q /= np.linalg.norm(q, axis=-1, keepdims=True)
  q *= np.sign(q[..., :1])
  R = np.asarray(jaxlie.SO3(jnp.asarray(q)).as_matrix())
  betas = rng.normal(size=(2, 3, 16))
  x = np.concatenate([betas, R.reshape(2, 3, 189), np.zeros((2, 3, 21))], -1)
  motion = critic_lib.motion_from_packed(jnp.asarray(x, jnp.float32), False)
  np.testing.assert_allclose(motion.betas, betas, atol=1e-6)
  np.testing.assert_allclose(motion.body_quats, q, atol=1e-5)
