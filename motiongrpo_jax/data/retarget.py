"""Retargeting BVH motion capture onto the SMPL 22-joint body.

A *preset* (`bvh_preset`: `presets/*.json`, or a user's file) maps each of
the 22 SMPL joints to a joint of the source skeleton (or to null: that SMPL
joint then follows its parent rigidly), gives the source units and axes, and
says how the source skeleton stands in a T-pose. Retargeting a file then runs:

1. **Source FK** (`bvh.forward_kinematics`), scaled to metres and turned from
   the source's up axis to z-up: world = Rx(+90°)·M_c·source, where M_c takes
   the source axes (`up_axis`, `forward_axis`, left = up × forward) to SMPL's
   canonical body axes (+y up, +z forward, +x left).
2. **Rest alignment.** The source T-pose is the zero pose, except for joints
   listed in `rest_axes`, whose local x, y, z axes point along the given
   canonical axes in the T-pose (e.g. "+y-x+z": local x up, local y to the
   right, local z forward). Skeletons whose zero pose is not a T-pose (e.g.
   Bandai-Namco: every OFFSET along the parent's local X) need it. Each
   mapped joint's T-pose frame is then swung (the smallest rotation, or a
   weighted Wahba fit when the joint has several mapped children) so that
   its bones point exactly along the SMPL rest bones: `Q_j`, the source
   frame that corresponds to SMPL's identity rotation.
3. **Shape fit.** The source skeleton posed like that gives target joint
   positions S (metres, pelvis-relative). The body's rest joints are linear
   in β (J(β) = J0 + Bβ), so β (and a constant offset t of the SMPL pelvis
   from the source pelvis joint) come from one regularised linear least
   squares Σ_j |J(β)_j + t − S_j|² + λ|β|² over the mapped joints; this
   fits overall scale and limb proportions to the source bone lengths
   (twice, the second time with the bone directions of the fitted shape).
4. **Per frame**, for SMPL joints in tree order: the global rotation is the
   source joint's frame carried over, G̃_j = R_src,j · Q_jᵀ (this carries the
   twist about the bone), then corrected by the smallest rotation (one child)
   or a Wahba fit (several) that turns the predicted bones G̃_j·(J_k − J_j)
   onto the source bones P_k − P_j. Unmapped joints copy their parent's
   rotation. Local rotations are parent⁻¹·global; the root pose is the
   pelvis rotation at the source pelvis position plus G_pelvis·t.
5. **Quality**: the mean distance between the retargeted joints (FK of the
   fitted body) and the mapped source joints, over frames and mapped joints
   (root placed as in 4), reported per file.

Joints listed in a preset's `rotation_only` skip the swings of steps 2 and 4
and take the carried source frame as it is. The shipped presets do this for
the torso (pelvis, spine1, spine3, neck): mocap rigs have a straight spine
with the head joint above the neck, SMPL an S-curved one with the head
joint 35° forward of the neck, so matching those bone directions would turn
the difference into large constant local rotations (the neck bent back
50–75°, the spine zig-zagging). Carried frames keep the torso's local
rotations natural at the cost of ~2–4 cm of head position; limbs, hands
and feet are still swung onto the source bones.

`iter_records` drives it over files: retarget, resample to 30 fps (slerp +
lerp), floor and contacts at the source rate (`records.estimate_floor`,
`records.contact_labels`), then `records.from_motion`.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
from scipy.spatial.transform import Rotation

from motiongrpo_jax.body import model as body_model
from motiongrpo_jax.body import skeleton
from motiongrpo_jax.body import smplh
from motiongrpo_jax.data import batch_import
from motiongrpo_jax.data import bvh
from motiongrpo_jax.data import bvh_preset
from motiongrpo_jax.data import mirror as mirror_lib
from motiongrpo_jax.data import records
from motiongrpo_jax.data import resample
from motiongrpo_jax.data import splits

SMPL_JOINTS = skeleton.JOINT_NAMES
# Presets live in `bvh_preset`; re-exported here for convenience.
Preset = bvh_preset.Preset
PresetError = bvh_preset.PresetError
PRESET_DIR = bvh_preset.PRESET_DIR
available_presets = bvh_preset.available_presets
load_preset = bvh_preset.load_preset
preset_from_dict = bvh_preset.preset_from_dict
# SMPL's canonical body frame (+y up, +z forward) to the z-up world: +90°
# about x, so canonical up → world +z and canonical forward → world −y.
WORLD_FROM_CANONICAL = np.array([[1.0, 0.0, 0.0],
                                 [0.0, 0.0, -1.0],
                                 [0.0, 1.0, 0.0]])
# Ridge weight on β in the shape fit (m² per unit β²): small next to what a
# unit of β changes (joints move 1–3 cm), it only pins β where the source
# bones leave it free.
SHAPE_REGULARIZATION = 1e-5
# Bones shorter than this (metres, in the source rest pose) carry no direction.
MIN_BONE_LENGTH = 1e-3

# ----------------------------------------------------------------------------
# Rotation helpers (numpy, batched, float64).


def _normalize(v: np.ndarray) -> np.ndarray:
  return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def min_rotation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Smallest rotation taking direction a onto direction b.

  Args:
    a, b: (..., 3) directions (need not be unit).

  Returns:
    (..., 3, 3) rotation matrices R with R·â = b̂; a half turn about an axis
    perpendicular to a when they are opposite.
  """
  a, b = np.broadcast_arrays(_normalize(a), _normalize(b))
  v = np.cross(a, b)
  c = np.sum(a * b, axis=-1)[..., None, None]
  vx = np.zeros(v.shape + (3,))
  vx[..., 0, 1], vx[..., 0, 2] = -v[..., 2], v[..., 1]
  vx[..., 1, 0], vx[..., 1, 2] = v[..., 2], -v[..., 0]
  vx[..., 2, 0], vx[..., 2, 1] = -v[..., 1], v[..., 0]
  eye = np.broadcast_to(np.eye(3), vx.shape)
  opposite = c[..., 0, 0] < -1.0 + 1e-9
  out = eye + vx + vx @ vx / np.where(opposite[..., None, None], 1.0, 1.0 + c)
  if np.any(opposite):
    helper = np.eye(3)[np.argmin(np.abs(a[opposite]), axis=-1)]
    n = _normalize(np.cross(a[opposite], helper))
    out[opposite] = 2.0 * n[..., :, None] * n[..., None, :] - np.eye(3)
  return out


def wahba(targets: np.ndarray, sources: np.ndarray,
          weights: np.ndarray) -> np.ndarray:
  """Rotation minimising Σ_k w_k |t_k − R s_k|² (SVD, det fixed to +1).

  Args:
    targets: (..., K, 3).
    sources: (..., K, 3).
    weights: (K,).

  Returns:
    (..., 3, 3).
  """
  h = np.einsum("k,...ka,...kb->...ab", weights, targets, sources)
  u, _, vt = np.linalg.svd(h)
  d = np.sign(np.linalg.det(u @ vt))
  d = np.where(d == 0, 1.0, d)
  u = u * np.stack([np.ones_like(d), np.ones_like(d), d], axis=-1)[..., None, :]
  return u @ vt


def _align(targets: np.ndarray, sources: np.ndarray,
           weights: np.ndarray) -> np.ndarray:
  """Smallest rotation (one vector) or Wahba fit (several): sources→targets."""
  if targets.shape[-2] == 1:
    return min_rotation(sources[..., 0, :], targets[..., 0, :])
  return wahba(_normalize(targets), _normalize(sources), weights)


def matrix_to_wxyz(matrix: np.ndarray) -> np.ndarray:
  """(..., 3, 3) rotations → (..., 4) `wxyz` quaternions with w ≥ 0."""
  shape = matrix.shape[:-2]
  xyzw = Rotation.from_matrix(matrix.reshape(-1, 3, 3)).as_quat()
  wxyz = np.concatenate([xyzw[:, 3:], xyzw[:, :3]], axis=-1)
  wxyz = np.where(wxyz[:, :1] < 0, -wxyz, wxyz)
  return wxyz.reshape(shape + (4,))


# ----------------------------------------------------------------------------
# Retargeting.


@dataclasses.dataclass(frozen=True)
class Retargeted:
  """A BVH clip on the SMPL body, at the source frame rate.

  Attributes:
    betas: (16,) fitted shape.
    T_world_root: (F, 7) pelvis poses `wxyz_xyz`, world z up, metres.
    body_quats: (F, 21, 4) local rotations of joints 1..21.
    joints: (F, 22, 3) retargeted joint positions (FK of the fitted body).
    source_joints: (F, 22, 3) the mapped source joints in the same world
      (NaN for unmapped SMPL joints).
    fps: source frame rate.
    mean_error: mean |joints − source_joints| over frames and mapped joints,
      metres.
    joint_errors: (22,) per-joint mean error (NaN where unmapped).
  """

  betas: np.ndarray
  T_world_root: np.ndarray
  body_quats: np.ndarray
  joints: np.ndarray
  source_joints: np.ndarray
  fps: float
  mean_error: float
  joint_errors: np.ndarray


def body_shape_space(body: body_model.BodyModel) -> tuple[np.ndarray,
                                                          np.ndarray]:
  """The body's rest joints as J0 + Bβ (exactly linear for every body here).

  Args:
    body: a body model.

  Returns:
    J0 (22, 3) and B (16, 22, 3), metres, canonical frame, pelvis-relative.
  """
  num_betas = body_model.NUM_BETAS
  betas = np.concatenate([np.zeros((1, num_betas)), np.eye(num_betas)])
  joints = np.asarray(body.joints_rest(jnp.asarray(betas, jnp.float32)),
                      np.float64)[:, :len(SMPL_JOINTS)]
  return joints[0], joints[1:] - joints[0]


class Retargeter:
  """Retargets files of one source skeleton onto one body.

  Args:
    preset: the joint mapping and conventions.
    body: the target body model (its shape space is read once).
  """

  def __init__(self, preset: Preset, body: body_model.BodyModel):
    self.preset = preset
    self.body = body
    self.mean_joints, self.shape_basis = body_shape_space(body)
    self.mapped = np.array([j is not None for j in preset.joints])
    parents = skeleton.PARENTS
    # Mapped descendants reached through unmapped joints only ("bones").
    self.targets: list[list[int]] = [[] for _ in SMPL_JOINTS]
    for k in range(1, len(SMPL_JOINTS)):
      if not self.mapped[k]:
        continue
      j = parents[k]
      while not self.mapped[j]:
        j = parents[j]
      self.targets[j].append(k)
    self.canonical_from_source = preset.canonical_from_source()
    self.world_from_source = WORLD_FROM_CANONICAL @ self.canonical_from_source
    self._cache: dict = {}

  # --- Source side.

  def check(self, skel: bvh.BvhSkeleton, source: str) -> np.ndarray:
    """Source joint index per SMPL joint (−1 unmapped); validates the fit.

    Raises:
      PresetError: names of preset joints missing from the file, or a
        mapping that contradicts the file's joint tree.
    """
    names = set(skel.names)
    unknown = [j for j in self.preset.joints if j is not None and
               j not in names]
    unknown += [j for j in self.preset.rest_axes if j not in names]
    if unknown:
      raise PresetError(
          f"{source}: preset {self.preset.name!r} names joints not in this "
          f"file: {unknown} (the file has {list(skel.names)})")
    index = np.array([-1 if j is None else skel.index(j)
                      for j in self.preset.joints])
    for j, kids in enumerate(self.targets):
      for k in kids:
        a = index[k]
        while a >= 0 and a != index[j]:
          a = skel.parents[a]
        if a < 0:
          raise PresetError(
              f"{source}: preset {self.preset.name!r} maps "
              f"{SMPL_JOINTS[k]} to {self.preset.joints[k]!r}, which is not "
              f"below {self.preset.joints[j]!r} ({SMPL_JOINTS[j]}) in the "
              "file's joint tree")
    return index

  def rest_pose(self, skel: bvh.BvhSkeleton) -> tuple[np.ndarray,
                                                       np.ndarray]:
    """Source T-pose: frames (J, 3, 3) and positions (J, 3), canonical axes,
    source units."""
    frames = np.empty((len(skel.names), 3, 3))
    positions = np.zeros((len(skel.names), 3))
    for k, parent in enumerate(skel.parents):
      if skel.names[k] in self.preset.rest_axes:
        frames[k] = bvh_preset.axes_matrix(self.preset.rest_axes[skel.names[k]],
                                 skel.names[k])
      else:
        frames[k] = (self.canonical_from_source if parent < 0
                     else frames[parent])
      if parent >= 0:
        positions[k] = positions[parent] + frames[parent] @ skel.offsets[k]
    return frames, positions

  def _alignments(self, rest_joints: np.ndarray, index: np.ndarray,
                  frames: np.ndarray, positions: np.ndarray):
    """Per mapped SMPL joint: swing W_j of its T-pose frame, its live bones."""
    swings = np.tile(np.eye(3), (len(SMPL_JOINTS), 1, 1))
    live: list[list[int]] = [[] for _ in SMPL_JOINTS]
    scale = self.preset.units_to_meters
    for j, kids in enumerate(self.targets):
      if not self.mapped[j] or SMPL_JOINTS[j] in self.preset.rotation_only:
        continue
      src = np.stack([positions[index[k]] - positions[index[j]]
                      for k in kids]) if kids else np.zeros((0, 3))
      live[j] = [k for k, v in zip(kids, src)
                 if np.linalg.norm(v) * scale > MIN_BONE_LENGTH]
      if not live[j]:
        continue
      src = np.stack([positions[index[k]] - positions[index[j]]
                      for k in live[j]])
      smpl = np.stack([rest_joints[k] - rest_joints[j] for k in live[j]])
      swings[j] = _align(smpl, src, np.linalg.norm(src, axis=-1))
    return swings, live

  def fit_shape(self, index: np.ndarray, frames: np.ndarray,
                positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """β (16,) and the pelvis offset t (3,) by linear least squares."""
    scale = self.preset.units_to_meters
    betas = np.zeros(self.shape_basis.shape[0])
    offset = np.zeros(3)
    mapped = np.flatnonzero(self.mapped)
    for _ in range(2):
      rest = self.mean_joints + np.einsum("b,bjc->jc", betas,
                                          self.shape_basis)
      swings, _ = self._alignments(rest, index, frames, positions)
      target = np.zeros((len(SMPL_JOINTS), 3))
      for j, kids in enumerate(self.targets):
        for k in kids:
          target[k] = target[j] + scale * swings[j] @ (
              positions[index[k]] - positions[index[j]])
      num_betas = self.shape_basis.shape[0]
      rows = len(mapped) * 3
      a = np.zeros((rows + num_betas, num_betas + 3))
      b = np.zeros(rows + num_betas)
      for i, j in enumerate(mapped):
        a[3 * i:3 * i + 3, :num_betas] = self.shape_basis[:, j, :].T
        a[3 * i:3 * i + 3, num_betas:] = np.eye(3)
        b[3 * i:3 * i + 3] = target[j] - self.mean_joints[j]
      a[rows:, :num_betas] = np.sqrt(SHAPE_REGULARIZATION) * np.eye(num_betas)
      solution = np.linalg.lstsq(a, b, rcond=None)[0]
      betas, offset = solution[:num_betas], solution[num_betas:]
    return betas, offset

  def _fit(self, skel: bvh.BvhSkeleton, index: np.ndarray):
    """Rest alignment and shape of a skeleton (cached: files of one dataset
    usually share their skeleton)."""
    key = (skel.names, skel.parents, skel.offsets.tobytes())
    if key not in self._cache:
      frames, positions = self.rest_pose(skel)
      betas, offset = self.fit_shape(index, frames, positions)
      rest = self.mean_joints + np.einsum("b,bjc->jc", betas,
                                          self.shape_basis)
      swings, live = self._alignments(rest, index, frames, positions)
      if len(self._cache) > 64:
        self._cache.clear()
      self._cache[key] = (frames, betas, offset, rest, swings, live)
    return self._cache[key]

  def __call__(self, motion: bvh.BvhMotion) -> Retargeted:
    """Retargets one parsed file.

    Raises:
      PresetError: the preset does not fit the file.
      ValueError: too few frames, or a non-finite result.
    """
    source = motion.source
    index = self.check(motion.skeleton, source)
    skip = self.preset.skip_frames
    if motion.num_frames - skip < 2:
      raise ValueError(
          f"{source}: {motion.num_frames} frames, {skip} skipped by preset "
          f"{self.preset.name!r}; at least 2 are needed")
    motion = dataclasses.replace(motion, values=motion.values[skip:])
    src_rot, src_pos = bvh.forward_kinematics(motion)
    src_rot = np.einsum("ab,fjbc->fjac", self.world_from_source, src_rot)
    src_pos = self.preset.units_to_meters * np.einsum(
        "ab,fjb->fja", self.world_from_source, src_pos)
    frames, betas, offset, rest, swings, live = self._fit(motion.skeleton,
                                                          index)

    num_frames = motion.num_frames
    glob = np.empty((num_frames, len(SMPL_JOINTS), 3, 3))
    for j in range(len(SMPL_JOINTS)):
      if not self.mapped[j]:
        glob[:, j] = glob[:, skeleton.PARENTS[j]]
        continue
      # Source frame carried over: G̃ = R_src · Q_jᵀ, Q_j = W_j·(T-pose frame).
      carried = src_rot[:, index[j]] @ (swings[j] @ frames[index[j]]).T
      if live[j]:
        predicted = np.einsum("fab,kb->fka", carried,
                              np.stack([rest[k] - rest[j] for k in live[j]]))
        actual = np.stack([src_pos[:, index[k]] - src_pos[:, index[j]]
                           for k in live[j]], axis=1)
        weights = np.array([np.linalg.norm(rest[k] - rest[j])
                            for k in live[j]])
        carried = _align(actual, predicted, weights) @ carried
      glob[:, j] = carried

    parents = np.asarray(skeleton.PARENTS)
    local = np.einsum("fjba,fjbc->fjac", glob[:, parents[1:]], glob[:, 1:])
    root_pos = src_pos[:, index[0]] + glob[:, 0] @ offset
    joints = np.empty((num_frames, len(SMPL_JOINTS), 3))
    joints[:, 0] = root_pos
    for j in range(1, len(SMPL_JOINTS)):
      p = parents[j]
      joints[:, j] = joints[:, p] + glob[:, p] @ (rest[j] - rest[p])
    source_joints = np.full_like(joints, np.nan)
    source_joints[:, self.mapped] = src_pos[:, index[self.mapped]]
    joint_errors = np.full(len(SMPL_JOINTS), np.nan)
    joint_errors[self.mapped] = np.mean(np.linalg.norm(
        joints[:, self.mapped] - source_joints[:, self.mapped], axis=-1),
                                        axis=0)
    T_world_root = np.concatenate([matrix_to_wxyz(glob[:, 0]), root_pos],
                                  axis=-1)
    body_quats = matrix_to_wxyz(local)
    if not (np.all(np.isfinite(T_world_root)) and
            np.all(np.isfinite(body_quats))):
      raise ValueError(f"{source}: retargeting produced non-finite values")
    return Retargeted(
        betas=betas, T_world_root=T_world_root, body_quats=body_quats,
        joints=joints, source_joints=source_joints, fps=motion.fps,
        mean_error=float(np.nanmean(joint_errors)),
        joint_errors=joint_errors)


# ----------------------------------------------------------------------------
# Files → records.


def clip_name(relative: str) -> str:
  """Record name of an input file: its relative path without .bvh[.gz]."""
  for suffix in (".gz", ".bvh", ".BVH"):
    if relative.endswith(suffix):
      relative = relative[:-len(suffix)]
  return relative


def records_from_retargeted(
    body: body_model.BodyModel, result: Retargeted, *, name: str,
    source: str, split: str, mirror: bool = False, fps: float = 30.0,
) -> list[records.SequenceRecord]:
  """Floor and contacts at the source rate, resampling, then records.

  Args:
    body: the body model the motion was retargeted to.
    result: the retargeted clip.
    name: record name (the mirrored copy gets "_mirror" appended).
    source, split: provenance.
    mirror: also return the left/right mirrored copy.
    fps: output frame rate.

  Returns:
    One record, or two with `mirror`.
  """
  floor_z = records.estimate_floor(result.joints, result.fps)
  contacts = records.contact_labels(result.joints, result.fps, floor_z)
  root, quats, _, contacts = resample.resample_motion(
      result.fps, fps, result.T_world_root, result.body_quats,
      contacts=contacts)
  if root.shape[0] < 2:
    raise ValueError(f"{name}: {result.joints.shape[0]} frames at "
                     f"{result.fps:g} fps give fewer than 2 frames at {fps:g}")
  variants = [(name, root, quats, contacts)]
  if mirror:
    m_root, m_quats, _, m_contacts = mirror_lib.mirror_motion(
        root, quats, contacts=contacts)
    variants.append((name + "_mirror", m_root, m_quats, m_contacts))
  return [records.from_motion(
      body, result.betas, r, q, fps=fps, name=n, source=source, split=split,
      contacts=c, floor_z=floor_z) for n, r, q, c in variants]


def iter_records(
    inputs: str | list[str] | None,
    preset: Preset | str,
    body: body_model.BodyModel | None = None,
    *,
    file_list: str | None = None,
    split_rule: str | None = None,
    skip_bad: bool = False,
    mirror: bool = False,
    report: batch_import.ImportReport | None = None,
):
  """Records from BVH files (`.bvh` or `.bvh.gz`), one per file.

  Args:
    inputs: files, folders or globs (see `batch_import.find_inputs`).
    preset: a `Preset`, a shipped preset name or a preset JSON path.
    body: target body (default: the built-in body).
    file_list: optional list of files to read.
    split_rule: `--split_rule` text; default the preset's rule, else all
      train.
    skip_bad: skip (and report) files that fail instead of stopping.
    mirror: also yield mirrored copies.
    report: collects skipped files and each file's retargeting error
      (`notes[name]["error_m"]`).

  Yields:
    `SequenceRecord`s at 30 fps, source "bvh:<preset>".
  """
  if not isinstance(preset, Preset):
    preset = load_preset(preset)
  body = body_model.builtin_body() if body is None else body
  report = batch_import.ImportReport() if report is None else report
  rule = splits.rule_or_default(split_rule, preset.split_rule)
  retargeter = Retargeter(preset, body)
  files = batch_import.find_inputs(inputs, (".bvh", ".bvh.gz", ".BVH"),
                                   file_list)

  def process(item: batch_import.InputFile):
    split = rule.split_of(item.relative)
    if split == splits.SKIP:
      report.excluded.append(item.relative)
      return []
    result = retargeter(bvh.read_bvh(item.path))
    name = clip_name(item.relative)
    report.notes[name] = {"error_m": result.mean_error,
                          "frames": int(result.joints.shape[0]),
                          "fps": result.fps}
    return records_from_retargeted(
        body, result, name=name, source=f"bvh:{preset.name}", split=split,
        mirror=mirror)

  yield from batch_import.guarded(files, process, lambda f: f.path,
                                  skip_bad=skip_bad, report=report)


def records_from_options(options: batch_import.ImportOptions):
  """`build_dataset --source=bvh`: --input, --preset, --file_list,
  --split_rule, --skip_bad, --mirror, --smplh_npz (optional target body).

  Prints the retargeting error per file (mean, worst) and the skipped files
  when the iteration ends.
  """
  if not options.preset:
    raise ValueError(f"--source=bvh needs --preset (one of "
                     f"{available_presets()} or a JSON file)")
  preset = load_preset(options.preset)
  body = (body_model.builtin_body() if not options.smplh_npz
          else smplh.load_smplh(options.smplh_npz))
  report = batch_import.ImportReport()
  yield from iter_records(
      options.input, preset, body, file_list=options.file_list,
      split_rule=options.split_rule, skip_bad=options.skip_bad,
      mirror=options.mirror, report=report)
  errors = np.array([n["error_m"] for n in report.notes.values()])
  if errors.size:
    worst = max(report.notes, key=lambda k: report.notes[k]["error_m"])
    print(f"retargeting error ({preset.name}): mean {errors.mean() * 100:.2f} "
          f"cm over {errors.size} files, median {np.median(errors) * 100:.2f}"
          f" cm, worst {errors.max() * 100:.2f} cm ({worst})", flush=True)
  print(report.summary(), flush=True)
