"""The denoiser's per-frame head-pose condition (EgoAllo's `cond_param="ours"`).

Per frame the raw vector holds (22 numbers with the canonicalised rotation,
13 without):
  1. the relative CPF motion T_cpf(t−1)→cpf(t) as a row-major 3×4 [R | t] (12);
  2. the CPF height z above the floor (1);
  3. the CPF rotation with its world yaw removed, 3×3 row-major (9).
It is then Fourier-encoded ([x, sin S, sin(S + π/2)], 3 octaves → 154).
"""

from __future__ import annotations

from typing import Protocol

import jax
import jax.numpy as jnp

from motiongrpo_jax import geometry


class ConditionConfig(Protocol):
  """The config fields the condition depends on (see `DenoiserConfig`)."""
  fourier_enc_freqs: int
  include_canonicalized_cpf_rotation_in_cond: bool


def raw_dim(include_canonicalized_cpf_rotation: bool = True) -> int:
  """Size of the raw (pre-Fourier) condition: 22, or 13 without rotation."""
  return 12 + 1 + (9 if include_canonicalized_cpf_rotation else 0)


def condition_dim(config: ConditionConfig) -> int:
  """Size of the Fourier-encoded condition (154 by default)."""
  raw = raw_dim(config.include_canonicalized_cpf_rotation_in_cond)
  return raw * (1 + 2 * config.fourier_enc_freqs)


def condition_raw(T_world_cpf: jax.Array,
                  T_cpf_tm1_cpf_t: jax.Array,
                  include_canonicalized_cpf_rotation: bool = True) -> jax.Array:
  """The raw per-frame condition vector (golden `cond_raw`).

  Args:
    T_world_cpf: (..., T, 7) CPF poses `wxyz_xyz`, z already relative to the
      floor.
    T_cpf_tm1_cpf_t: (..., T, 7) CPF motion from the previous frame.
    include_canonicalized_cpf_rotation: append the yaw-free CPF rotation.

  Returns:
    (..., T, 22), or (..., T, 13) without the rotation.
  """
  parts = [geometry.se3_matrix_3x4(T_cpf_tm1_cpf_t), T_world_cpf[..., 6:7]]
  if include_canonicalized_cpf_rotation:
    can = geometry.quat_to_matrix(geometry.remove_yaw(T_world_cpf[..., :4]))
    parts.append(can.reshape(*can.shape[:-2], 9))
  return jnp.concatenate(parts, axis=-1)


def condition_features(T_world_cpf: jax.Array,
                       T_cpf_tm1_cpf_t: jax.Array,
                       config: ConditionConfig) -> jax.Array:
  """The Fourier-encoded condition, the input of `latent_from_cond`.

  Args:
    T_world_cpf: (..., T, 7) CPF poses, z relative to the floor.
    T_cpf_tm1_cpf_t: (..., T, 7) CPF motion from the previous frame.
    config: supplies `fourier_enc_freqs` and
      `include_canonicalized_cpf_rotation_in_cond`.

  Returns:
    (..., T, condition_dim(config)), 154 by default.
  """
  raw = condition_raw(T_world_cpf, T_cpf_tm1_cpf_t,
                      config.include_canonicalized_cpf_rotation_in_cond)
  return features_from_raw(raw, config)


def features_from_raw(raw: jax.Array, config: ConditionConfig) -> jax.Array:
  """Fourier-encodes a raw condition (..., T, 22) → (..., T, 154)."""
  return geometry.fourier_encode(raw, config.fourier_enc_freqs)
