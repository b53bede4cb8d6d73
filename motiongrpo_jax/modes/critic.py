"""The `critic` mode: train the perceptual critic with InfoNCE, then evaluate it.

    python -m motiongrpo_jax.main --config=configs/critic.py:demo \\
        --config.base_checkpoint=runs/pretrain_demo --workdir=runs/critic_demo

Steps of `run`:
  1. Check the config (`validate`); build the mesh; write
     `WORKDIR/critic_config.json` (the `CriticConfig`, so that GRPO can
     rebuild the model: `critic/checkpoint.load`).
  2. Load the frozen base policy (`config.base_checkpoint`) and the body
     model; find the dataset.
  3. Every train step (`make_train_step`):
       (a) candidates, on the global batch, one jitted call: G rollouts of
           the base policy per trajectory by the compiled sampler, whose x̂0
           of the last K steps are the hard negatives, and one perturbed
           ground truth per kind (`critic/objective.py`). Generated on
           the fly every step, no cache (on the demo the rollouts cost about
           as much as the critic update). With `objective.condition_noise_max`
           > 0 each rollout sees the head trajectory shaken by GRPO's smooth
           condition noise of RMS λ ~ U[0, max] (graded negatives). Keys come
           from the state's RNG and step, so a resumed run draws the same
           negatives;
       (b) the data-parallel update (`train/mesh.make_train_step`): score
           [ground truth, negatives…] per trajectory, InfoNCE (τ = 0.07).
  4. The shared loop (`train/loop.py`): resume, validation on fixed val
     windows (negatives drawn once), metrics, checkpoints, SIGTERM.
  5. Held-out evaluation (`critic/evaluation.py`) → `WORKDIR/critic_eval.json`:
     plain base samples, then (`eval.condition_noise` > 0) samples whose
     rollouts saw GRPO's condition noise of that amplitude (keys `noisy_…`),
     the setting in which GRPO uses the critic to rank a group.
"""

from __future__ import annotations

import pathlib

import jax
import ml_collections
import numpy as np
from absl import logging

from motiongrpo_jax import body as body_lib
from motiongrpo_jax import run_record
from motiongrpo_jax.critic import checkpoint as critic_checkpoint
from motiongrpo_jax.critic import evaluation as critic_eval
from motiongrpo_jax.critic import model as critic_lib
from motiongrpo_jax.critic import training as critic_training
from motiongrpo_jax.data import pipeline
from motiongrpo_jax.diffusion import sampler as sampler_lib
from motiongrpo_jax.train import checkpoints
from motiongrpo_jax.train import inputs
from motiongrpo_jax.train import loop
from motiongrpo_jax.train import mesh as mesh_lib
from motiongrpo_jax.train import state as state_lib

EVAL_FILE = "critic_eval.json"
# Batch fields the critic steps read (the pipeline yields more).
_FIELDS = ("betas", "body_quats", "T_world_root", "T_world_cpf",
           "T_cpf_tm1_cpf_t", "mask", "seq_index")
# Independent random streams derived from `config.seed`; the negatives of
# train step k come from fold_in(fold_in(state.rng, _NEGATIVES_STREAM), k).
_TRAIN_STREAM, _VAL_STREAM, _INIT_STREAM, _EVAL_STREAM = 0, 1, 2, 3
_NEGATIVES_STREAM = 0x6E6567






def validate(config: ml_collections.ConfigDict,
             num_devices: int | None = None) -> None:
  """Fails at start-up, naming the field, on an impossible config."""
  num_devices = jax.device_count() if num_devices is None else num_devices
  critic_training.critic_config(config)
  critic_training.perturbation_config(config)
  if not config.base_checkpoint:
    raise ValueError("config.base_checkpoint is empty: name the base denoiser "
                     "(a pretrain workdir, a model directory or an EgoAllo "
                     "checkpoint directory)")
  for name in ("batch_size", "val_batch_size"):
    value = config.data[name]
    if value <= 0 or value % num_devices:
      raise ValueError(f"config.data.{name}={value} must be a positive multiple "
                       f"of the number of devices ({num_devices})")
  if config.eval.batch_size <= 0 or config.eval.batch_size % num_devices:
    raise ValueError(f"config.eval.batch_size={config.eval.batch_size} must be "
                     f"a positive multiple of the number of devices "
                     f"({num_devices})")
  if config.data.batch_size < 2 and "other_motion" in config.objective.perturbations:
    raise ValueError("config.data.batch_size must be >= 2 for the "
                     "'other_motion' negatives")
  obj = config.objective
  if obj.temperature <= 0:
    raise ValueError(f"config.objective.temperature={obj.temperature}: "
                     "expected > 0")
  if obj.base_samples < 0:
    raise ValueError(f"config.objective.base_samples={obj.base_samples}: "
                     "expected >= 0")
  num_steps = critic_training.sampler_config(config, return_x0=True).num_steps
  if obj.base_samples and not 1 <= obj.base_last_steps <= num_steps:
    raise ValueError(f"config.objective.base_last_steps={obj.base_last_steps}:"
                     f" expected in 1..sampler.num_steps={num_steps}")
  if obj.base_samples == 0 and not obj.perturbations:
    raise ValueError("config.objective: no negatives (base_samples = 0 and no "
                     "perturbations)")
  if obj.condition_noise_max < 0 or config.eval.condition_noise < 0:
    raise ValueError("config: objective.condition_noise_max and "
                     "eval.condition_noise must be >= 0 (metres)")
  if config.eval.num_samples < 2:
    raise ValueError(f"config.eval.num_samples={config.eval.num_samples}: "
                     "expected >= 2 (rank correlation across samples)")
  if (config.eval.max_batches < 0 or config.eval.stride < 0
      or config.data.max_val_batches < 1):
    raise ValueError("config: need eval.max_batches >= 0, eval.stride >= 0 "
                     "and data.max_val_batches >= 1")
  body_lib.check_config(config.body)
  loop.validate_config(config.train)


def _global_batches(mesh, dataset, limit: int | None):
  """Global arrays of the critic fields of at most `limit` local batches."""
  for i, batch in enumerate(dataset):
    if limit is not None and i >= limit:
      return
    yield mesh_lib.global_batch(mesh, {k: batch[k] for k in _FIELDS})


def run(config: ml_collections.ConfigDict, workdir: str) -> loop.LoopResult:
  """Trains the critic in `workdir`, then evaluates it; see the module doc."""
  # --- (1) Config and mesh.
  mesh = mesh_lib.make_mesh()
  validate(config, mesh.devices.size)
  model_config = critic_training.critic_config(config)
  critic_checkpoint.write_config(workdir, model_config)

  # --- (2) Base policy, body, data.
  base_model, base_params = checkpoints.load_denoiser(config.base_checkpoint)
  base_params = mesh_lib.put_replicated(mesh, base_params)
  base_apply = sampler_lib.model_apply_fn(base_model)
  hands = base_model.config.include_hands
  body = body_lib.from_config(config.body)
  data_dir = inputs.data_dir_of(config, workdir, config.base_checkpoint)
  train_iterator = inputs.train_iterator(config, data_dir, mesh, hands=False)

  # --- (3) Critic, optimiser, steps.
  model = critic_lib.Critic(model_config)
  tx = state_lib.make_optimizer(config.optimizer, config.train.num_steps)
  base_key = jax.random.PRNGKey(config.seed)
  train_key, val_key, init_key, eval_key = (
      jax.random.fold_in(base_key, s) for s in
      (_TRAIN_STREAM, _VAL_STREAM, _INIT_STREAM, _EVAL_STREAM))
  candidates = jax.jit(critic_training.make_candidates_fn(base_apply, config, hands),
                       out_shardings=mesh_lib.data_sharded(mesh))
  loss_fn = critic_training.make_loss_fn(model, body, config)
  update = mesh_lib.make_train_step(loss_fn, tx, mesh,
                                    state_lib.make_schedule(
                                        config.optimizer,
                                        config.train.num_steps))
  eval_step = mesh_lib.make_eval_step(loss_fn, mesh)

  @jax.jit
  def negatives_key(rng, step):
    return jax.random.fold_in(jax.random.fold_in(rng, _NEGATIVES_STREAM), step)

  def train_step(state, batch):
    batch = {k: batch[k] for k in _FIELDS}
    extra = candidates(base_params, batch,
                       negatives_key(state.rng, state.step))
    return update(state, {**batch, **extra})

  val_batches = []
  for i, batch in enumerate(_global_batches(mesh, pipeline.eval_dataset(
      data_dir, split=config.data.val_split, window_len=config.data.seq_len,
      batch_size=mesh_lib.local_batch_size(config.data.val_batch_size, mesh,
                                           "config.data.val_batch_size"),
      shard_index=jax.process_index(), shard_count=jax.process_count(),
      hands=False), config.data.max_val_batches)):
    key = mesh_lib.put_replicated(mesh, jax.random.fold_in(val_key, i))
    extra = candidates(base_params, batch, key)
    val_batches.append({**batch, **extra})
  if not val_batches:
    raise ValueError(f"split {config.data.val_split!r} of {data_dir} gave no "
                     "validation windows")

  def evaluate(state):
    metrics = [eval_step(state.params, batch, jax.random.fold_in(val_key, i))
               for i, batch in enumerate(val_batches)]
    return jax.tree.map(lambda *x: float(np.mean(x)), *jax.device_get(metrics))

  def random_params():
    return critic_lib.init_params(model, init_key)

  def abstract_fn():  # Traced only (jax.eval_shape) by the loop.
    return state_lib.create(random_params(), tx, train_key)

  def init_fn():
    if not config.init_checkpoint:
      return state_lib.create(random_params(), tx, train_key)
    target = jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype,
                                       sharding=mesh_lib.replicated(mesh)),
        jax.eval_shape(random_params))
    logging.info("initialising the critic from %s", config.init_checkpoint)
    return state_lib.create(checkpoints.load_params(config.init_checkpoint,
                                                    target), tx, train_key)

  count = sum(int(np.prod(s.shape)) for s in
              jax.tree.leaves(jax.eval_shape(random_params)))
  logging.info("critic %s: %d parameters, %d negatives per trajectory (%s), "
               "base %s, data %s", config.variant, count,
               len(critic_training.candidate_names(config)), ", ".join(critic_training.candidate_names(config)),
               config.base_checkpoint, data_dir)

  # --- (4) The loop.
  result = loop.run(config.train, workdir=workdir, mesh=mesh, init_fn=init_fn,
                    abstract_fn=abstract_fn, train_step=train_step,
                    train_iterator=train_iterator, evaluate=evaluate)
  logging.info("critic %s: %s at step %d after %.1f s; validation %s",
               config.variant, "preempted" if result.preempted else "finished",
               int(result.state.step), result.wall_seconds,
               dict(result.last_val))
  if result.preempted:
    return result

  # --- (5) Held-out evaluation.
  perturbations = critic_training.perturbation_config(config)
  batch_fn = critic_eval.make_batch_fn(
      model, body, base_apply, critic_training.sampler_config(config, return_x0=False),
      perturbations, config.eval.num_samples, hands,
      out_sharding=mesh_lib.replicated(mesh))
  def eval_dataset():
    return pipeline.eval_dataset(
        data_dir, split=config.eval.split, window_len=config.data.seq_len,
        batch_size=mesh_lib.local_batch_size(config.eval.batch_size, mesh,
                                             "config.eval.batch_size"),
        stride=config.eval.stride or None, shard_index=jax.process_index(), shard_count=jax.process_count(),
        hands=False)

  limit = config.eval.max_batches or None
  eval_batches = _global_batches(mesh, eval_dataset(), limit)
  summary = critic_eval.evaluate(batch_fn, result.state.params, base_params,
                                 eval_batches, eval_key, perturbations.kinds)
  if config.eval.condition_noise > 0:
    eval_batches = _global_batches(mesh, eval_dataset(), limit)
    noisy = critic_eval.evaluate(
        batch_fn, result.state.params, base_params, eval_batches, eval_key,
        perturbations.kinds, amplitude=config.eval.condition_noise)
    summary.update({f"noisy_{k}": v for k, v in noisy.items()
                    if not k.startswith("gt_beats_") or "base" in k})
    summary["noisy_condition_noise_m"] = config.eval.condition_noise
  summary.update(split=config.eval.split, step=int(result.state.step),
                 window_frames=config.data.seq_len,
                 base_checkpoint=str(config.base_checkpoint))
  run_record.write_json(pathlib.Path(workdir) / EVAL_FILE, summary)
  logging.info("critic evaluation on %r: %s", config.eval.split, ", ".join(
      f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
      for k, v in sorted(summary.items())))
  return result
