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

import pytest

# XLA options that compile several times faster (the programs are tiny).
_FAST_COMPILE = ("--xla_backend_optimization_level=0 "
                 "--xla_llvm_disable_expensive_passes=true")
_HERE = pathlib.Path(__file__).resolve().parent
_REPO = _HERE.parents[1]

# Two iterations with the same global batch on 1 and on 2 devices.
_SCRIPT = r"""
import json
import jax, numpy as np
import grpo_tiny as tiny
from motiongrpo_jax.train import mesh as mesh_lib, state as state_lib

assert jax.device_count() == 2, jax.devices()
out = {}
final = []
for devices in (jax.devices()[:1], jax.devices()):
  n = len(devices)
  mesh = mesh_lib.make_mesh(devices)
  step = tiny.make_step(mesh)
  state = mesh_lib.put_replicated(mesh, state_lib.create(
      tiny.params(), tiny.optimizer(), jax.random.PRNGKey(0)))
  ref = mesh_lib.put_replicated(mesh, tiny.params())
  batch = mesh_lib.global_batch(mesh, tiny.batch())
  for i in range(2):
    state, metrics = step(state, batch, ref_params=ref)
    out[f"metrics_{n}_{i}"] = {k: float(v) for k, v in
                               jax.device_get(metrics).items()}
  out[f"step_{n}"] = int(state.step)
  out[f"cache_size_{n}"] = step.jitted._cache_size()
  final.append(jax.device_get(state.params))
  out[f"update_{n}"] = max(jax.tree.leaves(jax.tree.map(
      lambda a, b: float(np.abs(a - b).max()), final[-1],
      jax.device_get(tiny.params()))))
out["max_diff"] = max(jax.tree.leaves(jax.tree.map(
    lambda a, b: float(np.abs(a - b).max()), final[0], final[1])))
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def result():
  env = dict(os.environ)
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + _FAST_COMPILE +
                      " --xla_force_host_platform_device_count=2").strip()
  env["JAX_PLATFORMS"] = "cpu"
  env["PYTHONPATH"] = os.pathsep.join(
      [str(_HERE), str(_REPO), env.get("PYTHONPATH", "")])
  proc = subprocess.run([sys.executable, "-c", _SCRIPT], env=env,
                        capture_output=True, text=True, timeout=900,
                        check=False)
  assert proc.returncode == 0, proc.stderr[-4000:]
  line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")][-1]
  return json.loads(line[len("RESULT "):])


def test_two_devices_equal_one_device(result):
  assert result["step_1"] == result["step_2"] == 2
  # The updates are real (8 inner updates with clipped ratios) and the two
  # runs agree to round-off: within 1 % of the parameter change. (Different
  # keys or minibatches per device would give different samples, rewards
  # and updates altogether.)
  assert result["update_1"] > 1e-3
  assert result["max_diff"] < 0.01 * result["update_1"], result
  for i in range(2):
    one, two = result[f"metrics_1_{i}"], result[f"metrics_2_{i}"]
    assert set(one) == set(two)
    for name in ("loss", "policy_loss", "kl", "advantage_mean",
                 "advantage_group_std", "reward/pos_mean",
                 "reward/rot_group_std", "diversity_joint_distance",
                 "zero_advantage_fraction", "clip_fraction", "grad_norm",
                 "ratio_min", "ratio_max", "first_policy_loss"):
      assert one[name] == pytest.approx(two[name], rel=1e-2, abs=1e-4), name


def test_ratio_one_and_zero_kl_before_the_first_update(result):
  first = result["metrics_1_0"]
  # Re-scoring with the sampling parameters reproduces the stored log-probs.
  assert first["first_log_ratio_abs_max"] < 1e-4
  assert first["first_kl"] < 1e-8  # policy = reference at iteration 0
  # Later updates moved the policy: ratios ≠ 1, KL > 0.
  assert first["ratio_max"] > 1.0 + 1e-4 or first["ratio_min"] < 1.0 - 1e-4
  assert first["kl"] > 0
  second = result["metrics_1_1"]
  assert second["first_log_ratio_abs_max"] < 1e-4  # new rollouts, new old π
  assert second["first_kl"] > 0  # the policy has left the reference
  for m in (first, second):
    assert m["skipped"] == 0 and m["nonfinite_steps"] == 0
    assert m["num_trained_steps"] == 2  # 3 DDIM steps, the last has σ = 0
    assert 0 <= m["zero_advantage_fraction"] <= 1
    assert m["diversity_joint_distance"] > 0


def test_compiled_once(result):
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
