"""The `pretrain` mode: train EgoAllo's denoiser, from scratch or fine-tuning.

    python -m motiongrpo_jax.main --config=configs/pretrain.py:demo \\
        --workdir=runs/pretrain_demo

Steps of `run`:
  1. Check the config (`validate`); build the mesh over all devices.
  2. Find the dataset (`config.data.data_dir`, default `WORKDIR/data`); for
     the demo, generate synthetic motion there first if it holds none.
  3. Build the denoiser, the optimiser and EgoAllo's loss
     (`diffusion/loss.py`) wrapped for data parallelism (`make_loss_fn`).
  4. Hand everything to the shared loop (`train/loop.py`): it resumes from
     the workdir's latest checkpoint or starts from a random init or from
     `config.init_checkpoint`, validates on a fixed set of val windows,
     writes metrics and checkpoints, and stops cleanly on SIGTERM.

The workdir also receives `model_config.json` (the `DenoiserConfig`), so that
a training workdir is a self-describing model: `checkpoints.load_denoiser`
loads it like a model directory.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from motiongrpo_jax.data import pipeline
from motiongrpo_jax.data import synthetic
from motiongrpo_jax.data import tfds_builder
from motiongrpo_jax.diffusion import loss as loss_lib
from motiongrpo_jax.model import denoiser as denoiser_lib
from motiongrpo_jax.model import params_io
from motiongrpo_jax.train import checkpoints
from motiongrpo_jax.train import loop
from motiongrpo_jax.train import mesh as mesh_lib
from motiongrpo_jax.train import state as state_lib

# Batch fields the loss reads (the pipeline yields more).
_LOSS_FIELDS = ("betas", "body_quats", "hand_quats", "contacts", "T_world_cpf",
                "T_cpf_tm1_cpf_t", "mask")
# Independent random streams derived from `config.seed`.
_TRAIN_STREAM, _VAL_STREAM, _INIT_STREAM = 0, 1, 2


def denoiser_config(config: ml_collections.ConfigDict) -> denoiser_lib.DenoiserConfig:
  """The `DenoiserConfig` of `config.model` (unknown fields are an error)."""
  try:
    return denoiser_lib.DenoiserConfig.from_dict(config.model.to_dict())
  except (TypeError, ValueError) as e:
    raise ValueError(f"config.model: {e}") from e


def loss_config(config: ml_collections.ConfigDict) -> loss_lib.LossConfig:
  """EgoAllo's `LossConfig` with the term weights of `config.loss`."""
  return loss_lib.LossConfig(
      weight_betas=config.loss.weight_betas,
      weight_body_rotmats=config.loss.weight_body_rotmats,
      weight_contacts=config.loss.weight_contacts,
      weight_hand_rotmats=config.loss.weight_hand_rotmats)


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
  if not 0.0 <= config.loss.cond_dropout_prob < 1.0:
    raise ValueError(f"config.loss.cond_dropout_prob="
                     f"{config.loss.cond_dropout_prob}: expected in [0, 1)")
  if config.optimizer.learning_rate <= 0:
    raise ValueError(f"config.optimizer.learning_rate="
                     f"{config.optimizer.learning_rate}: expected > 0")
  if config.optimizer.warmup_steps < 0:
    raise ValueError(f"config.optimizer.warmup_steps="
                     f"{config.optimizer.warmup_steps}: expected >= 0")
  loop.validate_config(config.train)


def _cond_dropout(keep: jax.Array):
  """Zeroes the encoded condition of sequences where `keep` (B,) is 0.

  EgoAllo multiplies the Fourier-encoded condition by the keep mask right
  before `latent_from_cond`; a Flax interceptor does the same here.
  """

  def interceptor(next_fun, args, kwargs, context):
    if (context.module.name == "latent_from_cond"
        and context.method_name == "__call__"):
      cond, *rest = args
      args = (cond * keep[:, None, None].astype(cond.dtype), *rest)
    return next_fun(*args, **kwargs)

  return nn.intercept_methods(interceptor)


def make_loss_fn(model: denoiser_lib.Denoiser, config: loss_lib.LossConfig,
                 cond_dropout_prob: float = 0.0) -> mesh_lib.LossFn:
  """EgoAllo's loss as a per-device `loss_fn(params, batch, keys)`.

  Per example b (key k_b): t_b ~ U{1..max_t} from fold_in(k_b, 0), ε_b from
  fold_in(k_b, 1), the condition kept unless uniform(fold_in(k_b, 2)) ≤
  `cond_dropout_prob`. So the draws do not depend on the device count.

  EgoAllo normalises each term by the number of valid frames of the batch.
  Each device computes its terms with its own frame count and scales them by
  (devices · own frames / all frames), so the mean over devices equals the
  single-device loss of the global batch exactly for the betas, body and
  contact terms. The hand term's own normaliser (frames whose hands move,
  at least 256) makes it exact only when moving-hand frames are spread over
  devices like frames; it is 0 for models without hands. A device whose
  examples are all padding contributes 0.

  Args:
    model: the denoiser.
    config: loss weights and constants.
    cond_dropout_prob: probability of zeroing a sequence's condition.

  Returns:
    The loss function; aux holds `loss_<term>` for each unweighted term.
  """
  dim = model.config.packed_dim

  def loss_fn(params, batch, keys):
    num_frames = batch["mask"].shape[1]
    t = jax.vmap(lambda k: jax.random.randint(
        jax.random.fold_in(k, 0), (), 1, config.max_t + 1))(keys)
    noise = jax.vmap(lambda k: jax.random.normal(
        jax.random.fold_in(k, 1), (num_frames, dim)))(keys)
    loss_batch = {k: batch[k] for k in _LOSS_FIELDS if k in batch}
    loss_batch["betas"] = batch["betas"][:, None, :]  # (B, 1, 16)
    if cond_dropout_prob > 0:
      keep = jax.vmap(lambda k: jax.random.uniform(
          jax.random.fold_in(k, 2)) > cond_dropout_prob)(keys)
      with _cond_dropout(keep):
        total, terms = loss_lib.denoising_loss(
            params, model, loss_batch, t=t, noise=noise, config=config)
    else:
      total, terms = loss_lib.denoising_loss(
          params, model, loss_batch, t=t, noise=noise, config=config)
    frames = jnp.sum(batch["mask"].astype(jnp.float32))
    all_frames = jax.lax.psum(frames, mesh_lib.DATA_AXIS)
    num_devices = jax.lax.psum(1, mesh_lib.DATA_AXIS)
    share = num_devices * frames / jnp.maximum(all_frames, 1.0)
    scaled = lambda x: jnp.where(frames > 0, x, 0.0) * share  # pylint: disable=unnecessary-lambda-assignment
    aux = {f"loss_{name}": scaled(terms[name]) for name in loss_lib.TERMS}
    return scaled(total), aux

  return loss_fn


def prepare_data(config: ml_collections.ConfigDict, workdir: str) -> pathlib.Path:
  """The dataset directory, generating synthetic data first if so configured.

  Returns:
    `config.data.data_dir` (default `WORKDIR/data`), holding a dataset.
  """
  data_dir = pathlib.Path(config.data.data_dir or pathlib.Path(workdir) / "data")
  try:
    tfds_builder.dataset_dir(data_dir)
    return data_dir
  except FileNotFoundError:
    if not config.data.build_synthetic_if_missing:
      raise FileNotFoundError(
          f"config.data.data_dir={str(data_dir)!r} holds no dataset; build one "
          "with `python -m motiongrpo_jax.tools.build_dataset "
          f"--source=<synthetic|bvh|amass|egoallo_hdf5> --output_dir={data_dir}`"
          ) from None
  if jax.process_index() == 0:
    length = config.data.synthetic_num_frames
    logging.info("generating %d synthetic sequences of %d frames into %s",
                 config.data.synthetic_num_sequences, length, data_dir)
    summary = tfds_builder.build(
        lambda: synthetic.synthetic_records(
            config.data.synthetic_num_sequences, seed=config.seed,
            num_frames=(length, length)), data_dir)
    logging.info("wrote %s: %s in %.1f s", summary.path, summary.splits,
                 summary.seconds)
  multihost_utils.sync_global_devices("pretrain: dataset ready")
  return data_dir


def train_iterator(config: ml_collections.ConfigDict, data_dir: str,
                   mesh: jax.sharding.Mesh,
                   hands: bool, seq_len: int | None = None):
  """This process's shard of random training windows (`config.data`).

  Args:
    config: a training config (`data.*` and `seed`).
    data_dir: the dataset directory.
    mesh: the device mesh (the local batch is this process's share).
    hands: whether batches carry hand rotations.
    seq_len: frames per window (default `config.data.seq_len`).

  Returns:
    A checkpointable iterator of local batches.
  """
  return iter(pipeline.train_dataset(
      data_dir, split=config.data.train_split,
      seq_len=seq_len or config.data.seq_len,
      batch_size=mesh_lib.local_batch_size(config.data.batch_size, mesh,
                                           "config.data.batch_size"),
      seed=config.seed, shard_index=jax.process_index(),
      shard_count=jax.process_count(), num_workers=config.data.num_workers,
      hands=hands))


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
  data_dir = prepare_data(config, workdir)
  hands = model_config.include_hands
  batches = train_iterator(config, data_dir, mesh, hands)
  val_batches = _val_batches(config, data_dir, mesh, hands)

  # --- (3) Model, optimiser, loss, steps.
  model = denoiser_lib.Denoiser(model_config)
  tx = state_lib.make_optimizer(config.optimizer, config.train.num_steps)
  val_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), _VAL_STREAM)
  train_step = mesh_lib.make_train_step(
      make_loss_fn(model, loss_config(config), config.loss.cond_dropout_prob),
      tx, mesh, state_lib.make_schedule(config.optimizer,
                                        config.train.num_steps))
  eval_step = mesh_lib.make_eval_step(make_loss_fn(model, loss_config(config)),
                                      mesh)

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
