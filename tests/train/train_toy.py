"""A tiny stand-in training problem for the train/ tests (and their subprocesses).

A two-layer MLP regresses y from x + noise, where the noise is drawn from the
per-example keys, so that exact resume needs the step-folded RNG; the data
come from a grain pipeline (shuffled, repeated), so that exact resume needs
the iterator state. Examples whose index is in `nan_indices` carry a NaN
input, giving a non-finite loss.

Run as a script (`python train_toy.py WORKDIR NUM_STEPS OUT.npz [SLEEP_S]`) it
trains in WORKDIR, resuming from its checkpoints, and writes the final params.
"""

from __future__ import annotations

import sys
import time

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from motiongrpo_jax.train import loop
from motiongrpo_jax.train import mesh as mesh_lib
from motiongrpo_jax.train import state as state_lib

NUM_EXAMPLES = 40
BATCH_SIZE = 8


def optimizer_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      learning_rate=3e-2, warmup_steps=2, weight_decay=1e-4, grad_clip_norm=1.0,
      b1=0.9, b2=0.999, eps=1e-8, ema_decay=0.0, schedule="constant",
      trainable=""))


def loop_config(**overrides) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict(dict(
      num_steps=6, log_every_steps=1, eval_every_steps=0,
      checkpoint_every_steps=2, keep_checkpoints=3, async_checkpointing=False,
      max_consecutive_nonfinite=3, progress_every_seconds=0.0))
  config.update(overrides)
  return config


class _Example:
  """Index → example (deterministic); optional sleep to slow the pipeline."""

  def __init__(self, nan_indices=(), sleep_s=0.0):
    self._nan = frozenset(nan_indices)
    self._sleep_s = sleep_s

  def __call__(self, i):
    if self._sleep_s:
      time.sleep(self._sleep_s)
    rng = np.random.default_rng(int(i))
    x = rng.normal(size=(4,)).astype(np.float32)
    if int(i) in self._nan:
      x[0] = np.nan
    y = np.stack([np.sin(x[:2].sum()), np.cos(x[2:].sum())]).astype(np.float32)
    return {"x": x, "y": y, "index": np.int32(i)}


def make_iterator(nan_indices=(), sleep_s=0.0, batch_size=BATCH_SIZE):
  """A fresh grain iterator of process-local batches (same stream each time)."""
  ds = (grain.MapDataset.range(NUM_EXAMPLES).shuffle(seed=7).repeat()
        .map(_Example(nan_indices, sleep_s)).batch(batch_size))
  return iter(ds.to_iter_dataset(
      grain.ReadOptions(num_threads=1, prefetch_buffer_size=2)))


def loss_fn(params, batch, keys):
  noise = jax.vmap(lambda k: jax.random.normal(k, (4,)))(keys)
  hidden = jnp.tanh((batch["x"] + 0.1 * noise) @ params["w1"] + params["b1"])
  pred = hidden @ params["w2"]
  loss = jnp.mean(jnp.square(pred - batch["y"]))
  return loss, {"mean_abs_error": jnp.mean(jnp.abs(pred - batch["y"]))}


def init_params(seed=0):
  k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
  return {"w1": jax.random.normal(k1, (4, 16)) * 0.5, "b1": jnp.zeros((16,)),
          "w2": jax.random.normal(k2, (16, 2)) * 0.5}


def make_init_fn(tx, seed=0):
  return lambda: state_lib.create(init_params(seed), tx, jax.random.PRNGKey(seed))


def train(workdir, num_steps, *, mesh=None, nan_indices=(), sleep_s=0.0,
          evaluate=None, stop_flag=None, **loop_overrides) -> loop.LoopResult:
  """Trains the toy in `workdir` (resuming from its checkpoints)."""
  mesh = mesh_lib.make_mesh() if mesh is None else mesh
  opt = optimizer_config()
  tx = state_lib.make_optimizer(opt)
  step = mesh_lib.make_train_step(loss_fn, tx, mesh, state_lib.make_schedule(opt))
  return loop.run(loop_config(num_steps=num_steps, **loop_overrides),
                  workdir=str(workdir), mesh=mesh, init_fn=make_init_fn(tx),
                  train_step=step,
                  train_iterator=make_iterator(nan_indices, sleep_s),
                  evaluate=evaluate, stop_flag=stop_flag)


def params_of(result: loop.LoopResult) -> dict[str, np.ndarray]:
  return {k: np.asarray(v) for k, v in jax.device_get(result.state.params).items()}


if __name__ == "__main__":
  workdir, num_steps, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
  sleep = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
  np.savez(out, **params_of(train(workdir, num_steps, sleep_s=sleep)))
