"""The `grpo` mode: GRPO post-training of a base denoiser (MotionGRPO).

    python -m motiongrpo_jax.main --config=configs/grpo.py --workdir=runs/grpo

Steps of `run`:
  1. Check the config (`validate`): G >= 2, batches divisible by the devices
     and into minibatches, a valid sampler schedule, a critic when the
     perceptual reward is on — all before anything is sampled.
  2. The base policy `config.init_checkpoint` and, when the perceptual
     reward is on, the critic `config.critic_checkpoint` (the demo's are made
     first by main.py: `config.bootstrap`). A critic whose config does not
     match (frame rate) or whose parameters do not load is an error at
     start-up.
  3. GRPO (`grpo/update.py`) in the shared loop (`train/loop.py`): one step
     is one iteration on `data.batch_size` head trajectories × G rollouts;
     every diagnostic is logged each iteration; held-out rewards and metrics
     on fixed batches at start, every `eval_every_steps` and at the end;
     checkpoints and exact resume as in pretraining. The workdir gets the
     base's `model_config.json`, so it loads as a model like a pretrain
     workdir (`init_checkpoint` of eval / infer).
  4. Base vs post-trained on the held-out split (`config.eval`): the table
     is logged and written to `WORKDIR/summary.json`, its per-window values
     to `WORKDIR/summary_windows.npz`.
With `config.ablation.settings`, step 3–4 run once per setting on the same
base checkpoint (`WORKDIR/ablation/<name>`) and one table compares them
(`WORKDIR/ablation.json`): final metrics beside the diagnostics averaged over
the run and those of its first iteration (same base, same batch).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from motiongrpo_jax import body as body_lib
from motiongrpo_jax import run_record
from motiongrpo_jax.critic import checkpoint as critic_checkpoint
from motiongrpo_jax.data import pipeline
from motiongrpo_jax.diffusion import loss as loss_lib
from motiongrpo_jax.diffusion import sampler as sampler_lib
from motiongrpo_jax.eval import evaluate as evaluate_lib
from motiongrpo_jax.eval import paired
from motiongrpo_jax.grpo import rewards as rewards_lib
from motiongrpo_jax.grpo import update
from motiongrpo_jax.model import params_io
from motiongrpo_jax.train import checkpoints
from motiongrpo_jax.train import denoiser_loss
from motiongrpo_jax.train import inputs
from motiongrpo_jax.train import loop
from motiongrpo_jax.train import mesh as mesh_lib
from motiongrpo_jax.train import metrics_writer
from motiongrpo_jax.train import state as state_lib

SUMMARY_FILE = "summary.json"
# The final table's per-window values ("base/<metric>", "grpo/<metric>", (N,)
# each, windows in the split's order): runs of one seed share the windows and
# keys, so two runs pair window by window (`eval.paired`).
SUMMARY_WINDOWS_FILE = "summary_windows.npz"
ABLATION_FILE = "ablation.json"
# Metrics of the tables, in order (lower is better unless in _HIGHER).
TABLE_METRICS = ("mpjpe", "pampjpe", "pelvis_error", "root_relative_mpjpe",
                 "mpjve", "mpjre", "jitter", "foot_skate",
                 "reward/hybrid", "reward/rot", "reward/pos", "reward/pa_pos",
                 "reward/vel", "reward/skate", "reward/vis")
# Train diagnostics in the ablation table.
DIAGNOSTICS = ("reward/hybrid_group_std", "reward/pos_group_std",
               "reward/rot_group_std", "reward/pa_pos_group_std",
               "reward/vel_group_std", "reward/skate_group_std",
               "reward/vis_group_std",
               "zero_advantage_fraction", "diversity_joint_distance",
               "advantage_group_std", "grad_norm", "first_grad_cosine",
               "clip_fraction",
               "approx_kl", "ratio_min", "ratio_max")
# Independent random streams derived from `config.seed`.
_TRAIN_STREAM, _VAL_STREAM = 0, 1


# ----------------------------------------------------------------------------
# Config → static options, and start-up checks.


def ablation_settings(config: ml_collections.ConfigDict) -> list[str]:
  """The names of `config.ablation.settings` (validated against
  `config.ablation.named`)."""
  names = [s.strip() for s in config.ablation.settings.split(",") if s.strip()]
  known = sorted(config.ablation.named)
  if any(n not in known for n in names) or len(set(names)) != len(names):
    raise ValueError(f"config.ablation.settings={config.ablation.settings!r}: "
                     f"expected distinct names from {known} "
                     "(config.ablation.named)")
  return names


def with_setting(config: ml_collections.ConfigDict,
                 name: str) -> ml_collections.ConfigDict:
  """A copy of `config` with the overrides of ablation setting `name`, as a
  single run."""
  out = copy.deepcopy(config)
  with out.unlocked():
    out.update(config.ablation.named[name])
    out.ablation.settings = ""
  return out


def needs_critic(config: ml_collections.ConfigDict,
                 settings: list[str]) -> bool:
  """Whether the run, or any of its ablation settings, uses the critic."""
  return config.reward.weight_vis > 0 or any(
      with_setting(config, s).reward.weight_vis > 0 for s in settings)


def validate(config: ml_collections.ConfigDict, num_devices: int | None = None,
             before_bootstrap: bool = False) -> None:
  """Fails at start-up, naming the field, on an impossible config.

  Args:
    config: the grpo config.
    num_devices: devices the batches are split over (default: all).
    before_bootstrap: the demo's missing checkpoints are still to be made
      (`config.bootstrap.enabled`; main.py makes them).
  """
  num_devices = jax.device_count() if num_devices is None else num_devices
  for name, value in (("data.batch_size", config.data.batch_size),
                      ("eval.batch_size", config.eval.batch_size)):
    if value <= 0 or value % num_devices:
      raise ValueError(f"config.{name}={value} must be a positive multiple of "
                       f"the number of devices ({num_devices}); each device "
                       "holds whole groups")
  static = update.from_config(config)
  try:
    static.validate(config.data.batch_size // num_devices)
  except ValueError as e:
    raise ValueError(f"config.{e}") from e
  if config.data.seq_len < 4:
    raise ValueError(f"config.data.seq_len={config.data.seq_len}: expected >= 4"
                     " (jitter needs 4 frames)")
  if config.eval.num_samples < 1 or config.eval.val_batches < 1:
    raise ValueError("config.eval: need num_samples >= 1 and val_batches >= 1")
  if config.eval.max_batches < 0:
    raise ValueError(f"config.eval.max_batches={config.eval.max_batches}: "
                     "expected >= 0")
  body_lib.check_config(config.body)
  will_bootstrap = before_bootstrap and config.bootstrap.enabled
  if not config.init_checkpoint and not will_bootstrap:
    raise ValueError("config.init_checkpoint is empty: name the base denoiser "
                     "(a pretrain workdir, a model directory or an EgoAllo "
                     "checkpoint directory), or set config.bootstrap.enabled")
  if (needs_critic(config, ablation_settings(config))
      and not config.critic_checkpoint and not will_bootstrap):
    raise ValueError("the perceptual reward is on (reward.weight_vis > 0) but "
                     "config.critic_checkpoint is empty; name a critic workdir "
                     "or set reward.weight_vis=0")
  loop.validate_config(config.train)


# ----------------------------------------------------------------------------
# The base policy, the critic and the data.




def _eval_batches(config, data_dir, mesh, hands: bool, limit: int) -> list[Any]:
  """Fixed held-out batches (global arrays), at most `limit` (0: all)."""
  local = mesh_lib.local_batch_size(config.eval.batch_size, mesh,
                                    "config.eval.batch_size")
  # The eval mode's windows (its defaults: non-overlapping, a short last
  # window dropped, as EgoAllo).
  dataset = pipeline.eval_dataset(
      data_dir, split=config.eval.split, window_len=config.data.seq_len + 1,
      batch_size=local, partial="drop", shard_index=jax.process_index(),
      shard_count=jax.process_count(), hands=hands)
  batches = []
  for batch in dataset:
    if limit and len(batches) == limit:
      break
    batches.append(mesh_lib.global_batch(
        mesh, {k: batch[k] for k in evaluate_lib.FIELDS}))
  if not batches:
    raise ValueError(f"split {config.eval.split!r} of {data_dir} gave no "
                     f"windows of {config.data.seq_len + 1} poses")
  return batches


def make_evaluator(apply_fn, static: update.UpdateConfig, config, body,
                   packed_dim: int, score_fn, mesh: jax.sharding.Mesh):
  """evaluate(params, batches, key, critic_params) -> {name: (W,)}.

  The eval mode's evaluator (`eval/evaluate.py`: per-window keys, the floor
  from the data) with the exact sampler, plus each sample's sub-rewards and
  `reward/hybrid`; values are per-window means over `eval.num_samples`
  samples, windows in data order. Two policies evaluated with the same key
  see the same noise: their per-window values are paired.
  """
  # Evaluation samples with the exact sampler (no training exploration).
  exact = dataclasses.replace(static.sampler, explore_steps=0)
  critic = score_fn if static.reward.weight_vis else None

  def rewards_of(x0, batch, critic_params):
    rewards, _ = update.score_samples(x0, dict(batch), body, static.reward,
                                      critic, critic_params)
    out = {f"reward/{name}": r for name, r in rewards.items()}
    out["reward/hybrid"] = rewards_lib.hybrid(rewards, static.reward)
    return out

  eval_fn = evaluate_lib.make_eval_fn(
      apply_fn, packed_dim, body, exact, config.eval.num_samples,
      config.data.fps, rewards_of)

  def evaluate(params, batches, key, critic_params):
    rows, _ = evaluate_lib.evaluate(eval_fn, params, batches, key, mesh,
                                    extra_params=critic_params,
                                    global_batches=True)
    return evaluate_lib.window_means(rows)

  return evaluate


def means_over_windows(per_window: dict[str, np.ndarray]) -> dict[str, float]:
  """Means over windows (finite values), and `<name>_stderr` for the table's
  metrics (std (ddof 1)/√N)."""
  out = {}
  for name, v in per_window.items():
    v = v[np.isfinite(v)]
    out[name] = float(np.mean(v)) if len(v) else math.nan
    if name in TABLE_METRICS and len(v) > 1:
      out[f"{name}_stderr"] = float(np.std(v, ddof=1) / np.sqrt(len(v)))
  return out


# ----------------------------------------------------------------------------
# One GRPO run.


def _table(columns: dict[str, dict[str, float]], names) -> str:
  """A text table: one row per metric, one column per policy/setting."""
  heads = list(columns)
  lines = [f"{'metric':<28}" + "".join(f"{h:>14}" for h in heads)]
  for name in names:
    if not any(name in c for c in columns.values()):
      continue
    cells = "".join(
        f"{columns[h][name]:>14.5g}" if name in columns[h] else f"{'-':>14}"
        for h in heads)
    lines.append(f"{name:<28}{cells}")
  return "\n".join(lines)


def run_grpo(config: ml_collections.ConfigDict, workdir: str, base: str,
             critic_path: str | None, mesh: jax.sharding.Mesh
             ) -> dict[str, Any]:
  """GRPO from `base` in `workdir`, then the base-vs-GRPO table.

  Returns:
    The summary written to `WORKDIR/summary.json`.
  """
  static = update.from_config(config)
  body = body_lib.from_config(config.body)
  model, _ = checkpoints.load_denoiser(base)
  model_config = model.config
  packed_dim = model_config.packed_dim
  hands = model_config.include_hands
  apply_fn = sampler_lib.model_apply_fn(model)
  _write_model_config(workdir, model_config)
  score_fn, critic_params = None, None
  if static.reward.weight_vis > 0:
    score_fn, critic_params = critic_checkpoint.load_score_fn(
        critic_path, config.data.fps, body, hands)
    critic_params = mesh_lib.put_replicated(mesh, critic_params)
  data_dir = inputs.data_dir_of(config, workdir, base)

  # Data: windows of L + 1 poses.
  train_iterator = inputs.train_iterator(config, data_dir, mesh, hands,
                                          seq_len=config.data.seq_len + 1)
  val_batches = _eval_batches(config, data_dir, mesh, hands,
                              config.eval.val_batches)

  # Base parameters (the start, and the KL reference).
  replicated = mesh_lib.replicated(mesh)

  def abstract_params():
    x = jnp.zeros((1, 2, packed_dim))
    pose = jnp.zeros((1, 2, 7)).at[..., 0].set(1.0)
    return model.init(jax.random.key(0), x, jnp.ones((1,), jnp.int32), pose,
                      pose)["params"]

  target = jax.tree.map(
      lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated),
      jax.eval_shape(abstract_params))
  base_params = checkpoints.load_params(base, target)
  ref_params = (base_params if static.objective.needs_base_params
                else None)

  total_updates = (config.train.num_steps * config.iteration.num_epochs
                   * config.iteration.num_minibatches)
  tx = state_lib.make_optimizer(config.optimizer, total_updates,
                                grad_cosine=True)
  base_key = jax.random.PRNGKey(config.seed)
  train_key, val_key = (jax.random.fold_in(base_key, s) for s in
                        (_TRAIN_STREAM, _VAL_STREAM))
  # The final table's key is the eval mode's for the same seed, so
  # summary.json's metrics are the eval mode's on the same windows.
  eval_key = base_key
  step = update.make_train_step(
      apply_fn, tx, mesh, static, body, packed_dim, score_fn,
      state_lib.make_schedule(config.optimizer, total_updates),
      data_loss_fn=denoiser_loss.make_loss_fn(model, loss_lib.LossConfig()))

  def train_step(state, batch):
    return step(state, batch, ref_params=ref_params,
                critic_params=critic_params)

  def init_fn():
    # A copy: the state is donated, the base parameters are kept.
    return state_lib.create(jax.tree.map(jnp.copy, base_params), tx, train_key)

  def abstract_fn():
    return state_lib.create(abstract_params(), tx, train_key)

  evaluator = make_evaluator(apply_fn, static, config, body, packed_dim,
                             score_fn, mesh)

  def evaluate(state):
    # The parameters' moving average when the optimiser keeps one.
    return means_over_windows(evaluator(
        state_lib.averaged_params(state), val_batches, val_key, critic_params))

  logging.info("grpo %s: base %s, %d devices, data %s, G=%d, B=%d, noise %s, "
               "critic %s", config.variant, base, mesh.devices.size, data_dir,
               static.group.group_size, config.data.batch_size,
               static.group.noise.kind, critic_path or "none")
  result = loop.run(config.train, workdir=workdir, mesh=mesh, init_fn=init_fn,
                    abstract_fn=abstract_fn, train_step=train_step,
                    train_iterator=train_iterator, evaluate=evaluate)
  logging.info("grpo %s: %s at iteration %d after %.1f s", config.variant,
               "preempted" if result.preempted else "finished",
               int(result.state.step), result.wall_seconds)
  if result.preempted:
    return {}

  # Base vs post-trained on the held-out split.
  t0 = time.monotonic()
  eval_batches = _eval_batches(config, data_dir, mesh, hands,
                               config.eval.max_batches)
  per_window = {"base": evaluator(base_params, eval_batches, eval_key,
                                  critic_params),
                "grpo": evaluator(state_lib.averaged_params(result.state),
                                  eval_batches, eval_key, critic_params)}
  columns = {k: means_over_windows(v) for k, v in per_window.items()}
  changes = {name: paired.paired_change(
      per_window["base"][name], per_window["grpo"][name],
      num_resamples=config.eval.bootstrap_resamples, seed=config.seed)
             for name in TABLE_METRICS if name in per_window["base"]}
  change = {n: c["change_percent"] for n, c in changes.items()}
  summary = {
      "variant": config.variant,
      "base_checkpoint": base,
      "critic_checkpoint": critic_path or "",
      "iterations": int(result.state.step),
      "grpo_wall_seconds": result.wall_seconds,
      "eval_split": config.eval.split,
      "eval_windows": len(per_window["base"]["mpjpe"]),
      "eval_samples_per_window": config.eval.num_samples,
      "eval_seconds": time.monotonic() - t0,
      "base": columns["base"],
      "grpo": columns["grpo"],
      "change_percent": change,
      # Paired bootstrap 95 % intervals of the change, over windows.
      "change_ci95_percent": {n: [c["ci_low"], c["ci_high"]]
                              for n, c in changes.items()},
  }
  table = _table({**columns, "change %": change,
                  "95% CI low": {n: c["ci_low"] for n, c in changes.items()},
                  "95% CI high": {n: c["ci_high"] for n, c in changes.items()}},
                 TABLE_METRICS)
  print(f"base vs GRPO on split {config.eval.split!r} after "
        f"{summary['iterations']} iterations:\n{table}", flush=True)
  run_record.write_json(pathlib.Path(workdir) / SUMMARY_FILE, summary)
  run_record.write_npz(
      pathlib.Path(workdir) / SUMMARY_WINDOWS_FILE,
      {f"{column}/{name}": np.asarray(values)
       for column, metrics in per_window.items()
       for name, values in metrics.items()})
  return summary


def _write_model_config(workdir: str, model_config) -> None:
  """`WORKDIR/model_config.json`, so that the workdir loads as a model
  (`checkpoints.load_denoiser`); an error if it holds another model's."""
  path = pathlib.Path(workdir) / params_io.CONFIG_FILE
  if path.exists():
    if params_io.load_config(workdir) != model_config:
      raise ValueError(f"{path} describes another model than the base "
                       "checkpoint's; use a new --workdir")
    return
  run_record.write_json(path, model_config.to_dict())


def _train_diagnostics(workdir: str) -> tuple[dict[str, float],
                                              dict[str, float]]:
  """(mean over iterations, first iteration) of the logged diagnostics."""
  path = pathlib.Path(workdir) / metrics_writer.METRICS_FILE
  rows = [json.loads(line) for line in path.read_text().splitlines()
          if line.strip()]
  rows = [r for r in rows if r.get("split") == "train"]
  if not rows:
    return {}, {}
  first = min(rows, key=lambda r: r["step"])
  mean = {n: float(np.mean([r[n] for r in rows if n in r]))
          for n in DIAGNOSTICS if any(n in r for r in rows)}
  return mean, {n: float(first[n]) for n in DIAGNOSTICS if n in first}


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """GRPO post-training in `workdir` (module docstring).

  Returns:
    The summary (single run) or the ablation table (with settings).
  """
  # --- (1) Config and mesh.
  mesh = mesh_lib.make_mesh()
  validate(config, mesh.devices.size)
  settings = ablation_settings(config)
  uses_critic = needs_critic(config, settings)

  # --- (2) Base policy and critic.
  base = config.init_checkpoint
  critic_path = None
  if uses_critic:
    critic_path = config.critic_checkpoint
    # Fail now, not after the first rollout, on a critic that does not fit.
    critic_checkpoint.load_score_fn(critic_path, config.data.fps,
                                    body_lib.from_config(config.body), False)

  # --- (3–4) One run, or the ablation set.
  if not settings:
    return run_grpo(config, workdir, base, critic_path, mesh)
  table: dict[str, Any] = {"base_checkpoint": base, "settings": {}}
  columns, first_columns = {}, {}
  for name in settings:
    sub = with_setting(config, name)
    sub_dir = str(pathlib.Path(workdir) / "ablation" / name)
    run_record.write(sub_dir, sub)
    summary = run_grpo(sub, sub_dir, base, critic_path, mesh)
    if not summary:
      return table  # Preempted: re-run the same command to continue.
    mean, first = _train_diagnostics(sub_dir)
    table["settings"][name] = {"overrides":
                                   config.ablation.named[name].to_dict(),
                               "final": summary["grpo"],
                               "base": summary["base"],
                               "change_percent": summary["change_percent"],
                               "change_ci95_percent":
                                   summary["change_ci95_percent"],
                               "diagnostics_mean": mean,
                               "diagnostics_first_iteration": first,
                               "iterations": summary["iterations"],
                               "wall_seconds": summary["grpo_wall_seconds"]}
    columns[name] = {**summary["grpo"], **mean}
    first_columns[name] = first
  text = (_table(columns, TABLE_METRICS + DIAGNOSTICS)
          + "\n\nfirst iteration (same base, same batch):\n"
          + _table(first_columns, DIAGNOSTICS))
  print(f"ablation on {base}:\n{text}", flush=True)
  run_record.write_json(pathlib.Path(workdir) / ABLATION_FILE, table)
  return table
