"""`bench guidance`: post-sampling guidance vs the sampler alone, and with
`--inner` the sampler with inner guidance (`tools/bench.py` describes the
shared fields)."""

from __future__ import annotations

import argparse
from typing import Any

import jax
import jax.numpy as jnp

from motiongrpo_jax.body import model as body_model
from motiongrpo_jax.diffusion import sampler
from motiongrpo_jax.guidance import optimize
from motiongrpo_jax.guidance import residuals
from motiongrpo_jax.model.denoiser import Denoiser
from motiongrpo_jax.tools import bench_lib
from motiongrpo_jax.tools import bench_sampler


def _arguments(parser: argparse.ArgumentParser) -> None:
  bench_lib.size_argument(parser, "default", "the denoiser whose samples are "
                          "guided (default: EgoAllo's 50.4M model).")
  parser.add_argument("--batch", type=int, default=1,
                      help="windows, each one sample.")
  parser.add_argument("--seq_len", type=int, default=128)
  parser.add_argument("--iterations", type=int,
                      default=residuals.GuidanceConfig.iterations,
                      help="LM iterations (EgoAllo's post guidance: 20).")
  parser.add_argument("--inner", action="store_true",
                      help="also time the sampler with inner guidance.")
  parser.add_argument("--inner_iterations", type=int,
                      default=residuals.GuidanceConfig.inner_iterations,
                      help="LM iterations per step with --inner (EgoAllo's "
                      "inner guidance: 5).")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--seed", type=int, default=0)


@bench_lib.subcommand("guidance", "EgoAllo's post guidance (no_hands) on "
                      "sampled windows, the sampler alone, and with --inner the "
                      "sampler with inner guidance.", _arguments)
def bench_guidance(args: argparse.Namespace) -> dict[str, Any]:
  matmul_dtype, config = bench_sampler.sampler_mode("exact")
  model = Denoiser(bench_sampler.denoiser_config(args.size, False,
                                                 matmul_dtype))
  Ts = jnp.asarray(bench_sampler.walking_head(args.batch, args.seq_len + 1,
                                              args.seed))
  cond = sampler.sampler_condition(Ts, jnp.zeros((args.batch,), jnp.float32))
  dim = model.config.packed_dim
  params = bench_sampler.init_params(model, cond, args.seed)
  rollout = sampler.make_rollout_fn(sampler.model_apply_fn(model), config,
                                    packed_dim=dim)
  key = jax.random.key(args.seed + 1)
  sampling = bench_lib.time_calls(
      lambda: rollout(params, cond, key=key).xs, args.repeats)
  x0 = rollout(params, cond, key=key).xs[-1]  # shape [B, L, d]

  guidance = residuals.GuidanceConfig(
      mode="no_hands", iterations=args.iterations, inner=args.inner,
      inner_iterations=args.inner_iterations).validate()
  body = body_model.builtin_body()
  guide = jax.jit(lambda x, T: optimize.guide(x, T, body, guidance))
  program = bench_lib.compile_program(guide, x0, Ts[:, 1:])
  guiding = bench_lib.time_calls(
      lambda: program.compiled(x0, Ts[:, 1:]), args.repeats)
  inner = {}
  if args.inner:
    # The floor is at 0, so the condition's CPF poses are the world's.
    inner_rollout = jax.jit(lambda p, c, k: sampler.rollout(
        sampler.model_apply_fn(model), p, c, key=k, packed_dim=dim,
        config=config, x0_guide=optimize.inner_guide(
            c.T_world_cpf, body, guidance)).xs[-1])
    timing = bench_lib.time_calls(
        lambda: inner_rollout(params, cond, key), args.repeats)
    inner = {
        "inner_iterations": args.inner_iterations,
        "inner_sampler_seconds_per_batch": timing["best_s"],
        "inner_sampler_over_sampler": timing["best_s"] / sampling["best_s"],
    }
  return {
      "benchmark": "guidance",
      "size": args.size,
      "batch": args.batch,
      "seq_len": args.seq_len,
      "iterations": args.iterations,
      "cg_iterations": guidance.cg_iterations,
      "sampler_seconds_per_batch": sampling["best_s"],
      "guidance_seconds_per_batch": guiding["best_s"],
      "guidance_seconds_per_batch_median": guiding["median_s"],
      "guidance_seconds_per_window": guiding["best_s"] / args.batch,
      "guidance_over_sampler": guiding["best_s"] / sampling["best_s"],
      "guidance_compile_s": program.compile_s,
      "guidance_cpu_seconds_per_batch": guiding["cpu_s"],
      **inner,
      "load_average_1m": bench_lib.load_average(),
      "peak_rss_bytes": bench_lib.peak_rss_bytes(),
      **program.memory,
      **bench_lib.environment(),
  }
