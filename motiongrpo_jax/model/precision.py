"""Which matmul precision pays on this backend, by a short measured probe.

bf16 matmul inputs (fp32 accumulation) halve the work only where the
hardware runs them natively (GPUs, TPUs, CPUs with AMX or AVX-512 BF16);
elsewhere XLA emulates them and they run slower than fp32 (a 2-core AMD
EPYC: the bf16 sampler 0.96× EgoAllo's speed, fp32 1.15×). So "fast" asks
the backend: it times one product of the denoiser's typical shape in both
precisions and takes bf16 only when it is clearly faster.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import jax
import jax.numpy as jnp

# (rows, inner, outer) of the probe: a default-size feed-forward layer on
# 8 windows of 128 tokens (d_latent 512, d_feedforward 2048).
PROBE_SHAPE = (1024, 512, 2048)
# bf16 must beat fp32 by this factor to be chosen (timing noise, and the
# casts it adds around the matmuls).
MIN_BF16_SPEEDUP = 1.25


def matmul_gflops(dtype: str, shape: tuple[int, int, int] = PROBE_SHAPE,
                  repeats: int = 5, seed: int = 0) -> float:
  """Best-of-`repeats` rate (GFLOP/s) of one jitted (m, k) × (k, n) product
  with inputs in `dtype` ("float32" or "bfloat16") and fp32 accumulation."""
  m, k, n = shape
  key_a, key_b = jax.random.split(jax.random.key(seed))
  a = jax.random.normal(key_a, (m, k), jnp.float32).astype(dtype)
  b = jax.random.normal(key_b, (k, n), jnp.float32).astype(dtype)
  product = jax.jit(
      lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32))
  jax.block_until_ready(product(a, b))
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(product(a, b))
    best = min(best, time.perf_counter() - start)
  return 2.0 * m * k * n / best / 1e9


@functools.cache
def probe() -> dict[str, Any]:
  """The measurement behind `fast_matmul_dtype` (once per process).

  Returns:
    {"float32_gflops", "bfloat16_gflops", "bf16_speedup", "min_speedup",
     "choice": "bfloat16" | "float32", "backend"}.
  """
  fp32 = matmul_gflops("float32")
  bf16 = matmul_gflops("bfloat16")
  speedup = bf16 / fp32
  return {"float32_gflops": fp32, "bfloat16_gflops": bf16,
          "bf16_speedup": speedup, "min_speedup": MIN_BF16_SPEEDUP,
          "choice": "bfloat16" if speedup >= MIN_BF16_SPEEDUP else "float32",
          "backend": jax.default_backend()}


def fast_matmul_dtype() -> str:
  """"bfloat16" where this backend runs it clearly faster, else "float32"."""
  return probe()["choice"]
