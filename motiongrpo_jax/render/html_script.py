"""The HTML viewer's JavaScript (`html_viewer`): camera, drawing, controls.

It reads the JSON block `__DATA_ID__` (`html_viewer.scene_json`) and draws
on the canvas `view` with the bar's controls; `html_viewer.page` fills in
the id. Camera: perspective, focal length 0.9 × the canvas's smaller side,
looking from azimuth −60°, elevation 20°, 4.5 m away at a point 0.9 m above
the floor (under the head with "follow").
"""

SCRIPT = r"""
"use strict";
const D = JSON.parse(document.getElementById("__DATA_ID__").textContent);
const J = D.num_joints, T = D.num_frames, FLOOR = D.floor_z_mm / 1000;
const canvas = document.getElementById("view");
const ctx = canvas.getContext("2d");
const slider = document.getElementById("slider");
const playButton = document.getElementById("play");
const label = document.getElementById("label");
const follow = document.getElementById("follow");
const unguided = document.getElementById("unguided");
const showPoints = document.getElementById("points");
const query = new URLSearchParams(window.location.search);
slider.max = T - 1;
let frame = 0, playing = query.get("autoplay") !== "0";
if (query.has("frame")) {
  frame = Math.max(0, Math.min(T - 1, parseInt(query.get("frame")) || 0));
  playing = false;
}
// A switch shows only when the page has something to switch.
document.getElementById("unguided-switch").hidden = !D.unguided;
unguided.checked = !!D.unguided && (query.has("unguided") ?
    query.get("unguided") === "1" : D.show_unguided);
const POINTS = Float32Array.from(D.points_mm, function (v) {
  return v / 1000;
});
document.getElementById("points-switch").hidden = POINTS.length === 0;
showPoints.checked = query.get("points") !== "0";
let az = -60 * Math.PI / 180, el = 20 * Math.PI / 180, dist = 4.5;
let target = [0, 0, FLOOR + 0.9];

// The motions drawn: the main one (or its unguided samples), then the rest.
function shown() {
  return [unguided.checked ? D.unguided : D.motions[0]].concat(
      D.motions.slice(1));
}
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
// P(point) = [screen x, screen y, depth] or null behind the camera.
function projector(cam) {
  const w = canvas.width, h = canvas.height, f = 0.9 * Math.min(w, h);
  const P = function (p) {
    const d = [p[0] - cam.eye[0], p[1] - cam.eye[1], p[2] - cam.eye[2]];
    const z = -(d[0] * cam.back[0] + d[1] * cam.back[1] + d[2] * cam.back[2]);
    if (z < 0.05) return null;
    const x = d[0] * cam.right[0] + d[1] * cam.right[1] + d[2] * cam.right[2];
    const y = d[0] * cam.up[0] + d[1] * cam.up[1] + d[2] * cam.up[2];
    return [w / 2 + f * x / z, h / 2 - f * y / z, z];
  };
  P.focal = f;
  return P;
}
function stroke(pa, pb, dx, dy, color, width) {
  ctx.strokeStyle = color; ctx.lineWidth = width;
  ctx.beginPath(); ctx.moveTo(pa[0] + dx, pa[1] + dy);
  ctx.lineTo(pb[0] + dx, pb[1] + dy); ctx.stroke();
}
function line(P, a, b, color, width) {
  const pa = P(a), pb = P(b);
  if (pa && pb) stroke(pa, pb, 0, 0, color, width);
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
// Points as small squares, one fill per palette level (they come grouped
// by level). Cut-away: points nearer the camera than the body's depth by
// more than cutaway_mm[0] show only up to cutaway_mm[1] above the floor.
function drawPoints(P, bodyDepth) {
  const nearDepth = bodyDepth - D.cutaway_mm[0] / 1000;
  const lowZ = FLOOR + D.cutaway_mm[1] / 1000;
  let k = 0;
  for (let level = 0; level < D.point_level_counts.length; level++) {
    const end = k + D.point_level_counts[level];
    ctx.fillStyle = D.point_palette[level];
    ctx.beginPath();
    for (; k < end; k++) {
      const p = [POINTS[3 * k], POINTS[3 * k + 1], POINTS[3 * k + 2]];
      const q = P(p);
      if (!q || (q[2] < nearDepth && p[2] > lowZ)) continue;
      const s = Math.max(2, Math.min(5, Math.round(P.focal * 0.02 / q[2])));
      ctx.rect(Math.round(q[0] - s / 2), Math.round(q[1] - s / 2), s, s);
    }
    ctx.fill();
  }
}
// Every bone of every motion as a capsule, from the farthest to the
// nearest: a dark outline, the fill, a light stripe up and to the left.
function drawBodies(P, motions) {
  const capsules = [];
  for (const m of motions) {
    const scale = m.shades ? 0.8 : 1;  // the ground truth slimmer
    for (let j = 1; j < J; j++) {
      const a = P(joint(m, frame, D.parents[j])), b = P(joint(m, frame, j));
      if (!a || !b) continue;
      const depth = (a[2] + b[2]) / 2;
      const width = 2 * scale * D.bone_radii_mm[j - 1] / 1000 * P.focal / depth;
      capsules.push({a, b, depth, width,
                     shades: m.shades || D.bone_shades[j - 1]});
    }
  }
  capsules.sort(function (u, v) { return v.depth - u.depth; });
  ctx.lineCap = "round";
  for (const c of capsules) {
    const o = -0.15 * c.width;
    stroke(c.a, c.b, 0, 0, c.shades[0], c.width + 2);
    stroke(c.a, c.b, 0, 0, c.shades[1], c.width);
    stroke(c.a, c.b, o, o, c.shades[2], 0.35 * c.width);
  }
  ctx.lineCap = "butt";
}
function drawContacts(P, m) {
  if (!m.contacts) return;
  ctx.fillStyle = "rgb(26,179,51)";
  const t = Math.min(frame, m.num_frames - 1);
  for (let j = 1; j < J; j++) {
    if (!m.contacts[t * (J - 1) + j - 1]) continue;
    const p = P(joint(m, frame, j));
    if (p) { ctx.beginPath(); ctx.arc(p[0], p[1], 5, 0, 2 * Math.PI); ctx.fill(); }
  }
}
function draw() {
  const dpr = window.devicePixelRatio || 1;
  const w = Math.round(canvas.clientWidth * dpr);
  const h = Math.round(canvas.clientHeight * dpr);
  if (canvas.width !== w || canvas.height !== h) {
    canvas.width = w; canvas.height = h;
  }
  const motions = shown(), main = motions[0];
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
  if (showPoints.checked && POINTS.length) {
    const pelvis = P(joint(main, frame, 0));
    drawPoints(P, pelvis ? pelvis[2] : 0);
  }
  polyline(P, main, 0, T, "rgba(242,153,25,0.35)", 1.5);
  polyline(P, main, 0, frame + 1, "rgb(242,153,25)", 2.5);
  drawBodies(P, motions);
  drawContacts(P, main);
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
unguided.onchange = draw;
showPoints.onchange = draw;
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
"""
