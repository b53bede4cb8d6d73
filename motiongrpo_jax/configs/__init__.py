"""One config file per mode, `get_config(variant)` (as big_vision keeps them):
`--config=configs/<mode>.py[:variant]` finds them from any directory, in a
source checkout and in an installed package alike (`resolve_flag`)."""

from __future__ import annotations

import importlib
import pathlib

import ml_collections

DIRECTORY = pathlib.Path(__file__).parent


def get(name: str, variant: str) -> ml_collections.ConfigDict:
  """`configs/<name>.py`'s `get_config(variant)` (the demo's bootstrap and the
  benchmarks build their runs from these)."""
  return importlib.import_module(f"{__name__}.{name}").get_config(variant)


def resolve_flag(argv: list[str]) -> list[str]:
  """`argv` with `--config=configs/<name>.py[:variant]` pointing at this
  package's file when no such file exists from the working directory (an
  installed package, or a run from outside the checkout)."""
  out = []
  for arg in argv:
    if arg.startswith("--config="):
      path, sep, variant = arg[len("--config="):].partition(":")
      packaged = DIRECTORY / pathlib.Path(path).name
      if (not pathlib.Path(path).exists()
          and pathlib.Path(path).parent.name == "configs" and packaged.is_file()):
        arg = f"--config={packaged}{sep}{variant}"
    out.append(arg)
  return out
