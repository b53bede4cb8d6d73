"""A self-contained HTML page that plays motions in a browser.

One file, no server and no network: the joint positions and the scene's
points are embedded as JSON (millimetres, integers) in a
`<div id="label"></div>
<script type="application/json">` block and drawn by inline JavaScript
(`html_script.SCRIPT`) on a 2-D canvas filling the window, with a
perspective camera. Mouse: drag to orbit, wheel to zoom. Controls (a bar
over the top of the canvas; the label and time at the bottom left):
play/pause, a frame slider, "follow" (the camera target tracks the head),
"unguided" (shows the sampler's own samples instead of the guided ones,
when the page has them) and "points".

The body is drawn as capsules (`skeleton_frames.BONE_RADII`, `shades`),
sorted by depth; the points (at most `MAX_POINTS`, coloured by height,
`scene_points`) under it.

Query options (deterministic screenshots): `?frame=N` shows frame N paused;
`?autoplay=0` starts paused at frame 0; `?unguided=1` / `?unguided=0` picks
the samples shown; `?points=0` hides the points. The first frame is drawn on
load, without interaction.

Colours as the GIF's (`skeleton_frames`): left red, right blue, centre dark
grey, ground truth light grey, head path orange, contacts green.
"""

from __future__ import annotations

import html
import json
import os
import pathlib
import re
from collections.abc import Sequence

import numpy as np

from motiongrpo_jax.body import skeleton
from motiongrpo_jax.render import html_script
from motiongrpo_jax.render import motion_file
from motiongrpo_jax.render import scene_points
from motiongrpo_jax.render import skeleton_frames

DATA_ELEMENT_ID = "motion-data"
MAX_POINTS = 20_000


def css_color(color) -> str:
  """The CSS "rgb(r,g,b)" of an RGB colour in [0, 1]."""
  return "rgb({},{},{})".format(*(int(round(255 * c)) for c in color))


def _mm(values: np.ndarray) -> list[int]:
  return np.round(np.asarray(values) * 1000).astype(int).ravel().tolist()


def _motion_entry(motion: motion_file.Motion, color) -> dict:
  contacts = None
  if motion.contacts is not None:
    contacts = (motion.contacts > 0.5).astype(int).ravel().tolist()
  return {
      "label": motion.label,
      "color": None if color is None else css_color(color),
      "shades": None if color is None else [
          css_color(c) for c in skeleton_frames.shades(color)],
      "num_frames": motion.num_frames,
      "joints_mm": _mm(motion.joints),
      "head_mm": _mm(motion.head),
      "contacts": contacts,
  }


def _points_entry(points: np.ndarray, floor_z: float) -> dict:
  """Points grouped by palette level (one fill colour per group)."""
  points = scene_points.subsample(np.asarray(points, np.float64), MAX_POINTS)
  levels = scene_points.height_levels(points, floor_z)
  order = np.argsort(levels, kind="stable")
  return {
      "points_mm": _mm(points[order]),
      "point_level_counts": np.bincount(
          levels, minlength=scene_points.NUM_LEVELS).tolist(),
      "point_palette": [css_color(c) for c in scene_points.palette()],
  }


def scene_json(motions: Sequence[motion_file.Motion],
               points: np.ndarray | None = None,
               unguided: motion_file.Motion | None = None,
               show_unguided: bool = False) -> dict:
  """The data the page embeds.

  Args:
    motions: the first is the main motion (coloured by side, its head path
      and contacts drawn); the others (ground truth) are drawn grey.
    points: (P, 3) world points of the scene, subsampled to `MAX_POINTS`;
      or None.
    unguided: the main motion's unguided samples, shown in its place by
      the page's "unguided" switch; or None.
    show_unguided: the page opens on `unguided`.

  Returns:
    {"fps", "floor_z_mm", "parents", "num_frames", "num_joints",
     "bone_colors", "bone_shades" (21 × [outline, fill, stripe]),
     "bone_radii_mm", "cutaway_mm" ([depth, height]), "motions": [{"label",
     "color", "shades", "joints_mm" (T·22·3 ints, frame-major), "head_mm"
     (T·3), "contacts" (T·21 0/1 or None)}], "unguided" (an entry as in
     "motions", or None), "show_unguided", "points_mm" (P·3, by level),
     "point_level_counts" (L), "point_palette" (L)}.
  """
  colors = skeleton_frames.bone_colors()
  main = motions[0]
  scene = {
      "fps": main.fps,
      "floor_z_mm": int(round(main.floor_z * 1000)),
      "parents": list(skeleton.PARENTS),
      "num_frames": main.num_frames,
      "num_joints": motion_file.NUM_JOINTS,
      "bone_colors": [css_color(c) for c in colors],
      "bone_shades": [[css_color(s) for s in skeleton_frames.shades(c)]
                      for c in colors],
      "bone_radii_mm": _mm(skeleton_frames.bone_radii()),
      "cutaway_mm": _mm([scene_points.CUTAWAY_DEPTH,
                         scene_points.CUTAWAY_HEIGHT]),
      "motions": [_motion_entry(m, None if i == 0 else
                                skeleton_frames.GROUND_TRUTH_COLOR)
                  for i, m in enumerate(motions)],
      "unguided": None if unguided is None else _motion_entry(unguided, None),
      "show_unguided": bool(show_unguided and unguided is not None),
      "points_mm": [], "point_level_counts": [], "point_palette": [],
  }
  if points is not None and len(points):
    scene.update(_points_entry(points, main.floor_z))
  return scene


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>__TITLE__</title>
<style>
html, body { margin: 0; height: 100%; overflow: hidden; font: 13px sans-serif; }
canvas { position: fixed; left: 0; top: 0; width: 100vw; height: 100vh;
         cursor: grab; background: #fff; }
#bar { position: fixed; left: 0; right: 0; top: 0; padding: 6px;
       display: flex; gap: 8px; align-items: center;
       background: rgba(250, 250, 250, 0.85); }
#slider { flex: 1; min-width: 60px; }
#bar label { white-space: nowrap; }
#label { position: fixed; left: 0; bottom: 0; padding: 4px 6px;
         background: rgba(250, 250, 250, 0.85); }
</style>
</head>
<body>
<canvas id="view"></canvas>
<div id="bar">
<button id="play">pause</button>
<input id="slider" type="range" min="0" value="0">
<label><input id="follow" type="checkbox" checked> follow</label>
<label id="unguided-switch"><input id="unguided" type="checkbox"> unguided</label>
<label id="points-switch"><input id="points" type="checkbox" checked> points</label>
</div>
<div id="label"></div>
<script type="application/json" id="__DATA_ID__">__DATA__</script>
<script>
__SCRIPT__
</script>
</body>
</html>
"""


def page(motions: Sequence[motion_file.Motion], title: str = "motion",
         **scene) -> str:
  """The HTML text of a viewer for `motions` (`scene` as `scene_json`)."""
  if not motions:
    raise ValueError("page: no motion to show")
  data = json.dumps(scene_json(motions, **scene), separators=(",", ":"))
  # Keep the JSON from closing its <script> element.
  data = data.replace("</", "<\\/")
  values = {
      "TITLE": html.escape(title), "DATA_ID": DATA_ELEMENT_ID, "DATA": data,
      "SCRIPT": html_script.SCRIPT.replace("__DATA_ID__", DATA_ELEMENT_ID)}
  # One pass: a title or label holding a placeholder stays as it is.
  return re.sub(r"__(TITLE|DATA_ID|SCRIPT|DATA)__",
                lambda m: values[m.group(1)], _PAGE)


def write_html(path: str | os.PathLike, motions: Sequence[motion_file.Motion],
               title: str = "motion", **scene) -> pathlib.Path:
  """Writes the viewer page (atomically).

  Args:
    path: the `.html` file.
    motions: the main motion, then any ground truth.
    title: the page title.
    **scene: `points`, `unguided`, `show_unguided` of `scene_json`.

  Returns:
    The path written.
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.name}.tmp")
  tmp.write_text(page(motions, title, **scene), encoding="utf-8")
  os.replace(tmp, path)
  return path
