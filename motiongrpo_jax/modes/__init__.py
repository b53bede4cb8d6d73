"""Modes: each is a module with `run(config, workdir)`, chosen by `config.mode`."""

from __future__ import annotations

import importlib
from collections.abc import Callable

import ml_collections

# Every mode the project will have; the value says whether it exists yet.
_MODES: dict[str, bool] = {
    "pretrain": True,
    "eval": True,
    "critic": True,
    "grpo": True,
    "infer": False,
}

RunFn = Callable[[ml_collections.ConfigDict, str], None]


def get(mode: str) -> RunFn:
  """The `run(config, workdir)` function of a mode; a clear error otherwise."""
  if mode not in _MODES:
    raise ValueError(
        f"config.mode={mode!r} is not a mode; expected one of {sorted(_MODES)}")
  if not _MODES[mode]:
    raise NotImplementedError(
        f"config.mode={mode!r} is not implemented yet; implemented modes: "
        f"{sorted(m for m, ready in _MODES.items() if ready) or 'none'}")
  return importlib.import_module(f"motiongrpo_jax.modes.{mode}").run
