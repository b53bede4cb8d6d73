"""Motion → an AMASS-style `.npz` (SMPL-H layout), readable by `data.amass`.

Keys written (AMASS's SMPL-H release):

- `poses (T, 156)` axis-angle, radians: root orientation (3), the 21 body
  joints (63), then the 30 hand joints (90: 15 left, 15 right; zero, i.e.
  the flat rest hand, when the motion has no hands). With `hands=False` the
  array is `(T, 66)` (root + body only; SMPL-style tools read that, our
  AMASS importer needs 156).
- `trans (T, 3)`: SMPL's translation, which is *not* the pelvis position:
  SMPL rotates the body about its shaped rest pelvis `J_0(β)`, so the world
  pelvis is `trans + J_0(β)` (`data.amass.rest_pelvis`; zero for the
  built-in body, whose rest joints are pelvis-relative). Written as pelvis
  position − `J_0(β)` of the given body.
- `betas (16,)`, `mocap_framerate` (float), `gender` ("neutral").
- The newer AMASS split keys too: `root_orient (T, 3)`, `pose_body (T, 63)`,
  `pose_hand (T, 90)` (when written with hands).

World frame: ours (z up, metres), which is AMASS's.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
from scipy.spatial.transform import Rotation

from motiongrpo_jax.body import model as body_model
from motiongrpo_jax.data import amass
from motiongrpo_jax.export import motion as motion_lib

GENDER = "neutral"


def _wxyz_to_axis_angle(wxyz: np.ndarray) -> np.ndarray:
  """(..., 4) `wxyz` → (..., 3) axis-angle (angle ≤ π)."""
  shape = wxyz.shape[:-1]
  xyzw = np.roll(wxyz.reshape(-1, 4), -1, axis=-1)
  return Rotation.from_quat(xyzw).as_rotvec().reshape(shape + (3,))


def amass_arrays(motion: motion_lib.Motion,
                 body: body_model.BodyModel | None = None,
                 hands: bool = True) -> dict[str, np.ndarray]:
  """The arrays of an AMASS-style file for a motion.

  Args:
    motion: the motion.
    body: the body whose rest pelvis `trans` is relative to (SMPL-H from
      `body.load_smplh` for a file that SMPL-H tools pose correctly); the
      built-in body when None.
    hands: write `poses (T, 156)` with hands (zero when the motion has
      none); else `(T, 66)`.

  Returns:
    name → array (see the module docstring).
  """
  body = body_model.builtin_body() if body is None else body
  num = motion.num_frames
  root = _wxyz_to_axis_angle(motion.T_world_root[:, :4])
  pose_body = _wxyz_to_axis_angle(motion.body_quats).reshape(num, -1)
  trans = motion.T_world_root[:, 4:] - amass.rest_pelvis(body, motion.betas)
  out = {"poses": np.concatenate([root, pose_body], axis=1),
         "trans": trans,
         "betas": np.asarray(motion.betas, np.float64),
         "mocap_framerate": np.float64(motion.fps),
         "gender": np.array(GENDER),
         "root_orient": root, "pose_body": pose_body}
  if hands:
    if motion.hand_quats is None:
      pose_hand = np.zeros((num, 2 * motion_lib.NUM_HAND_JOINTS * 3))
    else:
      pose_hand = _wxyz_to_axis_angle(motion.hand_quats).reshape(num, -1)
    out["poses"] = np.concatenate([out["poses"], pose_hand], axis=1)
    out["pose_hand"] = pose_hand
  return out


def write_amass_npz(path: str | os.PathLike, motion: motion_lib.Motion,
                    body: body_model.BodyModel | None = None,
                    hands: bool = True) -> pathlib.Path:
  """Writes a motion as an AMASS-style `.npz` (see `amass_arrays`).

  Args:
    path: output file.
    motion: the motion.
    body: the body whose rest pelvis `trans` is relative to; built-in when
      None.
    hands: write the 156-value SMPL-H poses (else 66).

  Returns:
    The path written.
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, "wb") as f:
    np.savez(f, **amass_arrays(motion, body, hands))
  return path
