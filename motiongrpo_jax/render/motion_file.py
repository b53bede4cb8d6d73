"""What the renderers draw: one motion's joints, head path and floor.

`load_motion` reads an npz in the inference output layout
(`modes/infer.py`: `joints_world (S, T, 22, 3)`, `Ts_world_cpf (T, 7)`,
`floor_z`, `fps`, `contacts`) or a plain `joints_world (T, 22, 3)`. Without
`joints_world` the joints are posed from `Ts_world_root`, `body_quats` and
`betas` (EgoAllo's output layout) with the built-in body.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

import numpy as np

from motiongrpo_jax.body import skeleton

NUM_JOINTS = len(skeleton.PARENTS)
DEFAULT_FPS = 30.0


@dataclasses.dataclass(frozen=True)
class Motion:
  """One motion in the world frame (z up, metres).

  Attributes:
    joints: (T, 22, 3) positions of the SMPL joints 0..21.
    head: (T, 3) head path drawn as a line (the CPF, else the head joint).
    floor_z: floor height.
    fps: frame rate.
    contacts: (T, 21) contact values of joints 1..21, or None.
    label: a name shown by the viewers.
  """
  joints: np.ndarray
  head: np.ndarray
  floor_z: float
  fps: float = DEFAULT_FPS
  contacts: np.ndarray | None = None
  label: str = "sample"

  def __post_init__(self):
    if self.joints.ndim != 3 or self.joints.shape[1:] != (NUM_JOINTS, 3):
      raise ValueError(f"Motion.joints has shape {self.joints.shape}, "
                       f"expected (T, {NUM_JOINTS}, 3)")
    if self.head.shape != (self.joints.shape[0], 3):
      raise ValueError(f"Motion.head has shape {self.head.shape}, expected "
                       f"({self.joints.shape[0]}, 3)")

  @property
  def num_frames(self) -> int:
    return self.joints.shape[0]


def _pick(array: np.ndarray, sample: int, frame_dims: int, name: str,
          path: pathlib.Path) -> np.ndarray:
  """Sample `sample` of an (S, T, ...) array, or a (T, ...) array as is."""
  if array.ndim == frame_dims + 1:
    if not 0 <= sample < array.shape[0]:
      raise ValueError(f"{path}: sample {sample} out of range: {name} holds "
                       f"{array.shape[0]} samples")
    return array[sample]
  if array.ndim != frame_dims:
    raise ValueError(f"{path}: {name} has shape {array.shape}, expected "
                     f"{frame_dims} or {frame_dims + 1} dimensions")
  return array


def _pose_joints(data, sample: int, path: pathlib.Path) -> np.ndarray:
  """(T, 22, 3) joints posed from EgoAllo's fields with the built-in body."""
  # Imported here: jax is only needed for files without `joints_world`.
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from motiongrpo_jax import body as body_lib  # pylint: disable=g-import-not-at-top
  missing = [k for k in ("Ts_world_root", "body_quats", "betas")
             if k not in data]
  if missing:
    raise ValueError(f"{path}: no 'joints_world' and no {missing} to pose a "
                     "body from (expected the inference output layout)")
  root = _pick(np.asarray(data["Ts_world_root"]), sample, 2, "Ts_world_root",
               path)
  quats = _pick(np.asarray(data["body_quats"]), sample, 3, "body_quats", path)
  betas = np.asarray(data["betas"])
  betas = betas[sample] if betas.ndim == 3 else betas
  joints = body_lib.builtin_body().forward_kinematics(
      jnp.asarray(betas), jnp.asarray(root), jnp.asarray(quats))
  return np.asarray(joints[..., :NUM_JOINTS, 4:])


def load_motion(path: str | os.PathLike, sample: int = 0,
                label: str | None = None) -> Motion:
  """A motion from an npz (module docstring).

  Args:
    path: the npz.
    sample: which sample of (S, T, ...) arrays.
    label: shown by the viewers (default: the file name and sample).

  Returns:
    The motion. The floor is `floor_z` if stored, else the lowest foot
    joint over the sequence.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"{path}: no such file")
  with np.load(path, allow_pickle=False) as data:
    if "joints_world" in data:
      joints = _pick(np.asarray(data["joints_world"], np.float64), sample, 3,
                     "joints_world", path)
    else:
      joints = _pose_joints(data, sample, path)
    if joints.shape[1:] != (NUM_JOINTS, 3):
      raise ValueError(f"{path}: joints have shape {joints.shape}, expected "
                       f"(T, {NUM_JOINTS}, 3)")
    head = joints[:, skeleton.HEAD]
    if "Ts_world_cpf" in data:
      cpf = np.asarray(data["Ts_world_cpf"], np.float64)
      cpf = cpf[sample] if cpf.ndim == 3 else cpf
      if cpf.shape == (joints.shape[0], 7):
        head = cpf[:, 4:]
    contacts = None
    if "contacts" in data:
      contacts = _pick(np.asarray(data["contacts"], np.float64), sample, 2,
                       "contacts", path)
    if "floor_z" in data:
      floor_z = float(data["floor_z"])
    else:
      feet = joints[:, [skeleton.LEFT_FOOT, skeleton.RIGHT_FOOT], 2]
      floor_z = float(np.min(feet))
    fps = float(data["fps"]) if "fps" in data else DEFAULT_FPS
  if not np.all(np.isfinite(joints)):
    raise ValueError(f"{path}: joints have non-finite values")
  return Motion(joints=joints, head=head, floor_z=floor_z, fps=fps,
                contacts=contacts,
                label=label if label is not None else f"{path.stem}[{sample}]")
