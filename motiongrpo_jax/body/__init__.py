"""Body models: the built-in skeleton and SMPL-H, behind one interface."""

import pathlib

from motiongrpo_jax.body.model import BodyModel
from motiongrpo_jax.body.model import builtin_body
from motiongrpo_jax.body.model import NUM_BETAS
from motiongrpo_jax.body.model import SkeletonBody
from motiongrpo_jax.body.smplh import load_smplh
from motiongrpo_jax.body.smplh import SmplhBody

__all__ = [
    "BodyModel", "NUM_BETAS", "SkeletonBody", "SmplhBody", "builtin_body",
    "check_config", "from_config", "load_smplh",
]


def check_config(section) -> None:
  """Raises ValueError naming the option for a `body` config section
  (`config_sections.body`) that names no body."""
  if section.model not in ("builtin", "smplh"):
    raise ValueError(f"config.body.model={section.model!r}: expected "
                     "'builtin' or 'smplh'")
  if section.model == "smplh" and not section.smplh_npz:
    raise ValueError("config.body.model='smplh' needs config.body.smplh_npz")


def from_config(section) -> BodyModel:
  """The body of a `body` config section: built-in, or SMPL-H."""
  check_config(section)
  if section.model == "builtin":
    return builtin_body()
  if not pathlib.Path(section.smplh_npz).is_file():
    raise FileNotFoundError(
        f"config.body.smplh_npz={section.smplh_npz!r}: no such file (expected "
        "an SMPL-H model.npz)")
  return load_smplh(section.smplh_npz)
