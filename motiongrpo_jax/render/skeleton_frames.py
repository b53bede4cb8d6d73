"""Skeleton animation frames: bones, the floor grid and the head path.

A fixed-orientation orthographic camera (azimuth about world +z, elevation
above the floor) follows the head horizontally, so walking shows as the floor
sliding under the body and turning as the body rotating. Every frame is drawn
by matplotlib (Agg, 2-D artists updated in place: fast) into an RGB array.

Colours: the body's left side red, right side blue, spine and head dark
grey; a ground-truth motion is light grey. Joints 1..21 whose contact value
exceeds 0.5 get a green dot. The head path is drawn whole (faint) with its
past solid.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import matplotlib

matplotlib.use("Agg")
# pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np
from matplotlib.backends import backend_agg
from matplotlib import collections as mcollections
from matplotlib import figure as mfigure

from motiongrpo_jax.body import skeleton
from motiongrpo_jax.render import motion_file

LEFT_COLOR = (0.85, 0.2, 0.15)
RIGHT_COLOR = (0.15, 0.4, 0.85)
CENTER_COLOR = (0.2, 0.2, 0.2)
GROUND_TRUTH_COLOR = (0.6, 0.6, 0.6)
CONTACT_COLOR = (0.1, 0.7, 0.2)
LAYOUTS = ("overlay", "side_by_side")


def bone_colors() -> list[tuple[float, float, float]]:
  """Colour of the bone ending at each joint 1..21 (by the joint's side)."""
  colors = []
  for name in skeleton.JOINT_NAMES[1:]:
    if name.startswith("left"):
      colors.append(LEFT_COLOR)
    elif name.startswith("right"):
      colors.append(RIGHT_COLOR)
    else:
      colors.append(CENTER_COLOR)
  return colors


def camera_axes(azimuth_deg: float, elevation_deg: float
                ) -> tuple[np.ndarray, np.ndarray]:
  """Screen right and up axes (world) of a camera looking at the scene.

  The camera sits in the direction (cos el cos az, cos el sin az, sin el)
  from its target and looks back at it.

  Returns:
    right (3,) and up (3,), orthonormal; up has a positive z component.
  """
  az, el = np.radians(azimuth_deg), np.radians(elevation_deg)
  back = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az),
                   np.sin(el)])
  right = np.cross(np.array([0.0, 0.0, 1.0]), back)
  right /= np.linalg.norm(right)
  up = np.cross(back, right)
  return right, up


def project(points: np.ndarray, center: np.ndarray, right: np.ndarray,
            up: np.ndarray) -> np.ndarray:
  """Orthographic projection onto the screen plane.

  Args:
    points: (..., 3) world points.
    center: (3,) world point at the screen origin.
    right, up: from `camera_axes`.

  Returns:
    (..., 2) screen coordinates in metres.
  """
  offset = np.asarray(points, np.float64) - center
  return np.stack([offset @ right, offset @ up], axis=-1)


def _floor_grid(center: np.ndarray, floor_z: float, radius: float,
                spacing: float) -> np.ndarray:
  """(K, 2, 3) floor grid segments around `center` (a fixed world grid)."""
  lo_x = np.floor((center[0] - radius) / spacing) * spacing
  lo_y = np.floor((center[1] - radius) / spacing) * spacing
  xs = lo_x + spacing * np.arange(int(2 * radius / spacing) + 2)
  ys = lo_y + spacing * np.arange(int(2 * radius / spacing) + 2)
  segments = [((x, ys[0], floor_z), (x, ys[-1], floor_z)) for x in xs]
  segments += [((xs[0], y, floor_z), (xs[-1], y, floor_z)) for y in ys]
  return np.asarray(segments, np.float64)


class _Panel:
  """The artists of one view (one followed motion, maybe a second overlaid)."""

  def __init__(self, ax, motions: Sequence[motion_file.Motion],
               colors: Sequence[list | None], radius: float):
    self.ax = ax
    self.motions = motions
    self.radius = radius
    ax.set_xlim(-radius, radius)
    ax.set_ylim(-0.45 * radius, 1.55 * radius)
    ax.set_aspect("equal")
    ax.set_axis_off()
    self.grid = mcollections.LineCollection([], colors=[(0.75, 0.75, 0.75)],
                                            linewidths=0.6, zorder=1)
    ax.add_collection(self.grid)
    self.path_all, = ax.plot([], [], color=(0.95, 0.6, 0.1), alpha=0.35,
                             linewidth=1.0, zorder=2)
    self.path_past, = ax.plot([], [], color=(0.95, 0.6, 0.1), linewidth=1.5,
                              zorder=2)
    self.bones, self.dots, self.contacts = [], [], []
    for i, color in enumerate(colors):
      bones = mcollections.LineCollection(
          [], colors=color if color is not None else [GROUND_TRUTH_COLOR],
          linewidths=2.5 if color is not None else 2.0,
          zorder=4 if i == 0 else 3)
      ax.add_collection(bones)
      self.bones.append(bones)
      dot_color = CENTER_COLOR if color is not None else GROUND_TRUTH_COLOR
      self.dots.append(ax.plot([], [], "o", markersize=2.5, color=dot_color,
                               zorder=5 if i == 0 else 3)[0])
      self.contacts.append(ax.plot([], [], "o", markersize=5,
                                   color=CONTACT_COLOR, zorder=6)[0])
    self.title = ax.text(0.02, 0.98, "", transform=ax.transAxes, fontsize=7,
                         va="top", ha="left")

  def update(self, frame: int, right: np.ndarray, up: np.ndarray,
             title: str) -> None:
    lead = self.motions[0]
    center = np.array([lead.head[frame, 0], lead.head[frame, 1],
                       lead.floor_z])
    grid = _floor_grid(center, lead.floor_z, 1.5 * self.radius, 0.5)
    self.grid.set_segments(project(grid, center, right, up))
    path = project(lead.head, center, right, up)
    self.path_all.set_data(path[:, 0], path[:, 1])
    self.path_past.set_data(path[:frame + 1, 0], path[:frame + 1, 1])
    parents = np.asarray(skeleton.PARENTS[1:])
    for i, motion in enumerate(self.motions):
      f = min(frame, motion.num_frames - 1)
      screen = project(motion.joints[f], center, right, up)
      self.bones[i].set_segments(
          np.stack([screen[parents], screen[1:]], axis=1))
      self.dots[i].set_data(screen[:, 0], screen[:, 1])
      if motion.contacts is not None:
        touching = 1 + np.flatnonzero(motion.contacts[f] > 0.5)
        self.contacts[i].set_data(screen[touching, 0], screen[touching, 1])
    self.title.set_text(title)


def render_frames(
    motion: motion_file.Motion,
    ground_truth: motion_file.Motion | None = None,
    *,
    layout: str = "overlay",
    stride: int = 1,
    size: int = 360,
    azimuth_deg: float = -60.0,
    elevation_deg: float = 20.0,
    radius: float = 1.4,
) -> Iterator[np.ndarray]:
  """RGB frames of the skeleton animation.

  Args:
    motion: the motion drawn.
    ground_truth: drawn in grey, in the same view ("overlay") or in a second
      panel on the right ("side_by_side").
    layout: "overlay" or "side_by_side".
    stride: draw every `stride`-th frame.
    size: frame height in pixels (width doubles side by side).
    azimuth_deg, elevation_deg: camera direction (`camera_axes`).
    radius: half the visible width, metres.

  Yields:
    (size, width, 3) uint8 frames, `ceil(T / stride)` of them.
  """
  if layout not in LAYOUTS:
    raise ValueError(f"layout={layout!r}: expected one of {list(LAYOUTS)}")
  if stride < 1:
    raise ValueError(f"stride={stride}: expected >= 1")
  side = ground_truth is not None and layout == "side_by_side"
  width = 2 * size if side else size
  fig = mfigure.Figure(figsize=(width / 100, size / 100), dpi=100)
  canvas = backend_agg.FigureCanvasAgg(fig)
  right, up = camera_axes(azimuth_deg, elevation_deg)
  colors = bone_colors()
  if side:
    axes = [fig.add_axes((0, 0, 0.5, 1)), fig.add_axes((0.5, 0, 0.5, 1))]
    panels = [_Panel(axes[0], [motion], [colors], radius),
              _Panel(axes[1], [ground_truth], [None], radius)]
  else:
    ax = fig.add_axes((0, 0, 1, 1))
    shown = [motion] + ([ground_truth] if ground_truth is not None else [])
    panels = [_Panel(ax, shown, [colors, None][:len(shown)], radius)]
  for frame in range(0, motion.num_frames, stride):
    time = frame / motion.fps
    for i, panel in enumerate(panels):
      label = (ground_truth.label if i == 1 else motion.label)
      panel.update(frame, right, up,
                   f"{label}  t={time:5.2f}s  frame {frame}/{motion.num_frames}")
    canvas.draw()
    yield np.asarray(canvas.buffer_rgba())[..., :3].copy()
