"""The critic's own evaluation on held-out data (`WORKDIR/critic_eval.json`).

Per held-out trajectory (an evaluation window) the critic scores the ground
truth, M samples of the base policy (final states x_0 of M rollouts) and one
negative of each perturbation kind. Reported:
  * `gt_beats_all_base`: fraction of trajectories whose ground truth scores
    above every one of its base samples; `gt_beats_base_pairwise`: fraction
    of (trajectory, sample) pairs;
  * `gt_beats_<kind>`: per perturbation kind, the fraction of trajectories
    (with a valid negative of that kind) whose ground truth scores above it;
  * `spearman_score_mpjpe_mean` / `_median`: Spearman's rank correlation
    between score and MPJPE across the M samples of one trajectory, averaged
    over trajectories (negative = lower error scores higher, as wanted);
    `spearman_negative_fraction`: the fraction of trajectories where it is
    below 0; trajectories whose samples tie in score or MPJPE are left out;
    `spearman_pooled`: the same over all samples of all trajectories at once
    (mixes between-trajectory differences in; context only).
  * `base_mpjpe_mm`: the samples' mean MPJPE (mm), for context.
The per-batch work (`make_batch_fn`) is one jitted function; the summary
(`summarize`) is host numpy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats

from motiongrpo_jax.body import model as body_model
from motiongrpo_jax.critic import model as critic_lib
from motiongrpo_jax.critic import objective as critic_objective
from motiongrpo_jax.diffusion import sampler as sampler_lib
from motiongrpo_jax.eval import metrics


def spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """Spearman's ρ between x and y along the last axis, row by row.

  Ties get average ranks (scipy's `rankdata`); a row where x or y is
  constant has no correlation and gives NaN.

  Args:
    x: (N, M).
    y: (N, M).

  Returns:
    (N,) ρ in [−1, 1] or NaN.
  """
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  if x.shape != y.shape or x.ndim != 2 or x.shape[1] < 2:
    raise ValueError(f"spearman_rows: need two (N, M >= 2) arrays of one "
                     f"shape, got {x.shape} and {y.shape}")
  rx = scipy.stats.rankdata(x, axis=1)
  ry = scipy.stats.rankdata(y, axis=1)
  rx -= rx.mean(axis=1, keepdims=True)
  ry -= ry.mean(axis=1, keepdims=True)
  denom = np.sqrt(np.sum(rx * rx, axis=1) * np.sum(ry * ry, axis=1))
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(denom > 0, np.sum(rx * ry, axis=1) / denom, np.nan)


def summarize(gt_scores: np.ndarray, base_scores: np.ndarray,
              base_mpjpe: np.ndarray, perturbed_scores: np.ndarray,
              perturbed_valid: np.ndarray, kinds: Sequence[str]
              ) -> dict[str, float]:
  """The evaluation numbers (module docstring) over N trajectories.

  Args:
    gt_scores: (N,) score of each ground truth.
    base_scores: (N, M) scores of its base-policy samples.
    base_mpjpe: (N, M) their MPJPE against the ground truth (mm).
    perturbed_scores: (N, P) scores of the perturbed ground truths.
    perturbed_valid: (N, P) which of them exist.
    kinds: the P perturbation kinds, in column order.

  Returns:
    A flat dict of floats (NaN where a number has no data).
  """
  gt = np.asarray(gt_scores, np.float64)
  base = np.asarray(base_scores, np.float64)
  if base.ndim != 2 or base.shape[0] != gt.shape[0]:
    raise ValueError(f"summarize: base_scores {base.shape} does not match "
                     f"gt_scores {gt.shape}")
  beats = gt[:, None] > base
  rho = spearman_rows(base, base_mpjpe) if base.shape[1] >= 2 else np.full(
      gt.shape, np.nan)
  finite = rho[np.isfinite(rho)]
  nan = float("nan")
  out = {
      "num_trajectories": float(gt.shape[0]),
      "num_base_samples": float(base.shape[1]),
      "gt_beats_all_base": float(np.mean(np.all(beats, axis=1))) if len(gt) else nan,
      "gt_beats_base_pairwise": float(np.mean(beats)) if beats.size else nan,
      "spearman_score_mpjpe_mean": float(np.mean(finite)) if finite.size else nan,
      "spearman_score_mpjpe_median": float(np.median(finite)) if finite.size else nan,
      "spearman_negative_fraction": float(np.mean(finite < 0)) if finite.size else nan,
      "spearman_num_trajectories": float(finite.size),
      "spearman_pooled": (float(spearman_rows(base.reshape(1, -1),
                                              np.reshape(base_mpjpe, (1, -1)))[0])
                          if base.size >= 2 else nan),
      "base_mpjpe_mm": float(np.mean(base_mpjpe)) if base.size else nan,
      "gt_score_mean": float(np.mean(gt)) if len(gt) else nan,
      "base_score_mean": float(np.mean(base)) if base.size else nan,
  }
  pert = np.asarray(perturbed_scores, np.float64)
  valid = np.asarray(perturbed_valid, bool)
  for i, kind in enumerate(kinds):
    ok = valid[:, i]
    out[f"gt_beats_{kind}"] = (float(np.mean(gt[ok] > pert[ok, i]))
                               if ok.any() else nan)
  return out


# fn(critic_params, base_params, batch, key, amplitude) -> per-window arrays.
BatchFn = Callable[..., dict[str, jax.Array]]


def make_batch_fn(critic: critic_lib.Critic, body: body_model.BodyModel,
                  base_apply: sampler_lib.ApplyFn,
                  sampler_config: sampler_lib.SamplerConfig,
                  perturbations: critic_objective.PerturbationConfig,
                  num_samples: int, include_hands: bool,
                  out_sharding: jax.sharding.Sharding | None = None) -> BatchFn:
  """The jitted per-batch evaluation.

  Args:
    critic: the critic model.
    body: the body model motions are posed with.
    base_apply: the base denoiser's `ApplyFn`.
    sampler_config: the base policy's sampler.
    perturbations: the perturbation kinds and strengths.
    num_samples: M, base samples per trajectory (>= 2 for the correlation);
      with `amplitude` λ > 0 (a traced argument: no recompilation) each
      sample's rollout sees the head trajectory with GRPO's condition noise
      of RMS λ metres, while scores and MPJPE use the clean one.
    include_hands: whether the base model's state carries hands.
    out_sharding: where the outputs go (replicated, so that every process
      can read them), or None (jit's choice).

  Returns:
    fn(critic_params, base_params, batch, key, amplitude=0.0) -> dict of
    `gt` (B,), `base` (B, M), `mpjpe` (B, M), `perturbed` (B, P),
    `perturbed_valid` (B, P), `weight` (B,) (0 for filler windows).
  """
  dim = 496 if include_hands else 226

  def fn(critic_params, base_params, batch, key, amplitude=0.0):
    mask = batch["mask"].astype(bool)
    batch_size = mask.shape[0]
    cpf, rel = batch["T_world_cpf"], batch["T_cpf_tm1_cpf_t"]

    def score_fn(motion, T_world_cpf, T_cpf_tm1_cpf_t, m):
      return critic_lib.score(critic, critic_params, body, motion,
                              T_world_cpf, T_cpf_tm1_cpf_t, m)

    # --- (1) Base samples: M rollouts per trajectory, final states x_0.
    tile = lambda x: jnp.tile(x, (num_samples,) + (1,) * (x.ndim - 1))  # pylint: disable=unnecessary-lambda-assignment
    rows = num_samples * batch_size
    noisy_cpf, noisy_rel = critic_objective.noisy_condition(
        jax.random.split(jax.random.fold_in(key, 2), rows), tile(cpf),
        tile(rel), tile(mask), amplitude)
    condition = sampler_lib.Condition(noisy_cpf, noisy_rel)
    out = sampler_lib.rollout(base_apply, base_params, condition,
                              key=jax.random.fold_in(key, 0),
                              mask=tile(mask), packed_dim=dim,
                              config=sampler_config)
    x0 = out.xs[-1].reshape((num_samples, batch_size) + out.xs.shape[2:])
    samples = critic_lib.motion_from_packed(jnp.swapaxes(x0, 0, 1),
                                            include_hands)
    gt = critic_lib.motion_from_batch(batch)
    # --- (2) Perturbed ground truth.
    keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(
        jax.random.fold_in(key, 1), jnp.arange(batch_size))
    perturbed, valid = critic_objective.perturbed_negatives(
        keys, gt, mask, batch["seq_index"], perturbations)
    # --- (3) Scores of [gt, samples, perturbed] in one critic call.
    cands = jax.tree.map(
        lambda a, b, c: jnp.concatenate([a[:, None], b, c], axis=1),
        gt, samples, perturbed)
    scores = critic_objective.candidate_scores(score_fn, cands, cpf, rel, mask)
    # --- (4) MPJPE of every sample against the ground truth (22 joints).
    gt_joints = body.forward_kinematics(
        gt.betas, batch["T_world_root"], gt.body_quats)[..., :22, 4:7]
    root = body.T_world_root_from_cpf(samples.betas, cpf[:, None],
                                      samples.body_quats)
    joints = body.forward_kinematics(samples.betas, root,
                                     samples.body_quats)[..., :22, 4:7]
    mpjpe = metrics.mpjpe(
        joints, jnp.broadcast_to(gt_joints[:, None], joints.shape),
        jnp.broadcast_to(mask[:, None], joints.shape[:3]))
    return {
        "gt": scores[:, 0],
        "base": scores[:, 1:1 + num_samples],
        "mpjpe": mpjpe,
        "perturbed": scores[:, 1 + num_samples:],
        "perturbed_valid": valid,
        "weight": jnp.any(mask, axis=1).astype(jnp.float32),
    }

  return jax.jit(fn, out_shardings=out_sharding)


def evaluate(batch_fn: BatchFn, critic_params: Any, base_params: Any,
             batches: Iterable[Mapping[str, Any]], key: jax.Array,
             kinds: Sequence[str], max_batches: int | None = None,
             amplitude: float = 0.0) -> dict[str, float]:
  """Runs `batch_fn` over held-out batches and summarises.

  Args:
    batch_fn: from `make_batch_fn`.
    critic_params: the critic's parameters.
    base_params: the base denoiser's parameters.
    batches: held-out batches (e.g. `pipeline.eval_dataset`), numpy dicts or
      global arrays.
    key: base key; batch i uses fold_in(key, i).
    kinds: the perturbation kinds (column order of `perturbed`).
    max_batches: stop after this many batches (None: all).
    amplitude: condition-noise RMS (metres) of the samples' rollouts.

  Returns:
    `summarize`'s numbers.
  """
  parts: dict[str, list[np.ndarray]] = {}
  for i, batch in enumerate(batches):
    if max_batches is not None and i >= max_batches:
      break
    out = jax.device_get(batch_fn(critic_params, base_params, batch,
                                  jax.random.fold_in(key, i),
                                  jnp.float32(amplitude)))
    keep = np.asarray(out.pop("weight")) > 0
    for name, value in out.items():
      parts.setdefault(name, []).append(np.asarray(value)[keep])
  if not parts:
    raise ValueError("critic evaluation: the held-out split gave no batches")
  cat = {k: np.concatenate(v, axis=0) for k, v in parts.items()}
  return summarize(cat["gt"], cat["base"], cat["mpjpe"], cat["perturbed"],
                   cat["perturbed_valid"], kinds)
