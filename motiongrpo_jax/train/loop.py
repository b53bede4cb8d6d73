"""The training loop shared by every training mode.

    state ← latest checkpoint of WORKDIR, or a fresh state
    for step in start … num_steps − 1:
      stop (after saving) if SIGTERM arrived
      batch ← next process-local batch → global array over the mesh
      state, metrics ← train_step(state, batch)          (jitted, donated)
      every log_every_steps: metrics → JSONL/TensorBoard, progress line
      every eval_every_steps: evaluate(state) → "val" metrics
      every checkpoint_every_steps: save state + iterator
    save the final state

Start-up restores the latest checkpoint, so a preempted job resumes by
re-running the same command. The step's randomness comes from the state
(`fold_in(rng, step)`), never from a Python counter.

SIGTERM (single process): a handler sets a flag that the loop checks before
each step; the loop saves a checkpoint at that step and returns normally. With
several processes the loop asks JAX's preemption sync point instead, so all
processes stop at the same step.

Non-finite steps: the train step skips them (`state.apply_gradients`); the
loop stops with `NonFiniteError` after `max_consecutive_nonfinite` in a row,
without saving, so the last checkpoint stays the last good one. Metrics of a
step are read one step late, so the host never waits for the step it has just
dispatched.
"""

from __future__ import annotations

import dataclasses
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import ml_collections
from absl import logging
from jax.experimental import multihost_utils

from motiongrpo_jax.train import checkpoints
from motiongrpo_jax.train import mesh as mesh_lib
from motiongrpo_jax.train import metrics_writer
from motiongrpo_jax.train import state as state_lib

EvaluateFn = Callable[[state_lib.TrainState], Mapping[str, float]]


class NonFiniteError(RuntimeError):
  """Training stopped after too many non-finite steps in a row."""


@dataclasses.dataclass(frozen=True)
class LoopResult:
  """What a call of `run` ended with.

  Attributes:
    state: the final train state.
    preempted: True when a SIGTERM stopped the run early (a checkpoint of
      `state` was saved; re-run the same command to continue).
    start_step: the step the run started (or resumed) at.
    wall_seconds: time spent in the loop.
    last_val: the last validation metrics (empty if none ran).
  """
  state: state_lib.TrainState
  preempted: bool
  start_step: int
  wall_seconds: float
  last_val: Mapping[str, float]


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Checks the loop fields of `config.train`; ValueError naming the field."""
  for name in ("num_steps", "log_every_steps", "checkpoint_every_steps",
               "keep_checkpoints", "max_consecutive_nonfinite"):
    if getattr(config, name) < 1:
      raise ValueError(f"train.{name}={getattr(config, name)}: expected >= 1")
  if config.eval_every_steps < 0:
    raise ValueError(
        f"train.eval_every_steps={config.eval_every_steps}: expected >= 0 "
        "(0: validate only at the start and the end)")


class _StopFlag:
  """Set by SIGTERM; installed for the duration of the loop (main thread)."""

  def __init__(self):
    self.event = threading.Event()
    self._previous = None

  def __enter__(self) -> "_StopFlag":
    if (jax.process_count() == 1
        and threading.current_thread() is threading.main_thread()):
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame) -> None:
    del signum, frame
    logging.warning("SIGTERM received: saving a checkpoint, then stopping")
    self.event.set()

  def __exit__(self, *exc) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)

  def should_stop(self, step: int) -> bool:
    if jax.process_count() > 1:
      return multihost_utils.reached_preemption_sync_point(step)
    return self.event.is_set()


def _scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
  return {k: float(v) for k, v in jax.device_get(dict(metrics)).items()}


def run(config: ml_collections.ConfigDict, *, workdir: str,
        mesh: jax.sharding.Mesh,
        init_fn: Callable[[], state_lib.TrainState],
        train_step: mesh_lib.TrainStepFn,
        train_iterator: Iterator[Any],
        evaluate: EvaluateFn | None = None,
        stop_flag: threading.Event | None = None,
        abstract_fn: Callable[[], state_lib.TrainState] | None = None,
        ) -> LoopResult:
  """Trains from the latest checkpoint of `workdir` (or from `init_fn()`).

  Args:
    config: the loop fields (`config.train`): `num_steps`, `log_every_steps`,
      `eval_every_steps` (0: only at start and end), `checkpoint_every_steps`,
      `keep_checkpoints`, `async_checkpointing`, `max_consecutive_nonfinite`,
      `progress_every_seconds`.
    workdir: the run directory (checkpoints, metrics).
    mesh: the device mesh.
    init_fn: builds the initial state; not called when a checkpoint exists.
    train_step: from `mesh.make_train_step`.
    train_iterator: the grain iterator of process-local batches (restored in
      place on resume; its state is saved with every checkpoint).
    evaluate: validation metrics of a state (e.g. mean loss over a fixed val
      set), or None.
    stop_flag: an extra event that requests a save-and-stop like SIGTERM
      (tests, notebooks).
    abstract_fn: traced for the structure of the state to restore; default
      `init_fn` (pass a cheap one when `init_fn` reads files).

  Returns:
    The final state and how the run ended.

  Raises:
    NonFiniteError: after `max_consecutive_nonfinite` skipped steps in a row.
  """
  validate_config(config)
  manager = checkpoints.make_manager(workdir, max_to_keep=config.keep_checkpoints,
                                     async_save=config.async_checkpointing)
  writer = metrics_writer.MetricsWriter(workdir)
  try:
    state, restored = checkpoints.restore_or_init(
        manager, init_fn, mesh_lib.replicated(mesh), train_iterator,
        abstract_fn)
    start = int(jax.device_get(state.step))
    logging.info("%s at step %d of %d", "resumed" if restored else "starting",
                 start, config.num_steps)
    with _StopFlag() as flag:
      return _loop(config, mesh, state, start, restored, train_step,
                   train_iterator, evaluate, manager, writer, flag, stop_flag)
  finally:
    manager.wait_until_finished()
    manager.close()
    writer.close()


def _loop(config, mesh, state, start, restored, train_step, train_iterator,
          evaluate, manager, writer, flag, stop_flag) -> LoopResult:
  """The body of `run` (arguments as there)."""
  t0 = time.monotonic()
  progress = metrics_writer.Progress(config.num_steps, start,
                                     config.progress_every_seconds)
  last_val: dict[str, float] = {}
  last_saved = start if restored else -1

  def validate(step: int) -> None:
    nonlocal last_val
    if evaluate is None:
      return
    last_val = dict(evaluate(state))
    writer.write(step, last_val, split="val")
    logging.info("validation at step %d: %s", step, ", ".join(
        f"{k} {v:.6g}" for k, v in sorted(last_val.items())))

  def record(step: int, metrics) -> None:
    """Handles one step's metrics (read one step late)."""
    scalars = _scalars(metrics)
    if step % config.log_every_steps == 0 or step == config.num_steps:
      scalars["steps_per_second"] = progress.rate(step)
      writer.write(step, scalars, split="train")
      progress.maybe_log(step, f"loss {scalars['loss']:.6g}")
    if scalars["skipped"]:
      logging.warning("step %d skipped: non-finite loss or gradient "
                      "(%d in a row, %d in total)", step,
                      scalars["nonfinite_in_a_row"], scalars["nonfinite_steps"])
    if scalars["nonfinite_in_a_row"] >= config.max_consecutive_nonfinite:
      raise NonFiniteError(
          f"{int(scalars['nonfinite_in_a_row'])} non-finite steps in a row "
          f"(train.max_consecutive_nonfinite={config.max_consecutive_nonfinite})"
          f" up to step {step}; stopped without saving, the last checkpoint "
          f"(step {last_saved}) is the last good one")

  def save(step: int) -> None:
    nonlocal last_saved
    if step != last_saved:
      checkpoints.save(manager, state, train_iterator)
      last_saved = step

  if not restored:
    validate(start)
  pending = None
  step = start
  preempted = False
  while step < config.num_steps:
    if flag.should_stop(step) or (stop_flag is not None and stop_flag.is_set()):
      if pending is not None:
        record(*pending)
        pending = None
      save(step)
      preempted = True
      logging.warning("stopped at step %d with a checkpoint; re-run the same "
                      "command to resume", step)
      break
    try:
      local_batch = next(train_iterator)
    except StopIteration:
      raise ValueError(f"the train iterator ended at step {step}, before "
                       f"train.num_steps={config.num_steps}") from None
    batch = mesh_lib.global_batch(mesh, local_batch)
    state, metrics = train_step(state, batch)
    if pending is not None:
      record(*pending)
    step += 1
    pending = (step, metrics)
    due_eval = config.eval_every_steps and step % config.eval_every_steps == 0
    due_save = step % config.checkpoint_every_steps == 0
    if due_eval or due_save or step == config.num_steps:
      record(*pending)
      pending = None
    if due_eval and step < config.num_steps:
      validate(step)
    if due_save:
      save(step)
  if not preempted:
    if pending is not None:
      record(*pending)
    validate(step)
    save(step)
    logging.info("finished %d steps in %.1f s", step - start,
                 time.monotonic() - t0)
  return LoopResult(state=state, preempted=preempted, start_step=start,
                    wall_seconds=time.monotonic() - t0, last_val=last_val)
