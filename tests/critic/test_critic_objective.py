"""InfoNCE against its closed form, and the perturbation negatives.

Tolerances: float32 InfoNCE vs float64 numpy at 1e-5 relative plus 1e-6
absolute (logsumexp(s/τ) − s0/τ cancels terms of size ~15); quaternion
identities at 1e-6; FK positions at 1e-5 m.
"""

import jax
import jax.numpy as jnp
import jaxlie
import numpy as np
import pytest

from motiongrpo_jax.body import builtin_body
from motiongrpo_jax.body import skeleton
from motiongrpo_jax.critic import model as critic_lib
from motiongrpo_jax.critic import objective as obj


def _random_quats(rng, shape, spread=1.0):
  q = rng.normal(size=shape + (4,))
  q[..., 0] += 2.0 / spread
  q /= np.linalg.norm(q, axis=-1, keepdims=True)
  return q.astype(np.float32)


def test_info_nce_equals_closed_form():
  scores = np.array([[1.0, 0.5, 0.2, 0.9],
                     [0.1, 0.3, -0.2, 0.0],
                     [0.0, 0.0, 0.0, 0.0]], np.float32)
  valid = np.array([[True, True, True, False],
                    [True, True, True, True],
                    [True, True, True, True]])
  weight = np.array([1.0, 1.0, 0.0], np.float32)
  tau = 0.07
  loss, per = obj.info_nce(jnp.asarray(scores), jnp.asarray(valid),
                           jnp.asarray(weight), tau)
  s = scores.astype(np.float64) / tau
  l0 = -np.log(np.exp(s[0, 0]) / np.exp(s[0, :3]).sum())
  l1 = -np.log(np.exp(s[1, 0]) / np.exp(s[1]).sum())
  np.testing.assert_allclose(per, [l0, l1, 0.0], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(loss, (l0 + l1) / 3, rtol=1e-5)
  # Equal scores: log K exactly.
  _, per = obj.info_nce(jnp.zeros((1, 5)), temperature=0.07)
  np.testing.assert_allclose(per, [np.log(5.0)], rtol=1e-6)
  with pytest.raises(ValueError, match="K >= 2"):
    obj.info_nce(jnp.zeros((3, 1)))


def test_ranking_stats():
  scores = jnp.asarray([[1.0, 0.5, 2.0], [1.0, 0.5, 0.2]])
  valid = jnp.asarray([[True, True, False], [True, True, True]])
  beats, beats_all = obj.ranking_stats(scores, valid)
  np.testing.assert_array_equal(beats, [[True, True], [True, True]])
  np.testing.assert_array_equal(beats_all, [True, True])
  _, beats_all = obj.ranking_stats(scores)
  np.testing.assert_array_equal(beats_all, [False, True])


def test_time_shift_moves_frames_within_the_valid_range():
  rng = np.random.default_rng(0)
  quats = jnp.asarray(_random_quats(rng, (12, 21)))
  mask = jnp.arange(12) < 10
  shifts = set()
  shift_fn = jax.jit(obj.time_shift, static_argnums=(3, 4))
  for i in range(8):
    out = np.asarray(shift_fn(jax.random.key(i), quats, mask, 2, 3))
    # Find the shift from frame 4 (interior), then check every frame.
    match = [s for s in range(-3, 4) if np.allclose(out[4], quats[4 + s])]
    assert len(match) == 1
    shift = match[0]
    assert 2 <= abs(shift) <= 3
    shifts.add(shift)
    expected = np.asarray(quats)[np.clip(np.arange(12) + shift, 0, 9)]
    np.testing.assert_array_equal(out, expected)
  assert any(s > 0 for s in shifts) and any(s < 0 for s in shifts)


def test_joint_noise_rotates_by_the_configured_angle():
  rng = np.random.default_rng(1)
  quats = jnp.asarray(_random_quats(rng, (50, 21)))
  noise_fn = jax.jit(obj.joint_noise)
  log_delta = jax.jit(lambda a, b: (jaxlie.SO3(a).inverse() @ jaxlie.SO3(b)).log())
  same = noise_fn(jax.random.key(0), quats, 0.0, 0.0)
  np.testing.assert_allclose(same, quats, atol=1e-6)
  noisy = noise_fn(jax.random.key(0), quats, 0.0, 0.1)
  delta = log_delta(quats, noisy)
  # Jitter only: 3-D Gaussian with std 0.1 per axis.
  np.testing.assert_allclose(np.std(np.asarray(delta)), 0.1, rtol=0.05)
  offset = noise_fn(jax.random.key(0), quats, 0.2, 0.0)
  delta = np.asarray(log_delta(quats, offset))
  np.testing.assert_allclose(delta, np.broadcast_to(delta[:1], delta.shape),
                             atol=1e-5)  # Constant over time.
  # Deterministic from the key.
  np.testing.assert_array_equal(
      noise_fn(jax.random.key(3), quats, 0.1, 0.1),
      noise_fn(jax.random.key(3), quats, 0.1, 0.1))


def test_foot_sliding_slows_only_the_legs():
  rng = np.random.default_rng(2)
  quats = jnp.asarray(_random_quats(rng, (10, 21)))
  mask = jnp.ones(10, bool)
  legs = list(obj.LEG_JOINTS)
  others = [j for j in range(21) if j not in legs]
  slide_fn = jax.jit(obj.foot_sliding)
  frozen = np.asarray(slide_fn(jax.random.key(0), quats, mask, 0.0))
  np.testing.assert_array_equal(frozen[:, others], np.asarray(quats)[:, others])
  np.testing.assert_allclose(
      frozen[:, legs], np.broadcast_to(np.asarray(quats)[0, legs], (10, 8, 4)),
      atol=1e-6)
  slowed = np.asarray(slide_fn(jax.random.key(1), quats, mask, 0.5))
  np.testing.assert_allclose(slowed[0], np.asarray(quats)[0], atol=1e-6)
  np.testing.assert_array_equal(slowed[:, others], np.asarray(quats)[:, others])
  assert {obj._body_index(n) for n in ("left_hip", "right_knee", "left_foot")} <= set(legs)
  assert len(legs) == 8


def test_mirrored_limbs_mirror_the_body():
  """Mirroring both limb pairs of a pose with an identity spine mirrors the
  whole skeleton: FK positions reflect x → −x with left and right swapped."""
  assert np.allclose(obj.mirror_quats(jnp.asarray([0.6, 0.8, 0.0, 0.0])),
                     [0.6, 0.8, 0.0, 0.0])
  np.testing.assert_allclose(  # Rotation about y flips its angle.
      obj.mirror_quats(jaxlie.SO3.from_y_radians(0.3).wxyz),
      jaxlie.SO3.from_y_radians(-0.3).wxyz, atol=1e-7)
  rng = np.random.default_rng(3)
  quats = _random_quats(rng, (4, 21), spread=1.5)
  limb = [j for pair in obj.ARM_PAIRS + obj.LEG_PAIRS for j in pair]
  spine = [j for j in range(21) if j not in limb]
  quats[:, spine] = [1.0, 0.0, 0.0, 0.0]
  quats = jnp.asarray(quats)
  key = next(k for k in (jax.random.key(i) for i in range(50))
             if int(jax.random.randint(k, (), 0, 3)) == 2)  # Both limbs.
  mirrored = jax.jit(obj.mirror_limbs)(key, quats)
  body = builtin_body()
  root = jnp.asarray([1.0, 0, 0, 0, 0, 0, 0])
  fk = jax.jit(lambda q: body.forward_kinematics(jnp.zeros(16), root, q)[..., 4:7])
  p, pm = np.asarray(fk(quats)), np.asarray(fk(mirrored))
  names = skeleton.JOINT_NAMES
  swap = [names.index(n.replace("left", "#").replace("right", "left").replace("#", "right"))
          for n in names]
  np.testing.assert_allclose(pm, p[:, swap] * [-1.0, 1.0, 1.0], atol=1e-5)
  assert np.max(np.abs(pm - p)) > 0.05


def test_other_motion_and_perturbed_negatives():
  rng = np.random.default_rng(4)
  batch, frames = 3, 8
  motion = critic_lib.Motion(
      jnp.asarray(rng.normal(size=(batch, frames, 16)), jnp.float32),
      jnp.asarray(_random_quats(rng, (batch, frames, 21))))
  mask = jnp.ones((batch, frames), bool)
  seq_index = jnp.asarray([5, 5, 7])
  rolled, valid = obj.other_motion(motion, seq_index)
  np.testing.assert_array_equal(rolled.betas, np.roll(motion.betas, -1, axis=0))
  np.testing.assert_array_equal(valid, [False, True, True])
  keys = jax.random.split(jax.random.key(0), batch)
  config = obj.PerturbationConfig()
  fn = jax.jit(obj.perturbed_negatives, static_argnums=4)
  neg, valid = fn(keys, motion, mask, seq_index, config)
  assert neg.body_quats.shape == (batch, len(obj.KINDS), frames, 21, 4)
  assert neg.betas.shape == (batch, len(obj.KINDS), frames, 16)
  np.testing.assert_array_equal(valid[:, :4], True)
  np.testing.assert_array_equal(valid[:, 4], [False, True, True])
  # A trajectory's perturbations depend only on its key and its own motion.
  perm = np.array([1, 2, 0])
  neg_p, _ = fn(keys[perm], jax.tree.map(lambda x: x[perm], motion), mask,
                seq_index[perm], config)
  np.testing.assert_allclose(neg_p.body_quats[:, :4],
                             np.asarray(neg.body_quats)[perm, :4], atol=1e-6)
  # Every perturbation changes the motion.
  for k in range(4):
    assert np.max(np.abs(np.asarray(neg.body_quats[:, k]) - motion.body_quats)) > 0.01
  with pytest.raises(ValueError, match="kinds"):
    obj.PerturbationConfig(kinds=("time_shift", "bogus")).validate()


def test_base_negatives_take_the_last_steps_sample_major():
  steps, samples, batch, frames = 4, 2, 3, 2
  # Encode (step, sample, trajectory) into betas[0..2]; identity rotations.
  x = np.zeros((steps, samples * batch, frames, 226), np.float32)
  for s in range(steps):
    for g in range(samples):
      for b in range(batch):
        x[s, g * batch + b, :, 0:3] = (s, g, b)
  x[..., 16:205] = np.tile(np.eye(3).reshape(9), 21)
  motion = obj.base_negatives(jnp.asarray(x), 2, samples, False)
  assert motion.betas.shape == (batch, samples * 2, frames, 16)
  for b in range(batch):
    codes = [tuple(motion.betas[b, m, 0, :3].tolist()) for m in range(4)]
    assert codes == [(2, 0, b), (3, 0, b), (2, 1, b), (3, 1, b)]
  np.testing.assert_allclose(motion.body_quats[..., 0], 1.0, atol=1e-6)
  with pytest.raises(ValueError, match="last_steps"):
    obj.base_negatives(jnp.asarray(x), 5, samples, False)


def test_noisy_condition_shakes_translations_only():
  rng = np.random.default_rng(5)
  n, frames = 3, 24
  rot = _random_quats(rng, (n, frames))
  cpf = np.concatenate([rot, rng.normal(size=(n, frames, 3))], -1).astype(np.float32)
  rel = np.concatenate([_random_quats(rng, (n, frames)),
                        rng.normal(size=(n, frames, 3))], -1).astype(np.float32)
  mask = np.ones((n, frames), bool)
  mask[2, 20:] = False
  keys = jax.random.split(jax.random.key(0), n)
  fn = jax.jit(obj.noisy_condition)
  same_cpf, same_rel = fn(keys, cpf, rel, mask, jnp.zeros(n))
  np.testing.assert_allclose(same_cpf, cpf, atol=1e-6)
  amplitude = jnp.asarray([0.0, 0.1, 0.3])
  noisy_cpf, noisy_rel = fn(keys, cpf, rel, mask, amplitude)
  np.testing.assert_array_equal(noisy_cpf[..., :4], cpf[..., :4])
  shift = np.asarray(noisy_cpf[..., 4:]) - cpf[..., 4:]
  for i, lam in enumerate([0.0, 0.1, 0.3]):
    valid = shift[i][mask[i]]
    # Zero mean, RMS λ per axis over valid frames; padding untouched.
    np.testing.assert_allclose(valid.mean(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(np.sqrt((valid**2).mean(axis=0)), lam, rtol=1e-4,
                               atol=1e-7)
  np.testing.assert_array_equal(shift[2][~mask[2]], 0.0)
  # First relative pose kept; the others recomputed from the noisy poses.
  np.testing.assert_array_equal(noisy_rel[:, 0], rel[:, 0])
  expected = (jaxlie.SE3(noisy_cpf[:, :-1]).inverse()
              @ jaxlie.SE3(noisy_cpf[:, 1:])).wxyz_xyz
  np.testing.assert_allclose(noisy_rel[:, 1:], expected, atol=1e-5)
