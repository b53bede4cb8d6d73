"""AMASS `.npz` sequences → records, processed as EgoAllo processes them.

An AMASS file (SMPL-H release) holds `poses (N, 156)` axis-angle (root 3,
body 21·3, hands 30·3), `trans (N, 3)`, `betas` (the first 16 are used),
`gender` and `mocap_framerate`. EgoAllo's preprocessing (after HuMoR,
`0a_preprocess_training_data.py`), reproduced here:

1. frame rate from `mocap_framerate`, corrected where AMASS mislabels it
   (BMLhandball: 240; the two KIT recordings 20160930_50032 and
   20161014_50033: 59);
2. keep the middle 80 % of the frames (`int(0.1 N):int(0.9 N)`); drop the
   sequence if fewer than 1 s remain;
3. forward kinematics at the source rate; `T_world_root` is the pelvis
   joint (trans + the shaped rest pelvis), not `trans`;
4. floor and contact labels at the source rate (`records.estimate_floor`,
   `records.contact_labels`);
5. drop the first and last frame (EgoAllo's central-difference velocities
   do), then downsample to 30 fps by index (`linspace(0, n−1, int(n·30/fps))`
   truncated, as EgoAllo);
6. `records.from_motion`, which drops one more leading frame for the
   relative CPF motion.

Betas are used as stored with the given SMPL-H model. EgoAllo maps
gender-specific betas to the neutral model with its own conversion
matrices; here gender-specific betas may be used as they are with a neutral
model (the skeleton then differs slightly from the subject's).

Mirrored copies (`--mirror`, off by default): EgoAllo writes a reflected copy
of every sequence in every split; with the flag each record gets a
`<name>_mirror` twin (`data.mirror`; contacts and floor carried over).

Splits by subset folder, EgoAllo's lists by default (`splits`).
"""

from __future__ import annotations

import os
import zipfile

import jax.numpy as jnp
import numpy as np
from scipy.spatial.transform import Rotation

from motiongrpo_jax.body import model as body_model
from motiongrpo_jax.body import smplh
from motiongrpo_jax.data import batch_import
from motiongrpo_jax.data import mirror as mirror_lib
from motiongrpo_jax.data import records
from motiongrpo_jax.data import splits

REQUIRED_KEYS = ("poses", "trans", "betas", "mocap_framerate")
POSE_DIMS = 156  # root 3 + body 63 + hands 90
KEEP_FRACTION = (0.1, 0.9)
MIN_SECONDS = 1.0
OUTPUT_FPS = 30.0
# AMASS files whose stored frame rate is wrong (EgoAllo / HuMoR).
FPS_FIXES = (("BMLhandball", 240.0), ("20160930_50032", 59.0),
             ("20161014_50033", 59.0))


def read_amass_npz(path: str | os.PathLike) -> dict[str, np.ndarray | float
                                                     | str]:
  """Reads and checks one AMASS file.

  Args:
    path: the `.npz`.

  Returns:
    dict with `poses (N, 156)`, `trans (N, 3)`, `betas (16,)` (zero-padded
    when fewer are stored), `fps` (float, corrected per `FPS_FIXES`) and
    `gender` (str, "" when absent).

  Raises:
    ValueError: naming the file and every missing or mis-shaped key, or
      non-finite values.
  """
  path = os.fspath(path)
  try:
    with np.load(path, allow_pickle=False) as npz:
      data = {k: npz[k] for k in npz.files if k in REQUIRED_KEYS + ("gender",)}
  except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
    raise ValueError(f"{path}: not a readable AMASS .npz ({e})") from e
  missing = [k for k in REQUIRED_KEYS if k not in data]
  if missing:
    raise ValueError(f"{path}: missing keys {missing} (an AMASS SMPL-H file "
                     f"has {list(REQUIRED_KEYS) + ['gender']})")
  poses = np.asarray(data["poses"], np.float64)
  trans = np.asarray(data["trans"], np.float64)
  betas = np.asarray(data["betas"], np.float64).reshape(-1)
  problems = []
  if poses.ndim != 2 or poses.shape[1] != POSE_DIMS:
    problems.append(f"'poses' has shape {poses.shape}, expected (N, "
                    f"{POSE_DIMS}) (SMPL-H: root 3, body 63, hands 90)")
  if trans.ndim != 2 or trans.shape[1] != 3 or (
      poses.ndim == 2 and trans.shape[0] != poses.shape[0]):
    problems.append(f"'trans' has shape {trans.shape}, expected (N, 3) with "
                    f"N = {poses.shape[0] if poses.ndim else '?'}")
  if betas.size == 0:
    problems.append("'betas' is empty")
  fps_array = np.asarray(data["mocap_framerate"], np.float64)
  if fps_array.size != 1 or not (np.isfinite(fps_array).all()
                                 and float(fps_array.reshape(-1)[0]) > 0):
    problems.append(f"'mocap_framerate' must be one positive number, got "
                    f"{fps_array!r}")
  if problems:
    raise ValueError(f"{path}: " + "; ".join(problems))
  for key, value in (("poses", poses), ("trans", trans), ("betas", betas)):
    if not np.all(np.isfinite(value)):
      raise ValueError(f"{path}: '{key}' has "
                       f"{int(np.size(value) - np.isfinite(value).sum())} "
                       "non-finite values")
  fps = float(fps_array.reshape(-1)[0])
  for marker, fixed in FPS_FIXES:
    if marker in path:
      fps = fixed
  gender = data.get("gender", "")
  gender = np.asarray(gender).reshape(-1)[0] if np.size(gender) else ""
  gender = gender.decode() if isinstance(gender, bytes) else str(gender)
  num_betas = body_model.NUM_BETAS
  betas = np.concatenate([betas, np.zeros(num_betas)])[:num_betas]
  return {"poses": poses, "trans": trans, "betas": betas, "fps": fps,
          "gender": gender}


def _axis_angle_to_wxyz(axis_angle: np.ndarray) -> np.ndarray:
  shape = axis_angle.shape[:-1]
  xyzw = Rotation.from_rotvec(axis_angle.reshape(-1, 3)).as_quat()
  return np.roll(xyzw, 1, axis=-1).reshape(shape + (4,))


def rest_pelvis(body: body_model.BodyModel, betas: np.ndarray) -> np.ndarray:
  """Shaped rest pelvis in the model's own coordinates (SMPL's root joint
  offset that `trans` is added to); zero for bodies without vertices."""
  if isinstance(body, smplh.SmplhBody):
    verts = body.vertices_rest(jnp.asarray(betas, jnp.float32))
    return np.asarray(body.J_regressor[0] @ verts, np.float64)
  return np.zeros(3)


def sequence_records(
    body: body_model.BodyModel, data: dict, *, name: str, split: str,
    mirror: bool = False, source: str = "amass",
) -> list[records.SequenceRecord]:
  """EgoAllo's processing of one AMASS sequence (see the module docstring).

  Args:
    body: the SMPL-H body (any body with hands works; the built-in one
      ignores hands).
    data: from `read_amass_npz`.
    name: record name.
    split: its split.
    mirror: also return the mirrored copy.
    source: provenance tag.

  Returns:
    [] when fewer than 1 s remains, else one record (two with `mirror`).
  """
  fps = data["fps"]
  num = data["poses"].shape[0]
  start, stop = int(KEEP_FRACTION[0] * num), int(KEEP_FRACTION[1] * num)
  if stop - start < MIN_SECONDS * fps:
    return []
  poses = data["poses"][start:stop]
  trans = data["trans"][start:stop]
  betas = data["betas"]
  root_quat = _axis_angle_to_wxyz(poses[:, :3])
  body_quats = _axis_angle_to_wxyz(poses[:, 3:66].reshape(-1, 21, 3))
  hand_quats = _axis_angle_to_wxyz(poses[:, 66:].reshape(-1, 30, 3))
  # SMPL rotates the body about its rest pelvis: world pelvis = trans + J0.
  T_world_root = np.concatenate(
      [root_quat, trans + rest_pelvis(body, betas)], axis=-1)
  joints, _ = records.posed_joints_and_cpf(body, betas, T_world_root, body_quats)
  floor_z = records.estimate_floor(joints, fps)
  contacts = records.contact_labels(joints, fps, floor_z)
  # EgoAllo's velocity estimation drops the edge frames, then it
  # downsamples by index.
  keep = np.arange(1, len(joints) - 1)
  count = int(OUTPUT_FPS / fps * len(keep))
  if count < 2:
    return []
  keep = keep[np.linspace(0, len(keep) - 1, num=count).astype(int)]
  variants = [(name, T_world_root[keep], body_quats[keep], hand_quats[keep],
               contacts[keep])]
  if mirror:
    variants.append((name + "_mirror",) + mirror_lib.mirror_motion(
        T_world_root[keep], body_quats[keep], hand_quats[keep],
        contacts[keep]))
  return [records.from_motion(
      body, betas, root, quats, hands, fps=OUTPUT_FPS, name=n, source=source,
      split=split, contacts=labels, floor_z=floor_z)
          for n, root, quats, hands, labels in variants]


def record_name(relative: str) -> str:
  """Record name of an AMASS file: its path under the root, minus `.npz`."""
  return relative[:-4] if relative.endswith(".npz") else relative


def iter_records(
    root: str | list[str] | None,
    body: body_model.BodyModel,
    *,
    file_list: str | None = None,
    split_rule: str | None = None,
    skip_bad: bool = False,
    mirror: bool = False,
    report: batch_import.ImportReport | None = None,
):
  """Records from an AMASS folder (`SUBSET/.../*.npz`).

  Args:
    root: AMASS root folder (or files / globs).
    body: SMPL-H body model (`body.load_smplh`).
    file_list: optional list of files, relative to `root`.
    split_rule: `--split_rule` text (default EgoAllo's subsets; files of
      other subsets are left out).
    skip_bad: skip (and report) unreadable files instead of failing.
    mirror: also yield mirrored copies.
    report: filled with skipped / excluded inputs and, in `notes`,
      sequences dropped as shorter than 1 s.

  Yields:
    `SequenceRecord`s at 30 fps.
  """
  report = batch_import.ImportReport() if report is None else report
  rule = splits.rule_or_default(split_rule, splits.amass_default_rule())
  files = batch_import.find_inputs(root, (".npz",), file_list)

  def process(item: batch_import.InputFile):
    split = rule.split_of(item.relative)
    if split == splits.SKIP:
      report.excluded.append(item.relative)
      return []
    data = read_amass_npz(item.path)
    out = sequence_records(body, data, name=record_name(item.relative),
                           split=split, mirror=mirror)
    if not out:
      report.notes[item.relative] = {"dropped": "shorter than 1 s"}
    return out

  yield from batch_import.guarded(files, process, lambda f: f.path,
                                  skip_bad=skip_bad, report=report)


def records_from_options(options: batch_import.ImportOptions):
  """`build_dataset --source=amass --input=AMASS_ROOT --smplh_npz=PATH`
  [--file_list --split_rule --skip_bad --mirror]."""
  if not options.smplh_npz:
    raise ValueError("--source=amass needs --smplh_npz (the SMPL-H model.npz)")
  if not options.input and not options.file_list:
    raise ValueError("--source=amass needs --input=AMASS_ROOT")
  body = smplh.load_smplh(options.smplh_npz)
  report = batch_import.ImportReport()
  yield from iter_records(
      options.input, body, file_list=options.file_list,
      split_rule=options.split_rule, skip_bad=options.skip_bad,
      mirror=options.mirror, report=report)
  dropped = sum(1 for n in report.notes.values() if "dropped" in n)
  print(f"{dropped} sequences shorter than 1 s were dropped", flush=True)
  print(report.summary(), flush=True)
