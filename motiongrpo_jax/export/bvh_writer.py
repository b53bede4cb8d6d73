"""Motion → BVH (Biovision hierarchy), for Blender and other animation tools.

The file has SMPL's 22 joints under their SMPL names (`skeleton.JOINT_NAMES`),
the pelvis as ROOT. Conventions, chosen so that tools open it as is and our
own BVH importer (`data.bvh` + `data.retarget` with the shipped `smpl`
preset) reads it back:

- **Axes: Y up.** The file's frame is SMPL's canonical one (+y up, +z the
  body's forward at rest, +x its left). Our world is z up; a point goes from
  world to file as (x, y, z) → (x, z, −y), the inverse of what Blender's BVH
  importer applies with its defaults (forward −Z, up Y), so in Blender the
  motion lands at the same coordinates as in our world.
- **Units: metres** (Blender's unit; import with scale 1). Values are
  written with 6 decimals (1 µm, 10⁻⁶ degree).
- **Rest pose**: the zero pose is the body's T-pose; each OFFSET is the shaped
  rest bone `J_j(β) − J_parent(β)` of the body model (the built-in body by
  default), so local joint frames at rest are aligned with the file's axes
  and the channels are the local rotations themselves. The ROOT OFFSET is
  zero: its position channels carry the world pelvis position.
- **Channels**: ROOT `Xposition Yposition Zposition` then three rotation
  channels, every other joint three rotation channels: Euler angles in
  degrees, intrinsic, composed in the order listed (as the format defines;
  `Yrotation Zrotation Xrotation` is R = Ry·Rz·Rx). The order is chosen per
  joint so that the middle angle, where an Euler decomposition locks at
  ±90°, is one that human motion keeps small: `Y Z X` for the root, torso
  and legs (yaw first, flexion last; the middle angle is sideways bending),
  `Z X Y` for the collars and arms, whose bones lie along x (the middle
  angle is the twist about the bone).
- **Frame time** 1 / fps (1/30 s for our models).
- Leaf joints (head, wrists, feet) get an `End Site` 8 cm along their bone,
  so that tools draw them with a length.

One shape for the whole clip (BVH has no per-frame bone lengths). Hands are
not written: the body has SMPL's 22 joints (export hands with `amass_npz`).
"""

from __future__ import annotations

import os
import pathlib
import warnings

import jax.numpy as jnp
import numpy as np
from scipy.spatial.transform import Rotation

from motiongrpo_jax.body import model as body_model
from motiongrpo_jax.body import skeleton
from motiongrpo_jax.export import motion as motion_lib

# World (z up) → file (y up): (x, y, z) → (x, z, −y). The transpose of
# `data.retarget.WORLD_FROM_CANONICAL`.
FILE_FROM_WORLD = np.array([[1.0, 0.0, 0.0],
                            [0.0, 0.0, 1.0],
                            [0.0, -1.0, 0.0]])
# Intrinsic Euler orders (scipy's upper-case convention, R = R1·R2·R3).
TORSO_LEG_ORDER = "YZX"
ARM_ORDER = "ZXY"
ARM_JOINTS = frozenset(
    f"{side}_{part}" for side in ("left", "right")
    for part in ("collar", "shoulder", "elbow", "wrist"))
POSITION_CHANNELS = ("Xposition", "Yposition", "Zposition")
END_SITE_LENGTH = 0.08  # metres
DECIMALS = 6


def rest_joints(body: body_model.BodyModel, betas: np.ndarray) -> np.ndarray:
  """The body's shaped rest joints, SMPL's 22, canonical (= file) axes.

  Args:
    body: any body model (SMPL-H's hand joints are left out).
    betas: (16,).

  Returns:
    (22, 3) pelvis-relative positions, metres.
  """
  joints = body.joints_rest(jnp.asarray(betas, jnp.float32))
  return np.asarray(joints, np.float64)[:len(skeleton.JOINT_NAMES)]


def euler_order(joint: int) -> str:
  """Rotation order of SMPL joint `joint` (see the module docstring)."""
  return (ARM_ORDER if skeleton.JOINT_NAMES[joint] in ARM_JOINTS
          else TORSO_LEG_ORDER)


def rotation_channels(joint: int) -> tuple[str, ...]:
  """The three rotation channel names of SMPL joint `joint`."""
  return tuple(f"{axis}rotation" for axis in euler_order(joint))


def _children(joint: int) -> list[int]:
  return [k for k, p in enumerate(skeleton.PARENTS) if p == joint]


def hierarchy_text(rest: np.ndarray) -> str:
  """The HIERARCHY block for rest joints `rest (22, 3)`."""
  lines = ["HIERARCHY"]
  number = lambda v: " ".join(f"{x:.{DECIMALS}f}" for x in v)

  def joint(j: int, depth: int) -> None:
    pad = "  " * depth
    parent = skeleton.PARENTS[j]
    offset = np.zeros(3) if parent < 0 else rest[j] - rest[parent]
    keyword = "ROOT" if parent < 0 else "JOINT"
    channels = (POSITION_CHANNELS if parent < 0 else ()) + rotation_channels(j)
    lines.append(f"{pad}{keyword} {skeleton.JOINT_NAMES[j]}")
    lines.append(f"{pad}{{")
    lines.append(f"{pad}  OFFSET {number(offset)}")
    lines.append(f"{pad}  CHANNELS {len(channels)} {' '.join(channels)}")
    kids = _children(j)
    for k in kids:
      joint(k, depth + 1)
    if not kids:
      bone = offset / max(np.linalg.norm(offset), 1e-9)
      lines.append(f"{pad}  End Site")
      lines.append(f"{pad}  {{")
      lines.append(f"{pad}    OFFSET {number(END_SITE_LENGTH * bone)}")
      lines.append(f"{pad}  }}")
    lines.append(f"{pad}}}")

  joint(0, 0)
  return "\n".join(lines) + "\n"


def _euler_degrees(wxyz: np.ndarray, order: str) -> np.ndarray:
  """(..., 4) `wxyz` → (..., 3) intrinsic Euler angles (degrees), `order`.

  At the lock (middle angle ±90°) the first angle takes the whole turn
  about the aligned axes; the rotation is still exact.
  """
  shape = wxyz.shape[:-1]
  xyzw = np.roll(wxyz.reshape(-1, 4), -1, axis=-1)
  with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Gimbal lock detected")
    angles = Rotation.from_quat(xyzw).as_euler(order, degrees=True)
  return angles.reshape(shape + (3,))


def frame_values(motion: motion_lib.Motion) -> np.ndarray:
  """Channel values of every frame, in the hierarchy's channel order.

  Args:
    motion: the motion.

  Returns:
    (T, 3 + 3·22) values: root position (metres, file axes), root Euler
    angles, then each joint's Euler angles (`euler_order`) in depth-first
    file order.
  """
  root_rotation = Rotation.from_quat(
      np.roll(motion.T_world_root[:, :4], -1, axis=-1)).as_matrix()
  file_root = FILE_FROM_WORLD @ root_rotation  # (T, 3, 3)
  root_wxyz = np.roll(Rotation.from_matrix(file_root).as_quat(), 1, axis=-1)
  local = np.concatenate([root_wxyz[:, None], motion.body_quats], axis=1)
  position = motion.T_world_root[:, 4:] @ FILE_FROM_WORLD.T
  angles = [_euler_degrees(local[:, j], euler_order(j))
            for j in depth_first_order()]
  return np.concatenate([position] + angles, axis=1)


def depth_first_order() -> list[int]:
  """SMPL joint indices in the order the hierarchy lists them."""
  order = []

  def visit(j):
    order.append(j)
    for k in _children(j):
      visit(k)

  visit(0)
  return order


def bvh_text(motion: motion_lib.Motion,
             body: body_model.BodyModel | None = None) -> str:
  """The whole BVH file of a motion.

  Args:
    motion: the motion (its betas shape the skeleton).
    body: body model for the rest joints; the built-in body when None.

  Returns:
    The file's text.
  """
  body = body_model.builtin_body() if body is None else body
  rest = rest_joints(body, motion.betas)
  values = frame_values(motion)
  lines = [hierarchy_text(rest), "MOTION", f"Frames: {motion.num_frames}",
           f"Frame Time: {1.0 / motion.fps:.8f}"]
  fmt = f"%.{DECIMALS}f"
  lines += [" ".join(fmt % v for v in row) for row in values]
  return "\n".join(lines) + "\n"


def write_bvh(path: str | os.PathLike, motion: motion_lib.Motion,
              body: body_model.BodyModel | None = None) -> pathlib.Path:
  """Writes a motion as a `.bvh` file (see the module docstring).

  Args:
    path: output file.
    motion: the motion.
    body: body model for the rest joints; the built-in body when None.

  Returns:
    The path written.
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(bvh_text(motion, body), encoding="utf-8")
  return path
