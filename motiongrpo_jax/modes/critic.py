"""The `critic` mode: train the perceptual critic with InfoNCE, then evaluate it.

    python -m motiongrpo_jax.main --config=configs/critic.py:demo \\
        --config.base_checkpoint=runs/pretrain_demo --workdir=runs/critic_demo

Steps of `run`:
  1. Check the config (`validate`); build the mesh; write
     `WORKDIR/critic_config.json` (the `CriticConfig`, so that GRPO can
     rebuild the model: `load_critic`).
  2. Load the frozen base policy (`config.base_checkpoint`) and the body
     model; find the dataset.
  3. Every train step (`make_train_step`):
       (a) candidates, on the global batch, one jitted call: G rollouts of
           the base policy per trajectory by the compiled sampler, whose x̂0
           of the last K steps are the hard negatives, and one perturbed
           ground truth per kind (`train/critic_objective.py`). Generated on
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
  5. Held-out evaluation (`eval/critic_eval.py`) → `WORKDIR/critic_eval.json`:
     plain base samples, then (`eval.condition_noise` > 0) samples whose
     rollouts saw GRPO's condition noise of that amplitude (keys `noisy_…`),
     the setting in which GRPO uses the critic to rank a group.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from motiongrpo_jax import config_sections
from motiongrpo_jax.body import model as body_model
from motiongrpo_jax.body import smplh
from motiongrpo_jax.data import pipeline
from motiongrpo_jax.data import tfds_builder
from motiongrpo_jax.diffusion import sampler as sampler_lib
from motiongrpo_jax.eval import critic_eval
from motiongrpo_jax.model import critic as critic_lib
from motiongrpo_jax.modes import pretrain
from motiongrpo_jax.train import checkpoints
from motiongrpo_jax.train import critic_objective
from motiongrpo_jax.train import loop
from motiongrpo_jax.train import mesh as mesh_lib
from motiongrpo_jax.train import state as state_lib

CONFIG_FILE = "critic_config.json"
EVAL_FILE = "critic_eval.json"
# Batch fields the critic steps read (the pipeline yields more).
_FIELDS = ("betas", "body_quats", "T_world_root", "T_world_cpf",
           "T_cpf_tm1_cpf_t", "mask", "seq_index")
# Independent random streams derived from `config.seed`; the negatives of
# train step k come from fold_in(fold_in(state.rng, _NEGATIVES_STREAM), k).
_TRAIN_STREAM, _VAL_STREAM, _INIT_STREAM, _EVAL_STREAM = 0, 1, 2, 3
_NEGATIVES_STREAM = 0x6E6567


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


def validate(config: ml_collections.ConfigDict,
             num_devices: int | None = None) -> None:
  """Fails at start-up, naming the field, on an impossible config."""
  num_devices = jax.device_count() if num_devices is None else num_devices
  critic_config(config)
  perturbation_config(config)
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
  num_steps = sampler_config(config, return_x0=True).num_steps
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
  if config.body.model not in ("builtin", "smplh"):
    raise ValueError(f"config.body.model={config.body.model!r}: expected "
                     "'builtin' or 'smplh'")
  if config.body.model == "smplh" and not config.body.smplh_npz:
    raise ValueError("config.body.model='smplh' needs config.body.smplh_npz")
  loop.validate_config(config.train)


def make_body(config: ml_collections.ConfigDict) -> body_model.BodyModel:
  """The body model of `config.body`."""
  if config.body.model == "smplh":
    return smplh.load_smplh(config.body.smplh_npz)
  return body_model.builtin_body()


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


def _write_json(path: pathlib.Path, values: dict[str, Any]) -> None:
  """Writes `values` as JSON atomically (process 0 only)."""
  if jax.process_index() != 0:
    return
  tmp = path.with_suffix(path.suffix + ".tmp")
  tmp.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")
  tmp.replace(path)


def _write_critic_config(workdir: str, model_config: critic_lib.CriticConfig
                         ) -> None:
  """`WORKDIR/critic_config.json`; an error if the workdir has another one."""
  path = pathlib.Path(workdir) / CONFIG_FILE
  if path.exists():
    found = critic_lib.CriticConfig.from_dict(json.loads(path.read_text()))
    if found != model_config:
      raise ValueError(f"{path} describes another critic than config.model; "
                       "use a new --workdir or the critic it was trained with")
    return
  path.parent.mkdir(parents=True, exist_ok=True)
  _write_json(path, model_config.to_dict())


def load_critic(path: str | pathlib.Path) -> tuple[critic_lib.Critic, Any]:
  """A trained critic and its parameters from a critic workdir.

  Args:
    path: a critic training workdir (holding `critic_config.json`) or one of
      its checkpoint step directories.

  Returns:
    (Critic, params) with params on the default device.
  """
  path = pathlib.Path(path).absolute()
  kind = checkpoints.checkpoint_kind(path)
  if kind not in ("workdir", "step"):
    raise ValueError(f"{path} is not a critic workdir or checkpoint step "
                     "directory")
  workdir = path if kind == "workdir" else path.parent.parent
  config_path = workdir / CONFIG_FILE
  if not config_path.is_file():
    raise FileNotFoundError(f"{config_path} not found: {workdir} is not a "
                            "critic workdir")
  model = critic_lib.Critic(critic_lib.CriticConfig.from_dict(
      json.loads(config_path.read_text())))
  # This process's own device (jax.devices()[0] belongs to process 0).
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree.map(
      lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device),
      jax.eval_shape(lambda: critic_lib.init_params(model, jax.random.key(0))))
  return model, checkpoints.load_params(path, target)


def data_dir_of(config: ml_collections.ConfigDict, workdir: str) -> pathlib.Path:
  """The dataset: `data.data_dir`, else the base checkpoint's `data/` when it
  holds one, else `WORKDIR/data` (built when so configured)."""
  if not config.data.data_dir and config.base_checkpoint:
    candidate = pathlib.Path(config.base_checkpoint) / "data"
    try:
      tfds_builder.dataset_dir(candidate)
      return candidate
    except FileNotFoundError:
      pass
  return pretrain.prepare_data(config, workdir)


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
  model_config = critic_config(config)
  _write_critic_config(workdir, model_config)

  # --- (2) Base policy, body, data.
  base_model, base_params = checkpoints.load_denoiser(config.base_checkpoint)
  base_params = mesh_lib.put_replicated(mesh, base_params)
  base_apply = sampler_lib.model_apply_fn(base_model)
  hands = base_model.config.include_hands
  body = make_body(config)
  data_dir = data_dir_of(config, workdir)
  train_iterator = pretrain.train_iterator(config, data_dir, mesh, hands=False)

  # --- (3) Critic, optimiser, steps.
  model = critic_lib.Critic(model_config)
  tx = state_lib.make_optimizer(config.optimizer, config.train.num_steps)
  base_key = jax.random.PRNGKey(config.seed)
  train_key, val_key, init_key, eval_key = (
      jax.random.fold_in(base_key, s) for s in
      (_TRAIN_STREAM, _VAL_STREAM, _INIT_STREAM, _EVAL_STREAM))
  candidates = jax.jit(make_candidates_fn(base_apply, config, hands),
                       out_shardings=mesh_lib.data_sharded(mesh))
  loss_fn = make_loss_fn(model, body, config)
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
               len(candidate_names(config)), ", ".join(candidate_names(config)),
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
  perturbations = perturbation_config(config)
  batch_fn = critic_eval.make_batch_fn(
      model, body, base_apply, sampler_config(config, return_x0=False),
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
  _write_json(pathlib.Path(workdir) / EVAL_FILE, summary)
  logging.info("critic evaluation on %r: %s", config.eval.split, ", ".join(
      f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
      for k, v in sorted(summary.items())))
  return result
