"""Tests for the `tools/render` command line on a small motion npz."""

import json
import re
import subprocess
import sys

import imageio.v2 as imageio
import numpy as np


def _joints(num_frames):
  """(T, 22, 3) arbitrary finite joints: the tool only draws them."""
  rng = np.random.default_rng(0)
  joints = rng.normal(0, 0.3, (num_frames, 22, 3))
  joints[..., 2] += 1.0
  return joints


def test_cli_writes_gif_and_html(tmp_path):
  np.savez(tmp_path / "out.npz", joints_world=_joints(5)[None], floor_z=0.0)
  np.savez(tmp_path / "gt.npz", joints_world=_joints(5))
  gif = tmp_path / "m.gif"
  subprocess.run(
      [sys.executable, "-m", "motiongrpo_jax.tools.render",
       f"--input={tmp_path / 'out.npz'}", f"--output={gif}",
       f"--ground_truth={tmp_path / 'gt.npz'}", "--layout=side_by_side",
       "--stride=2", "--size=64"], check=True, capture_output=True, text=True,
      timeout=120)
  frames = imageio.mimread(gif)
  assert len(frames) == 3 and frames[0].shape[:2] == (64, 128)


def _page_data(path):
  text = path.read_text()
  return json.loads(re.search(r'<script type="application/json" '
                              r'id="motion-data">(.*?)</script>', text,
                              re.S).group(1))


def test_cli_html_with_points_and_unguided_samples(tmp_path):
  joints = _joints(5)
  np.savez(tmp_path / "out.npz", joints_world=joints[None],
           unguided_joints_world=joints[None] + 0.1,
           semidense_points=np.random.default_rng(1).normal(size=(30, 3)),
           floor_z=0.0)

  def render(*flags):
    page = tmp_path / f"m{len(flags)}.html"
    subprocess.run(
        [sys.executable, "-m", "motiongrpo_jax.tools.render",
         f"--input={tmp_path / 'out.npz'}", f"--output={page}", *flags],
        check=True, capture_output=True, text=True, timeout=120)
    return _page_data(page)

  data = render()
  assert len(data["points_mm"]) == 30 * 3
  assert data["motions"][0]["label"] == "out[0] guided"
  assert data["unguided"]["label"] == "out[0] unguided"
  np.testing.assert_array_equal(
      np.reshape(data["unguided"]["joints_mm"], (5, 22, 3)),
      np.round((joints + 0.1) * 1000).astype(int))
  assert data["show_unguided"] is False
  data = render("--nopoints", "--unguided")
  assert data["points_mm"] == [] and data["show_unguided"] is True


def test_cli_reports_bad_input(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "motiongrpo_jax.tools.render",
       f"--input={tmp_path / 'missing.npz'}", f"--output={tmp_path / 'm.gif'}"],
      capture_output=True, text=True, timeout=120, check=False)
  assert result.returncode != 0
  assert "missing.npz: no such file" in result.stderr
