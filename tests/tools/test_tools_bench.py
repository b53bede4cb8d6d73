"""Smoke tests of `tools/bench` (tiny sizes; no timing assertions) and the
line fit of its scaling sweeps."""

import contextlib
import dataclasses
import io
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from motiongrpo_jax.diffusion import sampler
from motiongrpo_jax.model.denoiser import cast_kernels
from motiongrpo_jax.model.denoiser import Denoiser
from motiongrpo_jax.tools import bench
from motiongrpo_jax.tools import bench_grpo
from motiongrpo_jax.tools import bench_sampler

# Keys every benchmark line carries.
COMMON = ("benchmark", "size", "peak_rss_bytes", "load_average_1m", "jax",
          "device")


def _run(argv):
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    bench.main(argv)
  lines = [l for l in out.getvalue().splitlines() if l.strip()]
  assert len(lines) == 1, lines
  result = json.loads(lines[0])
  for key in COMMON:
    assert key in result, key
  return result


def _positive(value):
  return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_bench_registry_has_every_subcommand():
  assert {"sampler", "pretrain_step", "critic_step", "grpo_step", "scaling",
          "guidance", "profile"} <= set(bench.SUBCOMMANDS)


def test_bench_sampler_tiny_compare_loop():
  r = _run(["sampler", "--size=tiny", "--batch=1", "--seq_len=8",
            "--repeats=1", "--compare_loop", "--hands=0"])
  assert _positive(r["fraction_of_peak"]) and _positive(r["compile_s"])
  assert r["xla_temp_bytes"] >= 0
  # Same noise draws: the Python loop reproduces the scan's sample.
  assert r["compare_loop"]["max_abs_diff_scan_vs_loop"] < 1e-5


@pytest.mark.parametrize("name", ["pretrain_step", "critic_step"])
def test_bench_train_steps_tiny(name):
  r = _run([name, "--size=tiny", "--repeats=1"])
  for key in ("steps_per_s", "sequences_per_s", "frames_per_s",
              "flops_per_step", "gflops_per_s", "fraction_of_peak",
              "compile_s", "xla_temp_bytes"):
    assert key in r, key
  assert _positive(r["flops_per_step"]) and _positive(r["fraction_of_peak"])
  assert _positive(r["fraction_of_peak_cpu"])
  assert r["frames_per_s"] == pytest.approx(8 * r["sequences_per_s"])
  if name == "critic_step":
    # Tiny: no base samples; 5 perturbation kinds + the positive.
    assert r["num_candidates"] == 6
    assert r["total_flops_per_step"] == pytest.approx(
        r["flops_per_step"] + r["negatives_flops"])


def test_bench_grpo_step_tiny():
  r = _run(["grpo_step", "--size=tiny", "--repeats=1", "--fused=0"])
  assert set(r["phase_seconds"]) == {"rollout", "rewards", "update"}
  assert r["flops_per_iteration"] == pytest.approx(
      sum(r["phase_flops"].values()))
  assert r["num_samples"] == r["batch"] * r["group_size"] == 4
  assert _positive(r["fraction_of_peak"])


def test_bench_scaling_tiny():
  # One point (compiles dominate; the fit is tested on its own below).
  r = _run(["scaling", "--size=tiny", "--what=group_size", "--points=3",
            "--repeats=1"])
  (point,) = r["points"]
  assert (point["group_size"], point["seq_len"], point["trained_steps"]) == (
      3, 8, 2)
  assert point["update_xla_temp_bytes"] > 0 and point["rollout_s"] > 0
  assert not any(k.startswith("fit_") for k in r)


def test_bench_guidance_tiny():
  r = _run(["guidance", "--size=tiny", "--seq_len=8", "--iterations=2",
            "--inner", "--inner_iterations=1", "--repeats=1"])
  assert _positive(r["guidance_seconds_per_window"])
  assert r["guidance_over_sampler"] == pytest.approx(
      r["guidance_seconds_per_batch"] / r["sampler_seconds_per_batch"])
  assert r["inner_iterations"] == 1
  assert r["inner_sampler_over_sampler"] == pytest.approx(
      r["inner_sampler_seconds_per_batch"] / r["sampler_seconds_per_batch"])


def test_bench_profile_tiny_polar():
  r = _run(["profile", "--size=tiny", "--repeats=1", "--parts=polar"])
  assert r["projection_speed"]["matrices"] == 4 * 8 * 21
  for name, acc in r["polar_accuracy"].items():
    assert acc["max_abs_diff_vs_svd"] < 1e-5, name


def test_line_fit_recovers_an_exact_line():
  fit = bench_grpo.line_fit([1, 2, 4, 8], [3.0, 5.0, 9.0, 17.0])
  assert fit["slope"] == pytest.approx(2.0)
  assert fit["intercept"] == pytest.approx(1.0)
  assert fit["r2"] == pytest.approx(1.0)
  noisy = bench_grpo.line_fit([1, 2, 3, 4], [1.0, 3.0, 2.0, 4.0])
  # Hand-computed: slope 0.8, intercept 0.5, R² = 3.2 / 5 = 0.64.
  assert (noisy["slope"], noisy["intercept"]) == pytest.approx((0.8, 0.5))
  assert noisy["r2"] == pytest.approx(0.64)


def test_bench_sampler_fast_reports_its_precision_choice():
  r = _run(["sampler", "--size=tiny", "--batch=1", "--seq_len=8",
            "--repeats=1", "--mode=fast", "--hands=0", "--accuracy"])
  probe = r["precision_probe"]
  assert r["matmul_dtype"] == probe["choice"]
  assert _positive(probe["float32_gflops"]) and _positive(
      probe["bfloat16_gflops"])
  # fast reuses x̂0 on late steps and may take bf16: no bound from the maths;
  # its accuracy on a trained checkpoint is measured instead (README).
  assert np.isfinite(r["accuracy_vs_exact"]["max_abs_diff"])
  assert (r["num_steps"], r["network_steps"]) == (30, 20)


def test_bench_sampler_polar_alone_is_exact_to_its_projection():
  # The Newton polar projection is the same matrix as the SVD to ~1e-6.
  r = _run(["sampler", "--size=tiny", "--batch=1", "--seq_len=8",
            "--repeats=1", "--mode=polar", "--hands=0", "--accuracy"])
  assert r["accuracy_vs_exact"]["max_abs_diff"] < 1e-3


def test_late_fp32_apply_fn_switches_precision_at_max_t():
  """At t <= max_t the fp32 twin on the fp32 params, above it the bf16 model
  on the cast params. Each branch runs its model's operations; a compiler may
  accumulate in another order, float32 ulps per operation: 1e-5 of |out| ≲ 1
  bounds that, while bf16 inputs (8-bit mantissa) move the output by far
  more, so a swapped branch fails."""
  bf16 = Denoiser(bench_sampler.denoiser_config("tiny", False, "bfloat16"))
  fp32 = Denoiser(dataclasses.replace(bf16.config, matmul_dtype="float32"))
  cond = sampler.sampler_condition(
      jnp.asarray(bench_sampler.walking_head(2, 9, 0)), jnp.zeros((2,)))
  params = bench_sampler.init_params(fp32, cond, 0)
  pair = (params, cast_kernels(params, bf16.config))
  x = jax.random.normal(jax.random.key(0), (2, 8, fp32.config.packed_dim))
  mixed = jax.jit(bench_sampler.late_fp32_apply_fn(bf16, max_t=100))
  outputs = []
  for t, model, p in ((100, fp32, pair[0]), (101, bf16, pair[1])):
    ts = jnp.full((2,), t, jnp.int32)
    alone = jax.jit(sampler.model_apply_fn(model))(
        p, x, ts, cond.T_world_cpf, cond.T_cpf_tm1_cpf_t)
    np.testing.assert_allclose(
        mixed(pair, x, ts, cond.T_world_cpf, cond.T_cpf_tm1_cpf_t), alone,
        rtol=0, atol=1e-5 * max(1.0, float(np.abs(alone).max())))
    outputs.append(alone)
  # The other precision at t = 101 is far outside that bound.
  other = jax.jit(sampler.model_apply_fn(fp32))(
      pair[0], x, jnp.full((2,), 101, jnp.int32), cond.T_world_cpf,
      cond.T_cpf_tm1_cpf_t)
  assert np.abs(np.asarray(other) - np.asarray(outputs[1])).max() > 1e-3


def test_compare_loop_refuses_a_mode_that_reuses_x0():
  with pytest.raises(SystemExit, match="--compare_loop"):
    bench.main(["sampler", "--size=tiny", "--mode=fast", "--compare_loop"])


def test_bench_profile_tiny_ops():
  r = _run(["profile", "--size=tiny", "--repeats=1", "--parts=ops"])
  ops = r["sampler_step_ops"]
  assert {"dense matmuls", "attention matmuls", "rotation projection",
          "layernorm", "softmax", "gelu", "rope"} <= set(ops["categories"])
  assert _positive(ops["flops"]) and _positive(ops["matmul_fraction_of_peak"])
