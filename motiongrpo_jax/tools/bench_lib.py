"""What every benchmark shares: the subcommand registry, the machine's
matmul peak measured in the same process, compilation, timing, FLOPs and
memory of a compiled program (`tools/bench.py` says how they are measured)."""

from __future__ import annotations

import argparse
import dataclasses
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

from motiongrpo_jax.model import precision


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


def best_time(fn: Callable[[], Any], repeats: int) -> list[float]:
  return [t for t, _ in timed(fn, repeats)]


def timed(fn: Callable[[], Any], repeats: int) -> list[tuple[float, float]]:
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
  rates = {"xla": precision.matmul_gflops(dtype, (size, size, size), repeats)}
  if dtype == "float32":
    rng = np.random.default_rng(0)
    a_np, b_np = (rng.standard_normal((size, size), np.float32)
                  for _ in range(2))
    a_np @ b_np
    rates["numpy"] = (2.0 * size**3 / min(best_time(lambda: a_np @ b_np,
                                                    repeats)) / 1e9)
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
  cpu = min(c for _, c in timed(lambda: product(a, b), repeats))
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
  times = timed(fn, repeats)
  walls = [w for w, _ in times]
  return {"best_s": min(walls), "median_s": statistics.median(walls),
          "cpu_s": min(c for _, c in times)}


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
