"""The `pretrain` mode: train EgoAllo's denoiser, from scratch or fine-tuning.

    python -m motiongrpo_jax.main --config=configs/pretrain.py:demo \\
        --workdir=runs/pretrain_demo

Steps of `run`:
  1. Check the config (`validate`); build the mesh over all devices.
  2. Find the dataset (`config.data.data_dir`, default `WORKDIR/data`); for
     the demo, generate synthetic motion there first if it holds none.
  3. Build the denoiser, the optimiser and EgoAllo's loss
     (`diffusion/loss.py`) wrapped for data parallelism
     (`train/denoiser_loss.py`).
  4. Hand everything to the shared loop (`train/loop.py`): it resumes from
     the workdir's latest checkpoint or starts from a random init or from
     `config.init_checkpoint`, validates on a fixed set of val windows,
     writes metrics and checkpoints, and stops cleanly on SIGTERM.

The workdir also receives `model_config.json` (the `DenoiserConfig`), so that
a training workdir is a self-describing model: `checkpoints.load_denoiser`
loads it like a model directory.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from motiongrpo_jax import config_sections
from motiongrpo_jax.data import pipeline
from motiongrpo_jax.diffusion import loss as loss_lib
from motiongrpo_jax.model import denoiser as denoiser_lib
from motiongrpo_jax.model import params_io
from motiongrpo_jax.train import checkpoints
from motiongrpo_jax.train import denoiser_loss
from motiongrpo_jax.train import inputs
from motiongrpo_jax.train import loop
from motiongrpo_jax.train import mesh as mesh_lib
from motiongrpo_jax.train import state as state_lib

# Independent random streams derived from `config.seed`.
_TRAIN_STREAM, _VAL_STREAM, _INIT_STREAM = 0, 1, 2


def denoiser_config(config: ml_collections.ConfigDict) -> denoiser_lib.DenoiserConfig:
  """The `DenoiserConfig` of `config.model` (unknown fields are an error)."""
  try:
    return denoiser_lib.DenoiserConfig.from_dict(config.model.to_dict())
  except (TypeError, ValueError) as e:
    raise ValueError(f"config.model: {e}") from e


def validate(config: ml_collections.ConfigDict, num_devices: int | None = None) -> None:
  """Fails at start-up, naming the field, on an impossible config.

  Args:
    config: the pretrain config.
    num_devices: devices the batches are split over (default: all).
  """
  num_devices = jax.device_count() if num_devices is None else num_devices
  denoiser_config(config)
  for name in ("batch_size", "val_batch_size"):
    value = config.data[name]
    if value <= 0 or value % num_devices:
      raise ValueError(f"config.data.{name}={value} must be a positive multiple "
                       f"of the number of devices ({num_devices})")
  for name in ("seq_len", "max_val_batches", "synthetic_num_sequences",
               "synthetic_num_frames"):
    if config.data[name] < 1:
      raise ValueError(f"config.data.{name}={config.data[name]}: expected >= 1")
  if config.data.num_workers < 0:
    raise ValueError(f"config.data.num_workers={config.data.num_workers}: "
                     "expected >= 0")
  config_sections.to_dataclass(loss_lib.LossConfig, config.loss, "loss")
  if config.optimizer.learning_rate <= 0:
    raise ValueError(f"config.optimizer.learning_rate="
                     f"{config.optimizer.learning_rate}: expected > 0")
  if config.optimizer.warmup_steps < 0:
    raise ValueError(f"config.optimizer.warmup_steps="
                     f"{config.optimizer.warmup_steps}: expected >= 0")
  loop.validate_config(config.train)


def _write_model_config(workdir: str, model_config: denoiser_lib.DenoiserConfig) -> None:
  """`WORKDIR/model_config.json`; an error if the workdir has another one."""
  path = pathlib.Path(workdir) / params_io.CONFIG_FILE
  text = json.dumps(model_config.to_dict(), indent=2) + "\n"
  if path.exists():
    if params_io.load_config(workdir) != model_config:
      raise ValueError(
          f"{path} describes another model than config.model; use a new "
          "--workdir or the model it was trained with")
    return
  if jax.process_index() == 0:
    # Written whole (rename), so other processes never read half a file.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _val_batches(config, data_dir, mesh, hands: bool) -> list[Any]:
  """The fixed validation batches (global arrays), at most `max_val_batches`."""
  local = mesh_lib.local_batch_size(config.data.val_batch_size, mesh,
                                    "config.data.val_batch_size")
  dataset = pipeline.eval_dataset(
      data_dir, split=config.data.val_split, window_len=config.data.seq_len,
      batch_size=local, shard_index=jax.process_index(),
      shard_count=jax.process_count(), hands=hands)
  batches = []
  for batch in dataset:
    if len(batches) == config.data.max_val_batches:
      break
    batches.append(mesh_lib.global_batch(mesh, batch))
  if not batches:
    raise ValueError(f"split {config.data.val_split!r} of {data_dir} gave no "
                     "validation windows")
  return batches


def state_initializers(config: ml_collections.ConfigDict,
                       model: denoiser_lib.Denoiser,
                       tx: Any, mesh: jax.sharding.Mesh):
  """The loop's `init_fn` and `abstract_fn` for this config.

  Args:
    config: the pretrain config (`seed`, `init_checkpoint`).
    model: the denoiser.
    tx: the optimiser.
    mesh: the mesh (params of `init_checkpoint` are placed replicated).

  Returns:
    (init_fn, abstract_fn): the first builds the initial `TrainState` from a
    random init or from `config.init_checkpoint` (parameters only; a fresh
    optimiser state at step 0); the second has the same structure and reads
    no files (for `jax.eval_shape`).
  """
  base_key = jax.random.PRNGKey(config.seed)
  train_key = jax.random.fold_in(base_key, _TRAIN_STREAM)
  init_key = jax.random.fold_in(base_key, _INIT_STREAM)

  def random_params():
    x = jnp.zeros((1, 2, model.config.packed_dim))
    pose = jnp.zeros((1, 2, 7)).at[..., 0].set(1.0)
    return model.init(init_key, x, jnp.ones((1,), jnp.int32), pose, pose)["params"]

  def abstract_fn():
    return state_lib.create(random_params(), tx, train_key)

  def init_fn():
    if not config.init_checkpoint:
      return state_lib.create(jax.jit(random_params)(), tx, train_key)
    target = jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype,
                                       sharding=mesh_lib.replicated(mesh)),
        jax.eval_shape(random_params))
    logging.info("initialising from %s", config.init_checkpoint)
    params = checkpoints.load_params(config.init_checkpoint, target)
    return state_lib.create(params, tx, train_key)

  return init_fn, abstract_fn


def run(config: ml_collections.ConfigDict, workdir: str) -> loop.LoopResult:
  """Pretrains (or fine-tunes) the denoiser in `workdir`; see the module doc."""
  # --- (1) Config and mesh.
  mesh = mesh_lib.make_mesh()
  validate(config, mesh.devices.size)
  model_config = denoiser_config(config)
  _write_model_config(workdir, model_config)

  # --- (2) Data.
  data_dir = inputs.prepare_data(config, workdir)
  hands = model_config.include_hands
  batches = inputs.train_iterator(config, data_dir, mesh, hands)
  val_batches = _val_batches(config, data_dir, mesh, hands)

  # --- (3) Model, optimiser, loss, steps.
  model = denoiser_lib.Denoiser(model_config)
  tx = state_lib.make_optimizer(config.optimizer, config.train.num_steps)
  val_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), _VAL_STREAM)
  loss_config = config_sections.to_dataclass(loss_lib.LossConfig,
                                             config.loss, "loss")
  train_step = mesh_lib.make_train_step(
      denoiser_loss.make_loss_fn(model, loss_config),
      tx, mesh, state_lib.make_schedule(config.optimizer,
                                        config.train.num_steps))
  eval_step = mesh_lib.make_eval_step(denoiser_loss.make_loss_fn(
      model, dataclasses.replace(loss_config, cond_dropout_prob=0.0)), mesh)

  init_fn, abstract_fn = state_initializers(config, model, tx, mesh)

  def evaluate(state):
    losses = [eval_step(state.params, batch, jax.random.fold_in(val_key, i))
              for i, batch in enumerate(val_batches)]
    return jax.tree.map(lambda *x: float(np.mean(x)), *jax.device_get(losses))

  count = sum(int(np.prod(s.shape)) for s in
              jax.tree.leaves(jax.eval_shape(abstract_fn).params))
  logging.info("pretrain %s: %d parameters, %d devices, data %s",
               config.variant, count, mesh.devices.size, data_dir)

  # --- (4) The loop.
  result = loop.run(config.train, workdir=workdir, mesh=mesh, init_fn=init_fn,
                    abstract_fn=abstract_fn, train_step=train_step,
                    train_iterator=batches, evaluate=evaluate)
  logging.info("pretrain %s: %s at step %d after %.1f s; validation %s",
               config.variant, "preempted" if result.preempted else "finished",
               int(result.state.step), result.wall_seconds,
               dict(result.last_val))
  return result
