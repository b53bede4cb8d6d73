"""An interactive `viser` viewer of motions (optional dependency).

`pip install viser`; the static outputs (GIF, MP4, HTML) never need it.

    python -m motiongrpo_jax.tools.render --input=outputs.npz --output=viser

serves http://localhost:8080 with the skeleton (coloured as the GIF), the
ground truth (grey), the floor grid and the head path, a frame slider and a
play checkbox. Uses viser's scene and GUI API (`ViserServer`,
`scene.add_grid`, `scene.add_line_segments`, `gui.add_slider`,
`gui.add_checkbox`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from motiongrpo_jax.body import skeleton
from motiongrpo_jax.render import motion_file
from motiongrpo_jax.render import skeleton_frames


def import_viser() -> Any:
  """The `viser` module, or ImportError saying how to install it."""
  try:
    import viser  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(
        "the interactive viewer needs viser: pip install viser (or write "
        "--output=motion.html for the offline page)") from e
  return viser


def bone_segments(joints: np.ndarray) -> np.ndarray:
  """(21, 2, 3) parent → child segments of one frame's (22, 3) joints."""
  parents = np.asarray(skeleton.PARENTS[1:])
  return np.stack([joints[parents], joints[1:]], axis=1)


def _segment_colors(color) -> np.ndarray:
  """(21, 2, 3) uint8 colours: by side, or one colour for every bone."""
  colors = (skeleton_frames.bone_colors() if color is None
            else [color] * (len(skeleton.PARENTS) - 1))
  rgb = np.round(255 * np.asarray(colors)).astype(np.uint8)
  return np.repeat(rgb[:, None], 2, axis=1)


class ViserViewer:
  """Shows motions in a viser scene; `show(frame)` poses every skeleton."""

  def __init__(self, motions: Sequence[motion_file.Motion], server: Any):
    if not motions:
      raise ValueError("ViserViewer: no motion to show")
    self.motions = motions
    self.server = server
    main = motions[0]
    center = main.head.mean(axis=0)
    extent = float(np.ptp(main.head[:, :2], axis=0).max()) + 4.0
    server.scene.add_grid("/floor", width=extent, height=extent,
                          plane="xy",
                          position=(center[0], center[1], main.floor_z))
    path = np.stack([main.head[:-1], main.head[1:]], axis=1)
    server.scene.add_line_segments(
        "/head_path", points=path.astype(np.float32),
        colors=np.full(path.shape, (242, 153, 25), np.uint8), line_width=2.0)
    self._colors = [_segment_colors(None)] + [
        _segment_colors(skeleton_frames.GROUND_TRUTH_COLOR)
        for _ in motions[1:]]
    self.slider = server.gui.add_slider(
        "frame", min=0, max=main.num_frames - 1, step=1, initial_value=0)
    self.playing = server.gui.add_checkbox("play", initial_value=False)
    self.slider.on_update(lambda _: self.show(int(self.slider.value)))
    self.show(0)

  def show(self, frame: int) -> None:
    """Draws every motion at `frame` (clamped to its length)."""
    for i, motion in enumerate(self.motions):
      f = min(frame, motion.num_frames - 1)
      self.server.scene.add_line_segments(
          f"/skeleton_{i}", points=bone_segments(motion.joints[f]).astype(
              np.float32), colors=self._colors[i], line_width=4.0)

  def play_forever(self) -> None:
    """Advances the slider at the motion's rate while "play" is ticked."""
    main = self.motions[0]
    while True:
      if self.playing.value:
        self.slider.value = (int(self.slider.value) + 1) % main.num_frames
        self.show(int(self.slider.value))
      time.sleep(1.0 / main.fps)


def serve(motions: Sequence[motion_file.Motion], port: int = 8080) -> None:
  """Serves the viewer on `port` until interrupted."""
  viser = import_viser()
  viewer = ViserViewer(motions, viser.ViserServer(port=port))
  print(f"viser viewer on http://localhost:{port} (Ctrl-C to stop)")
  viewer.play_forever()
