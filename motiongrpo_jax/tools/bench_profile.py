"""`bench profile`: where the time of a sampler step and a GRPO update goes.

    python -m motiongrpo_jax.tools.bench profile --size=default \\
        --egoallo_reference=DIR [--trace_dir=DIR]

Each part is jitted on its own (loop-free, so XLA's FLOP count is exact) and
timed (best of `--repeats`, after a warm-up), on N = `--rows` sequences of
L frames (the rows a GRPO rollout step processes: B·G):
  * sampler step: the whole step (`sampler.sampler_step`), the network's
    windowed x̂0 alone, the SVD projection of the 21 body blocks alone
    (`packing.project_body_rotmats`), and the remainder (update, noise,
    log-prob); plus the Newton polar projection
    (`geometry_polar.project_to_rotation_polar`) on the same blocks;
  * GRPO update over K trained steps: re-scoring forward only, forward +
    backward with and without rematerialisation, and the AdamW step;
  * polar vs SVD: max |Q_polar − U·Vᵀ| on random near-rotations, on
    standard-normal matrices, on the network's own outputs, and (with
    `--egoallo_reference`) on EgoAllo's recorded pre-projection x̂0
    (`golden_step.npz`: `x0_blended`); and the time of each on the same
    matrices.
  * ops (`--parts=ops`): the sampler step's time per kind of operation
    (matmuls of attention and of dense layers, LayerNorm, GELU, softmax,
    RoPE, rotation projection, random numbers, other) and its slowest
    thunks, from the XLA trace (`tools/op_profile.py`).
With `--trace_dir`, one sampler step also runs under `jax.profiler.trace` (view with TensorBoard's profile plugin or Perfetto).
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from motiongrpo_jax import geometry
from motiongrpo_jax import geometry_polar
from motiongrpo_jax.diffusion import sampler as sampler_lib
from motiongrpo_jax.grpo import objective
from motiongrpo_jax.model import denoiser as denoiser_lib
from motiongrpo_jax.model import packing
from motiongrpo_jax.tools import bench_lib
from motiongrpo_jax.tools import bench_train
from motiongrpo_jax.tools import op_profile
from motiongrpo_jax.train import state as state_lib

# Default (rows, seq_len) per size: a rollout step of the grpo_step
# benchmark's default batch (demo: B = 8 × G = 8 at L = 32; default: B = 1 ×
# G = 8 at L = 128).
_SHAPES = {"tiny": (4, 8), "demo": (64, 32), "default": (8, 128)}


def _arguments(parser: argparse.ArgumentParser) -> None:
  bench_lib.size_argument(parser)
  parser.add_argument("--rows", type=int, default=0,
                      help="sequences N per call (0: tiny 4, demo 64, "
                      "default 8).")
  parser.add_argument("--seq_len", type=int, default=0,
                      help="frames L (0: tiny 8, demo 32, default 128).")
  parser.add_argument("--trained_steps", type=int, default=4,
                      help="K of the update split (time and FLOPs are "
                      "linear in K; see `bench scaling`).")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--egoallo_reference", default="",
                      help="directory of EgoAllo's golden files (polar "
                      "accuracy on its recorded x̂0).")
  parser.add_argument("--trace_dir", default="",
                      help="also write a jax.profiler trace here.")
  parser.add_argument("--parts", default="sampler,update,polar",
                      help="comma-separated subset of sampler, update, "
                      "polar, ops.")
  parser.add_argument("--seed", type=int, default=0)


def _body_blocks(x: jax.Array) -> jax.Array:
  """(..., L, d) packed → (..., L, 21, 3, 3) body blocks."""
  block = x[..., packing.BODY_SLICE]
  return block.reshape(block.shape[:-1] + (21, 3, 3))


def _project_polar(x: jax.Array) -> jax.Array:
  """`packing.project_body_rotmats` with the polar iteration instead."""
  block = x[..., packing.BODY_SLICE]
  mats = geometry_polar.project_to_rotation_polar(
      block.reshape(block.shape[:-1] + (21, 3, 3)))
  return jnp.concatenate([x[..., :packing.BODY_SLICE.start],
                          mats.reshape(block.shape),
                          x[..., packing.BODY_SLICE.stop:]], axis=-1)


def _measure(fn, args: tuple, repeats: int) -> dict[str, float]:
  jitted = jax.jit(fn)
  program = bench_lib.compile_program(jitted, *args)
  timing = bench_lib.time_calls(lambda: program.compiled(*args), repeats)
  return {"seconds": timing["best_s"], "cpu_seconds": timing["cpu_s"],
          "flops": program.flops, "compile_s": program.compile_s}


def _max_diff(a, b) -> float:
  return float(np.max(np.abs(np.asarray(a, np.float64)
                             - np.asarray(b, np.float64))))


def _polar_accuracy(matrices: jax.Array) -> dict[str, float]:
  svd = geometry.project_to_rotation(matrices)
  polar = geometry_polar.project_to_rotation_polar(matrices)
  eye = np.eye(3)
  p = np.asarray(polar, np.float64)
  ortho = np.abs(np.einsum("...ji,...jk->...ik", p, p) - eye).max()
  return {"max_abs_diff_vs_svd": _max_diff(polar, svd),
          "polar_orthogonality_error": float(ortho),
          "num_matrices": int(np.prod(matrices.shape[:-2]))}


@bench_lib.subcommand("profile", "Time split of a sampler step and a GRPO "
                  "update; SVD vs Newton polar projection.", _arguments)
def bench_profile(args: argparse.Namespace) -> dict[str, Any]:
  rows, seq_len = _SHAPES[args.size]
  rows, seq_len = args.rows or rows, args.seq_len or seq_len
  model = denoiser_lib.Denoiser(bench_train.denoiser_for(args.size))
  dim = model.config.packed_dim
  apply_fn = sampler_lib.model_apply_fn(model)
  params = bench_train.init_denoiser(model, args.seed)
  config = sampler_lib.SamplerConfig(log_prob_reduction="mean",
                                     return_means=False)
  consts_all = sampler_lib.step_constants(config)
  # A mid-schedule step (every step costs the same).
  consts = jax.tree.map(lambda c: c[config.num_steps // 2], consts_all)
  data = bench_train.synthetic_batch(rows, seq_len + 1, False, seed=args.seed)
  cond = sampler_lib.sampler_condition(jnp.asarray(data["T_world_cpf"]),
                                       jnp.zeros((rows,)))
  mask = jnp.ones((rows, seq_len), bool)
  key = jax.random.key(args.seed)
  x = jax.random.normal(key, (rows, seq_len, dim), jnp.float32)
  load = bench_lib.load_average()
  peak = bench_lib.peak_fields(args.size)
  peak_gflops = peak["peak_gflops"]
  no_proj = dataclasses.replace(config, project_body_rotmats=False)

  parts = {p.strip() for p in args.parts.split(",") if p.strip()}
  unknown = parts - {"sampler", "update", "polar", "ops"}
  if unknown:
    raise SystemExit(f"bench profile: unknown --parts {sorted(unknown)}; "
                     "expected sampler, update, polar, ops")
  x0 = jax.jit(lambda p, x, c: sampler_lib.predict_x0(
      apply_fn, p, x, consts.t, c, mask, no_proj))(params, x, cond)
  result = {"benchmark": "profile", "size": args.size, "rows": rows,
            "seq_len": seq_len, "packed_dim": dim,
            "num_params": bench_train.num_params(params)}
  if "sampler" in parts:
    result["sampler_step"] = _sampler_split(
        apply_fn, params, x, x0, cond, key, mask, consts, config, no_proj,
        dim, peak_gflops, args.repeats)
    result.update(bench_lib.rate_fields(
        result["sampler_step"]["step"]["flops"],
        result["sampler_step"]["step"]["seconds"], peak_gflops))
  if "update" in parts:
    result["grpo_update"] = _update_split(
        apply_fn, params, cond, key, mask, config, rows, seq_len, dim,
        args.trained_steps, peak_gflops, args.repeats)
  if "polar" in parts:
    result.update(_polar(x0, args))
    result["polar_iterations"] = geometry_polar.DEFAULT_ITERATIONS
  if "ops" in parts:
    result["sampler_step_ops"] = _sampler_ops(
        apply_fn, params, x, cond, key, mask, consts, config, peak_gflops)
  if args.trace_dir:
    _trace(args.trace_dir, apply_fn, params, x, cond, key, mask, consts,
           config)
  result.update({**peak, "peak_rss_bytes": bench_lib.peak_rss_bytes(),
                 "load_average_1m": load,
                 "load_average_1m_after": bench_lib.load_average(),
                 **bench_lib.environment()})
  return result


def _sampler_split(apply_fn, params, x, x0, cond, key, mask, consts, config,
                   no_proj, dim, peak_gflops, repeats) -> dict[str, Any]:
  """Times of a whole sampler step and of its network and SVD parts."""
  rows, seq_len = x.shape[:2]
  step = _measure(lambda p, x, c, k: sampler_lib.sampler_step(
      apply_fn, p, x, consts, c, key=k, mask=mask, config=config).x_next,
                  (params, x, cond, key), repeats)
  network = _measure(lambda p, x, c: sampler_lib.predict_x0(
      apply_fn, p, x, consts.t, c, mask, no_proj), (params, x, cond),
                     repeats)
  hands = dim == packing.DIM_WITH_HANDS
  svd = _measure(lambda x: packing.project_body_rotmats(x, hands), (x0,),
                 repeats)
  polar = _measure(_project_polar, (x0,), repeats)
  rest_s = max(step["seconds"] - network["seconds"] - svd["seconds"], 0.0)
  sampler_split = {
      "step": step, "network": network, "svd_projection": svd,
      "polar_projection": polar, "rest_seconds": rest_s,
      "fraction_network": network["seconds"] / step["seconds"],
      "fraction_svd": svd["seconds"] / step["seconds"],
      "fraction_rest": rest_s / step["seconds"],
      "network_fraction_of_peak": bench_lib.rate_fields(
          network["flops"], network["seconds"], peak_gflops)[
              "fraction_of_peak"],
      "step_fraction_of_peak": bench_lib.rate_fields(
          step["flops"], step["seconds"], peak_gflops)["fraction_of_peak"],
      "step_seconds_with_polar_estimate":
          step["seconds"] - svd["seconds"] + polar["seconds"],
      "svd_matrices_per_step": rows * seq_len * 21,
  }
  return sampler_split


def _sampler_ops(apply_fn, params, x, cond, key, mask, consts, config,
                 peak_gflops) -> dict[str, Any]:
  """The sampler step's time per kind of operation, from the XLA trace."""
  step = lambda p, x, c, k: sampler_lib.sampler_step(
      apply_fn, p, x, consts, c, key=k, mask=mask, config=config).x_next
  split = op_profile.op_split(step, (params, x, cond, key))
  matmul_s = sum(split["categories"].get(c, {}).get("seconds", 0.0)
                 for c in ("attention matmuls", "dense matmuls"))
  flops = split["flops"]
  # All of the step's FLOPs over the matmul thunks' elapsed time: a rough
  # rate (element-wise FLOPs count too; shared cores stretch a thunk).
  split["matmul_fraction_of_peak"] = bench_lib.rate_fields(
      flops, matmul_s, peak_gflops)["fraction_of_peak"] if matmul_s else 0.0
  split["step_fraction_of_peak"] = bench_lib.rate_fields(
      flops, split["wall_seconds"], peak_gflops)["fraction_of_peak"]
  return split


def _update_split(apply_fn, params, cond, key, mask, config, rows, seq_len,
                  dim, k, peak_gflops, repeats) -> dict[str, Any]:
  """Times of the update's forward, backward (±remat) and optimiser."""
  trainable = objective.trainable_steps(config)
  steps = jnp.asarray(trainable[:k])
  xs = jax.random.normal(jax.random.fold_in(key, 1),
                         (rows, config.num_steps + 1, seq_len, dim))
  old = jnp.zeros((rows, k))
  adv = jax.random.normal(jax.random.fold_in(key, 2), (rows,))
  obj = objective.ObjectiveConfig()

  def loss(p, remat):
    log_probs, _ = objective.rescore_steps(apply_fn, p, None, xs, cond, mask,
                                           steps, config, remat=remat)
    return objective.grpo_loss(log_probs, old, adv, None, obj)[0]

  forward = _measure(lambda p: loss(p, True), (params,), repeats)
  grad_remat = _measure(jax.grad(lambda p: loss(p, True)), (params,),
                        repeats)
  grad_plain = _measure(jax.grad(lambda p: loss(p, False)), (params,),
                        repeats)
  tx = state_lib.make_optimizer(bench_train.load_config(
      "grpo", "demo").optimizer)
  state = state_lib.create(params, tx, jax.random.PRNGKey(0))
  optimizer = _measure(lambda s, g: state_lib.apply_gradients(
      s, g, jnp.zeros(()), tx)[0], (state, params), repeats)
  for part in (forward, grad_remat, grad_plain):
    # The scan over K steps is counted once by XLA.
    part["flops"] *= k
    part["fraction_of_peak"] = bench_lib.rate_fields(
        part["flops"], part["seconds"], peak_gflops)["fraction_of_peak"]
  update_split = {
      "trained_steps": k, "forward": forward,
      "forward_backward_remat": grad_remat,
      "forward_backward_no_remat": grad_plain, "optimizer": optimizer,
      "remat_time_overhead": grad_remat["seconds"] / grad_plain["seconds"],
      "backward_over_forward": grad_remat["seconds"] / forward["seconds"],
  }
  return update_split


def _polar(x0, args) -> dict[str, Any]:
  """Polar vs SVD: accuracy on several matrix sets, and speed."""
  rng = np.random.default_rng(args.seed)
  repeats = args.repeats
  num = 100_000 if args.size != "tiny" else 1000
  tangent = rng.normal(0, 0.5, (num, 3))
  import jaxlie  # pylint: disable=g-import-not-at-top
  rot = np.asarray(jaxlie.SO3.exp(jnp.asarray(tangent, jnp.float32))
                   .as_matrix())
  near = jnp.asarray(rot + rng.normal(0, 0.05, rot.shape), jnp.float32)
  gauss = jnp.asarray(rng.normal(size=(num, 3, 3)), jnp.float32)
  accuracy = {"near_rotations_noise_0.05": _polar_accuracy(near),
              "standard_normal": _polar_accuracy(gauss),
              "network_x0_random_init": _polar_accuracy(_body_blocks(x0))}
  if args.egoallo_reference:
    path = pathlib.Path(args.egoallo_reference) / "golden_step.npz"
    if not path.exists():
      raise FileNotFoundError(f"--egoallo_reference: {path} not found")
    golden = np.load(path)
    blended = jnp.asarray(golden["x0_blended"], jnp.float32)
    accuracy["egoallo_golden_x0_blended"] = _polar_accuracy(
        _body_blocks(blended))
    accuracy["egoallo_golden_x0_blended"]["max_abs_diff_polar_vs_golden_"
                                          "x0_pred"] = _max_diff(
        _project_polar(blended)[..., packing.BODY_SLICE],
        golden["x0_pred"][..., packing.BODY_SLICE])
  mats = _body_blocks(x0)
  speed = {"matrices": int(np.prod(mats.shape[:-2])),
           "svd": _measure(geometry.project_to_rotation, (mats,), repeats),
           "polar": _measure(geometry_polar.project_to_rotation_polar,
                             (mats,), repeats)}
  speed["svd_over_polar"] = (speed["svd"]["seconds"]
                             / speed["polar"]["seconds"])
  return {"polar_accuracy": accuracy, "projection_speed": speed}


def _trace(trace_dir, apply_fn, params, x, cond, key, mask, consts, config):
  """One sampler step under `jax.profiler.trace`."""
  step_fn = jax.jit(lambda p, x, c, k: sampler_lib.sampler_step(
      apply_fn, p, x, consts, c, key=k, mask=mask, config=config).x_next)
  jax.block_until_ready(step_fn(params, x, cond, key))
  with jax.profiler.trace(trace_dir):
    jax.block_until_ready(step_fn(params, x, cond, key))
