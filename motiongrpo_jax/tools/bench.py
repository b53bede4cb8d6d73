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
benchmark is one such function (`bench_lib.py`): `sampler` (`bench_sampler.py`), `pretrain_step`,
`critic_step` (`bench_train.py`), `grpo_step`, `scaling` (`bench_grpo.py`),
`guidance` (`bench_guidance.py`) and `profile` (`bench_profile.py`). Every subcommand takes
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
  * fast: bf16 matmul inputs with fp32 accumulation only where this
    backend runs them clearly faster (`model/precision.py` times one product
    in both precisions at start-up; the JSON's `precision_probe` gives its
    rates and choice; biases, norms, activations, softmax and the update stay
    fp32; kernels are stored in bf16 once; the last 10 steps, t <= 100, run
    in fp32: bf16 there makes the motion jittery), non-redundant windows (a
    window that adds no new frame is skipped: L = 128 runs one 129-token
    forward per step instead of two) and the Newton polar projection instead of batched
    3×3 SVDs (the same matrix to ~1e-6), and from step 10 on the network
    runs every other step, the steps between reusing its x̂0 (20 forwards
    instead of 30). `--accuracy` reports its deviation from exact with the
    same params and noise.
  * fast_fp32: fast without bf16 (what fast runs where the probe rejects it).
  * bf16, windows, polar, reuse: each part of fast alone.
"""

from __future__ import annotations

import argparse
import json
import sys

# Each benchmark module registers its subcommands on import.
from motiongrpo_jax.tools import bench_grpo  # pylint: disable=unused-import
from motiongrpo_jax.tools import bench_guidance  # pylint: disable=unused-import
from motiongrpo_jax.tools import bench_profile  # pylint: disable=unused-import
from motiongrpo_jax.tools import bench_sampler
from motiongrpo_jax.tools import bench_train  # pylint: disable=unused-import
from motiongrpo_jax.tools.bench_lib import SUBCOMMANDS


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
  if (args.benchmark == "sampler" and args.compare_loop
      and bench_sampler.SAMPLER_MODES[args.mode][1].get("reuse_x0_from")):
    raise SystemExit(f"bench sampler: --compare_loop runs the network on "
                     f"every step, --mode={args.mode} reuses x̂0 (use exact, "
                     "bf16, windows or polar)")
  result = SUBCOMMANDS[args.benchmark].run(args)
  print(json.dumps(result), flush=True)


if __name__ == "__main__":
  main(sys.argv[1:])
