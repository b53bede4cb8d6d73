"""Entry point: `python -m motiongrpo_jax.main --config=configs/X.py[:variant]`.

Kept short on purpose: flags, config, joining a multi-process run (if one is
set up: `train/distributed.py`), workdir, then one call into the mode's
`run(config, workdir)`. The logic lives in importable modules that a notebook
can call too.
"""

from __future__ import annotations

import datetime
import pathlib
import shutil

import jax
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from motiongrpo_jax import cli
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
  run = modes.get(config.mode)  # Fails before anything is written.
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


def _holds_checkpoint(workdir: pathlib.Path) -> bool:
  return any(any(d.iterdir()) for d in workdir.rglob("checkpoints")
             if d.is_dir())


if __name__ == "__main__":
  cli.run(main)
