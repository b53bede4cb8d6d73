"""A self-contained HTML page that plays motions in a browser.

One file, no server and no network: the joint positions are embedded as
JSON (millimetres, integers) in a `<script type="application/json">` block
and drawn by a few lines of inline JavaScript on a 2-D canvas with a
perspective camera. Mouse: drag to orbit, wheel to zoom. Controls:
play/pause, a frame slider, "follow" (the camera target tracks the head).

Query options (deterministic screenshots): `?frame=N` shows frame N paused;
`?autoplay=0` starts paused at frame 0. The first frame is drawn on load,
without interaction.

Colours as the GIF's (`skeleton_frames`): left red, right blue, centre dark
grey, ground truth light grey, head path orange, contacts green.
"""

from __future__ import annotations

import html
import json
import os
import pathlib
from collections.abc import Sequence

import numpy as np

from motiongrpo_jax.body import skeleton
from motiongrpo_jax.render import motion_file
from motiongrpo_jax.render import skeleton_frames

DATA_ELEMENT_ID = "motion-data"


def _rgb(color) -> str:
  return "rgb({},{},{})".format(*(int(round(255 * c)) for c in color))


def scene_json(motions: Sequence[motion_file.Motion]) -> dict:
  """The data the page embeds.

  Args:
    motions: the first is the main motion (coloured by side, its head path
      and contacts drawn); the others (ground truth) are drawn grey.

  Returns:
    {"fps", "floor_z_mm", "parents", "num_frames", "num_joints",
     "bone_colors", "motions": [{"label", "color", "joints_mm" (T·22·3
     ints, frame-major), "head_mm" (T·3), "contacts" (T·21 0/1 or None)}]}.
  """
  colors = [_rgb(c) for c in skeleton_frames.bone_colors()]
  entries = []
  for i, motion in enumerate(motions):
    contacts = None
    if motion.contacts is not None:
      contacts = (motion.contacts > 0.5).astype(int).ravel().tolist()
    entries.append({
        "label": motion.label,
        "color": None if i == 0 else _rgb(skeleton_frames.GROUND_TRUTH_COLOR),
        "num_frames": motion.num_frames,
        "joints_mm": np.round(motion.joints * 1000).astype(int).ravel().tolist(),
        "head_mm": np.round(motion.head * 1000).astype(int).ravel().tolist(),
        "contacts": contacts,
    })
  return {
      "fps": motions[0].fps,
      "floor_z_mm": int(round(motions[0].floor_z * 1000)),
      "parents": list(skeleton.PARENTS),
      "num_frames": motions[0].num_frames,
      "num_joints": motion_file.NUM_JOINTS,
      "bone_colors": colors,
      "motions": entries,
  }


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>__TITLE__</title>
<style>
body { margin: 0; font: 13px sans-serif; background: #fafafa; }
#bar { padding: 6px; display: flex; gap: 8px; align-items: center; }
#slider { flex: 1; }
canvas { display: block; width: 100vw; height: calc(100vh - 40px);
         cursor: grab; background: #fff; }
</style>
</head>
<body>
<div id="bar">
<button id="play">pause</button>
<input id="slider" type="range" min="0" value="0">
<span id="label"></span>
<label><input id="follow" type="checkbox" checked> follow</label>
</div>
<canvas id="view"></canvas>
<script type="application/json" id="__DATA_ID__">__DATA__</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById("__DATA_ID__").textContent);
const J = D.num_joints, T = D.num_frames, FLOOR = D.floor_z_mm / 1000;
const canvas = document.getElementById("view");
const ctx = canvas.getContext("2d");
const slider = document.getElementById("slider");
const playButton = document.getElementById("play");
const label = document.getElementById("label");
const follow = document.getElementById("follow");
slider.max = T - 1;
const query = new URLSearchParams(window.location.search);
let frame = 0, playing = query.get("autoplay") !== "0";
if (query.has("frame")) {
  frame = Math.max(0, Math.min(T - 1, parseInt(query.get("frame")) || 0));
  playing = false;
}
let az = -60 * Math.PI / 180, el = 20 * Math.PI / 180, dist = 4.5;
let target = [0, 0, FLOOR + 0.9];

function joint(m, t, j) {
  const k = 3 * (Math.min(t, m.num_frames - 1) * J + j);
  return [m.joints_mm[k] / 1000, m.joints_mm[k + 1] / 1000,
          m.joints_mm[k + 2] / 1000];
}
function head(m, t) {
  const k = 3 * Math.min(t, m.num_frames - 1);
  return [m.head_mm[k] / 1000, m.head_mm[k + 1] / 1000, m.head_mm[k + 2] / 1000];
}
function camera() {
  const back = [Math.cos(el) * Math.cos(az), Math.cos(el) * Math.sin(az),
                Math.sin(el)];
  const eye = [target[0] + dist * back[0], target[1] + dist * back[1],
               target[2] + dist * back[2]];
  let right = [-back[1], back[0], 0];
  const n = Math.hypot(right[0], right[1]) || 1;
  right = [right[0] / n, right[1] / n, 0];
  const up = [back[1] * right[2] - back[2] * right[1],
              back[2] * right[0] - back[0] * right[2],
              back[0] * right[1] - back[1] * right[0]];
  return {eye, back, right, up};
}
function projector(cam) {
  const w = canvas.width, h = canvas.height, f = 0.9 * Math.min(w, h);
  return function (p) {
    const d = [p[0] - cam.eye[0], p[1] - cam.eye[1], p[2] - cam.eye[2]];
    const z = -(d[0] * cam.back[0] + d[1] * cam.back[1] + d[2] * cam.back[2]);
    if (z < 0.05) return null;
    const x = d[0] * cam.right[0] + d[1] * cam.right[1] + d[2] * cam.right[2];
    const y = d[0] * cam.up[0] + d[1] * cam.up[1] + d[2] * cam.up[2];
    return [w / 2 + f * x / z, h / 2 - f * y / z];
  };
}
function line(P, a, b, color, width) {
  const pa = P(a), pb = P(b);
  if (!pa || !pb) return;
  ctx.strokeStyle = color; ctx.lineWidth = width;
  ctx.beginPath(); ctx.moveTo(pa[0], pa[1]); ctx.lineTo(pb[0], pb[1]);
  ctx.stroke();
}
function polyline(P, m, t0, t1, color, width) {
  ctx.strokeStyle = color; ctx.lineWidth = width; ctx.beginPath();
  let open = false;
  for (let t = t0; t < t1; t++) {
    const p = P(head(m, t));
    if (!p) { open = false; continue; }
    if (open) ctx.lineTo(p[0], p[1]); else ctx.moveTo(p[0], p[1]);
    open = true;
  }
  ctx.stroke();
}
function draw() {
  const dpr = window.devicePixelRatio || 1;
  const w = Math.round(canvas.clientWidth * dpr);
  const h = Math.round(canvas.clientHeight * dpr);
  if (canvas.width !== w || canvas.height !== h) {
    canvas.width = w; canvas.height = h;
  }
  const main = D.motions[0];
  if (follow.checked) {
    const p = head(main, frame);
    target = [p[0], p[1], FLOOR + 0.9];
  }
  const P = projector(camera());
  ctx.clearRect(0, 0, w, h);
  const s = 0.5, r = 6;
  const cx = Math.round(target[0] / s) * s, cy = Math.round(target[1] / s) * s;
  for (let i = -r / s; i <= r / s; i++) {
    line(P, [cx + i * s, cy - r, FLOOR], [cx + i * s, cy + r, FLOOR], "#ccc", 1);
    line(P, [cx - r, cy + i * s, FLOOR], [cx + r, cy + i * s, FLOOR], "#ccc", 1);
  }
  polyline(P, main, 0, T, "rgba(242,153,25,0.35)", 1.5);
  polyline(P, main, 0, frame + 1, "rgb(242,153,25)", 2.5);
  for (let i = D.motions.length - 1; i >= 0; i--) {
    const m = D.motions[i];
    for (let j = 1; j < J; j++) {
      line(P, joint(m, frame, D.parents[j]), joint(m, frame, j),
           m.color || D.bone_colors[j - 1], m.color ? 3 : 4);
    }
    if (m.contacts && !m.color) {
      ctx.fillStyle = "rgb(26,179,51)";
      const t = Math.min(frame, m.num_frames - 1);
      for (let j = 1; j < J; j++) {
        if (!m.contacts[t * (J - 1) + j - 1]) continue;
        const p = P(joint(m, frame, j));
        if (p) { ctx.beginPath(); ctx.arc(p[0], p[1], 5, 0, 2 * Math.PI); ctx.fill(); }
      }
    }
  }
  slider.value = frame;
  label.textContent = main.label + "  frame " + frame + "/" + T +
      "  t=" + (frame / D.fps).toFixed(2) + " s";
  playButton.textContent = playing ? "pause" : "play";
}
let last = null;
function tick(now) {
  if (playing) {
    if (last === null) last = now;
    const steps = Math.floor((now - last) * D.fps / 1000);
    if (steps > 0) { frame = (frame + steps) % T; last += steps * 1000 / D.fps; draw(); }
  } else {
    last = null;
  }
  requestAnimationFrame(tick);
}
playButton.onclick = function () { playing = !playing; draw(); };
slider.oninput = function () { frame = parseInt(slider.value); playing = false; draw(); };
follow.onchange = draw;
let drag = null;
canvas.onmousedown = function (e) { drag = [e.clientX, e.clientY]; };
window.onmouseup = function () { drag = null; };
window.onmousemove = function (e) {
  if (!drag) return;
  az -= (e.clientX - drag[0]) * 0.01;
  el = Math.max(-0.2, Math.min(1.5, el + (e.clientY - drag[1]) * 0.01));
  drag = [e.clientX, e.clientY]; draw();
};
canvas.onwheel = function (e) {
  e.preventDefault();
  dist = Math.max(1, Math.min(30, dist * Math.exp(e.deltaY * 0.001))); draw();
};
window.onresize = draw;
draw();
requestAnimationFrame(tick);
</script>
</body>
</html>
"""


def page(motions: Sequence[motion_file.Motion], title: str = "motion") -> str:
  """The HTML text of a viewer for `motions` (see `scene_json`)."""
  if not motions:
    raise ValueError("page: no motion to show")
  data = json.dumps(scene_json(motions), separators=(",", ":"))
  # Keep the JSON from closing its <script> element.
  data = data.replace("</", "<\\/")
  return (_PAGE.replace("__TITLE__", html.escape(title))
          .replace("__DATA_ID__", DATA_ELEMENT_ID).replace("__DATA__", data))


def write_html(path: str | os.PathLike, motions: Sequence[motion_file.Motion],
               title: str = "motion") -> pathlib.Path:
  """Writes the viewer page (atomically).

  Args:
    path: the `.html` file.
    motions: the main motion, then any ground truth.
    title: the page title.

  Returns:
    The path written.
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.name}.tmp")
  tmp.write_text(page(motions, title), encoding="utf-8")
  os.replace(tmp, path)
  return path
