"""Driving an importer over many input files.

Shared by the AMASS, EgoAllo-HDF5 and BVH importers:

- `find_inputs`: the files named by `--input` (a file, a folder searched
  recursively, a glob, or several of those comma-separated) or listed in
  `--file_list`, each with its name relative to the input root (used for
  split rules and record names).
- `ImportReport` + `guarded`: run one input's import; a failure either
  stops the build (default) with the error, which names the file, or, with
  `skip_bad`, is logged and listed in the report while the build goes on.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import pathlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

from absl import logging

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class InputFile:
  """One input: its path and its name relative to the input root (posix)."""

  path: str
  relative: str


def find_inputs(inputs: str | Sequence[str] | None, suffixes: Sequence[str],
                file_list: str | None = None) -> list[InputFile]:
  """Files to import, sorted by relative name.

  Args:
    inputs: a file, a folder (searched recursively for `suffixes`), a glob,
      or several of these (a sequence, or one comma-separated string).
    suffixes: accepted endings, e.g. (".bvh", ".bvh.gz").
    file_list: optional text file, one path per line (blank lines and lines
      starting with '#' ignored); relative paths are taken relative to the
      first folder in `inputs` if there is one, else to the list's folder.

  Returns:
    The files, without duplicates.

  Raises:
    FileNotFoundError: an input or listed file does not exist, or nothing
      matched.
  """
  if isinstance(inputs, str):
    inputs = [s for s in inputs.split(",") if s.strip()]
  inputs = list(inputs or [])
  found: dict[str, InputFile] = {}

  def add(path: str, root: str | None) -> None:
    path = os.path.normpath(path)
    rel = os.path.relpath(path, root) if root else os.path.basename(path)
    found.setdefault(path, InputFile(path, pathlib.PurePath(rel).as_posix()))

  roots = []
  for item in inputs:
    item = item.strip()
    if os.path.isdir(item):
      roots.append(item)
      if file_list is None:
        for dirpath, _, names in os.walk(item):
          for name in names:
            if name.endswith(tuple(suffixes)):
              add(os.path.join(dirpath, name), item)
    elif os.path.isfile(item):
      add(item, None)
    elif glob.has_magic(item):
      matches = sorted(glob.glob(item, recursive=True))
      if not matches:
        raise FileNotFoundError(f"--input: {item!r} matches no file")
      root = os.path.dirname(item.split("*")[0].split("?")[0].split("[")[0])
      for match in matches:
        if os.path.isfile(match):
          add(match, root or None)
    else:
      raise FileNotFoundError(f"--input: {item!r} does not exist")
  if file_list is not None:
    base = roots[0] if roots else os.path.dirname(file_list)
    try:
      lines = pathlib.Path(file_list).read_text().splitlines()
    except OSError as e:
      raise FileNotFoundError(f"--file_list: cannot read {file_list} ({e})"
                              ) from e
    for number, line in enumerate(lines, start=1):
      line = line.strip()
      if not line or line.startswith("#"):
        continue
      path = line if os.path.isabs(line) else os.path.join(base, line)
      if not os.path.isfile(path):
        raise FileNotFoundError(
            f"--file_list: {file_list}:{number}: {path} does not exist")
      add(path, base)
  if not found:
    raise FileNotFoundError(
        f"--input: no {'/'.join(suffixes)} files in {inputs or file_list}")
  return sorted(found.values(), key=lambda f: f.relative)


@dataclasses.dataclass(frozen=True)
class ImportOptions:
  """What an importer's `records_from_options` reads (`tools/build_dataset`
  fills it from its flags of the same names)."""
  # Input file or folder (AMASS root, HDF5 file, BVH folder).
  input: str | None = None
  # SMPL-H model.npz (body shape, skeleton; optional target body for BVH).
  smplh_npz: str | None = None
  # Text file listing the inputs to read, one per line.
  file_list: str | None = None
  # Named preset of the source (e.g. a BVH dataset layout).
  preset: str | None = None
  # How sequences go to train/val/test (`data/splits.py`).
  split_rule: str | None = None
  # Skip unreadable inputs (reported) instead of failing.
  skip_bad: bool = False
  # Also add left-right mirrored copies.
  mirror: bool = False


@dataclasses.dataclass
class ImportReport:
  """What an import did: per-input notes and the inputs skipped as bad.

  Attributes:
    imported: number of inputs that produced records.
    skipped: (input name, error message) of inputs skipped with skip_bad.
    excluded: inputs a split rule sent to "skip".
    notes: per-input measurements, e.g. retargeting error (name → dict).
  """

  imported: int = 0
  skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)
  excluded: list[str] = dataclasses.field(default_factory=list)
  notes: dict[str, dict] = dataclasses.field(default_factory=dict)

  def summary(self) -> str:
    """One line per skipped input after a count line."""
    lines = [f"imported {self.imported} inputs, skipped {len(self.skipped)} "
             f"bad inputs, excluded {len(self.excluded)} by the split rule"]
    lines += [f"  skipped: {message}" if name in message else
              f"  skipped {name}: {message}" for name, message in self.skipped]
    return "\n".join(lines)


# Errors that mean "this input is bad" (everything a reader raises for
# malformed content); anything else is a bug and always propagates.
BAD_INPUT_ERRORS = (ValueError, KeyError, OSError, EOFError)


def guarded(items: Iterable[T], process: Callable[[T], Iterable],
            name: Callable[[T], str], *, skip_bad: bool,
            report: ImportReport) -> Iterator:
  """Yields `process(item)`'s outputs for each item, handling bad inputs.

  An input's outputs are collected before any is yielded, so a failure never
  leaves part of one input in the dataset.

  Args:
    items: the inputs.
    process: item → iterable of outputs; raises one of `BAD_INPUT_ERRORS`
      (with a message naming the input) for bad input.
    name: item → name for the report.
    skip_bad: log and skip failing inputs instead of raising.
    report: filled in as inputs are processed.

  Yields:
    The outputs of the inputs that worked.
  """
  for item in items:
    try:
      outputs = list(process(item))
    except BAD_INPUT_ERRORS as e:
      message = str(e)
      if not skip_bad:
        raise
      logging.warning("skipping bad input %s: %s", name(item), message)
      print(f"skipping bad input {name(item)}: {message}", flush=True)
      report.skipped.append((name(item), message))
      continue
    report.imported += 1
    yield from outputs
