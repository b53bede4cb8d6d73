#!/usr/bin/env bash
# The GPU benchmark set, one JSON line per measurement (under 10 minutes on
# one H100-class GPU): EgoAllo's sampler (default size, L = 128) at batch 1, 8
# and 64, and one paper-scale GRPO iteration (B = 32, G = 8, L = 128, default
# size), each in fp32, TF32 and bf16 matmuls where the benchmark offers them.
# Every line carries the matmul peak measured in the same process and the
# fraction of it reached (`tools/bench.py`).
#
#   launch/gpu_bench.sh [OUT_DIR]          (default: gpu_bench/)
#   DRY_RUN=1 launch/gpu_bench.sh          prints the commands only
#   SIZE=tiny launch/gpu_bench.sh          a smoke run of the same commands
set -euo pipefail

out="${1:-gpu_bench}"
size="${SIZE:-default}"
# run OUTPUT_FILE COMMAND...: appends the command's JSON line to the file.
run() {
  local file="$1"; shift
  if [[ "${DRY_RUN:-0}" == 1 ]]; then
    echo "${JAX_DEFAULT_MATMUL_PRECISION:+JAX_DEFAULT_MATMUL_PRECISION=$JAX_DEFAULT_MATMUL_PRECISION }$* >> $file"
  else
    "$@" >> "$file"
  fi
}
mkdir -p "$out"

# JAX's matmul precision on NVIDIA GPUs: "highest" keeps fp32, "tensorfloat32"
# lets cuBLAS use TF32 tensor cores; bf16 is the sampler's own mode.
for batch in 1 8 64; do
  for precision in highest tensorfloat32; do
    JAX_DEFAULT_MATMUL_PRECISION=$precision run "$out/sampler_$precision.jsonl" \
      python -m motiongrpo_jax.tools.bench sampler --size="$size" \
      --batch="$batch" --seq_len=128 --mode=exact
  done
  run "$out/sampler_bf16.jsonl" python -m motiongrpo_jax.tools.bench sampler \
    --size="$size" --batch="$batch" --seq_len=128 --mode=bf16
done

# One GRPO iteration: rollouts, rewards and the update (bf16 is not offered by
# grpo_step: its matmuls follow the model config's dtype, fp32).
for precision in highest tensorfloat32; do
  JAX_DEFAULT_MATMUL_PRECISION=$precision run "$out/grpo_$precision.jsonl" \
    python -m motiongrpo_jax.tools.bench grpo_step --size="$size" --batch=32 \
    --repeats=1
done
[[ "${DRY_RUN:-0}" == 1 ]] || echo "results in $out/"
