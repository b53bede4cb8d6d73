"""Condition noise: smooth, zero-mean, deterministic, independent, equal RMS."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from motiongrpo_jax.data import condition_noise as cn

PERLIN = cn.ConditionNoiseConfig(kind="perlin", amplitude=0.05,
                                 base_frequency=0.5, octaves=3,
                                 persistence=0.5, fps=30.0)
GAUSS = dataclasses.replace(PERLIN, kind="gaussian")
FRAMES = 129


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _many_jit(config, num, frames, mask, seed):
  keys = jax.random.split(jax.random.key(seed), num)
  return jax.vmap(lambda k: cn.sample_noise(k, frames, config, mask))(keys)


def _many(config, num, frames=FRAMES, mask=None, seed=0):
  """Noise of `num` members (keys split from `seed`), one compile per shape."""
  if mask is None:
    mask = jnp.ones((frames,), bool)
  return np.asarray(_many_jit(config, num, frames, mask, seed))


def test_perlin_lattice_values_by_hand():
  """One octave at 1 cycle/frame: frame k sits at u = k + φ, value by hand."""
  key = jax.random.key(3)
  raw = np.asarray(cn.perlin_1d(key, 4, 1, 1.0, 1, 0.5))[:, 0]
  k_phase, k_grad = jax.random.split(jax.random.fold_in(key, 0))
  phi = float(jax.random.uniform(k_phase, (1,))[0])
  g = np.asarray(jax.random.uniform(k_grad, (5, 1), minval=-1.0,
                                    maxval=1.0))[:, 0]
  w = 6 * phi**5 - 15 * phi**4 + 10 * phi**3
  expected = [g[i] * phi * (1 - w) + g[i + 1] * (phi - 1) * w for i in range(4)]
  np.testing.assert_allclose(raw, expected, rtol=1e-5, atol=1e-6)


def test_zero_mean_and_rms_equal_amplitude():
  for config in (PERLIN, GAUSS):
    noise = _many(config, 32)  # (32, T, 3)
    np.testing.assert_allclose(noise.mean(axis=1), 0.0, atol=1e-7)
    np.testing.assert_allclose(np.sqrt((noise**2).mean(axis=1)), 0.05,
                               rtol=1e-5)


def test_gaussian_has_equal_rms_to_perlin():
  rms = [np.sqrt((_many(c, 32)**2).mean()) for c in (PERLIN, GAUSS)]
  assert rms[0] == pytest.approx(rms[1], rel=1e-5)


def test_masked_frames_get_no_noise_and_stats_use_valid_frames():
  mask = jnp.arange(FRAMES) < 100
  noise = _many(PERLIN, 32, mask=mask)
  assert np.all(noise[:, 100:] == 0)
  np.testing.assert_allclose(noise[:, :100].mean(axis=1), 0.0, atol=1e-7)
  np.testing.assert_allclose(np.sqrt((noise[:, :100]**2).mean(axis=1)), 0.05,
                             rtol=1e-5)


def test_perlin_is_smooth_gaussian_is_not():
  """Frame differences are bounded by λ·2π·f_max/fps·c for Perlin noise.

  With f_max = 0.5·2² = 2 Hz at 30 fps a sinusoid of RMS λ has steps up to
  λ·√2·2π·2/30 ≈ 0.59·λ; the gradient noise stays below λ (and its second
  differences far below), while i.i.d. noise jumps by several λ.
  """
  perlin = _many(PERLIN, 32)
  gauss = _many(GAUSS, 32)
  step_p = np.abs(np.diff(perlin, axis=1)).max()
  step_g = np.abs(np.diff(gauss, axis=1)).max()
  assert step_p < 1.0 * 0.05
  assert step_g > 3.0 * 0.05
  second_p = np.abs(np.diff(perlin, n=2, axis=1)).max()
  assert second_p < 0.2 * 0.05


def test_deterministic_per_key_and_independent_across_members():
  a = _many(PERLIN, 32, seed=1)
  b = _many(PERLIN, 32, seed=1)
  np.testing.assert_array_equal(a, b)
  c = _many(PERLIN, 32, seed=2)
  assert not np.allclose(a, c)
  # Members (keys) are independent: correlation between member 2i and 2i+1
  # over frames and axes, averaged over 16 pairs, is near 0.
  x = a[0::2].reshape(16, -1)
  y = a[1::2].reshape(16, -1)
  rho = np.mean(np.sum(x * y, 1) / np.sqrt(np.sum(x * x, 1) * np.sum(y * y, 1)))
  assert abs(rho) < 0.15
  # Axes are independent too, and different members differ.
  assert not np.allclose(a[0, :, 0], a[0, :, 1])
  assert np.abs(a[0] - a[1]).max() > 0.02


def test_none_and_axes_and_perturb():
  none = cn.sample_noise(jax.random.key(0), 10,
                         dataclasses.replace(PERLIN, kind="none"))
  np.testing.assert_array_equal(none, np.zeros((10, 3)))
  xy = np.asarray(cn.sample_noise(jax.random.key(0), 10,
                                  dataclasses.replace(PERLIN, axes="xy")))
  assert np.all(xy[:, 2] == 0) and np.all(np.abs(xy[:, :2]).max(0) > 0)
  poses = jnp.tile(jnp.array([0.5, 0.5, 0.5, 0.5, 1.0, 2.0, 3.0]), (10, 1))
  out = np.asarray(cn.perturb_translations(poses, jnp.asarray(xy)))
  np.testing.assert_array_equal(out[:, :4], np.asarray(poses[:, :4]))
  np.testing.assert_allclose(out[:, 4:], np.asarray(poses[:, 4:]) + xy)


@pytest.mark.parametrize("field,value", [
    ("kind", "pink"), ("amplitude", -1.0), ("octaves", 0),
    ("persistence", 1.5), ("base_frequency", 0.0), ("axes", "xw")])
def test_bad_options_name_the_field(field, value):
  with pytest.raises(ValueError, match=field):
    dataclasses.replace(PERLIN, **{field: value}).validate()
