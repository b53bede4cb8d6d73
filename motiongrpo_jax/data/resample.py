"""Resampling pose sequences in time: slerp for rotations, lerp for positions.

Host-side numpy (float64), used by the importers to bring a source frame rate
(BVH at 120 fps, Aria MPS poses at ~1 kHz with irregular spacing) to the
dataset's 30 fps. Quaternions are `wxyz`.
"""

from __future__ import annotations

import numpy as np


def output_times(duration: float, fps: float) -> np.ndarray:
  """Times 0, 1/fps, … up to `duration`.

  A last time up to 1/1000 of a frame past `duration` is kept (and clamped
  when interpolating): frame times written with a few digits (BVH's
  .0083333 for 1/120 s) would otherwise lose the last frame.

  Args:
    duration: length of the source in seconds (last time − first time).
    fps: output rate.

  Returns:
    (T,) times in seconds, T = floor(duration·fps + 0.001) + 1.
  """
  count = int(np.floor(duration * fps + 1e-3)) + 1
  return np.arange(count) / fps


def interpolation_weights(
    source_times: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Bracketing source indices and blend weights for each output time.

  Args:
    source_times: (N,) strictly increasing source times.
    times: (T,) output times within [source_times[0], source_times[-1]].

  Returns:
    index (T,) int (frame i, blended with i + 1) and alpha (T,) in [0, 1].
  """
  source_times = np.asarray(source_times, np.float64)
  if source_times.shape[0] < 2:
    return np.zeros(len(times), np.int64), np.zeros(len(times))
  index = np.searchsorted(source_times, times, side="right") - 1
  index = np.clip(index, 0, source_times.shape[0] - 2)
  span = source_times[index + 1] - source_times[index]
  alpha = np.clip((times - source_times[index]) / span, 0.0, 1.0)
  return index, alpha


def slerp(q0: np.ndarray, q1: np.ndarray, alpha: np.ndarray) -> np.ndarray:
  """Spherical linear interpolation along the shorter arc.

  Args:
    q0, q1: (..., 4) unit quaternions `wxyz`.
    alpha: weights broadcastable to (...,); 0 gives q0, 1 gives q1.

  Returns:
    (..., 4) unit quaternions.
  """
  q0 = np.asarray(q0, np.float64)
  q1 = np.asarray(q1, np.float64)
  alpha = np.asarray(alpha, np.float64)[..., None]
  dot = np.sum(q0 * q1, axis=-1, keepdims=True)
  q1 = np.where(dot < 0.0, -q1, q1)
  dot = np.abs(dot)
  theta = np.arccos(np.clip(dot, -1.0, 1.0))
  sin_theta = np.sin(theta)
  small = sin_theta < 1e-6
  safe = np.where(small, 1.0, sin_theta)
  w0 = np.where(small, 1.0 - alpha, np.sin((1.0 - alpha) * theta) / safe)
  w1 = np.where(small, alpha, np.sin(alpha * theta) / safe)
  out = w0 * q0 + w1 * q1
  return out / np.linalg.norm(out, axis=-1, keepdims=True)


def resample_quats(quats: np.ndarray, index: np.ndarray,
                   alpha: np.ndarray) -> np.ndarray:
  """Slerps (N, ..., 4) quaternions at the given bracketing indices/weights.

  Args:
    quats: (N, ..., 4) source quaternions along axis 0.
    index, alpha: from `interpolation_weights`, (T,).

  Returns:
    (T, ..., 4).
  """
  quats = np.asarray(quats, np.float64)
  if quats.shape[0] < 2:
    return np.repeat(quats[:1], len(index), axis=0)
  a = alpha.reshape((-1,) + (1,) * (quats.ndim - 2))
  return slerp(quats[index], quats[index + 1], a)


def resample_linear(values: np.ndarray, index: np.ndarray,
                    alpha: np.ndarray) -> np.ndarray:
  """Linear interpolation of (N, ...) values at bracketing indices/weights."""
  values = np.asarray(values, np.float64)
  if values.shape[0] < 2:
    return np.repeat(values[:1], len(index), axis=0)
  a = alpha.reshape((-1,) + (1,) * (values.ndim - 1))
  return (1.0 - a) * values[index] + a * values[index + 1]


def resample_nearest(values: np.ndarray, index: np.ndarray,
                     alpha: np.ndarray) -> np.ndarray:
  """Nearest-frame sampling of (N, ...) values (e.g. 0/1 contact labels)."""
  values = np.asarray(values)
  if values.shape[0] < 2:
    return np.repeat(values[:1], len(index), axis=0)
  return values[index + (alpha >= 0.5)]


def resample_motion(
    fps_source: float,
    fps: float,
    T_world_root: np.ndarray,
    body_quats: np.ndarray,
    hand_quats: np.ndarray | None = None,
    contacts: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
  """Resamples a uniformly sampled motion to another frame rate.

  Output frame k is at time k/fps; rotations are slerped, root positions
  lerped and contacts taken from the nearest source frame. Rates equal within
  1e-4 (relative) return the inputs unchanged.

  Args:
    fps_source: source frame rate.
    fps: output frame rate.
    T_world_root: (N, 7) root poses `wxyz_xyz`.
    body_quats: (N, 21, 4) local joint rotations.
    hand_quats: (N, 30, 4) or None.
    contacts: (N, 21) or None.

  Returns:
    (T_world_root, body_quats, hand_quats, contacts) at `fps`.
  """
  if abs(fps_source - fps) <= 1e-4 * fps:
    return T_world_root, body_quats, hand_quats, contacts
  num = T_world_root.shape[0]
  source_times = np.arange(num) / fps_source
  times = output_times((num - 1) / fps_source, fps)
  index, alpha = interpolation_weights(source_times, times)
  root = np.concatenate([
      resample_quats(T_world_root[:, :4], index, alpha),
      resample_linear(T_world_root[:, 4:], index, alpha)], axis=-1)
  body = resample_quats(body_quats, index, alpha)
  hands = None if hand_quats is None else resample_quats(hand_quats, index,
                                                         alpha)
  labels = None if contacts is None else resample_nearest(contacts, index,
                                                          alpha)
  return root, body, hands, labels
