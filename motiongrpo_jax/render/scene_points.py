"""The recording's semi-dense points as the renderers draw them.

Points are coloured by height above the floor in `NUM_LEVELS` bands of a
light palette (sand on the floor, green, sky blue, lilac up to `TOP_HEIGHT`
and above), pale enough that the body's saturated colours stay the
strongest in the picture. The renderers keep a fixed random subset
(`random_order`), so the same points survive from frame to frame and
nothing flickers.

Cut-away (both renderers): points nearer the camera than the pelvis by more
than `CUTAWAY_DEPTH` are drawn only up to `CUTAWAY_HEIGHT` above the floor,
so a wall between the camera and the body never hides it while the floor
in front of it stays. All points are drawn under the body.
"""

from __future__ import annotations

import numpy as np

NUM_LEVELS = 16
TOP_HEIGHT = 2.4  # metres above the floor: the last band and higher
# Anchors of the palette, linear in between: height (m) → RGB.
_ANCHOR_HEIGHTS = (0.0, 0.8, 1.6, 2.4)
_ANCHOR_COLORS = ((0.82, 0.72, 0.52), (0.58, 0.80, 0.60),
                  (0.58, 0.76, 0.92), (0.80, 0.66, 0.90))
CUTAWAY_DEPTH = 0.3
CUTAWAY_HEIGHT = 0.5


def palette(num_levels: int = NUM_LEVELS) -> np.ndarray:
  """(L, 3) RGB in [0, 1]: level i is the colour at the middle of its band."""
  heights = (np.arange(num_levels) + 0.5) * TOP_HEIGHT / num_levels
  anchors = np.asarray(_ANCHOR_COLORS)
  return np.stack([np.interp(heights, _ANCHOR_HEIGHTS, anchors[:, c])
                   for c in range(3)], axis=-1)


def height_levels(points: np.ndarray, floor_z: float,
                  num_levels: int = NUM_LEVELS) -> np.ndarray:
  """(P,) int palette level of (P, 3) points: bands of TOP_HEIGHT / L.

  Points under the floor get level 0, points above TOP_HEIGHT the last.
  """
  bands = np.floor((points[:, 2] - floor_z) * num_levels / TOP_HEIGHT)
  return np.clip(bands, 0, num_levels - 1).astype(np.int64)


def random_order(num_points: int, seed: int = 0) -> np.ndarray:
  """(P,) a fixed permutation: the renderers keep its first points."""
  return np.random.default_rng(seed).permutation(num_points)


def subsample(points: np.ndarray, max_points: int, seed: int = 0
              ) -> np.ndarray:
  """At most `max_points` of (P, 3) points: a fixed random subset."""
  if len(points) <= max_points:
    return points
  return points[np.sort(random_order(len(points), seed)[:max_points])]


def near(points: np.ndarray, order: np.ndarray, center: np.ndarray,
         radius: float, max_points: int) -> np.ndarray:
  """Indices of at most `max_points` points within `radius` of `center`.

  Args:
    points: (P, 3) points.
    order: (P,) `random_order`: which points are kept when too many are
      near (the same ones in every frame).
    center: (3,) the horizontal distance to its x, y counts.
    radius: metres.
    max_points: most indices returned.

  Returns:
    (K,) indices into `points`, K <= max_points.
  """
  offset = points[order, :2] - np.asarray(center)[:2]
  inside = np.einsum("pi,pi->p", offset, offset) <= radius * radius
  return order[inside][:max_points]
