"""The `infer` mode: sample whole-body motion for a recorded head trajectory.

    python -m motiongrpo_jax.main --config=configs/infer.py \\
        --config.input=path/to/mps_folder \\
        --config.checkpoint=runs/pretrain_demo --workdir=runs/infer_demo

Steps of `run`:
  1. Check the config (`validate`); reject a checkpoint that is not a
     denoiser (e.g. a critic workdir) before loading anything.
  2. Read the head trajectory (`load_head_trajectory`): an Aria MPS folder or
     `closed_loop_trajectory.csv` (`data/aria.load_mps`: CPF poses resampled
     to `config.fps`, floor from the semi-dense points, which are also
     kept for the pictures (`aria.confident_points`), files read as
     `config.aria_reader` says, `T_device_cpf` from `config.aria_calibration`
     when given), or an `.npz` holding `T_world_cpf (N, 7)`; with guidance
     mode `aria_wrist_only` also the MPS wrist estimates
     (`data/aria_hands`: world wrist positions at the frames); then
     `config.start_frame` / `config.max_frames`.
  3. Sample `config.num_samples` motions with `diffusion/sampler.rollout`
     over the whole trajectory at once: sequences longer than
     `config.sampler.window_size` are stitched from overlapping windows
     (EgoAllo's blend), so a recording of any length is one rollout. Sample s
     uses the key fold_in(key(seed), s), so it does not depend on
     `num_samples`.
  4. With `config.guidance.mode` on, guide each sample (`guidance/`):
     with `guidance.inner` each denoising step's x̂0 inside the sampler
     (EgoAllo's "inner"), with `guidance.post` the sample after sampling
     (EgoAllo's "post"); `aria_wrist_only` pulls the wrists to the
     estimated positions, leaving their orientations free. The unguided
     samples are the sampler's own, with the same keys.
     Pose each sample (`pose_samples`): rotations projected onto SO(3), the
     pelvis placed so that the posed body's CPF is the input CPF pose.
  5. Write `WORKDIR/outputs.npz` (atomically) and render
     `WORKDIR/motion.<config.render.kind>` (`motiongrpo_jax.render`).

Frame alignment (EgoAllo's): the sampler reads N = T + 1 CPF poses p_0..p_T
and predicts T frames; output frame k is input pose k + 1 (its features are
the motion p_k → p_{k+1} and the pose p_{k+1}). So the first input pose has
no output, and `Ts_world_cpf` / `timestamps_ns` are those of poses 1..T.

`outputs.npz` (S samples, T frames; everything in the input's world frame,
NOT shifted by the floor; z up, metres, quaternions wxyz):
  Ts_world_cpf      (T, 7)         input CPF poses 1..T
  Ts_world_root     (S, T, 7)      pelvis poses
  body_quats        (S, T, 21, 4)  local rotations of SMPL joints 1..21
  left_hand_quats   (S, T, 15, 4)  identity when the model has no hands
  right_hand_quats  (S, T, 15, 4)  identity when the model has no hands
  contacts          (S, T, 21)     predicted contact values (raw)
  betas             (S, T, 16)     predicted shape, per frame
  timestamps_ns     (T,)           int64 (device clock for Aria input)
  joints_world      (S, T, 22, 3)  world positions of joints 0..21
  floor_z           ()             floor height
  fps               ()             frame rate
  metadata          ()             JSON string (input, checkpoint, sampler…)
  semidense_points  (P, 3)         Aria input with a point file only: the
                                   confident points in a box 4 m around the
                                   CPF path, at most 20,000
                                   (`aria.points_near`); for the pictures
With guidance, the sample fields hold the guided samples and
`unguided_<field>` the sampler's own.
"""

from __future__ import annotations

import json
import os
import pathlib
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from motiongrpo_jax import body as body_lib
from motiongrpo_jax import config_sections
from motiongrpo_jax import geometry
from motiongrpo_jax import run_record
from motiongrpo_jax.body import skeleton
from motiongrpo_jax.critic import checkpoint as critic_checkpoint
from motiongrpo_jax.data import aria
from motiongrpo_jax.data import aria_hands
from motiongrpo_jax.diffusion import sampler as sampler_lib
from motiongrpo_jax.guidance import optimize as guidance_optimize
from motiongrpo_jax.guidance import residuals as guidance_lib
from motiongrpo_jax.model import denoiser as denoiser_lib
from motiongrpo_jax.model import packing
from motiongrpo_jax.model import params_io
from motiongrpo_jax.train import checkpoints

OUTPUT_FILE = "outputs.npz"
RENDER_KINDS = ("gif", "mp4", "html", "none")
# Fewest input poses (N = T + 1): T >= 4 output frames.
MIN_POSES = 5
NUM_JOINTS = len(skeleton.JOINT_NAMES)  # 22: pelvis + 21 body joints
NUM_HAND_JOINTS_PER_SIDE = 15
# Relative tolerance on the frame spacing of npz timestamps.
_FPS_TOLERANCE = 0.1


class HeadTrajectory(NamedTuple):
  """CPF poses at a fixed rate and the floor.

  Attributes:
    Ts_world_cpf: (N, 7) `wxyz_xyz` world CPF poses, z up.
    timestamps_ns: (N,) int64 time of each pose.
    floor_z: floor height in the world frame.
    floor_source: how the floor was found.
    source: the file read.
    wrists: world wrist targets of the N poses, or None.
    points: (P, 3) world semi-dense points of the whole recording, or None.
  """
  Ts_world_cpf: np.ndarray
  timestamps_ns: np.ndarray
  floor_z: float
  floor_source: str
  source: str
  wrists: aria_hands.WristTargets | None = None
  points: np.ndarray | None = None


class PosedSamples(NamedTuple):
  """Posed samples; shapes in the module docstring."""
  Ts_world_root: jax.Array
  body_quats: jax.Array
  left_hand_quats: jax.Array
  right_hand_quats: jax.Array
  contacts: jax.Array
  betas: jax.Array
  joints_world: jax.Array


# --------------------------------------------------------------------------
# Config and checks.


def validate(config: ml_collections.ConfigDict) -> None:
  """Fails at start-up, naming the field, on an impossible config."""
  if not config.input:
    raise ValueError(
        "config.input is empty: pass --config.input=PATH (an Aria MPS folder, "
        "a closed_loop_trajectory.csv or an .npz with T_world_cpf)")
  if not pathlib.Path(config.input).exists():
    raise FileNotFoundError(f"config.input={config.input!r}: no such file or "
                            "directory")
  if not config.checkpoint:
    raise ValueError(
        "config.checkpoint is empty: pass --config.checkpoint=PATH (a pretrain "
        "or GRPO workdir, a checkpoint step directory, a model directory or "
        "an EgoAllo checkpoint directory)")
  if config.num_samples < 1:
    raise ValueError(f"config.num_samples={config.num_samples}: expected >= 1")
  if config.fps <= 0:
    raise ValueError(f"config.fps={config.fps}: expected > 0")
  if config.start_frame < 0:
    raise ValueError(f"config.start_frame={config.start_frame}: expected >= 0")
  if config.max_frames < 0 or 0 < config.max_frames < MIN_POSES - 1:
    raise ValueError(f"config.max_frames={config.max_frames}: expected 0 (all) "
                     f"or >= {MIN_POSES - 1}")
  render = config.render
  if render.kind not in RENDER_KINDS:
    raise ValueError(f"config.render.kind={render.kind!r}: expected one of "
                     f"{list(RENDER_KINDS)}")
  if not 0 <= render.sample < config.num_samples:
    raise ValueError(f"config.render.sample={render.sample}: expected 0..."
                     f"{config.num_samples - 1} (config.num_samples)")
  if render.stride < 1 or render.size < 64:
    raise ValueError(f"config.render.stride={render.stride}, "
                     f"config.render.size={render.size}: expected stride >= 1 "
                     "and size >= 64")
  body_lib.check_config(config.body)
  config_sections.to_dataclass(
      sampler_lib.SamplerConfig, config.sampler, "sampler", return_means=False)
  guidance = config_sections.to_dataclass(
      guidance_lib.GuidanceConfig, config.guidance, "guidance")
  if guidance.mode == "aria_wrist_only" and (
      _is_npz(config.input)
      or aria_hands.find_wrist_file(config.input) is None):
    raise ValueError(
        "config.guidance.mode='aria_wrist_only' needs the recording's MPS "
        f"{aria_hands.HAND_FOLDER}/{aria_hands.WRIST_FILE}; config.input="
        f"{config.input!r} has none (use guidance.mode='no_hands')")
  if config.aria_reader not in aria.READERS:
    raise ValueError(f"config.aria_reader={config.aria_reader!r}: expected one"
                     f" of {list(aria.READERS)}")
  if config.aria_calibration and not pathlib.Path(
      config.aria_calibration).is_file():
    raise FileNotFoundError(f"config.aria_calibration="
                            f"{config.aria_calibration!r}: no such file")
  if config.aria_use_svd and not config.aria_calibration:
    raise ValueError("config.aria_use_svd=True needs config.aria_calibration "
                     "(the recording's VRS file or calibration JSON)")


def _is_npz(path: str | os.PathLike) -> bool:
  return pathlib.Path(path).is_file() and pathlib.Path(path).suffix == ".npz"


def check_denoiser_checkpoint(path: str) -> str:
  """The checkpoint layout of `path`; an error unless it holds a denoiser.

  Args:
    path: `config.checkpoint`.

  Returns:
    The kind (`train/checkpoints.checkpoint_kind`).

  Raises:
    FileNotFoundError / ValueError naming `config.checkpoint`: no such path,
    not a checkpoint, or a critic's checkpoint.
  """
  p = pathlib.Path(path)
  try:
    kind = checkpoints.checkpoint_kind(p)
  except (FileNotFoundError, ValueError) as e:
    raise type(e)(f"config.checkpoint={path!r}: {e}") from e
  workdir = p if kind == "workdir" else p.parent.parent
  if kind in ("workdir", "step") and (workdir / critic_checkpoint.CONFIG_FILE).is_file():
    raise ValueError(
        f"config.checkpoint={path!r} is a critic checkpoint ({workdir} holds "
        f"{critic_checkpoint.CONFIG_FILE}); inference needs a denoiser: a pretrain or "
        "GRPO workdir, a checkpoint step directory, a model directory or an "
        "EgoAllo checkpoint directory")
  if kind in ("workdir", "step") and not (workdir / params_io.CONFIG_FILE).is_file():
    raise ValueError(
        f"config.checkpoint={path!r}: {workdir} has no {params_io.CONFIG_FILE},"
        " so it is not a denoiser's training workdir")
  return kind


# --------------------------------------------------------------------------
# Input.


def _load_npz(path: pathlib.Path, fps: float) -> HeadTrajectory:
  """`T_world_cpf (N, 7)` (+ optional `floor_z`, `timestamps_ns`) from an npz."""
  with np.load(path, allow_pickle=False) as data:
    if "T_world_cpf" not in data:
      raise ValueError(f"{path}: no 'T_world_cpf' array (has "
                       f"{sorted(data.files)}); expected (N, 7) wxyz_xyz poses")
    poses = np.asarray(data["T_world_cpf"], np.float64)
    floor = (float(data["floor_z"]) if "floor_z" in data else None)
    stamps = (np.asarray(data["timestamps_ns"]) if "timestamps_ns" in data
              else None)
  if poses.ndim != 2 or poses.shape[1] != 7:
    raise ValueError(f"{path}: T_world_cpf has shape {poses.shape}, expected "
                     "(N, 7) wxyz_xyz")
  if not np.all(np.isfinite(poses)):
    raise ValueError(f"{path}: T_world_cpf has non-finite values")
  norms = np.linalg.norm(poses[:, :4], axis=-1)
  if np.any(np.abs(norms - 1.0) > 1e-3):
    row = int(np.argmax(np.abs(norms - 1.0)))
    raise ValueError(f"{path}: T_world_cpf[{row}] has a quaternion of norm "
                     f"{norms[row]:.4f}, expected 1 (wxyz first)")
  poses[:, :4] /= norms[:, None]
  if stamps is None:
    stamps = np.round(np.arange(len(poses)) * 1e9 / fps).astype(np.int64)
  else:
    stamps = stamps.astype(np.int64)
    if stamps.shape != (len(poses),):
      raise ValueError(f"{path}: timestamps_ns has shape {stamps.shape}, "
                       f"expected ({len(poses)},)")
    if len(stamps) > 1:
      step = float(np.median(np.diff(stamps))) * 1e-9
      if abs(step * fps - 1.0) > _FPS_TOLERANCE:
        raise ValueError(
            f"{path}: timestamps_ns are {step * 1e3:.2f} ms apart, expected "
            f"{1e3 / fps:.2f} ms (config.fps={fps}); resample to {fps} fps")
  how = "npz floor_z"
  if floor is None:
    floor = float(np.percentile(poses[:, 6], 90) - aria.HEAD_HEIGHT_PRIOR)
    how = "head-height prior"
  return HeadTrajectory(poses, stamps, floor, how, str(path))


def load_head_trajectory(path: str | os.PathLike, fps: float = 30.0,
                         aria_device: str = aria.DEFAULT_DEVICE, *,
                         aria_reader: str = aria.DEFAULT_READER,
                         aria_calibration: str | None = None,
                         aria_use_svd: bool = False,
                         wrists: bool = False) -> HeadTrajectory:
  """The CPF trajectory and floor of an Aria MPS recording or an npz.

  Args:
    path: an MPS folder (or its `slam/`), a `closed_loop_trajectory.csv`
      (gzip allowed), or an `.npz` with `T_world_cpf (N, 7)`.
    fps: output rate (Aria poses are resampled; npz poses must be at it).
    aria_device: `T_device_cpf` preset for Aria input.
    aria_reader: `aria.load_mps`'s reader.
    aria_calibration: `aria.load_mps`'s device_calibration, or None.
    aria_use_svd: `aria.load_mps`'s use_svd.
    wrists: also the wrist targets (MPS input with a wrist file only).

  Returns:
    The trajectory; at least `MIN_POSES` poses.

  Raises:
    ValueError (`aria.AriaError` for MPS input) naming the file: missing
    or malformed input, or too short a trajectory.
  """
  path = pathlib.Path(path)
  if not path.exists():
    raise FileNotFoundError(f"{path}: no such file or directory")
  if path.is_file() and path.suffix == ".npz":
    trajectory = _load_npz(path, fps)
  else:
    csv_path, _ = aria.find_mps_files(path)
    try:
      mps = aria.load_mps(path, T_device_cpf=aria_device, fps=fps,
                          reader=aria_reader,
                          device_calibration=aria_calibration or None,
                          use_svd=aria_use_svd)
    except aria.AriaError as e:
      if "at least 2 poses" in str(e):
        raise aria.AriaError(
            f"{csv_path}: too few rows; inference needs at least {MIN_POSES} "
            f"poses at {fps:g} fps, i.e. rows spanning >= "
            f"{(MIN_POSES - 1) / fps:.3f} s") from e
      raise
    stamps = np.round(mps.start_timestamp_us * 1e3
                      + mps.times * 1e9).astype(np.int64)
    targets = None
    if wrists:
      wrist_file = aria_hands.find_wrist_file(path)
      if wrist_file is None:
        raise aria.AriaError(f"{path}: no {aria_hands.HAND_FOLDER}/"
                             f"{aria_hands.WRIST_FILE} for the wrist targets")
      targets = aria_hands.wrist_targets(
          aria_hands.read_wrist_and_palm_poses(wrist_file, aria_reader), mps)
    trajectory = HeadTrajectory(mps.T_world_cpf, stamps, float(mps.floor_z),
                                mps.floor_source, str(csv_path), targets,
                                mps.points)
  if wrists and trajectory.wrists is None:
    raise ValueError(f"{path}: wrist targets need an Aria MPS recording")
  if len(trajectory.Ts_world_cpf) < MIN_POSES:
    raise ValueError(
        f"{trajectory.source}: too few rows: {len(trajectory.Ts_world_cpf)} "
        f"pose(s) at {fps:g} fps; inference needs at least {MIN_POSES} poses "
        f"({(MIN_POSES - 1) / fps:.3f} s of trajectory)")
  return trajectory


def select_frames(trajectory: HeadTrajectory, start_frame: int,
                  max_frames: int) -> HeadTrajectory:
  """Poses start_frame .. start_frame + max_frames (T = max_frames outputs).

  Args:
    trajectory: the whole trajectory.
    start_frame: first pose kept.
    max_frames: most output frames (0: all), i.e. max_frames + 1 poses.

  Returns:
    The cut trajectory (at least `MIN_POSES` poses).
  """
  count = len(trajectory.Ts_world_cpf)
  stop = count if not max_frames else min(count, start_frame + max_frames + 1)
  if stop - start_frame < MIN_POSES:
    raise ValueError(
        f"config.start_frame={start_frame}: {trajectory.source} has {count} "
        f"poses, so only {max(stop - start_frame, 0)} remain; inference needs "
        f"at least {MIN_POSES}")
  wrists = trajectory.wrists
  return trajectory._replace(
      Ts_world_cpf=trajectory.Ts_world_cpf[start_frame:stop],
      timestamps_ns=trajectory.timestamps_ns[start_frame:stop],
      wrists=None if wrists is None else aria_hands.WristTargets(
          *(a[start_frame:stop] for a in wrists)))


# --------------------------------------------------------------------------
# Sampling and posing (pure, jit-friendly).


def pose_samples(x0: jax.Array, Ts_world_cpf: jax.Array,
                 body: body_lib.BodyModel) -> PosedSamples:
  """EgoAllo's output fields of packed samples, posed on the input CPF.

  Rotations are projected onto SO(3) (det +1); the pelvis is the pose that
  puts the posed body's CPF at `Ts_world_cpf` (as `grpo/posing.pose_sample`).

  Args:
    x0: (S, T, d) packed samples (d 226 or 496).
    Ts_world_cpf: (T, 7) CPF poses of the same frames (unshifted).
    body: the body model.

  Returns:
    The posed samples.
  """
  hands = x0.shape[-1] == packing.DIM_WITH_HANDS
  fields = packing.unpack(x0, hands)
  quats = geometry.matrix_to_quat(geometry.project_to_so3(fields.body_rotmats))
  lead = x0.shape[:-1]
  if hands:
    hand_quats = geometry.matrix_to_quat(
        geometry.project_to_so3(fields.hand_rotmats))
  else:
    hand_quats = jnp.broadcast_to(
        jnp.array([1.0, 0.0, 0.0, 0.0], x0.dtype),
        lead + (2 * NUM_HAND_JOINTS_PER_SIDE, 4))
  cpf = jnp.broadcast_to(Ts_world_cpf, lead + (7,))
  root = body.T_world_root_from_cpf(fields.betas, cpf, quats)
  # Hands hang off the wrists: joints 0..21 do not depend on them.
  joints = body.forward_kinematics(fields.betas, root, quats)
  return PosedSamples(
      Ts_world_root=root, body_quats=quats,
      left_hand_quats=hand_quats[..., :NUM_HAND_JOINTS_PER_SIDE, :],
      right_hand_quats=hand_quats[..., NUM_HAND_JOINTS_PER_SIDE:, :],
      contacts=fields.contacts, betas=fields.betas,
      joints_world=joints[..., :NUM_JOINTS, 4:])


def make_infer_fn(model: denoiser_lib.Denoiser,
                  config: sampler_lib.SamplerConfig, num_samples: int,
                  guidance: guidance_lib.GuidanceConfig | None = None
                  ) -> Callable[..., dict[str, PosedSamples]]:
  """The jitted sample-and-pose program of a model.

  Args:
    model: the denoiser.
    config: sampler options (windows for long inputs).
    num_samples: S.
    guidance: guidance options, inner and/or post (None or mode "off":
      none).

  Returns:
    fn(params, Ts_world_cpf (N, 7), floor_z (), key, body, wrists=None) ->
    {"": PosedSamples} of T = N − 1 frames, with guidance also
    {"unguided_": the sampler's own samples}; `wrists` are the
    `aria_hands.WristTargets` of the T output frames (`aria_wrist_only`).
    One compilation per input length.
  """
  apply_fn = sampler_lib.model_apply_fn(model)
  dim = model.config.packed_dim

  @jax.jit
  def fn(params, Ts_world_cpf, floor_z, key, body, wrists=None):
    condition = sampler_lib.sampler_condition(Ts_world_cpf[None],
                                              floor_z[None])

    targets = {} if wrists is None else {
        "wrists": wrists.T_world_wrist, "wrist_mask": wrists.position_mask,
        "wrist_rot_mask": wrists.rotation_mask}

    def sample(inner):  # (S, T, d)
      x0_guide = None
      if inner:
        x0_guide = guidance_optimize.inner_guide(Ts_world_cpf[1:], body,
                                                 guidance, floor_z=floor_z,
                                                 **targets)

      def one(sample_key):
        out = sampler_lib.rollout(apply_fn, params, condition, key=sample_key,
                                  packed_dim=dim, config=config,
                                  x0_guide=x0_guide)
        return out.xs[-1, 0]

      return jax.vmap(one)(keys)

    keys = jax.vmap(lambda s: jax.random.fold_in(key, s))(
        jnp.arange(num_samples))
    x0 = sample(inner=False)  # shape [S, T, d]
    if guidance is None or not guidance.enabled:
      return {"": pose_samples(x0, Ts_world_cpf[1:], body)}
    guided = sample(inner=True) if guidance.runs_inner else x0
    if guidance.runs_post:
      guided = guidance_optimize.guide(guided, Ts_world_cpf[1:], body,
                                       guidance, floor_z=floor_z, **targets)
    return {"": pose_samples(guided, Ts_world_cpf[1:], body),
            "unguided_": pose_samples(x0, Ts_world_cpf[1:], body)}

  return fn


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Samples motion for `config.input`; see the module docstring.

  Returns:
    The metadata stored in `outputs.npz` (with the output paths).
  """
  t0 = time.time()
  # --- (1) Config and checkpoint kind (cheap checks first).
  validate(config)
  sampler = config_sections.to_dataclass(
      sampler_lib.SamplerConfig, config.sampler, "sampler", return_means=False)
  guidance = config_sections.to_dataclass(
      guidance_lib.GuidanceConfig, config.guidance, "guidance")
  kind = check_denoiser_checkpoint(config.checkpoint)

  # --- (2) Input.
  trajectory = load_head_trajectory(
      config.input, config.fps, config.aria_device,
      aria_reader=config.aria_reader, aria_calibration=config.aria_calibration,
      aria_use_svd=config.aria_use_svd,
      wrists=guidance.mode == "aria_wrist_only")
  if config.floor_z is not None:
    trajectory = trajectory._replace(floor_z=float(config.floor_z),
                                     floor_source="config.floor_z")
  trajectory = select_frames(trajectory, config.start_frame,
                             config.max_frames)
  num_frames = len(trajectory.Ts_world_cpf) - 1

  # --- (3) Model, body; sample and pose.
  model, params = checkpoints.load_denoiser_option(
      config.checkpoint, "config.checkpoint")
  body = body_lib.from_config(config.body)
  logging.info("infer: %s (%d frames, floor z %.3f from %s), %s, %d sample(s)",
               trajectory.source, num_frames, trajectory.floor_z,
               trajectory.floor_source, config.checkpoint, config.num_samples)
  infer_fn = make_infer_fn(model, sampler, config.num_samples, guidance)
  wrists = trajectory.wrists
  if wrists is not None:  # Output frame k is input pose k + 1.
    wrists = aria_hands.WristTargets(
        jnp.asarray(wrists.T_world_wrist[1:], jnp.float32),
        jnp.asarray(wrists.position_mask[1:]),
        jnp.asarray(wrists.rotation_mask[1:]))
  t1 = time.time()
  posed = infer_fn(params, jnp.asarray(trajectory.Ts_world_cpf, jnp.float32),
                   jnp.asarray(trajectory.floor_z, jnp.float32),
                   jax.random.PRNGKey(config.seed), body, wrists)
  posed = jax.tree.map(np.asarray, jax.block_until_ready(posed))
  sample_seconds = time.time() - t1

  # --- (4) Write.
  workdir_path = pathlib.Path(workdir)
  metadata = {
      "input": str(pathlib.Path(trajectory.source).absolute()),
      "checkpoint": str(pathlib.Path(config.checkpoint).absolute()),
      "checkpoint_kind": kind,
      "num_samples": config.num_samples,
      "num_frames": num_frames,
      "start_frame": config.start_frame,
      "frame_alignment": "output frame k is input pose start_frame + k + 1",
      "fps": config.fps,
      "floor_z": trajectory.floor_z,
      "floor_source": trajectory.floor_source,
      "include_hands": bool(model.config.include_hands),
      "body": config.body.to_dict(),
      "seed": config.seed,
      "sampler": {k: config.sampler[k] for k in config.sampler},
      "guidance": config.guidance.to_dict(),
      "sample_seconds": round(sample_seconds, 2),
  }
  if wrists is not None:  # output frames with a wrist target (left, right)
    metadata["wrist_frames"] = np.asarray(wrists.position_mask).sum(0).tolist()
  arrays = {
      "Ts_world_cpf": np.asarray(trajectory.Ts_world_cpf[1:], np.float32),
      **{prefix + k: np.asarray(v, np.float32)
         for prefix, one in posed.items() for k, v in one._asdict().items()},
      "timestamps_ns": trajectory.timestamps_ns[1:].astype(np.int64),
      "floor_z": np.float32(trajectory.floor_z),
      "fps": np.float32(config.fps),
  }
  if trajectory.points is not None:
    arrays["semidense_points"] = aria.points_near(
        trajectory.points, trajectory.Ts_world_cpf[1:, 4:])
    metadata["semidense_points"] = len(arrays["semidense_points"])
  arrays["metadata"] = np.array(json.dumps(metadata))
  output = workdir_path / OUTPUT_FILE
  metadata["outputs"] = str(output)
  if jax.process_index() != 0:  # Every process samples; one writes.
    return metadata
  run_record.write_npz(output, arrays)

  # --- (5) Picture.
  if config.render.kind != "none":
    from motiongrpo_jax import render  # pylint: disable=g-import-not-at-top
    picture = workdir_path / f"motion.{config.render.kind}"
    render.render_file(output, picture, sample=config.render.sample,
                       stride=config.render.stride, size=config.render.size)
    metadata["render"] = str(picture)
  metadata["seconds"] = round(time.time() - t0, 2)
  logging.info("infer: wrote %s%s in %.1f s (sampling %.1f s)", output,
               f" and {metadata['render']}" if "render" in metadata else "",
               metadata["seconds"], sample_seconds)
  return metadata
