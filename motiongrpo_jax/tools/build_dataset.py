"""Writes a motion dataset (TFDS `array_record`, train/val/test) from a source.

  python -m motiongrpo_jax.tools.build_dataset --source=synthetic \\
      --output_dir=DIR [--num_sequences=64 --seed=0] [--overwrite]

The dataset lands in `DIR/motion_sequences/1.0.0` and is read with
`data.tfds_builder.load_split(DIR, split)` or `data.pipeline`. Every record is
validated before anything is written; a failure leaves nothing behind.

Sources. `--source` names an entry of `SOURCES`, a function from the parsed
flags to an iterable of `SequenceRecord`s (each carrying its `split`). An
importer module joins the registry in one of two ways:

* define `records_from_options(options) -> Iterable[SequenceRecord]` in
  `motiongrpo_jax/data/<name>.py` for a name listed in `_IMPORTERS` below
  (amass, egoallo_hdf5, bvh → retarget are listed already; the module is imported only
  when its source is chosen), or
* call `register_source(name, fn)` from code that runs before `main`.

Importers read the shared flags defined here (`--input`, `--smplh_npz`,
`--file_list`, `--preset`, `--split_rule`, `--skip_bad`, `--mirror`); the
synthetic source uses `--num_sequences` and `--seed`.
"""

from __future__ import annotations

import dataclasses
import importlib
import time
from collections.abc import Callable, Iterable
from typing import Any

from absl import app
from absl import flags
from motiongrpo_jax import cli
from motiongrpo_jax.data import batch_import
from motiongrpo_jax.data import tfds_builder

_SOURCE = flags.DEFINE_string("source", "synthetic", "Record source: a key of SOURCES.")
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Data directory; the dataset goes to OUTPUT_DIR/motion_sequences/1.0.0.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing dataset.")
_NUM_SEQUENCES = flags.DEFINE_integer(
    "num_sequences", 64, "synthetic: number of sequences (all splits together).")
_SEED = flags.DEFINE_integer("seed", 0, "synthetic: random seed.")
# Flags of the importers (unused by synthetic); each importer documents its use.
flags.DEFINE_string(
    "input", None, "Importers: input file or folder (AMASS root, HDF5 file, BVH folder).")
flags.DEFINE_string("smplh_npz", None, "Importers: SMPL-H model .npz (body shape, skeleton).")
flags.DEFINE_string(
    "file_list", None, "Importers: text file listing the inputs to read, one per line.")
flags.DEFINE_string(
    "preset", None, "Importers: named preset of the source (e.g. a BVH dataset layout).")
flags.DEFINE_string("split_rule", None, "Importers: how sequences go to train/val/test.")
flags.DEFINE_bool(
    "skip_bad", False, "Importers: skip unreadable inputs (reported) instead of failing.")
flags.DEFINE_bool("mirror", False, "Importers: also add left-right mirrored copies.")

SourceFn = Callable[[flags.FlagValues], Iterable[Any]]


def _synthetic(flag_values: flags.FlagValues) -> Iterable[Any]:
  from motiongrpo_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  if flag_values.num_sequences <= 0:
    raise ValueError(f"--num_sequences must be positive, got {flag_values.num_sequences}")
  return synthetic.synthetic_records(num_sequences=flag_values.num_sequences,
                                     seed=flag_values.seed)


def _importer(module: str) -> SourceFn:
  """A source calling `records_from_options` of `module` (imported on use)
  with the importer flags as `data.batch_import.ImportOptions`."""

  def records(flag_values: flags.FlagValues) -> Iterable[Any]:
    try:
      fn = importlib.import_module(module).records_from_options
    except (ImportError, AttributeError) as e:
      raise ValueError(
          f"--source={flag_values.source} needs {module}.records_from_options, "
          f"which is not available ({e})") from e
    return fn(batch_import.ImportOptions(**{
        f.name: flag_values[f.name].value
        for f in dataclasses.fields(batch_import.ImportOptions)}))

  return records


# Importer modules providing `records_from_options(options)`.
_IMPORTERS = {
    "amass": "motiongrpo_jax.data.amass",
    "egoallo_hdf5": "motiongrpo_jax.data.egoallo_hdf5",
    "bvh": "motiongrpo_jax.data.retarget",
}

SOURCES: dict[str, SourceFn] = {"synthetic": _synthetic}
SOURCES.update({name: _importer(module) for name, module in _IMPORTERS.items()})


def register_source(name: str, fn: SourceFn) -> None:
  """Adds (or replaces) a `--source` entry."""
  SOURCES[name] = fn


class _Progress:
  """Prints a progress line at most once a second while records arrive."""

  def __init__(self):
    self._t0 = time.perf_counter()
    self._last = -1.0
    self._frames = 0
    self._splits: dict[str, int] = {}

  def __call__(self, i: int, record: Any) -> None:
    self._frames += record.num_frames
    self._splits[record.split] = self._splits.get(record.split, 0) + 1
    now = time.perf_counter() - self._t0
    if now - self._last >= 1.0:
      self._last = now
      splits = ", ".join(f"{k} {v}" for k, v in self._splits.items())
      print(f"  {i + 1} sequences ({splits}), {self._frames:,} frames, "
            f"{(i + 1) / max(now, 1e-9):.1f} seq/s", flush=True)


def summary_lines(summary: tfds_builder.BuildSummary) -> list[str]:
  """Human-readable lines describing a build."""
  lines = [f"wrote {summary.path}"]
  for split, counts in summary.splits.items():
    lines.append(f"  {split:5s} {counts['sequences']:6d} sequences "
                 f"{counts['frames']:9,d} frames ({counts['frames'] / 30 / 60:.1f} min at 30 fps)")
  seconds = max(summary.seconds, 1e-9)
  lines.append(f"  total {summary.sequences} sequences, {summary.frames:,} frames in "
               f"{summary.seconds:.1f} s ({summary.sequences / seconds:.1f} seq/s, "
               f"{summary.frames / seconds:,.0f} frames/s)")
  return lines


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not _OUTPUT_DIR.value:
    raise app.UsageError("--output_dir is required")
  if _SOURCE.value not in SOURCES:
    raise app.UsageError(f"--source={_SOURCE.value!r}: expected one of {sorted(SOURCES)}")
  source_fn = SOURCES[_SOURCE.value]
  print(f"building from --source={_SOURCE.value} into {_OUTPUT_DIR.value}", flush=True)
  summary = tfds_builder.build(lambda: source_fn(flags.FLAGS), _OUTPUT_DIR.value,
                               overwrite=_OVERWRITE.value, progress=_Progress())
  print("\n".join(summary_lines(summary)), flush=True)


if __name__ == "__main__":
  cli.run(main)
