"""Tests for the offline HTML viewer (embedded data, no network, and, when
Chromium is installed, headless screenshots: capsules by side, points where
they project, the unguided switch) and the optional viser viewer (with a
stand-in server)."""

import html.parser
import json
import pathlib
import shutil
import subprocess
import sys

import imageio.v2 as imageio
import numpy as np
import pytest

import render_motions
from motiongrpo_jax.body import skeleton
from motiongrpo_jax.render import html_viewer
from motiongrpo_jax.render import scene_points
from motiongrpo_jax.render import skeleton_frames
from motiongrpo_jax.render import viser_viewer


class _Scripts(html.parser.HTMLParser):
  """Collects <script> elements: (attributes, text)."""

  def __init__(self):
    super().__init__()
    self.scripts, self._current = [], None
    self.urls = []

  def handle_starttag(self, tag, attrs):
    attrs = dict(attrs)
    self.urls += [v for k, v in attrs.items() if k in ("src", "href") and v]
    if tag == "script":
      self._current = [attrs, ""]

  def handle_data(self, data):
    if self._current is not None:
      self._current[1] += data

  def handle_endtag(self, tag):
    if tag == "script" and self._current is not None:
      self.scripts.append(tuple(self._current))
      self._current = None


def _parse(text):
  parser = _Scripts()
  parser.feed(text)
  return parser


def test_page_embeds_frames_and_needs_no_network(tmp_path):
  motion = render_motions.walking_motion(num_frames=5, floor_z=0.25,
                                         label="a </script> label")
  truth = render_motions.walking_motion(num_frames=4, label="gt")
  path = html_viewer.write_html(tmp_path / "m.html", [motion, truth])
  text = path.read_text()
  parsed = _parse(text)
  data_scripts = [s for a, s in parsed.scripts
                  if a.get("id") == html_viewer.DATA_ELEMENT_ID]
  assert len(data_scripts) == 1
  data = json.loads(data_scripts[0])
  assert (data["num_frames"], data["num_joints"]) == (5, 22)
  assert data["parents"] == list(skeleton.PARENTS)
  assert data["floor_z_mm"] == 250
  main, gt = data["motions"]
  assert main["label"] == "a </script> label"  # Escaped, still intact.
  assert len(main["joints_mm"]) == 5 * 22 * 3
  np.testing.assert_array_equal(
      np.reshape(main["joints_mm"], (5, 22, 3)),
      np.round(motion.joints * 1000).astype(int))
  assert len(gt["joints_mm"]) == 4 * 22 * 3 and gt["color"] is not None
  assert sum(main["contacts"]) == 5  # The left foot, every frame.
  # Self-contained: no script source, link or URL anywhere.
  assert all("src" not in a for a, _ in parsed.scripts)
  assert parsed.urls == []
  assert "http" not in text and "://" not in text


def test_page_embeds_points_by_level_and_unguided_samples(tmp_path):
  motion = render_motions.walking_motion(num_frames=3, floor_z=0.1)
  down = render_motions.walking_motion(num_frames=3, floor_z=0.1, down=True,
                                       label="walk unguided")
  rng = np.random.default_rng(0)
  many = rng.uniform([-3, -3, 0], [3, 3, 3], (html_viewer.MAX_POINTS + 50, 3))
  text = html_viewer.page([motion], points=many, unguided=down,
                          show_unguided=True)
  data = json.loads(next(s for a, s in _parse(text).scripts
                         if a.get("id") == html_viewer.DATA_ELEMENT_ID))
  counts = data["point_level_counts"]
  assert sum(counts) == html_viewer.MAX_POINTS  # subsampled
  assert len(counts) == len(data["point_palette"]) == scene_points.NUM_LEVELS
  # Grouped by level, in order of height above the floor (band edges
  # within the millimetre rounding).
  height = np.reshape(data["points_mm"], (-1, 3))[:, 2] / 1000 - 0.1
  band = scene_points.TOP_HEIGHT / scene_points.NUM_LEVELS
  levels = np.repeat(np.arange(scene_points.NUM_LEVELS), counts)
  assert np.all((height > levels * band - 1e-3) | (levels == 0))
  assert np.all((height < (levels + 1) * band + 1e-3) | (levels == 15))
  assert data["unguided"]["label"] == "walk unguided"
  assert data["show_unguided"] is True
  np.testing.assert_array_equal(
      np.reshape(data["unguided"]["joints_mm"], (3, 22, 3)),
      np.round(down.joints * 1000).astype(int))
  assert len(data["bone_radii_mm"]) == len(data["bone_shades"]) == 21
  # Without either: empty points, no switch.
  plain = html_viewer.scene_json([motion])
  assert plain["points_mm"] == [] and plain["unguided"] is None
  # A label holding a placeholder stays as it is.
  odd = render_motions.walking_motion(num_frames=2, label="__SCRIPT__")
  assert '"label":"__SCRIPT__"' in html_viewer.page([odd], title="__DATA__")


def _find_chromium():
  for name in ("chromium", "chromium-browser", "google-chrome"):
    if shutil.which(name):
      return shutil.which(name)
  return None


_SIZE = (480, 360)  # window (width, height): the canvas fills it


def _screenshot(binary, page, query, out):
  """The page at `query` as (H, W, 3) ints, from headless Chromium."""
  profile = out.with_suffix(".profile")
  # Headless as root in a container, offline, with a fresh profile: no
  # sandbox, GPU, QUIC, first-run UI, background or update traffic, or sync.
  result = subprocess.run(
      [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
       "--no-first-run", "--disable-background-networking",
       "--disable-component-update", "--disable-sync",
       f"--user-data-dir={profile}", "--hide-scrollbars",
       f"--screenshot={out}", f"--window-size={_SIZE[0]},{_SIZE[1]}",
       f"{pathlib.Path(page).absolute().as_uri()}{query}"],
      capture_output=True, text=True, timeout=60, check=False)
  assert out.is_file(), result.stderr[-2000:]
  image = imageio.imread(out)[..., :3].astype(int)
  assert image.shape[:2] == (_SIZE[1], _SIZE[0])
  return image


def _near(image, color, tol):
  if isinstance(color, str):  # "rgb(r,g,b)"
    color = [int(v) / 255 for v in color[4:-1].split(",")]
  target = np.asarray([round(255 * c) for c in color])
  return np.all(np.abs(image - target) <= tol, axis=-1)


def _project(points, target):
  """(P, 2) pixels and (P,) depths of world points, as the page's camera
  (`html_script`) with its default view, "follow" on, at `target`."""
  az, el, dist = np.radians(-60.0), np.radians(20.0), 4.5
  back = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az),
                   np.sin(el)])
  right = np.array([-back[1], back[0], 0.0]) / np.hypot(back[0], back[1])
  up = np.cross(back, right)
  d = points - (target + dist * back)
  z = -(d @ back)
  w, h = _SIZE
  f = 0.9 * min(w, h)
  return np.stack([w / 2 + f * (d @ right) / z, h / 2 - f * (d @ up) / z],
                  axis=-1), z


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
  """Screenshots of one page at frame 3: a walk in a T-pose (guided), the
  same with its arms down (unguided), a wall of points behind the body;
  by query: guided, unguided, points off."""
  binary = _find_chromium()
  if binary is None:
    pytest.skip("no chromium, chromium-browser or google-chrome on PATH: "
                "apt-get install chromium to run this check of the HTML viewer")
  tmp = tmp_path_factory.mktemp("shots")
  motion = render_motions.walking_motion(num_frames=10)
  down = render_motions.walking_motion(num_frames=10, down=True)
  wall = render_motions.wall_points(2.0)
  page = html_viewer.write_html(tmp / "m.html", [motion], points=wall,
                                unguided=down)
  images = {name: _screenshot(binary, page, query, tmp / f"{name}.png")
            for name, query in (("guided", "?frame=3"),
                                ("unguided", "?frame=3&unguided=1"),
                                ("no_points", "?frame=3&points=0"))}
  return motion, wall, images


def test_headless_chromium_screenshot_shows_capsules(shots):
  motion, _, images = shots
  image = images["no_points"]
  # Both body sides and the dark spine are drawn.
  assert _near(image, skeleton_frames.LEFT_COLOR, 30).sum() > 50
  assert _near(image, skeleton_frames.RIGHT_COLOR, 30).sum() > 50
  assert _near(image, skeleton_frames.CENTER_COLOR, 30).sum() > 20
  # Capsules, not lines: the body covers far more than the 4-pixel strokes
  # of the old skeleton could (the bones' projected length × 4).
  target = np.array([*motion.head[3, :2], 0.9])
  screen, _ = _project(motion.joints[3], target)
  parents = list(skeleton.PARENTS[1:])
  line_area = 4 * np.linalg.norm(screen[1:] - screen[parents], axis=-1).sum()
  shades = [s for c in skeleton_frames.bone_colors()
            for s in skeleton_frames.shades(c)]
  body = np.any([_near(image, s, 20) for s in set(shades)], axis=0).sum()
  assert body > 2 * line_area, (body, line_area)  # measured 2.4×


def test_headless_chromium_points_where_they_project(shots):
  motion, wall, images = shots
  palette = [html_viewer.css_color(c) for c in scene_points.palette()]
  levels = scene_points.height_levels(wall, motion.floor_z)
  pixels, _ = _project(wall, np.array([*motion.head[3, :2], 0.9]))
  # Points clear of the control bar (top 50 rows), the label (bottom 30)
  # and the body, its contact dot and the head path (the box around the
  # projected joints).
  body, _ = _project(motion.joints[3], np.array([*motion.head[3, :2], 0.9]))
  lo, hi = body.min(0) - 25, body.max(0) + 25
  clear = ((pixels[:, 1] > 50) & (pixels[:, 1] < _SIZE[1] - 30)
           & (pixels[:, 0] > 3) & (pixels[:, 0] < _SIZE[0] - 3)
           & ~np.all((pixels > lo) & (pixels < hi), axis=-1))
  assert clear.sum() > 300

  def found(image):
    """How many clear points show their level's colour within 2 pixels."""
    hits = 0
    for (x, y), level in zip(np.round(pixels[clear]).astype(int),
                             levels[clear]):
      window = image[y - 2:y + 3, x - 2:x + 3]
      hits += bool(_near(window, palette[level], 3).any())
    return hits

  # Drawn in their height's colour where the camera projects them
  # (exact colours: the squares sit on whole pixels).
  assert found(images["guided"]) > 0.9 * clear.sum()
  assert found(images["no_points"]) < 0.05 * clear.sum()
  assert sum(_near(images["no_points"], c, 3).sum() for c in palette) < 50


def test_headless_chromium_unguided_switch(shots):
  _, _, images = shots
  # The arms hang down in the unguided samples: between the control bar
  # and the label the two pictures differ, and the points on the left stay.
  guided, unguided = (images[k][50:-30] for k in ("guided", "unguided"))
  changed = np.any(guided != unguided, axis=-1)
  assert changed.sum() > 500, changed.sum()
  np.testing.assert_array_equal(guided[:, :80], unguided[:, :80])


class _FakeHandle:

  def __init__(self, value=None):
    self.value = value
    self.callbacks = []

  def on_update(self, callback):
    self.callbacks.append(callback)
    return callback


class _FakeScene:

  def __init__(self):
    self.calls = {}

  def add_grid(self, name, **kwargs):
    self.calls[name] = kwargs
    return _FakeHandle()

  def add_line_segments(self, name, **kwargs):
    self.calls[name] = kwargs
    return _FakeHandle()


class _FakeGui:

  def add_slider(self, label, **kwargs):
    del label
    return _FakeHandle(kwargs["initial_value"])

  def add_checkbox(self, label, **kwargs):
    del label
    return _FakeHandle(kwargs["initial_value"])


class _FakeServer:

  def __init__(self):
    self.scene, self.gui = _FakeScene(), _FakeGui()


def test_viser_viewer_scene_with_a_stand_in_server(monkeypatch):
  monkeypatch.setitem(sys.modules, "viser", None)
  with pytest.raises(ImportError, match="pip install viser"):
    viser_viewer.import_viser()
  motion = render_motions.walking_motion(num_frames=6, floor_z=0.3)
  truth = render_motions.walking_motion(num_frames=4)
  server = _FakeServer()
  viewer = viser_viewer.ViserViewer([motion, truth], server)
  calls = server.scene.calls
  assert calls["/floor"]["position"][2] == pytest.approx(0.3)
  assert calls["/head_path"]["points"].shape == (5, 2, 3)
  viewer.slider.value = 5
  viewer.slider.callbacks[0](None)
  bones = calls["/skeleton_0"]["points"]
  assert bones.shape == (21, 2, 3)
  # Bone j runs from its parent to joint j of frame 5; the ground truth
  # (4 frames) stays at its last frame.
  np.testing.assert_allclose(bones[14, 1], motion.joints[5, 15], atol=1e-6)
  np.testing.assert_allclose(bones[14, 0], motion.joints[5, 12], atol=1e-6)
  np.testing.assert_allclose(calls["/skeleton_1"]["points"][:, 1],
                             truth.joints[3, 1:], atol=1e-6)
  assert tuple(calls["/skeleton_1"]["colors"][0, 0]) == (153, 153, 153)
