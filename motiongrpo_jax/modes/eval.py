"""The `eval` mode: sample a checkpoint on a split and score every sample.

    python -m motiongrpo_jax.main --config=configs/eval.py:demo \\
        --config.checkpoint=runs/pretrain_demo --workdir=runs/eval_demo

EgoAllo's protocol:
  1. Every sequence of the split is cut into consecutive windows of L + 1 CPF
     poses (`data/pipeline.eval_dataset`, deterministic; a short last window
     is dropped unless `config.data.partial="pad"`).
  2. For each window the sampler (`diffusion/sampler.rollout`, EgoAllo's
     30-step schedule and window stitching) draws `config.num_samples`
     packed motions of L frames from the head trajectory; the network sees
     the poses with z relative to the floor.
  3. Each sample is posed as the GRPO reward poses it
     (`grpo/rewards.pose_sample`): body rotations onto SO(3), the predicted
     per-frame betas, and the pelvis placed so that the predicted body's CPF
     sits on the INPUT CPF pose of its frame (frames 1..L of the window).
     The ground truth is posed from the dataset's pelvis, rotations and
     betas with the same body model (`grpo/rewards.pose_ground_truth`).
  4. `eval/metrics.compute_all` scores every sample against the ground
     truth of frames 1..L (heights relative to the floor), and
     `metrics.summarize` gives the mean and standard error over all
     (window, sample) pairs.

Outputs in the workdir:
  eval_metrics.json      {metric: {"mean", "stderr"}} for every name of
                         `metrics.METRIC_NAMES`, plus "metadata" (checkpoint,
                         split, L, windows, samples, sampler, units, ...).
  eval_per_sequence.csv  one row per window and sample: seq_index, name,
                         start (first pose of the window), sample,
                         num_frames (valid output frames), then every metric.

Randomness: sample s of the window starting at pose `start` of sequence
`seq_index` uses the key fold_in(fold_in(fold_in(key(seed), seq_index),
start), s), so results do not depend on the batch size or device count.
Sampling and scoring are one jitted program per batch shape; the last batch
is completed with masked filler windows, so one shape serves the whole split.
"""

from __future__ import annotations

import csv
import functools
import json
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from motiongrpo_jax import body as body_lib
from motiongrpo_jax import config_sections
from motiongrpo_jax.data import pipeline
from motiongrpo_jax.data import tfds_builder
from motiongrpo_jax.diffusion import sampler as sampler_lib
from motiongrpo_jax.eval import metrics as metrics_lib
from motiongrpo_jax.grpo import rewards as rewards_lib
from motiongrpo_jax.model import denoiser as denoiser_lib
from motiongrpo_jax.modes import pretrain
from motiongrpo_jax.train import checkpoints
from motiongrpo_jax.train import mesh as mesh_lib

METRICS_FILE = "eval_metrics.json"
PER_SEQUENCE_FILE = "eval_per_sequence.csv"
# Batch fields the evaluation reads (the pipeline yields more).
_FIELDS = ("betas", "T_world_root", "body_quats", "T_world_cpf",
           "height_from_floor", "mask", "seq_index", "start")
# Fewest valid output frames a window needs (jitter is a third difference).
MIN_FRAMES = 4


# --------------------------------------------------------------------------
# Config.


def sampler_config(config: ml_collections.ConfigDict) -> sampler_lib.SamplerConfig:
  """The `SamplerConfig` of `config.sampler` (only the final sample kept)."""
  return config_sections.to_dataclass(
      sampler_lib.SamplerConfig, config.sampler, "sampler",
      return_means=False, return_x0=False)


def validate(config: ml_collections.ConfigDict, num_devices: int | None = None) -> None:
  """Fails at start-up, naming the field, on an impossible config.

  Args:
    config: the eval config.
    num_devices: devices the batches are split over (default: all).
  """
  num_devices = jax.device_count() if num_devices is None else num_devices
  if not config.checkpoint:
    raise ValueError(
        "config.checkpoint is empty: pass --config.checkpoint=PATH (a training "
        "workdir, a checkpoint step directory, a model directory or an "
        "EgoAllo checkpoint directory)")
  if config.num_samples < 1:
    raise ValueError(f"config.num_samples={config.num_samples}: expected >= 1")
  if config.fps <= 0:
    raise ValueError(f"config.fps={config.fps}: expected > 0")
  data = config.data
  if data.seq_len < MIN_FRAMES:
    raise ValueError(f"config.data.seq_len={data.seq_len}: expected >= "
                     f"{MIN_FRAMES} (jitter needs {MIN_FRAMES} frames)")
  if data.stride < 0:
    raise ValueError(f"config.data.stride={data.stride}: expected >= 0 "
                     "(0 = L + 1)")
  if data.partial not in ("drop", "pad"):
    raise ValueError(f"config.data.partial={data.partial!r}: expected 'drop' "
                     "or 'pad'")
  if data.batch_size <= 0 or data.batch_size % num_devices:
    raise ValueError(f"config.data.batch_size={data.batch_size} must be a "
                     f"positive multiple of the number of devices "
                     f"({num_devices})")
  if data.max_windows < 0:
    raise ValueError(f"config.data.max_windows={data.max_windows}: expected "
                     ">= 0 (0 = all)")
  sampler_config(config)


def load_body(path: str) -> body_lib.BodyModel:
  """The built-in body for "", else SMPL-H from `path` (`config.body_model`)."""
  if not path:
    return body_lib.builtin_body()
  if not pathlib.Path(path).is_file():
    raise FileNotFoundError(f"config.body_model={path!r}: no such file "
                            "(expected an SMPL-H model.npz, or \"\")")
  return body_lib.load_smplh(path)


def load_model(path: str) -> tuple[denoiser_lib.Denoiser, Any]:
  """`checkpoints.load_denoiser` with errors naming `config.checkpoint`."""
  try:
    return checkpoints.load_denoiser(path)
  except FileNotFoundError as e:
    raise FileNotFoundError(f"config.checkpoint={path!r}: {e}") from e
  except Exception as e:  # Orbax and safetensors raise many types.
    raise ValueError(f"config.checkpoint={path!r}: cannot load a model "
                     f"({type(e).__name__}: {e})") from e


def prepare_data(config: ml_collections.ConfigDict, workdir: str) -> pathlib.Path:
  """The dataset directory (default `WORKDIR/data`), built if so configured.

  The synthetic build is the pretrain mode's, seeded by
  `config.data.synthetic_seed` (not `config.seed`, which only drives the
  sampler), so the demo evaluates the split that demo training held out.
  """
  view = ml_collections.ConfigDict({
      "seed": config.data.synthetic_seed,
      "data": {k: config.data[k] for k in (
          "data_dir", "build_synthetic_if_missing", "synthetic_num_sequences",
          "synthetic_num_frames")},
  })
  return pretrain.prepare_data(view, workdir)


# --------------------------------------------------------------------------
# Posing and scoring (pure, jit-friendly).


def _floor_z(batch: dict[str, jax.Array]) -> jax.Array:
  """(B,) floor height: CPF z minus its height above the floor, first pose."""
  return batch["T_world_cpf"][:, 0, 6] - batch["height_from_floor"][:, 0, 0]


def output_mask(mask: jax.Array) -> jax.Array:
  """(B, L) valid output frames of windows with a (B, L+1) pose mask.

  Output frame k (pose k+1) needs poses k and k+1 (its relative motion).
  """
  return mask[:, 1:] & mask[:, :-1]


def score_samples(x0: jax.Array, batch: dict[str, jax.Array],
                  body: body_lib.BodyModel, fps: float) -> dict[str, jax.Array]:
  """Every metric of every sample against the ground truth of its window.

  Args:
    x0: (B, N, L, d) N packed samples for each of B windows.
    batch: the windows (L + 1 poses each, fields of `eval_dataset`).
    body: the body model.
    fps: frames per second.

  Returns:
    {name: (B, N)} for every name of `metrics.METRIC_NAMES`, heights
    relative to the floor; NaN for windows without enough valid frames.
  """
  num_samples = x0.shape[1]
  floor_z = _floor_z(batch)
  pred = rewards_lib.pose_sample(x0, batch["T_world_cpf"][:, None, 1:], body)
  gt = rewards_lib.pose_ground_truth(
      batch["betas"], batch["T_world_root"][:, 1:], batch["body_quats"][:, 1:],
      body)
  down = jnp.stack([jnp.zeros_like(floor_z), jnp.zeros_like(floor_z),
                    floor_z], axis=-1)  # (B, 3)
  pred_joints = pred.joints - down[:, None, None, None, :]
  gt_joints = gt.joints - down[:, None, None, :]
  tile = lambda a: jnp.broadcast_to(  # pylint: disable=unnecessary-lambda-assignment
      a[:, None], (a.shape[0], num_samples) + a.shape[1:])
  return metrics_lib.compute_all(
      pred_joints, tile(gt_joints), pred.body_quats, tile(gt.body_quats),
      fps=fps, mask=tile(output_mask(batch["mask"])), floor_z=0.0)


def window_keys(key: jax.Array, seq_index: jax.Array, start: jax.Array,
                num_samples: int) -> jax.Array:
  """(B, N) keys fold_in(fold_in(fold_in(key, seq_index), start), sample)."""

  def one(i, s):
    k = jax.random.fold_in(jax.random.fold_in(key, jnp.maximum(i, 0)), s)
    return jax.vmap(lambda n: jax.random.fold_in(k, n))(
        jnp.arange(num_samples))

  return jax.vmap(one)(seq_index, start)


def make_eval_fn(model: denoiser_lib.Denoiser, body: body_lib.BodyModel,
                 config: sampler_lib.SamplerConfig, num_samples: int,
                 fps: float) -> functools.partial:
  """The jitted sampling-and-scoring step of a model.

  Samples N motions per window (each window's rollout is independent of the
  others in the batch: its own key, its frame mask given to the network) and
  scores them with `score_samples`. One compilation per batch shape.

  Args:
    model: the denoiser.
    body: the body model (passed as an argument, not baked into the program).
    config: sampler options.
    num_samples: N, samples per window.
    fps: frames per second.

  Returns:
    fn(params, batch, key) -> {metric: (B, N)}; `fn.func` is the `jax.jit`
    function (taking `body` as a keyword argument).
  """
  apply_fn = sampler_lib.model_apply_fn(model)
  dim = model.config.packed_dim

  def sample_one(params, Ts_world_cpf, floor_z, frame_mask, key):
    condition = sampler_lib.sampler_condition(Ts_world_cpf[None],
                                              floor_z[None])
    out = sampler_lib.rollout(apply_fn, params, condition, key=key,
                              mask=frame_mask[None], packed_dim=dim,
                              config=config)
    return out.xs[-1, 0]

  @jax.jit
  def fn(params, batch, key, body):
    keys = window_keys(key, batch["seq_index"], batch["start"], num_samples)
    per_sample = jax.vmap(sample_one, (None, None, None, None, 0))
    x0 = jax.vmap(per_sample, (None, 0, 0, 0, 0))(
        params, batch["T_world_cpf"], _floor_z(batch),
        output_mask(batch["mask"]), keys)  # shape [B, N, L, d]
    return score_samples(x0, batch, body, fps)

  return functools.partial(fn, body=body)


# --------------------------------------------------------------------------
# Driver.


def _decode(value: Any) -> str:
  return value.decode() if isinstance(value, bytes) else str(value)


def evaluate(eval_fn, params: Any, batches, key: jax.Array,
             mesh: jax.sharding.Mesh, max_windows: int = 0
             ) -> tuple[list[dict[str, Any]], int]:
  """Runs `eval_fn` over the batches and collects one row per window×sample.

  Args:
    eval_fn: from `make_eval_fn`.
    params: denoiser parameters (replicated on the mesh).
    batches: iterable of process-local numpy batches (`eval_dataset`).
    key: the base PRNG key.
    mesh: the device mesh.
    max_windows: stop after this many windows (0: all).

  Returns:
    (rows, num_windows): rows with seq_index, start, sample, num_frames and
    every metric, in window order, and the number of windows read. Windows
    with fewer than `MIN_FRAMES` valid output frames (possible with
    `partial="pad"`) are counted but have no rows.
  """
  rows, seen = [], 0
  for batch in batches:
    local = {k: batch[k] for k in _FIELDS}
    values = eval_fn(params, mesh_lib.global_batch(mesh, local), key)
    values = jax.tree.map(np.asarray, multihost_utils.process_allgather(
        values, tiled=True))
    info = multihost_utils.process_allgather(
        {"seq_index": local["seq_index"], "start": local["start"],
         "frames": np.sum(np.asarray(output_mask(local["mask"])), axis=1)},
        tiled=True)
    for b in range(info["seq_index"].shape[0]):
      if info["seq_index"][b] < 0:
        continue  # Filler.
      if max_windows and seen == max_windows:
        return rows, seen
      seen += 1
      if info["frames"][b] < MIN_FRAMES:
        continue
      for s in range(values[metrics_lib.METRIC_NAMES[0]].shape[1]):
        row = {"seq_index": int(info["seq_index"][b]),
               "start": int(info["start"][b]), "sample": s,
               "num_frames": int(info["frames"][b])}
        row.update({name: float(values[name][b, s])
                    for name in metrics_lib.METRIC_NAMES})
        rows.append(row)
    if max_windows and seen == max_windows:
      break
  return rows, seen


def write_results(workdir: str | pathlib.Path, rows: list[dict[str, Any]],
                  metadata: dict[str, Any]) -> dict[str, Any]:
  """Writes `eval_metrics.json` and `eval_per_sequence.csv`.

  Args:
    workdir: the run directory.
    rows: from `evaluate` (with a "name" per row).
    metadata: stored under "metadata" in the JSON file.

  Returns:
    The JSON content.
  """
  summary: dict[str, Any] = metrics_lib.summarize(
      {name: [r[name] for r in rows] for name in metrics_lib.METRIC_NAMES})
  summary["metadata"] = metadata
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / METRICS_FILE).write_text(json.dumps(summary, indent=2) + "\n")
  columns = (["seq_index", "name", "start", "sample", "num_frames"]
             + list(metrics_lib.METRIC_NAMES))
  with open(workdir / PER_SEQUENCE_FILE, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
  return summary


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Evaluates `config.checkpoint` in `workdir`; see the module docstring.

  Returns:
    The content of `eval_metrics.json`.
  """
  t0 = time.time()
  # --- (1) Config, mesh, model, body.
  mesh = mesh_lib.make_mesh()
  validate(config, mesh.devices.size)
  sampler = sampler_config(config)
  body = load_body(config.body_model)
  model, params = load_model(config.checkpoint)
  params = mesh_lib.put_replicated(mesh, params)

  # --- (2) Data: deterministic windows of L + 1 poses.
  data_dir = prepare_data(config, workdir)
  seq_len = config.data.seq_len
  window_len = seq_len + 1
  try:
    source = tfds_builder.load_split(data_dir, config.data.split)
  except ValueError as e:
    raise ValueError(f"config.data.split={config.data.split!r}: {e}") from e
  batches = pipeline.eval_dataset(
      source, window_len=window_len,
      batch_size=mesh_lib.local_batch_size(config.data.batch_size, mesh,
                                           "config.data.batch_size"),
      stride=config.data.stride or None, partial=config.data.partial,
      shard_index=jax.process_index(), shard_count=jax.process_count(),
      hands=False)

  # --- (3) Sample and score.
  eval_fn = make_eval_fn(model, body, sampler, config.num_samples, config.fps)
  logging.info("eval %s: %s on split %r of %s, L=%d, %d sample(s) per window",
               config.variant, config.checkpoint, config.data.split, data_dir,
               seq_len, config.num_samples)
  rows, num_windows = evaluate(eval_fn, params, batches,
                               jax.random.PRNGKey(config.seed), mesh,
                               config.data.max_windows)
  if not rows:
    raise ValueError(
        f"split {config.data.split!r} of {data_dir} has no window of "
        f"{window_len} poses (L={seq_len}) with at least {MIN_FRAMES} valid "
        f"frames (config.data.partial={config.data.partial!r})")
  names = {i: _decode(source[i]["name"]) for i in {r["seq_index"] for r in rows}}
  for r in rows:
    r["name"] = names[r["seq_index"]]

  # --- (4) Write.
  metadata = {
      "checkpoint": str(pathlib.Path(config.checkpoint).absolute()),
      "checkpoint_kind": checkpoints.checkpoint_kind(config.checkpoint),
      "data_dir": str(pathlib.Path(data_dir).absolute()),
      "split": config.data.split,
      "seq_len": seq_len,
      "window_len": window_len,
      "stride": config.data.stride or window_len,
      "partial": config.data.partial,
      "num_sequences": len(names),
      "num_windows": len({(r["seq_index"], r["start"]) for r in rows}),
      "num_windows_left_out": num_windows - len(
          {(r["seq_index"], r["start"]) for r in rows}),
      "num_samples": config.num_samples,
      "num_rows": len(rows),
      "seed": config.seed,
      "fps": config.fps,
      "body_model": config.body_model or "builtin",
      "sampler": config.sampler.to_dict(),
      "units": dict(metrics_lib.UNITS),
      "seconds": round(time.time() - t0, 2),
  }
  if jax.process_index() == 0:
    summary = write_results(workdir, rows, metadata)
  else:
    summary = metrics_lib.summarize(
        {n: [r[n] for r in rows] for n in metrics_lib.METRIC_NAMES})
    summary["metadata"] = metadata
  multihost_utils.sync_global_devices("eval: results written")
  logging.info("eval %s: %d windows × %d samples in %.1f s; %s",
               config.variant, metadata["num_windows"], config.num_samples,
               metadata["seconds"],
               ", ".join(f"{n} {summary[n]['mean']:.4g} {metrics_lib.UNITS[n]}"
                         for n in metrics_lib.METRIC_NAMES))
  return summary
