"""Saving and loading a denoiser: Orbax params plus its config as JSON.

A model directory holds
  * `model_config.json`: every `DenoiserConfig` field;
  * `params/`: an Orbax (standard) checkpoint of the params tree.
It is what `config.init_checkpoint` points at in every training mode, and
what `tools/convert_egoallo.py` writes (`model/egoallo_import.py`).
"""

from __future__ import annotations

import json
import pathlib
import shutil
import tempfile
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from motiongrpo_jax.model import denoiser as denoiser_lib

CONFIG_FILE = "model_config.json"
PARAMS_DIR = "params"


def abstract_params(config: denoiser_lib.DenoiserConfig) -> Any:
  """ShapeDtypeStructs of `Denoiser(config)`'s params (nothing computed)."""
  model = denoiser_lib.Denoiser(config)
  frames = 2
  variables = jax.eval_shape(
      model.init, jax.random.key(0),
      jnp.zeros((1, frames, config.packed_dim)), jnp.ones((1,), jnp.int32),
      jnp.zeros((1, frames, 7)), jnp.zeros((1, frames, 7)))
  return variables["params"]


def save_model(directory: str | pathlib.Path,
               config: denoiser_lib.DenoiserConfig,
               params: Any,
               overwrite: bool = False) -> pathlib.Path:
  """Writes config + params to `directory` atomically.

  Everything is written into a temporary sibling directory that is renamed
  into place at the end, so an error leaves no half-written model behind.

  Args:
    directory: the model directory to create.
    config: the model config.
    params: the params tree of `Denoiser(config)`.
    overwrite: replace an existing `directory` (otherwise an error).

  Returns:
    The absolute model directory.
  """
  directory = pathlib.Path(directory).absolute()
  if directory.exists() and not overwrite:
    raise FileExistsError(f"model directory already exists: {directory}")
  config.validate()
  expected = jax.tree.map(lambda a: a.shape, abstract_params(config))
  got = jax.tree.map(lambda a: tuple(a.shape), params)
  if expected != got:
    raise ValueError(
        f"params do not match the config's Denoiser (saving to {directory})")
  directory.parent.mkdir(parents=True, exist_ok=True)
  tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{directory.name}.",
                                      suffix=".tmp", dir=directory.parent))
  try:
    (tmp / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    with ocp.StandardCheckpointer() as checkpointer:
      checkpointer.save(tmp / PARAMS_DIR, params)
      checkpointer.wait_until_finished()
    if directory.exists():
      old = directory.with_name(f".{directory.name}.old")
      shutil.rmtree(old, ignore_errors=True)
      directory.rename(old)
      tmp.rename(directory)
      shutil.rmtree(old)
    else:
      tmp.rename(directory)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return directory


def load_config(directory: str | pathlib.Path) -> denoiser_lib.DenoiserConfig:
  """Reads `directory/model_config.json` (unknown fields are an error)."""
  path = pathlib.Path(directory) / CONFIG_FILE
  if not path.is_file():
    raise FileNotFoundError(f"no model config at {path}")
  try:
    return denoiser_lib.DenoiserConfig.from_dict(json.loads(path.read_text()))
  except (TypeError, ValueError) as e:
    raise ValueError(f"{path}: {e}") from e


def load_model(
    directory: str | pathlib.Path,
) -> tuple[denoiser_lib.Denoiser, Any]:
  """Loads a model directory written by `save_model`.

  Args:
    directory: the model directory.

  Returns:
    (Denoiser, params); params restored as jax arrays on the default device.
  """
  directory = pathlib.Path(directory).absolute()
  config = load_config(directory)
  target = abstract_params(config)
  with ocp.StandardCheckpointer() as checkpointer:
    params = checkpointer.restore(directory / PARAMS_DIR, target)
  return denoiser_lib.Denoiser(config), params
