"""`bench sampler`: EgoAllo's 30-step windowed sampler, exact or fast
(`tools/bench.py` describes the modes)."""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from motiongrpo_jax.diffusion import sampler
from motiongrpo_jax.diffusion import windows
from motiongrpo_jax.model import packing
from motiongrpo_jax.model import precision
from motiongrpo_jax.model.denoiser import cast_kernels
from motiongrpo_jax.model.denoiser import Denoiser
from motiongrpo_jax.model.denoiser import DenoiserConfig

from motiongrpo_jax.tools import bench_lib

# --- sampler ---

# EgoAllo's PyTorch sampler (30 steps, 129 poses, default size, 2 threads) on
# the 2-core CPU of the issue; seconds per batch.
EGOALLO_SAMPLER_SECONDS = {1: 7.2, 8: 30.6}


def _sampler_arguments(parser: argparse.ArgumentParser) -> None:
  bench_lib.size_argument(parser, "default", "default: EgoAllo's 50.4M model; demo: "
                "a small one; tiny: a toy one (tests).")
  parser.add_argument("--batch", type=int, default=1)
  parser.add_argument("--seq_len", type=int, default=128,
                      help="frames L (the head trajectory has L+1 poses).")
  parser.add_argument("--mode", choices=tuple(SAMPLER_MODES), default="exact",
                      help="exact | fast (bf16 matmuls where this backend runs "
                      "them faster, non-redundant windows, polar projection, "
                      "x̂0 reused on every other late step) | fast_fp32 (fast "
                      "without bf16) | bf16 | windows | polar | reuse (each "
                      "part of fast alone).")
  parser.add_argument("--hands", type=int, choices=(0, 1), default=1,
                      help="model with hands (d = 496) or without (226).")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--accuracy", action="store_true",
                      help="also run exact mode with the same params and "
                      "noise and report the deviation of this mode's sample.")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--compare_loop", action="store_true",
                      help="also time a Python loop over a jitted "
                      "`sampler_step` (same params, condition and noise) "
                      "against the jitted `lax.scan` rollout.")


def denoiser_config(size: str, hands: bool, matmul_dtype: str):
  if size == "default":
    return DenoiserConfig(include_hands=hands, matmul_dtype=matmul_dtype)
  if size == "tiny":
    return DenoiserConfig(d_latent=16, d_feedforward=32, d_noise_emb=16,
                          num_heads=2, encoder_layers=1, decoder_layers=1,
                          include_hands=hands, matmul_dtype=matmul_dtype)
  return DenoiserConfig(d_latent=64, d_feedforward=128, d_noise_emb=64,
                        num_heads=4, encoder_layers=2, decoder_layers=2,
                        include_hands=hands, matmul_dtype=matmul_dtype)


def walking_head(batch: int, num_poses: int, seed: int) -> np.ndarray:
  """A plausible head trajectory: walking along +x at 1.2 m/s, 30 fps."""
  rng = np.random.default_rng(seed)
  k = np.arange(num_poses)
  poses = np.zeros((batch, num_poses, 7), np.float32)
  poses[..., :4] = [0.5, 0.5, 0.5, 0.5]  # CPF +z along world +x, +y up
  poses[..., 4] = 0.04 * k + rng.normal(0.0, 0.01, (batch, 1))
  poses[..., 5] = 0.02 * np.sin(0.2 * k)
  poses[..., 6] = 1.6 + 0.02 * np.sin(0.4 * k)
  return poses


def init_params(model, cond, seed: int):
  """Random parameters of `model` for a condition's feature sizes."""
  dim = model.config.packed_dim
  return jax.jit(model.init)(
      jax.random.key(seed), jnp.zeros((1, 8, dim)), jnp.ones((1,), jnp.int32),
      cond.T_world_cpf[:1, :8], cond.T_cpf_tm1_cpf_t[:1, :8])["params"]


def _sampler_program(apply_fn, config, batch, seq_len, dim, params, cond,
                     model, model_params):
  """The compiled rollout of `apply_fn`, its FLOPs and compile time.

  FLOPs: one step of `model` (no loop, so XLA's count is exact) × the steps
  that run the network; outside the loop there are only the noise draws.
  """
  fn = sampler.make_rollout_fn(apply_fn, config, packed_dim=dim)
  start = time.perf_counter()
  compiled = fn.lower(params, cond, key=jax.random.key(0)).compile()
  compile_s = time.perf_counter() - start
  consts = jax.tree.map(lambda c: c[0], sampler.step_constants(config))
  step = jax.jit(lambda p, x, c: sampler.sampler_step(
      sampler.model_apply_fn(model), p, x, consts, c,
      noise=jnp.zeros_like(x), config=config).x_next)
  x = jnp.zeros((batch, seq_len, dim), jnp.float32)
  step_flops = float(step.lower(model_params, x, cond).cost_analysis()["flops"])
  total_flops = step_flops * int(sampler.network_steps(config).sum())
  return compiled, total_flops, compile_s


def late_fp32_apply_fn(model: Denoiser, max_t: int) -> sampler.ApplyFn:
  """An `ApplyFn` on params (fp32, bf16-cast): `model` (bf16 matmuls) above
  t = `max_t`, its fp32 twin at and below (the sampler gives every row of a
  call the same t)."""
  fp32 = sampler.model_apply_fn(Denoiser(dataclasses.replace(
      model.config, matmul_dtype="float32")))
  bf16 = sampler.model_apply_fn(model)

  def apply_fn(params, x_t, t, *args, **kwargs):
    return jax.lax.cond(t[0] <= max_t,
                        lambda: fp32(params[0], x_t, t, *args, **kwargs),
                        lambda: bf16(params[1], x_t, t, *args, **kwargs))

  return apply_fn


# fast mode's `SamplerConfig.reuse_x0_from`: the network skips every other
# step from here on. Its accuracy cost on a trained checkpoint is in README.
FAST_REUSE_X0_FROM = 10
# With bf16, fast runs the network in fp32 at t <= this (the last 10 steps):
# bf16 there made a trained model's motion 18 % more jittery (README).
FAST_FP32_MAX_T = 100

# mode -> (matmul dtype, sampler options). "auto": `model/precision.py`'s
# probe picks bf16 only where this backend runs it clearly faster.
SAMPLER_MODES = {
    "exact": ("float32", {}),
    "fast": ("auto", {"non_redundant_windows": True,
                      "rotation_projection": "polar",
                      "reuse_x0_from": FAST_REUSE_X0_FROM}),
    # fast's savings without bf16: what fast runs where the probe rejects it.
    "fast_fp32": ("float32", {"non_redundant_windows": True,
                              "rotation_projection": "polar",
                              "reuse_x0_from": FAST_REUSE_X0_FROM}),
    # The parts of "fast" alone, to attribute its speed and accuracy.
    "bf16": ("bfloat16", {}),
    "windows": ("float32", {"non_redundant_windows": True}),
    "polar": ("float32", {"rotation_projection": "polar"}),
    "reuse": ("float32", {"reuse_x0_from": FAST_REUSE_X0_FROM}),
}


def sampler_mode(mode: str):
  """(matmul dtype, SamplerConfig) of a mode, "auto" resolved."""
  matmul_dtype, options = SAMPLER_MODES[mode]
  if matmul_dtype == "auto":
    matmul_dtype = precision.fast_matmul_dtype()
  return matmul_dtype, sampler.SamplerConfig(return_means=False, **options)


def _rotation_angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Angle of aᵀb for (..., 3, 3) orthogonal matrices, degrees."""
  trace = np.einsum("...ij,...ij->...", a, b)
  return np.degrees(np.arccos(np.clip((trace - 1.0) / 2.0, -1.0, 1.0)))


@bench_lib.subcommand("sampler", "EgoAllo's 30-step windowed sampler (one rollout).",
            _sampler_arguments)
def bench_sampler(args: argparse.Namespace) -> dict[str, Any]:

  matmul_dtype, config = sampler_mode(args.mode)
  model = Denoiser(denoiser_config(args.size, bool(args.hands), matmul_dtype))
  batch, seq_len = args.batch, args.seq_len
  Ts = jnp.asarray(walking_head(batch, seq_len + 1, args.seed))
  cond = sampler.sampler_condition(Ts, jnp.zeros((batch,), jnp.float32))
  dim = model.config.packed_dim
  params = init_params(model, cond, args.seed)
  num_params = sum(int(np.size(p)) for p in jax.tree.leaves(params))
  exact_params = params

  apply_fn = sampler.model_apply_fn(model)
  if matmul_dtype == "bfloat16":
    # Kernels stored in bf16 once: same outputs, no per-call weight casts.
    params = cast_kernels(params, model.config)
    if args.mode == "fast":
      apply_fn = late_fp32_apply_fn(model, FAST_FP32_MAX_T)
      params = (exact_params, params)
  compiled, total_flops, compile_s = _sampler_program(
      apply_fn, config, batch, seq_len, dim, params, cond, model,
      exact_params)
  key = jax.random.key(args.seed + 1)
  jax.block_until_ready(compiled(params, cond, key=key))  # warm-up
  load_before = bench_lib.load_average()
  timed = bench_lib.timed(lambda: compiled(params, cond, key=key).xs, args.repeats)
  times = [wall for wall, _ in timed]
  best = min(times)

  fields = bench_lib.peak_fields(args.size)
  peak_fp32 = {"best": fields["peak_gflops"],
               "xla": fields["peak_fp32_xla_gflops"],
               "numpy": fields["peak_fp32_numpy_gflops"]}
  peaks = {"peak_gflops_per_cpu_s": fields["peak_gflops_per_cpu_s"],
           "peak_fp32_gflops": peak_fp32["best"],
           "peak_fp32_xla_gflops": peak_fp32["xla"],
           "peak_fp32_numpy_gflops": peak_fp32["numpy"]}
  peak = peak_fp32["best"]
  if matmul_dtype == "bfloat16":
    peaks["peak_bf16_gflops"] = bench_lib.matmul_peak_gflops("bfloat16")["best"]
    peak = peaks["peak_bf16_gflops"]

  gflops_per_s = total_flops / best / 1e9
  result = {
      "benchmark": "sampler",
      "size": args.size,
      "mode": args.mode,
      "matmul_dtype": matmul_dtype,
      # Why: the probe's bf16 vs fp32 rates ("auto" modes only).
      **({"precision_probe": precision.probe()}
         if SAMPLER_MODES[args.mode][0] == "auto" else {}),
      "batch": batch,
      "seq_len": seq_len,
      "packed_dim": dim,
      "num_params": num_params,
      "num_steps": config.num_steps,
      # Steps that run the network (fast mode reuses x̂0 on the others).
      "network_steps": int(sampler.network_steps(config).sum()),
      "windows": [list(s) for s in windows.window_spans(
          seq_len, config.window_size, config.overlap,
          config.non_redundant_windows)],
      "sequences_per_s": batch / best,
      "seconds_per_batch": best,
      "seconds_per_batch_median": statistics.median(times),
      "gflops_per_s": gflops_per_s,
      "fraction_of_peak": gflops_per_s / peak,
      "peak_gflops": peak,
      **peaks,
      "flops_per_sequence": total_flops / batch,
      "compile_s": compile_s,
      # Process CPU seconds per call (all threads): with other jobs on the
      # machine, cpu_seconds / threads estimates the wall time when alone.
      "cpu_seconds_per_batch": min(cpu for _, cpu in timed),
      # Per CPU-second vs the fp32 matmul's (bf16 modes: still fp32's).
      "fraction_of_peak_cpu": bench_lib.cpu_fraction(
          total_flops, min(cpu for _, cpu in timed), fields),
      "load_average_1m": load_before,
      "load_average_1m_after": bench_lib.load_average(),
      "peak_rss_bytes": bench_lib.peak_rss_bytes(),
      **bench_lib.memory_stats(compiled),
      **bench_lib.environment(),
  }
  if args.size == "default" and seq_len == 128 and batch in EGOALLO_SAMPLER_SECONDS:
    result["egoallo_seconds_per_batch"] = EGOALLO_SAMPLER_SECONDS[batch]
    result["speedup_vs_egoallo"] = EGOALLO_SAMPLER_SECONDS[batch] / best

  if args.compare_loop:
    result["compare_loop"] = _compare_loop(apply_fn, dim, config, params, cond,
                                           key, compiled, best, args.repeats)

  if args.accuracy:
    exact_model = Denoiser(dataclasses.replace(model.config,
                                               matmul_dtype="float32"))
    _, exact_config = sampler_mode("exact")
    ours = np.asarray(compiled(params, cond, key=key).xs[-1])
    exact = np.asarray(sampler.make_rollout_fn(
        sampler.model_apply_fn(exact_model), exact_config,
        packed_dim=dim)(exact_params, cond, key=key).xs[-1])
    fields_ours = packing.unpack(ours, model.config.include_hands)
    fields_exact = packing.unpack(exact, model.config.include_hands)
    angles = _rotation_angle_deg(fields_ours.body_rotmats,
                                 fields_exact.body_rotmats)
    result["accuracy_vs_exact"] = {
        "max_abs_diff": float(np.abs(ours - exact).max()),
        "mean_abs_diff": float(np.abs(ours - exact).mean()),
        "body_rotation_deg_mean": float(angles.mean()),
        "body_rotation_deg_median": float(np.median(angles)),
        "body_rotation_deg_max": float(angles.max()),
        "contacts_max_abs_diff": float(np.abs(
            fields_ours.contacts - fields_exact.contacts).max()),
        "betas_max_abs_diff": float(np.abs(
            fields_ours.betas - fields_exact.betas).max()),
    }
  return result


def _compare_loop(apply_fn, dim, config, params, cond, key, compiled,
                  scan_s: float, repeats: int) -> dict[str, Any]:
  """The jitted-scan rollout vs a Python loop over a jitted `sampler_step`.

  The loop draws the same noise as `sampler.rollout` (x_T from fold_in(key,
  0), step k's ε from fold_in(key, k+1)), so both give the same sample up to
  round-off.
  """
  consts = sampler.step_constants(config)
  batch, seq_len = cond.T_world_cpf.shape[:2]

  @jax.jit
  def step(params, x, step_consts, cond, step_key):
    noise = jax.random.normal(step_key, x.shape, jnp.float32)
    return sampler.sampler_step(apply_fn, params, x, step_consts, cond,
                                noise=noise, config=config).x_next

  def loop():
    x = jax.random.normal(jax.random.fold_in(key, 0), (batch, seq_len, dim),
                          jnp.float32)
    for k in range(config.num_steps):
      x = step(params, x, jax.tree.map(lambda c: c[k], consts), cond,
               jax.random.fold_in(key, k + 1))
    return x

  start = time.perf_counter()
  jax.block_until_ready(loop())  # Compiles the step once.
  first_s = time.perf_counter() - start
  loop_s = min(bench_lib.best_time(loop, repeats))
  scan_x = np.asarray(compiled(params, cond, key=key).xs[-1])
  loop_x = np.asarray(loop())
  return {"scan_seconds": scan_s, "loop_seconds": loop_s,
          "loop_first_call_seconds_incl_compile": first_s,
          "loop_over_scan": loop_s / scan_s,
          "max_abs_diff_scan_vs_loop": float(np.abs(scan_x - loop_x).max())}
