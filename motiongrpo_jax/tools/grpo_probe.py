"""GRPO probe: where is the learning signal, per sampler step? (a measurement)

    python -m motiongrpo_jax.tools.grpo_probe --config=configs/grpo.py:bvh \
        --config.init_checkpoint=DIR [--config.critic_checkpoint=DIR] \
        [--config.x.y=…] --output=probe.json [--num_batches=N] \
        [--resample_draws=M] [--num_eval_batches=E] [--sections=…] \
        [--ascent_steps=α …] [--ascent_directions=…] [--ascent_sets=…] \
        [--shift_steps=η …] [--fit_shift=η] [--fit_updates=n …] \
        [--fit_learning_rates=lr …] [--fit_anchor=β]

Loads the base policy (`config.init_checkpoint`, as `modes/grpo`), the data
(`train/inputs.data_dir_of`: `data.data_dir`, else the checkpoint's `data/`),
and measures, with the config's group / sampler / reward options
(`grpo/update.from_config`), on the base policy θ (nothing is trained):

1. gradient: policy-gradient signal per trained sampler step (σ_k > 0, the
   first `objective.train_window` of them; 0: all). On
   each of `--num_batches` training batches (B head trajectories), two
   INDEPENDENT rollout sets of G members per trajectory are drawn
   (`group_sampler.sample_groups`, keys k_A ≠ k_B, the configured condition
   noise), scored (`update.score_samples`) and given the configured
   advantages A (`rewards.advantages`). Per set and step k,
     g_k = ∇θ −mean_n(A_n · log π_θ(x_{k+1} | x_k, c_n))
   over the N = B·G samples (`objective.rescore_steps` with steps = [k],
   log-probs reduced as `sampler.log_prob_reduction`): the gradient of the
   first update of an iteration (ratio 1, nothing clipped) without any
   per-step weight or training window. Per step ("steps" entries): t_k, σ_k,
   a_k = c_x0 − c_dir·c_xt/denom (the x̂0 coefficient of the mean
   μ = a_k·x̂0 + (c_dir/denom)·x_t), a_k/σ_k (the step's score is
   ∇θ log π = (x' − μ)ᵀ∂μ/∂θ/σ² = (a_k/σ_k)·εᵀ∂x̂0/∂θ, ε ~ N(0, I), for
   summed log-probs), "grad_norm" ‖g_k‖ (mean over both sets and the
   batches) and "cosine" cos(g_k^A, g_k^B) between the sets (mean, and
   "cosine_std" over batches). With g = μ + noise, E[g^A·g^B] = ‖μ‖² and
   E‖g‖² = ‖μ‖² + tr Σ, so the cosine estimates the fraction of ‖g‖² that
   is signal: ≈ 0 means the step's gradient is noise. The same for Σ_k g_k
   over all trained steps ("all_steps") and over the trained steps of the
   first third of the schedule, k < ⌈S/3⌉ ("first_third"). Across batches
   ("across_batches"): the cosines between different batches' all-steps
   gradients (each the mean of its two sets), mean and std over the pairs.
   Rollout noise aside, what one batch's sequences ask of θ may not be what
   other sequences ask: only the shared part can improve held-out motion.
2. resample: reward variance caused by one step's noise. One rollout per
   sequence with the CLEAN condition and recorded noise (S+1, B, L, d)
   (`sampler.rollout(noise=…)`: noise[0] = x_T, noise[k+1] = step k's ε);
   for each step k, noise[k+1] alone is redrawn `--resample_draws` (M)
   times, every other draw kept. Per step: the mean over sequences of the
   unbiased variance over the M draws of the raw hybrid reward
   (`rewards.hybrid` of `update.score_samples`) and of the MPJPE (mm²), and
   √ of the latter (mm). Exactly 0 for a step with σ = 0. The same with
   only x_T redrawn ("x_T") and with every step's ε redrawn, x_T kept
   ("all_eps"): the per-step values as a fraction of these say which steps
   decide the sample.
3. headroom, on the held-out split (`eval.split`, at most
   `--num_eval_batches` batches of `eval.batch_size` windows): G samples per
   window (G = `group.group_size`) with the clean condition; MPJPE and
   PA-MPJPE (mm, `eval.metrics`, standard convention) as: "single" (mean
   over samples), "mean_of_g" (error of the average of the G samples' joint
   positions), "best_of_g" (oracle: per window the min over samples),
   "worst_of_g" (per window the max), and the gaps best-vs-single and
   meanG-vs-single in % of single (negative = better than one sample).
   Means over valid windows (filler windows of the last batch excluded).
4. critic (only with `reward.weight_vis` > 0 and `config.critic_checkpoint`;
   `critic/checkpoint.load_score_fn`): on the training batches, one group per
   trajectory, the within-group Spearman ρ between the critic score s and
   −MPJPE, mean over groups (groups with a constant score are left out and
   counted), for plain samples (condition noise "none") and for samples with
   the configured noise; beside it, ρ between each joint sub-reward (rot,
   pos, pa_pos, vel) and −MPJPE as a reference (pos is ~1 by construction).

5. ascent (with the gradient section's all-steps gradients g_i, one per
   training batch i): move θ by ±α (parameter norm; `--ascent_steps`, one
   or more α) along a unit ascent direction d (`ascent_direction`: −g,
   −sign g as Adam's first step, or −Σg/√Σg² as its later steps) and score
   G fresh training rollouts per trajectory of batch j with fixed keys: the
   change of the mean raw hybrid reward and of the MPJPE vs θ, for d from
   batch i and j = i ("same"), j ≠ i ("other"), and d from the sum of every
   batch's gradient except j's ("pooled", ≥ 3 batches): whether averaging
   batches makes a step that helps sequences it has not seen. "symmetric" is half
   the +α minus −α change (the slope; curvature cancels).

6. shift: what step 0's mean could buy, per sequence. On each training
   batch, one x_T per sequence and G members with their own ε give
   advantages A (as the gradient section); u = mean_g A_g·ε0_g is the
   natural-gradient direction of step 0's mean μ0 (π = N(μ0, σ0²)), scaled
   to unit RMS. Shifting μ0 by η·σ0·u equals adding η·u to every member's
   ε0, so G fresh members per sequence (common random numbers) are scored
   at each η (`--shift_steps`) with the same x_T and with another x_T: the
   change of the mean raw hybrid reward and MPJPE vs η = 0, paired per
   sequence. A gain here that parameter steps (section 5) do not reach says
   the network cannot yet express the shift; a gain that survives another
   x_T is a shift the condition alone asks for.

7. fit: can the network learn section 6's shift, and does it carry over to
   sequences it was not fitted on? Per training batch, section 6's
   estimate gives each sequence one x_T and a target for step 0's mean,
   μ0(θ) + η·σ0·u (`--fit_shift`). From θ, Adam (`--fit_learning_rates`)
   regresses μ0 onto the targets (mean of (μ0 − target)²/σ0²: the natural-
   gradient step in the output space, a trust region in the policy's own
   metric); after each count of `--fit_updates` the fitted θ' is scored as
   section 5 scores θ + α·d (the same keys, fresh x_T and members): on the
   batch it was fitted on ("same") and, fitted on every other batch's
   targets together, on the batch left out ("pooled", >= 2 batches). Per
   count: the changes of reward and MPJPE vs θ, ‖θ' − θ‖ ("distance") and
   the share of θ's loss removed ("fit_fraction", 1 − loss/loss at θ).
   With `--fit_anchor` β > 0 the fit also pays β × the KL to θ at 4 of
   the untrained steps (σ > 0) per update, in turn, on one rollout of θ
   per sequence: whether holding the other steps lets step 0's fit help.

The report is ONE JSON line on stdout (also written to `--output`): the
sections above (`steps`: one entry per sampler step, gradient fields only on
trained steps), the config's key options (`config`: group, condition noise,
reward, objective sections, data sizes, checkpoints), the model size, the
device and the wall time per section. Non-finite numbers are null.
Everything repeated is jitted once per shape (the step index is traced);
per-step gradients are ravelled and reduced on the fly (memory: six
parameter-sized vectors), and `iteration.num_microbatches` splits the
gradient's samples into chunks.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from motiongrpo_jax import body as body_lib
from motiongrpo_jax.body import model as body_model
from motiongrpo_jax.critic import evaluation as critic_eval
from motiongrpo_jax.diffusion import sampler as sampler_lib
from motiongrpo_jax.eval import metrics as metrics_lib
from motiongrpo_jax.eval import posing
from motiongrpo_jax.grpo import group_sampler
from motiongrpo_jax.grpo import objective
from motiongrpo_jax.grpo import rewards as rewards_lib
from motiongrpo_jax.grpo import update

SECTIONS = ("gradient", "resample", "headroom", "critic", "ascent", "shift",
            "fit")
# Independent random streams of the probe, folded into PRNGKey(config.seed).
(_GRADIENT_STREAM, _RESAMPLE_STREAM, _HEADROOM_STREAM, _CRITIC_STREAM,
 _ASCENT_STREAM, _SHIFT_STREAM, _FIT_STREAM) = (11, 12, 13, 14, 15, 16, 17)
# Directions of the ascent section: the raw policy gradient; its sign (the
# direction of Adam's first update, m̂/√v̂ = g/|g| per coordinate); and
# Adam's later updates, Σg/√Σg² over the batches the direction comes from
# (the sign for one batch).
ASCENT_DIRECTIONS = ("gradient", "sign", "adam")
# Which batches a direction comes from and is scored on (section 5).
ASCENT_SETS = ("same", "other", "pooled")
# Which batches section 7's fit uses: the scored batch's own targets, or
# every other batch's together.
FIT_SETS = ("same", "pooled")


# ----------------------------------------------------------------------------
# Schedule constants.


def schedule_table(config: sampler_lib.SamplerConfig, train_window: int = 0
                   ) -> list[dict[str, Any]]:
  """Per sampler step: index, t, σ, a (x̂0 coefficient of μ), a/σ, trained
  (`objective.trainable_steps` with `train_window`).

  a_k = c_x0 − c_dir·c_xt/denom and a/σ (`objective.score_scale`, float64);
  a/σ is None where σ = 0.
  """
  c = sampler_lib.step_coefficients(config)
  a = c.c_x0 - c.c_dir * c.c_xt / c.denom
  scale = objective.score_scale(config)
  trained = set(objective.trainable_steps(config, train_window).tolist())
  return [{"step": k, "t": int(c.t[k]), "sigma": float(c.sigma[k]),
           "a": float(a[k]),
           "a_over_sigma": float(scale[k]) if c.sigma[k] > 0 else None,
           "trained": k in trained} for k in range(len(c.t))]


def first_third_steps(config: sampler_lib.SamplerConfig,
                      train_window: int = 0) -> np.ndarray:
  """Trained steps of the first third of the schedule, k < ⌈S/3⌉."""
  steps = objective.trainable_steps(config, train_window)
  return steps[steps < math.ceil(config.num_steps / 3)]


# ----------------------------------------------------------------------------
# The probe's jitted pieces.


class RolloutSet(NamedTuple):
  """One rollout set, flattened to N = B·G samples (n = b·G + g)."""
  xs: jax.Array  # shape [N, S+1, L, d]
  T_world_cpf: jax.Array  # shape [N, L, 7]
  T_cpf_tm1_cpf_t: jax.Array  # shape [N, L, 7]
  mask: jax.Array  # shape [N, L]
  advantages: jax.Array  # shape [N]


class FitTargets(NamedTuple):
  """Section 7's regression targets of B sequences (concatenate to pool)."""
  x_T: jax.Array  # shape [B, L, d]
  target: jax.Array  # shape [B, L, d] μ0 + η·σ0·u
  T_world_cpf: jax.Array  # shape [B, L, 7]
  T_cpf_tm1_cpf_t: jax.Array  # shape [B, L, 7]
  mask: jax.Array  # shape [B, L]
  xs: jax.Array  # shape [B, S+1, L, d] one rollout of θ (the anchor's states)


def _sequence_keys(key: jax.Array, num: int) -> jax.Array:
  return jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.arange(num))


def _pairwise_variance(x: jax.Array, axis: int = 1) -> jax.Array:
  """Unbiased variance along `axis` as Σ_{i<j}(x_i − x_j)²/(M(M−1)): exactly
  0 when the values are equal."""
  x = jnp.moveaxis(x, axis, -1)
  m = x.shape[-1]
  diff = x[..., :, None] - x[..., None, :]
  return jnp.sum(jnp.square(diff), axis=(-1, -2)) / (2.0 * m * (m - 1))


class Probe:
  """The measurements of one policy (module docstring), jitted once each.

  Args:
    apply_fn: the denoiser (`sampler.ApplyFn`).
    config: the GRPO static options (`grpo/update.from_config`).
    body: the body model.
    packed_dim: d.
    score_fn: the critic (`update.ScoreFn`) or None.
    critic_params: its parameters.
    resample_draws: M of the resampling measurement (>= 2).
    num_microbatches: chunks of the gradient's samples (memory only).
  """

  def __init__(self, apply_fn: sampler_lib.ApplyFn,
               config: update.UpdateConfig, body: body_model.BodyModel,
               packed_dim: int, score_fn: update.ScoreFn | None = None,
               critic_params: Any = None, resample_draws: int = 4,
               num_microbatches: int = 1):
    if resample_draws < 2:
      raise ValueError(f"--resample_draws={resample_draws}: expected >= 2")
    if config.reward.weight_vis > 0 and score_fn is None:
      raise ValueError("reward.weight_vis > 0 needs a critic: give "
                       "--config.critic_checkpoint or set "
                       "--config.reward.weight_vis=0")
    self.apply_fn, self.config, self.body = apply_fn, config, body
    self.packed_dim = packed_dim
    self.score_fn, self.critic_params = score_fn, critic_params
    self.draws = resample_draws
    self.num_microbatches = max(1, num_microbatches)
    self.sampler = group_sampler.rollout_config(config.sampler)
    window = config.objective.train_window
    self.table = schedule_table(self.sampler, window)
    self.trained = objective.trainable_steps(self.sampler, window)
    self.first_third = first_third_steps(self.sampler, window)
    # Joint rewards only (critic scores come from `score_fn` directly).
    self._joint_reward = dataclasses.replace(config.reward, weight_vis=0.0)
    self._rollout_set = jax.jit(self._rollout_set_fn)
    self._grad = jax.jit(self._grad_fn)
    self._pair = jax.jit(lambda a, b: (jnp.vdot(a, a), jnp.vdot(b, b),
                                       jnp.vdot(a, b)))
    self._resample = jax.jit(self._resample_fn)
    self._headroom = jax.jit(self._headroom_fn)
    self._critic = jax.jit(self._critic_fn, static_argnums=(4,))
    self._moved_rewards = jax.jit(self._moved_rewards_fn)
    self._shift = jax.jit(self._shift_fn)
    self._shift_targets = jax.jit(self._shift_targets_fn)
    self._fit_loss_jit = jax.jit(self._fit_loss)
    self._fit_update = jax.jit(self._fit_update_fn)

  # --- helpers -------------------------------------------------------------

  def _mpjpe(self, joints: jax.Array, batch: Mapping[str, jax.Array],
             mask: jax.Array) -> jax.Array:
    """(B, G) MPJPE (mm) of posed joints (B, G, L, J, 3)."""
    gt = posing.window_ground_truth(batch, self.body).joints[:, None]
    gt = jnp.broadcast_to(gt, joints.shape)
    safe = mask | ~jnp.any(mask, axis=-1, keepdims=True)
    return metrics_lib.mpjpe(joints, gt,
                             jnp.broadcast_to(safe[:, None], joints.shape[:3]))

  def _groups(self, params, batch, key, group_config=None):
    """G training rollouts per trajectory (`group_sampler.sample_groups`),
    with the config's group options unless `group_config` is given."""
    return group_sampler.sample_groups(
        self.apply_fn, params, update.group_inputs(batch),
        _sequence_keys(key, batch["T_world_cpf"].shape[0]),
        packed_dim=self.packed_dim, config=group_config or self.config.group,
        sampler_config=self.sampler)

  def _score(self, samples, batch, critic_params):
    """Raw sub-rewards (B, G) of samples (B, G, L, d), and posed joints."""
    return update.score_samples(samples, dict(batch), self.body,
                                self.config.reward, self.score_fn,
                                critic_params)

  def _noise_rollouts(self, params, batch, noise, critic_params):
    """Rollouts with the clean condition and given draws, noise (S+1, B, M,
    L, d) (noise[0] = x_T, noise[k+1] = step k's ε): raw sub-rewards,
    hybrid reward and MPJPE (mm), each (B, M)."""
    mask = batch["mask"][:, 1:].astype(bool)  # shape [B, L]
    num_noise, num_seq, m, seq_len, dim = noise.shape
    rep = lambda x: jnp.repeat(x, m, axis=0)  # pylint: disable=unnecessary-lambda-assignment
    out = sampler_lib.rollout(
        self.apply_fn, params, jax.tree.map(rep, update.clean_condition(batch)),
        noise=noise.reshape(num_noise, num_seq * m, seq_len, dim),
        mask=rep(mask), config=self.sampler)
    samples = out.xs[-1].reshape(num_seq, m, seq_len, dim)
    rewards, posed = self._score(samples, batch, critic_params)
    return (rewards, rewards_lib.hybrid(rewards, self.config.reward),
            self._mpjpe(posed.joints, batch, mask))

  # --- 1. gradient signal -----------------------------------------------------

  def _rollout_set_fn(self, params, batch, key, critic_params):
    num_seq = batch["T_world_cpf"].shape[0]
    group = self.config.group.group_size
    out = self._groups(params, batch, key)
    rewards, _ = self._score(out.samples, batch, critic_params)
    adv = rewards_lib.advantages(
        rewards, self.config.reward,
        baseline_size=self.config.group.baseline_size)[0]
    flat = lambda x: x.reshape((num_seq * group,) + x.shape[2:])  # pylint: disable=unnecessary-lambda-assignment
    return RolloutSet(
        xs=flat(out.xs), T_world_cpf=flat(out.condition.T_world_cpf),
        T_cpf_tm1_cpf_t=flat(out.condition.T_cpf_tm1_cpf_t),
        mask=jnp.repeat(out.mask, group, axis=0), advantages=flat(adv))

  def rollout_set(self, params, batch, key) -> RolloutSet:
    """G rollouts per sequence with the configured noise, and advantages."""
    return self._rollout_set(params, batch, key, self.critic_params)

  def _grad_fn(self, params, rset: RolloutSet, step):
    def loss(p):
      log_probs, _ = objective.rescore_steps(
          self.apply_fn, p, None, rset.xs,
          sampler_lib.Condition(rset.T_world_cpf, rset.T_cpf_tm1_cpf_t),
          rset.mask, step[None], self.sampler, remat=False)
      return -jnp.mean(rset.advantages * log_probs[:, 0])
    return ravel_pytree(jax.grad(loss)(params))[0]

  def step_gradient(self, params, rset: RolloutSet, step: int) -> jax.Array:
    """Flat g_k = ∇θ −mean_n(A_n·log π_θ(x_{k+1}|x_k, c_n)) (float32)."""
    step = jnp.asarray(step, jnp.int32)
    num = rset.advantages.shape[0]
    chunks = self.num_microbatches if num % self.num_microbatches == 0 else 1
    if chunks == 1:
      return self._grad(params, rset, step)
    size = num // chunks
    total = None
    for i in range(chunks):
      part = jax.tree.map(lambda x, i=i: x[i * size:(i + 1) * size], rset)
      g = self._grad(params, part, step)
      total = g if total is None else total + g
    return total / chunks

  def gradient_signal(self, params, set_a: RolloutSet, set_b: RolloutSet
                      ) -> tuple[dict[str, Any], jax.Array]:
    """Norms and cosines of per-step gradients of two rollout sets.

    Returns:
      ({"steps": {k: {"norm_a", "norm_b", "cosine"}}, "all_steps": {…},
       "first_third": {…}}, cosine NaN where a norm is 0; the batch's flat
      all-steps gradient, both sets averaged, for `across_batches`).
    """
    def stats(a, b):
      aa, bb, ab = (float(v) for v in self._pair(a, b))
      na, nb = math.sqrt(aa), math.sqrt(bb)
      cos = ab / (na * nb) if na > 0 and nb > 0 else math.nan
      return {"norm_a": na, "norm_b": nb, "cosine": cos}

    per_step = {}
    sums = {"all_steps": [None, None], "first_third": [None, None]}
    first = set(int(k) for k in self.first_third)
    for k in self.trained:
      k = int(k)
      ga = self.step_gradient(params, set_a, k)
      gb = ga if set_b is set_a else self.step_gradient(params, set_b, k)
      per_step[k] = stats(ga, gb)
      for name in ("all_steps", "first_third"):
        if name == "first_third" and k not in first:
          continue
        acc = sums[name]
        acc[0] = ga if acc[0] is None else acc[0] + ga
        acc[1] = gb if acc[1] is None else acc[1] + gb
    out: dict[str, Any] = {"steps": per_step}
    for name, (a, b) in sums.items():
      out[name] = (stats(a, b) if a is not None else
                   {"norm_a": math.nan, "norm_b": math.nan,
                    "cosine": math.nan})
    a, b = sums["all_steps"]
    return out, 0.5 * (a + b)

  # --- 2. resampling variance ---------------------------------------------

  def _resample_fn(self, params, batch, key, select, critic_params):
    mask = batch["mask"][:, 1:].astype(bool)  # shape [B, L]
    num_seq, seq_len = mask.shape
    m, dim = self.draws, self.packed_dim
    num_noise = self.sampler.num_steps + 1
    k_base, k_fresh = jax.random.split(key)
    base = jax.random.normal(k_base, (num_noise, num_seq, 1, seq_len, dim))
    fresh = jax.random.normal(k_fresh, (num_noise, num_seq, m, seq_len, dim))
    noise = jnp.where(select[:, None, None, None, None], fresh, base)
    _, hybrid, mpjpe = self._noise_rollouts(params, batch, noise,
                                            critic_params)  # [B, M] each
    return {"reward_var": _pairwise_variance(hybrid),
            "mpjpe_var_mm2": _pairwise_variance(mpjpe),
            "valid": jnp.any(mask, axis=-1)}

  def resample_variance(self, params, batch, key) -> dict[str, Any]:
    """{"steps": [one entry per step k], "x_T": entry, "all_eps": entry},
    entry = {"reward_var", "mpjpe_var_mm2", "valid"}: (B,) arrays; the same
    base noise for every entry."""
    num_noise = self.sampler.num_steps + 1

    def run(select):
      return self._resample(params, batch, key, jnp.asarray(select),
                            self.critic_params)

    steps = []
    for k in range(self.sampler.num_steps):
      select = np.zeros(num_noise, bool)
      select[k + 1] = True
      steps.append(run(select))
    only_x_T = np.zeros(num_noise, bool)
    only_x_T[0] = True
    return {"steps": steps, "x_T": run(only_x_T), "all_eps": run(~only_x_T)}

  # --- 3. headroom -----------------------------------------------------------

  def _headroom_fn(self, params, batch, key):
    clean = update.clean_condition(batch)
    mask = batch["mask"][:, 1:].astype(bool)  # shape [B, L]
    num_seq, seq_len = mask.shape
    group = self.config.group.group_size
    rep = lambda x: jnp.repeat(x, group, axis=0)  # pylint: disable=unnecessary-lambda-assignment
    out = sampler_lib.rollout(self.apply_fn, params, jax.tree.map(rep, clean),
                              key=key, mask=rep(mask),
                              packed_dim=self.packed_dim, config=self.sampler)
    samples = out.xs[-1].reshape(num_seq, group, seq_len, self.packed_dim)
    T_world_cpf = jnp.broadcast_to(batch["T_world_cpf"][:, None, 1:],
                                   samples.shape[:3] + (7,))
    joints = posing.pose_sample(samples, T_world_cpf, self.body).joints
    gt = posing.window_ground_truth(batch, self.body).joints
    valid = jnp.any(mask, axis=-1)
    safe = mask | ~valid[:, None]
    gt_g = jnp.broadcast_to(gt[:, None], joints.shape)
    mask_g = jnp.broadcast_to(safe[:, None], joints.shape[:3])
    mean_joints = jnp.mean(joints, axis=1)
    return {
        "mpjpe": metrics_lib.mpjpe(joints, gt_g, mask_g),
        "pampjpe": metrics_lib.pampjpe(joints, gt_g, mask_g),
        "mpjpe_mean_of_g": metrics_lib.mpjpe(mean_joints, gt, safe),
        "pampjpe_mean_of_g": metrics_lib.pampjpe(mean_joints, gt, safe),
        "valid": valid,
    }

  def headroom(self, params, batch, key) -> dict[str, jax.Array]:
    """Per window: "mpjpe"/"pampjpe" (B, G) of each sample (mm),
    "*_mean_of_g" (B,) of the samples' mean joints, "valid" (B,)."""
    return self._headroom(params, batch, key)

  # --- 4. critic ------------------------------------------------------------

  def _critic_fn(self, params, critic_params, batch, key, noise_kind):
    group_config = dataclasses.replace(
        self.config.group, noise=dataclasses.replace(self.config.group.noise,
                                                     kind=noise_kind))
    num_seq = batch["T_world_cpf"].shape[0]
    out = self._groups(params, batch, key, group_config)
    samples = out.samples
    group = samples.shape[1]
    rewards, posed = update.score_samples(samples, dict(batch), self.body,
                                          self._joint_reward, None, None)
    mask = out.mask
    clean = update.clean_condition(batch)
    flat = lambda x: jnp.repeat(x, group, axis=0)  # pylint: disable=unnecessary-lambda-assignment
    scores = self.score_fn(
        critic_params, samples.reshape((num_seq * group,) + samples.shape[2:]),
        jax.tree.map(flat, clean), flat(mask)).reshape(num_seq, group)
    values = {n: rewards[n] for n in rewards_lib.JOINT_REWARD_NAMES}
    values["critic"] = scores
    values["mpjpe"] = self._mpjpe(posed.joints, batch, mask)
    return values

  def critic_ranks(self, params, batch, key, noise_kind: str
                   ) -> dict[str, np.ndarray]:
    """Per group: Spearman ρ (B,) of the critic score and of each joint
    sub-reward against −MPJPE, for samples drawn with `noise_kind`."""
    if self.score_fn is None:
      raise ValueError("critic_ranks: no critic")
    values = jax.device_get(self._critic(params, self.critic_params, batch,
                                         key, noise_kind))
    target = -np.asarray(values["mpjpe"], np.float64)
    names = ("critic",) + rewards_lib.JOINT_REWARD_NAMES
    return {n: critic_eval.spearman_rows(np.asarray(values[n]), target)
            for n in names}

  # --- 5. ascent -------------------------------------------------------------

  def _moved_rewards_fn(self, params, direction, alpha, batch, key,
                        critic_params):
    flat, unravel = ravel_pytree(params)
    out = self._groups(unravel(flat + alpha * direction), batch, key)
    rewards, posed = self._score(out.samples, batch, critic_params)
    hybrid = rewards_lib.hybrid(rewards, self.config.reward)  # shape [B, G]
    return (jnp.mean(hybrid),
            jnp.mean(self._mpjpe(posed.joints, batch, out.mask)))

  def moved_rewards(self, params, direction: jax.Array, alpha: float, batch,
                    key) -> tuple[float, float]:
    """Mean raw hybrid reward and MPJPE (mm) of G training rollouts per
    trajectory of `batch` from θ + α·direction (flat, like ravel(θ))."""
    reward, mpjpe = self._moved_rewards(params, direction,
                                        jnp.float32(alpha), batch, key,
                                        self.critic_params)
    return float(reward), float(mpjpe)


  # --- 6. step-0 mean shift --------------------------------------------------

  def _group_noise(self, key, num_seq, seq_len, group):
    """x_T, one per sequence, shape [1, B, G, L, d] (shared by the G
    members)."""
    x = jax.random.normal(key, (1, num_seq, 1, seq_len, self.packed_dim))
    return jnp.broadcast_to(x, (1, num_seq, group, seq_len, self.packed_dim))

  def _natural_direction(self, params, batch, noise, critic_params):
    """u (B, L, d): mean_g A_g·ε0_g over G members rolled out with `noise`
    (S+1, B, G, L, d), scaled to unit RMS per sequence: the natural gradient
    of step 0's mean."""
    rewards, _, _ = self._noise_rollouts(params, batch, noise, critic_params)
    adv = rewards_lib.advantages(
        rewards, self.config.reward,
        baseline_size=self.config.group.baseline_size)[0]  # shape [B, G]
    u = jnp.mean(adv[:, :, None, None] * noise[1], axis=1)
    rms = jnp.sqrt(jnp.mean(u * u, axis=(1, 2), keepdims=True))
    return u / jnp.maximum(rms, 1e-30)

  def _shift_fn(self, params, batch, key, etas, critic_params):
    mask = batch["mask"][:, 1:].astype(bool)  # shape [B, L]
    num_seq, seq_len = mask.shape
    group, dim = self.config.group.group_size, self.packed_dim
    k_init, k_other, k_est, k_fresh = jax.random.split(key, 4)
    eps_shape = (self.sampler.num_steps, num_seq, group, seq_len, dim)
    est = jnp.concatenate([self._group_noise(k_init, num_seq, seq_len, group),
                           jax.random.normal(k_est, eps_shape)])
    u = self._natural_direction(params, batch, est, critic_params)
    fresh = jax.random.normal(k_fresh, eps_shape)

    def moved(x_init):
      def one(eta):
        noise = jnp.concatenate([x_init, fresh.at[0].add(eta * u[:, None])])
        _, hybrid, mpjpe = self._noise_rollouts(params, batch, noise,
                                                critic_params)
        return jnp.mean(hybrid, axis=1), jnp.mean(mpjpe, axis=1)
      return jax.lax.map(one, etas)  # ([E, B], [E, B])

    other = self._group_noise(k_other, num_seq, seq_len, group)
    return {"same_x_T": moved(est[:1]), "other_x_T": moved(other),
            "valid": jnp.any(mask, axis=-1)}

  def mean_shift(self, params, batch, key, etas: Sequence[float]
                 ) -> dict[str, Any]:
    """{"same_x_T" | "other_x_T": (reward, MPJPE), each (E, B) means over G
    fresh members at each η of `etas` (η = 0 first), "valid": (B,)}."""
    return self._shift(params, batch, key, jnp.asarray(etas, jnp.float32),
                       self.critic_params)

  # --- 7. fit step 0's means to their shift ----------------------------------

  def _step0_mean(self, params, x_T, condition, mask):
    """Step 0's mean μ0 (B, L, d) of x_T (B, L, d), and its σ0 constants."""
    c = jax.tree.map(lambda v: v[0], sampler_lib.step_constants(self.sampler))
    x0 = sampler_lib.predict_x0(self.apply_fn, params, x_T, c.t, condition,
                                mask, self.sampler)
    return sampler_lib.update_mean(x_T, x0, c), c

  def _shift_targets_fn(self, params, batch, key, eta, critic_params):
    mask = batch["mask"][:, 1:].astype(bool)  # shape [B, L]
    num_seq, seq_len = mask.shape
    group = self.config.group.group_size
    k_init, k_est = jax.random.split(key)
    eps_shape = (self.sampler.num_steps, num_seq, group, seq_len,
                 self.packed_dim)
    est = jnp.concatenate([self._group_noise(k_init, num_seq, seq_len, group),
                           jax.random.normal(k_est, eps_shape)])
    u = self._natural_direction(params, batch, est, critic_params)
    condition = update.clean_condition(batch)
    x_T = est[0, :, 0]
    mean, c = self._step0_mean(params, x_T, condition, mask)
    states = sampler_lib.rollout(self.apply_fn, params, condition,
                                 noise=est[:, :, 0], mask=mask,
                                 config=self.sampler).xs
    return FitTargets(x_T=x_T, target=mean + eta * c.sigma * u,
                      T_world_cpf=condition.T_world_cpf,
                      T_cpf_tm1_cpf_t=condition.T_cpf_tm1_cpf_t, mask=mask,
                      xs=jnp.swapaxes(states, 0, 1))

  def shift_targets(self, params, batch, key, eta: float) -> FitTargets:
    """Step 0's means of one x_T per sequence, moved by η·σ0·u along their
    natural gradient u (section 6's estimate): what the fit regresses on."""
    return self._shift_targets(params, batch, key, jnp.float32(eta),
                               self.critic_params)

  def _fit_loss(self, params, targets: FitTargets, anchor=None,
                ref_params=None, anchor_beta=0.0):
    """Mean over valid scalars of (μ0_θ − target)²/σ0²; with `anchor` (K,)
    steps, plus anchor_beta × the mean KL to `ref_params` at those steps of
    the targets' rollouts (`objective.rescore_steps`, as GRPO's anchor)."""
    condition = sampler_lib.Condition(targets.T_world_cpf,
                                      targets.T_cpf_tm1_cpf_t)
    mean, c = self._step0_mean(params, targets.x_T, condition, targets.mask)
    sq = jnp.square(mean - targets.target) * c.inv_var
    valid = targets.mask[..., None]
    count = jnp.maximum(jnp.sum(valid), 1) * mean.shape[-1]
    loss = jnp.sum(jnp.where(valid, sq, 0.0)) / count
    if anchor is not None:
      _, kl = objective.rescore_steps(self.apply_fn, params, ref_params,
                                      targets.xs, condition, targets.mask,
                                      anchor, self.sampler)
      loss = loss + anchor_beta * jnp.mean(kl)
    return loss

  def _fit_update_fn(self, params, opt_state, targets, learning_rate, anchor,
                     ref_params, anchor_beta):
    loss, grads = jax.value_and_grad(self._fit_loss)(
        params, targets, anchor, ref_params, anchor_beta)
    updates, opt_state = optax.scale_by_adam().update(grads, opt_state)
    params = optax.apply_updates(
        params, jax.tree.map(lambda u: -learning_rate * u, updates))
    return params, opt_state, loss

  def fit_shift(self, params, targets: FitTargets, updates: Sequence[int],
                learning_rate: float, anchor_beta: float = 0.0,
                anchor_steps: int = 4) -> list[dict[str, Any]]:
    """Adam on `_fit_loss` from θ (with anchor_beta > 0, update n anchors
    `anchor_steps` of the untrained steps, in turn); after each count in
    `updates` (ascending): {"updates", "delta" (flat θ' − θ), "distance"
    ‖θ' − θ‖, "fit_fraction" 1 − loss/loss(θ) of the step-0 term, the share
    of θ's loss removed}."""
    flat0 = ravel_pytree(params)[0]
    opt_state = optax.scale_by_adam().init(params)
    lr, beta = jnp.float32(learning_rate), jnp.float32(anchor_beta)
    candidates = objective.anchor_candidates(self.sampler, 1)
    loss0 = float(self._fit_loss_jit(params, targets))
    out, current = [], params
    for n in range(1, max(updates) + 1):
      anchor = None
      if anchor_beta > 0:
        first = (n - 1) * anchor_steps
        anchor = jnp.asarray(candidates[(first + np.arange(anchor_steps))
                                        % candidates.size])
      current, opt_state, _ = self._fit_update(current, opt_state, targets,
                                               lr, anchor, params, beta)
      if n in updates:
        delta = ravel_pytree(current)[0] - flat0
        loss = float(self._fit_loss_jit(current, targets))
        out.append({"updates": n, "delta": delta,
                    "distance": float(jnp.linalg.norm(delta)),
                    "fit_fraction": 1.0 - loss / loss0})
    return out


def ascent_direction(gradient: jax.Array, kind: str,
                     squares: jax.Array | None = None) -> jax.Array:
  """Unit ascent direction (`ASCENT_DIRECTIONS`) of a flat loss gradient,
  a sum Σg over batches; `squares` is their Σg² ("adam" only; default g²)."""
  if kind == "gradient":
    d = -gradient
  elif kind == "sign" or squares is None:
    d = -jnp.sign(gradient)
  else:
    d = -jnp.where(squares > 0, gradient / jnp.sqrt(squares), 0.0)
  return d / jnp.maximum(jnp.linalg.norm(d), 1e-30)


def ascent_pairs(num_batches: int, sets: Sequence[str]
                 ) -> list[tuple[int, int, str]]:
  """(direction's batch i, scored batch j, set) of section 5; i = −1 for
  "pooled" (every batch but j; only with >= 3 batches, else left out)."""
  pairs = []
  for i in range(num_batches):
    for j in range(num_batches):
      name = "same" if i == j else "other"
      if name in sets:
        pairs.append((i, j, name))
  if "pooled" in sets and num_batches >= 3:
    pairs += [(-1, j, "pooled") for j in range(num_batches)]
  return pairs


def summarize_ascent(changes: Mapping[str, Sequence[dict[str, float]]]
                     ) -> dict[str, Any]:
  """{set: {field: mean, field_stderr: standard error}} over the pairs."""
  out = {}
  for name, entries in changes.items():
    out[name] = {"pairs": len(entries)}
    for field in (entries[0] if entries else {}):
      v = np.asarray([e[field] for e in entries], np.float64)
      out[name][field] = float(v.mean())
      out[name][field + "_stderr"] = (float(v.std(ddof=1) / math.sqrt(len(v)))
                                      if len(v) > 1 else math.nan)
  return out


def _ci95(v: np.ndarray) -> float:
  """Half-width of the normal 95 % interval of the mean of v (NaN for < 2)."""
  return (1.96 * float(v.std(ddof=1)) / math.sqrt(v.size) if v.size > 1
          else math.nan)


def summarize_shift(results: Sequence[Mapping[str, Any]],
                    etas: Sequence[float]) -> dict[str, Any]:
  """Per x_T set and η > 0: the mean change vs η = 0 over valid sequences of
  the reward and MPJPE (mm, and % of η = 0's), with a 95 % normal interval
  half-width ("…_ci95") over sequences."""
  out: dict[str, Any] = {}
  valid = np.concatenate([np.asarray(r["valid"], bool) for r in results])
  for name in ("same_x_T", "other_x_T"):
    reward = np.concatenate([np.asarray(r[name][0]) for r in results], 1)
    mpjpe = np.concatenate([np.asarray(r[name][1]) for r in results], 1)
    reward, mpjpe = reward[:, valid], mpjpe[:, valid]
    rows = {}
    for e in range(1, len(etas)):
      dr, dm = reward[e] - reward[0], mpjpe[e] - mpjpe[0]
      rows[str(etas[e])] = {
          "reward": float(dr.mean()), "reward_ci95": _ci95(dr),
          "mpjpe": float(dm.mean()), "mpjpe_ci95": _ci95(dm),
          "mpjpe_percent": 100 * float(dm.mean() / mpjpe[0].mean())}
    out[name] = {"base_reward": float(reward[0].mean()),
                 "base_mpjpe": float(mpjpe[0].mean()),
                 "sequences": int(valid.sum()), "steps": rows}
  return out


# ----------------------------------------------------------------------------
# Aggregation into the report.


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
  v = np.asarray([x for x in values if np.isfinite(x)], np.float64)
  if not v.size:
    return math.nan, math.nan
  return float(v.mean()), float(v.std())


def summarize_gradient(results: Sequence[dict[str, Any]],
                       steps: Iterable[int]) -> dict[str, Any]:
  """Per step (and the two sums): mean norm over sets and batches, cosine
  mean and std over batches."""
  def one(entries):
    norms = [0.5 * (e["norm_a"] + e["norm_b"]) for e in entries]
    cos_mean, cos_std = _mean_std([e["cosine"] for e in entries])
    return {"grad_norm": float(np.mean(norms)), "cosine": cos_mean,
            "cosine_std": cos_std}
  out: dict[str, Any] = {"steps": {int(k): one([r["steps"][int(k)]
                                                for r in results])
                                   for k in steps}}
  for name in ("all_steps", "first_third"):
    out[name] = one([r[name] for r in results])
  return out


def across_batches(gradients: Sequence[jax.Array]) -> dict[str, Any]:
  """Cosines between different batches' gradients (flat, each the mean of
  its two rollout sets): mean and std over the pairs, and their number.

  Within a batch, the two sets' cosine says how much of the gradient is not
  rollout noise; across batches (other sequences), how much of it is shared
  by other sequences: only that part can improve held-out motion.
  """
  cosines = []
  for i, a in enumerate(gradients):
    for b in gradients[i + 1:]:
      na, nb = float(jnp.linalg.norm(a)), float(jnp.linalg.norm(b))
      if na > 0 and nb > 0:
        cosines.append(float(jnp.vdot(a, b)) / (na * nb))
  mean, std = _mean_std(cosines)
  return {"cosine": mean, "cosine_std": std, "pairs": len(cosines)}


def summarize_resample(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
  """{"steps": [entry per step], "x_T": entry, "all_eps": entry}, entry =
  {"reward_var", "mpjpe_var_mm2", "mpjpe_std_mm"}: means over the valid
  sequences of every batch (`Probe.resample_variance` results)."""
  def one(entries):
    valid = np.concatenate([np.asarray(e["valid"]) for e in entries])
    out = {}
    for name in ("reward_var", "mpjpe_var_mm2"):
      v = np.concatenate([np.asarray(e[name], np.float64)
                          for e in entries])[valid]
      out[name] = float(np.mean(v)) if v.size else math.nan
    out["mpjpe_std_mm"] = math.sqrt(out["mpjpe_var_mm2"])
    return out
  num_steps = len(results[0]["steps"])
  return {"steps": [one([r["steps"][k] for r in results])
                    for k in range(num_steps)],
          "x_T": one([r["x_T"] for r in results]),
          "all_eps": one([r["all_eps"] for r in results])}


def summarize_headroom(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
  """Single / mean-of-G / best-of-G / worst-of-G means over valid windows,
  and the best and mean-of-G gaps to single in %."""
  valid = np.concatenate([np.asarray(r["valid"]) for r in results])
  out: dict[str, Any] = {"windows": int(valid.sum())}
  for metric in ("mpjpe", "pampjpe"):
    per = np.concatenate([np.asarray(r[metric], np.float64)
                          for r in results])[valid]  # shape [W, G]
    mean_g = np.concatenate([np.asarray(r[f"{metric}_mean_of_g"], np.float64)
                             for r in results])[valid]
    single = float(np.mean(per))
    best = float(np.mean(np.min(per, axis=1)))
    mean_of_g = float(np.mean(mean_g))
    out[metric] = {
        "single": single, "mean_of_g": mean_of_g, "best_of_g": best,
        "worst_of_g": float(np.mean(np.max(per, axis=1))),
        "best_gap_percent": 100.0 * (best - single) / single,
        "mean_gap_percent": 100.0 * (mean_of_g - single) / single,
    }
  return out


def summarize_critic(results: Mapping[str, Sequence[dict[str, np.ndarray]]]
                     ) -> dict[str, Any]:
  """{condition: {name: {"spearman", "groups", "undefined_groups"}}}."""
  out = {}
  for condition, entries in results.items():
    out[condition] = {}
    for name in entries[0]:
      rho = np.concatenate([e[name] for e in entries])
      ok = np.isfinite(rho)
      out[condition][name] = {
          "spearman": float(np.mean(rho[ok])) if ok.any() else math.nan,
          "groups": int(ok.sum()), "undefined_groups": int((~ok).sum())}
  return out


def step_report(probe: Probe, gradient: dict[str, Any] | None,
                resample: dict[str, Any] | None) -> list[dict[str, Any]]:
  """One entry per sampler step: the schedule constants, and the gradient
  (trained steps) and resampling measurements where present."""
  rows = []
  for row in probe.table:
    row = dict(row)
    k = row["step"]
    if gradient is not None and k in gradient["steps"]:
      row.update(gradient["steps"][k])
    if resample is not None:
      row.update(resample["steps"][k])
    rows.append(row)
  return rows


def _finite(value: Any) -> Any:
  """JSON-safe: NaN/inf → None, numpy scalars → Python."""
  if isinstance(value, dict):
    return {str(k): _finite(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_finite(v) for v in value]
  if isinstance(value, (np.floating, float)):
    value = float(value)
    return value if math.isfinite(value) else None
  if isinstance(value, np.integer):
    return int(value)
  if isinstance(value, np.bool_):
    return bool(value)
  return value


# ----------------------------------------------------------------------------
# The whole probe on a config.


def _key_options(config) -> dict[str, Any]:
  out = {name: config[name].to_dict() for name in
         ("group", "condition_noise", "reward", "objective")}
  out.update({
      "variant": config.variant, "seed": config.seed,
      "init_checkpoint": config.init_checkpoint,
      "critic_checkpoint": config.critic_checkpoint,
      "data": {"seq_len": config.data.seq_len,
               "batch_size": config.data.batch_size,
               "train_split": config.data.train_split,
               "data_dir": config.data.data_dir},
      "eval": {"split": config.eval.split,
               "batch_size": config.eval.batch_size},
      "body": config.body.model})
  return out


def run(config, *, num_batches: int = 2, resample_draws: int = 4,
        num_eval_batches: int = 2, sections: Sequence[str] = SECTIONS,
        ascent_steps: Sequence[float] = (0.03,),
        ascent_directions: Sequence[str] = ASCENT_DIRECTIONS,
        ascent_sets: Sequence[str] = ASCENT_SETS,
        shift_steps: Sequence[float] = (0.1, 0.4), fit_shift: float = 0.4,
        fit_updates: Sequence[int] = (10, 30, 100),
        fit_learning_rates: Sequence[float] = (1e-5,),
        fit_anchor: float = 0.0, data_workdir: str = "",
        log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
  """Loads the base policy and data of a grpo config and runs the probe.

  Args:
    config: a `configs/grpo.py` config with `init_checkpoint` set.
    num_batches: training batches of sections 1, 2, 4, 5, 6 and 7.
    resample_draws: M of section 2.
    num_eval_batches: held-out batches of section 3 (0: the whole split).
    sections: which of `SECTIONS` to run (critic only with a critic;
      ascent also runs the gradient section, whose gradients it follows).
    ascent_steps: the α of section 5, in parameter-norm units.
    ascent_directions: which of `ASCENT_DIRECTIONS` section 5 follows.
    ascent_sets: which of `ASCENT_SETS` section 5 scores.
    shift_steps: the η > 0 of section 6, in units of σ0 per coordinate.
    fit_shift: the η of section 7's targets.
    fit_updates: after how many Adam updates section 7 scores the fit.
    fit_learning_rates: the Adam learning rates of section 7.
    fit_anchor: β of section 7's anchor on the untrained steps (0: none).
    data_workdir: where `WORKDIR/data` is looked for / built when neither
      `data.data_dir` nor the checkpoint's `data/` holds a dataset (default:
      the checkpoint directory).
    log: progress messages.

  Returns:
    The report (module docstring).
  """
  # pylint: disable=g-import-not-at-top
  from motiongrpo_jax.critic import checkpoint as critic_checkpoint
  from motiongrpo_jax.data import pipeline
  from motiongrpo_jax.train import checkpoints
  from motiongrpo_jax.train import inputs
  from motiongrpo_jax.train import mesh as mesh_lib
  # pylint: enable=g-import-not-at-top
  t_start = time.monotonic()
  unknown = [s for s in sections if s not in SECTIONS]
  if unknown:
    raise ValueError(f"--sections: unknown {unknown}; expected from "
                     f"{SECTIONS}")
  if not config.init_checkpoint:
    raise ValueError("--config.init_checkpoint is empty: name the base "
                     "policy (a pretrain or grpo workdir, a model directory "
                     "or an EgoAllo checkpoint)")
  if not shift_steps or any(e <= 0 for e in shift_steps):
    raise ValueError(f"--shift_steps={list(shift_steps)}: expected one or "
                     f"more η > 0")
  if num_batches < 1:
    raise ValueError(f"--num_batches={num_batches}: expected >= 1")
  if "fit" in sections and (fit_shift <= 0 or fit_anchor < 0
                            or not fit_updates
                            or min(fit_updates) < 1
                            or not fit_learning_rates
                            or min(fit_learning_rates) <= 0):
    raise ValueError(f"--fit_shift={fit_shift}, --fit_updates="
                     f"{list(fit_updates)}, --fit_learning_rates="
                     f"{list(fit_learning_rates)}, --fit_anchor={fit_anchor}:"
                     " expected η > 0, counts >= 1, learning rates > 0 and "
                     "an anchor >= 0")
  for flag, given, allowed in (("ascent_directions", ascent_directions,
                                ASCENT_DIRECTIONS),
                               ("ascent_sets", ascent_sets, ASCENT_SETS)):
    if not given or any(v not in allowed for v in given):
      raise ValueError(f"--{flag}={','.join(given)}: expected a subset of "
                       f"{allowed}")
  static = update.from_config(config)
  base = config.init_checkpoint
  body = body_lib.from_config(config.body)
  model, params = checkpoints.load_denoiser(base)
  packed_dim = model.config.packed_dim
  hands = model.config.include_hands
  apply_fn = sampler_lib.model_apply_fn(model)
  critic_path = config.critic_checkpoint
  score_fn, critic_params = None, None
  if static.reward.weight_vis > 0:
    if not critic_path:
      raise ValueError("reward.weight_vis > 0 needs --config.critic_checkpoint"
                       " (or set --config.reward.weight_vis=0)")
    score_fn, critic_params = critic_checkpoint.load_score_fn(
        critic_path, config.data.fps, body, hands)
  probe = Probe(apply_fn, static, body, packed_dim, score_fn, critic_params,
                resample_draws=resample_draws,
                num_microbatches=static.num_microbatches)
  data_dir = inputs.data_dir_of(config, data_workdir or base, base)
  mesh = mesh_lib.make_mesh(jax.devices()[:1])
  fields = update.BATCH_FIELDS
  batches = []
  if any(s in sections for s in ("gradient", "resample", "critic", "ascent",
                                 "shift", "fit")):
    iterator = inputs.train_iterator(config, str(data_dir), mesh, hands,
                                     seq_len=config.data.seq_len + 1)
    for _ in range(num_batches):
      batch = next(iterator)
      batches.append({k: jnp.asarray(batch[k]) for k in fields})
  key = jax.random.PRNGKey(config.seed)
  seconds: dict[str, float] = {"load": time.monotonic() - t_start}
  report: dict[str, Any] = {
      "tool": "grpo_probe", "config": _key_options(config),
      "model": {"num_params": int(sum(x.size for x in
                                      jax.tree.leaves(params))),
                "packed_dim": packed_dim, "include_hands": hands},
      "device": str(jax.devices()[0].device_kind),
      "data_dir": str(data_dir), "num_batches": num_batches,
      "resample_draws": resample_draws, "group_size": static.group.group_size,
      "sampler_steps": static.sampler.num_steps,
      "log_prob_reduction": static.sampler.log_prob_reduction,
      "trained_steps": [int(k) for k in probe.trained],
      "first_third_steps": [int(k) for k in probe.first_third],
  }

  gradient = None
  if "gradient" in sections or "ascent" in sections:
    t0 = time.monotonic()
    stream = jax.random.fold_in(key, _GRADIENT_STREAM)
    results, batch_gradients = [], []
    for i, batch in enumerate(batches):
      k = jax.random.fold_in(stream, i)
      set_a = probe.rollout_set(params, batch, jax.random.fold_in(k, 0))
      set_b = probe.rollout_set(params, batch, jax.random.fold_in(k, 1))
      stats, batch_gradient = probe.gradient_signal(params, set_a, set_b)
      results.append(stats)
      batch_gradients.append(batch_gradient)
      log(f"gradient: batch {i + 1}/{len(batches)}")
    gradient = summarize_gradient(results, probe.trained)
    report["all_steps"] = gradient["all_steps"]
    report["across_batches"] = across_batches(batch_gradients)
    report["first_third"] = gradient["first_third"]
    seconds["gradient"] = time.monotonic() - t0

  resample = None
  if "resample" in sections:
    t0 = time.monotonic()
    stream = jax.random.fold_in(key, _RESAMPLE_STREAM)
    results = [probe.resample_variance(params, batch,
                                       jax.random.fold_in(stream, i))
               for i, batch in enumerate(batches)]
    resample = summarize_resample(jax.device_get(results))
    report["resample"] = {"x_T": resample["x_T"],
                          "all_eps": resample["all_eps"]}
    seconds["resample"] = time.monotonic() - t0
    log("resample: done")
  report["steps"] = step_report(probe, gradient, resample)

  if "headroom" in sections:
    t0 = time.monotonic()
    stream = jax.random.fold_in(key, _HEADROOM_STREAM)
    dataset = pipeline.eval_dataset(
        str(data_dir), split=config.eval.split,
        window_len=config.data.seq_len + 1, batch_size=config.eval.batch_size,
        hands=hands)
    results = []
    for i, batch in enumerate(dataset):
      if num_eval_batches and i == num_eval_batches:
        break
      batch = {k: jnp.asarray(batch[k]) for k in fields}
      results.append(jax.device_get(probe.headroom(
          params, batch, jax.random.fold_in(stream, i))))
    if not results:
      raise ValueError(f"split {config.eval.split!r} of {data_dir} gave no "
                       f"windows of {config.data.seq_len + 1} poses")
    report["headroom"] = {"split": config.eval.split,
                          "group_size": static.group.group_size,
                          **summarize_headroom(results)}
    seconds["headroom"] = time.monotonic() - t0
    log("headroom: done")

  if "critic" in sections and score_fn is not None:
    t0 = time.monotonic()
    stream = jax.random.fold_in(key, _CRITIC_STREAM)
    kinds = {"plain": "none", "noisy": static.group.noise.kind}
    results = {name: [probe.critic_ranks(params, batch,
                                         jax.random.fold_in(stream, i), kind)
                      for i, batch in enumerate(batches)]
               for name, kind in kinds.items()}
    report["critic"] = {"noise_kind": kinds, **summarize_critic(results)}
    seconds["critic"] = time.monotonic() - t0

  if "ascent" in sections or "fit" in sections:
    # Sections 5 and 7 score moved parameters with these keys, against θ's
    # rollouts with the same keys.
    t0 = time.monotonic()
    stream = jax.random.fold_in(key, _ASCENT_STREAM)
    keys = [jax.random.fold_in(stream, j) for j in range(len(batches))]
    zero = jnp.zeros_like(ravel_pytree(params)[0])
    base_values = [probe.moved_rewards(params, zero, 0.0, batch, k)
                   for batch, k in zip(batches, keys)]
    seconds["baseline"] = time.monotonic() - t0
  if "ascent" in sections:
    t0 = time.monotonic()
    report["ascent"] = {
        "steps": list(ascent_steps),
        "base_reward": float(np.mean([r for r, _ in base_values])),
        "base_mpjpe": float(np.mean([m for _, m in base_values]))}
    total = sum(batch_gradients)
    squares = sum(g * g for g in batch_gradients)
    for kind in ascent_directions:
      per_step = {}
      for alpha in ascent_steps:
        changes = {name: [] for name in ascent_sets}
        for i, j, name in ascent_pairs(len(batches), ascent_sets):
          if i >= 0:
            direction = ascent_direction(batch_gradients[i], kind)
          else:
            direction = ascent_direction(total - batch_gradients[j], kind,
                                         squares - batch_gradients[j] ** 2)
          r0, m0 = base_values[j]
          rp, mp = probe.moved_rewards(params, direction, alpha, batches[j],
                                       keys[j])
          rm, mm = probe.moved_rewards(params, direction, -alpha, batches[j],
                                       keys[j])
          changes[name].append({
              "reward_symmetric": 0.5 * (rp - rm), "reward_plus": rp - r0,
              "reward_minus": rm - r0, "mpjpe_symmetric": 0.5 * (mp - mm),
              "mpjpe_plus": mp - m0, "mpjpe_minus": mm - m0})
        per_step[str(alpha)] = summarize_ascent(changes)
        log(f"ascent ({kind}): α = {alpha} done")
      report["ascent"][kind] = per_step
    seconds["ascent"] = time.monotonic() - t0
  if "shift" in sections:
    t0 = time.monotonic()
    stream = jax.random.fold_in(key, _SHIFT_STREAM)
    etas = [0.0] + list(shift_steps)
    results = [jax.device_get(probe.mean_shift(
        params, batch, jax.random.fold_in(stream, i), etas))
               for i, batch in enumerate(batches)]
    report["shift"] = summarize_shift(results, etas)
    seconds["shift"] = time.monotonic() - t0
    log("shift: done")
  if "fit" in sections:
    t0 = time.monotonic()
    stream = jax.random.fold_in(key, _FIT_STREAM)
    targets = [probe.shift_targets(params, batch,
                                   jax.random.fold_in(stream, i), fit_shift)
               for i, batch in enumerate(batches)]
    fits = [(j, "same", targets[j]) for j in range(len(batches))]
    if len(batches) >= 2:
      fits += [(j, "pooled", jax.tree.map(
          lambda *x: jnp.concatenate(x),
          *[t for i, t in enumerate(targets) if i != j]))
               for j in range(len(batches))]
    report["fit"] = {"shift": fit_shift, "updates": list(fit_updates),
                     "anchor": fit_anchor,
                     "base_reward": float(np.mean([r for r, _ in base_values])),
                     "base_mpjpe": float(np.mean([m for _, m in base_values]))}
    for lr in fit_learning_rates:
      changes = {n: {name: [] for name in FIT_SETS} for n in fit_updates}
      for j, name, fit_targets in fits:
        for entry in probe.fit_shift(params, fit_targets, sorted(fit_updates),
                                     lr, fit_anchor):
          r, m = probe.moved_rewards(params, entry["delta"], 1.0, batches[j],
                                     keys[j])
          changes[entry["updates"]][name].append({
              "reward": r - base_values[j][0], "mpjpe": m - base_values[j][1],
              "distance": entry["distance"],
              "fit_fraction": entry["fit_fraction"]})
        log(f"fit: learning rate {lr}, {name} batch {j + 1} done")
      report["fit"][str(lr)] = {
          str(n): summarize_ascent({k: v for k, v in sets.items() if v})
          for n, sets in changes.items()}
    seconds["fit"] = time.monotonic() - t0
  seconds["total"] = time.monotonic() - t_start
  report["wall_seconds"] = seconds
  return _finite(report)


# ----------------------------------------------------------------------------
# Command line.


def main(argv: Sequence[str]) -> None:
  # pylint: disable=g-import-not-at-top
  from absl import flags
  from absl import logging
  # pylint: enable=g-import-not-at-top
  del argv
  f = flags.FLAGS
  report = run(f.config, num_batches=f.num_batches,
               resample_draws=f.resample_draws,
               num_eval_batches=f.num_eval_batches,
               ascent_steps=f.ascent_steps,
               ascent_directions=f.ascent_directions,
               ascent_sets=f.ascent_sets, shift_steps=f.shift_steps,
               fit_shift=f.fit_shift, fit_updates=f.fit_updates,
               fit_learning_rates=f.fit_learning_rates,
               fit_anchor=f.fit_anchor,
               sections=[s.strip() for s in f.sections.split(",") if s.strip()],
               data_workdir=f.data_workdir, log=logging.info)
  line = json.dumps(report, sort_keys=True)
  if f.output:
    path = pathlib.Path(f.output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(line + "\n")
  print(line, flush=True)


def _define_flags() -> None:
  # pylint: disable=g-import-not-at-top
  from absl import flags
  from ml_collections import config_flags
  # pylint: enable=g-import-not-at-top
  config_flags.DEFINE_config_file(
      "config", None, "GRPO config, e.g. configs/grpo.py:bvh.",
      lock_config=True)
  flags.DEFINE_string("output", "", "Also write the JSON line here.")
  flags.DEFINE_integer("num_batches", 2, "Training batches (gradient, "
                       "resample, critic, ascent, shift, fit sections).")
  flags.DEFINE_integer("resample_draws", 4, "Draws M per resampled step.")
  flags.DEFINE_integer("num_eval_batches", 2, "Held-out batches of the "
                       "headroom section (0: the whole split).")
  flags.DEFINE_multi_float("ascent_steps", [0.03], "α of the ascent "
                           "section (repeat for several): the step along "
                           "each unit direction, in parameter-norm units.")
  flags.DEFINE_list("ascent_directions", list(ASCENT_DIRECTIONS),
                    f"Ascent directions, a subset of {ASCENT_DIRECTIONS}.")
  flags.DEFINE_list("ascent_sets", list(ASCENT_SETS),
                    f"Ascent sets, a subset of {ASCENT_SETS}.")
  flags.DEFINE_multi_float("shift_steps", [0.1, 0.4], "η of the shift "
                           "section (repeat for several): step 0's mean moves "
                           "by η·σ0 per coordinate along its natural "
                           "gradient.")
  flags.DEFINE_float("fit_shift", 0.4, "η of the fit section's targets "
                     "(step 0's means moved by η·σ0 along their natural "
                     "gradient).")
  flags.DEFINE_multi_integer("fit_updates", [10, 30, 100], "Adam updates "
                             "after which the fit section scores the fit "
                             "(repeat for several).")
  flags.DEFINE_multi_float("fit_learning_rates", [1e-5], "Adam learning "
                           "rates of the fit section (repeat for several).")
  flags.DEFINE_float("fit_anchor", 0.0, "β of the fit section's KL anchor "
                     "on the untrained steps of the targets' rollouts (4 of "
                     "them per update, in turn; 0: none).")
  flags.DEFINE_string("sections", ",".join(SECTIONS),
                      f"Comma-separated subset of {SECTIONS}.")
  flags.DEFINE_string("data_workdir", "", "Where WORKDIR/data is looked for "
                      "when neither data.data_dir nor the checkpoint's data/ "
                      "holds a dataset (default: the checkpoint).")
  flags.mark_flags_as_required(["config"])


if __name__ == "__main__":
  # pylint: disable=g-import-not-at-top
  from motiongrpo_jax import cli
  # pylint: enable=g-import-not-at-top
  _define_flags()
  cli.run(main)
