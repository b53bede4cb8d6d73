"""Writes animation frames to a GIF (imageio + Pillow) or an MP4 (ffmpeg).

MP4 needs the `imageio-ffmpeg` package (`pip install imageio-ffmpeg`), which
ships its own ffmpeg binary. Both writers stream the frames, so long motions
are never held in memory at once. The file appears complete or not at all
(written under a temporary name, then renamed).
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterable

import numpy as np

KINDS = ("gif", "mp4")


def require_ffmpeg() -> None:
  """Raises ImportError with the install command when MP4 cannot be written."""
  try:
    import imageio_ffmpeg  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError as e:
    raise ImportError(
        "writing MP4 needs the imageio-ffmpeg package: pip install "
        "imageio-ffmpeg (or write a .gif or .html instead)") from e


def write_animation(frames: Iterable[np.ndarray], path: str | os.PathLike,
                    fps: float) -> int:
  """Writes RGB frames as a looping GIF or an H.264 MP4 (by the suffix).

  Args:
    frames: (H, W, 3) uint8 frames, all the same size.
    path: output file, `.gif` or `.mp4`.
    fps: playback rate.

  Returns:
    The number of frames written.
  """
  import imageio.v2 as imageio  # pylint: disable=g-import-not-at-top
  path = pathlib.Path(path)
  kind = path.suffix.lower().lstrip(".")
  if kind not in KINDS:
    raise ValueError(f"{path}: expected a .gif or .mp4 file name")
  if fps <= 0:
    raise ValueError(f"fps={fps}: expected > 0")
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
  if kind == "gif":
    # GIF delays are in hundredths of a second.
    writer = imageio.get_writer(tmp, format="GIF", mode="I",
                                duration=1000.0 / fps, loop=0)
  else:
    require_ffmpeg()
    writer = imageio.get_writer(tmp, format="FFMPEG", mode="I", fps=fps,
                                codec="libx264", quality=7,
                                macro_block_size=2, pixelformat="yuv420p")
  count = 0
  try:
    for frame in frames:
      writer.append_data(np.asarray(frame, np.uint8))
      count += 1
  finally:
    writer.close()
  if count == 0:
    tmp.unlink(missing_ok=True)
    raise ValueError(f"{path}: no frames to write")
  os.replace(tmp, path)
  return count
