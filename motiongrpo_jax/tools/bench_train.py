"""Train-step benchmarks: `bench pretrain_step` and `bench critic_step`.

    python -m motiongrpo_jax.tools.bench pretrain_step --size=demo
    python -m motiongrpo_jax.tools.bench critic_step --size=default --batch=2

Sizes: `demo` takes the model and batch of the `demo` variant of
`configs/pretrain.py` / `configs/critic.py`; `default` EgoAllo's denoiser
(`DenoiserConfig()`, with hands) and the `amass` variant's critic (the paper
scale; the built-in body instead of SMPL-H) at L = 128 with a
small batch (`--batch`; EgoAllo's 256 does not fit a CPU step in reasonable
time; FLOPs grow linearly in the batch); `tiny` a toy model (tests). Batches
are synthetic (a walking body posed with the built-in body model), so no
dataset is read.

Each step is the mode's own jitted data-parallel step (`train/mesh.py`) on a
one-device mesh. Both are loop-free programs except the critic's base
rollouts (the hard negatives), whose `lax.scan` XLA counts once: their FLOPs
are the cost of one sampler step on the same rows × the number of steps.
"""

from __future__ import annotations

import argparse
from typing import Any

import jax
import jax.numpy as jnp
import jaxlie
import numpy as np

from motiongrpo_jax import body as body_lib
from motiongrpo_jax import config_sections
from motiongrpo_jax import configs
from motiongrpo_jax import geometry
from motiongrpo_jax.body import model as body_model
from motiongrpo_jax.critic import model as critic_lib
from motiongrpo_jax.critic import training as critic_training
from motiongrpo_jax.diffusion import loss as loss_lib
from motiongrpo_jax.diffusion import sampler as sampler_lib
from motiongrpo_jax.model import denoiser as denoiser_lib
from motiongrpo_jax.tools import bench_lib
from motiongrpo_jax.train import denoiser_loss
from motiongrpo_jax.train import mesh as mesh_lib
from motiongrpo_jax.train import state as state_lib

TINY_MODEL = dict(d_latent=16, d_feedforward=32, d_noise_emb=16, num_heads=2,
                  encoder_layers=1, decoder_layers=1, include_hands=False)


load_config = configs.get


def denoiser_for(size: str) -> denoiser_lib.DenoiserConfig:
  """The denoiser of a size: tiny, the pretrain demo's, or EgoAllo's."""
  if size == "tiny":
    return denoiser_lib.DenoiserConfig(**TINY_MODEL)
  if size == "demo":
    model = load_config("pretrain", "demo").model.to_dict()
    return denoiser_lib.DenoiserConfig.from_dict(model)
  return denoiser_lib.DenoiserConfig()


def init_denoiser(model: denoiser_lib.Denoiser, seed: int = 0) -> Any:
  dim = model.config.packed_dim
  pose = jnp.zeros((1, 2, 7)).at[..., 0].set(1.0)
  return jax.jit(model.init)(jax.random.key(seed), jnp.zeros((1, 2, dim)),
                             jnp.ones((1,), jnp.int32), pose, pose)["params"]


def num_params(params: Any) -> int:
  return sum(int(np.size(p)) for p in jax.tree.leaves(params))


def synthetic_batch(batch: int, num_frames: int, hands: bool,
                    body: body_model.BodyModel | None = None,
                    seed: int = 0) -> dict[str, np.ndarray]:
  """A consistent batch: smooth random joint rotations on a walking root.

  Args:
    batch: B sequences.
    num_frames: T frames per sequence.
    hands: include `hand_quats` (B, T, 30, 4).
    body: poses the CPF (default: the built-in body).
    seed: random seed.

  Returns:
    betas (B, 16), body_quats (B, T, 21, 4), contacts (B, T, 21),
    T_world_root / T_world_cpf / T_cpf_tm1_cpf_t (B, T, 7) (the first frame's
    relative pose is the identity), mask (B, T), seq_index (B,) and, with
    hands, hand_quats.
  """
  body = body_model.builtin_body() if body is None else body
  rng = np.random.default_rng(seed)
  k = np.arange(num_frames)
  phase = rng.uniform(0, 2 * np.pi, (batch, 1, 21, 3))
  amp = rng.uniform(0.05, 0.3, (batch, 1, 21, 3))
  tangent = amp * np.sin(0.25 * k[None, :, None, None] + phase)
  body_quats = jaxlie.SO3.exp(jnp.asarray(tangent, jnp.float32)).wxyz
  betas = rng.normal(0, 0.5, (batch, 16)).astype(np.float32)
  root_t = np.stack([np.broadcast_to(0.04 * k, (batch, num_frames)),
                     np.zeros((batch, num_frames)),
                     np.full((batch, num_frames), 0.95)], -1)
  T_world_root = jaxlie.SE3.from_rotation_and_translation(
      jaxlie.SO3.from_x_radians(jnp.full((batch, num_frames), np.pi / 2)),
      jnp.asarray(root_t, jnp.float32)).wxyz_xyz
  T_world_cpf = body.T_world_cpf(jnp.asarray(betas)[:, None], T_world_root,
                                 body_quats)
  relative = geometry.relative_poses(T_world_cpf)
  identity = jnp.zeros((batch, 1, 7)).at[..., 0].set(1.0)
  out = dict(
      betas=betas, body_quats=body_quats,
      contacts=(rng.uniform(size=(batch, num_frames, 21)) > 0.5).astype(
          np.float32),
      T_world_root=T_world_root, T_world_cpf=T_world_cpf,
      T_cpf_tm1_cpf_t=jnp.concatenate([identity, relative], axis=1),
      mask=np.ones((batch, num_frames), bool),
      seq_index=np.arange(batch, dtype=np.int32))
  if hands:
    out["hand_quats"] = jaxlie.SO3.exp(jnp.asarray(
        rng.normal(0, 0.1, (batch, num_frames, 30, 3)), jnp.float32)).wxyz
  return jax.device_get(out)


def _arguments(parser: argparse.ArgumentParser) -> None:
  bench_lib.size_argument(parser)
  parser.add_argument("--batch", type=int, default=0,
                      help="sequences per step (0: the size's default: tiny "
                      "2, demo the demo config's, default 8 (pretrain) / 2 "
                      "(critic)).")
  parser.add_argument("--seq_len", type=int, default=0,
                      help="frames per window (0: tiny 8, demo the demo "
                      "config's, default 128).")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--seed", type=int, default=0)


def _shape(args, config, default_batch: int) -> tuple[int, int]:
  if args.size == "tiny":
    batch, seq_len = 2, 8
  elif args.size == "demo":
    batch, seq_len = config.data.batch_size, config.data.seq_len
  else:
    batch, seq_len = default_batch, 128
  return args.batch or batch, args.seq_len or seq_len


def _step_runner(step, state, batch):
  """fn() running a state-donating step on its own output state."""
  holder = [state]

  def run():
    holder[0], metrics = step(holder[0], batch)
    return metrics

  return run


def _common(args, program: bench_lib.Program, timing: dict[str, float],
            batch: int, frames: int) -> dict[str, Any]:
  peak = bench_lib.peak_fields(args.size)
  return {
      "size": args.size, "batch": batch, "seq_len": frames,
      "steps_per_s": 1.0 / timing["best_s"],
      "sequences_per_s": batch / timing["best_s"],
      "frames_per_s": batch * frames / timing["best_s"],
      "seconds_per_step": timing["best_s"],
      "seconds_per_step_median": timing["median_s"],
      "cpu_seconds_per_step": timing["cpu_s"],
      "flops_per_step": program.flops,
      **bench_lib.rate_fields(program.flops, timing["best_s"], peak["peak_gflops"]),
      "fraction_of_peak_cpu": bench_lib.cpu_fraction(program.flops,
                                                 timing["cpu_s"], peak),
      **peak,
      "compile_s": program.compile_s,
      **program.memory,
      "peak_rss_bytes": bench_lib.peak_rss_bytes(),
  }


@bench_lib.subcommand("pretrain_step", "One pretraining step (EgoAllo's loss, "
                  "AdamW) of the data-parallel train step.", _arguments)
def bench_pretrain_step(args: argparse.Namespace) -> dict[str, Any]:
  config = load_config("pretrain", "amass" if args.size == "default" else
                       "demo")
  batch_size, seq_len = _shape(args, config, 8)
  model = denoiser_lib.Denoiser(denoiser_for(args.size))
  hands = model.config.include_hands
  mesh = mesh_lib.make_mesh(jax.devices()[:1])
  # As the mode builds them (a decaying schedule needs the run's length).
  tx = state_lib.make_optimizer(config.optimizer, config.train.num_steps)
  step = mesh_lib.make_train_step(
      denoiser_loss.make_loss_fn(model, config_sections.to_dataclass(
          loss_lib.LossConfig, config.loss, "loss")),
      tx, mesh, state_lib.make_schedule(config.optimizer,
                                        config.train.num_steps))
  params = init_denoiser(model, args.seed)
  state = state_lib.create(params, tx, jax.random.PRNGKey(args.seed))
  fields = ("betas", "body_quats", "hand_quats", "contacts", "T_world_cpf",
            "T_cpf_tm1_cpf_t", "mask")
  data = synthetic_batch(batch_size, seq_len, hands, seed=args.seed)
  batch = mesh_lib.global_batch(mesh, {k: data[k] for k in fields
                                       if k in data})
  load = bench_lib.load_average()
  program = bench_lib.compile_program(step, state, batch)
  timing = bench_lib.time_calls(_step_runner(program.compiled, state, batch),
                            args.repeats)
  return {"benchmark": "pretrain_step", "num_params": num_params(params),
          "include_hands": hands,
          **_common(args, program, timing, batch_size, seq_len),
          "load_average_1m": load, "load_average_1m_after":
          bench_lib.load_average(), **bench_lib.environment()}


@bench_lib.subcommand("critic_step", "One critic step: base-policy negatives "
                  "(rollouts + perturbations) and the InfoNCE update.",
                  _arguments)
def bench_critic_step(args: argparse.Namespace) -> dict[str, Any]:
  config = load_config("critic", "amass" if args.size == "default" else
                       "demo")
  with config.unlocked():
    # The built-in body (the amass variant's SMPL-H needs a model file).
    config.body.model = "builtin"
  if args.size == "tiny":
    with config.unlocked():
      config.model.d_model, config.model.d_feedforward = 8, 16
      config.model.num_blocks = 1
      # Perturbation negatives only: no base rollout to compile.
      config.objective.base_samples = 0
  batch_size, seq_len = _shape(args, config, 2)
  base = denoiser_lib.Denoiser(denoiser_for(args.size))
  hands = base.config.include_hands
  base_params = init_denoiser(base, args.seed)
  body = body_lib.from_config(config.body)
  model = critic_lib.Critic(critic_training.critic_config(config))
  mesh = mesh_lib.make_mesh(jax.devices()[:1])
  tx = state_lib.make_optimizer(config.optimizer)
  candidates = jax.jit(critic_training.make_candidates_fn(
      sampler_lib.model_apply_fn(base), config, hands))
  update = mesh_lib.make_train_step(
      critic_training.make_loss_fn(model, body, config), tx, mesh,
      state_lib.make_schedule(config.optimizer))
  params = critic_lib.init_params(model, jax.random.key(args.seed))
  state = state_lib.create(params, tx, jax.random.PRNGKey(args.seed))
  fields = ("betas", "body_quats", "T_world_root", "T_world_cpf",
            "T_cpf_tm1_cpf_t", "mask", "seq_index")
  data = synthetic_batch(batch_size, seq_len, False, body, seed=args.seed)
  batch = mesh_lib.global_batch(mesh, {k: data[k] for k in fields})
  key = jax.random.key(args.seed + 1)
  load = bench_lib.load_average()

  # (1) Negatives: FLOPs = the program's + (S − 1) sampler steps (the scan).
  cand_program = bench_lib.compile_program(candidates, base_params, batch, key)
  rows = batch_size * config.objective.base_samples
  sampling = critic_training.sampler_config(config, return_x0=True)
  step_flops = 0.0
  if rows:
    step_flops = _sampler_step_flops(base, sampling, base_params, rows,
                                     seq_len)
  cand_flops = cand_program.flops + (sampling.num_steps - 1) * step_flops
  cand_timing = bench_lib.time_calls(
      lambda: cand_program.compiled(base_params, batch, key), args.repeats)
  extra = cand_program.compiled(base_params, batch, key)
  full_batch = {**batch, **extra}

  # (2) The InfoNCE update.
  program = bench_lib.compile_program(update, state, full_batch)
  timing = bench_lib.time_calls(_step_runner(program.compiled, state, full_batch),
                            args.repeats)
  peak = bench_lib.peak_fields(args.size)["peak_gflops"]
  total_s = cand_timing["best_s"] + timing["best_s"]
  total_flops = cand_flops + program.flops
  result = {"benchmark": "critic_step", "num_params": num_params(params),
            "base_num_params": num_params(base_params),
            "num_candidates": int(extra["cand_valid"].shape[1]) + 1,
            "base_samples": config.objective.base_samples,
            "sampler_steps": sampling.num_steps,
            **_common(args, program, timing, batch_size, seq_len),
            "update_seconds": timing["best_s"],
            "negatives_seconds": cand_timing["best_s"],
            "negatives_flops": cand_flops,
            "negatives_compile_s": cand_program.compile_s,
            **bench_lib.rate_fields(cand_flops, cand_timing["best_s"], peak,
                                "negatives_"),
            "total_seconds_per_step": total_s,
            "total_flops_per_step": total_flops,
            **bench_lib.rate_fields(total_flops, total_s, peak, "total_"),
            "load_average_1m": load,
            "load_average_1m_after": bench_lib.load_average(),
            **bench_lib.environment()}
  # The headline rate is the update's; `total_` adds the negatives.
  result["steps_per_s_with_negatives"] = 1.0 / total_s
  return result


def _sampler_step_flops(model, config: sampler_lib.SamplerConfig, params,
                        rows: int, seq_len: int) -> float:
  """XLA FLOPs of one sampler step on (rows, seq_len) states (no loop)."""
  dim = model.config.packed_dim
  consts = jax.tree.map(lambda c: c[0], sampler_lib.step_constants(config))
  apply_fn = sampler_lib.model_apply_fn(model)
  pose = jnp.zeros((rows, seq_len, 7)).at[..., 0].set(1.0)
  cond = sampler_lib.Condition(pose, pose)
  x = jnp.zeros((rows, seq_len, dim), jnp.float32)
  step = jax.jit(lambda p, x, c: sampler_lib.sampler_step(
      apply_fn, p, x, consts, c, noise=jnp.zeros_like(x),
      mask=jnp.ones(x.shape[:2], bool), config=config).x_next)
  return bench_lib.compiled_flops(step.lower(params, x, cond).compile())
