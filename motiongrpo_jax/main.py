"""Entry point: `python -m motiongrpo_jax.main --config=configs/X.py[:variant]`.

Kept short on purpose: flags, config, workdir, then one call into the mode's
`run(config, workdir)`. The logic lives in importable modules that a notebook
can call too.
"""

from __future__ import annotations

import datetime
import pathlib

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from motiongrpo_jax import modes
from motiongrpo_jax import run_record

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file, e.g. configs/pretrain.py:demo.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None,
    "Run directory (checkpoints, logs, resolved config). Default: a new "
    "timestamped folder under ./runs/. Re-running with the same workdir "
    "resumes.")
flags.mark_flags_as_required(["config"])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  workdir = _WORKDIR.value
  if workdir is None:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    workdir = str(pathlib.Path("runs") / f"{config.mode}-{stamp}")
  run = modes.get(config.mode)  # Fails before anything is written.
  run_record.write(workdir, config)
  logging.info("mode %s, workdir %s", config.mode, workdir)
  run(config, workdir)


if __name__ == "__main__":
  app.run(main)
