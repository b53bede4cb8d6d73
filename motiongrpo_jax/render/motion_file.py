"""What the renderers draw: one motion's joints, head path and floor.

`load_motion` reads an npz in the inference output layout
(`modes/infer.py`: `joints_world (S, T, 22, 3)`, `Ts_world_cpf (T, 7)`,
`floor_z`, `fps`, `contacts`) or a plain `joints_world (T, 22, 3)`. Without
`joints_world` the joints are posed from `Ts_world_root`, `body_quats` and
`betas` (EgoAllo's output layout) with the built-in body.

Optional keys of the inference output: `unguided_<field>` (the sampler's
own samples when guidance was on; `load_motion(..., unguided=True)`) and
`semidense_points (P, 3)` (the recording's points; `load_points`).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

import numpy as np

from motiongrpo_jax.body import skeleton

NUM_JOINTS = len(skeleton.PARENTS)
DEFAULT_FPS = 30.0
POINTS_KEY = "semidense_points"
UNGUIDED_PREFIX = "unguided_"


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


def _pose_joints(data, sample: int, path: pathlib.Path,
                 prefix: str = "") -> np.ndarray:
  """(T, 22, 3) joints posed from EgoAllo's fields with the built-in body."""
  # Imported here: jax is only needed for files without `joints_world`.
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from motiongrpo_jax import body as body_lib  # pylint: disable=g-import-not-at-top
  names = [prefix + k for k in ("Ts_world_root", "body_quats", "betas")]
  missing = [k for k in names if k not in data]
  if missing:
    raise ValueError(f"{path}: no '{prefix}joints_world' and no {missing} to "
                     "pose a body from (expected the inference output "
                     "layout)")
  root = _pick(np.asarray(data[names[0]]), sample, 2, names[0], path)
  quats = _pick(np.asarray(data[names[1]]), sample, 3, names[1], path)
  betas = np.asarray(data[names[2]])
  betas = betas[sample] if betas.ndim == 3 else betas
  joints = body_lib.builtin_body().forward_kinematics(
      jnp.asarray(betas), jnp.asarray(root), jnp.asarray(quats))
  return np.asarray(joints[..., :NUM_JOINTS, 4:])


def has_unguided(path: str | os.PathLike) -> bool:
  """Whether an npz also holds unguided samples (`unguided_*` keys)."""
  with np.load(path, allow_pickle=False) as data:
    return any(k.startswith(UNGUIDED_PREFIX) for k in data.files)


def load_points(path: str | os.PathLike) -> np.ndarray | None:
  """(P, 3) `semidense_points` of an npz (finite rows), or None if absent
  or empty."""
  with np.load(path, allow_pickle=False) as data:
    if POINTS_KEY not in data:
      return None
    points = np.asarray(data[POINTS_KEY], np.float64)
  if points.ndim != 2 or points.shape[1] != 3:
    raise ValueError(f"{path}: {POINTS_KEY} has shape {points.shape}, "
                     "expected (P, 3)")
  points = points[np.all(np.isfinite(points), axis=-1)]
  return points if len(points) else None


def load_motion(path: str | os.PathLike, sample: int = 0,
                label: str | None = None, *, unguided: bool = False) -> Motion:
  """A motion from an npz (module docstring).

  Args:
    path: the npz.
    sample: which sample of (S, T, ...) arrays.
    label: shown by the viewers (default: the file name and sample, and
      "unguided" for those).
    unguided: the `unguided_*` samples instead (the head path, floor and
      rate are shared).

  Returns:
    The motion. The floor is `floor_z` if stored, else the lowest foot
    joint over the sequence.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"{path}: no such file")
  prefix = UNGUIDED_PREFIX if unguided else ""
  with np.load(path, allow_pickle=False) as data:
    if unguided and not any(k.startswith(prefix) for k in data.files):
      raise ValueError(f"{path}: no unguided samples ({prefix}* keys): "
                       "written by infer with config.guidance.mode on")
    if prefix + "joints_world" in data:
      joints = _pick(np.asarray(data[prefix + "joints_world"], np.float64),
                     sample, 3, prefix + "joints_world", path)
    else:
      joints = _pose_joints(data, sample, path, prefix)
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
    if prefix + "contacts" in data:
      contacts = _pick(np.asarray(data[prefix + "contacts"], np.float64),
                       sample, 2, prefix + "contacts", path)
    if "floor_z" in data:
      floor_z = float(data["floor_z"])
    else:
      feet = joints[:, [skeleton.LEFT_FOOT, skeleton.RIGHT_FOOT], 2]
      floor_z = float(np.min(feet))
    fps = float(data["fps"]) if "fps" in data else DEFAULT_FPS
  if not np.all(np.isfinite(joints)):
    raise ValueError(f"{path}: joints have non-finite values")
  if label is None:
    label = f"{path.stem}[{sample}]" + (" unguided" if unguided else "")
  return Motion(joints=joints, head=head, floor_z=floor_z, fps=fps,
                contacts=contacts, label=label)
