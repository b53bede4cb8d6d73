"""Benchmarks that print one JSON line each (speed is measured here, never in tests).

    python -m motiongrpo_jax.tools.bench sampler --size=default --batch=8 \\
        --seq_len=128 --mode=exact

Every run measures the machine's matmul peak in the same process (a large
fp32 matmul through XLA and through NumPy, the best of them; a bf16 one with
fp32 accumulation through XLA for modes with bf16 matmuls) and reports
`fraction_of_peak` against the peak of the mode's matmul dtype. FLOPs come
from XLA's cost analysis of the compiled program. Compilation is excluded
(one warm-up call); the time is the best of `--repeats` calls, the median is
reported beside it.

Subcommands are registered with `@subcommand(name, help)` on a function
`run(args) -> dict`, with an optional `add_arguments(parser)`; adding a
benchmark is one such function. Besides `sampler` (here): `pretrain_step`,
`critic_step` (`bench_train.py`), `grpo_step`, `scaling` (`bench_grpo.py`)
and `profile` (`bench_profile.py`). Every subcommand takes
`--size=tiny|demo|default` (tiny: a toy model, for tests only).

On a machine shared with other jobs the wall-clock peak and wall times
move together with the load; `fraction_of_peak_cpu` (GFLOP per process
CPU-second over the same for a 2048³ fp32 XLA matmul) does not, and is the
number to compare across runs. `load_average_1m` is recorded before and
after each run.

XLA's cost analysis counts the body of a `while` loop (`lax.scan`) once, so
FLOPs of looped programs are assembled from loop-free pieces (one step × the
trip count); each benchmark says how. Memory: `compiled.memory_analysis()`
(temp = scratch XLA allocates for the program, argument, output; bytes) and
the process's resident-set high-water mark (`resource.getrusage`,
monotonic over the process).

`sampler` modes:
  * exact: EgoAllo's sampler with fp32 matmuls and EgoAllo's windows (the
    golden-parity configuration).
  * fast: bf16 matmul inputs with fp32 accumulation (biases, norms,
    activations, softmax, the SVD and the update stay fp32; kernels are
    stored in bf16 once) and non-redundant windows (a window that adds no new
    frame is skipped: L = 128 runs one 129-token forward per step instead of
    two). `--accuracy` reports its deviation from exact with the same params
    and noise.
  * bf16, windows: each half of fast alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import statistics
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from motiongrpo_jax.diffusion import sampler
from motiongrpo_jax.diffusion import windows
from motiongrpo_jax.model import packing
from motiongrpo_jax.model.denoiser import cast_kernels
from motiongrpo_jax.model.denoiser import Denoiser
from motiongrpo_jax.model.denoiser import DenoiserConfig

# --- Subcommand registry. ---


@dataclasses.dataclass(frozen=True)
class Subcommand:
  help: str
  run: Callable[[argparse.Namespace], dict[str, Any]]
  add_arguments: Callable[[argparse.ArgumentParser], None] | None


SUBCOMMANDS: dict[str, Subcommand] = {}


def subcommand(name: str, help: str,
               add_arguments: Callable[[argparse.ArgumentParser], None] | None = None):
  """Registers `run(args) -> dict` as `bench <name>`."""

  def register(run):
    SUBCOMMANDS[name] = Subcommand(help, run, add_arguments)
    return run

  return register


# --- Shared measurements. ---


def _best_time(fn: Callable[[], Any], repeats: int) -> list[float]:
  return [t for t, _ in _timed(fn, repeats)]


def _timed(fn: Callable[[], Any], repeats: int) -> list[tuple[float, float]]:
  """(wall seconds, process CPU seconds) of each of `repeats` calls."""
  times = []
  for _ in range(repeats):
    start, start_cpu = time.perf_counter(), time.process_time()
    jax.block_until_ready(fn())
    times.append((time.perf_counter() - start, time.process_time() - start_cpu))
  return times


def load_average() -> float | None:
  """1-minute load average (other work on the machine skews timings)."""
  try:
    return os.getloadavg()[0]
  except OSError:
    return None


def matmul_peak_gflops(dtype: str = "float32", size: int = 2048,
                       repeats: int = 5) -> dict[str, float]:
  """Peak matmul rate of this machine, measured now.

  Args:
    dtype: "float32" (XLA and NumPy) or "bfloat16" (XLA, fp32 accumulation).
    size: n of the n×n×n product.
    repeats: best of this many.

  Returns:
    {"xla": GFLOP/s, "numpy": GFLOP/s (fp32 only), "best": the max}.
  """
  flops = 2.0 * size**3
  key_a, key_b = jax.random.split(jax.random.key(0))
  jdtype = jnp.bfloat16 if dtype == "bfloat16" else jnp.float32
  a = jax.random.normal(key_a, (size, size), jnp.float32).astype(jdtype)
  b = jax.random.normal(key_b, (size, size), jnp.float32).astype(jdtype)
  product = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32))
  jax.block_until_ready(product(a, b))
  rates = {"xla": flops / min(_best_time(lambda: product(a, b), repeats)) / 1e9}
  if dtype == "float32":
    a_np, b_np = np.asarray(a), np.asarray(b)
    a_np @ b_np
    rates["numpy"] = flops / min(_best_time(lambda: a_np @ b_np, repeats)) / 1e9
  rates["best"] = max(rates.values())
  return rates


def environment() -> dict[str, Any]:
  device = jax.devices()[0]
  return {
      "jax": jax.__version__,
      "device": f"{device.platform}:{getattr(device, 'device_kind', '')}",
      "num_devices": jax.device_count(),
      "cpu_count": os.cpu_count(),
      "processor": platform.processor() or platform.machine(),
  }


def compiled_flops(compiled: Any) -> float:
  """Total 'flops' of XLA's cost analysis of a compiled program."""
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0]
  return float(analysis.get("flops", 0.0))


def memory_stats(compiled: Any) -> dict[str, int]:
  """XLA's memory analysis of a compiled program (bytes; {} if unavailable)."""
  try:
    analysis = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except
    return {}
  if analysis is None:
    return {}
  out = {}
  for name in ("temp", "argument", "output", "alias", "generated_code"):
    value = getattr(analysis, f"{name}_size_in_bytes", None)
    if value is not None:
      out[f"xla_{name}_bytes"] = int(value)
  peak = getattr(analysis, "peak_memory_in_bytes", None)
  if peak:
    out["xla_peak_bytes"] = int(peak)
  return out


def peak_rss_bytes() -> int:
  """High-water resident set size of this process so far (bytes)."""
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return int(rss if sys.platform == "darwin" else rss * 1024)


_PEAKS: dict[str, dict[str, float]] = {}


def cached_peak(dtype: str = "float32") -> dict[str, float]:
  """`matmul_peak_gflops(dtype)`, measured once per process."""
  if dtype not in _PEAKS:
    _PEAKS[dtype] = matmul_peak_gflops(dtype)
  return _PEAKS[dtype]


def matmul_peak_per_cpu_second(size: int = 2048, repeats: int = 5) -> float:
  """fp32 XLA matmul GFLOP per process CPU-second (all threads), best of
  `repeats`: unlike the wall-clock peak it barely moves when other jobs
  share the cores."""
  key_a, key_b = jax.random.split(jax.random.key(1))
  a = jax.random.normal(key_a, (size, size), jnp.float32)
  b = jax.random.normal(key_b, (size, size), jnp.float32)
  product = jax.jit(jnp.dot)
  jax.block_until_ready(product(a, b))
  cpu = min(c for _, c in _timed(lambda: product(a, b), repeats))
  return 2.0 * size**3 / max(cpu, 1e-9) / 1e9


def peak_fields(size: str) -> dict[str, Any]:
  """The fp32 matmul peaks the fractions are relative to.

  `peak_gflops` is wall-clock (best of XLA and NumPy);
  `peak_gflops_per_cpu_s` is per CPU-second (XLA), the denominator of
  `fraction_of_peak_cpu`, which is the robust one on a shared machine.
  """
  if size == "tiny":
    # A tiny run is a smoke test: a small product keeps it fast.
    peak = matmul_peak_gflops("float32", size=256, repeats=2)
    per_cpu = matmul_peak_per_cpu_second(256, 2)
  else:
    peak = cached_peak("float32")
    if "cpu" not in _PEAKS:
      _PEAKS["cpu"] = {"best": matmul_peak_per_cpu_second()}
    per_cpu = _PEAKS["cpu"]["best"]
  return {"peak_gflops": peak["best"], "peak_kind": "fp32 matmul (best of "
          "XLA and NumPy, measured in this process)",
          "peak_fp32_xla_gflops": peak["xla"],
          "peak_fp32_numpy_gflops": peak["numpy"],
          "peak_gflops_per_cpu_s": per_cpu}


def cpu_fraction(flops: float, cpu_seconds: float,
                 peak: dict[str, Any]) -> float:
  """Achieved GFLOP per CPU-second over the matmul's (load-insensitive)."""
  if cpu_seconds <= 0:
    return 0.0
  return flops / cpu_seconds / 1e9 / peak["peak_gflops_per_cpu_s"]


@dataclasses.dataclass
class Program:
  """A compiled program with its cost and memory."""
  compiled: Any
  compile_s: float
  flops: float
  memory: dict[str, int]


def compile_program(jitted: Any, *args, **kwargs) -> Program:
  """Lowers and compiles `jitted` for these arguments (timed)."""
  start = time.perf_counter()
  compiled = jitted.lower(*args, **kwargs).compile()
  return Program(compiled, time.perf_counter() - start,
                 compiled_flops(compiled), memory_stats(compiled))


def time_calls(fn: Callable[[], Any], repeats: int) -> dict[str, float]:
  """One warm-up call, then best / median wall seconds of `repeats` calls."""
  jax.block_until_ready(fn())
  timed = _timed(fn, repeats)
  walls = [w for w, _ in timed]
  return {"best_s": min(walls), "median_s": statistics.median(walls),
          "cpu_s": min(c for _, c in timed)}


def rate_fields(flops: float, seconds: float, peak_gflops: float,
                prefix: str = "") -> dict[str, float]:
  """Achieved GFLOP/s and its fraction of the peak."""
  gflops = flops / seconds / 1e9 if seconds > 0 else 0.0
  return {f"{prefix}gflops_per_s": gflops,
          f"{prefix}fraction_of_peak": gflops / peak_gflops}


def size_argument(parser: argparse.ArgumentParser, default: str = "demo",
                  help_text: str = "") -> None:
  parser.add_argument("--size", choices=("tiny", "demo", "default"),
                      default=default,
                      help=help_text or "tiny (tests), demo (the demo "
                      "configs) or default (EgoAllo's 50.4M model).")


# --- sampler ---

# EgoAllo's PyTorch sampler (30 steps, 129 poses, default size, 2 threads) on
# the 2-core CPU of the issue; seconds per batch.
EGOALLO_SAMPLER_SECONDS = {1: 7.2, 8: 30.6}


def _sampler_arguments(parser: argparse.ArgumentParser) -> None:
  size_argument(parser, "default", "default: EgoAllo's 50.4M model; demo: "
                "a small one; tiny: a toy one (tests).")
  parser.add_argument("--batch", type=int, default=1)
  parser.add_argument("--seq_len", type=int, default=128,
                      help="frames L (the head trajectory has L+1 poses).")
  parser.add_argument("--mode", choices=tuple(SAMPLER_MODES), default="exact",
                      help="exact | fast (bf16 matmuls + non-redundant "
                      "windows) | bf16 | windows (each part of fast alone).")
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


def _denoiser_config(size: str, hands: bool, matmul_dtype: str):
  if size == "default":
    return DenoiserConfig(include_hands=hands, matmul_dtype=matmul_dtype)
  if size == "tiny":
    return DenoiserConfig(d_latent=16, d_feedforward=32, d_noise_emb=16,
                          num_heads=2, encoder_layers=1, decoder_layers=1,
                          include_hands=hands, matmul_dtype=matmul_dtype)
  return DenoiserConfig(d_latent=64, d_feedforward=128, d_noise_emb=64,
                        num_heads=4, encoder_layers=2, decoder_layers=2,
                        include_hands=hands, matmul_dtype=matmul_dtype)


def _walking_head(batch: int, num_poses: int, seed: int) -> np.ndarray:
  """A plausible head trajectory: walking along +x at 1.2 m/s, 30 fps."""
  rng = np.random.default_rng(seed)
  k = np.arange(num_poses)
  poses = np.zeros((batch, num_poses, 7), np.float32)
  poses[..., :4] = [0.5, 0.5, 0.5, 0.5]  # CPF +z along world +x, +y up
  poses[..., 4] = 0.04 * k + rng.normal(0.0, 0.01, (batch, 1))
  poses[..., 5] = 0.02 * np.sin(0.2 * k)
  poses[..., 6] = 1.6 + 0.02 * np.sin(0.4 * k)
  return poses


def _sampler_program(model, config, batch, seq_len, params, cond):
  dim = model.config.packed_dim
  fn = sampler.make_rollout_fn(sampler.model_apply_fn(model), config,
                               packed_dim=dim)
  start = time.perf_counter()
  compiled = fn.lower(params, cond, key=jax.random.key(0)).compile()
  compile_s = time.perf_counter() - start
  # Cost of one step (no loop), to tell how the rollout's while loop was
  # counted (XLA counts a loop body once).
  consts = jax.tree.map(lambda c: c[0], sampler.step_constants(config))
  step = jax.jit(lambda p, x, c: sampler.sampler_step(
      sampler.model_apply_fn(model), p, x, consts, c,
      noise=jnp.zeros_like(x), config=config).x_next)
  x = jnp.zeros((batch, seq_len, dim), jnp.float32)
  step_flops = float(step.lower(params, x, cond).cost_analysis()["flops"])
  rollout_flops = compiled_flops(compiled)
  num_steps = config.num_steps
  if rollout_flops < 1.5 * step_flops:
    total_flops = rollout_flops * num_steps
  else:
    total_flops = rollout_flops
  return compiled, total_flops, compile_s


# mode -> (matmul dtype, non-redundant windows).
SAMPLER_MODES = {
    "exact": ("float32", False),
    "fast": ("bfloat16", True),
    # The two parts of "fast" alone, to attribute its speed and accuracy.
    "bf16": ("bfloat16", False),
    "windows": ("float32", True),
}


def _sampler_modes(mode: str):
  matmul_dtype, non_redundant = SAMPLER_MODES[mode]
  return matmul_dtype, sampler.SamplerConfig(
      return_means=False, non_redundant_windows=non_redundant)


def _rotation_angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Angle of aᵀb for (..., 3, 3) orthogonal matrices, degrees."""
  trace = np.einsum("...ij,...ij->...", a, b)
  return np.degrees(np.arccos(np.clip((trace - 1.0) / 2.0, -1.0, 1.0)))


@subcommand("sampler", "EgoAllo's 30-step windowed sampler (one rollout).",
            _sampler_arguments)
def bench_sampler(args: argparse.Namespace) -> dict[str, Any]:

  matmul_dtype, config = _sampler_modes(args.mode)
  model = Denoiser(_denoiser_config(args.size, bool(args.hands), matmul_dtype))
  batch, seq_len = args.batch, args.seq_len
  Ts = jnp.asarray(_walking_head(batch, seq_len + 1, args.seed))
  cond = sampler.sampler_condition(Ts, jnp.zeros((batch,), jnp.float32))
  dim = model.config.packed_dim
  params = jax.jit(model.init)(
      jax.random.key(args.seed), jnp.zeros((1, 8, dim)),
      jnp.ones((1,), jnp.int32), cond.T_world_cpf[:1, :8],
      cond.T_cpf_tm1_cpf_t[:1, :8])["params"]
  num_params = sum(int(np.size(p)) for p in jax.tree.leaves(params))
  exact_params = params

  if matmul_dtype == "bfloat16":
    # Kernels stored in bf16 once: same outputs, no per-call weight casts.
    params = cast_kernels(params, model.config)
  compiled, total_flops, compile_s = _sampler_program(
      model, config, batch, seq_len, params, cond)
  key = jax.random.key(args.seed + 1)
  jax.block_until_ready(compiled(params, cond, key=key))  # warm-up
  load_before = load_average()
  timed = _timed(lambda: compiled(params, cond, key=key).xs, args.repeats)
  times = [wall for wall, _ in timed]
  best = min(times)

  fields = peak_fields(args.size)
  peak_fp32 = {"best": fields["peak_gflops"],
               "xla": fields["peak_fp32_xla_gflops"],
               "numpy": fields["peak_fp32_numpy_gflops"]}
  peaks = {"peak_gflops_per_cpu_s": fields["peak_gflops_per_cpu_s"],
           "peak_fp32_gflops": peak_fp32["best"],
           "peak_fp32_xla_gflops": peak_fp32["xla"],
           "peak_fp32_numpy_gflops": peak_fp32["numpy"]}
  peak = peak_fp32["best"]
  if matmul_dtype == "bfloat16":
    peaks["peak_bf16_gflops"] = matmul_peak_gflops("bfloat16")["best"]
    peak = peaks["peak_bf16_gflops"]

  gflops_per_s = total_flops / best / 1e9
  result = {
      "benchmark": "sampler",
      "size": args.size,
      "mode": args.mode,
      "matmul_dtype": matmul_dtype,
      "batch": batch,
      "seq_len": seq_len,
      "packed_dim": dim,
      "num_params": num_params,
      "num_steps": config.num_steps,
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
      "fraction_of_peak_cpu": cpu_fraction(
          total_flops, min(cpu for _, cpu in timed), fields),
      "load_average_1m": load_before,
      "load_average_1m_after": load_average(),
      "peak_rss_bytes": peak_rss_bytes(),
      **memory_stats(compiled),
      **environment(),
  }
  if args.size == "default" and seq_len == 128 and batch in EGOALLO_SAMPLER_SECONDS:
    result["egoallo_seconds_per_batch"] = EGOALLO_SAMPLER_SECONDS[batch]
    result["speedup_vs_egoallo"] = EGOALLO_SAMPLER_SECONDS[batch] / best

  if args.compare_loop:
    result["compare_loop"] = _compare_loop(model, config, params, cond, key,
                                           compiled, best, args.repeats)

  if args.accuracy:
    exact_model = Denoiser(dataclasses.replace(model.config,
                                               matmul_dtype="float32"))
    _, exact_config = _sampler_modes("exact")
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


def _compare_loop(model, config, params, cond, key, compiled, scan_s: float,
                  repeats: int) -> dict[str, Any]:
  """The jitted-scan rollout vs a Python loop over a jitted `sampler_step`.

  The loop draws the same noise as `sampler.rollout` (x_T from fold_in(key,
  0), step k's ε from fold_in(key, k+1)), so both give the same sample up to
  round-off.
  """
  dim = model.config.packed_dim
  apply_fn = sampler.model_apply_fn(model)
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
  loop_s = min(_best_time(loop, repeats))
  scan_x = np.asarray(compiled(params, cond, key=key).xs[-1])
  loop_x = np.asarray(loop())
  return {"scan_seconds": scan_s, "loop_seconds": loop_s,
          "loop_first_call_seconds_incl_compile": first_s,
          "loop_over_scan": loop_s / scan_s,
          "max_abs_diff_scan_vs_loop": float(np.abs(scan_x - loop_x).max())}


# --- Entry point. ---


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="python -m motiongrpo_jax.tools.bench",
      description="Benchmarks; each prints one JSON line.")
  subparsers = parser.add_subparsers(dest="benchmark", required=True)
  for name, command in SUBCOMMANDS.items():
    sub = subparsers.add_parser(name, help=command.help)
    if command.add_arguments is not None:
      command.add_arguments(sub)
  return parser


def main(argv: list[str] | None = None) -> None:
  args = build_parser().parse_args(argv)
  if getattr(args, "batch", 1) < 0 or getattr(args, "seq_len", 1) < 0:
    raise SystemExit("bench: --batch and --seq_len must be ≥ 1 (0: the "
                     "size's default where the benchmark has one)")
  if args.benchmark == "sampler" and min(args.batch, args.seq_len) < 1:
    raise SystemExit("bench sampler: --batch and --seq_len must be ≥ 1")
  result = SUBCOMMANDS[args.benchmark].run(args)
  print(json.dumps(result), flush=True)


# Further subcommands register themselves on import (after the registry
# and the shared helpers above exist).
if __name__ != "__main__":
  # pylint: disable=g-import-not-at-top,wrong-import-position,unused-import
  from motiongrpo_jax.tools import bench_grpo
  from motiongrpo_jax.tools import bench_profile
  from motiongrpo_jax.tools import bench_train

if __name__ == "__main__":
  # Run the imported module's `main` (`python -m` executes this file as
  # `__main__`, a second module object whose registry the other bench
  # modules do not see).
  from motiongrpo_jax.tools import bench as _bench  # pylint: disable=g-import-not-at-top
  _bench.main(sys.argv[1:])
