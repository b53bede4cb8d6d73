"""Export of motion to animation formats: BVH and AMASS-style npz."""

from motiongrpo_jax.export.amass_npz import amass_arrays, write_amass_npz
from motiongrpo_jax.export.bvh_writer import bvh_text, write_bvh
from motiongrpo_jax.export.motion import Motion, motion_from_outputs

__all__ = ["Motion", "amass_arrays", "bvh_text", "motion_from_outputs",
           "write_amass_npz", "write_bvh"]
