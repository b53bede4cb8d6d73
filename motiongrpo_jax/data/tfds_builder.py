"""TFDS dataset of motion sequences stored as `array_record` (no TensorFlow).

`MotionSequences` is a `GeneratorBasedBuilder` with one example per
`SequenceRecord`, written to the splits named by `record.split` (train, val,
test; empty splits are left out). It takes its records from the caller (a
zero-argument callable returning an iterable, or an iterable), never from
TFDS's download manager, so any source can be written: synthetic motion,
AMASS, EgoAllo's HDF5, BVH. `build` writes a dataset atomically; `load_split`
opens a split for random access (grain reads it through `data/pipeline.py`).

On disk, under `output_dir`: `motion_sequences/1.0.0/` holding
`dataset_info.json`, `features.json`, `metadata.json` (per-split sequence
and frame counts, source) and `motion_sequences-{split}.array_record-*`.

Features of an example (T frames; every float is float32):

| feature | shape | notes |
|---|---|---|
| `betas` | (16,) | |
| `T_world_root`, `T_world_cpf`, `T_cpf_tm1_cpf_t` | (T, 7) | `wxyz_xyz` |
| `body_quats` | (T, 21, 4) | `wxyz` |
| `hand_quats` | (T, 30, 4) or (0, 30, 4) | empty when the record has none |
| `has_hands` | () bool | whether `hand_quats` is stored |
| `contacts` | (T, 21) | |
| `height_from_floor` | (T, 1) | |
| `joints_wrt_cpf` | (T, 21, 3) | |
| `num_frames` | () int32 | T |
| `name`, `source`, `split` | text | decoded as bytes |
| `fps` | () float32 | |

Hands are stored as an empty array rather than identity rotations, so
datasets without hands cost nothing for them; `data/pipeline.py` fills
identity rotations where `has_hands` is False.

Order: TFDS stores a split's examples in the order of a hash of their keys
(the record names), not in the order the source yielded them; index i of
`load_split` is stable for a given dataset and is what the pipeline reports
as `seq_index`.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import pickle
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from motiongrpo_jax.data import records as records_lib

NAME = "motion_sequences"
DATASET_VERSION = "1.0.0"
SPLITS = ("train", "val", "test")

# Per-frame float fields of a record (hands aside) and their per-frame shapes.
_J = records_lib.NUM_BODY_JOINTS
FRAME_FIELDS: dict[str, tuple[int, ...]] = {
    "T_world_root": (7,),
    "body_quats": (_J, 4),
    "contacts": (_J,),
    "T_world_cpf": (7,),
    "T_cpf_tm1_cpf_t": (7,),
    "height_from_floor": (1,),
    "joints_wrt_cpf": (_J, 3),
}
HAND_SHAPE = (records_lib.NUM_HAND_JOINTS, 4)
NUM_BETAS = records_lib.NUM_BETAS

RecordSource = Callable[[], Iterable[Any]] | Iterable[Any]


def _features() -> tfds.features.FeaturesDict:
  """The feature spec of one example (see the module docstring)."""
  tensor = lambda shape: tfds.features.Tensor(shape=shape, dtype=np.float32)
  spec = {"betas": tensor((NUM_BETAS,))}
  spec.update({k: tensor((None,) + s) for k, s in FRAME_FIELDS.items()})
  spec["hand_quats"] = tensor((None,) + HAND_SHAPE)
  spec["has_hands"] = tfds.features.Scalar(dtype=np.bool_)
  spec["num_frames"] = tfds.features.Scalar(dtype=np.int32)
  spec["fps"] = tfds.features.Scalar(dtype=np.float32)
  for key in ("name", "source", "split"):
    spec[key] = tfds.features.Text()
  return tfds.features.FeaturesDict(spec)


def example_from_record(record: records_lib.SequenceRecord) -> dict[str, Any]:
  """The TFDS example (numpy arrays, strings) of one `SequenceRecord`."""
  ex = records_lib.to_numpy_dict(record)
  ex["has_hands"] = "hand_quats" in ex
  if not ex["has_hands"]:
    ex["hand_quats"] = np.zeros((0,) + HAND_SHAPE, np.float32)
  ex["num_frames"] = record.num_frames
  ex["fps"] = float(ex["fps"])
  for key in ("name", "source", "split"):
    ex[key] = str(ex[key])
  return ex


def record_from_example(example: Mapping[str, Any]) -> records_lib.SequenceRecord:
  """The `SequenceRecord` of a decoded example (inverse of `example_from_record`)."""
  fields = {k: v for k, v in example.items() if k not in ("has_hands", "num_frames")}
  if not bool(example["has_hands"]):
    del fields["hand_quats"]
  return records_lib.from_numpy_dict(fields)


class MotionSequences(tfds.core.GeneratorBasedBuilder):
  """Motion sequences, one example per `SequenceRecord`, split by `record.split`.

  Build with `build(...)`, which constructs the builder with
  `records=<source>` and writes atomically; a builder constructed without
  records can only read an existing dataset.
  """

  VERSION = tfds.core.Version(DATASET_VERSION)
  RELEASE_NOTES = {DATASET_VERSION: "First format: EgoAllo record fields, hands optional."}

  def __init__(self, *, records: RecordSource | None = None,
               spool_dir: str | os.PathLike | None = None,
               progress: Callable[[int, Any], None] | None = None, **kwargs):
    """Makes a builder; `records` and `spool_dir` are needed only to build.

    Args:
      records: zero-argument callable returning an iterable of
        `SequenceRecord`, or such an iterable (consumed once).
      spool_dir: scratch folder where records are sorted into splits before
        writing; it needs about as much space as the dataset.
      progress: called as `progress(i, record)` after each validated record.
      **kwargs: `tfds.core.GeneratorBasedBuilder` arguments (`data_dir`,
        `file_format`, ...).
    """
    self._records = records
    self._spool_dir = None if spool_dir is None else pathlib.Path(spool_dir)
    self._progress = progress
    self.split_counts: dict[str, dict[str, int]] = {}
    super().__init__(**kwargs)

  # A local build reports through `progress` and `BuildSummary`; TFDS's
  # "Downloading and preparing … Unknown size" lines would only confuse.
  def _log_download_bytes(self) -> None:
    pass

  def _log_download_done(self) -> None:
    pass

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description="Human motion sequences (EgoAllo record fields, 30 fps).",
        features=_features(),
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Records come from the caller, never from downloads.
    if self._records is None or self._spool_dir is None:
      raise ValueError("MotionSequences needs records= and spool_dir= to build")
    spooled = _spool(self._records, self._spool_dir, self._progress)
    splits = [s for s in SPLITS if spooled.paths[s]]  # Empty splits left out.
    self.split_counts = {s: {"sequences": len(spooled.paths[s]),
                             "frames": spooled.frames[s]} for s in splits}
    self.info.metadata.update({"splits": self.split_counts,
                               "sources": sorted(spooled.sources)})
    return {s: self._generate_examples(spooled.paths[s]) for s in splits}

  def _generate_examples(self, paths):
    for path in paths:
      with open(path, "rb") as f:
        example = pickle.load(f)
      yield example["name"], example


@dataclasses.dataclass
class _Spooled:
  """Records sorted into per-split scratch files."""
  paths: dict[str, list[pathlib.Path]]
  frames: dict[str, int]
  sources: set[str]


def _spool(source: RecordSource, spool_dir: pathlib.Path,
           progress: Callable[[int, Any], None] | None) -> _Spooled:
  """Validates every record and sorts it into per-split scratch files.

  Records arrive in any split order and are read once, so a source that is
  expensive to import is not read once per split.
  """
  records = source() if callable(source) else source
  spooled = _Spooled({s: [] for s in SPLITS}, {s: 0 for s in SPLITS}, set())
  names: dict[str, int] = {}
  for i, record in enumerate(records):
    name = getattr(record, "name", f"#{i}")
    try:
      records_lib.validate(record)
    except Exception as e:  # Re-raised naming the record that failed.
      raise ValueError(f"record {i} ({name!r}) is invalid: {e}") from e
    if record.split not in SPLITS:
      raise ValueError(
          f"record {i} ({name!r}): split {record.split!r} is not one of {SPLITS}")
    if name in names:
      raise ValueError(
          f"record {i}: name {name!r} repeats record {names[name]}; names must be unique")
    names[name] = i
    example = example_from_record(record)
    path = spool_dir / record.split / f"{i:08d}.pkl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
      pickle.dump(example, f, protocol=pickle.HIGHEST_PROTOCOL)
    spooled.paths[record.split].append(path)
    spooled.frames[record.split] += example["num_frames"]
    spooled.sources.add(example["source"])
    if progress is not None:
      progress(i, record)
  if not names:
    raise ValueError("the record source yielded no records")
  return spooled


@dataclasses.dataclass(frozen=True)
class BuildSummary:
  """What `build` wrote.

  Attributes:
    path: the dataset folder `output_dir/motion_sequences/1.0.0`.
    splits: {split: {"sequences": n, "frames": frames}} for written splits.
    seconds: wall time of the build.
  """
  path: pathlib.Path
  splits: dict[str, dict[str, int]]
  seconds: float

  @property
  def sequences(self) -> int:
    return sum(v["sequences"] for v in self.splits.values())

  @property
  def frames(self) -> int:
    return sum(v["frames"] for v in self.splits.values())


def build(
    records: RecordSource,
    output_dir: str | os.PathLike,
    *,
    overwrite: bool = False,
    progress: Callable[[int, Any], None] | None = None,
) -> BuildSummary:
  """Validates and writes records as a TFDS `array_record` dataset, atomically.

  Everything is built inside a scratch folder in `output_dir` and renamed
  into place at the end; on any error the scratch folder is removed (and the
  folders this call created, if empty), so nothing half-written is left.

  Args:
    records: zero-argument callable returning an iterable of
      `SequenceRecord`, or such an iterable. Every record is checked with
      `records.validate`; names must be unique; `split` in train/val/test.
    output_dir: the data directory; the dataset goes to
      `output_dir/motion_sequences/1.0.0`.
    overwrite: replace an existing dataset there (otherwise an error).
    progress: called as `progress(i, record)` after each validated record.

  Returns:
    A `BuildSummary`.
  """
  t0 = time.perf_counter()
  output_dir = pathlib.Path(output_dir)
  final = output_dir / NAME / DATASET_VERSION
  if final.exists() and not overwrite:
    raise FileExistsError(
        f"dataset already exists at {final} (pass overwrite to replace it)")
  # Folders this call creates (outermost first), removed again on failure.
  created = [p for p in reversed([output_dir / NAME, output_dir, *output_dir.parents])
             if not p.exists()]
  output_dir.mkdir(parents=True, exist_ok=True)
  scratch = pathlib.Path(tempfile.mkdtemp(prefix=".build-", dir=output_dir))
  tfds.disable_progress_bar()  # Records are counted by `progress` instead.
  try:
    builder = MotionSequences(
        records=records, spool_dir=scratch / "spool", progress=progress,
        data_dir=os.fspath(scratch / "data"), file_format="array_record")
    builder.download_and_prepare(download_dir=os.fspath(scratch / "downloads"))
    built = pathlib.Path(builder.data_dir)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():  # overwrite: move the old one aside, then drop it.
      final.rename(scratch / "replaced")
    built.rename(final)
  except BaseException:
    shutil.rmtree(scratch, ignore_errors=True)
    for path in reversed(created):
      if path.exists() and not any(path.iterdir()):
        path.rmdir()
    raise
  shutil.rmtree(scratch, ignore_errors=True)
  return BuildSummary(final, builder.split_counts, time.perf_counter() - t0)


def dataset_dir(data_dir: str | os.PathLike) -> pathlib.Path:
  """The dataset folder: `data_dir` itself or `data_dir/motion_sequences/1.0.0`."""
  path = pathlib.Path(data_dir)
  for candidate in (path, path / DATASET_VERSION, path / NAME / DATASET_VERSION):
    if (candidate / "dataset_info.json").exists():
      return candidate
  raise FileNotFoundError(
      f"no motion dataset under {path}: expected "
      f"{path / NAME / DATASET_VERSION}/dataset_info.json "
      "(write one with `python -m motiongrpo_jax.tools.build_dataset`)")


def load_split(data_dir: str | os.PathLike, split: str):
  """Opens one split for random access (no TensorFlow needed).

  Args:
    data_dir: the `--output_dir` given to `build_dataset`, or the dataset
      folder itself.
    split: "train", "val" or "test".

  Returns:
    A random-access data source (`len`, `[i]` -> decoded example dict as in
    the module docstring; text as bytes), usable by grain.
  """
  builder = tfds.builder_from_directory(os.fspath(dataset_dir(data_dir)))
  available = list(builder.info.splits.keys())
  if split not in available:
    raise ValueError(f"split {split!r} not in the dataset at {builder.data_dir}; "
                     f"it has {available}")
  return builder.as_data_source(split=split)


def metadata(data_dir: str | os.PathLike) -> dict[str, Any]:
  """The build metadata (per-split counts, sources) of a dataset."""
  builder = tfds.builder_from_directory(os.fspath(dataset_dir(data_dir)))
  return dict(builder.info.metadata or {})
