"""Tests for the Newton polar projection against EgoAllo's SVD U·Vᵀ."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from motiongrpo_jax import geometry
from motiongrpo_jax import geometry_polar
from motiongrpo_jax.model import packing


def test_polar_projection_matches_svd_and_keeps_reflections():
  rng = np.random.default_rng(0)
  m = rng.normal(size=(500, 3, 3)).astype(np.float32)
  polar = np.asarray(geometry_polar.project_to_rotation_polar(jnp.asarray(m)))
  svd = np.asarray(geometry.project_to_rotation(jnp.asarray(m)))
  np.testing.assert_allclose(polar, svd, atol=1e-5)
  # det sign is kept (U·Vᵀ is a reflection when det(M) < 0).
  np.testing.assert_allclose(np.linalg.det(polar), np.sign(np.linalg.det(m)),
                             atol=1e-5)
  # A rotation scaled and sheared slightly projects back to itself.
  c, s = math.cos(0.3), math.sin(0.3)
  rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], np.float32)
  sym = np.array([[1.2, 0.1, 0], [0.1, 0.9, 0], [0, 0, 1.1]], np.float32)
  out = geometry_polar.project_to_rotation_polar(jnp.asarray(rot @ sym))
  np.testing.assert_allclose(np.asarray(out), rot, atol=1e-6)
  with pytest.raises(ValueError, match="3, 3"):
    geometry_polar.project_to_rotation_polar(jnp.zeros((2, 2)))


def test_packing_projects_body_blocks_by_either_method():
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(2, 5, packing.DIM_NO_HANDS)), jnp.float32)
  svd = packing.project_body_rotmats(x, False)
  polar = packing.project_body_rotmats(x, False, method="polar")
  np.testing.assert_allclose(np.asarray(polar), np.asarray(svd), atol=1e-5)
  with pytest.raises(ValueError, match="method"):
    packing.project_body_rotmats(x, False, method="qr")
