"""GRPO climbs a reward with a known optimum, through the real iteration.

The policy is the smallest one the sampler can run: x̂0 = b, a learned packed
state (L, d), at every step but the last, deterministic one (t = 1 → 0),
where x̂0 = x_t (as a trained denoiser nearly does), so that the sample is
the last stochastic state and the score-function gradient is exact. Samples
scatter around b and the joint rewards (against one ground-truth motion, the
same for every group) are highest near b = the ground truth. The whole `update.make_train_step` runs:
group sampling, body posing, rewards, advantages, re-scoring, the clipped
objective, AdamW. Starting from identity rotations, the training reward must
rise far beyond its iteration-to-iteration noise. With the advantage's sign,
the log-prob's sign or the ratio flipped, it falls by ~0.1–0.2 instead.
"""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

import grpo_tiny as tiny
from motiongrpo_jax import body as body_lib
from motiongrpo_jax.diffusion import sampler
from motiongrpo_jax.grpo import group_sampler
from motiongrpo_jax.grpo import objective
from motiongrpo_jax.grpo import rewards
from motiongrpo_jax.grpo import update
from motiongrpo_jax.model import packing
from motiongrpo_jax.train import mesh as mesh_lib
from motiongrpo_jax.train import state as state_lib

ITERATIONS = 40
CONFIG = update.UpdateConfig(
    group=group_sampler.GroupConfig(group_size=8, shared_initial_noise=False),
    sampler=sampler.SamplerConfig(num_steps=3, update="ddim",
                                  log_prob_reduction="mean",
                                  rotation_projection="polar"),
    reward=rewards.RewardConfig(weight_pa_pos=0.0, weight_vel=0.0),
    objective=objective.ObjectiveConfig(clip_range=0.2),
    num_minibatches=2)


def apply_fn(params, x_t, t, T_world_cpf, T_cpf_tm1_cpf_t, mask=None):
  del T_world_cpf, T_cpf_tm1_cpf_t, mask
  return jnp.where(t[:, None, None] > 1, params["b"][None], x_t)


def run_training(config=CONFIG, iterations=ITERATIONS):
  """Per-iteration mean training rewards {name: (iterations,)}."""
  mesh = mesh_lib.make_mesh(jax.devices()[:1])
  batch = {k: v[[0, 0, 0, 0]] for k, v in tiny.batch().items()}
  seq_len = batch["mask"].shape[1] - 1
  identity = packing.pack(jnp.zeros((seq_len, 16)),
                          jnp.broadcast_to(jnp.eye(3), (seq_len, 21, 3, 3)),
                          jnp.zeros((seq_len, 21)))
  tx = state_lib.make_optimizer(ml_collections.ConfigDict(dict(
      learning_rate=2e-2, warmup_steps=0, weight_decay=0.0,
      grad_clip_norm=0.0, b1=0.9, b2=0.999, eps=1e-8,
      ema_decay=0.0, schedule="constant", trainable="")))
  state = mesh_lib.put_replicated(mesh, state_lib.create(
      {"b": identity}, tx, jax.random.PRNGKey(0)))
  step = update.make_train_step(apply_fn, tx, mesh, config,
                                body_lib.builtin_body(), packing.DIM_NO_HANDS)
  batch = mesh_lib.global_batch(mesh, batch)
  history = []
  for _ in range(iterations):
    state, metrics = step(state, batch)
    history.append(jax.device_get(metrics))
  return {k: np.array([h[k] for h in history]) for k in history[0]}


def climb(series, window=8):
  """(rise of the mean of the last vs the first `window` iterations,
  its standard error from the iteration-to-iteration noise)."""
  first, last = series[:window], series[-window:]
  noise = np.std(np.diff(series)) / np.sqrt(2)  # per-iteration noise
  return last.mean() - first.mean(), noise * np.sqrt(2 / window)


def test_training_reward_rises_far_beyond_its_noise():
  history = run_training()
  assert np.all(history["skipped"] == 0)
  # The hybrid reward the advantages are computed from (equal weights).
  hybrid = 0.5 * (history["reward/rot_mean"] + history["reward/pos_mean"])
  rise, stderr = climb(hybrid)
  # Measured: +0.17 with a standard error of 0.003 (identity start: 0.31).
  assert rise > 10 * stderr and rise > 0.05, (rise, stderr, hybrid)
