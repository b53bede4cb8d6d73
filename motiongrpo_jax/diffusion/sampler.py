"""Diffusion sampling as a Markov decision process (DDPO's pattern).

State s_k = (x_{t_k}, t_k, c), action x_{t_{k+1}}, policy
π_θ(x_next | x_t, c) = N(μ_θ(x_t, t, c), σ_k² I). One pure step function,
`sampler_step`, either samples x_next (given noise) or re-scores a given
x_next, and returns (x_next, log π, μ, σ); the rollout (`rollout`) is one
`lax.scan` of that step over the schedule, and the GRPO loss re-scores stored
trajectories through the same function (`rescore`), so the two cannot drift.

The default update is EgoAllo's exactly (`reference/egoallo/README.md` §2 e):
  x̂0 = windowed network prediction, body 3×3 blocks replaced by U·Vᵀ;
  μ = ((c_x0·x̂0) + ((c_dir·(x_t − c_xt·x̂0)) / denom));  x_next = μ + σ·ε
with c_x0 = √ᾱ_{t'}, c_dir = √(1 − ᾱ_{t'} − σ²), c_xt = √ᾱ_t,
denom = √(1 − ᾱ_t + 0.1), σ = 0.8 × the one-step posterior std at t. The
coefficients are float64 (schedule.py) cast to float32 where they multiply
arrays; the evaluation order is EgoAllo's. `SamplerConfig.update="ddim"`
gives the general DDIM-η form instead.

`rollout` takes an optional `x0_guide(x̂0, k) -> x̂0`, applied to the
projected x̂0 of every step k before μ: test-time guidance (EgoAllo's
"inner") without the sampler knowing what it does. The step's update then
re-noises the guided x̂0. With σ = 0 on the last step (c_x0 = 1, c_dir = 0)
the sample is the last guided x̂0. `rescore` has no hook: GRPO's rollouts are
unguided.

Log-probabilities (float32, from float64-derived constants):
  log π = −½‖x_next − μ‖²/σ² − n·log σ − (n/2)·log 2π,
with the squared norm over the frame and state dims of valid frames and
n = (number of valid frames)·d. `log_prob_reduction="mean"` divides by n:
a per-scalar log-density, which shrinks gradients (and log-ratios) by 1/n,
i.e. it scales the effective learning rate by 1/n and makes the PPO clip
range act on per-scalar ratios. Steps with σ = 0 (EgoAllo's last step) have
log π = 0 and are flagged untrainable. A summed log π is large (~1e5 for
L = 128, d = 496) and float32 resolves it to ~0.01; for ratios of nearby
policies use `log_prob_difference` with the stored means, which is exact to
float32 round-off of the (small) difference itself.

Rollout outputs (S = number of steps, 30 by default; B batch; L frames;
d = 496 with hands, 226 without):
  xs         (S+1, B, L, d)  x_{t_0} = x_T, …, x_{t_S} = x_0 (the sample)
  log_probs  (S, B)          log π_θ(xs[k+1] | xs[k], c); 0 where σ_k = 0
  means      (S, B, L, d)    μ_θ(xs[k])            (None unless return_means)
  x0_preds   (S, B, L, d)    projected x̂0 at step k, after `x0_guide` (None
                             unless return_x0)
  stds       (S,)            σ_k (float32)
  trainable  (S,)            σ_k > 0
  timesteps  (S,)            t_k (int32)
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from motiongrpo_jax import geometry
from motiongrpo_jax.diffusion import schedule as schedule_lib
from motiongrpo_jax.diffusion import windows as windows_lib
from motiongrpo_jax.model import packing

# apply_fn(params, x_t (B,n,d), t (B,) int32, T_world_cpf (B,n,7),
#          T_cpf_tm1_cpf_t (B,n,7), mask (B,n) bool | None) -> x̂0 (B,n,d).
ApplyFn = Callable[..., jax.Array]
# x0_guide(x̂0 (B,n,d), step index k () int32) -> x̂0 (B,n,d).
X0Guide = Callable[[jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
  """Static options of the sampler (hashable: usable as a jit static arg)."""
  # Number of steps of EgoAllo's quadratic schedule [1000, (S−1)², …, 1, 0].
  num_steps: int = 30
  # Diffusion steps of the schedule (the first sampled t).
  max_t: int = 1000
  # "egoallo": EgoAllo's exact update; "ddim": the DDIM-η form.
  update: Literal["egoallo", "ddim"] = "egoallo"
  # DDIM's η (update="ddim" only): 0 deterministic, 1 DDPM posterior.
  eta: float = 1.0
  # Training-only exploration: the first `explore_steps` steps use DDIM's
  # update with η = `explore_eta` (larger σ than EgoAllo's after step 0);
  # the log-probs follow the σ used. 0: off (evaluation and inference).
  explore_steps: int = 0
  explore_eta: float = 1.0
  # Longest window the network sees, and frames shared by neighbours.
  window_size: int = 128
  overlap: int = 32
  # Drop windows that add no new frame (fewer forwards; see windows.py).
  non_redundant_windows: bool = False
  # Run windows of equal length in one network call (stacked on the batch
  # axis). Same maths; float round-off may differ by a few ulps.
  batch_equal_windows: bool = True
  # Replace x̂0's body 3×3 blocks by U·Vᵀ before the update (EgoAllo).
  project_body_rotmats: bool = True
  # How U·Vᵀ is computed: "svd" (EgoAllo's) or "polar" (Newton iteration:
  # the same matrix to ~1e-6, ~10× faster than batched 3×3 SVDs on CPU).
  rotation_projection: Literal["svd", "polar"] = "svd"
  # From this step on the network runs every other step, ending with the
  # last (whose x̂0 is the sample); the steps between reuse the x̂0 before
  # them (late steps barely change x̂0; fast mode's saving, its accuracy cost
  # in README). 0: every step runs the network. Not for GRPO rollouts, whose
  # re-scoring needs each step's own x̂0.
  reuse_x0_from: int = 0
  # "sum" over valid frames and state dims, or "mean" (divides by n; scales
  # the effective learning rate by 1/n, see the module docstring).
  log_prob_reduction: Literal["sum", "mean"] = "sum"
  # Keep μ_k and x̂0_k of every step in the rollout output (memory S·B·L·d;
  # what the caller needs, not a setting).
  return_means: bool = dataclasses.field(default=True,
                                         metadata={"setting": False})
  return_x0: bool = dataclasses.field(default=False,
                                      metadata={"setting": False})

  def validate(self) -> "SamplerConfig":
    """Raises ValueError naming the option for an impossible value."""
    if self.update not in ("egoallo", "ddim"):
      raise ValueError(f"SamplerConfig.update must be 'egoallo' or 'ddim', "
                       f"got {self.update!r}")
    if self.log_prob_reduction not in ("sum", "mean"):
      raise ValueError(f"SamplerConfig.log_prob_reduction must be 'sum' or "
                       f"'mean', got {self.log_prob_reduction!r}")
    if self.rotation_projection not in packing.PROJECTIONS:
      raise ValueError(f"SamplerConfig.rotation_projection must be one of "
                       f"{sorted(packing.PROJECTIONS)}, got "
                       f"{self.rotation_projection!r}")
    if self.num_steps < 1:
      raise ValueError(f"SamplerConfig.num_steps must be ≥ 1, got "
                       f"{self.num_steps}")
    if not 0 <= self.explore_steps <= self.num_steps or self.explore_eta < 0:
      raise ValueError(f"SamplerConfig: need 0 ≤ explore_steps ≤ num_steps and "
                       f"explore_eta ≥ 0, got {self.explore_steps}, "
                       f"{self.explore_eta}")
    if not 0 <= self.overlap < self.window_size:
      raise ValueError(f"SamplerConfig: need 0 ≤ overlap < window_size, got "
                       f"{self.overlap}, {self.window_size}")
    if not 0 <= self.reuse_x0_from < self.num_steps:
      raise ValueError(f"SamplerConfig.reuse_x0_from must be in [0, "
                       f"{self.num_steps}), got {self.reuse_x0_from}")
    # Every step's σ must fit its schedule (EgoAllo's update needs >= 26).
    step_coefficients(self)
    return self


class StepConstants(NamedTuple):
  """Float32 constants of sampling steps; scalars, or (S,) stacked.

  Attributes:
    t: int32 current timestep t_k (given to the network).
    c_x0, c_dir, c_xt, denom, sigma: the update's coefficients.
    inv_var: 1/σ² (0 where σ = 0).
    log_norm: log σ + ½·log 2π (0 where σ = 0), per scalar of the state.
  """
  t: jax.Array
  c_x0: jax.Array
  c_dir: jax.Array
  c_xt: jax.Array
  denom: jax.Array
  sigma: jax.Array
  inv_var: jax.Array
  log_norm: jax.Array


class Condition(NamedTuple):
  """What the network sees of the head trajectory, per frame 1..L.

  Attributes:
    T_world_cpf: (B, L, 7) CPF poses with z relative to the floor.
    T_cpf_tm1_cpf_t: (B, L, 7) CPF motion from the previous pose.
  """
  T_world_cpf: jax.Array
  T_cpf_tm1_cpf_t: jax.Array


class StepOutput(NamedTuple):
  """One sampler step: x_next (B,L,d), log_prob (B,), mean (B,L,d), std (),
  x0 (B,L,d) the projected x̂0."""
  x_next: jax.Array
  log_prob: jax.Array
  mean: jax.Array
  std: jax.Array
  x0: jax.Array


class RolloutOutput(NamedTuple):
  """A whole rollout; shapes in the module docstring."""
  xs: jax.Array
  log_probs: jax.Array
  means: jax.Array | None
  x0_preds: jax.Array | None
  stds: jax.Array
  trainable: jax.Array
  timesteps: jax.Array


def model_apply_fn(model: Any) -> ApplyFn:
  """`ApplyFn` of a Flax `Denoiser` (params are the 'params' collection)."""

  def apply_fn(params, x_t, t, T_world_cpf, T_cpf_tm1_cpf_t, mask=None):
    return model.apply({"params": params}, x_t, t, T_world_cpf,
                       T_cpf_tm1_cpf_t, mask=mask)

  return apply_fn


def sampler_condition(Ts_world_cpf: jax.Array, floor_z: jax.Array) -> Condition:
  """EgoAllo's sampler conditioning from L+1 head poses.

  Relative poses come from the unshifted poses; the absolute poses of frames
  1..L are shifted by the floor height. Pure, so callers (GRPO's condition
  noise) can perturb the poses before calling it.

  Args:
    Ts_world_cpf: (B, L+1, 7) world CPF poses `wxyz_xyz`.
    floor_z: (B,) floor height in the world frame.

  Returns:
    The condition for frames 1..L.
  """
  if Ts_world_cpf.ndim != 3 or Ts_world_cpf.shape[-1] != 7:
    raise ValueError(f"Ts_world_cpf has shape {Ts_world_cpf.shape}, expected "
                     "(B, L+1, 7)")
  floor_z = jnp.broadcast_to(jnp.asarray(floor_z, Ts_world_cpf.dtype),
                             Ts_world_cpf.shape[:1])
  relative = geometry.relative_poses(Ts_world_cpf)
  shifted = Ts_world_cpf[:, 1:].at[..., 6].add(-floor_z[:, None])
  return Condition(T_world_cpf=shifted, T_cpf_tm1_cpf_t=relative)


def timesteps(config: SamplerConfig) -> np.ndarray:
  """The (S+1,) timesteps the sampler visits."""
  return schedule_lib.quadratic_ts(config.num_steps, config.max_t)


@functools.lru_cache(maxsize=16)
def step_coefficients(config: SamplerConfig) -> schedule_lib.StepCoefficients:
  """The float64 per-step coefficients of the sampler's schedule (DDIM-η's
  for the first `explore_steps` steps)."""
  schedule = schedule_lib.cosine_schedule(config.max_t)
  ts = timesteps(config)
  coeffs = schedule_lib.step_coefficients(schedule, ts, kind=config.update,
                                          eta=config.eta)
  if not config.explore_steps:
    return coeffs
  explore = schedule_lib.step_coefficients(schedule, ts, kind="ddim",
                                           eta=config.explore_eta)
  first = np.arange(len(coeffs.t)) < config.explore_steps
  return dataclasses.replace(coeffs, **{
      f.name: np.where(first, getattr(explore, f.name), getattr(coeffs, f.name))
      for f in dataclasses.fields(coeffs)})


def network_steps(config: SamplerConfig) -> np.ndarray:
  """(S,) bool: the steps that run the network (the others reuse the last
  x̂0; `SamplerConfig.reuse_x0_from`)."""
  k = np.arange(config.num_steps)
  if not config.reuse_x0_from:
    return np.ones_like(k, bool)
  return (k < config.reuse_x0_from) | ((config.num_steps - 1 - k) % 2 == 0)


def step_constants(config: SamplerConfig) -> StepConstants:
  """(S,)-stacked float32 step constants (computed in float64, then cast)."""
  c = step_coefficients(config.validate())
  positive = c.sigma > 0
  safe = np.where(positive, c.sigma, 1.0)
  inv_var = np.where(positive, 1.0 / safe**2, 0.0)
  log_norm = np.where(positive, np.log(safe) + 0.5 * math.log(2 * math.pi), 0.0)
  f32 = lambda a: jnp.asarray(np.asarray(a, np.float64).astype(np.float32))
  return StepConstants(
      t=jnp.asarray(c.t.astype(np.int32)), c_x0=f32(c.c_x0),
      c_dir=f32(c.c_dir), c_xt=f32(c.c_xt), denom=f32(c.denom),
      sigma=f32(c.sigma), inv_var=f32(inv_var), log_norm=f32(log_norm))


def masked_sum(terms: jax.Array, mask: jax.Array | None
               ) -> tuple[jax.Array, jax.Array]:
  """Sum of (B, L, d) terms over valid frames and state dims, and the count
  of the scalars summed: ((B,), (B,)) float32."""
  batch, seq_len, dim = terms.shape
  terms = terms.astype(jnp.float32)
  if mask is None:
    return (jnp.sum(terms, axis=(1, 2)),
            jnp.full((batch,), float(seq_len * dim), jnp.float32))
  m = mask.astype(jnp.float32)
  return (jnp.sum(jnp.sum(terms, axis=2) * m, axis=1),
          jnp.sum(m, axis=1) * jnp.float32(dim))


def reduce_per_step(value: jax.Array, count: jax.Array,
                    constants: StepConstants, reduction: str) -> jax.Array:
  """A summed per-step quantity (B,) as "sum" or "mean" (÷ count); 0 where
  the step is deterministic (σ = 0)."""
  if reduction == "mean":
    value = value / jnp.maximum(count, 1.0)
  return jnp.where(constants.sigma > 0, value, 0.0)


def gaussian_log_prob(x_next: jax.Array, mean: jax.Array,
                      constants: StepConstants, mask: jax.Array | None,
                      reduction: str = "sum") -> jax.Array:
  """log N(x_next; mean, σ² I) over valid frames, float32.

  Args:
    x_next: (B, L, d).
    mean: (B, L, d).
    constants: scalar step constants (σ via inv_var and log_norm).
    mask: (B, L) valid frames or None (all valid).
    reduction: "sum" or "mean" (divided by the number of valid scalars).

  Returns:
    (B,) log-probabilities; 0 where σ = 0.
  """
  sq = jnp.square(x_next.astype(jnp.float32) - mean.astype(jnp.float32))
  sq_sum, count = masked_sum(sq, mask)
  log_prob = -0.5 * sq_sum * constants.inv_var - count * constants.log_norm
  return reduce_per_step(log_prob, count, constants, reduction)


def log_prob_difference(x_next: jax.Array, mean_new: jax.Array,
                        mean_old: jax.Array, constants: StepConstants,
                        mask: jax.Array | None,
                        reduction: str = "sum") -> jax.Array:
  """log π_new(x_next) − log π_old(x_next) for two means and the same σ.

  Computed elementwise as Σ (μ_new − μ_old)·(2·x_next − μ_new − μ_old)/(2σ²),
  so it stays accurate when both log-probs are large (a summed log π is
  ~1e5 at d = 496, L = 128, where float32 resolves only ~0.01, while the
  GRPO ratio needs differences near 0).

  Args:
    x_next: (B, L, d) the stored action.
    mean_new: (B, L, d) μ under the current parameters.
    mean_old: (B, L, d) μ stored at sampling time.
    constants: the step's scalar constants.
    mask: (B, L) valid frames or None.
    reduction: "sum" or "mean", as for the log-probs.

  Returns:
    (B,) float32 differences; 0 where σ = 0.
  """
  delta = mean_new - mean_old
  total, count = masked_sum(delta * (2.0 * x_next - mean_new - mean_old), mask)
  return reduce_per_step(0.5 * total * constants.inv_var, count, constants,
                         reduction)


def predict_x0(apply_fn: ApplyFn, params: Any, x_t: jax.Array, t: jax.Array,
               condition: Condition, mask: jax.Array | None,
               config: SamplerConfig) -> jax.Array:
  """Windowed x̂0 with EgoAllo's blend, body rotations projected (optional).

  Args:
    apply_fn: the network (see `ApplyFn`).
    params: its parameters.
    x_t: (B, L, d).
    t: () or (B,) int timestep.
    condition: the head-trajectory condition for frames 1..L.
    mask: (B, L) valid frames given to the network, or None (EgoAllo).
    config: sampler options (windows, projection).

  Returns:
    (B, L, d) float32 x̂0.
  """
  batch, seq_len, dim = x_t.shape
  spans = windows_lib.window_spans(seq_len, config.window_size, config.overlap,
                                   config.non_redundant_windows)
  t = jnp.broadcast_to(jnp.asarray(t, jnp.int32), (batch,))

  def window_fn(x, T_world_cpf, T_cpf_tm1_cpf_t, window_mask):
    t_w = jnp.tile(t, x.shape[0] // batch)
    return apply_fn(params, x, t_w, T_world_cpf, T_cpf_tm1_cpf_t, window_mask)

  x0 = windows_lib.blended_x0(
      window_fn, x_t, condition.T_world_cpf, condition.T_cpf_tm1_cpf_t, mask,
      spans, config.overlap, batch_equal=config.batch_equal_windows)
  if config.project_body_rotmats:
    x0 = packing.project_body_rotmats(x0, dim == packing.DIM_WITH_HANDS,
                                      config.rotation_projection)
  return x0


def update_mean(x_t: jax.Array, x0: jax.Array,
                constants: StepConstants) -> jax.Array:
  """μ = ((c_x0·x̂0) + ((c_dir·(x_t − c_xt·x̂0)) / denom)), EgoAllo's order."""
  c = constants
  return (c.c_x0 * x0) + ((c.c_dir * (x_t - c.c_xt * x0)) / c.denom)


def sampler_step(
    apply_fn: ApplyFn,
    params: Any,
    x_t: jax.Array,
    constants: StepConstants,
    condition: Condition,
    *,
    noise: jax.Array | None = None,
    key: jax.Array | None = None,
    x_next: jax.Array | None = None,
    mask: jax.Array | None = None,
    config: SamplerConfig = SamplerConfig(),
    x0: jax.Array | None = None,
) -> StepOutput:
  """One step of the sampling MDP: sample (noise or key) or re-score (x_next).

  Args:
    apply_fn: the network (see `ApplyFn`).
    params: its parameters (differentiable; GRPO re-scores with new ones).
    x_t: (B, L, d) current state.
    constants: this step's scalar constants (an entry of `step_constants`).
    condition: head-trajectory condition for frames 1..L.
    noise: (B, L, d) ε to sample with.
    key: PRNG key to draw ε from (if `noise` is None).
    x_next: (B, L, d) next state to re-score instead of sampling.
    mask: (B, L) valid frames: restricts the log-prob and is given to the
      network. None = all valid, network without mask (EgoAllo).
    config: sampler options.
    x0: (B, L, d) precomputed projected x̂0 (skips the network; for tests
      and for callers that already have it).

  Returns:
    StepOutput(x_next, log_prob (B,), mean, std (), x0).
  """
  given = sum(v is not None for v in (noise, key, x_next))
  if given != 1:
    raise ValueError("sampler_step: pass exactly one of noise, key (to sample)"
                     " or x_next (to re-score)")
  if x0 is None:
    x0 = predict_x0(apply_fn, params, x_t, constants.t, condition, mask, config)
  mean = update_mean(x_t, x0, constants)
  if x_next is None:
    if noise is None:
      noise = jax.random.normal(key, x_t.shape, jnp.float32)
    x_next = mean + (constants.sigma * noise)
  log_prob = gaussian_log_prob(x_next, mean, constants, mask,
                               config.log_prob_reduction)
  return StepOutput(x_next=x_next, log_prob=log_prob, mean=mean,
                    std=constants.sigma, x0=x0)


def rollout(
    apply_fn: ApplyFn,
    params: Any,
    condition: Condition,
    *,
    key: jax.Array | None = None,
    noise: jax.Array | None = None,
    x_init: jax.Array | None = None,
    mask: jax.Array | None = None,
    packed_dim: int | None = None,
    config: SamplerConfig = SamplerConfig(),
    x0_guide: X0Guide | None = None,
) -> RolloutOutput:
  """Samples x_T … x_0 by one `lax.scan` of `sampler_step`.

  Randomness: with `key`, x_T ~ N(0, I) from fold_in(key, 0) and step k's ε
  from fold_in(key, k+1); with `noise` (S+1, B, L, d), noise[0] is x_T and
  noise[k+1] step k's ε (EgoAllo's golden replay). `x_init` overrides x_T
  (e.g. initial noise shared within a GRPO group). Steps that
  `network_steps` marks False (`config.reuse_x0_from`) skip the network and
  take the previous step's (guided) x̂0.

  Args:
    apply_fn: the network (see `ApplyFn`); bind it statically when jitting.
    params: network parameters.
    condition: from `sampler_condition`, (B, L, 7) each.
    key: PRNG key (or pass `noise`).
    noise: (S+1, B, L, d) recorded noise (or pass `key`).
    x_init: (B, L, d) initial state x_T, optional.
    mask: (B, L) valid frames, or None (EgoAllo: all valid, no network mask).
    packed_dim: d (needed only with `key` and no `x_init`): 496 or 226.
    config: sampler options.
    x0_guide: changes each step's projected x̂0 before the update (see
      `X0Guide`; inner guidance), or None: the plain sampler.

  Returns:
    RolloutOutput (shapes in the module docstring).
  """
  config.validate()
  if (key is None) == (noise is None):
    raise ValueError("rollout: pass exactly one of key or noise")
  consts = step_constants(config)
  num_steps = consts.t.shape[0]
  batch, seq_len = condition.T_world_cpf.shape[:2]
  if noise is not None:
    if noise.shape[0] != num_steps + 1:
      raise ValueError(f"rollout: noise has {noise.shape[0]} entries, expected "
                       f"{num_steps + 1} (x_T and one per step)")
    dim = noise.shape[-1]
  elif x_init is not None:
    dim = x_init.shape[-1]
  elif packed_dim is not None:
    dim = packed_dim
  else:
    raise ValueError("rollout: with `key`, give packed_dim or x_init")
  if x_init is None:
    x_init = (noise[0] if noise is not None else
              jax.random.normal(jax.random.fold_in(key, 0),
                                (batch, seq_len, dim), jnp.float32))
  if x_init.shape != (batch, seq_len, dim):
    raise ValueError(f"rollout: x_T has shape {x_init.shape}, expected "
                     f"{(batch, seq_len, dim)} from the condition")

  fresh = network_steps(config)

  def predict(x_t, t, index):
    x0 = predict_x0(apply_fn, params, x_t, t, condition, mask, config)
    return x0 if x0_guide is None else x0_guide(x0, index)

  def body(carry, inputs):
    x_t, x0_last = carry
    index, step_consts, step_noise, run_network = inputs
    step_key = None
    if step_noise is None:
      step_key = jax.random.fold_in(key, index + 1)
    if fresh.all():
      x0 = predict(x_t, step_consts.t, index)
    else:
      x0 = jax.lax.cond(run_network, predict, lambda *_: x0_last, x_t,
                        step_consts.t, index)
    out = sampler_step(apply_fn, params, x_t, step_consts, condition,
                       noise=step_noise, key=step_key, mask=mask, config=config,
                       x0=x0)
    ys = (out.x_next, out.log_prob,
          out.mean if config.return_means else None,
          out.x0 if config.return_x0 else None)
    return (out.x_next, x0), ys

  step_noise = None if noise is None else noise[1:]
  inputs = (jnp.arange(num_steps, dtype=jnp.int32), consts, step_noise,
            jnp.asarray(fresh))
  _, (x_next, log_probs, means, x0s) = jax.lax.scan(
      body, (x_init, jnp.zeros_like(x_init)), inputs)
  xs = jnp.concatenate([x_init[None], x_next], axis=0)
  return RolloutOutput(xs=xs, log_probs=log_probs, means=means, x0_preds=x0s,
                       stds=consts.sigma, trainable=consts.sigma > 0,
                       timesteps=consts.t)


def rescore(
    apply_fn: ApplyFn,
    params: Any,
    xs: jax.Array,
    condition: Condition,
    *,
    mask: jax.Array | None = None,
    config: SamplerConfig = SamplerConfig(),
    steps: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
  """Re-scores a stored trajectory with (possibly new) parameters.

  The same `sampler_step` as the rollout, scanned over the chosen steps, so
  with the rollout's parameters the log-probs are the rollout's.

  Args:
    apply_fn: the network.
    params: parameters to score with.
    xs: (S+1, B, L, d) trajectory from `rollout`.
    condition: the rollout's condition.
    mask: the rollout's mask.
    config: the rollout's sampler options.
    steps: (K,) int step indices to score; default all S.

  Returns:
    log_probs (K, B) and means (K, B, L, d).
  """
  consts = step_constants(config)
  if steps is None:
    steps = jnp.arange(consts.t.shape[0], dtype=jnp.int32)
  picked = jax.tree.map(lambda c: c[steps], consts)

  def body(carry, inputs):
    step_consts, x_t, x_next = inputs
    out = sampler_step(apply_fn, params, x_t, step_consts, condition,
                       x_next=x_next, mask=mask, config=config)
    return carry, (out.log_prob, out.mean)

  _, (log_probs, means) = jax.lax.scan(
      body, None, (picked, xs[steps], xs[steps + 1]))
  return log_probs, means


def make_rollout_fn(apply_fn: ApplyFn, config: SamplerConfig = SamplerConfig(),
                    packed_dim: int | None = None) -> Callable[..., RolloutOutput]:
  """A jitted `rollout` with the network and options bound.

  Returns:
    fn(params, condition, key=None, noise=None, x_init=None, mask=None): one
    compiled program per input shape (no Python loop over steps).
  """

  def fn(params, condition, key=None, noise=None, x_init=None, mask=None):
    return rollout(apply_fn, params, condition, key=key, noise=noise,
                   x_init=x_init, mask=mask, packed_dim=packed_dim,
                   config=config)

  return jax.jit(fn)
