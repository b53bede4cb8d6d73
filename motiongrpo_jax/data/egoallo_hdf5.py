"""EgoAllo's processed training HDF5 → records, as they are.

For users who already ran EgoAllo's preprocessing
(`0b_preprocess_training_data.py`): one HDF5 group per sequence, named by its
path under the processed AMASS folder (e.g.
`ACCAD/Female1General_c3d/A1 - Stand_poses.npz`; mirrored copies end in
`_reflect.npz`), listed in a text file (`--file_list`), holding float32
datasets

  T_world_root (T, 7), contacts (T, 21), betas (1, 16), body_quats (T, 21, 4),
  T_cpf_tm1_cpf_t (T, 7), T_world_cpf (T, 7), height_from_floor (T, 1),
  joints_wrt_cpf (T, 21, 3), hand_quats (T, 30, 4) (optional).

These are EgoAllo's own derived values (SMPL-H, first frame already dropped,
floor at z = 0, 30 fps), so they are imported unchanged, not recomputed; each
record is validated. Splits come from the group names with the same rule as
AMASS (EgoAllo's subsets by default). `--mirror` is not offered: EgoAllo's
file already holds its reflected copies (exclude them with a split rule such
as `*_reflect.npz=skip`).
"""

from __future__ import annotations

import os

import numpy as np

from motiongrpo_jax.data import batch_import
from motiongrpo_jax.data import records
from motiongrpo_jax.data import splits

FIELDS = ("T_world_root", "contacts", "betas", "body_quats",
          "T_cpf_tm1_cpf_t", "T_world_cpf", "height_from_floor",
          "joints_wrt_cpf")
OPTIONAL_FIELDS = ("hand_quats",)


def _h5py():
  try:
    import h5py  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ValueError("--source=egoallo_hdf5 needs the h5py package "
                     "(pip install h5py)") from e
  return h5py


def list_groups(path: str | os.PathLike) -> list[str]:
  """Names of every group in the file that holds a sequence."""
  h5py = _h5py()
  names = []

  def visit(name, obj):
    if isinstance(obj, h5py.Group) and "T_world_root" in obj:
      names.append(name)

  with h5py.File(path, "r") as f:
    f.visititems(visit)
  return sorted(names)


def read_group(h5file, path: str, group: str, *, split: str,
               source: str = "egoallo_hdf5") -> records.SequenceRecord:
  """One group as a validated record.

  Raises:
    ValueError: naming the file, the group and the missing or bad dataset.
  """
  where = f"{path}: group {group!r}"
  if group not in h5file:
    raise ValueError(f"{where}: not in the file")
  g = h5file[group]
  missing = [k for k in FIELDS if k not in g]
  if missing:
    raise ValueError(f"{where}: missing datasets {missing} (expected "
                     f"{list(FIELDS)} and optionally {list(OPTIONAL_FIELDS)})")
  arrays = {k: np.asarray(g[k][()], np.float32) for k in FIELDS}
  arrays["hand_quats"] = (np.asarray(g["hand_quats"][()], np.float32)
                          if "hand_quats" in g else None)
  betas = arrays["betas"]
  if betas.shape not in ((1, 16), (16,)):
    raise ValueError(f"{where}: 'betas' has shape {betas.shape}, expected "
                     "(1, 16)")
  arrays["betas"] = betas.reshape(16)
  record = records.SequenceRecord(
      **arrays, name=group.lstrip("/"), source=source, fps=30.0, split=split)
  try:
    return records.validate(record)
  except ValueError as e:
    raise ValueError(f"{where}: {e}") from e


def iter_records(
    path: str | os.PathLike,
    *,
    file_list: str | None = None,
    split_rule: str | None = None,
    skip_bad: bool = False,
    report: batch_import.ImportReport | None = None,
):
  """Records from an EgoAllo HDF5 file.

  Args:
    path: the `.hdf5` file.
    file_list: text file of group names, one per line (EgoAllo writes it
      beside the HDF5); default every sequence group in the file.
    split_rule: `--split_rule` text (default EgoAllo's AMASS subsets).
    skip_bad: skip (and report) bad groups instead of failing.
    report: filled with skipped and excluded groups.

  Yields:
    `SequenceRecord`s.

  Raises:
    ValueError / OSError: unreadable file or list, or (without skip_bad) a
      bad group, naming it.
  """
  h5py = _h5py()
  path = os.fspath(path)
  report = batch_import.ImportReport() if report is None else report
  rule = splits.rule_or_default(split_rule, splits.amass_default_rule())
  if file_list:
    try:
      lines = open(file_list, encoding="utf-8").read().splitlines()
    except OSError as e:
      raise ValueError(f"--file_list: cannot read {file_list} ({e})") from e
    groups = [line.strip() for line in lines if line.strip()]
  else:
    groups = list_groups(path)
  if not groups:
    raise ValueError(f"{path}: no sequence groups (groups with T_world_root)")
  try:
    h5file = h5py.File(path, "r")
  except OSError as e:
    raise ValueError(f"{path}: cannot open as HDF5 ({e})") from e
  with h5file:

    def process(group: str):
      split = rule.split_of(group.lstrip("/"))
      if split == splits.SKIP:
        report.excluded.append(group)
        return []
      return [read_group(h5file, path, group, split=split)]

    yield from batch_import.guarded(groups, process,
                                    lambda g: f"{path}:{g}",
                                    skip_bad=skip_bad, report=report)


def records_from_options(options: batch_import.ImportOptions):
  """`build_dataset --source=egoallo_hdf5 --input=FILE.hdf5
  [--file_list=FILE.txt --split_rule --skip_bad]`."""
  if not options.input:
    raise ValueError("--source=egoallo_hdf5 needs --input=FILE.hdf5")
  if options.mirror:
    raise ValueError("--mirror is not supported with --source=egoallo_hdf5: "
                     "EgoAllo's file already holds its reflected copies "
                     "(*_reflect.npz groups)")
  report = batch_import.ImportReport()
  yield from iter_records(options.input, file_list=options.file_list,
                          split_rule=options.split_rule,
                          skip_bad=options.skip_bad, report=report)
  print(report.summary(), flush=True)
