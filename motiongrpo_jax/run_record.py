"""What every run records in its workdir: resolved config, git commit and
diff, its JSON summaries and arrays."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
from typing import Any

import jax
import ml_collections
import numpy as np

_REPO = pathlib.Path(__file__).resolve().parents[1]


def _git(*args: str) -> str | None:
  try:
    return subprocess.run(
        ["git", *args], cwd=_REPO, capture_output=True, text=True, check=True,
        timeout=30).stdout
  except (OSError, subprocess.SubprocessError):
    return None  # Not a git checkout (e.g. an installed wheel).


def write(workdir: str | pathlib.Path, config: ml_collections.ConfigDict) -> None:
  """Writes `config.json`, `git_commit.txt` and `git_diff.patch` (process 0)."""
  if jax.process_index() != 0:
    return
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  tmp = workdir / "config.json.tmp"
  tmp.write_text(config.to_json_best_effort(indent=2, sort_keys=True) + "\n")
  tmp.replace(workdir / "config.json")
  commit = _git("rev-parse", "HEAD")
  if commit is not None:
    (workdir / "git_commit.txt").write_text(commit)
    (workdir / "git_diff.patch").write_text(_git("diff", "HEAD") or "")


def write_json(path: str | pathlib.Path, values: dict[str, Any]) -> None:
  """Writes `values` as JSON atomically (process 0 only)."""
  if jax.process_index() != 0:
    return
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_suffix(path.suffix + ".tmp")
  tmp.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")
  tmp.replace(path)


def write_npz(path: str | os.PathLike, arrays: dict[str, Any]) -> None:
  """Writes arrays as an npz atomically (a temporary file, then a rename;
  process 0 only)."""
  if jax.process_index() != 0:
    return
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.name}.tmp")
  with open(tmp, "wb") as f:
    np.savez(f, **arrays)
  os.replace(tmp, path)
