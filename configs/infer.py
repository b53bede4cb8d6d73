"""Config for the `infer` mode: `--config=configs/infer.py[:variant]`."""

import ml_collections


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
  """Returns the locked-ready config for a variant."""
  config = ml_collections.ConfigDict()
  # Which mode main.py runs.
  config.mode = "infer"
  # Experiment variant (recorded for provenance).
  config.variant = variant
  # Seed of every random stream in the run (data, init, sampling).
  config.seed = 0
  return config
