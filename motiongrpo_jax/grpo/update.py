"""One data-parallel GRPO iteration: sample groups, score them, update.

`make_train_step` builds the jitted `(state, batch) -> (state, metrics)` that
`train/loop.py` runs; one call is one GRPO iteration on one batch of head
trajectories:
  1. rollouts: G per sequence with the current (= old) policy and per-member
     condition noise (`group_sampler`);
  2. rewards against the ground truth and the clean trajectory, group-
     normalised advantages (`rewards`), group diagnostics (`diagnostics`);
  3. `num_epochs` × `num_minibatches` optimiser updates on the clipped
     objective (`objective`, plus `objective.data_beta` × the denoising loss
     on the batch's ground truth), each on the gradient accumulated over
     `num_microbatches` micro-batches in a `lax.scan` (one gradient buffer,
     no second optimiser state), clipped by global norm and applied by
     `train.state.apply_gradients` (non-finite updates skipped and counted);
  4. `state.step` advances by one (one batch consumed).

Data parallelism: the whole iteration runs per device under `jax.shard_map`;
each device holds whole groups (B / devices sequences × G members), so group
statistics never cross devices; gradients, losses and metrics are
`pmean`ed. Every random draw comes from `fold_in(state.rng, state.step)`: the
per-sequence keys from the sequence's global index (`mesh.example_keys`), the
trained steps and the minibatch order from the shared key. Minibatch j of an
epoch holds the examples whose global index is ≡ j (mod num_minibatches), so
the N-device step equals the 1-device step for the same global batch.

Randomness (iteration key k = fold_in(rng, step)): k_sample, k_steps,
k_order = split(k, 3); the anchored steps (`objective.anchor_beta`) from
fold_in(k_steps, 1); update u's data-loss draws (t, ε per sequence) from
fold_in(fold_in(k_steps, 2), u).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import PartitionSpec as P

from motiongrpo_jax import config_sections
from motiongrpo_jax.body import model as body_model
from motiongrpo_jax.data import condition_noise as noise_lib
from motiongrpo_jax.diffusion import sampler as sampler_lib
from motiongrpo_jax.eval import posing
from motiongrpo_jax.grpo import diagnostics
from motiongrpo_jax.grpo import group_sampler
from motiongrpo_jax.grpo import objective
from motiongrpo_jax.grpo import rewards as rewards_lib
from motiongrpo_jax.train import mesh as mesh_lib
from motiongrpo_jax.train import state as state_lib

DATA_AXIS = mesh_lib.DATA_AXIS
# Batch fields the iteration reads (the pipeline yields more).
BATCH_FIELDS = ("T_world_cpf", "mask", "betas", "T_world_root", "body_quats")
# And those the data loss reads (`objective.data_beta`; hands when present).
DATA_FIELDS = ("contacts", "hand_quats")

# score_fn(critic_params, samples (N, L, d), clean condition (N, L, 7) ×2,
#          mask (N, L)) -> (N,) critic scores s.
ScoreFn = Callable[[Any, jax.Array, sampler_lib.Condition, jax.Array],
                   jax.Array]


# The rollouts' sampler: EgoAllo's, except where training needs otherwise.
ROLLOUT_SAMPLER = sampler_lib.SamplerConfig(
    # Training-only exploration: the first 3 steps (the trained window) take
    # DDIM-η's larger σ (EgoAllo's σ after step 0 is 0.005–0.09), so groups
    # stay diverse: Bandai-Namco MPJPE −11.8 % vs +5.4 % without (README).
    explore_steps=3,
    # The same matrix as "svd" to ~1e-6; 3× faster demo rollouts on CPU.
    rotation_projection="polar",
    # DDPO's: the clip acts on per-scalar ratios ("sum", the exact density,
    # needs a learning rate about 1/(L·d) as large).
    log_prob_reduction="mean",
    return_means=False)


@dataclasses.dataclass(frozen=True)
class UpdateConfig:
  """Everything static about a GRPO iteration (hashable: jit-static)."""
  group: group_sampler.GroupConfig = group_sampler.GroupConfig()
  sampler: sampler_lib.SamplerConfig = ROLLOUT_SAMPLER
  reward: rewards_lib.RewardConfig = rewards_lib.RewardConfig()
  objective: objective.ObjectiveConfig = objective.ObjectiveConfig()
  # Passes over the iteration's samples (2 × 2 updates per batch: MPJPE
  # −4.1 % vs −3.1 % with one update on the demo base; README, "GRPO recipe").
  num_epochs: int = 2
  # Optimiser updates per epoch (examples split by global index mod this).
  num_minibatches: int = 2
  # Gradient-accumulation chunks per update (memory, not maths).
  num_microbatches: int = 1
  # A group whose raw hybrid reward (Σ w·r / Σ w, in [0, 1]) varies less than
  # this (std over members) is "zero-advantage": normalisation would only
  # amplify its noise.
  zero_advantage_threshold: float = 0.01

  def validate(self, local_sequences: int | None = None) -> "UpdateConfig":
    """Raises ValueError naming the option for an impossible value.

    Args:
      local_sequences: sequences per device, to check the minibatch split.
    """
    self.group.validate()
    self.sampler.validate()
    if self.sampler.reuse_x0_from:
      raise ValueError("sampler.reuse_x0_from must be 0 in GRPO: re-scoring "
                       "a step needs that step's own x̂0")
    self.reward.validate()
    self.objective.validate(len(objective.trainable_steps(self.sampler)))
    for name in ("num_epochs", "num_minibatches", "num_microbatches"):
      if getattr(self, name) < 1:
        raise ValueError(f"iteration.{name}={getattr(self, name)}: expected >= 1")
    if local_sequences is not None:
      examples = local_sequences * self.group.group_size
      chunks = self.num_minibatches * self.num_microbatches
      if examples % chunks:
        raise ValueError(
            f"data.batch_size: {local_sequences} sequences per device × "
            f"group.group_size {self.group.group_size} = {examples} samples "
            "do not split into iteration.num_minibatches × "
            f"iteration.num_microbatches = {chunks} equal parts")
    return self


def from_config(config: ml_collections.ConfigDict) -> UpdateConfig:
  """The `UpdateConfig` of a grpo config's sections, validated
  (`config_sections`: the dataclasses are the settings' one source)."""
  sections = config_sections.to_dataclass
  fps = config.data.fps
  return sections(
      UpdateConfig, config.iteration, "iteration",
      group=sections(group_sampler.GroupConfig, config.group, "group",
                     noise=sections(noise_lib.ConditionNoiseConfig,
                                    config.condition_noise, "condition_noise",
                                    fps=fps)),
      sampler=sections(sampler_lib.SamplerConfig, config.sampler, "sampler",
                       return_means=False),
      reward=sections(rewards_lib.RewardConfig, config.reward, "reward",
                      fps=fps),
      objective=sections(objective.ObjectiveConfig, config.objective,
                         "objective"))


class _Examples(NamedTuple):
  """Flattened per-sample training data, leading axis N = B·G."""
  xs: jax.Array  # shape [N, S+1, L, d]
  T_world_cpf: jax.Array  # shape [N, L, 7]
  T_cpf_tm1_cpf_t: jax.Array  # shape [N, L, 7]
  mask: jax.Array  # shape [N, L]
  old_log_probs: jax.Array  # shape [N, K]
  advantages: jax.Array  # shape [N]


def group_inputs(batch: dict[str, jax.Array]) -> group_sampler.GroupInputs:
  """Head trajectories of a batch of L+1 poses (floor at z = 0)."""
  Ts = batch["T_world_cpf"]
  return group_sampler.GroupInputs(
      Ts_world_cpf=Ts, floor_z=jnp.zeros(Ts.shape[:1], Ts.dtype),
      mask=batch["mask"])


def clean_condition(batch: dict[str, jax.Array]) -> sampler_lib.Condition:
  """The unperturbed condition of frames 1..L, (B, L, 7) each."""
  inputs = group_inputs(batch)
  return sampler_lib.sampler_condition(inputs.Ts_world_cpf, inputs.floor_z)


def data_batch(batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """Frames 1..L of a batch as the denoising loss reads them, conditioned
  like the rollouts (`clean_condition`): (B, L, …) each, betas (B, 16)."""
  clean = clean_condition(batch)
  out = {"betas": batch["betas"], "mask": batch["mask"][:, 1:],
         "T_world_cpf": clean.T_world_cpf,
         "T_cpf_tm1_cpf_t": clean.T_cpf_tm1_cpf_t}
  out.update({k: batch[k][:, 1:] for k in ("body_quats",) + DATA_FIELDS
              if k in batch})
  return out


def score_samples(samples: jax.Array, batch: dict[str, jax.Array],
                  body: body_model.BodyModel, config: rewards_lib.RewardConfig,
                  score_fn: ScoreFn | None, critic_params: Any
                  ) -> tuple[dict[str, jax.Array], posing.PosedMotion]:
  """Sub-rewards of samples against the ground truth and clean trajectory.

  Args:
    samples: (B, G, L, d) final samples.
    batch: the batch (L+1 poses).
    body: the body model.
    config: reward options.
    score_fn: the critic, or None.
    critic_params: its parameters.

  Returns:
    ({name: (B, G)} raw sub-rewards, posed samples (B, G, L, …)).
  """
  num_seq, group = samples.shape[:2]
  clean = clean_condition(batch)
  mask = batch["mask"][:, 1:].astype(bool)  # shape [B, L]
  T_world_cpf = jnp.broadcast_to(batch["T_world_cpf"][:, None, 1:],
                                 samples.shape[:3] + (7,))
  pred = posing.pose_sample(samples, T_world_cpf, body)
  gt = posing.window_ground_truth(batch, body)
  gt = posing.PosedMotion(body_rotmats=gt.body_rotmats[:, None],
                               joints=gt.joints[:, None])
  errors = rewards_lib.joint_errors(pred, gt, mask[:, None], config)
  scores = None
  if score_fn is not None and config.weight_vis != 0:
    flat = lambda x: jnp.broadcast_to(  # pylint: disable=unnecessary-lambda-assignment
        x[:, None], (num_seq, group) + x.shape[1:]).reshape(
            (num_seq * group,) + x.shape[1:])
    scores = score_fn(
        critic_params, samples.reshape((num_seq * group,) + samples.shape[2:]),
        jax.tree.map(flat, clean), flat(mask)).reshape(num_seq, group)
  return rewards_lib.rewards_from_errors(errors, config, scores), pred


def rollout_and_score(apply_fn: sampler_lib.ApplyFn, params: Any,
                      batch: dict[str, jax.Array], key: jax.Array,
                      config: UpdateConfig, body: body_model.BodyModel,
                      packed_dim: int, score_fn: ScoreFn | None,
                      critic_params: Any
                      ) -> tuple[group_sampler.GroupRollout, jax.Array,
                                 dict[str, jax.Array]]:
  """Steps 1–2 on this device's sequences: G rollouts each with the current
  (old) policy, their sub-rewards, the group-normalised advantages (B, G)
  and the group diagnostics (this device's; `pmean` gives the global ones).
  """
  num_seq = batch["T_world_cpf"].shape[0]
  rollout = group_sampler.sample_groups(
      apply_fn, params, group_inputs(batch),
      mesh_lib.example_keys(key, num_seq), packed_dim=packed_dim,
      config=config.group, sampler_config=config.sampler)
  rewards, posed = score_samples(rollout.samples, batch, body, config.reward,
                                 score_fn, critic_params)
  advantages, _ = rewards_lib.advantages(
      rewards, config.reward, axis_name=DATA_AXIS,
      baseline_size=config.group.baseline_size)
  metrics = diagnostics.group_diagnostics(
      rewards, advantages, posed.joints, rollout.mask, config.reward,
      config.zero_advantage_threshold)
  return rollout, advantages, metrics


def training_examples(rollout: group_sampler.GroupRollout,
                      advantages: jax.Array, steps: jax.Array) -> _Examples:
  """The rollouts as N = B·G examples with the log-probs of the trained
  `steps` (K,)."""
  num_ex = advantages.size
  group = advantages.shape[1]
  flat = lambda x: x.reshape((num_ex,) + x.shape[2:])  # pylint: disable=unnecessary-lambda-assignment
  return _Examples(
      xs=flat(rollout.xs),
      T_world_cpf=flat(rollout.condition.T_world_cpf),
      T_cpf_tm1_cpf_t=flat(rollout.condition.T_cpf_tm1_cpf_t),
      mask=jnp.repeat(rollout.mask, group, axis=0),
      old_log_probs=flat(rollout.log_probs)[:, steps],
      advantages=flat(advantages))


def minibatch(examples: _Examples, j: jax.Array, num_minibatches: int,
              num_microbatches: int) -> _Examples:
  """Minibatch j: the examples with local (≡ global) index ≡ j mod M, split
  into micro-batches (leading axis `num_microbatches`)."""
  def pick(x):
    x = x.reshape((x.shape[0] // num_minibatches, num_minibatches)
                  + x.shape[1:])
    x = jax.lax.dynamic_index_in_dim(x, j, axis=1, keepdims=False)
    return x.reshape((num_microbatches, -1) + x.shape[1:])
  return jax.tree.map(pick, examples)


def objective_loss(apply_fn: sampler_lib.ApplyFn, config: UpdateConfig,
                   weights: np.ndarray, params: Any, ref_params: Any,
                   steps: jax.Array, anchor: jax.Array | None, ex: _Examples
                   ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The clipped objective (and KL) of examples, re-scoring the trained
  `steps` with `params`; `weights` (S,) of every step
  (`objective.step_weights`); plus anchor_beta × the mean KL at the
  untrained `anchor` steps (None: no anchor)."""
  use_kl = config.objective.kl_beta > 0
  condition = sampler_lib.Condition(ex.T_world_cpf, ex.T_cpf_tm1_cpf_t)
  log_probs, kl = objective.rescore_steps(
      apply_fn, params, ref_params if use_kl else None, ex.xs, condition,
      ex.mask, steps, config.sampler, remat=config.objective.remat)
  w = jnp.asarray(weights)[steps]  # shape [K]
  loss, stats = objective.grpo_loss(w * log_probs, w * ex.old_log_probs,
                                    ex.advantages, kl if use_kl else None,
                                    config.objective)
  stats["log_ratio_abs_max"] = jnp.max(jnp.abs(log_probs - ex.old_log_probs))
  if anchor is not None:
    _, anchor_kl = objective.rescore_steps(
        apply_fn, params, ref_params, ex.xs, condition, ex.mask, anchor,
        config.sampler, remat=config.objective.remat,
        kl_fields=config.objective.anchor_field_names)
    stats["anchor_kl"] = jax.lax.stop_gradient(jnp.mean(anchor_kl))
    loss = loss + config.objective.anchor_beta * jnp.mean(anchor_kl)
  return loss, stats


# data_term(params, update index u) -> (loss, grads): this device's share of
# the denoising loss on the batch's ground truth (`objective.data_beta`).
DataTerm = Callable[[Any, jax.Array], tuple[jax.Array, Any]]


def inner_updates(state: state_lib.TrainState, examples: _Examples,
                  order: jax.Array, steps: jax.Array,
                  anchor: jax.Array | None, ref_params: Any,
                  apply_fn: sampler_lib.ApplyFn,
                  tx: optax.GradientTransformation, config: UpdateConfig,
                  weights: np.ndarray, data_term: DataTerm | None = None
                  ) -> tuple[state_lib.TrainState, dict[str, jax.Array]]:
  """Step 3: one optimiser update per entry of `order` (minibatch indices,
  epochs concatenated), each on its minibatch's gradient accumulated over
  micro-batches, plus `objective.data_beta` × `data_term`'s, averaged over
  devices.

  Returns:
    (state, stats per update: (U,) each).
  """
  grad_fn = jax.value_and_grad(
      lambda params, ex: objective_loss(apply_fn, config, weights, params,
                                        ref_params, steps, anchor, ex),
      has_aux=True)

  def update(state, u_j):
    u, j = u_j
    micro = minibatch(examples, j, config.num_minibatches,
                      config.num_microbatches)
    params = jax.lax.pcast(state.params, DATA_AXIS, to="varying")
    grads, loss, stats = mesh_lib.accumulate_gradients(grad_fn, params, micro)
    grads, loss = jax.lax.pmean((grads, loss), DATA_AXIS)
    stats = mesh_lib.reduce_stats(stats, axis_name=DATA_AXIS)
    if data_term is not None:
      data_loss, data_grads = jax.lax.pmean(data_term(params, u), DATA_AXIS)
      stats["data_loss"] = data_loss
      stats["data_grad_norm"] = optax.tree.norm(data_grads)
      stats["policy_grad_norm"] = optax.tree.norm(grads)
      beta = config.objective.data_beta
      grads = jax.tree.map(lambda g, d: g + beta * d, grads, data_grads)
      loss = loss + beta * data_loss
    new_state, opt_stats = state_lib.apply_gradients(state, grads, loss, tx)
    return new_state, {"loss": loss, **stats, **opt_stats}

  return jax.lax.scan(update, state, (jnp.arange(order.shape[0]), order))


def update_metrics(per_update: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """The iteration's view of its updates' stats (U,): means (`*_min` /
  `*_max`: extremes; the non-finite counters: the last; `skipped`: any), and
  `first_*` values of the first update, taken before any parameter change
  (ratio = 1 there, so `first_policy_loss` = −mean(A), `first_kl` = 0 on
  iteration 0)."""
  counters = ("nonfinite_steps", "nonfinite_in_a_row")
  metrics = mesh_lib.reduce_stats(
      {k: v for k, v in per_update.items()
       if k not in counters and k != "skipped"}, axis=0)
  metrics.update({k: per_update[k][-1] for k in counters})
  metrics["skipped"] = jnp.max(per_update["skipped"])
  metrics["first_log_ratio_abs_max"] = per_update["log_ratio_abs_max"][0]
  metrics["first_kl"] = per_update["kl"][0]
  metrics["first_policy_loss"] = per_update["policy_loss"][0]
  if "anchor_kl" in per_update:
    metrics["first_anchor_kl"] = per_update["anchor_kl"][0]
  if "grad_cosine" in per_update:
    # This iteration's first gradient against the previous iteration's last
    # one: other rollouts, so agreement is signal, not shared noise.
    metrics["first_grad_cosine"] = per_update["grad_cosine"][0]
  return metrics


def make_train_step(apply_fn: sampler_lib.ApplyFn,
                    tx: optax.GradientTransformation,
                    mesh: jax.sharding.Mesh, config: UpdateConfig,
                    body: body_model.BodyModel, packed_dim: int,
                    score_fn: ScoreFn | None = None,
                    schedule: optax.Schedule | None = None,
                    data_loss_fn: mesh_lib.LossFn | None = None,
                    ) -> Callable[..., tuple[state_lib.TrainState,
                                             dict[str, jax.Array]]]:
  """The jitted GRPO iteration (module docstring).

  Args:
    apply_fn: the denoiser (`sampler.ApplyFn`).
    tx: the optimiser the state was created with.
    mesh: the mesh; batches sharded with `mesh.data_sharded`, the state and
      the extra parameters replicated.
    config: static options.
    body: the body model (rewards).
    packed_dim: d.
    score_fn: the perceptual critic, or None (needs reward.weight_vis = 0).
    schedule: learning-rate schedule, reported as `learning_rate`.
    data_loss_fn: the denoiser's per-device training loss
      (`train.denoiser_loss.make_loss_fn`), needed when
      objective.data_beta > 0.

  Returns:
    step(state, batch, ref_params=None, critic_params=None) -> (state,
    metrics): `batch` holds L+1 poses per sequence (`BATCH_FIELDS`);
    `ref_params` is the frozen base policy (needed when kl_beta or
    anchor_beta > 0 and the KL's reference is the base; with "old" the
    iteration's own parameters are the reference);
    `critic_params` the critic's (needed with a critic). The state is
    donated. Metrics are () float32, replicated: the group diagnostics and
    `update_metrics`, the number of trained steps and the learning rate.
  """
  config.validate()
  if config.reward.weight_vis != 0 and score_fn is None:
    raise ValueError("grpo: reward.weight_vis > 0 needs a critic "
                     "(config.critic_checkpoint)")
  use_data = config.objective.data_beta > 0
  if use_data and data_loss_fn is None:
    raise ValueError("grpo: objective.data_beta > 0 needs the denoiser's "
                     "training loss (data_loss_fn)")
  kl_to_old = config.objective.kl_reference == "old"
  trainable = objective.trainable_steps(config.sampler,
                                       config.objective.train_window)
  candidates = objective.anchor_candidates(config.sampler,
                                          config.objective.train_window)
  weights = objective.step_weights(config.sampler,
                                   config.objective.step_weighting,
                                   config.objective.train_window)
  num_updates = config.num_epochs * config.num_minibatches

  def device_step(state, batch, ref_params, critic_params):
    key = jax.random.fold_in(state.rng, state.step)
    k_sample, k_steps, k_order = jax.random.split(key, 3)
    rollout, advantages, metrics = rollout_and_score(
        apply_fn, state.params, batch, k_sample, config, body, packed_dim,
        score_fn, critic_params)
    steps = objective.select_steps(k_steps, trainable,
                                   config.objective.num_train_steps)
    anchor = None
    if config.objective.anchor_beta > 0:
      anchor = objective.select_steps(jax.random.fold_in(k_steps, 1),
                                      candidates,
                                      config.objective.anchor_steps)
    order = jnp.concatenate([
        jax.random.permutation(jax.random.fold_in(k_order, e),
                               config.num_minibatches)
        for e in range(config.num_epochs)])
    applied_before = state.step * num_updates - state.nonfinite_steps
    if kl_to_old:
      ref_params = state.params
    data_term = None
    if use_data:
      draws = config.objective.data_draws
      ground_truth = jax.tree.map(
          lambda x: jnp.concatenate([x] * draws), data_batch(batch))
      k_data = jax.random.fold_in(k_steps, 2)
      data_grad = jax.value_and_grad(data_loss_fn, has_aux=True)

      def data_term(params, u):
        keys = mesh_lib.example_keys(jax.random.fold_in(k_data, u),
                                     ground_truth["mask"].shape[0])
        (loss, _), grads = data_grad(params, ground_truth, keys)
        return loss, grads
    new_state, per_update = inner_updates(
        state, training_examples(rollout, advantages, steps), order, steps,
        anchor, ref_params, apply_fn, tx, config, weights, data_term)
    new_state = new_state.replace(step=state.step + 1)
    metrics = {**jax.lax.pmean(metrics, DATA_AXIS),
               **update_metrics(per_update),
               "num_trained_steps": jnp.float32(steps.shape[0])}
    if schedule is not None:
      metrics["learning_rate"] = schedule(applied_before)
    metrics = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), metrics)
    return new_state, metrics

  sharded = jax.shard_map(device_step, mesh=mesh,
                          in_specs=(P(), P(DATA_AXIS), P(), P()),
                          out_specs=(P(), P()))
  jitted = jax.jit(sharded, donate_argnums=(0,))

  validated: set[int] = set()

  def step(state, batch, ref_params=None, critic_params=None):
    if config.objective.needs_base_params and ref_params is None:
      raise ValueError("grpo: objective.kl_beta or anchor_beta > 0 needs "
                       "ref_params (the frozen base policy)")
    batch = {**{k: batch[k] for k in BATCH_FIELDS},
             **{k: batch[k] for k in DATA_FIELDS if use_data and k in batch}}
    num_seq, num_devices = batch["T_world_cpf"].shape[0], mesh.devices.size
    if num_seq % num_devices:
      raise ValueError(f"grpo: a batch of {num_seq} sequences does not split "
                       f"over {num_devices} devices (each holds whole groups)")
    if num_seq not in validated:  # host-side checks once per batch size
      config.validate(num_seq // num_devices)
      validated.add(num_seq)
    return jitted(state, batch, ref_params, critic_params)

  step.jitted = jitted  # For compile-count checks.
  return step
