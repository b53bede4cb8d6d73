"""Pictures of motion: body GIF/MP4 animations and an offline HTML viewer.

`render_file(input_npz, output)` picks the writer from the output's suffix
(`.gif`, `.mp4`, `.html`); `tools/render.py` is its command line. Both draw
the recording's semi-dense points when the npz has them; the page also
switches between the guided and the unguided samples.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from motiongrpo_jax.render import gif_mp4
from motiongrpo_jax.render import html_viewer
from motiongrpo_jax.render import motion_file
from motiongrpo_jax.render import scene_points
from motiongrpo_jax.render import skeleton_frames
from motiongrpo_jax.render.motion_file import load_motion
from motiongrpo_jax.render.motion_file import Motion

KINDS = ("gif", "mp4", "html")


def render_motion(motion: Motion, output: str | os.PathLike,
                  ground_truth: Motion | None = None, *,
                  layout: str = "overlay", stride: int = 1,
                  size: int = 360, points: np.ndarray | None = None,
                  unguided: Motion | None = None,
                  show_unguided: bool = False) -> pathlib.Path:
  """Writes a picture of `motion` (kind from the suffix of `output`).

  Args:
    motion: the motion.
    output: a `.gif`, `.mp4` or `.html` path.
    ground_truth: optional, drawn grey (overlaid or side by side).
    layout: "overlay" or "side_by_side" (GIF/MP4; the page overlays).
    stride: GIF/MP4: every `stride`-th frame, played at fps / stride.
    size: GIF/MP4 frame height in pixels.
    points: (P, 3) world points of the scene, or None.
    unguided: the page: `motion`'s unguided samples, shown by its switch
      (GIF/MP4: not drawn; pass them as `motion` instead).
    show_unguided: the page opens on `unguided`.

  Returns:
    The path written.
  """
  output = pathlib.Path(output)
  kind = output.suffix.lower().lstrip(".")
  if kind not in KINDS:
    raise ValueError(f"{output}: unknown picture kind {output.suffix!r}; "
                     f"expected one of {['.' + k for k in KINDS]}")
  if kind == "html":
    shown = [motion] + ([ground_truth] if ground_truth is not None else [])
    return html_viewer.write_html(output, shown, title=motion.label,
                                  points=points, unguided=unguided,
                                  show_unguided=show_unguided)
  if kind == "mp4":
    gif_mp4.require_ffmpeg()  # Before drawing any frame.
  frames = skeleton_frames.render_frames(
      motion, ground_truth, layout=layout, stride=stride, size=size,
      points=points)
  gif_mp4.write_animation(frames, output, motion.fps / stride)
  return output


def render_file(input_path: str | os.PathLike, output: str | os.PathLike,
                ground_truth: str | os.PathLike | None = None, *,
                sample: int = 0, points: bool = True, unguided: bool = False,
                **kwargs) -> pathlib.Path:
  """`render_motion` of sample `sample` of an npz (`motion_file.load_motion`).

  Args:
    input_path: the motion npz (e.g. the inference `outputs.npz`).
    output: a `.gif`, `.mp4` or `.html` path.
    ground_truth: an npz with `joints_world`, or the same layout (sample 0).
    sample: which sample of the input.
    points: draw the npz's `semidense_points` (when it has them).
    unguided: the `unguided_*` samples (GIF/MP4: drawn instead; the page:
      opens on them). A page of an npz that has both holds both.
    **kwargs: `layout`, `stride`, `size` of `render_motion`.

  Returns:
    The path written.
  """
  other = None
  # A page holds both sets of samples and switches; a GIF/MP4 draws one.
  if (pathlib.Path(output).suffix.lower() == ".html"
      and motion_file.has_unguided(input_path)):
    stem = f"{pathlib.Path(input_path).stem}[{sample}]"
    motion = load_motion(input_path, sample, label=f"{stem} guided")
    other = load_motion(input_path, sample, unguided=True)
  else:
    motion = load_motion(input_path, sample, unguided=unguided)
  truth = None
  if ground_truth is not None:
    truth = load_motion(ground_truth, 0, label="ground truth")
  scene = motion_file.load_points(input_path) if points else None
  return render_motion(motion, output, truth, points=scene, unguided=other,
                       show_unguided=unguided, **kwargs)


__all__ = ["KINDS", "Motion", "gif_mp4", "html_viewer", "load_motion",
           "motion_file", "render_file", "render_motion", "scene_points",
           "skeleton_frames"]
