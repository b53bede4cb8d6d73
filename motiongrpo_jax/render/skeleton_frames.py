"""Body animation frames: capsule bones, the floor grid, the head path and
the recording's points.

A fixed-orientation orthographic camera (azimuth about world +z, elevation
above the floor) follows the head horizontally, so walking shows as the floor
sliding under the body and turning as the body rotating. Every frame is drawn
by matplotlib (Agg, 2-D artists updated in place: fast) into an RGB array.

The body is a capsule per bone (`BONE_RADII`): a thick round-capped stroke
with a dark outline and a light stripe (`shades`), the bones drawn from the
farthest to the nearest, so near limbs cover far ones. Points
(`scene_points`): at most `MAX_POINTS` per frame within `POINT_RADIUS`
radii of the view centre, coloured by height, under the body.

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
from motiongrpo_jax.render import scene_points

LEFT_COLOR = (0.85, 0.2, 0.15)
RIGHT_COLOR = (0.15, 0.4, 0.85)
CENTER_COLOR = (0.2, 0.2, 0.2)
GROUND_TRUTH_COLOR = (0.6, 0.6, 0.6)
CONTACT_COLOR = (0.1, 0.7, 0.2)
LAYOUTS = ("overlay", "side_by_side")
# Capsule radius (metres) of the bone ending at each joint; the head's
# reaches past the head joint to cover the skull.
BONE_RADII = {
    "left_hip": 0.08, "right_hip": 0.08, "spine1": 0.11, "left_knee": 0.07,
    "right_knee": 0.07, "spine2": 0.11, "left_ankle": 0.05,
    "right_ankle": 0.05, "spine3": 0.11, "left_foot": 0.04,
    "right_foot": 0.04, "neck": 0.06, "left_collar": 0.06,
    "right_collar": 0.06, "head": 0.09, "left_shoulder": 0.05,
    "right_shoulder": 0.05, "left_elbow": 0.045, "right_elbow": 0.045,
    "left_wrist": 0.04, "right_wrist": 0.04,
}
# Most points per frame, and how far from the view centre (in view radii).
MAX_POINTS = 4000
POINT_RADIUS = 3.0
_DPI = 100


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


def bone_radii() -> np.ndarray:
  """(21,) capsule radius of the bone ending at each joint 1..21, metres."""
  return np.array([BONE_RADII[name] for name in skeleton.JOINT_NAMES[1:]])


def shades(color) -> tuple[tuple[float, ...], ...]:
  """(outline, fill, stripe) RGB of a capsule of `color`.

  The outline (45 % of the colour) separates overlapping capsules; the
  stripe, 45 % of the way to white, lights the capsule from the upper left.
  """
  color = np.asarray(color, np.float64)
  return (tuple(0.45 * color), tuple(color),
          tuple(color + 0.45 * (1.0 - color)))


def capsule_strokes(joints: np.ndarray, center: np.ndarray, right: np.ndarray,
                    up: np.ndarray, colors: np.ndarray, radii: np.ndarray,
                    pixels_per_metre: float) -> tuple[np.ndarray, ...]:
  """Depth-sorted round-capped strokes that draw one body's capsules.

  Args:
    joints: (22, 3) world joints of one frame.
    center, right, up: the view (`project`).
    colors: (21, 3) fill colour of each bone.
    radii: (21,) capsule radii, metres.
    pixels_per_metre: the view's scale.

  Returns:
    segments (63, 2, 2) screen metres, colours (63, 3), widths (63,) in
    points: per bone from the farthest to the nearest, its outline, fill
    and stripe.
  """
  parents = np.asarray(skeleton.PARENTS[1:])
  back = np.cross(right, up)  # towards the camera
  depth = (joints[parents] + joints[1:] - 2 * center) @ back / 2
  screen = project(joints, center, right, up)
  bones = np.stack([screen[parents], screen[1:]], axis=1)  # (21, 2, 2)
  # The stripe sits up and to the left of the bone's axis.
  stripe = bones + (radii * 0.3)[:, None, None] * np.array([-1.0, 1.0])
  diameter_pt = 2 * radii * pixels_per_metre * 72 / _DPI
  segments, stroke_colors, widths = [], [], []
  for b in np.argsort(depth):
    outline, fill, light = shades(colors[b])
    segments += [bones[b], bones[b], stripe[b]]
    stroke_colors += [outline, fill, light]
    widths += [diameter_pt[b] + 1.5, diameter_pt[b], 0.35 * diameter_pt[b]]
  return np.asarray(segments), np.asarray(stroke_colors), np.asarray(widths)


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
               colors: Sequence[list | None], radius: float,
               pixels_per_metre: float, points: np.ndarray | None):
    self.ax = ax
    self.motions = motions
    self.radius = radius
    self.colors = [np.asarray(c if c is not None else
                              [GROUND_TRUTH_COLOR] * len(BONE_RADII))
                   for c in colors]
    # The ground truth slimmer, so an overlaid prediction shows through.
    self.radii = [bone_radii() * (1.0 if c is not None else 0.8)
                  for c in colors]
    self.pixels_per_metre = pixels_per_metre
    self.points = points
    if points is not None:
      self.order = scene_points.random_order(len(points))
      self.point_colors = scene_points.palette()[
          scene_points.height_levels(points, motions[0].floor_z)]
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
    self.cloud = ax.scatter(np.zeros(0), np.zeros(0), s=3.0, marker="s",
                            linewidths=0, zorder=1.5)
    self.bones, self.contacts = [], []
    for i in range(len(colors)):
      bones = mcollections.LineCollection([], capstyle="round",
                                          zorder=4 if i == 0 else 3)
      ax.add_collection(bones)
      self.bones.append(bones)
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
    if self.points is not None:
      pelvis = lead.joints[min(frame, lead.num_frames - 1), 0]
      self._update_points(center, pelvis, right, up)
    for i, motion in enumerate(self.motions):
      f = min(frame, motion.num_frames - 1)
      segments, colors, widths = capsule_strokes(
          motion.joints[f], center, right, up, self.colors[i], self.radii[i],
          self.pixels_per_metre)
      self.bones[i].set_segments(segments)
      self.bones[i].set_color(colors)
      self.bones[i].set_linewidth(widths)
      screen = project(motion.joints[f], center, right, up)
      if motion.contacts is not None:
        touching = 1 + np.flatnonzero(motion.contacts[f] > 0.5)
        self.contacts[i].set_data(screen[touching, 0], screen[touching, 1])
    self.title.set_text(title)

  def _update_points(self, center: np.ndarray, pelvis: np.ndarray,
                     right: np.ndarray, up: np.ndarray) -> None:
    """The points near the view centre, minus the cut-away."""
    shown = scene_points.near(self.points, self.order, center,
                              POINT_RADIUS * self.radius, MAX_POINTS)
    xyz = self.points[shown]
    back = np.cross(right, up)
    nearer = (xyz - pelvis) @ back > scene_points.CUTAWAY_DEPTH
    high = xyz[:, 2] - center[2] > scene_points.CUTAWAY_HEIGHT
    shown = shown[~(nearer & high)]
    self.cloud.set_offsets(project(self.points[shown], center, right, up))
    self.cloud.set_facecolor(self.point_colors[shown])


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
    points: np.ndarray | None = None,
) -> Iterator[np.ndarray]:
  """RGB frames of the body animation.

  Args:
    motion: the motion drawn.
    ground_truth: drawn in grey, in the same view ("overlay") or in a second
      panel on the right ("side_by_side").
    layout: "overlay" or "side_by_side".
    stride: draw every `stride`-th frame.
    size: frame height in pixels (width doubles side by side).
    azimuth_deg, elevation_deg: camera direction (`camera_axes`).
    radius: half the visible width, metres.
    points: (P, 3) world points of the scene (e.g. the recording's
      semi-dense points), drawn in every panel; or None.

  Yields:
    (size, width, 3) uint8 frames, `ceil(T / stride)` of them.
  """
  if layout not in LAYOUTS:
    raise ValueError(f"layout={layout!r}: expected one of {list(LAYOUTS)}")
  if stride < 1:
    raise ValueError(f"stride={stride}: expected >= 1")
  side = ground_truth is not None and layout == "side_by_side"
  width = 2 * size if side else size
  fig = mfigure.Figure(figsize=(width / _DPI, size / _DPI), dpi=_DPI)
  canvas = backend_agg.FigureCanvasAgg(fig)
  right, up = camera_axes(azimuth_deg, elevation_deg)
  colors = bone_colors()
  scale = size / (2 * radius)  # pixels per metre: each panel is size wide
  if side:
    axes = [fig.add_axes((0, 0, 0.5, 1)), fig.add_axes((0.5, 0, 0.5, 1))]
    panels = [_Panel(axes[0], [motion], [colors], radius, scale, points),
              _Panel(axes[1], [ground_truth], [None], radius, scale, points)]
  else:
    ax = fig.add_axes((0, 0, 1, 1))
    shown = [motion] + ([ground_truth] if ground_truth is not None else [])
    panels = [_Panel(ax, shown, [colors, None][:len(shown)], radius, scale,
                     points)]
  for frame in range(0, motion.num_frames, stride):
    time = frame / motion.fps
    for i, panel in enumerate(panels):
      label = (ground_truth.label if i == 1 else motion.label)
      panel.update(frame, right, up,
                   f"{label}  t={time:5.2f}s  frame {frame}/{motion.num_frames}")
    canvas.draw()
    yield np.asarray(canvas.buffer_rgba())[..., :3].copy()
