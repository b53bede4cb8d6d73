"""CSV files of Aria's MPS outputs: reading numeric columns, and the error
every Aria reader raises (`aria`, `aria_hands`, `aria_tools`)."""

from __future__ import annotations

import csv
import gzip
import io
import os

import numpy as np


class AriaError(ValueError):
  """Malformed or missing MPS input."""


def open_text(path: str | os.PathLike):
  """A text file, gzip detected by its magic bytes."""
  with open(path, "rb") as f:
    magic = f.read(2)
  if magic == b"\x1f\x8b":
    return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
  return open(path, encoding="utf-8", newline="")


def read_csv_columns(path: str | os.PathLike,
                     columns: tuple[str, ...]) -> np.ndarray:
  """Numeric columns of a CSV with a header row (gzip detected).

  Args:
    path: the file.
    columns: names to read.

  Returns:
    (N, len(columns)) float64.

  Raises:
    AriaError: unreadable file, missing columns (named), a bad or
      non-finite value (row and column named), or no rows.
  """
  path = os.fspath(path)
  try:
    with open_text(path) as f:
      reader = csv.reader(f)
      header = next(reader, None)
      if header is None:
        raise AriaError(f"{path}: empty file (expected a header row)")
      header = [h.strip() for h in header]
      missing = [c for c in columns if c not in header]
      if missing:
        raise AriaError(f"{path}: missing columns {missing} (has {header})")
      index = [header.index(c) for c in columns]
      rows = []
      for number, row in enumerate(reader, start=2):
        if not row:
          continue
        try:
          rows.append([float(row[i]) for i in index])
        except (ValueError, IndexError):
          raise AriaError(
              f"{path}: line {number}: bad or missing value in columns "
              f"{list(columns)}") from None
  except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError) as e:
    raise AriaError(f"{path}: cannot read ({e})") from e
  if not rows:
    raise AriaError(f"{path}: no data rows")
  values = np.asarray(rows, np.float64)
  bad = ~np.isfinite(values)
  if bad.any():
    row, col = np.argwhere(bad)[0]
    raise AriaError(f"{path}: {int(bad.sum())} non-finite values, first in "
                    f"column {columns[col]!r} of data row {row + 1}")
  return values


def read_csv_header(path: str | os.PathLike) -> list[str]:
  """The column names of a CSV (gzip detected); AriaError if unreadable."""
  try:
    with open_text(path) as f:
      header = next(csv.reader(f), None)
  except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError) as e:
    raise AriaError(f"{os.fspath(path)}: cannot read ({e})") from e
  return [h.strip() for h in header or []]
