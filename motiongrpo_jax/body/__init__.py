"""Body models: the built-in skeleton and SMPL-H, behind one interface."""

from motiongrpo_jax.body.model import BodyModel
from motiongrpo_jax.body.model import builtin_body
from motiongrpo_jax.body.model import NUM_BETAS
from motiongrpo_jax.body.model import SkeletonBody
from motiongrpo_jax.body.smplh import load_smplh
from motiongrpo_jax.body.smplh import SmplhBody

__all__ = [
    "BodyModel", "NUM_BETAS", "SkeletonBody", "SmplhBody", "builtin_body",
    "load_smplh",
]
