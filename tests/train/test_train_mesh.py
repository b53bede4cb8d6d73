"""Tests for train/mesh.py: data parallelism on fake CPU devices, batches.

The multi-device check runs in a subprocess because the number of fake CPU
devices (`XLA_FLAGS=--xla_force_host_platform_device_count=4`) must be set
before JAX initialises.
"""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from motiongrpo_jax.train import mesh as mesh_lib

_HERE = pathlib.Path(__file__).resolve().parent
_REPO = _HERE.parents[1]

# Trains the toy 3 steps with the same global batches on 1 and on 4 devices
# (plain-mean loss, and a masked ratio loss normalised with psum), and prints
# the largest parameter differences as JSON.
_DATA_PARALLEL_SCRIPT = r"""
import json
import jax, jax.numpy as jnp, numpy as np
import train_toy as toy
from motiongrpo_jax.train import mesh as mesh_lib, state as state_lib

assert jax.device_count() == 4, jax.devices()

def ratio_loss(params, batch, keys):
  # Σ mask·err / Σ mask over the *global* batch: psum of the denominator.
  per_example, aux = jax.vmap(
      lambda x, y, k: toy.loss_fn(params, {"x": x[None], "y": y[None]}, k[None])
  )(batch["x"], batch["y"], keys)
  mask = (batch["index"] % 3 != 0).astype(jnp.float32)
  num_devices = jax.lax.psum(1, mesh_lib.DATA_AXIS)
  total = jax.lax.psum(jnp.sum(mask), mesh_lib.DATA_AXIS)
  return num_devices * jnp.sum(mask * per_example) / total, {}

out = {}
opt = toy.optimizer_config()
tx = state_lib.make_optimizer(opt)
for name, loss_fn in [("mean", toy.loss_fn), ("ratio", ratio_loss)]:
  results = []
  for devices in (jax.devices()[:1], jax.devices()):
    mesh = mesh_lib.make_mesh(devices)
    step = mesh_lib.make_train_step(loss_fn, tx, mesh)
    state = mesh_lib.put_replicated(mesh, toy.make_init_fn(tx)())
    it = toy.make_iterator()
    for _ in range(3):
      batch = mesh_lib.global_batch(mesh, next(it))
      state, metrics = step(state, batch)
    out[f"{name}_cache_size_{len(devices)}"] = step._cache_size()
    out[f"{name}_loss_{len(devices)}"] = float(metrics["loss"])
    results.append(jax.device_get(state.params))
  out[f"{name}_max_diff"] = max(
      float(np.max(np.abs(a - b))) for a, b in
      zip(jax.tree.leaves(results[0]), jax.tree.leaves(results[1])))
  out[f"{name}_moved"] = float(np.max(np.abs(
      results[0]["w1"] - np.asarray(toy.init_params()["w1"]))))

mesh = mesh_lib.make_mesh()
batch = mesh_lib.global_batch(mesh, {"a": np.arange(8.0).reshape(8, 1)})
out["shards"] = sorted(
    [s.index[0].start, float(np.asarray(s.data)[0, 0])]
    for s in batch["a"].addressable_shards)
try:
  mesh_lib.local_batch_size(6, mesh)
except ValueError as e:
  out["error"] = str(e)
print("RESULT " + json.dumps(out))
"""


def test_four_devices_match_one_device_for_the_same_global_batch():
  env = dict(os.environ,
             XLA_FLAGS=os.environ["XLA_FLAGS"] +
             " --xla_force_host_platform_device_count=4",
             JAX_PLATFORMS="cpu",
             PYTHONPATH=os.pathsep.join([str(_REPO), str(_HERE)]))
  proc = subprocess.run([sys.executable, "-c", _DATA_PARALLEL_SCRIPT], env=env,
                        capture_output=True, text=True, timeout=240, cwd=_HERE)
  assert proc.returncode == 0, proc.stderr[-3000:]
  line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")][-1]
  out = json.loads(line[len("RESULT "):])
  for name in ("mean", "ratio"):
    # The parameters moved (lr 3e-2 over 3 steps), by far more than the
    # float32 reduction-order differences between 1 and 4 devices.
    assert out[f"{name}_moved"] > 1e-2
    assert out[f"{name}_max_diff"] < 1e-6, out
    assert out[f"{name}_loss_1"] == pytest.approx(out[f"{name}_loss_4"],
                                                  rel=1e-6)
    # Jitted once per mesh: no retrace across steps.
    assert out[f"{name}_cache_size_1"] == 1
    assert out[f"{name}_cache_size_4"] == 1
  # Device i holds rows 2i, 2i+1 of the global batch.
  assert out["shards"] == [[0, 0.0], [2, 2.0], [4, 4.0], [6, 6.0]]
  assert "batch_size=6 must be a positive multiple of the number of devices (4)" \
      in out["error"]


def test_global_batch_and_example_keys_on_one_device():
  mesh = mesh_lib.make_mesh()
  batch = mesh_lib.global_batch(mesh, {"x": np.ones((4, 2), np.float32)})
  assert batch["x"].shape == (4, 2)
  assert batch["x"].sharding == mesh_lib.data_sharded(mesh)
  assert mesh_lib.local_batch_size(4, mesh) == 4 // jax.process_count()

  keys = jax.shard_map(
      lambda k: mesh_lib.example_keys(k, 3), mesh=mesh,
      in_specs=jax.sharding.PartitionSpec(),
      out_specs=jax.sharding.PartitionSpec(mesh_lib.DATA_AXIS))(
          jax.random.PRNGKey(5))
  expected = np.stack([jax.random.fold_in(jax.random.PRNGKey(5), i)
                       for i in range(3)])
  np.testing.assert_array_equal(keys, expected)


def test_batch_fields_must_agree_on_batch_size():
  mesh = mesh_lib.make_mesh()
  step = mesh_lib.make_eval_step(lambda p, b, k: (jax.numpy.sum(b["a"]), {}),
                                 mesh)
  batch = mesh_lib.global_batch(mesh, {"a": np.ones((2,)), "b": np.ones((3,))})
  with pytest.raises(ValueError, match="disagree on the batch size"):
    step({}, batch, jax.random.PRNGKey(0))
