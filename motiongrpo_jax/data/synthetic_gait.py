"""Gait of synthetic motion: phase, footsteps, feet and pelvis (numpy).

Part of `data/synthetic.py`. From the controls of `synthetic_script`:

1. A gait phase φ (strides) advances at a speed-dependent cadence inside
   each locomotion block. The left foot touches down at integer φ, the right
   at φ + 0.5; each lifts off after a speed-dependent duty factor β (0.65 when
   slow, 0.59 at 1.6 m/s, 0.35–0.4 running, so running has flight phases). A
   block that ends in standing is time-warped to end in double support.
2. Each stance of a foot gets one plant: the toe joint's position on the
   floor and the foot's yaw, from the pelvis base path at a reference time
   (41 % into the stance, 56 % running; the first standing frame for a
   stance that reaches into standing, so that feet end side by side).
   Within the stance the foot lands toes-up on the heel and rolls flat about
   the heel point (walking), stays flat (ankle and toe joints fixed), lifts
   its heel about the fixed toe joint, and finally rolls the toe joint up
   about the toe tip. The heel point, the toe joint and the toe tip are each
   exactly still while they are the pivot.
3. Swings move the ankle along a cubic curve relative to the pelvis path
   (leaving with zero world velocity, landing at 40 % of the body's speed),
   with the heel rising early in the swing and the foot pitch released.
4. The pelvis follows the base path with gait sway, pelvic rotation,
   obliquity and tilt, posture offsets and standing sway. Its height is the
   nominal height (legs nearly straight when walking, flexed and bobbing
   when running) capped by the highest pelvis at which each foot on the
   floor is within reach (parabolic bounds in the air, so the pelvis lowers
   in time for a landing), so IK puts planted feet exactly on their plants.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from motiongrpo_jax.data import synthetic_pose as pose
from motiongrpo_jax.data.synthetic_script import Controls
from motiongrpo_jax.data.synthetic_script import FPS
from motiongrpo_jax.data.synthetic_script import smoothstep

# Fraction of the longest hip–ankle distance allowed for a stance leg.
STANCE_REACH = 0.996
# A foot is planted under the pelvis base path at this fraction of its stance
# (plus 0.15 when running), balancing the reach at touchdown and lift-off.
PLANT_AT = 0.41
# Heel point behind the ankle joint, and toe tip in front of the toe joint
# (both on the sole), for the mean body; they scale with body size.
HEEL_BACK = 0.05
TOE_TIP = 0.05
# Largest downward acceleration of the pelvis forced by a landing foot, m/s².
PELVIS_ACCEL = 8.0
# Horizontal speed of a landing foot as a fraction of the body's speed.
LANDING_SPEED = 0.4


def runness(speed) -> np.ndarray:
  """0 when walking (≤ 1.9 m/s), 1 when running (≥ 2.5 m/s), smooth between."""
  return smoothstep((np.asarray(speed) - 1.9) / 0.6)


def stance_reach(speed) -> np.ndarray:
  """Largest hip–ankle distance of a foot on the floor, as a fraction of the
  leg's reach: nearly straight when walking, knees flexed when running."""
  return STANCE_REACH - 0.04 * runness(speed)


def step_frequency(speed, leg_scale: float) -> np.ndarray:
  """Steps per second (two per stride) for a leg `leg_scale` × the mean."""
  v, r = np.asarray(speed), runness(speed)
  return ((1 - r) * (1.1 + 0.55 * v) + r * (2.3 + 0.17 * v)) / np.sqrt(leg_scale)


def duty_factor(speed) -> np.ndarray:
  """Fraction of a stride that a foot is on the floor."""
  v, r = np.asarray(speed), runness(speed)
  return (1 - r) * (0.65 - 0.04 * v) + r * (0.40 - 0.04 * (v - 2.5))


def gait_phase(controls: Controls, leg_scale: float,
               rng: np.random.Generator) -> tuple[np.ndarray, list]:
  """Gait phase per frame and, per block, its (times, phases) samples.

  Returns:
    (N,) phase (held constant outside blocks) and a list of (t, φ) arrays
    per block; a stopping block's samples include its end frame.
  """
  num = len(controls.speed)
  phase = np.zeros(num)
  samples = []
  for a, b, stops in controls.blocks:
    rate = step_frequency(controls.speed[a:b], leg_scale) / 2.0 / FPS
    start = 0.03 + 0.5 * int(rng.integers(2)) if a > 0 else rng.uniform()
    cum = np.concatenate([[0.0], np.cumsum(rate)])  # phase at frames a..b
    if stops:  # end in double support: a whole number of steps
      cum *= max(np.round(2.0 * cum[-1]) / 2.0, 1.5) / cum[-1]
    phi = start + cum
    phase[a:b] = phi[:-1]
    phase[b:] = phi[-1]
    times = np.arange(a, b + 1, dtype=np.float64)
    samples.append((times, phi) if stops else (times[:-1], phi[:-1]))
  return phase, samples


@dataclasses.dataclass
class Feet:
  """Planned feet, index 0 left, 1 right.

  Attributes:
    ankle: (N, 2, 3) ankle joint targets (world).
    rotation: (N, 2, 3, 3) foot (ankle joint) world rotations.
    toe_bend: (N, 2) pitch of the toes relative to the foot (rad).
    contact: (N, 2) bool, some part of the foot on the floor (gait stance).
    toe_planted: (N, 2) bool, toe joint fixed on the floor.
    flat: (N, 2) bool, whole foot flat (ankle and toe joints fixed).
    swing: (N, 2) progress through the swing, 0..1 (−1 in contact).
  """
  ankle: np.ndarray
  rotation: np.ndarray
  toe_bend: np.ndarray
  contact: np.ndarray
  toe_planted: np.ndarray
  flat: np.ndarray
  swing: np.ndarray


def _swings(samples, speed, foot: int) -> list[tuple[float, float]]:
  """Swing intervals (lift-off time, touchdown time) of one foot."""
  swings = []
  for times, phi in samples:
    lo_phi, hi_phi = phi[0], phi[-1]
    offset = 0.5 * foot
    ks = np.arange(np.floor(lo_phi) - 2, np.ceil(hi_phi) + 2)
    touchdown = ks + offset
    t_td = np.interp(touchdown, phi, times)
    liftoff = touchdown + duty_factor(np.interp(t_td, np.arange(len(speed)), speed))
    for lo, td in zip(liftoff[:-1], touchdown[1:]):
      lo, td = max(lo, lo_phi), min(td, hi_phi)  # never swing across a stop
      if td - lo <= 1e-6:
        continue
      t0, t1 = np.interp([lo, td], phi, times)
      if t1 - t0 > 0.5:
        swings.append((float(t0), float(t1)))
  return swings


def _foot_geometry(rest: np.ndarray, foot: int, dims: dict) -> dict:
  """Toe joint, heel and toe tip relative to the ankle joint (canonical)."""
  toe = rest[10 + foot] - rest[7 + foot]
  sole = toe[1] - dims["toe_height"]
  return dict(toe=toe,
              heel=np.array([0.0, sole, -HEEL_BACK * dims["scale"]]),
              tip=np.array([toe[0], sole, toe[2] + TOE_TIP * dims["scale"]]))


def _stance(frames, s0, s1, toe, yaw, geo, v0, v1, leg_scale) -> dict:
  """Foot pose over one stance [s0, s1] of a plant (see module docstring).

  Heel strike (walking): the foot lands toes-up on the heel and rolls flat
  about the heel point; flat: ankle and toe joints fixed; heel-off: the
  heel rises about the toe joint; last, the toe joint rolls up about the
  toe tip. Returns the per-frame quantities of frames in [s0, s1] and the
  foot's state at the ends (for the swings around it).
  """
  def nominal(v):
    return duty_factor(v) / (step_frequency(v, leg_scale) / 2.0) * FPS

  length = (s1 - s0) if np.isfinite(s0) and np.isfinite(s1) else np.inf
  strike = np.deg2rad(-(6.0 + 8.0 * v0)) * (1.0 - float(runness(v0)))
  d_strike = 0.15 * nominal(v0) if np.isfinite(s0) else 0.0
  lift = np.deg2rad(np.clip(25.0 + 25.0 * v1, 25.0, 65.0)) if np.isfinite(s1) else 0.0
  roll = np.deg2rad(15.0 + 10.0 * min(v1, 2.0)) if np.isfinite(s1) else 0.0
  d_heel_off = (0.5 + 0.2 * float(runness(v1))) * nominal(v1) if np.isfinite(s1) else 0.0
  squeeze = min(1.0, 0.9 * length / max(d_strike + d_heel_off, 1e-9))
  d_strike, d_heel_off = max(d_strike * squeeze, 0.5), max(d_heel_off * squeeze, 0.5)
  d_roll = 0.3 * d_heel_off

  idx = np.flatnonzero((frames >= s0) & (frames <= s1))
  t = frames[idx]
  # Progress through the heel strike (x), the heel-off (y) and the roll over
  # the toe tip (z), each 0..1.
  x, y, z = np.ones(len(t)), np.zeros(len(t)), np.zeros(len(t))
  if np.isfinite(s0):
    x = np.clip((t - s0) / d_strike, 0.0, 1.0)
  if np.isfinite(s1):
    y = np.clip((t - (s1 - d_heel_off)) / d_heel_off, 0.0, 1.0)
    z = np.clip((t - (s1 - d_roll)) / d_roll, 0.0, 1.0)
  flat_R = pose.heading_rotation(yaw)
  heel_point = toe + flat_R @ (geo["heel"] - geo["toe"])
  tip_point = toe + flat_R @ (geo["tip"] - geo["toe"])

  def pose_at(x, y, z):
    on_heel = x < 1.0
    pitch = np.where(on_heel, strike * (1.0 - x) ** 2, lift * y ** 2)
    toe_pitch = roll * z ** 2
    R = flat_R @ pose.axis_rotation(0, pitch)
    toe_w = tip_point - (flat_R @ pose.axis_rotation(0, toe_pitch)) @ (geo["tip"] - geo["toe"])
    ankle = np.where(on_heel[:, None], heel_point - R @ geo["heel"], toe_w - R @ geo["toe"])
    bend = np.where(on_heel, 0.0, toe_pitch - pitch)
    return ankle, R, bend, pitch, toe_pitch

  ankle, R, bend, pitch, toe_pitch = pose_at(x, y, z)
  start = pose_at(np.zeros(1), np.zeros(1), np.zeros(1))
  end = pose_at(np.ones(1), np.ones(1), np.ones(1))
  return dict(idx=idx, ankle=ankle, rotation=R, toe_bend=bend,
              toe_planted=(x >= 1.0) & (toe_pitch == 0.0),
              flat=(x >= 1.0) & (pitch == 0.0),
              start=(start[0][0], strike), end=(end[0][0], lift, end[2][0]))


def plan_feet(controls: Controls, samples, rest: np.ndarray, dims: dict,
              style: dict) -> Feet:
  """Footsteps and foot trajectories (see the module docstring).

  Args:
    controls: per-frame controls.
    samples: per-block (times, phases) from `gait_phase`.
    rest: (22, 3) shaped rest joints.
    dims: body dimensions (toe_height, scale, leg_scale).
    style: per-sequence gait style (stance_width, toe_out).

  Returns:
    The planned feet.
  """
  num = len(controls.speed)
  frames = np.arange(num, dtype=np.float64)
  speed, heading = controls.speed, controls.heading
  leg_scale = dims["leg_scale"]
  gaps = []  # standing spans [start, end] where both feet are down
  edge = 0.0
  for a, b, _ in controls.blocks:
    if a > edge:
      gaps.append((edge, float(a)))
    edge = float(b)
  if edge < num:
    gaps.append((edge, float(num)))

  ankle = np.zeros((num, 2, 3))
  rotation = np.zeros((num, 2, 3, 3))
  toe_bend = np.zeros((num, 2))
  contact = np.zeros((num, 2), bool)
  toe_planted = np.zeros((num, 2), bool)
  flat = np.zeros((num, 2), bool)
  progress = -np.ones((num, 2))
  path = controls.path
  velocity = np.gradient(path, axis=0) * FPS
  for foot in (0, 1):
    side = 1.0 - 2.0 * foot
    geo = _foot_geometry(rest, foot, dims)
    swings = _swings(samples, speed, foot)
    starts = [-np.inf] + [td for _, td in swings]
    ends = [lo for lo, _ in swings] + [np.inf]
    stances = []
    for s0, s1 in zip(starts, ends):
      # --- Plant: under the base path at a reference time of the stance.
      gap = next((g0 for g0, g1 in gaps if g1 >= s0 and g0 <= s1), None)
      v0 = np.interp(s0, frames, speed) if np.isfinite(s0) else 0.0
      v1 = np.interp(s1, frames, speed) if np.isfinite(s1) else 0.0
      nominal = duty_factor(v1) / (step_frequency(v1, leg_scale) / 2.0) * FPS
      mid = PLANT_AT + 0.15 * float(runness(v1))
      if gap is not None:
        t_ref = gap
      elif np.isfinite(s0) and np.isfinite(s1):
        t_ref = s0 + mid * (s1 - s0)
      else:
        t_ref = s1 - (1 - mid) * nominal if np.isfinite(s1) else s0 + mid * nominal
      t_ref = float(np.clip(t_ref, 0, num - 1))
      v = np.interp(t_ref, frames, speed)
      psi = np.interp(t_ref, frames, heading)
      fwd, left = pose.heading_vectors(psi)
      width = (style["stance_width"] + (0.55 - style["stance_width"]) * min(v / 0.8, 1.0)
               - 0.2 * float(runness(v)))
      toe = np.array([np.interp(t_ref, frames, controls.path[:, 0]),
                      np.interp(t_ref, frames, controls.path[:, 1]), 0.0])
      toe += fwd * (rest[10, 2] - rest[0, 2]) + left * side * width * abs(rest[10, 0])
      toe[2] = dims["toe_height"]
      yaw = psi + side * style["toe_out"] * (1.0 - 0.6 * min(v / 1.0, 1.0))
      st = _stance(frames, s0, s1, toe, yaw, geo, v0, v1, leg_scale)
      idx = st["idx"]
      ankle[idx, foot] = st["ankle"]
      rotation[idx, foot] = st["rotation"]
      toe_bend[idx, foot] = st["toe_bend"]
      contact[idx, foot] = True
      toe_planted[idx, foot] = st["toe_planted"]
      flat[idx, foot] = st["flat"]
      stances.append((yaw, st["start"], st["end"]))
    # --- Swings between consecutive stances.
    for k, (lo, td) in enumerate(swings):
      (yaw0, _, (a0, pitch0, bend0)), (yaw1, (a1, pitch1), _) = stances[k], stances[k + 1]
      idx = np.flatnonzero((frames > lo) & (frames < td))
      if len(idx) == 0:
        continue
      u = (frames[idx] - lo) / (td - lo)
      v = np.interp(frames[idx], frames, speed)
      r = runness(v)
      s = u ** 3 * (10.0 - 15.0 * u + 6.0 * u ** 2)  # minimum jerk
      # Along the floor: a cubic Hermite curve relative to the pelvis base
      # path, leaving with zero world velocity and landing at LANDING_SPEED
      # of the body's speed (the swing leg retracts before touchdown).
      duration = (td - lo) / FPS
      rel0 = a0[:2] - np.array([np.interp(lo, frames, path[:, i]) for i in (0, 1)])
      rel1 = a1[:2] - np.array([np.interp(td, frames, path[:, i]) for i in (0, 1)])
      vel0 = np.array([np.interp(lo, frames, velocity[:, i]) for i in (0, 1)])
      vel1 = np.array([np.interp(td, frames, velocity[:, i]) for i in (0, 1)])
      h00, h10 = 2 * u ** 3 - 3 * u ** 2 + 1, u ** 3 - 2 * u ** 2 + u
      h01, h11 = 3 * u ** 2 - 2 * u ** 3, u ** 3 - u ** 2
      pos = np.zeros((len(u), 3))
      pos[:, :2] = (path[idx] + h00[:, None] * rel0 + h01[:, None] * rel1
                    - h10[:, None] * vel0 * duration
                    - h11[:, None] * (1.0 - LANDING_SPEED) * vel1 * duration)
      pos[:, 2] = a0[2] + s * (a1[2] - a0[2])
      # The heel rises early in the swing (knee flexing), then the foot
      # passes low and reaches forward to touch down.
      heel_lift = ((1 - r) * (0.04 + 0.04 * v) + r * (0.12 + 0.05 * v)) * leg_scale
      pos[:, 2] += (heel_lift * np.sin(np.pi * u ** 0.55) ** 2
                    + 0.02 * leg_scale * np.sin(np.pi * u) ** 2)
      pitch = (pitch0 * (1.0 - smoothstep(u / 0.6)) + pitch1 * smoothstep((u - 0.4) / 0.6)
               - 0.1 * np.sin(np.pi * u) ** 2)
      yaw = yaw0 + s * (yaw1 - yaw0)
      rotation[idx, foot] = pose.heading_rotation(yaw) @ pose.axis_rotation(0, pitch)
      ankle[idx, foot] = pos
      toe_bend[idx, foot] = bend0 * (1.0 - smoothstep(u / 0.4))
      progress[idx, foot] = u
  return Feet(ankle=ankle, rotation=rotation, toe_bend=toe_bend, contact=contact,
              toe_planted=toe_planted, flat=flat, swing=progress)


def _softmin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
  """Smooth minimum, never above min(a, b) (by at most k·log 2)."""
  m = np.minimum(a, b)
  return m - k * np.log1p(np.exp(-np.abs(a - b) / k))


def pelvis_pose(controls: Controls, phase: np.ndarray, feet: Feet,
                rest: np.ndarray, dims: dict
                ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
  """Pelvis pose (see the module docstring).

  Returns:
    Rotation (N, 3, 3), position (N, 3), and the gait oscillations the upper
    body follows: `yaw` and `roll` of the pelvis, `bob` (+1 at each
    mid-stance), `swing` (cos 2πφ: +1 at left touchdown), `gait` amplitude
    (0..1) and `run` (runness).
  """
  v, psi = controls.speed, controls.heading
  r = runness(v)
  gait = np.clip(v / 0.6, 0.0, 1.0)  # oscillation amplitude (small steps: small)
  beta = duty_factor(v)
  c1 = np.cos(2 * np.pi * (phase - beta / 2))  # +1 at left mid-stance
  c2 = np.cos(4 * np.pi * (phase - beta / 2))  # +1 at each mid-stance
  turn_rate = np.gradient(psi) * FPS
  scale = dims["scale"]

  swing = np.cos(2 * np.pi * phase)
  yaw = -gait * ((1 - r) * (0.04 + 0.03 * v) + r * 0.08) * swing
  roll = gait * (1 - r) * 0.05 * c1 - 0.3 * np.arctan(v * turn_rate / 9.81)
  pitch = 0.06 + 0.12 * r + 0.5 * controls.lean + gait * 0.015 * c2
  R_root = pose.heading_rotation(psi) @ pose.axis_rotation(1, yaw) @ (
      pose.axis_rotation(0, pitch) @ pose.axis_rotation(2, roll))

  fwd, left = pose.heading_vectors(psi)
  lateral = gait * ((1 - r) * 0.022 + r * 0.01) * scale * c1 + controls.sway[:, 1]
  along = controls.sway[:, 0] - controls.back
  xy = controls.path + (fwd * along[:, None] + left * lateral[:, None])[:, :2]
  # Standing and walking legs stay nearly straight (1 cm lower is already
  # 20° of knee flexion); running legs flex in stance (pelvis lowest then).
  nominal = (dims["pelvis_height"] - 0.002 * scale - controls.drop
             - gait * scale * r * (0.05 + 0.035 * c2))

  # Highest pelvis at which each leg reaches its ankle target, binding while
  # the foot is on the floor. In the air a leg only bounds the pelvis through
  # parabolas from its lift-off and touchdown limits (pelvis vertical
  # acceleration ≤ PELVIS_ACCEL), so the pelvis lowers in time to land.
  leg = np.linalg.norm(rest[7] - rest[1])  # longest reach without hyperextension
  curvature = 0.5 * PELVIS_ACCEL / FPS ** 2  # metres per frame²
  frames = np.arange(len(v), dtype=np.float64)
  caps = []
  for foot, hip in ((0, 1), (1, 2)):
    offset = R_root @ (rest[hip] - rest[0])  # (N, 3)
    target = feet.ankle[:, foot]
    dh = np.linalg.norm(xy + offset[:, :2] - target[:, :2], axis=-1)
    reach = (stance_reach(v) * leg) ** 2 - dh ** 2
    cap = target[:, 2] - offset[:, 2] + np.sqrt(np.maximum(reach, 0.0))
    air = np.concatenate([[0], (~feet.contact[:, foot]).astype(int), [0]])
    edges = np.flatnonzero(np.diff(air))
    for a, b in zip(edges[::2], edges[1::2]):  # airborne frames [a, b)
      run = frames[a:b]
      bound = np.full(b - a, np.inf)
      if a > 0:
        bound = np.minimum(bound, cap[a - 1] + curvature * (run - (a - 1)) ** 2)
      if b < len(v):
        bound = np.minimum(bound, cap[b] + curvature * (b - run) ** 2)
      cap[a:b] = np.minimum(bound, nominal[a:b] + 0.5)
    caps.append(cap)
  cap = _softmin(caps[0], caps[1], 0.025)
  height = _softmin(nominal, cap, 0.002)
  osc = dict(yaw=yaw, roll=roll, bob=c2 * gait, swing=swing, gait=gait, run=r,
             turn_lean=-np.arctan(v * turn_rate / 9.81))
  return R_root, np.concatenate([xy, height[:, None]], axis=-1), osc
