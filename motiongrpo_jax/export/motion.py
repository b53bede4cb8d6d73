"""One motion to export: a body shape, pelvis poses and local rotations.

`Motion` is what the exporters (`bvh_writer`, `amass_npz`) take. It comes
from memory (`Motion(...)`) or from one sample of an inference output file
(`motion_from_outputs`), whose layout is EgoAllo's:

  Ts_world_cpf (T, 7), Ts_world_root (S, T, 7), body_quats (S, T, 21, 4),
  left_hand_quats / right_hand_quats (S, T, 15, 4), contacts (S, T, 21),
  betas (S, T, 16), timestamps_ns (T,).

Poses are `wxyz_xyz`, world z up, metres; `Ts_world_root` is the pelvis
joint's pose.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from collections.abc import Mapping

import numpy as np

from motiongrpo_jax.body import skeleton

NUM_BETAS = 16
NUM_HAND_JOINTS = 15  # per hand
DEFAULT_FPS = 30.0
OUTPUT_KEYS = ("Ts_world_root", "body_quats", "betas")


@dataclasses.dataclass(frozen=True)
class Motion:
  """A posed body over T frames.

  Attributes:
    betas: (16,) shape coefficients.
    T_world_root: (T, 7) pelvis poses `wxyz_xyz`, world z up, metres.
    body_quats: (T, 21, 4) local rotations of joints 1..21, `wxyz`.
    hand_quats: (T, 30, 4) local hand rotations (15 left then 15 right), or
      None.
    fps: frames per second.
  """

  betas: np.ndarray
  T_world_root: np.ndarray
  body_quats: np.ndarray
  hand_quats: np.ndarray | None = None
  fps: float = DEFAULT_FPS

  def __post_init__(self):
    check_motion(self)

  @property
  def num_frames(self) -> int:
    """T."""
    return int(self.T_world_root.shape[0])


def check_motion(motion: Motion, source: str = "motion") -> None:
  """Raises ValueError naming `source` and the field when shapes or values
  are wrong."""
  num = np.shape(motion.T_world_root)[0] if np.ndim(motion.T_world_root) else 0
  expected = {
      "betas": (np.shape(motion.betas), (NUM_BETAS,)),
      "T_world_root": (np.shape(motion.T_world_root), (num, 7)),
      "body_quats": (np.shape(motion.body_quats),
                     (num, skeleton.NUM_BODY_JOINTS, 4)),
  }
  if motion.hand_quats is not None:
    expected["hand_quats"] = (np.shape(motion.hand_quats),
                              (num, 2 * NUM_HAND_JOINTS, 4))
  problems = [f"'{k}' has shape {got}, expected {want}"
              for k, (got, want) in expected.items() if got != want]
  if num < 1:
    problems.append("'T_world_root' must have shape (T, 7) with T ≥ 1, got "
                    f"{np.shape(motion.T_world_root)}")
  if not (np.isfinite(motion.fps) and motion.fps > 0):
    problems.append(f"'fps' must be positive, got {motion.fps}")
  if problems:
    raise ValueError(f"{source}: " + "; ".join(problems))
  for key in ("betas", "T_world_root", "body_quats", "hand_quats"):
    value = getattr(motion, key)
    if value is not None and not np.all(np.isfinite(value)):
      raise ValueError(f"{source}: '{key}' has non-finite values")


def motion_from_outputs(outputs: str | os.PathLike | Mapping[str, np.ndarray],
                        sample: int = 0) -> Motion:
  """One sample of an inference output (EgoAllo's `outputs.npz` layout).

  Betas vary per frame in the file; the exported skeleton has one shape, the
  mean over frames. The frame rate comes from `timestamps_ns` when present
  (median frame interval, rounded to 0.001 Hz), else 30 fps.

  Args:
    outputs: path of the `.npz` or its arrays.
    sample: which of the S samples.

  Returns:
    The motion, float64.

  Raises:
    ValueError: naming the file and the missing / mis-shaped field, or a
      sample index out of range.
  """
  source = "outputs" if isinstance(outputs, Mapping) else os.fspath(outputs)
  if isinstance(outputs, Mapping):
    data = dict(outputs)
  else:
    try:
      with np.load(source, allow_pickle=False) as npz:
        data = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
      raise ValueError(f"{source}: not a readable .npz ({e})") from e
  missing = [k for k in OUTPUT_KEYS if k not in data]
  if missing:
    raise ValueError(
        f"{source}: missing fields {missing}; an inference output has "
        "Ts_world_root (S, T, 7), body_quats (S, T, 21, 4), betas (S, T, 16)")
  roots = np.asarray(data["Ts_world_root"], np.float64)
  if roots.ndim != 3 or roots.shape[-1] != 7:
    raise ValueError(f"{source}: 'Ts_world_root' has shape {roots.shape}, "
                     "expected (S, T, 7)")
  num_samples, num = roots.shape[:2]
  if not -num_samples <= sample < num_samples:
    raise ValueError(f"{source}: sample {sample} out of range; the file has "
                     f"{num_samples} samples")

  def field(key, tail):
    value = np.asarray(data[key], np.float64)
    if value.shape != (num_samples, num) + tail:
      raise ValueError(f"{source}: '{key}' has shape {value.shape}, expected "
                       f"{(num_samples, num) + tail} (S, T, ...)")
    return value[sample]

  body_quats = field("body_quats", (skeleton.NUM_BODY_JOINTS, 4))
  betas = field("betas", (NUM_BETAS,)).mean(axis=0)
  hand_quats = None
  if "left_hand_quats" in data and "right_hand_quats" in data:
    hand_quats = np.concatenate(
        [field("left_hand_quats", (NUM_HAND_JOINTS, 4)),
         field("right_hand_quats", (NUM_HAND_JOINTS, 4))], axis=1)
  fps = DEFAULT_FPS
  if "timestamps_ns" in data and np.size(data["timestamps_ns"]) >= 2:
    step_ns = float(np.median(np.diff(np.asarray(data["timestamps_ns"],
                                                 np.float64))))
    if not step_ns > 0:
      raise ValueError(f"{source}: 'timestamps_ns' must increase")
    fps = round(1e9 / step_ns, 3)
  try:
    return Motion(betas=betas, T_world_root=roots[sample],
                  body_quats=body_quats, hand_quats=hand_quats, fps=fps)
  except ValueError as e:
    raise ValueError(f"{source} (sample {sample}): {e}") from e
