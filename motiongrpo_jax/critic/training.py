"""What the critic trains on, from a `critic` config: its model options, the
negatives of a batch (base-policy rollouts and perturbed ground truth) and
the per-device InfoNCE loss."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from motiongrpo_jax import config_sections
from motiongrpo_jax.body import model as body_model
from motiongrpo_jax.critic import model as critic_lib
from motiongrpo_jax.critic import objective as critic_objective
from motiongrpo_jax.diffusion import sampler as sampler_lib
from motiongrpo_jax.train import mesh as mesh_lib


def critic_config(config: ml_collections.ConfigDict) -> critic_lib.CriticConfig:
  """The `CriticConfig` of `config.model` (unknown fields are an error)."""
  try:
    return critic_lib.CriticConfig.from_dict(config.model.to_dict())
  except (TypeError, ValueError) as e:
    raise ValueError(f"config.model: {e}") from e

def perturbation_config(config: ml_collections.ConfigDict
                        ) -> critic_objective.PerturbationConfig:
  """The perturbation kinds and strengths of `config.objective`."""
  obj = config.objective
  try:
    return critic_objective.PerturbationConfig(
        kinds=tuple(obj.perturbations), min_shift=obj.min_shift,
        max_shift=obj.max_shift, noise_offset_std=obj.noise_offset_std,
        noise_jitter_std=obj.noise_jitter_std,
        slide_rate_max=obj.slide_rate_max).validate()
  except ValueError as e:
    raise ValueError(f"config.objective: {e}") from e

def sampler_config(config: ml_collections.ConfigDict,
                   return_x0: bool) -> sampler_lib.SamplerConfig:
  """The base policy's sampler (`config.sampler`; x̂0 kept when asked)."""
  return config_sections.to_dataclass(
      sampler_lib.SamplerConfig, config.sampler, "sampler",
      return_means=False, return_x0=return_x0)

def make_candidates_fn(base_apply: sampler_lib.ApplyFn,
                       config: ml_collections.ConfigDict, include_hands: bool):
  """The negatives of a global batch, as extra batch fields.

  Returns:
    fn(base_params, batch, key) -> {"cand_betas" (B, N, T, 16),
    "cand_quats" (B, N, T, 21, 4), "cand_valid" (B, N)} with N = G·K base
    negatives (sample-major, then step) followed by one per perturbation kind.
    Per-trajectory perturbation keys are fold_in(key₁, global index), so they
    do not depend on the device count.
  """
  obj = config.objective
  samples, last = obj.base_samples, obj.base_last_steps
  perturbations = perturbation_config(config)
  sampling = sampler_config(config, return_x0=True)
  dim = 496 if include_hands else 226

  def fn(base_params, batch, key):
    mask = batch["mask"].astype(bool)
    batch_size = mask.shape[0]
    gt = critic_lib.motion_from_batch(batch)
    parts, valid = [], []
    if samples:
      tile = lambda x: jnp.tile(x, (samples,) + (1,) * (x.ndim - 1))  # pylint: disable=unnecessary-lambda-assignment
      rows = samples * batch_size
      cpf, rel = tile(batch["T_world_cpf"]), tile(batch["T_cpf_tm1_cpf_t"])
      if obj.condition_noise_max > 0:
        k_amp, k_noise = jax.random.split(jax.random.fold_in(key, 2))
        amplitude = jax.random.uniform(k_amp, (rows,),
                                       maxval=obj.condition_noise_max)
        cpf, rel = critic_objective.noisy_condition(
            jax.random.split(k_noise, rows), cpf, rel, tile(mask), amplitude)
      condition = sampler_lib.Condition(cpf, rel)
      out = sampler_lib.rollout(base_apply, base_params, condition,
                                key=jax.random.fold_in(key, 0), mask=tile(mask),
                                packed_dim=dim, config=sampling)
      base = critic_objective.base_negatives(
          jax.lax.stop_gradient(out.x0_preds), last, samples, include_hands)
      parts.append(base)
      valid.append(jnp.ones((batch_size, samples * last), bool))
    if perturbations.kinds:
      keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(
          jax.random.fold_in(key, 1), jnp.arange(batch_size))
      perturbed, ok = critic_objective.perturbed_negatives(
          keys, gt, mask, batch["seq_index"], perturbations)
      parts.append(perturbed)
      valid.append(ok)
    cands = jax.tree.map(lambda *x: jnp.concatenate(x, axis=1), *parts)
    return {"cand_betas": cands.betas, "cand_quats": cands.body_quats,
            "cand_valid": jnp.concatenate(valid, axis=1)}

  return fn

def candidate_names(config: ml_collections.ConfigDict) -> list[str]:
  """Names of the negative columns: base_<g>_<k>…, then the kinds."""
  obj = config.objective
  names = [f"base_{g}_{k}" for g in range(obj.base_samples)
           for k in range(obj.base_last_steps)]
  return names + list(obj.perturbations)

def make_loss_fn(model: critic_lib.Critic, body: body_model.BodyModel,
                 config: ml_collections.ConfigDict) -> mesh_lib.LossFn:
  """The per-device InfoNCE `loss_fn(params, batch, keys)`.

  The batch carries the candidates of `make_candidates_fn`. The loss is the
  mean over this device's trajectories, so the mean over devices is the
  global loss. Aux metrics (means over trajectories; a missing negative
  counts as beaten): `acc_all` (positive above every negative), `acc_base`
  (above every base negative), `acc_<kind>` per perturbation kind,
  `score_gt`, `score_negative` (mean over valid negatives), `score_gap`.
  """
  names = candidate_names(config)
  num_base = config.objective.base_samples * config.objective.base_last_steps
  temperature = config.objective.temperature

  def loss_fn(params, batch, keys):
    del keys  # The negatives carry all the randomness.
    mask = batch["mask"].astype(bool)
    gt = critic_lib.motion_from_batch(batch)
    cands = critic_lib.Motion(
        betas=jnp.concatenate([gt.betas[:, None], batch["cand_betas"]], 1),
        body_quats=jnp.concatenate([gt.body_quats[:, None],
                                    batch["cand_quats"]], 1))
    valid = jnp.concatenate([jnp.ones_like(mask[:, :1]), batch["cand_valid"]],
                            axis=1)

    def score_fn(motion, T_world_cpf, T_cpf_tm1_cpf_t, m):
      return critic_lib.score(model, params, body, motion, T_world_cpf,
                              T_cpf_tm1_cpf_t, m)

    scores = critic_objective.candidate_scores(
        score_fn, cands, batch["T_world_cpf"], batch["T_cpf_tm1_cpf_t"], mask)
    weight = jnp.any(mask, axis=1).astype(jnp.float32)
    loss, _ = critic_objective.info_nce(scores, valid, weight, temperature)
    beats, beats_all = critic_objective.ranking_stats(scores, valid)
    f32 = lambda x: jnp.mean(x.astype(jnp.float32))  # pylint: disable=unnecessary-lambda-assignment
    neg_valid = valid[:, 1:].astype(jnp.float32)
    aux = {"acc_all": f32(beats_all),
           "score_gt": jnp.mean(scores[:, 0]),
           "score_negative": jnp.sum(scores[:, 1:] * neg_valid)
                             / jnp.maximum(jnp.sum(neg_valid), 1.0)}
    aux["score_gap"] = aux["score_gt"] - aux["score_negative"]
    if num_base:
      aux["acc_base"] = f32(jnp.all(beats[:, :num_base], axis=1))
    for i, name in enumerate(names[num_base:]):
      aux[f"acc_{name}"] = f32(beats[:, num_base + i])
    return loss, aux

  return loss_fn
