"""Packed samples and ground truth posed as world joints: what the metrics and
the rewards compare (EgoAllo's evaluation protocol: the pelvis placed so that
the posed body's CPF is the input CPF)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import jax

from motiongrpo_jax import geometry
from motiongrpo_jax.body import model as body_model
from motiongrpo_jax.eval import metrics
from motiongrpo_jax.model import packing

# Joints compared: the pelvis and the 21 body joints (as the metrics).
_JOINTS = metrics.NUM_JOINTS


class PosedMotion(NamedTuple):
  """What the rewards (and the evaluation's metrics) compare, per frame.

  Attributes:
    body_rotmats: (..., L, 21, 3, 3) local body rotations.
    joints: (..., L, 22, 3) world positions of the pelvis and the 21 body
      joints, metres (an SMPL-H body's hand joints are left out).
    body_quats: (..., L, 21, 4) the same local rotations `wxyz` (None where
      not needed).
  """
  body_rotmats: jax.Array
  joints: jax.Array
  body_quats: jax.Array | None = None


def pose_sample(x0: jax.Array, T_world_cpf: jax.Array,
                body: body_model.BodyModel) -> PosedMotion:
  """World joints of a sampled packed state, root placed from the CPF.

  The body rotations are projected onto SO(3) (det +1; EgoAllo's U·Vᵀ may
  leave a reflection, which has no quaternion), betas are the sample's own
  per frame, and the pelvis is placed so that the posed body's CPF is
  `T_world_cpf` (EgoAllo's evaluation protocol).

  Args:
    x0: (..., L, d) packed sample (d 226 or 496).
    T_world_cpf: (..., L, 7) clean (input) world CPF poses of frames 1..L.
    body: the body model.

  Returns:
    The posed motion.
  """
  fields = packing.unpack(x0, x0.shape[-1] == packing.DIM_WITH_HANDS)
  rotmats = geometry.project_to_so3(fields.body_rotmats)
  quats = geometry.matrix_to_quat(rotmats)
  T_world_root = body.T_world_root_from_cpf(fields.betas, T_world_cpf, quats)
  joints = body.forward_kinematics(fields.betas, T_world_root, quats)
  return PosedMotion(body_rotmats=rotmats, joints=joints[..., :_JOINTS, 4:],
                     body_quats=quats)


def window_ground_truth(batch: Mapping[str, jax.Array],
                        body: body_model.BodyModel) -> PosedMotion:
  """The ground truth of a batch of windows (L + 1 poses: `betas`,
  `T_world_root`, `body_quats`) posed on its output frames 1..L, (B, L, …)."""
  return pose_ground_truth(batch["betas"], batch["T_world_root"][:, 1:],
                           batch["body_quats"][:, 1:], body)


def pose_ground_truth(betas: jax.Array, T_world_root: jax.Array,
                      body_quats: jax.Array,
                      body: body_model.BodyModel) -> PosedMotion:
  """World joints of the ground truth.

  Args:
    betas: (..., 16) shape of each sequence.
    T_world_root: (..., L, 7) pelvis poses.
    body_quats: (..., L, 21, 4) local body rotations.
    body: the body model.

  Returns:
    The posed motion.
  """
  joints = body.forward_kinematics(betas[..., None, :], T_world_root,
                                   body_quats)
  return PosedMotion(body_rotmats=geometry.quat_to_matrix(body_quats),
                     joints=joints[..., :_JOINTS, 4:], body_quats=body_quats)
