"""The device mesh, shardings, global batches and the data-parallel steps.

One `jax.sharding.Mesh` spans every device of every process with a single
axis, `"data"`. Batches are split along their leading axis over that axis;
the train state is replicated. The per-device step runs under
`jax.shard_map`: each device computes the gradient of its share of the batch
and `jax.lax.pmean` averages gradients, loss and metrics over `"data"`, so
every device applies the same update. Each step is jitted once, with the
train state donated.

Loss functions given to `make_train_step` / `make_eval_step` have the form
`loss_fn(params, batch, keys) -> (loss, aux)` and run per device inside the
`shard_map`:
  * `batch` is this device's slice of the global batch (leading axis B_local);
  * `keys` (B_local, 2) uint32 holds one key per example, derived from the
    example's *global* index, so results do not depend on the device count;
  * `loss` () and every entry of the dict `aux` must be values whose mean
    over devices is the global value (a plain mean over this device's
    examples is; a ratio normalised over the whole batch can use
    `jax.lax.psum(..., DATA_AXIS)` for its denominator).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from motiongrpo_jax.train import state as state_lib

# Name of the mesh axis that batches are split over.
DATA_AXIS = "data"

LossFn = Callable[[Any, Any, jax.Array], tuple[jax.Array, dict[str, jax.Array]]]
TrainStepFn = Callable[[state_lib.TrainState, Any],
                       tuple[state_lib.TrainState, dict[str, jax.Array]]]
EvalStepFn = Callable[[Any, Any, jax.Array], dict[str, jax.Array]]


def make_mesh(devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
  """A one-axis ("data") mesh over `devices` (default: all, of all processes).

  The axis is `Auto`, so plain `jit` code outside `shard_map` (evaluation,
  sampling) works on the global arrays without a mesh context.
  """
  devices = list(jax.devices() if devices is None else devices)
  return jax.make_mesh((len(devices),), (DATA_AXIS,),
                       axis_types=(jax.sharding.AxisType.Auto,),
                       devices=devices)


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
  """The sharding of the train state: a full copy on every device."""
  return NamedSharding(mesh, P())


def data_sharded(mesh: jax.sharding.Mesh) -> NamedSharding:
  """The sharding of batches: leading axis split over the "data" axis."""
  return NamedSharding(mesh, P(DATA_AXIS))


def local_batch_size(global_batch_size: int, mesh: jax.sharding.Mesh,
                     option: str = "batch_size") -> int:
  """This process's share of a global batch; a clear error if it does not split.

  Args:
    global_batch_size: examples per step over all devices.
    mesh: the mesh.
    option: the config field named in the error.

  Returns:
    global_batch_size / process_count.
  """
  num_devices = mesh.devices.size
  if global_batch_size <= 0 or global_batch_size % num_devices:
    raise ValueError(
        f"{option}={global_batch_size} must be a positive multiple of the "
        f"number of devices ({num_devices})")
  return global_batch_size // jax.process_count()


def global_batch(mesh: jax.sharding.Mesh, local_batch: Any) -> Any:
  """Global arrays, split over "data", from each process's local batch.

  Args:
    mesh: the mesh.
    local_batch: pytree of numpy arrays with leading axis B / process_count,
      this process's part of the global batch.

  Returns:
    The same pytree of `jax.Array`s with leading axis B.
  """
  sharding = data_sharded(mesh)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
      local_batch)


def put_replicated(mesh: jax.sharding.Mesh, tree: Any) -> Any:
  """`tree` copied onto every device of the mesh."""
  return jax.device_put(tree, replicated(mesh))


def example_keys(key: jax.Array, num_local: int) -> jax.Array:
  """(num_local, 2) per-example keys `fold_in(key, global example index)`.

  Called inside the `shard_map`: device i holds examples
  i·num_local … (i+1)·num_local − 1 of the global batch.
  """
  first = jax.lax.axis_index(DATA_AXIS) * num_local
  index = first + jnp.arange(num_local)
  return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, index)


def _leading_size(batch: Any) -> int:
  sizes = {x.shape[0] for x in jax.tree.leaves(batch)}
  if len(sizes) != 1:
    raise ValueError(f"batch fields disagree on the batch size: {sorted(sizes)}")
  return sizes.pop()


def reduce_stats(stats: dict[str, jax.Array], axis_name: str | None = None,
                 axis: int | None = None) -> dict[str, jax.Array]:
  """Means of statistics, minima of `*_min` and maxima of `*_max` ones: over
  the devices of `axis_name`, or over `axis` of each array."""
  out = {}
  for k, v in stats.items():
    if axis_name is not None:
      reduce = (jax.lax.pmin if k.endswith("_min") else jax.lax.pmax
                if k.endswith("_max") else jax.lax.pmean)
      out[k] = reduce(v, axis_name)
    else:
      reduce = (jnp.min if k.endswith("_min") else jnp.max
                if k.endswith("_max") else jnp.mean)
      out[k] = reduce(v, axis=axis)
  return out


def accumulate_gradients(grad_fn: Callable[..., Any], params: Any,
                         micro_batches: Any) -> tuple[Any, jax.Array,
                                                      dict[str, jax.Array]]:
  """This device's gradient of a batch split into micro-batches, in a
  `lax.scan` (one gradient buffer: memory of one micro-batch).

  Args:
    grad_fn: `value_and_grad(loss, has_aux=True)`-style
      `grad_fn(params, micro_batch) -> ((loss, stats), grads)`.
    params: the device-varying parameters (`pcast(..., to="varying")`).
    micro_batches: a tree whose leaves have a leading micro-batch axis.

  Returns:
    (grads, loss, stats): means over micro-batches (`*_min` / `*_max`
    statistics: their minimum / maximum), not yet reduced over devices.
  """

  def body(acc, micro):
    (loss, stats), grads = grad_fn(params, micro)
    return jax.tree.map(jnp.add, acc, (grads, loss)), stats

  first = jax.tree.map(lambda x: x[0], micro_batches)
  shapes = jax.eval_shape(lambda: grad_fn(params, first))
  # Zeros of the accumulator's types (device-varying, like the values).
  zeros = jax.tree.map(
      lambda s: jax.lax.pcast(jnp.zeros(s.shape, s.dtype), DATA_AXIS,
                              to="varying"), (shapes[1], shapes[0][0]))
  (grads, loss), stats = jax.lax.scan(body, zeros, micro_batches)
  scale = 1.0 / jax.tree.leaves(micro_batches)[0].shape[0]
  grads = jax.tree.map(lambda g: g * scale, grads)
  return grads, loss * scale, reduce_stats(stats, axis=0)


def make_train_step(loss_fn: LossFn, tx: optax.GradientTransformation,
                    mesh: jax.sharding.Mesh,
                    schedule: optax.Schedule | None = None) -> TrainStepFn:
  """The jitted data-parallel train step `(state, batch) -> (state, metrics)`.

  Step k draws its per-example keys from `fold_in(state.rng, k)`. The state
  argument is donated: do not use it after the call.

  Args:
    loss_fn: `loss_fn(params, batch, keys) -> (loss, aux)` (module docstring).
    tx: the optimiser the state was created with.
    mesh: the mesh; the batch must be sharded with `data_sharded(mesh)` and
      the state with `replicated(mesh)`.
    schedule: the learning-rate schedule, reported as `learning_rate`.

  Returns:
    The step. Metrics (all () float32, replicated): `loss`, every `aux`
    entry, `grad_norm`, `update_norm`, `param_norm`, `skipped`,
    `nonfinite_steps`, `nonfinite_in_a_row` and, with a schedule,
    `learning_rate`.
  """

  def device_step(state: state_lib.TrainState, batch: Any):
    keys = example_keys(jax.random.fold_in(state.rng, state.step),
                        _leading_size(batch))
    # Differentiate with respect to a per-device copy of the parameters, so
    # that the gradient is this device's own; pmean then averages them.
    params = jax.lax.pcast(state.params, DATA_AXIS, to="varying")
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, batch, keys)
    grads, loss, aux = jax.lax.pmean((grads, loss, aux), DATA_AXIS)
    new_state, stats = state_lib.apply_gradients(state, grads, loss, tx)
    metrics = {"loss": loss, **aux, **stats}
    if schedule is not None:
      metrics["learning_rate"] = schedule(state.step - state.nonfinite_steps)
    metrics = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), metrics)
    return new_state, metrics

  step = jax.shard_map(device_step, mesh=mesh, in_specs=(P(), P(DATA_AXIS)),
                       out_specs=(P(), P()))
  return jax.jit(step, donate_argnums=(0,))


def make_eval_step(loss_fn: LossFn, mesh: jax.sharding.Mesh) -> EvalStepFn:
  """The jitted data-parallel evaluation `(params, batch, key) -> metrics`.

  Args:
    loss_fn: as for `make_train_step`; its gradient is not taken.
    mesh: the mesh.

  Returns:
    A function returning `{"loss": …, **aux}` averaged over the global batch;
    `key` (2,) is the base of the per-example keys, fixed per validation
    batch so that validation losses are comparable across steps.
  """

  def device_eval(params: Any, batch: Any, key: jax.Array):
    keys = example_keys(key, _leading_size(batch))
    loss, aux = loss_fn(params, batch, keys)
    metrics = jax.lax.pmean({"loss": loss, **aux}, DATA_AXIS)
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), metrics)

  return jax.jit(jax.shard_map(device_eval, mesh=mesh,
                               in_specs=(P(), P(DATA_AXIS), P()),
                               out_specs=P()))
