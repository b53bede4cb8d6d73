"""Imports an EgoAllo PyTorch checkpoint into our Flax denoiser.

    python -m motiongrpo_jax.tools.convert_egoallo \\
        --checkpoint_dir=EXP/checkpoints_N --output_dir=DIR

reads `EXP/model_config.yaml` and `EXP/checkpoints_N/model.safetensors`
(`model/egoallo_import.py`: the name mapping, no PyTorch) and writes DIR with
`params_io.save_model` (Orbax params + `model_config.json`).
"""

from __future__ import annotations

from absl import app
from absl import flags
from absl import logging
import jax
import numpy as np

from motiongrpo_jax import cli
from motiongrpo_jax.model import egoallo_import
from motiongrpo_jax.model import params_io

FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  checkpoint_dir, output_dir = FLAGS.checkpoint_dir, FLAGS.output_dir
  model, params = egoallo_import.load_egoallo_checkpoint(checkpoint_dir)
  params_io.save_model(output_dir, model.config, params,
                       overwrite=FLAGS.overwrite)
  count = sum(int(np.size(p)) for p in jax.tree.leaves(params))
  logging.info("wrote %s (%d parameters)", output_dir, count)
  print(f"converted {checkpoint_dir} -> {output_dir} ({count} parameters)")


def _define_flags() -> None:
  # Defined only when run as a program, so that importing this module as a
  # library registers no global flags.
  flags.DEFINE_string(
      "checkpoint_dir", None,
      "EgoAllo checkpoint directory (EXP/checkpoints_N, with "
      "EXP/model_config.yaml).", required=True)
  flags.DEFINE_string("output_dir", None, "Where to write the converted model.",
                      required=True)
  flags.DEFINE_bool("overwrite", False,
                    "Replace output_dir if it already exists.")


if __name__ == "__main__":
  _define_flags()
  cli.run(main)
