"""Orbax checkpoints of training runs, exact resume, and `init_checkpoint`.

A run keeps its checkpoints in `WORKDIR/checkpoints/<step>/`, each with two
items:
  * `state`: the whole `TrainState` (params, optimiser state, step, RNG key,
    non-finite counters), an Orbax standard checkpoint;
  * `data`: the input iterator's state (grain's Orbax handler, one JSON file
    per process), so a resumed run reads exactly the batches it would have.
Step `s` holds the state after `s` train steps, with the iterator positioned
at batch `s`. Orbax writes a step under a temporary name and renames it when
complete, so a run killed while saving leaves the previous steps intact, and
`latest_step` only ever sees finished ones.

`restore_or_init` makes start-up idempotent: a preempted job resumes by
re-running the same command. `load_params` resolves `config.init_checkpoint`
(fine-tuning: parameters only), and `load_denoiser` a model with its
parameters (evaluation), from any of
  1. a training workdir (its latest checkpoint),
  2. one checkpoint step directory (`WORKDIR/checkpoints/<step>`),
  3. a model directory written by `model/params_io.save_model`
     (`model_config.json` + `params/`, e.g. a converted EgoAllo model),
  4. an EgoAllo checkpoint directory (`model.safetensors`, with
     `model_config.yaml` beside its parent), converted on the fly.
"""

from __future__ import annotations

import logging as py_logging
import pathlib
from collections.abc import Callable
from typing import Any

import grain.checkpoint as grain_checkpoint
import jax
import orbax.checkpoint as ocp
from absl import logging

from motiongrpo_jax.model import denoiser as denoiser_lib
from motiongrpo_jax.model import egoallo_import
from motiongrpo_jax.model import params_io
from motiongrpo_jax.train import state as state_lib

# Subdirectory of the workdir holding the step directories.
CHECKPOINT_DIR = "checkpoints"
# Item names inside a step directory.
STATE_ITEM = "state"
DATA_ITEM = "data"


class _QuietOrbax(py_logging.Filter):
  """Drops Orbax's INFO chatter (dozens of lines per save); keeps warnings."""

  def filter(self, record: py_logging.LogRecord) -> bool:
    return record.levelno >= py_logging.WARNING or "orbax" not in record.pathname


def _quiet_orbax_logs() -> None:
  logger = logging.get_absl_logger()
  if not any(isinstance(f, _QuietOrbax) for f in logger.filters):
    logger.addFilter(_QuietOrbax())


def make_manager(workdir: str | pathlib.Path, *, max_to_keep: int,
                 async_save: bool = False) -> ocp.CheckpointManager:
  """The run's manager over `workdir/checkpoints` (created if absent).

  Args:
    workdir: the run directory.
    max_to_keep: how many of the most recent steps to keep.
    async_save: write in a background thread (the train state is copied to
      host memory before `save` returns); `close` waits for it.

  Returns:
    The manager; call `close()` when done.
  """
  if max_to_keep < 1:
    raise ValueError(f"keep_checkpoints={max_to_keep}: expected >= 1")
  _quiet_orbax_logs()
  directory = pathlib.Path(workdir).absolute() / CHECKPOINT_DIR
  options = ocp.CheckpointManagerOptions(
      max_to_keep=max_to_keep, create=True,
      enable_async_checkpointing=async_save)
  return ocp.CheckpointManager(
      directory, options=options,
      item_handlers={STATE_ITEM: ocp.StandardCheckpointHandler(),
                     DATA_ITEM: grain_checkpoint.CheckpointHandler()})


def save(manager: ocp.CheckpointManager, state: state_lib.TrainState,
         data_iterator: Any | None = None) -> int:
  """Saves `state` (and the iterator) as step `state.step`.

  Args:
    manager: from `make_manager`.
    state: the train state after `state.step` steps.
    data_iterator: the grain iterator the run reads (positioned at batch
      `state.step`), or None when the run has no resumable input.

  Returns:
    The step saved.
  """
  step = int(jax.device_get(state.step))
  items = {STATE_ITEM: ocp.args.StandardSave(state)}
  if data_iterator is not None:
    items[DATA_ITEM] = grain_checkpoint.CheckpointSave(data_iterator)
  manager.save(step, args=ocp.args.Composite(**items), force=True)
  return step


def _abstract(tree: Any, sharding: jax.sharding.Sharding) -> Any:
  """ShapeDtypeStructs of `tree` (arrays or structs) placed with `sharding`."""
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


def restore_or_init(manager: ocp.CheckpointManager,
                    init_fn: Callable[[], state_lib.TrainState],
                    sharding: jax.sharding.Sharding,
                    data_iterator: Any | None = None,
                    abstract_fn: Callable[[], state_lib.TrainState] | None = None,
                    ) -> tuple[state_lib.TrainState, bool]:
  """The latest checkpoint of the run if there is one, else a fresh state.

  Args:
    manager: from `make_manager`.
    init_fn: builds the initial state; called only when there is no
      checkpoint.
    sharding: where the state lives (`mesh.replicated(mesh)`).
    data_iterator: the run's fresh grain iterator; restored in place.
    abstract_fn: traced (`jax.eval_shape`) for the restore target's
      structure; default `init_fn`. Pass a cheap one when `init_fn` reads
      files (e.g. `init_checkpoint`).

  Returns:
    (state placed with `sharding`, whether it was restored).
  """
  step = manager.latest_step()
  if step is None:
    return jax.device_put(init_fn(), sharding), False
  target = _abstract(jax.eval_shape(abstract_fn or init_fn), sharding)
  items = {STATE_ITEM: ocp.args.StandardRestore(target)}
  has_data = (pathlib.Path(manager.directory) / str(step) / DATA_ITEM).is_dir()
  if data_iterator is not None:
    if not has_data:
      raise ValueError(
          f"checkpoint {manager.directory}/{step} has no input-iterator state "
          f"('{DATA_ITEM}' item), so the run cannot resume its batches")
    items[DATA_ITEM] = grain_checkpoint.CheckpointRestore(data_iterator)
  location = pathlib.Path(manager.directory) / str(step)
  try:
    restored = manager.restore(step, args=ocp.args.Composite(**items))
  except Exception as e:  # Orbax raises many types; name the path.
    raise ValueError(
        f"cannot restore checkpoint {location} (corrupt, or written by a "
        f"different model/optimiser config?): {type(e).__name__}: {e}") from e
  return restored[STATE_ITEM], True


# --- init_checkpoint: parameters only. ---


def _check_shapes(found: Any, target: Any, source: str) -> None:
  """Raises ValueError listing the params whose shapes differ or are missing."""
  def flat(tree):
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(p): tuple(x.shape) for p, x in leaves}
  got, want = flat(found), flat(target)
  problems = [f"{k}: missing" for k in sorted(want.keys() - got.keys())]
  problems += [f"{k}: unexpected" for k in sorted(got.keys() - want.keys())]
  problems += [f"{k}: shape {got[k]}, expected {want[k]}"
               for k in sorted(want.keys() & got.keys()) if got[k] != want[k]]
  if problems:
    shown = "; ".join(problems[:8]) + ("; …" if len(problems) > 8 else "")
    raise ValueError(
        f"init_checkpoint {source}: parameters do not match the configured "
        f"model ({len(problems)} differences): {shown}")


def _params_from_step_dir(step_dir: pathlib.Path, target: Any) -> Any:
  """The `params` of the train state saved in one step directory."""
  state_dir = step_dir / STATE_ITEM
  checkpointer = ocp.PyTreeCheckpointer()
  try:
    metadata = checkpointer.metadata(state_dir).item_metadata.tree
  except Exception as e:  # Orbax raises many types; name the path.
    raise ValueError(f"cannot read checkpoint {state_dir}: "
                     f"{type(e).__name__}: {e}") from e
  if "params" not in metadata:
    raise ValueError(f"checkpoint {state_dir} holds no 'params'")
  _check_shapes(metadata["params"], target, str(state_dir))
  item = {"params": target}
  try:
    restored = checkpointer.restore(state_dir, args=ocp.args.PyTreeRestore(
        item=item, restore_args=ocp.checkpoint_utils.construct_restore_args(item),
        partial_restore=True))
  except Exception as e:  # Orbax raises many types; name the path.
    raise ValueError(f"cannot restore params from {state_dir}: "
                     f"{type(e).__name__}: {e}") from e
  return restored["params"]


def checkpoint_kind(path: str | pathlib.Path) -> str:
  """Which of the accepted layouts `path` is (module docstring).

  Returns:
    "workdir", "step", "model" (params_io) or "egoallo".

  Raises:
    FileNotFoundError / ValueError naming the path when it is none of them.
  """
  path = pathlib.Path(path)
  if not path.exists():
    raise FileNotFoundError(f"checkpoint path does not exist: {path}")
  if (path / CHECKPOINT_DIR).is_dir():
    return "workdir"
  if (path / STATE_ITEM).is_dir():
    return "step"
  if (path / params_io.CONFIG_FILE).is_file():
    return "model"
  if (path / "model.safetensors").is_file():
    return "egoallo"
  raise ValueError(
      f"{path} is not a checkpoint: expected a training workdir (with "
      f"'{CHECKPOINT_DIR}/'), a checkpoint step directory (with "
      f"'{STATE_ITEM}/'), a model directory (with "
      f"'{params_io.CONFIG_FILE}') or an EgoAllo checkpoint directory (with "
      "'model.safetensors')")


def latest_step_dir(workdir: str | pathlib.Path) -> pathlib.Path:
  """`workdir/checkpoints/<latest finished step>`; an error if there is none."""
  directory = pathlib.Path(workdir).absolute() / CHECKPOINT_DIR
  manager = ocp.CheckpointManager(
      directory, options=ocp.CheckpointManagerOptions(read_only=True))
  try:
    step = manager.latest_step()
  finally:
    manager.close()
  if step is None:
    raise FileNotFoundError(f"no finished checkpoint in {directory}")
  return directory / str(step)


def load_params(path: str | pathlib.Path, target: Any) -> Any:
  """Parameters from any accepted checkpoint layout, placed like `target`.

  Args:
    path: a training workdir, a checkpoint step directory, a model directory
      or an EgoAllo checkpoint directory (module docstring).
    target: the configured model's params (arrays or ShapeDtypeStructs with
      shardings); shapes must match, or the error lists the differences.

  Returns:
    The params tree, each leaf placed with its target's sharding.
  """
  path = pathlib.Path(path).absolute()
  kind = checkpoint_kind(path)
  if kind in ("workdir", "step"):
    step_dir = latest_step_dir(path) if kind == "workdir" else path
    return _params_from_step_dir(step_dir, target)
  if kind == "model":
    _, params = params_io.load_model(path)
  else:
    _, params = egoallo_import.load_egoallo_checkpoint(path)
  _check_shapes(params, target, str(path))
  return jax.tree.map(lambda x, t: jax.device_put(x, t.sharding), params, target)


def load_denoiser(path: str | pathlib.Path
                  ) -> tuple[denoiser_lib.Denoiser, Any]:
  """A denoiser and its parameters from any accepted checkpoint layout.

  The model config comes from `model_config.json` of the training workdir
  (written by the pretrain mode) for layouts 1 and 2, from the model
  directory for 3, and from EgoAllo's `model_config.yaml` for 4.

  Args:
    path: a training workdir, a checkpoint step directory, a model directory
      or an EgoAllo checkpoint directory (module docstring).

  Returns:
    (`Denoiser`, params) with params on this process's first device.
  """
  path = pathlib.Path(path).absolute()
  kind = checkpoint_kind(path)
  if kind == "model":
    return params_io.load_model(path)
  if kind == "egoallo":
    return egoallo_import.load_egoallo_checkpoint(path)
  step_dir = latest_step_dir(path) if kind == "workdir" else path
  workdir = path if kind == "workdir" else step_dir.parent.parent
  if not (workdir / params_io.CONFIG_FILE).is_file():
    raise FileNotFoundError(
        f"{workdir / params_io.CONFIG_FILE} not found: the training workdir of "
        f"{path} does not say which model it trained")
  config = params_io.load_config(workdir)
  target = params_io.abstract_params(config)
  # This process's own device (jax.devices()[0] belongs to process 0).
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree.map(
      lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device), target)
  return denoiser_lib.Denoiser(config), _params_from_step_dir(step_dir, target)


def load_denoiser_option(path: str, option: str
                         ) -> tuple[denoiser_lib.Denoiser, Any]:
  """`load_denoiser` with errors naming the config option that gave `path`."""
  try:
    return load_denoiser(path)
  except FileNotFoundError as e:
    raise FileNotFoundError(f"{option}={path!r}: {e}") from e
  except Exception as e:  # Orbax and safetensors raise many types.
    raise ValueError(f"{option}={path!r}: cannot load a model "
                     f"({type(e).__name__}: {e})") from e
