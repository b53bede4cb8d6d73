"""Modes: each is a module with `run(config, workdir)`, chosen by `config.mode`."""

from __future__ import annotations

import importlib
import types
from collections.abc import Callable

import ml_collections

MODES = ("pretrain", "eval", "critic", "grpo", "infer")

RunFn = Callable[[ml_collections.ConfigDict, str], None]


def load(mode: str) -> types.ModuleType:
  """The module of a mode; a clear error for an unknown one."""
  if mode not in MODES:
    raise ValueError(
        f"config.mode={mode!r} is not a mode; expected one of {sorted(MODES)}")
  return importlib.import_module(f"motiongrpo_jax.modes.{mode}")


def get(mode: str) -> RunFn:
  """The `run(config, workdir)` function of a mode."""
  return load(mode).run
