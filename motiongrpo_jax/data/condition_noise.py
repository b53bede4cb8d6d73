"""Condition-noise injection: smooth noise on the head trajectory (MotionGRPO).

Each member of a GRPO group sees a perturbed head trajectory
H̃ = {R_t, τ_t + λ·P(t)}: the CPF rotations are kept and the world CPF
translations τ get a per-member noise P added BEFORE the conditioning features
are computed (`diffusion.sampler.sampler_condition`). Rewards are always
computed against the clean trajectory and the ground truth.

Kinds (`ConditionNoiseConfig.kind`):
  * "perlin": 1-D gradient (Perlin) noise over time, independently per axis:
      u = t/fps · f·2^o + φ_o           (φ_o ~ U[0, 1): the lattice does not
                                          sit on frame 0)
      n_o(u) = g_i·s·(1 − w(s)) + g_{i+1}·(s − 1)·w(s),
      i = ⌊u⌋, s = u − i, w(s) = 6s⁵ − 15s⁴ + 10s³,  g_i ~ U[−1, 1]
      P_raw(t) = Σ_{o<octaves} persistence^o · n_o(u_o(t))
    w is C², so P is smooth: its frame-to-frame differences are of the order
    of λ·2π·f·2^(octaves−1)/fps.
  * "gaussian": i.i.d. N(0, 1) per frame and axis (the ablation without
    temporal smoothness).
  * "none": P = 0.
Both random kinds are then normalised per member and axis over the valid
frames: the temporal mean is removed (zero mean: the trajectory is shaken,
not shifted) and the result is scaled to an RMS of exactly 1, so that λ
(`amplitude`) is the RMS displacement in metres and the Gaussian ablation
has exactly the RMS of the Perlin noise. Everything is a pure function of
the key: the same key gives the same noise, and callers give every group
member its own key (independent noise).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import jax
import jax.numpy as jnp

KINDS = ("perlin", "gaussian", "none")
_AXES = {"x": 0, "y": 1, "z": 2}


@dataclasses.dataclass(frozen=True)
class ConditionNoiseConfig:
  """Static options of the condition noise (hashable: a jit static arg)."""
  # "perlin" (MotionGRPO's), "gaussian" (i.i.d., equal RMS) or "none" (the
  # recipe's measurements; the ablation table compares them: README).
  kind: Literal["perlin", "gaussian", "none"] = "none"
  # λ: RMS displacement added to each chosen axis, metres.
  amplitude: float = 0.05
  # Frequency of the first Perlin octave, cycles per second.
  base_frequency: float = 0.5
  # Number of Perlin octaves (frequency doubles per octave).
  octaves: int = 3
  # Amplitude ratio between successive octaves.
  persistence: float = 0.5
  # Frames per second of the trajectory (time axis of the noise; the data's).
  fps: float = dataclasses.field(default=30.0, metadata={"setting": False})
  # World axes of the CPF translation that get noise, e.g. "xyz" or "xy".
  axes: str = "xyz"

  def validate(self) -> "ConditionNoiseConfig":
    """Raises ValueError naming the option for an impossible value."""
    if self.kind not in KINDS:
      raise ValueError(f"condition_noise.kind={self.kind!r}: expected one of "
                       f"{KINDS}")
    if self.amplitude < 0:
      raise ValueError(f"condition_noise.amplitude={self.amplitude}: expected "
                       ">= 0 (metres)")
    if self.kind == "perlin":
      if self.base_frequency <= 0:
        raise ValueError(f"condition_noise.base_frequency="
                         f"{self.base_frequency}: expected > 0 (Hz)")
      if self.octaves < 1:
        raise ValueError(f"condition_noise.octaves={self.octaves}: expected "
                         ">= 1")
      if not 0 < self.persistence <= 1:
        raise ValueError(f"condition_noise.persistence={self.persistence}: "
                         "expected in (0, 1]")
    if self.fps <= 0:
      raise ValueError(f"condition_noise.fps={self.fps}: expected > 0")
    if (not self.axes or len(set(self.axes)) != len(self.axes)
        or not set(self.axes) <= set(_AXES)):
      raise ValueError(f"condition_noise.axes={self.axes!r}: expected distinct "
                       "letters from 'xyz'")
    return self

  @property
  def active(self) -> bool:
    """Whether the noise changes anything."""
    return self.kind != "none" and self.amplitude > 0


def _fade(s: jax.Array) -> jax.Array:
  """Perlin's quintic fade 6s⁵ − 15s⁴ + 10s³ (C² at the lattice points)."""
  return s * s * s * (s * (s * 6.0 - 15.0) + 10.0)


def perlin_1d(key: jax.Array, num_frames: int, num_channels: int,
              cycles_per_frame: float, octaves: int,
              persistence: float) -> jax.Array:
  """Raw 1-D gradient noise over frames, independent per channel.

  Written as a sum of lattice kernels, n(u) = Σ_i g_i·ψ(u − i) with
  ψ(x) = x·(1 − w(|x|)) for |x| < 1 and 0 elsewhere, which equals the
  two-point form of the module docstring (w(1 − s) = 1 − w(s)) and is one
  small matmul per octave instead of a gather.

  Args:
    key: PRNG key.
    num_frames: T.
    num_channels: C (one independent noise per channel).
    cycles_per_frame: lattice frequency of the first octave (f / fps).
    octaves: number of octaves; octave o has frequency ·2^o and amplitude
      persistence^o.
    persistence: amplitude ratio between octaves.

  Returns:
    (T, C) float32 noise (not normalised).
  """
  frames = jnp.arange(num_frames, dtype=jnp.float32)
  total = jnp.zeros((num_frames, num_channels), jnp.float32)
  for octave in range(octaves):
    frequency = cycles_per_frame * 2.0**octave
    # Lattice points covering u ∈ [0, (T−1)·f + 1].
    num_points = int(math.ceil((num_frames - 1) * frequency)) + 2
    k_phase, k_grad = jax.random.split(jax.random.fold_in(key, octave))
    phase = jax.random.uniform(k_phase, (num_channels,))
    grads = jax.random.uniform(k_grad, (num_points, num_channels),
                               minval=-1.0, maxval=1.0)
    lattice = jnp.arange(num_points, dtype=jnp.float32)
    # x[t, i, c] = u_c(t) − i.
    x = (frames[:, None, None] * jnp.float32(frequency) + phase[None, None, :]
         - lattice[None, :, None])
    kernel = jnp.where(jnp.abs(x) < 1.0,
                       x * (1.0 - _fade(jnp.minimum(jnp.abs(x), 1.0))), 0.0)
    total = total + persistence**octave * jnp.einsum("tic,ic->tc", kernel,
                                                     grads)
  return total


def _normalise(raw: jax.Array, mask: jax.Array | None) -> jax.Array:
  """Zero mean and unit RMS per channel over the valid frames of (T, C)."""
  if mask is None:
    weight = jnp.ones(raw.shape[:1], raw.dtype)
  else:
    weight = mask.astype(raw.dtype)
  count = jnp.maximum(jnp.sum(weight), 1.0)
  mean = jnp.sum(raw * weight[:, None], axis=0) / count
  centred = (raw - mean) * weight[:, None]
  rms = jnp.sqrt(jnp.sum(jnp.square(centred), axis=0) / count)
  return centred / jnp.maximum(rms, 1e-12)


def sample_noise(key: jax.Array, num_frames: int, config: ConditionNoiseConfig,
                 mask: jax.Array | None = None) -> jax.Array:
  """Noise for one trajectory: λ·P(t) on the chosen axes.

  Args:
    key: PRNG key of this group member.
    num_frames: number of CPF poses T (L + 1 for L output frames).
    config: the noise options.
    mask: (T,) valid poses (padding gets 0 and is left out of the mean and
      RMS), or None (all valid).

  Returns:
    (T, 3) float32 displacement of the world CPF translation, metres.
  """
  config.validate()
  zeros = jnp.zeros((num_frames, 3), jnp.float32)
  if not config.active:
    return zeros
  axes = [_AXES[a] for a in config.axes]
  if config.kind == "perlin":
    raw = perlin_1d(key, num_frames, len(axes),
                    config.base_frequency / config.fps, config.octaves,
                    config.persistence)
  else:
    raw = jax.random.normal(key, (num_frames, len(axes)), jnp.float32)
  noise = jnp.float32(config.amplitude) * _normalise(raw, mask)
  return zeros.at[:, jnp.asarray(axes)].set(noise)


def perturb_translations(Ts_world_cpf: jax.Array,
                         noise: jax.Array) -> jax.Array:
  """H̃ = {R, τ + noise}: adds displacements to the CPF translations.

  Args:
    Ts_world_cpf: (..., T, 7) world CPF poses `wxyz_xyz`.
    noise: (..., T, 3) displacements (from `sample_noise`); the leading
      dims broadcast against the poses' (e.g. G members of one trajectory).

  Returns:
    (..., T, 7) poses with the rotations unchanged.
  """
  if Ts_world_cpf.shape[-1] != 7 or noise.shape[-1] != 3:
    raise ValueError(f"perturb_translations: poses {Ts_world_cpf.shape} and "
                     f"noise {noise.shape}, expected (..., T, 7) and "
                     "(..., T, 3)")
  translation = Ts_world_cpf[..., 4:] + noise
  rotation = jnp.broadcast_to(Ts_world_cpf[..., :4],
                              translation.shape[:-1] + (4,))
  return jnp.concatenate([rotation, translation], axis=-1)
