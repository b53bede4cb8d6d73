"""Entry point: `python -m motiongrpo_jax.main --config=configs/X.py[:variant]`.

Kept short on purpose: flags, config, joining a multi-process run (if one is
set up: `train/distributed.py`), workdir, then `run(config, workdir)`: the
mode's own `run`, after the runs of other modes it needs (the GRPO demo's
base model and critic, `config.bootstrap`). The modes are libraries' drivers
that only this module imports; a notebook calls `run` too.
"""

from __future__ import annotations

import datetime
import pathlib
import shutil

from typing import Any

import jax
import ml_collections
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from motiongrpo_jax import cli
from motiongrpo_jax import configs
from motiongrpo_jax import modes
from motiongrpo_jax import run_record
from motiongrpo_jax.train import distributed

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file, e.g. configs/pretrain.py:demo.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None,
    "Run directory (checkpoints, logs, resolved config). Default: a new "
    "timestamped folder under ./runs/. Re-running with the same workdir "
    "resumes.")
_DISTRIBUTED = flags.DEFINE_enum(
    "distributed", None, list(distributed.MODES),
    "Multi-process run: 'auto' (TPU pod, SLURM, Open MPI detect it), "
    "'explicit' (the three flags below) or 'off'. Default: "
    f"${distributed.ENV_MODE}, else explicit when a coordinator is given, "
    "else auto inside a multi-task SLURM / Open MPI job, else off.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None,
    f"host:port of process 0 (default ${distributed.ENV_COORDINATOR}).")
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None,
    f"Number of processes (default ${distributed.ENV_NUM_PROCESSES}).")
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", None,
    f"This process's id, 0 … num_processes − 1 (default "
    f"${distributed.ENV_PROCESS_ID}).")
flags.mark_flags_as_required(["config"])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  try:
    config = _CONFIG.value
    config.mode  # pylint: disable=pointless-statement
  except (ValueError, OSError) as e:  # config_flags reports a missing file
    # only when the config is first used.
    reason = [l.strip() for l in str(e).splitlines() if l.strip()][-1]
    raise app.UsageError(
        f"{flags.FLAGS['config'].serialize()}: {reason}") from e
  workdir = _WORKDIR.value
  # Before anything touches a device.
  distributed.initialize(distributed.settings(
      mode=_DISTRIBUTED.value, coordinator_address=_COORDINATOR.value,
      num_processes=_NUM_PROCESSES.value, process_id=_PROCESS_ID.value))
  if workdir is None and jax.process_count() > 1:
    raise app.UsageError("--workdir is required with several processes: "
                         "all must use the same directory, on storage every "
                         "process sees")
  if workdir is None:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    workdir = str(pathlib.Path("runs") / f"{config.mode}-{stamp}")
  modes.get(config.mode)  # Fails before anything is written.
  created = not pathlib.Path(workdir).exists()
  run_record.write(workdir, config)
  logging.info("mode %s, workdir %s", config.mode, workdir)
  try:
    run(config, workdir)
  except Exception:
    # A run that failed before its first checkpoint leaves nothing behind; a
    # workdir that existed before (a run to resume) is never touched.
    if created and not _holds_checkpoint(pathlib.Path(workdir)):
      shutil.rmtree(workdir, ignore_errors=True)
    raise


def run(config: ml_collections.ConfigDict, workdir: str) -> Any:
  """Runs `config.mode` in `workdir` and returns what its `run` returns.

  The GRPO demo (`config.bootstrap.enabled`) first makes the checkpoints its
  config leaves empty: a base model pretrained in `WORKDIR/base` and, when
  the perceptual reward is on, a critic trained in `WORKDIR/critic` (both
  resume when partly done); their paths are set in `config`.
  """
  run_mode = modes.get(config.mode)
  if config.mode == "grpo" and config.bootstrap.enabled:
    grpo = modes.load("grpo")
    grpo.validate(config, before_bootstrap=True)
    if not config.init_checkpoint:
      config.init_checkpoint = _bootstrap(config, workdir, "pretrain")
    if not config.critic_checkpoint and grpo.needs_critic(
        config, grpo.ablation_settings(config)):
      config.critic_checkpoint = _bootstrap(config, workdir, "critic")
  return run_mode(config, workdir)


def _bootstrap(config: ml_collections.ConfigDict, workdir: str,
               mode: str) -> str:
  """Runs `configs/<mode>.py:demo` for the GRPO demo in WORKDIR/base or
  WORKDIR/critic, on the demo's data and seed; returns that workdir."""
  sub_dir = str(pathlib.Path(workdir) / ("base" if mode == "pretrain"
                                         else "critic"))
  sub = configs.get(mode, "demo")
  sub.seed = config.seed
  sub.data.data_dir = config.data.data_dir or str(pathlib.Path(workdir) / "data")
  if mode == "pretrain":
    sub.data.synthetic_num_sequences = config.data.synthetic_num_sequences
    sub.data.synthetic_num_frames = config.data.synthetic_num_frames
    num_steps = config.bootstrap.pretrain_steps
  else:
    sub.base_checkpoint = config.init_checkpoint
    num_steps = config.bootstrap.critic_steps
  if num_steps:  # 0: the demo config's; validate and save at the end.
    sub.train.num_steps = num_steps
    sub.train.eval_every_steps = min(sub.train.eval_every_steps, num_steps)
    sub.train.checkpoint_every_steps = min(sub.train.checkpoint_every_steps,
                                           num_steps)
  logging.info("grpo demo: %s run in %s", mode, sub_dir)
  run_record.write(sub_dir, sub)
  modes.get(mode)(sub, sub_dir)
  return sub_dir


def _holds_checkpoint(workdir: pathlib.Path) -> bool:
  return any(any(d.iterdir()) for d in workdir.rglob("checkpoints")
             if d.is_dir())


if __name__ == "__main__":
  cli.run(main)
