"""The GRPO objective: PPO-style clipped ratios over re-scored sampling steps.

For a sampled trajectory x_{t_0} … x_{t_S} with advantage A (per sample) the
loss re-scores every trained step k with the current parameters through the
sampler's own step function (`diffusion.sampler.sampler_step`, DDPO's
pattern, so sampling and training cannot drift):
  r_k = exp(log π_θ(x_{k+1} | x_k, c) − log π_old(x_{k+1} | x_k, c)),
  L = −mean_{n,k} min(r·A, clip(r, 1 − ε, 1 + ε)·A) + β·mean_{n,k} KL_k,
  KL_k = KL(N(μ_θ, σ_k²I) ‖ N(μ_ref, σ_k²I)) = ‖μ_θ − μ_ref‖²/(2σ_k²),
with the squared norm reduced like the log-probs (sum over the frame and
state dims of valid frames, or their mean; `SamplerConfig.log_prob_reduction`)
and μ_ref the reference policy's mean (the frozen base, or the policy that
drew the rollouts: `ObjectiveConfig.kl_reference`). Trained steps are those
with σ > 0 (all of them by default, or a random subset per iteration); an
optional anchor adds the same KL at a few untrained steps. Each step's
network call is rematerialised (`jax.checkpoint`), so the backward pass keeps
one step's activations at a time: memory is flat in the number of trained
steps.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from motiongrpo_jax.diffusion import sampler as sampler_lib
from motiongrpo_jax.model import packing



@dataclasses.dataclass(frozen=True)
class ObjectiveConfig:
  """Options of the clipped objective (hashable: jit-static)."""
  # ε of the ratio clip [1 − ε, 1 + ε].
  clip_range: float = 0.2
  # β of the KL to the reference policy (0: no KL, no reference forward).
  kl_beta: float = 0.0
  # The KL's reference: "base", the frozen base policy (an anchor against
  # drift: β ≥ 1 holds the policy at the base, README); "old", the policy
  # that drew the iteration's rollouts (a trust region per batch: over
  # several updates the mean of members sharing x_T converges to
  # μ_old + σ·mean(A·ε)/β, the natural-gradient step in the policy's own
  # metric).
  kl_reference: Literal["base", "old"] = "base"
  # Steps eligible for training: the first `train_window` steps with σ > 0
  # (the noisiest, where the sample is decided; 0 or more than there are:
  # all of them). On EgoAllo's schedule steps 0–2 cause ~97 % of the
  # sample's variance given x_T (tools/grpo_probe; README, "GRPO recipe").
  train_window: int = 3
  # Steps trained per iteration: 0 = every eligible step, else a random
  # subset of this many (drawn anew each iteration).
  num_train_steps: int = 0
  # Rematerialise each step's network call in the backward pass.
  remat: bool = True
  # β of a KL anchor on the steps outside the training window (0: none). The
  # network is shared by every step: an update that constrains only the
  # trained steps lets the others' denoising drift (tools/grpo_probe's fit
  # section: fitting step 0 alone triples MPJPE; README, "GRPO recipe").
  # Same reference as the KL above (`kl_reference`).
  anchor_beta: float = 0.0
  # Untrained steps (σ > 0) the anchor scores per iteration: a random subset
  # of this many, drawn anew each iteration.
  anchor_steps: int = 2
  # Packed fields the anchor holds (comma-separated, of "betas",
  # "body_rotmats", "contacts", "hand_rotmats"); "" = all. "betas" holds the
  # body size, which group-relative advantages cannot see and which drifts
  # without an anchor (README, "What GRPO moves …").
  anchor_fields: str = ""
  # Per-step weight w_k of the log-ratios. A step's score εᵀ∇μ/σ scales like
  # a_k/σ_k (a_k = the x̂0 coefficient of μ): 0.3 at EgoAllo's first step,
  # ~200 at its last, so unweighted ("none", the exact ratio) the low-noise
  # steps that decide almost nothing dominate the gradient. "score":
  # w_k = c·σ_k/a_k equalises the steps (c keeps the summed gradient
  # variance of the eligible steps unchanged).
  step_weighting: Literal["none", "score"] = "score"
  # Weight of EgoAllo's denoising loss on the batch's own ground truth,
  # added to every update (0: none). Group-relative advantages cannot see
  # what a group's members share (the body size drifts: README, "What GRPO
  # moves …"); the data loss pulls that back toward the data rather than
  # toward the base, as InstructGPT's pretraining term does.
  data_beta: float = 0.0
  # Draws (t, ε) per ground-truth window in that loss, averaged: each costs a
  # forward and a backward of the batch, little beside the rollouts. 8 halved
  # the data term's own drift and left GRPO's result unchanged (one seed;
  # README, "A third seed …").
  data_draws: int = 1

  @property
  def needs_base_params(self) -> bool:
    """Whether the update needs the frozen base policy's parameters: a KL
    or an anchor whose reference is the base."""
    return ((self.kl_beta > 0 or self.anchor_beta > 0)
            and self.kl_reference == "base")

  @property
  def anchor_field_names(self) -> tuple[str, ...]:
    """The fields the anchor holds; () = all."""
    return tuple(n.strip() for n in self.anchor_fields.split(",") if n.strip())

  def validate(self, num_trainable: int | None = None) -> "ObjectiveConfig":
    """Raises ValueError naming the option for an impossible value."""
    if not 0 < self.clip_range < 1:
      raise ValueError(f"objective.clip_range={self.clip_range}: expected in "
                       "(0, 1)")
    if self.kl_beta < 0:
      raise ValueError(f"objective.kl_beta={self.kl_beta}: expected >= 0")
    if self.kl_reference not in ("base", "old"):
      raise ValueError(f"objective.kl_reference={self.kl_reference!r}: "
                       "expected 'base' or 'old'")
    if self.data_beta < 0:
      raise ValueError(f"objective.data_beta={self.data_beta}: expected >= 0")
    if self.data_draws < 1:
      raise ValueError(f"objective.data_draws={self.data_draws}: expected "
                       ">= 1")
    if self.anchor_beta < 0:
      raise ValueError(f"objective.anchor_beta={self.anchor_beta}: expected "
                       ">= 0")
    if self.anchor_beta > 0:
      untrained = (None if num_trainable is None
                   else num_trainable - min(self.train_window or num_trainable,
                                            num_trainable))
      if self.anchor_steps < 1 or (untrained is not None
                                   and self.anchor_steps > untrained):
        raise ValueError(
            f"objective.anchor_steps={self.anchor_steps}: expected 1.."
            f"{untrained} (the steps with σ > 0 outside "
            f"objective.train_window={self.train_window})")
    unknown = set(self.anchor_field_names) - set(packing.FIELD_SLICES)
    if unknown:
      raise ValueError(f"objective.anchor_fields={self.anchor_fields!r}: "
                       f"unknown {sorted(unknown)}, expected names of "
                       f"{tuple(packing.FIELD_SLICES)}")
    if self.step_weighting not in ("none", "score"):
      raise ValueError(f"objective.step_weighting={self.step_weighting!r}: "
                       "expected 'none' or 'score'")
    if self.train_window < 0:
      raise ValueError(f"objective.train_window={self.train_window}: expected "
                       ">= 0 (0: all steps with σ > 0)")
    eligible = num_trainable
    if num_trainable is not None and self.train_window:
      eligible = min(self.train_window, num_trainable)
    if self.num_train_steps < 0 or (
        eligible is not None and self.num_train_steps > eligible):
      raise ValueError(
          f"objective.num_train_steps={self.num_train_steps}: expected 0 (all)"
          f" or 1..{eligible} (the eligible steps with σ > 0)")
    return self


def trainable_steps(config: sampler_lib.SamplerConfig,
                    train_window: int = 0) -> np.ndarray:
  """(S′,) int32 indices of the eligible sampler steps: those with σ > 0, the
  first `train_window` of them when it is > 0 (static)."""
  sigma = np.asarray(sampler_lib.step_constants(config).sigma)
  steps = np.nonzero(sigma > 0)[0].astype(np.int32)
  return steps[:train_window] if train_window else steps


def anchor_candidates(config: sampler_lib.SamplerConfig,
                      train_window: int) -> np.ndarray:
  """(S″,) int32 the steps with σ > 0 outside the training window, where
  the anchor applies (empty when every such step is trained)."""
  steps = trainable_steps(config)
  return steps[train_window:] if train_window else steps[:0]


def score_scale(config: sampler_lib.SamplerConfig) -> np.ndarray:
  """(S,) float64 |a_k|/σ_k, the scale of step k's score (0 where σ = 0).

  μ = c_x0·x̂0 + c_dir·(x_t − c_xt·x̂0)/denom, so ∂μ/∂x̂0 = a_k =
  c_x0 − c_dir·c_xt/denom, and ∇log π = εᵀ·a_k·∇x̂0/σ_k.
  """
  c = sampler_lib.step_coefficients(config)
  a = c.c_x0 - c.c_dir * c.c_xt / c.denom
  positive = c.sigma > 0
  return np.where(positive, np.abs(a) / np.where(positive, c.sigma, 1.0), 0.0)


def step_weights(config: sampler_lib.SamplerConfig, weighting: str,
                 train_window: int = 0) -> np.ndarray:
  """(S,) float32 log-ratio weights (`ObjectiveConfig.step_weighting`).

  "none": 1 where σ > 0. "score": w_k = c/scale_k with c the RMS of the
  scales over the eligible steps, so every step's weighted score has the
  scale c and the eligible steps' summed gradient variance is unchanged.
  0 where σ = 0.
  """
  scale = score_scale(config)
  if weighting == "none":
    return (scale > 0).astype(np.float32)
  eligible = trainable_steps(config, train_window)
  c = np.sqrt(np.mean(np.square(scale[eligible])))
  weights = np.where(scale > 0, c / np.where(scale > 0, scale, 1.0), 0.0)
  return weights.astype(np.float32)


def select_steps(key: jax.Array, trainable: np.ndarray,
                 num_train_steps: int) -> jax.Array:
  """The steps trained this iteration.

  Args:
    key: PRNG key (the same on every device).
    trainable: (S′,) indices from `trainable_steps`.
    num_train_steps: 0 for all, else the size of a random subset.

  Returns:
    (K,) int32 step indices, ascending.
  """
  if num_train_steps == 0 or num_train_steps == len(trainable):
    return jnp.asarray(trainable)
  picked = jax.random.choice(key, jnp.asarray(trainable), (num_train_steps,),
                             replace=False)
  return jnp.sort(picked)


def gaussian_kl(mean: jax.Array, ref_mean: jax.Array,
                constants: sampler_lib.StepConstants, mask: jax.Array | None,
                reduction: str = "sum", fields: tuple[str, ...] = ()
                ) -> jax.Array:
  """KL(N(mean, σ²I) ‖ N(ref_mean, σ²I)) = ‖mean − ref_mean‖²/(2σ²).

  Reduced like `sampler.gaussian_log_prob`: summed over valid frames and state
  dims, or divided by their number for "mean"; 0 where σ = 0.

  Args:
    mean: (B, L, d) policy mean μ_θ.
    ref_mean: (B, L, d) reference mean μ_ref.
    constants: scalar step constants (uses inv_var = 1/σ²).
    mask: (B, L) valid frames, or None.
    reduction: "sum" or "mean".
    fields: the packed fields it is taken over (`packing.FIELD_SLICES`);
      () = all d.

  Returns:
    (B,) float32 KL.
  """
  if fields:
    mean = packing.select_fields(mean, fields)
    ref_mean = packing.select_fields(ref_mean, fields)
  sq = jnp.square(mean.astype(jnp.float32) - ref_mean.astype(jnp.float32))
  sq_sum, count = sampler_lib.masked_sum(sq, mask)
  return sampler_lib.reduce_per_step(0.5 * sq_sum * constants.inv_var, count,
                                     constants, reduction)


def rescore_steps(apply_fn: sampler_lib.ApplyFn, params: Any,
                  ref_params: Any | None, xs: jax.Array,
                  condition: sampler_lib.Condition, mask: jax.Array | None,
                  steps: jax.Array, config: sampler_lib.SamplerConfig,
                  remat: bool = True, kl_fields: tuple[str, ...] = ()
                  ) -> tuple[jax.Array, jax.Array]:
  """Log-probs (and KL to the reference) of stored transitions.

  One `lax.scan` over the chosen steps; each step calls
  `sampler.sampler_step` in re-scoring mode (optionally under
  `jax.checkpoint`), so with the sampling parameters the log-probs are the
  rollout's.

  Args:
    apply_fn: the network.
    params: parameters to score with (differentiated).
    ref_params: frozen base parameters for the KL, or None (KL = 0).
    xs: (B, S+1, L, d) stored trajectories, x_T first.
    condition: the condition each trajectory was sampled with, (B, L, 7).
    mask: (B, L) valid frames, or None.
    steps: (K,) step indices to score.
    config: the rollout's sampler options.
    remat: rematerialise each step in the backward pass.
    kl_fields: the packed fields the KL is taken over (() = all).

  Returns:
    log_probs (B, K) and kl (B, K) (zeros without `ref_params`).
  """
  consts = sampler_lib.step_constants(config)
  picked = jax.tree.map(lambda c: c[steps], consts)
  x_t = jnp.swapaxes(xs[:, steps], 0, 1)  # shape [K, B, L, d]
  x_next = jnp.swapaxes(xs[:, steps + 1], 0, 1)  # shape [K, B, L, d]

  def step(params, step_consts, x_t, x_next):
    out = sampler_lib.sampler_step(apply_fn, params, x_t, step_consts,
                                   condition, x_next=x_next, mask=mask,
                                   config=config)
    if ref_params is None:
      return out.log_prob, jnp.zeros_like(out.log_prob)
    ref = sampler_lib.sampler_step(apply_fn, ref_params, x_t, step_consts,
                                   condition, x_next=x_next, mask=mask,
                                   config=config)
    kl = gaussian_kl(out.mean, jax.lax.stop_gradient(ref.mean), step_consts,
                     mask, config.log_prob_reduction, kl_fields)
    return out.log_prob, kl

  if remat:
    step = jax.checkpoint(step)

  def body(carry, inputs):
    return carry, step(params, *inputs)

  _, (log_probs, kls) = jax.lax.scan(body, None, (picked, x_t, x_next))
  return log_probs.T, kls.T


def grpo_loss(log_probs: jax.Array, old_log_probs: jax.Array,
              advantages: jax.Array, kl: jax.Array | None,
              config: ObjectiveConfig
              ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The clipped GRPO objective on re-scored log-probs.

  Steps:
    1. log-ratio δ = log π_θ − log π_old and ratio r = exp(δ) per sample and
       trained step;
    2. surrogates r·A and clip(r, 1 − ε, 1 + ε)·A, A broadcast over steps;
    3. policy loss −mean(min(r·A, clip(r)·A)) over samples and steps;
    4. plus β·mean(KL) (exact Gaussian KL to the reference policy);
    5. diagnostics: clip fraction (|r − 1| > ε), approximate KL
       mean(½δ²) (DDPO's), ratio mean / min / max, mean KL.

  Args:
    log_probs: (N, K) log π_θ of the trained steps.
    old_log_probs: (N, K) log π_old recorded when sampling.
    advantages: (N,) per-sample advantages.
    kl: (N, K) KL to the reference, or None.
    config: ε and β.

  Returns:
    (loss (), stats {name: ()}).
  """
  eps = config.clip_range
  # --- (1) ratio.
  log_ratio = log_probs - jax.lax.stop_gradient(old_log_probs)  # shape [N, K]
  ratio = jnp.exp(log_ratio)  # shape [N, K]
  # --- (2) surrogates.
  adv = jax.lax.stop_gradient(advantages)[:, None]  # shape [N, 1]
  unclipped = ratio * adv  # shape [N, K]
  clipped = jnp.clip(ratio, 1.0 - eps, 1.0 + eps) * adv  # shape [N, K]
  # --- (3) policy loss.
  policy_loss = -jnp.mean(jnp.minimum(unclipped, clipped))
  # --- (4) KL penalty.
  kl_mean = jnp.zeros((), jnp.float32) if kl is None else jnp.mean(kl)
  loss = policy_loss + config.kl_beta * kl_mean
  # --- (5) diagnostics.
  stats = {
      "policy_loss": policy_loss,
      "kl": kl_mean,
      "clip_fraction": jnp.mean((jnp.abs(ratio - 1.0) > eps).astype(
          jnp.float32)),
      "approx_kl": 0.5 * jnp.mean(jnp.square(log_ratio)),
      "ratio_mean": jnp.mean(ratio),
      "ratio_min": jnp.min(ratio),
      "ratio_max": jnp.max(ratio),
  }
  return loss, jax.tree.map(jax.lax.stop_gradient, stats)
