"""The GRPO iteration: N devices = 1 device, ratio = 1 and KL = 0 before the
first update, one compile, and start-up errors.

The multi-device run is a subprocess: the number of fake CPU devices
(`XLA_FLAGS=--xla_force_host_platform_device_count=2`) must be set before JAX
initialises.
"""

import dataclasses
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

_HERE = pathlib.Path(__file__).resolve().parent
_REPO = _HERE.parents[1]

# Two iterations with the same global batch on 1 and on 2 devices, plus the
# round-off yardstick and two deliberate faults (see the test's docstring).
_SCRIPT = r"""
import dataclasses, json
import jax, numpy as np
import grpo_tiny as tiny
from motiongrpo_jax.train import mesh as mesh_lib, state as state_lib

assert jax.device_count() == 2, jax.devices()
init = tiny.params()


def perturbed(seed):
  # Every parameter times (1 + 2^-22·N(0, 1)): about two float32 ulps.
  leaves, tree = jax.tree.flatten(init)
  keys = jax.random.split(jax.random.key(100 + seed), len(leaves))
  return jax.tree.unflatten(tree, [
      x * (1 + 2.0**-22 * jax.random.normal(k, x.shape))
      for x, k in zip(leaves, keys)])


def run(step, mesh, params, seed=0, rows=None, with_ref=True):
  # Host copies: the state is donated and must not share buffers.
  state = mesh_lib.put_replicated(mesh, state_lib.create(
      jax.device_get(params), tiny.optimizer(), jax.random.PRNGKey(seed)))
  ref = (mesh_lib.put_replicated(mesh, jax.device_get(init)) if with_ref
         else None)
  batch = tiny.batch()
  if rows is not None:
    batch = {k: v[rows] for k, v in batch.items()}
  batch = mesh_lib.global_batch(mesh, batch)
  metrics = []
  for _ in range(2):
    state, m = step(state, batch, ref_params=ref)
    metrics.append({k: float(v) for k, v in jax.device_get(m).items()})
  return {"metrics": metrics, "step": int(state.step),
          "params": jax.device_get(state.params)}


meshes = {n: mesh_lib.make_mesh(jax.devices()[:n]) for n in (1, 2)}
steps = {n: tiny.make_step(meshes[n]) for n in (1, 2)}
kl_to_old = dataclasses.replace(tiny.CONFIG, objective=dataclasses.replace(
    tiny.CONFIG.objective, kl_reference="old"))
# Step 0 trained, step 1 (the other σ > 0 step) anchored to the base.
anchored = dataclasses.replace(tiny.CONFIG, objective=dataclasses.replace(
    tiny.CONFIG.objective, train_window=1, anchor_beta=0.1, anchor_steps=1))
runs = {
    "one": run(steps[1], meshes[1], init),
    "two": run(steps[2], meshes[2], init),
    "perturbed_0": run(steps[1], meshes[1], perturbed(0)),
    "perturbed_1": run(steps[1], meshes[1], perturbed(1)),
    "perturbed_2": run(steps[1], meshes[1], perturbed(2)),
    # Faults the 2-device step must not have: other keys; groups that see
    # other sequences' keys (the batch's rows rotated).
    "fault_keys": run(steps[2], meshes[2], init, seed=1),
    "fault_groups": run(steps[2], meshes[2], init, rows=[1, 2, 3, 0]),
    # The KL to the policy that drew the rollouts: no base parameters.
    "kl_old": run(tiny.make_step(meshes[1], kl_to_old), meshes[1], init,
                  with_ref=False),
    "anchored": run(tiny.make_step(meshes[1], anchored), meshes[1], init),
}
one = runs["one"]["params"]
out = {"cache_size_1": steps[1].jitted._cache_size(),
       "cache_size_2": steps[2].jitted._cache_size(),
       "update": max(jax.tree.leaves(jax.tree.map(
           lambda a, b: float(np.abs(a - b).max()), one, init)))}
for name, r in runs.items():
  out[name] = {"metrics": r["metrics"], "step": r["step"],
               "param_diff": max(jax.tree.leaves(jax.tree.map(
                   lambda a, b: float(np.abs(a - b).max()), r["params"], one)))}
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def result():
  env = dict(os.environ)
  env["XLA_FLAGS"] += " --xla_force_host_platform_device_count=2"
  env["JAX_PLATFORMS"] = "cpu"
  env["PYTHONPATH"] = os.pathsep.join(
      [str(_HERE), str(_REPO), env.get("PYTHONPATH", "")])
  proc = subprocess.run([sys.executable, "-c", _SCRIPT], env=env,
                        capture_output=True, text=True, timeout=900,
                        check=False)
  assert proc.returncode == 0, proc.stderr[-4000:]
  line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")][-1]
  return json.loads(line[len("RESULT "):])


# Continuous metrics compared between the runs.
_COMPARED = ("loss", "policy_loss", "kl", "advantage_mean",
             "advantage_group_std", "reward/pos_mean", "reward/rot_group_std",
             "diversity_joint_distance", "grad_norm", "ratio_min",
             "ratio_max", "first_policy_loss")
# A difference counts as round-off when it is within this factor of the
# largest difference the perturbed runs show.
_ROUND_OFF_FACTOR = 10.0
# Float32 resolution: a metric may differ by a few ulps of its own value
# even where both perturbed runs happen to round to the same number.
_ULPS = 16 * np.finfo(np.float32).eps


def _tolerances(result):
  """Per iteration and metric, and for the parameters, the largest
  difference that round-off explains (see `test_two_devices_...`)."""
  one = result["one"]["metrics"]
  perturbed = [result[f"perturbed_{i}"] for i in range(3)]
  metric_tol = [{
      name: _ROUND_OFF_FACTOR * max(abs(p["metrics"][i][name] - one[i][name])
                                    for p in perturbed)
            + _ULPS * max(abs(one[i][name]), 1.0)
      for name in _COMPARED} for i in range(2)]
  param_tol = (_ROUND_OFF_FACTOR * max(p["param_diff"] for p in perturbed)
               + _ULPS * result["update"])
  return metric_tol, param_tol


def _beyond_round_off(result, name):
  """The metrics of run `name` that differ from the 1-device run by more
  than round-off explains, and whether its parameters do."""
  metric_tol, param_tol = _tolerances(result)
  one, other = result["one"]["metrics"], result[name]["metrics"]
  bad = [f"{m}@{i}: {other[i][m]} vs {one[i][m]} (tolerance {metric_tol[i][m]:.3g})"
         for i in range(2) for m in _COMPARED
         if abs(other[i][m] - one[i][m]) > metric_tol[i][m]]
  return bad, result[name]["param_diff"] > param_tol


def test_two_devices_equal_one_device(result):
  """The 2-device step is the 1-device step on the same global batch.

  One and two devices run different XLA programs (per-device batches of 4 and
  2 sequences: other kernel blockings and summation orders, which also differ
  between CPUs, e.g. AVX-512 vs AVX2; per-device gradient sums then a pmean),
  so they agree only to round-off, and round-off grows through rollouts,
  group-normalised rewards and Adam. The yardstick is measured on the same
  program on this machine: the 1-device run repeated with every parameter
  perturbed by ~2 float32 ulps. A difference within 10× the largest perturbed
  difference (plus 16 ulps of the value) is round-off; other keys,
  minibatches or groups change samples, rewards and updates altogether, far
  beyond it (`test_faults_are_detected`).
  """
  assert result["one"]["step"] == result["two"]["step"] == 2
  assert result["update"] > 1e-4  # the updates are real
  bad, params_bad = _beyond_round_off(result, "two")
  assert not bad, bad
  assert not params_bad, (result["two"]["param_diff"], _tolerances(result)[1])
  for i in range(2):
    assert set(result["one"]["metrics"][i]) == set(result["two"]["metrics"][i])


@pytest.mark.parametrize("fault", ["fault_keys", "fault_groups"])
def test_faults_are_detected(result, fault):
  """The yardstick is tight enough to see a 2-device step drawing other keys
  or giving groups other sequences' keys."""
  bad, params_bad = _beyond_round_off(result, fault)
  assert params_bad and len(bad) >= len(_COMPARED) // 2, bad


def test_ratio_one_and_zero_kl_before_the_first_update(result):
  first = result["one"]["metrics"][0]
  # Re-scoring with the sampling parameters reproduces the stored log-probs.
  assert first["first_log_ratio_abs_max"] < 1e-4
  assert first["first_kl"] < 1e-8  # policy = reference at iteration 0
  # Later updates moved the policy: ratios ≠ 1, KL > 0.
  assert first["ratio_max"] > 1.0 + 1e-4 or first["ratio_min"] < 1.0 - 1e-4
  assert first["kl"] > 0
  second = result["one"]["metrics"][1]
  assert second["first_log_ratio_abs_max"] < 1e-4  # new rollouts, new old π
  assert second["first_kl"] > 0  # the policy has left the reference
  for m in (first, second):
    assert m["skipped"] == 0 and m["nonfinite_steps"] == 0
    assert m["num_trained_steps"] == 2  # 3 DDIM steps, the last has σ = 0
    assert 0 <= m["zero_advantage_fraction"] <= 1
    assert m["diversity_joint_distance"] > 0


def test_kl_to_the_old_policy(result):
  """With `kl_reference="old"` every iteration's first update sees KL 0 (the
  reference is the policy that drew its rollouts), where the base reference
  shows the distance travelled; later updates see KL > 0. No base
  parameters are needed. Iteration 0 is the base run's, to round-off."""
  old, base = result["kl_old"]["metrics"], result["one"]["metrics"]
  metric_tol, _ = _tolerances(result)
  assert not [m for m in _COMPARED
              if abs(old[0][m] - base[0][m]) > metric_tol[0][m]]
  assert base[1]["first_kl"] > 0
  assert old[1]["first_kl"] < 1e-8 and old[1]["kl"] > 0
  assert result["kl_old"]["step"] == 2


def test_anchor_on_the_untrained_step(result):
  """Step 0 trained, step 1 anchored by a KL to the base: 0 before the first
  update, > 0 once the policy has moved, and in the loss with its β."""
  first, second = result["anchored"]["metrics"]
  assert first["num_trained_steps"] == 1
  assert first["first_anchor_kl"] < 1e-8 < first["anchor_kl"]
  assert second["first_anchor_kl"] > 0
  for m in (first, second):
    np.testing.assert_allclose(
        m["loss"], m["policy_loss"] + 0.1 * m["kl"] + 0.1 * m["anchor_kl"],
        rtol=1e-5, atol=1e-9)


def test_compiled_once(result):
  # Seven runs, all on the two step functions' first compilations.
  assert result["cache_size_1"] == 1 and result["cache_size_2"] == 1


def test_startup_errors():
  import grpo_tiny as tiny  # pylint: disable=import-outside-toplevel
  from motiongrpo_jax.grpo import group_sampler  # pylint: disable=import-outside-toplevel
  from motiongrpo_jax.grpo import rewards  # pylint: disable=import-outside-toplevel
  from motiongrpo_jax.train import mesh as mesh_lib  # pylint: disable=import-outside-toplevel
  mesh = mesh_lib.make_mesh()
  with pytest.raises(ValueError, match="group_size"):
    tiny.make_step(mesh, dataclasses.replace(
        tiny.CONFIG, group=group_sampler.GroupConfig(group_size=1)))
  with pytest.raises(ValueError, match="num_minibatches"):
    tiny.CONFIG.validate(local_sequences=1)  # 3 samples into 2 × 3 parts
  with pytest.raises(ValueError, match="critic"):
    tiny.make_step(mesh, dataclasses.replace(
        tiny.CONFIG, reward=rewards.RewardConfig(weight_vis=1.0)))
  with pytest.raises(ValueError, match="sampler.reuse_x0_from"):
    dataclasses.replace(tiny.CONFIG, sampler=dataclasses.replace(
        tiny.CONFIG.sampler, reuse_x0_from=1)).validate()


@pytest.mark.parametrize("draws", [1, 2])
def test_data_loss_adds_its_gradient(draws):
  """`objective.data_beta` = β adds β × the gradient of EgoAllo's loss on
  frames 1..L of the batch's ground truth (conditioned like the rollouts,
  t and ε from the documented keys; `data_draws` copies of the batch, each
  with its own draws) to the update. With plain SGD and one update per
  iteration the two runs share their rollouts and policy gradient, so their
  parameters differ by exactly −lr·β·g_data."""
  import jax  # pylint: disable=import-outside-toplevel
  import optax  # pylint: disable=import-outside-toplevel
  from jax.sharding import PartitionSpec as P  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import grpo_tiny as tiny  # pylint: disable=import-outside-toplevel
  from motiongrpo_jax.diffusion import loss  # pylint: disable=import-outside-toplevel
  from motiongrpo_jax.grpo import update  # pylint: disable=import-outside-toplevel
  from motiongrpo_jax.train import denoiser_loss  # pylint: disable=import-outside-toplevel
  from motiongrpo_jax.train import mesh as mesh_lib  # pylint: disable=import-outside-toplevel
  from motiongrpo_jax.train import state as state_lib  # pylint: disable=import-outside-toplevel
  mesh = mesh_lib.make_mesh(jax.devices()[:1])
  beta, lr = 10.0, 1.0
  tx = optax.sgd(lr)
  batch = tiny.batch()
  init = tiny.params()

  def one_iteration(data_beta):
    config = dataclasses.replace(
        tiny.CONFIG, num_epochs=1, num_minibatches=1, num_microbatches=1,
        objective=dataclasses.replace(tiny.CONFIG.objective, kl_beta=0.0,
                                      data_beta=data_beta, data_draws=draws))
    state = mesh_lib.put_replicated(mesh, state_lib.create(
        jax.device_get(init), tx, jax.random.PRNGKey(0)))
    state, metrics = tiny.make_step(mesh, config, tx)(
        state, mesh_lib.global_batch(mesh, batch))
    return jax.device_get(state.params), jax.device_get(metrics)

  plain, _ = one_iteration(0.0)
  with_data, metrics = one_iteration(beta)

  # The data term by hand: iteration 0's key, its k_steps, update u.
  k_steps = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(0), 0),
                             3)[1]
  ground_truth = update.data_batch(jax.tree.map(jnp.asarray, batch))
  np.testing.assert_array_equal(ground_truth["body_quats"],
                                batch["body_quats"][:, 1:])
  np.testing.assert_array_equal(ground_truth["contacts"],
                                batch["contacts"][:, 1:])
  assert ground_truth["T_world_cpf"].shape == (tiny.NUM_SEQUENCES,
                                                tiny.NUM_POSES - 1, 7)
  loss_fn = denoiser_loss.make_loss_fn(tiny.MODEL, loss.LossConfig())
  grad_fn = jax.jit(jax.shard_map(
      lambda p, b, k: jax.lax.pmean(jax.grad(
          lambda p: loss_fn(p, b, k)[0])(
              jax.lax.pcast(p, mesh_lib.DATA_AXIS, to="varying")),
          mesh_lib.DATA_AXIS),
      mesh=mesh, in_specs=(P(), P(mesh_lib.DATA_AXIS), P(mesh_lib.DATA_AXIS)),
      out_specs=P()))

  def data_step(u):
    keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(
        jax.random.fold_in(jax.random.fold_in(k_steps, 2), u),
        jnp.arange(draws * tiny.NUM_SEQUENCES))
    copies = jax.tree.map(lambda x: jnp.concatenate([x] * draws),
                          ground_truth)
    return jax.tree.map(lambda g: lr * beta * g,
                        grad_fn(init, copies, keys))

  # Float32 bound on ‖Δ + lr·β·g‖: the parameters are rounded once per run
  # (≤ 2 ulps each) and the gradient carries the summation error of its
  # loss's n = B·L·d terms (≤ n·eps relative, the classical bound).
  eps = np.finfo(np.float32).eps
  n = draws * tiny.NUM_SEQUENCES * (tiny.NUM_POSES - 1) * tiny.DIM
  norm = lambda tree: float(optax.tree.norm(tree))  # pylint: disable=unnecessary-lambda-assignment
  error = lambda step: norm(jax.tree.map(  # pylint: disable=unnecessary-lambda-assignment
      lambda a, b, s: (a - b) + s, with_data, plain, step))
  step = data_step(0)
  bound = 2 * eps * (norm(init) + norm(step)) + n * eps * norm(step)
  assert error(step) <= bound, (error(step), bound)
  # The check discriminates: the next update's draws (other t and ε) give
  # another gradient.
  assert error(data_step(1)) > 10 * bound
  # The reported loss is one float32 sum of the two: a few ulps of its terms.
  terms = abs(metrics["policy_loss"]) + beta * abs(metrics["data_loss"])
  np.testing.assert_allclose(
      metrics["loss"], metrics["policy_loss"] + beta * metrics["data_loss"],
      rtol=0, atol=4 * eps * terms)
  assert metrics["data_grad_norm"] > 0


def test_data_loss_needs_the_loss_fn():
  """A data term without the loss function, or a negative β: one-line errors."""
  import grpo_tiny as tiny  # pylint: disable=import-outside-toplevel
  from motiongrpo_jax.body import builtin_body  # pylint: disable=import-outside-toplevel
  from motiongrpo_jax.diffusion import sampler  # pylint: disable=import-outside-toplevel
  from motiongrpo_jax.grpo import update  # pylint: disable=import-outside-toplevel
  from motiongrpo_jax.train import mesh as mesh_lib  # pylint: disable=import-outside-toplevel
  config = dataclasses.replace(tiny.CONFIG, objective=dataclasses.replace(
      tiny.CONFIG.objective, data_beta=1.0))
  with pytest.raises(ValueError, match="data_beta"):
    update.make_train_step(sampler.model_apply_fn(tiny.MODEL), tiny.optimizer(),
                           mesh_lib.make_mesh(), config, builtin_body(),
                           tiny.DIM)
  with pytest.raises(ValueError, match="objective.data_beta=-1"):
    dataclasses.replace(config.objective, data_beta=-1.0).validate()
  with pytest.raises(ValueError, match="objective.data_draws=0"):
    dataclasses.replace(config.objective, data_draws=0).validate()
