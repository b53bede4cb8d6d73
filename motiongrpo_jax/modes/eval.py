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
     (`eval/posing.pose_sample`): body rotations onto SO(3), the predicted
     per-frame betas, and the pelvis placed so that the predicted body's CPF
     sits on the INPUT CPF pose of its frame (frames 1..L of the window).
     The ground truth is posed from the dataset's pelvis, rotations and
     betas with the same body model (`eval/posing.pose_ground_truth`).
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

Sampling and scoring are `eval/evaluate.py`'s (GRPO's too): sample s of the
window starting at pose `start` of sequence `seq_index` uses the key
fold_in(fold_in(fold_in(key(seed), seq_index), start), s), so results do not
depend on the batch size or device count. One jitted program per batch
shape; the last batch is completed with masked filler windows, so one shape
serves the whole split.
"""

from __future__ import annotations

import csv
import json
import pathlib
import time
from typing import Any

import jax
import ml_collections
from absl import logging
from jax.experimental import multihost_utils

from motiongrpo_jax import body as body_lib
from motiongrpo_jax import config_sections
from motiongrpo_jax.data import condition_noise
from motiongrpo_jax.data import pipeline
from motiongrpo_jax.data import tfds_builder
from motiongrpo_jax.diffusion import sampler as sampler_lib
from motiongrpo_jax.eval import evaluate as evaluate_lib
from motiongrpo_jax.eval import metrics as metrics_lib
from motiongrpo_jax.eval import paired
from motiongrpo_jax.guidance import residuals as guidance_lib
from motiongrpo_jax.train import checkpoints
from motiongrpo_jax.train import inputs
from motiongrpo_jax.train import mesh as mesh_lib

METRICS_FILE = "eval_metrics.json"
PER_SEQUENCE_FILE = "eval_per_sequence.csv"


# --------------------------------------------------------------------------
# Config.


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
  if config.data.fps <= 0:
    raise ValueError(f"config.data.fps={config.data.fps}: expected > 0")
  data = config.data
  if data.seq_len < evaluate_lib.MIN_FRAMES:
    raise ValueError(f"config.data.seq_len={data.seq_len}: expected >= "
                     f"{evaluate_lib.MIN_FRAMES} (jitter needs {evaluate_lib.MIN_FRAMES} frames)")
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
  config_sections.to_dataclass(
      sampler_lib.SamplerConfig, config.sampler, "sampler", return_means=False)
  guidance = config_sections.to_dataclass(
      guidance_lib.GuidanceConfig, config.guidance, "guidance")
  wrist_noise(config)
  body_lib.check_config(config.body)


def wrist_noise(config: ml_collections.ConfigDict
                ) -> condition_noise.ConditionNoiseConfig:
  """The noise of the ground-truth wrist targets (validated)."""
  return config_sections.to_dataclass(
      condition_noise.ConditionNoiseConfig, config.wrist_target_noise,
      "wrist_target_noise", fps=config.data.fps)


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
  return inputs.prepare_data(view, workdir)


# --------------------------------------------------------------------------
# Driver.


def _decode(value: Any) -> str:
  return value.decode() if isinstance(value, bytes) else str(value)


def summarize(rows: list[dict[str, Any]],
              metadata: dict[str, Any]) -> dict[str, Any]:
  """The content of `eval_metrics.json`.

  With guidance on, "unguided" summarises the sampler's own samples and
  "guidance_change" holds each metric's paired change guided vs unguided
  (`eval/paired.py`: window means, bootstrap 95 % interval).
  """
  summary: dict[str, Any] = metrics_lib.summarize(
      {name: [r[name] for r in rows] for name in metrics_lib.METRIC_NAMES})
  unguided = evaluate_lib.UNGUIDED
  if rows and unguided + metrics_lib.METRIC_NAMES[0] in rows[0]:
    summary["unguided"] = metrics_lib.summarize(
        {n: [r[unguided + n] for r in rows] for n in metrics_lib.METRIC_NAMES})
    windows = evaluate_lib.window_means(rows)
    summary["guidance_change"] = {
        n: paired.paired_change(windows[unguided + n], windows[n],
                                seed=metadata["seed"])
        for n in metrics_lib.METRIC_NAMES}
  summary["metadata"] = metadata
  return summary


def write_results(workdir: str | pathlib.Path, rows: list[dict[str, Any]],
                  metadata: dict[str, Any]) -> dict[str, Any]:
  """Writes `eval_metrics.json` (`summarize`) and `eval_per_sequence.csv`.

  Args:
    workdir: the run directory.
    rows: from `evaluate` (with a "name" per row).
    metadata: stored under "metadata" in the JSON file.

  Returns:
    The JSON content.
  """
  summary = summarize(rows, metadata)
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / METRICS_FILE).write_text(json.dumps(summary, indent=2) + "\n")
  columns = ["seq_index", "name", "start", "sample", "num_frames"] + [
      n for n in rows[0] if n not in ("seq_index", "name", "start", "sample",
                                      "num_frames")]
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
  sampler = config_sections.to_dataclass(
      sampler_lib.SamplerConfig, config.sampler, "sampler", return_means=False)
  guidance = config_sections.to_dataclass(
      guidance_lib.GuidanceConfig, config.guidance, "guidance")
  body = body_lib.from_config(config.body)
  model, params = checkpoints.load_denoiser_option(
      config.checkpoint, "config.checkpoint")
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
  eval_fn = evaluate_lib.make_eval_fn(
      sampler_lib.model_apply_fn(model), model.config.packed_dim, body,
      sampler, config.num_samples, config.data.fps, guidance=guidance,
      wrist_target_noise=wrist_noise(config))
  logging.info("eval %s: %s on split %r of %s, L=%d, %d sample(s) per window",
               config.variant, config.checkpoint, config.data.split, data_dir,
               seq_len, config.num_samples)
  rows, num_windows = evaluate_lib.evaluate(
      eval_fn, params, batches, jax.random.PRNGKey(config.seed), mesh,
      config.data.max_windows)
  if not rows:
    raise ValueError(
        f"split {config.data.split!r} of {data_dir} has no window of "
        f"{window_len} poses (L={seq_len}) with at least {evaluate_lib.MIN_FRAMES} valid "
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
      "fps": config.data.fps,
      "body": config.body.to_dict(),
      "sampler": config.sampler.to_dict(),
      "guidance": config.guidance.to_dict(),
      "wrist_target_noise": config.wrist_target_noise.to_dict(),
      "units": dict(metrics_lib.UNITS),
      "seconds": round(time.time() - t0, 2),
  }
  if jax.process_index() == 0:
    summary = write_results(workdir, rows, metadata)
  else:
    summary = summarize(rows, metadata)
  multihost_utils.sync_global_devices("eval: results written")
  logging.info("eval %s: %d windows × %d samples in %.1f s; %s",
               config.variant, metadata["num_windows"], config.num_samples,
               metadata["seconds"],
               ", ".join(f"{n} {summary[n]['mean']:.4g} {metrics_lib.UNITS[n]}"
                         for n in metrics_lib.METRIC_NAMES))
  return summary
