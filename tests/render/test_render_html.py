"""Tests for the offline HTML viewer (embedded data, no network, and, when
Chromium is installed, a headless screenshot that shows the skeleton) and
the optional viser viewer (with a stand-in server)."""

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


def _find_chromium():
  for name in ("chromium", "chromium-browser", "google-chrome"):
    if shutil.which(name):
      return shutil.which(name)
  return None


def test_headless_chromium_screenshot_shows_skeleton(tmp_path):
  binary = _find_chromium()
  if binary is None:
    pytest.skip("no chromium, chromium-browser or google-chrome on PATH: "
                "apt-get install chromium to run this check of the HTML viewer")
  motion = render_motions.walking_motion(num_frames=10)
  page = html_viewer.write_html(tmp_path / "m.html", [motion])
  shot = tmp_path / "shot.png"
  # Headless as root in a container, offline, with a fresh profile: no
  # sandbox, GPU, QUIC, first-run UI, background or update traffic, or sync.
  result = subprocess.run(
      [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
       "--no-first-run", "--disable-background-networking",
       "--disable-component-update", "--disable-sync",
       f"--user-data-dir={tmp_path / 'profile'}",
       "--hide-scrollbars", f"--screenshot={shot}", "--window-size=480,360",
       f"{pathlib.Path(page).absolute().as_uri()}?frame=3"],
      capture_output=True, text=True, timeout=60, check=False)
  assert shot.is_file(), result.stderr[-2000:]
  image = imageio.imread(shot)[..., :3].astype(int)
  assert image.shape[:2] == (360, 480)

  def count(color, tol=30):
    target = np.asarray([round(255 * c) for c in color])
    return int(np.sum(np.all(np.abs(image - target) <= tol, axis=-1)))

  # Both body sides and the dark spine are drawn (strokes 4 px wide).
  assert count(skeleton_frames.LEFT_COLOR) > 50
  assert count(skeleton_frames.RIGHT_COLOR) > 50
  assert count(skeleton_frames.CENTER_COLOR) > 20


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
