"""Train state, optimiser and the non-finite-safe update shared by training modes.

The state is plain data (a pytree of arrays) so that Orbax can save and restore
it whole; the optimiser (an `optax.GradientTransformation`) lives beside it,
built from the config by `make_optimizer`.

Randomness: the state holds one base key; train step k draws from
`jax.random.fold_in(rng, k)`, so a resumed run draws exactly what an
uninterrupted run would have.

Non-finite steps: `apply_gradients` applies an update only when the loss and
the gradient's global norm are finite (so every gradient entry is; a norm
overflowing float32 counts as non-finite too). Otherwise parameters and
optimiser state are
kept, the step counter still advances (the batch is consumed) and two counters
record the skip; the loop stops training after
`config.train.max_consecutive_nonfinite` skips in a row.
"""

from __future__ import annotations

import re
from typing import Any, Callable, NamedTuple

import flax.struct
import flax.traverse_util
import jax
import jax.numpy as jnp
import ml_collections
import optax


@flax.struct.dataclass
class TrainState:
  """Everything a training run needs to continue exactly where it stopped.

  Attributes:
    step: () int32, train steps taken so far (applied or skipped). Step k
      (0-based) consumes the k-th batch of the input pipeline.
    params: the model parameters (any pytree of arrays).
    opt_state: the optimiser state of `make_optimizer`.
    rng: (2,) uint32 base key of the run; step k uses `fold_in(rng, k)`.
    nonfinite_steps: () int32, total steps skipped for a non-finite loss or
      gradient.
    nonfinite_in_a_row: () int32, steps skipped since the last applied update.
  """
  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array
  nonfinite_steps: jax.Array
  nonfinite_in_a_row: jax.Array


def create(params: Any, tx: optax.GradientTransformation,
           rng: jax.Array) -> TrainState:
  """A fresh state at step 0.

  Args:
    params: the initial parameters.
    tx: the optimiser (`make_optimizer`).
    rng: (2,) uint32 base key (`jax.random.PRNGKey(seed)`).

  Returns:
    The state.
  """
  # Separate buffers per counter: a donated state must not alias itself.
  zero = lambda: jnp.zeros((), jnp.int32)  # pylint: disable=unnecessary-lambda-assignment
  return TrainState(step=zero(), params=params, opt_state=tx.init(params),
                    rng=jnp.asarray(rng, jnp.uint32), nonfinite_steps=zero(),
                    nonfinite_in_a_row=zero())


def make_schedule(config: ml_collections.ConfigDict,
                  total_updates: int = 0) -> optax.Schedule:
  """Learning rate per applied update: linear warm-up from 0, then constant
  or a cosine decay that reaches 0 at update `total_updates`.

  The warm-up is EgoAllo's `LambdaLR(lambda s: min(1, s / warmup))`: the
  first update has learning rate 0 and update `warmup_steps` reaches the peak.

  Args:
    config: the optimiser config (`learning_rate`, `warmup_steps`,
      `schedule`).
    total_updates: the run's applied updates (needed by "cosine").

  Returns:
    A schedule mapping the update count to the learning rate.
  """
  if config.warmup_steps < 0:
    raise ValueError(
        f"optimizer.warmup_steps={config.warmup_steps}: expected >= 0")
  if config.schedule == "cosine":
    if total_updates <= config.warmup_steps:
      raise ValueError(
          f"optimizer.schedule='cosine' decays over the run's {total_updates} "
          f"updates: expected more than optimizer.warmup_steps="
          f"{config.warmup_steps}")
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=config.learning_rate,
        warmup_steps=config.warmup_steps, decay_steps=total_updates)
  if config.schedule != "constant":
    raise ValueError(f"optimizer.schedule={config.schedule!r}: expected "
                     "'constant' or 'cosine'")
  if config.warmup_steps == 0:
    return optax.constant_schedule(config.learning_rate)
  return optax.warmup_constant_schedule(
      init_value=0.0, peak_value=config.learning_rate,
      warmup_steps=config.warmup_steps)


class ParamsEmaState(NamedTuple):
  """The moving average of the parameters after each applied update."""
  params_ema: Any


def track_params_ema(decay: float) -> optax.GradientTransformation:
  """Passes updates through and keeps, in its state,
  ema ← decay·ema + (1 − decay)·(params + updates), starting at the initial
  parameters."""

  def init_fn(params):
    return ParamsEmaState(jax.tree.map(jnp.copy, params))

  def update_fn(updates, state, params):
    new_params = optax.apply_updates(params, updates)
    return updates, ParamsEmaState(optax.tree.update_moment(
        new_params, state.params_ema, decay, order=1))

  return optax.GradientTransformation(init_fn, update_fn)


class GradCosineState(NamedTuple):
  """The last gradient and its cosine with the one before."""
  previous_grads: Any
  grad_cosine: jax.Array


def track_grad_cosine() -> optax.GradientTransformation:
  """Passes updates through and keeps the cosine between each gradient and
  the previous one (0 for the first): near 0 when updates are mostly noise,
  near 1 when successive batches agree. Costs one copy of the parameters."""

  def init_fn(params):
    return GradCosineState(jax.tree.map(jnp.zeros_like, params),
                           jnp.zeros((), jnp.float32))

  def update_fn(updates, state, params=None):
    del params
    dot = optax.tree.vdot(updates, state.previous_grads)
    norms = optax.tree.norm(updates) * optax.tree.norm(state.previous_grads)
    cosine = jnp.where(norms > 0, dot / jnp.where(norms > 0, norms, 1.0), 0.0)
    return updates, GradCosineState(updates, cosine.astype(jnp.float32))

  return optax.GradientTransformation(init_fn, update_fn)


def make_optimizer(config: ml_collections.ConfigDict, total_updates: int = 0,
                   grad_cosine: bool = False) -> optax.GradientTransformation:
  """Gradient clipping by global norm, AdamW with `make_schedule` (on the
  `trainable` parameters only, when given), and the parameters' moving
  average when `ema_decay` > 0.

  Args:
    config: the optimiser config: `learning_rate`, `warmup_steps`,
      `weight_decay`, `grad_clip_norm` (<= 0 disables clipping), `b1`, `b2`,
      `eps`, `ema_decay` (0: no average), `schedule`, `trainable`.
    total_updates: the run's applied updates (`make_schedule`).
    grad_cosine: also track the cosine between successive raw gradients
      (`track_grad_cosine`; reported by `apply_gradients` as `grad_cosine`).

  Returns:
    The optax transformation.
  """
  if not 0 <= config.ema_decay < 1:
    raise ValueError(f"optimizer.ema_decay={config.ema_decay}: expected in "
                     "[0, 1)")
  parts = [optax.adamw(make_schedule(config, total_updates), b1=config.b1, b2=config.b2,
                       eps=config.eps, weight_decay=config.weight_decay)]
  if config.grad_clip_norm > 0:
    parts.insert(0, optax.clip_by_global_norm(config.grad_clip_norm))
  if config.trainable:
    # Clipping and Adam see only the trained parameters.
    parts = [optax.multi_transform(
        {"trained": optax.chain(*parts), "frozen": optax.set_to_zero()},
        trainable_labels(config.trainable))]
  if config.ema_decay > 0:
    parts.append(track_params_ema(config.ema_decay))
  if grad_cosine:
    parts.insert(0, track_grad_cosine())
  return parts[0] if len(parts) == 1 else optax.chain(*parts)


def trainable_labels(pattern: str) -> Callable[[Any], Any]:
  """params -> the same tree of "trained" / "frozen": "trained" where the
  '/'-joined path matches `pattern` (re.search); raises ValueError naming
  `optimizer.trainable` when nothing matches."""
  regex = re.compile(pattern)

  def labels(params):
    flat = flax.traverse_util.flatten_dict(params, sep="/")
    out = {path: "trained" if regex.search(path) else "frozen"
           for path in flat}
    if "trained" not in out.values():
      raise ValueError(f"optimizer.trainable={pattern!r} matches no parameter "
                       f"(paths look like {next(iter(flat), '')!r})")
    return flax.traverse_util.unflatten_dict(out, sep="/")

  return labels


def averaged_params(state: TrainState) -> Any:
  """The parameters' moving average (`ema_decay` > 0), else the parameters."""
  ema = optax.tree.get(state.opt_state, "params_ema")
  return state.params if ema is None else ema


def apply_gradients(state: TrainState, grads: Any, loss: jax.Array,
                    tx: optax.GradientTransformation
                    ) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimiser update, skipped when the loss or a gradient is not finite.

  Args:
    state: the current state.
    grads: gradients of the loss (same tree as `state.params`).
    loss: () the loss the gradients belong to.
    tx: the optimiser the state was created with.

  Returns:
    (new state, stats) with stats `grad_norm` (before clipping), `update_norm`
    (0 when skipped), `param_norm` (after the update), `skipped` (1.0 when
    skipped), `nonfinite_steps` (running total), `nonfinite_in_a_row`, and
    `grad_cosine` where the optimiser tracks it.
  """
  # A NaN or ±inf anywhere makes the global norm non-finite (as does a sum of
  # squares beyond float32's range, ~1e19 per entry: treated as broken too).
  grad_norm = optax.tree.norm(grads)
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)

  def update(_):
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    return (optax.apply_updates(state.params, updates), opt_state,
            optax.tree.norm(updates))

  def skip(_):
    return state.params, state.opt_state, jnp.zeros((), jnp.float32)

  # A cond, not a select per leaf: the skipped branch costs nothing.
  params, opt_state, update_norm = jax.lax.cond(finite, update, skip, None)
  skipped = (~finite).astype(jnp.int32)
  new_state = state.replace(
      step=state.step + 1,
      params=params,
      opt_state=opt_state,
      nonfinite_steps=state.nonfinite_steps + skipped,
      nonfinite_in_a_row=jnp.where(finite, 0, state.nonfinite_in_a_row + 1),
  )
  stats = {
      "grad_norm": grad_norm,
      "update_norm": update_norm,
      "param_norm": optax.tree.norm(params),
      "skipped": skipped.astype(jnp.float32),
      "nonfinite_steps": new_state.nonfinite_steps.astype(jnp.float32),
      "nonfinite_in_a_row": new_state.nonfinite_in_a_row.astype(jnp.float32),
  }
  cosine = optax.tree.get(opt_state, "grad_cosine")
  if cosine is not None:
    stats["grad_cosine"] = cosine
  return new_state, stats
