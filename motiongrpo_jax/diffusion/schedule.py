"""EgoAllo's cosine noise schedule, sampling timesteps and per-step coefficients.

Everything here is NumPy float64 (EgoAllo computes its schedule in float64);
arrays are cast to float32 only where they multiply float32 tensors, in the
sampler and the loss. The formulas are EgoAllo's
(`reference/egoallo/README.md` §2 (d), (e), (f)):

* x_j = j/1000, g(x) = cos²(((x + s)/(1 + s))·π/2), ᾱc_j = g(x_j)/g(x_0),
  β_j = clip(1 − ᾱc_j/ᾱc_{j−1}, 0, 0.999), α_j = 1 − β_j, ᾱ_t = ∏_{j≤t} α_j.
* Sampler σ_t = 0.8·√((1 − ᾱ_{t−1})/(1 − ᾱ_t)·β_t), σ_0 = 0 (so σ_1 = 0).
* Sampling visits `quadratic_ts()` = [1000, 29², 28², …, 1, 0].
* Loss weight w(t) = r_t/r_1·0.99 + 0.01 with r_t = ᾱ_t/(1 − ᾱ_t), in float32.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np

SigmaKind = Literal["egoallo", "ddim"]


@dataclasses.dataclass(frozen=True)
class NoiseSchedule:
  """Per-timestep constants of the cosine schedule, indexed by t = 0..T.

  Attributes:
    alpha: (T+1,) float64 α_t = 1 − β_t; α_0 = 1 (no step into t = 0).
    alpha_bar: (T+1,) float64 ᾱ_t, ᾱ_0 = 1.
    sigma: (T+1,) float64 EgoAllo's sampler σ_t (incl. its factor), σ_0 = 0.
    alpha_bar_f32: (T+1,) float32 copy of ᾱ used by the training loss.
    loss_weight: (T+1,) float32 training weight per t (index 0 is inf and
      never used, as in EgoAllo).
  """
  alpha: np.ndarray
  alpha_bar: np.ndarray
  sigma: np.ndarray
  alpha_bar_f32: np.ndarray
  loss_weight: np.ndarray

  @property
  def num_timesteps(self) -> int:
    return len(self.alpha_bar) - 1


def cosine_schedule(
    timesteps: int = 1000,
    cosine_s: float = 0.008,
    beta_clip_max: float = 0.999,
    sigma_factor: float = 0.8,
    loss_weight_padding: float = 0.01,
) -> NoiseSchedule:
  """EgoAllo's cosine schedule (`CosineNoiseScheduleConstants.compute`).

  Args:
    timesteps: T, the number of diffusion steps.
    cosine_s: the offset s of the cosine.
    beta_clip_max: upper clip of β_t.
    sigma_factor: factor on the one-step posterior std (EgoAllo: 0.8).
    loss_weight_padding: p in w(t) = r_t/r_1·(1 − p) + p.

  Returns:
    The schedule, matching EgoAllo's `schedule.npz` to float64 round-off.
  """
  if timesteps < 2:
    raise ValueError(f"cosine_schedule: timesteps must be ≥ 2, got {timesteps}")
  x = np.linspace(0.0, 1.0, timesteps + 1, dtype=np.float64)
  g = np.cos((x + cosine_s) / (1.0 + cosine_s) * np.pi * 0.5) ** 2
  g = g / g[0]
  beta = np.clip(1.0 - g[1:] / g[:-1], 0.0, beta_clip_max)
  alpha = np.concatenate([[1.0], 1.0 - beta])
  alpha_bar = np.concatenate([[1.0], np.cumprod(1.0 - beta)])
  sigma = np.concatenate([
      [0.0],
      np.sqrt((1.0 - alpha_bar[:-1]) / (1.0 - alpha_bar[1:]) * beta)
      * sigma_factor,
  ])
  alpha_bar_f32 = alpha_bar.astype(np.float32)
  with np.errstate(divide="ignore"):
    ratio = alpha_bar_f32 / (np.float32(1.0) - alpha_bar_f32)
  loss_weight = (ratio / ratio[1] * np.float32(1.0 - loss_weight_padding)
                 + np.float32(loss_weight_padding)).astype(np.float32)
  return NoiseSchedule(alpha=alpha, alpha_bar=alpha_bar, sigma=sigma,
                       alpha_bar_f32=alpha_bar_f32, loss_weight=loss_weight)


def quadratic_ts(num_steps: int = 30, max_t: int = 1000) -> np.ndarray:
  """EgoAllo's sampling timesteps: [max_t, (n−1)², …, 4, 1, 0].

  Args:
    num_steps: number of sampling steps n (EgoAllo: 30 = ⌈√1000⌉ − 1 + 1).
    max_t: the first timestep, replacing n².

  Returns:
    (num_steps + 1,) int64, strictly decreasing, ending at 0.
  """
  ts = np.arange(num_steps + 1, dtype=np.int64)[::-1] ** 2
  ts[0] = max_t
  if np.any(np.diff(ts) >= 0):
    raise ValueError(f"quadratic_ts: num_steps={num_steps} and max_t={max_t} "
                     "do not give a strictly decreasing schedule")
  return ts


@dataclasses.dataclass(frozen=True)
class StepCoefficients:
  """Float64 coefficients of each sampling step t_k → t_{k+1}.

  The update is x_next = ((c_x0·x̂0) + ((c_dir·(x_t − c_xt·x̂0)) / denom))
  + sigma·ε, the mean μ being the same expression without the noise term.

  Attributes:
    t: (S,) int64 current timesteps t_k.
    t_next: (S,) int64 next timesteps t_{k+1}.
    c_x0: (S,) √ᾱ_{t'}.
    c_dir: (S,) √(1 − ᾱ_{t'} − σ²).
    c_xt: (S,) √ᾱ_t.
    denom: (S,) √(1 − ᾱ_t + eps).
    sigma: (S,) σ of the step (0 for deterministic steps).
    log_sigma: (S,) log σ (0 where σ = 0; never used there).
  """
  t: np.ndarray
  t_next: np.ndarray
  c_x0: np.ndarray
  c_dir: np.ndarray
  c_xt: np.ndarray
  denom: np.ndarray
  sigma: np.ndarray
  log_sigma: np.ndarray

  @property
  def num_steps(self) -> int:
    return len(self.t)


def step_coefficients(
    schedule: NoiseSchedule,
    ts: np.ndarray,
    kind: SigmaKind = "egoallo",
    eta: float = 1.0,
    denominator_eps: float | None = None,
) -> StepCoefficients:
  """Per-step update coefficients for the timesteps `ts`.

  Two forms:
  * "egoallo" (default, EgoAllo's exact update): σ = the schedule's σ_t
    evaluated at the *current* t (one-step posterior std × 0.8), and the
    implied ε estimate divided by √(1 − ᾱ_t + 0.1).
  * "ddim": DDIM-η, σ = η·√((1 − ᾱ_{t'})/(1 − ᾱ_t)·(1 − ᾱ_t/ᾱ_{t'})) for
    the jump t → t', and the exact √(1 − ᾱ_t) denominator (η = 0 is
    deterministic DDIM, η = 1 the DDPM posterior).

  Args:
    schedule: the noise schedule.
    ts: (S+1,) decreasing integer timesteps ending at 0.
    kind: "egoallo" or "ddim".
    eta: DDIM's η (only for kind="ddim").
    denominator_eps: the constant under the square root of the denominator;
      default 0.1 for "egoallo", 0.0 for "ddim".

  Returns:
    The coefficients, all float64 arrays of shape (S,).
  """
  ts = np.asarray(ts, dtype=np.int64)
  if ts.ndim != 1 or len(ts) < 2 or np.any(np.diff(ts) >= 0) or ts[-1] < 0:
    raise ValueError(f"step_coefficients: ts must be a decreasing 1-D integer "
                     f"array of ≥ 2 timesteps ≥ 0, got {ts}")
  if ts[0] > schedule.num_timesteps:
    raise ValueError(f"step_coefficients: ts[0]={ts[0]} exceeds the schedule's "
                     f"{schedule.num_timesteps} timesteps")
  t, t_next = ts[:-1], ts[1:]
  ab_t = schedule.alpha_bar[t]
  ab_next = schedule.alpha_bar[t_next]
  if kind == "egoallo":
    sigma = schedule.sigma[t]
    eps = 0.1 if denominator_eps is None else denominator_eps
  elif kind == "ddim":
    sigma = eta * np.sqrt((1.0 - ab_next) / (1.0 - ab_t) * (1.0 - ab_t / ab_next))
    eps = 0.0 if denominator_eps is None else denominator_eps
  else:
    raise ValueError(f"step_coefficients: kind must be 'egoallo' or 'ddim', "
                     f"got {kind!r}")
  dir_sq = 1.0 - ab_next - sigma**2
  if np.any(dir_sq < -1e-12):
    raise ValueError(f"step_coefficients: σ too large for kind={kind!r}, "
                     f"eta={eta}: 1 − ᾱ_next − σ² < 0")
  with np.errstate(divide="ignore"):
    log_sigma = np.where(sigma > 0, np.log(np.where(sigma > 0, sigma, 1.0)), 0.0)
  return StepCoefficients(
      t=t, t_next=t_next, c_x0=np.sqrt(ab_next),
      c_dir=np.sqrt(np.maximum(dir_sq, 0.0)), c_xt=np.sqrt(ab_t),
      denom=np.sqrt(1.0 - ab_t + eps), sigma=sigma, log_sigma=log_sigma)
