"""The activity script of a synthetic sequence and its per-frame controls.

Part of `data/synthetic.py`. A script is a list of base segments (walk, run,
stand, crouch, sit) laid end to end, plus upper-body overlays (reach, wave)
and a look-around process. `render_controls` turns it into per-frame signals
on a padded timeline: locomotion speed and heading, the pelvis base path,
posture (pelvis drop, back shift, trunk lean), standing sway, head look
angles and arm targets. The gait (phase, footsteps) and the joint rotations
are derived from these in `synthetic_gait` and `synthetic_pose`.

Every random draw comes from the caller's `np.random.Generator`, in a fixed
order, so a seed determines the script.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

FPS = 30.0
BASE_KINDS = ("walk", "run", "stand", "crouch", "sit")
OVERLAY_KINDS = ("reach", "wave", "look")
KINDS = BASE_KINDS + OVERLAY_KINDS
LOCOMOTION = ("walk", "run")
# Relative frequency of each base segment kind, and its duration range (s).
_BASE_WEIGHT = {"walk": 0.34, "run": 0.14, "stand": 0.18, "crouch": 0.14,
                "sit": 0.2}
_DURATION = {"walk": (2.5, 6.0), "run": (2.0, 4.5), "stand": (1.5, 4.0),
             "crouch": (3.2, 5.5), "sit": (4.5, 7.5)}
# Probability that a stand/walk/sit segment carries an arm overlay (crouches
# reach down with probability 0.5).
_ARM_OVERLAY_PROB = 0.55
_ON_THE_SPOT = "turn on the spot"


def smoothstep(x) -> np.ndarray:
  """3x² − 2x³ on x clipped to [0, 1]."""
  x = np.clip(x, 0.0, 1.0)
  return x * x * (3.0 - 2.0 * x)


def smooth_noise(rng: np.random.Generator, num: int, sigma_frames: float,
                 shape: tuple[int, ...] = ()) -> np.ndarray:
  """Gaussian-filtered white noise with unit standard deviation, (num, *shape)."""
  white = rng.normal(size=(num,) + shape)
  out = ndimage.gaussian_filter1d(white, sigma_frames, axis=0, mode="reflect")
  return out / max(float(np.std(out)), 1e-9)


@dataclasses.dataclass
class Segment:
  """One base segment [start, end) in frames of the padded timeline."""
  kind: str
  start: int
  end: int
  speed: float = 0.0        # locomotion target speed, m/s
  note: str = ""            # human-readable detail for the description


@dataclasses.dataclass
class ArmTarget:
  """A wrist target for one arm, blended in with `weight`.

  `offset` is in the heading frame (forward, left, up), relative to the
  pelvis (`anchor="root"`) or to that arm's shoulder joint
  (`anchor="shoulder"`).
  """
  side: int                 # 0 left, 1 right
  kind: str                 # "reach" or "wave"
  weight: np.ndarray        # (N,)
  offset: np.ndarray        # (N, 3)
  anchor: str


@dataclasses.dataclass
class Controls:
  """Per-frame controls of a padded timeline of N frames.

  Attributes:
    speed: (N,) locomotion speed, m/s (0 outside locomotion).
    heading: (N,) body heading about world z, radians (unwrapped).
    path: (N, 2) base pelvis position on the floor (before sway/posture).
    loco: (N,) bool, inside a locomotion block.
    blocks: locomotion blocks (start, end, stops) in frames; `stops` when a
      non-locomotion segment follows (the gait must end in double support).
    drop, back, lean: (N,) posture: pelvis lowered (m), moved back (m),
      trunk pitched forward (rad).
    sit: (N,) 0..1, how far into a seated pose (hands go to the thighs).
    sway: (N, 2) standing sway of the pelvis (forward, left), m.
    look_yaw, look_pitch: (N,) head direction relative to the heading
      (yaw > 0 to the left, pitch > 0 down), rad.
    arms: wrist targets of reach and wave overlays.
    segments: the base script.
    description: one line describing the visible part.
  """
  speed: np.ndarray
  heading: np.ndarray
  path: np.ndarray
  loco: np.ndarray
  blocks: list[tuple[int, int, bool]]
  drop: np.ndarray
  back: np.ndarray
  lean: np.ndarray
  sit: np.ndarray
  sway: np.ndarray
  look_yaw: np.ndarray
  look_pitch: np.ndarray
  arms: list[ArmTarget]
  segments: list[Segment]
  description: str = ""


def draw_script(rng: np.random.Generator, num: int,
                kinds: tuple[str, ...]) -> list[Segment]:
  """Base segments covering frames [0, num) of the padded timeline."""
  base = [k for k in BASE_KINDS if k in kinds]
  weights = np.array([_BASE_WEIGHT[k] for k in base])
  segments: list[Segment] = []
  start = 0
  while start < num:
    p = weights.copy()
    if segments and segments[-1].kind not in LOCOMOTION and len(base) > 1:
      p[base.index(segments[-1].kind)] = 0.0  # no stand → stand
    kind = base[rng.choice(len(base), p=p / p.sum())]
    duration = rng.uniform(*_DURATION[kind])
    speed, note = 0.0, ""
    if kind == "walk":
      if rng.uniform() < 0.15:
        speed, duration, note = rng.uniform(0.15, 0.35), rng.uniform(1.8, 3.0), _ON_THE_SPOT
      else:
        speed = rng.uniform(0.6, 1.6)
    elif kind == "run":
      speed = rng.uniform(2.3, 3.5)
    end = start + max(int(round(duration * FPS)), 30)
    segments.append(Segment(kind, start, end, speed, note))
    start = end
  return segments


def _heading_rate(rng, segments, loco_weight, num) -> tuple[np.ndarray, list]:
  """Turns (45–180°) and gentle meandering inside locomotion, rad/s."""
  t = np.arange(num, dtype=np.float64)
  rate = np.zeros(num)
  turns = []
  for seg in segments:
    if seg.kind not in LOCOMOTION:
      continue
    length = seg.end - seg.start
    on_the_spot = seg.note == _ON_THE_SPOT
    count = 1 if on_the_spot else rng.poisson(length / FPS / 3.5)
    for _ in range(count):
      angle = rng.choice([-1.0, 1.0]) * np.deg2rad(
          rng.uniform(90.0 if on_the_spot else 45.0, 180.0))
      duration = abs(angle) / rng.uniform(0.5, 1.1) * FPS
      duration = min(duration, 0.9 * length)
      t0 = seg.start + rng.uniform(0.0, max(length - duration, 1.0))
      x = np.clip((t - t0) / duration, 0.0, 1.0)
      rate += angle / duration * FPS * 2.0 * np.sin(np.pi * x) ** 2
      turns.append((seg, angle))
  rate += 0.08 * smooth_noise(rng, num, 1.5 * FPS)
  return rate * loco_weight, turns


def _ramp(num: int, start: float, duration: float, up: bool) -> np.ndarray:
  x = (np.arange(num) - start) / max(duration, 1.0)
  return smoothstep(x) if up else 1.0 - smoothstep(x)


def _posture(rng, seg: Segment, num: int, dims: dict, arms: list,
             allow_reach: bool) -> tuple[np.ndarray, ...]:
  """Pelvis drop/back, trunk lean and sit weight of a crouch or sit segment."""
  t = np.arange(num, dtype=np.float64)
  lead_in = rng.uniform(0.3, 0.6) * FPS
  t_down = rng.uniform(0.9, 1.4) * FPS
  t_up = rng.uniform(0.9, 1.4) * FPS
  # Leave at least 0.3 s of hold and 0.3 s of standing before the next segment.
  room = seg.end - seg.start - lead_in - 0.6 * FPS
  squeeze = min(1.0, room / (t_down + t_up))
  t_down, t_up = t_down * squeeze, t_up * squeeze
  hold = max(room - t_down - t_up, 0.0) + 0.3 * FPS
  d0 = seg.start + lead_in
  u0 = d0 + t_down + hold
  down = np.clip((t - d0) / t_down, 0.0, 1.0)
  up = np.clip((t - u0) / t_up, 0.0, 1.0)
  if seg.kind == "crouch":
    depth = rng.uniform(0.28, 0.5) * dims["hip_height"]
    lean = rng.uniform(0.35, 0.75)
    w = smoothstep(down) * (1.0 - smoothstep(up))
    drop, back, trunk, sit = depth * w, 0.3 * depth * w, lean * w, 0.0 * w
    seg.note = f"depth {depth:.2f} m"
    if allow_reach and rng.uniform() < 0.5:
      # Reach down towards the floor in front during the hold.
      side = int(rng.integers(2))
      target_z = rng.uniform(0.05, 0.3)
      offset = np.array([rng.uniform(0.35, 0.55), (1 - 2 * side) * rng.uniform(0.05, 0.25),
                         target_z - (dims["pelvis_height"] - depth)])
      weight = smoothstep((t - d0 - 0.6 * t_down) / (0.5 * FPS)) * (
          1.0 - smoothstep((t - u0) / (0.5 * FPS)))
      arms.append(ArmTarget(side, "reach", weight, np.tile(offset, (num, 1)), "root"))
      seg.note += f" reach down {('left', 'right')[side]}"
  else:  # sit
    back_max = dims["thigh"] * rng.uniform(0.8, 1.0)
    seat = dims["ankle_height"] + dims["shin"] * rng.uniform(0.95, 1.1)
    depth = dims["pelvis_height"] - (seat + dims["hip_below_pelvis"])
    peak, seated = rng.uniform(0.35, 0.7), rng.uniform(-0.1, 0.15)
    sit_b = smoothstep(down / 0.75) * (1.0 - smoothstep((up - 0.1) / 0.8))
    sit_d = smoothstep((down - 0.15) / 0.85) * (1.0 - smoothstep((up - 0.25) / 0.75))
    bump = np.where(t < u0, np.sin(np.pi * down), np.sin(np.pi * up)) ** 1.5
    drop, back = depth * sit_d, back_max * sit_b
    trunk = peak * bump + seated * sit_d
    sit = sit_d
    seg.note = f"seat {seat:.2f} m"
  return drop, back, trunk, sit


def _look(rng, num: int, standing: np.ndarray, heading: np.ndarray,
          enabled: bool) -> tuple[np.ndarray, np.ndarray]:
  """Head yaw/pitch: gaze shifts every 0.6–2.5 s, wider when standing."""
  yaw, pitch = np.zeros(num), np.zeros(num)
  if enabled:
    start = 0
    while start < num:
      length = int(rng.uniform(0.6, 2.5) * FPS)
      w = standing[start]
      wide = rng.uniform() < 0.1 + 0.15 * w  # glances aside, rarer when walking
      spread = np.deg2rad(15.0 + 25.0 * w)
      y = rng.choice([-1, 1]) * np.deg2rad(rng.uniform(40, 75)) if wide else rng.normal(0, spread)
      yaw[start:start + length] = np.clip(y, -np.deg2rad(80), np.deg2rad(80))
      pitch[start:start + length] = np.clip(
          rng.normal(np.deg2rad(6), np.deg2rad(10)), np.deg2rad(-30), np.deg2rad(45))
      start += length
    yaw = ndimage.gaussian_filter1d(yaw, 0.12 * FPS, mode="nearest")
    pitch = ndimage.gaussian_filter1d(pitch, 0.12 * FPS, mode="nearest")
  else:
    pitch[:] = np.deg2rad(5.0)
  # Look into turns ahead of the body (about 0.4 s).
  ahead = np.concatenate([heading[12:], np.repeat(heading[-1:], 12)])
  yaw = yaw + np.clip(0.7 * (ahead - heading), -0.7, 0.7)
  return np.clip(yaw, -np.deg2rad(80), np.deg2rad(80)), pitch


def render_controls(rng: np.random.Generator, num: int, kinds: tuple[str, ...],
                    dims: dict, visible: tuple[int, int]) -> Controls:
  """Draws a script and renders its per-frame controls.

  Args:
    rng: the sequence's random generator.
    num: N, frames of the padded timeline.
    kinds: allowed segment and overlay kinds (subset of `KINDS`).
    dims: body dimensions (m): hip_height, pelvis_height, thigh, shin,
      ankle_height, hip_below_pelvis, scale.
    visible: [first, last) frames that will be kept, for the description.

  Returns:
    The controls.
  """
  segments = draw_script(rng, num, kinds)
  t = np.arange(num, dtype=np.float64)
  loco = np.zeros(num, bool)
  for seg in segments:
    if seg.kind in LOCOMOTION:
      loco[seg.start:seg.end] = True
  edges = np.flatnonzero(np.diff(np.concatenate([[0], loco.astype(int), [0]])))
  blocks = [(int(a), int(b), bool(b < num)) for a, b in zip(edges[::2], edges[1::2])]

  # --- Speed: smoothed targets, ramped from/to rest where the block stops.
  target = np.zeros(num)
  for seg in segments:
    target[seg.start:seg.end] = seg.speed
  speed = np.zeros(num)
  loco_weight = np.zeros(num)
  for a, b, stops in blocks:
    v = ndimage.gaussian_filter1d(target[a:b], 0.4 * FPS, mode="nearest")
    w = np.ones(b - a)
    if a > 0:
      w *= _ramp(b - a, 0.0, (0.4 + 0.35 * v[0]) * FPS, up=True)
    if stops:
      w *= _ramp(b - a, b - a - (0.5 + 0.35 * v[-1]) * FPS, (0.5 + 0.35 * v[-1]) * FPS, up=False)
    speed[a:b] = v * w
    lw = np.ones(b - a)
    if a > 0:
      lw *= _ramp(b - a, 0.0, 0.4 * FPS, up=True)
    if stops:
      lw *= _ramp(b - a, b - a - 0.4 * FPS, 0.4 * FPS, up=False)
    loco_weight[a:b] = lw

  rate, turns = _heading_rate(rng, segments, loco_weight, num)
  speed *= 1.0 - 0.3 * np.minimum(np.abs(rate) / 2.0, 1.0)  # slow down in turns
  heading = rng.uniform(-np.pi, np.pi) + np.cumsum(rate) / FPS
  step = speed[:, None] * np.stack([np.cos(heading), np.sin(heading)], -1) / FPS
  path = np.cumsum(step, axis=0) - step[0] + rng.uniform(-2.0, 2.0, size=2)

  # --- Posture and arm overlays, segment by segment.
  drop, back, lean, sit = (np.zeros(num) for _ in range(4))
  arms: list[ArmTarget] = []
  for seg in segments:
    if seg.kind in ("crouch", "sit"):
      parts = _posture(rng, seg, num, dims, arms, "reach" in kinds)
      for acc, part in zip((drop, back, lean, sit), parts):
        acc += part
    if seg.kind == "run" or seg.note == _ON_THE_SPOT:
      continue
    choices = [k for k in ("reach", "wave") if k in kinds and not (
        seg.kind == "crouch" and k == "wave")]
    if seg.kind == "crouch" or not choices or rng.uniform() >= _ARM_OVERLAY_PROB:
      continue
    kind = choices[rng.integers(len(choices))]
    length = seg.end - seg.start
    duration = min(rng.uniform(1.2, 2.5) if kind == "reach" else rng.uniform(1.5, 3.0),
                   length / FPS - 0.4) * FPS
    if duration < 0.8 * FPS:
      continue
    t0 = seg.start + rng.uniform(0.2 * FPS, length - duration)
    ramp = rng.uniform(0.4, 0.6) * FPS
    weight = smoothstep((t - t0) / ramp) * (1.0 - smoothstep((t - t0 - duration + ramp) / ramp))
    both = rng.uniform() < 0.2
    sides = (0, 1) if both else (int(rng.integers(2)),)
    s = dims["scale"]
    if kind == "reach":
      fwd, lat = rng.uniform(0.3, 0.6) * s, rng.uniform(0.0, 0.35) * s
      up = rng.uniform(-0.15, 0.8) * s  # from the thighs to above the head
      for side in sides:
        offset = np.array([fwd, (1 - 2 * side) * lat, up])
        arms.append(ArmTarget(side, "reach", weight, np.tile(offset, (num, 1)), "root"))
    else:
      freq, amp = rng.uniform(1.5, 2.5), rng.uniform(0.06, 0.12) * s
      wave = amp * np.sin(2 * np.pi * freq * t / FPS + rng.uniform(0, 2 * np.pi))
      for side in sides:
        sign = 1 - 2 * side
        offset = np.stack([np.full(num, 0.12 * s), sign * 0.2 * s + wave,
                           np.full(num, rng.uniform(0.25, 0.35) * s)], -1)
        arms.append(ArmTarget(side, "wave", weight, offset, "shoulder"))
    if t0 < visible[1] and t0 + duration > visible[0]:
      seg.note = (seg.note + " " if seg.note else "") + (
          f"{kind} {'both' if both else ('left', 'right')[sides[0]]}")

  standing = 1.0 - loco_weight
  sway = smooth_noise(rng, num, 0.8 * FPS, (2,)) * rng.uniform(0.008, 0.02) * dims["scale"]
  sway *= standing[:, None]
  look_yaw, look_pitch = _look(rng, num, standing, heading, "look" in kinds)
  look_pitch = look_pitch + 0.45 * lean  # look down when leaning forward

  first, last = visible
  parts = []
  for seg in segments:
    if seg.end <= first or seg.start >= last:
      continue
    text = seg.kind + (f" {seg.speed:.1f} m/s" if seg.kind in LOCOMOTION else "")
    angles = [np.rad2deg(a) for s2, a in turns if s2 is seg]
    if angles:
      text += " turn " + ",".join(f"{a:+.0f}°" for a in angles)
    if seg.note:
      text += f" ({seg.note})"
    parts.append(text)
  description = " → ".join(parts) + ("; looking around" if "look" in kinds else "")
  return Controls(speed=speed, heading=heading, path=path, loco=loco, blocks=blocks,
                  drop=drop, back=back, lean=lean, sit=sit, sway=sway,
                  look_yaw=look_yaw, look_pitch=look_pitch, arms=arms,
                  segments=segments, description=description)
