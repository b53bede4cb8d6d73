"""Synthetic motion: the built-in data source (no download, no licence).

Procedural full-body motion on any body model (the built-in skeleton by
default), deterministic from a seed. Each sequence draws a body shape
(betas ~ N(0, 0.7²) on the leading 8 coefficients) and a script of 2–4
segments with smooth transitions:

- **walk** (0.6–1.6 m/s, or turning on the spot at 0.15–0.35 m/s) and
  **run** (2.3–3.5 m/s) along curved paths with turns of 45–180°, slowing
  down in turns and leaning into them;
- **stand** with postural sway;
- **crouch** (pelvis down by 28–50 % of hip height, trunk leaning forward,
  sometimes reaching down in front) and **sit** down on an invisible chair
  (seat at knee height) and stand up again, hands moving to the thighs;
- **reach** (one or both hands to targets from thigh to above head height)
  and **wave** (one or both hands) while standing, walking or sitting;
- **look** around: head yaw/pitch driven by its own gaze shifts (wider when
  standing), independent of the torso, and anticipating turns.

How it is made (`synthetic_script`: the script and per-frame controls;
`synthetic_gait`: phase, footsteps, feet, pelvis; `synthetic_pose`:
rotations and IK): a gait phase advances at a speed-dependent cadence;
every stance gets one plant on the floor, and the foot rolls over it (heel
strike, foot flat, heel-off about the fixed toe joint, roll over the toe
tip) with each pivot exactly still; swings follow smooth curves relative to
the pelvis path; the pelvis height is capped so that feet on the floor stay
within reach; hips and knees come from analytic two-bone IK (knees and
elbows are pure hinges, never hyperextended), ankles from the planned foot
orientation. Pelvic rotation, obliquity, lateral sway and vertical bob,
thoracic counter-rotation, arm swing (opposite to the legs) and a small
head nod are coupled to the phase. Reach, wave and hands-on-thighs are
wrist targets reached by arm IK, blended in and out. Everything is
vectorised numpy over frames (no compilation): several thousand frames
per second on one CPU core.

Limits, honestly:
- It is a kinematic caricature, not captured or simulated motion: no
  dynamics or balance, no arm–body collision avoidance (hands can pass
  through the thighs when crouching), only forward locomotion (no side
  steps, backward walking, jumps, stairs or slopes), no interaction with
  objects (the chair and reach targets are invisible; reaching down from a
  crouch ends around knee height), no hand articulation (`hand_quats`
  absent).
- Gait numbers are plausible, not fitted to data: the pelvis rises and
  falls by about 4 cm at 1 m/s and 6 cm at 1.5 m/s (real walking: about
  3–5 cm), 9–12 cm when running; stance knees flex about 10° when walking
  and 30° when running; walking speeds stop at 1.6 m/s and running starts
  at 2.3 m/s (the gait blends in between).
- Styles vary only through a few random parameters per sequence (stance
  width, toe-out, arm carriage, speeds and timings); there are no
  individual or emotional styles, and all sequences share one flat floor at
  z = 0.
- Bodies vary only in bone lengths (the body model's shape space); the
  motion adapts to leg length (cadence, step height) but not to mass.
- Contacts come from the shared rule of `records.contact_labels`: toes are
  labelled where they are planted, ankles (6.5 cm above the sole on the
  built-in skeleton) where the foot is flat.
- Good for tests, demos, pipelines and for checking that a model learns
  head-conditioned motion at all; not a substitute for AMASS when judging
  accuracy on real people.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence

import jax.numpy as jnp
import numpy as np

from motiongrpo_jax.body import model as body_model
from motiongrpo_jax.body import skeleton
from motiongrpo_jax.data import records
from motiongrpo_jax.data import synthetic_gait as gait
from motiongrpo_jax.data import synthetic_pose as pose
from motiongrpo_jax.data import synthetic_script as script

FPS = script.FPS
KINDS = script.KINDS
SPLITS = ("train", "val", "test")
# Frames simulated before and after the kept window, so that the first and
# last kept frames are mid-motion rather than special.
_PAD = 60
# Motions for records are generated in multiples of this many frames.
_NUM_SHAPED_BETAS = 8
_BETA_STD = 0.7
_MEAN_REST = np.asarray(skeleton.REST_JOINTS, np.float64)
_J = {name: i for i, name in enumerate(skeleton.JOINT_NAMES)}
# Hinge axes (canonical) of knees and elbows; a positive angle bends.
_KNEE_HINGE = np.array([1.0, 0.0, 0.0])
_ELBOW_HINGE = (np.array([0.0, -1.0, 0.0]), np.array([0.0, 1.0, 0.0]))


def _body_dims(rest: np.ndarray) -> dict:
  """Dimensions of a shaped body (metres) used to plan its motion."""
  mean_height = _MEAN_REST[skeleton.HEAD, 1] - _MEAN_REST[skeleton.LEFT_FOOT, 1]
  scale = (rest[skeleton.HEAD, 1] - rest[skeleton.LEFT_FOOT, 1]) / mean_height
  toe_height = (_MEAN_REST[skeleton.LEFT_FOOT, 1] - skeleton.REST_SOLE_Y) * scale
  pelvis_height = toe_height - rest[[skeleton.LEFT_FOOT, skeleton.RIGHT_FOOT], 1].mean()
  thigh = np.linalg.norm(rest[4] - rest[1])
  shin = np.linalg.norm(rest[7] - rest[4])
  mean_leg = np.linalg.norm(_MEAN_REST[4] - _MEAN_REST[1]) + np.linalg.norm(
      _MEAN_REST[7] - _MEAN_REST[4])
  return dict(scale=scale, toe_height=toe_height, pelvis_height=pelvis_height,
              hip_height=pelvis_height + rest[1, 1], hip_below_pelvis=-rest[1, 1],
              thigh=thigh, shin=shin,
              ankle_height=toe_height + rest[7, 1] - rest[10, 1],
              leg_scale=(thigh + shin) / mean_leg)


def _pose_joints(controls: script.Controls, feet: gait.Feet, R_root, t_root,
                 osc: dict, rest: np.ndarray, style: dict) -> np.ndarray:
  """Local rotations (N, 21, 3, 3) of joints 1..21: legs, spine, head, arms."""
  num = len(t_root)
  local = np.tile(np.eye(3), (num, 21, 1, 1))
  psi = controls.heading
  fwd, left = pose.heading_vectors(psi)

  # --- Legs: two-bone IK to the planned ankles, feet as planned.
  knees = {}
  for foot, (hip, knee, ankle, toe) in enumerate(((1, 4, 7, 10), (2, 5, 8, 11))):
    side = 1.0 - 2.0 * foot
    hip_w = t_root + R_root @ (rest[hip] - rest[0])
    foot_fwd = feet.rotation[:, foot] @ np.array([0.0, 0.0, 1.0])
    foot_fwd[:, 2] = 0.0
    foot_fwd /= np.linalg.norm(foot_fwd, axis=-1, keepdims=True)
    pole = foot_fwd + 0.25 * pose.UP + 0.1 * side * np.cross(pose.UP, foot_fwd)
    # Feet on the floor are within reach (the pelvis height sees to it);
    # swing targets out of reach are pulled back smoothly.
    target = np.where(
        feet.contact[:, foot, None], feet.ankle[:, foot],
        pose.soft_reach(hip_w, feet.ankle[:, foot], np.linalg.norm(rest[ankle] - rest[hip]),
                        gait.stance_reach(controls.speed)))
    R_thigh, knee_local, _ = pose.two_bone_ik(
        hip_w, target, pole, rest[hip], rest[knee], rest[ankle], _KNEE_HINGE)
    R_shin = R_thigh @ knee_local
    local[:, hip - 1] = np.swapaxes(R_root, -1, -2) @ R_thigh
    local[:, knee - 1] = knee_local
    planned = np.swapaxes(R_shin, -1, -2) @ feet.rotation[:, foot]
    # Mid-swing the ankle relaxes towards slight plantarflexion.
    relaxed = pose.axis_rotation(0, 0.1 + 0.25 * osc["run"])
    u = feet.swing[:, foot]
    local[:, ankle - 1] = pose.blend(
        planned, relaxed, np.where(u < 0, 0.0, np.sin(np.pi * u) ** 2))
    local[:, toe - 1] = pose.axis_rotation(0, feet.toe_bend[:, foot])
    knees[foot] = (hip_w, hip_w + R_thigh @ (rest[knee] - rest[hip]))

  # --- Spine: upright trunk, forward lean, counter-rotation, level shoulders.
  run = osc["run"]
  pitch = -0.06 - 0.05 * run + 0.5 * controls.lean - 0.01 * osc["bob"]
  yaw = -1.6 * osc["yaw"]
  roll = -0.8 * (osc["roll"] - 0.3 * osc["turn_lean"]) + 0.4 * osc["turn_lean"]
  for joint, share in (("spine1", 0.3), ("spine2", 0.35), ("spine3", 0.35)):
    local[:, _J[joint] - 1] = pose.axis_rotation(1, share * yaw) @ (
        pose.axis_rotation(0, share * pitch) @ pose.axis_rotation(2, share * roll))

  # --- Neck and head: world gaze target, split between the two joints.
  R_world, _ = pose.forward_kinematics(R_root, t_root, local, rest, upto=_J["spine3"] + 1)
  gaze = pose.heading_rotation(psi + controls.look_yaw) @ pose.axis_rotation(
      0, controls.look_pitch + 0.02 * osc["bob"])
  relative = np.swapaxes(R_world[:, _J["spine3"]], -1, -2) @ gaze
  neck = pose.power(relative, 0.45)
  local[:, _J["neck"] - 1] = neck
  local[:, _J["head"] - 1] = np.swapaxes(neck, -1, -2) @ relative

  # --- Arms: hanging with swing opposite to the legs, then IK overlays.
  gait_amp = osc["gait"]
  amplitude = gait_amp * ((1 - run) * (0.12 + 0.12 * controls.speed) + run * 0.45)
  for side_index, (shoulder, elbow) in enumerate(((16, 18), (17, 19))):
    sign = 1.0 - 2.0 * side_index
    forward = -sign * osc["swing"]  # +1: this arm fully forward
    swing = amplitude * forward + 0.15 * run
    flex = (style["elbow"] + 0.15 * (1 - run) * gait_amp * np.maximum(forward, 0.0)
            + run * (1.2 + 0.2 * forward))
    local[:, shoulder - 1] = pose.axis_rotation(0, -swing) @ pose.axis_rotation(
        2, -sign * style["arm_down"])
    local[:, elbow - 1] = pose.axis_angle(_ELBOW_HINGE[side_index], flex)

  targets = [(side, controls.sit * 0.9, None) for side in (0, 1)]
  targets += [(arm.side, arm.weight, arm) for arm in controls.arms]
  if targets and max(float(np.max(w)) for _, w, _ in targets) > 0:
    R_world, p_world = pose.forward_kinematics(R_root, t_root, local, rest, upto=18)
    for side, weight, arm in targets:
      active = weight > 1e-4
      if not active.any():
        continue
      shoulder, elbow, wrist = (16, 18, 20) if side == 0 else (17, 19, 21)
      sign = 1.0 - 2.0 * side
      s_w = p_world[active, shoulder]
      if arm is None:  # seated: hands rest on the thighs
        hip_w, knee_w = knees[side]
        target = hip_w + 0.65 * (knee_w - hip_w) + 0.08 * pose.UP
        target = target[active]
      else:
        anchor = (t_root if arm.anchor == "root" else p_world[:, shoulder])[active]
        o = arm.offset[active]
        target = (anchor + fwd[active] * o[:, :1] + left[active] * o[:, 1:2]
                  + pose.UP * o[:, 2:])
      pole = -pose.UP + 0.6 * sign * left[active] - 0.3 * fwd[active]
      R_upper, ik_elbow, _ = pose.two_bone_ik(
          s_w, target, pole, rest[shoulder], rest[elbow], rest[wrist],
          _ELBOW_HINGE[side], min_bend=0.1)
      R_collar = R_world[active, shoulder - 3]  # collar = shoulder − 3
      ik_shoulder = np.swapaxes(R_collar, -1, -2) @ R_upper
      w = weight[active]
      local[active, shoulder - 1] = pose.blend(local[active, shoulder - 1], ik_shoulder, w)
      local[active, elbow - 1] = pose.blend(local[active, elbow - 1], ik_elbow, w)
  return local


def generate_motion(seed: int, num_frames: int,
                    body: body_model.BodyModel | None = None, *,
                    kinds: Sequence[str] | None = None) -> dict:
  """One synthetic motion sequence, deterministic from `seed`.

  Args:
    seed: random seed (any non-negative int).
    num_frames: P, number of poses (≥ 2), at 30 fps.
    body: body model whose shaped rest joints the motion is planned on
      (bone lengths follow the betas); `body.builtin_body()` when None.
    kinds: allowed segment and overlay kinds, a subset of `KINDS` =
      (walk, run, stand, crouch, sit, reach, wave, look) with at least one
      of the first five; all when None.

  Returns:
    dict with `betas` (16,), `T_world_root` (P, 7) pelvis poses `wxyz_xyz`
    (world z up, floor at z = 0), `body_quats` (P, 21, 4) local rotations
    `wxyz` (all float32); per foot (left, right), bools (P, 2): `stance`
    (some part of the foot on the floor), `toe_planted` (toe joint fixed on
    the floor) and `foot_flat` (toe and ankle joints fixed); and
    `description` (str), e.g. "walk 1.2 m/s turn +90° → sit (seat 0.48 m)".
  """
  if int(num_frames) != num_frames or num_frames < 2:
    raise ValueError(f"num_frames: expected an int ≥ 2, got {num_frames!r}")
  kinds = tuple(KINDS if kinds is None else kinds)
  unknown = sorted(set(kinds) - set(KINDS))
  if unknown or not set(kinds) & set(script.BASE_KINDS):
    raise ValueError(
        f"kinds: expected a subset of {KINDS} with at least one of "
        f"{script.BASE_KINDS}, got {kinds!r}")
  num_frames = int(num_frames)
  rng = np.random.default_rng(seed)
  body = body_model.builtin_body() if body is None else body
  betas = np.zeros(body_model.NUM_BETAS)
  betas[:_NUM_SHAPED_BETAS] = rng.normal(0.0, _BETA_STD, _NUM_SHAPED_BETAS)
  betas = betas.astype(np.float32)
  rest = np.asarray(body.joints_rest(jnp.asarray(betas)), np.float64)[:22]
  dims = _body_dims(rest)
  style = dict(stance_width=rng.uniform(1.0, 1.3), toe_out=rng.uniform(0.05, 0.15),
               arm_down=rng.uniform(1.25, 1.4), elbow=rng.uniform(0.15, 0.4))

  num = num_frames + 2 * _PAD
  controls = script.render_controls(rng, num, kinds, dims, (_PAD, _PAD + num_frames))
  phase, samples = gait.gait_phase(controls, dims["leg_scale"], rng)
  feet = gait.plan_feet(controls, samples, rest, dims, style)
  R_root, t_root, osc = gait.pelvis_pose(controls, phase, feet, rest, dims)
  local = _pose_joints(controls, feet, R_root, t_root, osc, rest, style)

  keep = slice(_PAD, _PAD + num_frames)
  T_world_root = np.concatenate(
      [pose.matrix_to_wxyz(R_root[keep]), t_root[keep]], axis=-1)
  return dict(
      betas=betas,
      T_world_root=T_world_root.astype(np.float32),
      body_quats=pose.matrix_to_wxyz(local[keep]).astype(np.float32),
      stance=feet.contact[keep].copy(),
      toe_planted=feet.toe_planted[keep].copy(),
      foot_flat=feet.flat[keep].copy(),
      description=controls.description,
  )


def split_of(index: int, seed: int,
             ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> str:
  """Split of sequence `index`: train/val/test in proportion to `ratios`.

  A golden-ratio (Weyl) sequence over the index, offset by a hash of the
  seed, so any run of consecutive indices is split close to `ratios` (with
  the default ratios, any 13 consecutive indices include every split).
  """
  offset = zlib.crc32(str(seed).encode()) / 2.0 ** 32
  u = (offset + index * 0.6180339887498949) % 1.0
  edges = np.cumsum(ratios) / np.sum(ratios)
  return SPLITS[min(int(np.searchsorted(edges, u, side="right")), 2)]


def synthetic_records(
    num_sequences: int, seed: int = 0, *,
    num_frames: tuple[int, int] = (150, 450),
    split: str | tuple[float, float, float] = (0.8, 0.1, 0.1),
    body: body_model.BodyModel | None = None,
    kinds: Sequence[str] | None = None,
) -> Iterator[records.SequenceRecord]:
  """Synthetic sequences as validated records, deterministic from `seed`.

  Sequence i is generated from (seed, i) alone, so any prefix of a larger
  dataset is the smaller dataset.

  Args:
    num_sequences: number of sequences.
    seed: dataset seed.
    num_frames: (min, max) record length T, inclusive, drawn uniformly per
      sequence (P = T + 1 poses are generated; `records.from_motion` drops
      the first).
    split: a split name for every record, or (train, val, test) ratios
      assigned by `split_of`.
    body: body model; `body.builtin_body()` when None.
    kinds: allowed kinds (see `generate_motion`).

  Yields:
    Records named "synthetic/000017", source "synthetic", 30 fps, floor at
    z = 0, contacts by `records.contact_labels`.
  """
  if num_sequences < 0:
    raise ValueError(f"num_sequences: expected ≥ 0, got {num_sequences}")
  lo, hi = num_frames
  if not 1 <= lo <= hi:
    raise ValueError(f"num_frames: expected (min, max) with 1 ≤ min ≤ max, got {num_frames}")
  if isinstance(split, str):
    if split not in SPLITS:
      raise ValueError(f"split: expected one of {SPLITS} or three ratios, got {split!r}")
  elif len(split) != 3 or min(split) < 0 or sum(split) <= 0:
    raise ValueError(f"split: expected three non-negative ratios, got {split!r}")
  body = body_model.builtin_body() if body is None else body
  for i in range(num_sequences):
    sequence_seed = np.random.SeedSequence([seed, i])
    length = int(np.random.default_rng(sequence_seed.spawn(1)[0]).integers(lo, hi + 1))
    motion = generate_motion(int(sequence_seed.generate_state(1)[0]), length + 1,
                             body, kinds=kinds)
    record = records.from_motion(
        body, motion["betas"], motion["T_world_root"], motion["body_quats"],
        fps=FPS, name=f"synthetic/{i:06d}", source="synthetic",
        split=split if isinstance(split, str) else split_of(i, seed, tuple(split)),
        floor_z=0.0)
    yield record
