"""GRPO benchmarks: `bench grpo_step` (one iteration) and `bench scaling`.

    python -m motiongrpo_jax.tools.bench grpo_step --size=demo
    python -m motiongrpo_jax.tools.bench grpo_step --size=default --batch=1
    python -m motiongrpo_jax.tools.bench scaling --what=group_size

`grpo_step` times one GRPO iteration twice: as the fused, jitted iteration
of `grpo/update.py` (what training runs; one program) and as three
separately jitted phases built from the same functions, to attribute the
time: (1) rollout: G rollouts per head trajectory (`group_sampler`), (2)
rewards and group-normalised advantages against the ground truth, (3) the
update: the clipped objective re-scoring the K trained steps (each step
rematerialised) and one AdamW step. One minibatch, one micro-batch, no KL
and no critic (the configs' defaults); the phases' sum differs from the
fused iteration only by what XLA fuses across phase boundaries.

FLOPs (XLA's cost analysis counts a `lax.scan` body once): rollout = its
program's count × S (the steps; what sits outside the loop — the noise
draws — is negligible); update = K × (its count − the optimiser's) + the
optimiser's (one rematerialised forward + forward + backward per trained
step); rewards as counted (no loop).

Sizes: tiny (tests); demo = `configs/grpo.py:demo` (B = 8, G = 8, L = 32,
K = 8 of the 29 stochastic steps) with `configs/pretrain.py:demo`'s model;
default = the paper's scale (`configs/grpo.py:amass`: G = 8, L = 128, all 29
stochastic steps trained) with EgoAllo's model, but B = 1 head trajectory
(8 rollouts) by default so that it finishes on a CPU (`--batch`); every
phase is linear in B. Rewards use the built-in body model.

`scaling` sweeps the demo model (B = 1) over `--what`:
  seq_len      L ∈ 32…512 (G = 4, K = 4): time and XLA temp memory of the
               rollout and of the update;
  group_size   G ∈ 2…32 (L = 32, K = 4): the same, with a least-squares line
               (slope, intercept, R²) of each time against G;
  train_steps  K ∈ 1…29 (G = 8, L = 32): the update's time (line fit) and its
               XLA temp memory with rematerialisation on and off.
It prints one JSON line holding the lists.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from motiongrpo_jax.body import model as body_model
from motiongrpo_jax.diffusion import sampler as sampler_lib
from motiongrpo_jax.grpo import group_sampler
from motiongrpo_jax.grpo import objective
from motiongrpo_jax.grpo import rewards as rewards_lib
from motiongrpo_jax.grpo import update as update_lib
from motiongrpo_jax.model import denoiser as denoiser_lib
from motiongrpo_jax.tools import bench_lib
from motiongrpo_jax.tools import bench_train
from motiongrpo_jax.train import mesh as mesh_lib
from motiongrpo_jax.train import state as state_lib


def grpo_setup(size: str) -> tuple[Any, update_lib.UpdateConfig, int, int]:
  """(config, UpdateConfig, default batch, seq_len) of a size."""
  config = bench_train.load_config("grpo",
                                   "amass" if size == "default" else "demo")
  with config.unlocked():
    config.reward.weight_vis = 0.0  # the joint rewards (no critic forward)
  if size == "tiny":
    with config.unlocked():
      config.group.group_size = 2
      config.sampler.num_steps = 4
      config.sampler.update = "ddim"
      config.objective.num_train_steps = 2
      config.data.seq_len = 8
      config.data.batch_size = 2
  if size == "default":
    with config.unlocked():
      config.data.batch_size = 1
  return (config, update_lib.from_config(config), config.data.batch_size,
          config.data.seq_len)


@dataclasses.dataclass
class Phases:
  """The separately jitted phases of one iteration."""
  rollout: Any
  rewards: Any
  update: Any
  optimizer: Any
  trainable: np.ndarray


def make_phases(apply_fn, config: update_lib.UpdateConfig,
                body: body_model.BodyModel, packed_dim: int, tx) -> Phases:
  """Rollout, rewards and update as three jitted functions.

  Returns:
    rollout(params, batch, key) -> GroupRollout;
    rewards(samples, batch) -> advantages (B, G);
    update(state, examples, steps) -> (state, loss), examples =
      (xs (N, S+1, L, d), T_world_cpf, T_cpf_tm1_cpf_t (N, L, 7), mask (N, L),
      old_log_probs (N, K), advantages (N,));
    optimizer(state, grads) -> state (the AdamW step alone, for its FLOPs).
  """
  trainable = objective.trainable_steps(config.sampler,
                                       config.objective.train_window)
  weights = jnp.asarray(objective.step_weights(
      config.sampler, config.objective.step_weighting,
      config.objective.train_window))

  @jax.jit
  def rollout(params, batch, key):
    num_seq = batch["T_world_cpf"].shape[0]
    return group_sampler.sample_groups(
        apply_fn, params, update_lib.group_inputs(batch),
        jax.random.split(key, num_seq), packed_dim=packed_dim,
        config=config.group, sampler_config=config.sampler)

  @jax.jit
  def rewards(samples, batch):
    raw, _ = update_lib.score_samples(samples, batch, body, config.reward,
                                      None, None)
    return rewards_lib.advantages(
        raw, config.reward, baseline_size=config.group.baseline_size)[0]

  def loss_fn(params, examples, steps):
    xs, cpf, rel, mask, old, adv = examples
    log_probs, _ = objective.rescore_steps(
        apply_fn, params, None, xs, sampler_lib.Condition(cpf, rel), mask,
        steps, config.sampler, remat=config.objective.remat)
    w = weights[steps]
    return objective.grpo_loss(w * log_probs, w * old, adv, None,
                               config.objective)

  @jax.jit
  def update(state, examples, steps):
    (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, examples, steps)
    new_state, _ = state_lib.apply_gradients(state, grads, loss, tx)
    return new_state, loss

  @jax.jit
  def optimizer(state, grads):
    return state_lib.apply_gradients(state, grads, jnp.zeros(()), tx)[0]

  return Phases(rollout, rewards, update, optimizer, trainable)


def examples_of(out: group_sampler.GroupRollout, advantages: jax.Array,
                steps: jax.Array):
  """The update's inputs, flattened to N = B·G samples."""
  num_seq, group = out.log_probs.shape[:2]
  flat = lambda x: x.reshape((num_seq * group,) + x.shape[2:])  # pylint: disable=unnecessary-lambda-assignment
  return (flat(out.xs), flat(out.condition.T_world_cpf),
          flat(out.condition.T_cpf_tm1_cpf_t),
          jnp.repeat(out.mask, group, axis=0),
          flat(out.log_probs)[:, steps], flat(advantages))


def _update_flops(program: bench_lib.Program, opt_flops: float,
                  num_steps: int) -> float:
  return num_steps * max(program.flops - opt_flops, 0.0) + opt_flops


class Setup:
  """Model, parameters, state, batch and phases of one GRPO benchmark."""

  def __init__(self, size: str, config: update_lib.UpdateConfig,
               batch_size: int, seq_len: int, seed: int = 0):
    self.size, self.config = size, config
    self.model = denoiser_lib.Denoiser(bench_train.denoiser_for(size))
    self.dim = self.model.config.packed_dim
    self.apply_fn = sampler_lib.model_apply_fn(self.model)
    self.body = body_model.builtin_body()
    grpo_config, _, _, _ = grpo_setup(size)
    self.tx = state_lib.make_optimizer(grpo_config.optimizer)
    self.params = bench_train.init_denoiser(self.model, seed)
    self.state = state_lib.create(self.params, self.tx,
                                  jax.random.PRNGKey(seed))
    data = bench_train.synthetic_batch(batch_size, seq_len + 1, False,
                                       self.body, seed=seed)
    self.batch = {k: jnp.asarray(data[k]) for k in update_lib.BATCH_FIELDS}
    self.phases = make_phases(self.apply_fn, config, self.body, self.dim,
                              self.tx)
    self.key = jax.random.key(seed + 1)
    self._opt_flops = None

  def steps(self) -> jax.Array:
    return objective.select_steps(jax.random.key(7), self.phases.trainable,
                                  self.config.objective.num_train_steps)

  def optimizer_flops(self) -> float:
    if self._opt_flops is None:
      self._opt_flops = bench_lib.compile_program(
          self.phases.optimizer, self.state, self.params).flops
    return self._opt_flops

  def run_rollout(self, repeats: int, warmup: bool = True):
    program = bench_lib.compile_program(self.phases.rollout, self.params,
                                    self.batch, self.key)
    timing = _time(lambda: program.compiled(self.params, self.batch,
                                            self.key), repeats, warmup)
    out = program.compiled(self.params, self.batch, self.key)
    return program, timing, out

  def run_rewards(self, samples, repeats: int, warmup: bool = True):
    program = bench_lib.compile_program(self.phases.rewards, samples, self.batch)
    timing = _time(lambda: program.compiled(samples, self.batch), repeats,
                   warmup)
    return program, timing, program.compiled(samples, self.batch)

  def run_update(self, examples, steps, repeats: int, warmup: bool = True):
    program = bench_lib.compile_program(self.phases.update, self.state, examples,
                                    steps)
    timing = _time(lambda: program.compiled(self.state, examples, steps),
                   repeats, warmup)
    return program, timing


def _time(fn, repeats: int, warmup: bool) -> dict[str, float]:
  if warmup:
    return bench_lib.time_calls(fn, repeats)
  timed = bench_lib.timed(fn, repeats)
  walls = [w for w, _ in timed]
  return {"best_s": min(walls), "median_s": float(np.median(walls)),
          "cpu_s": min(c for _, c in timed)}


# --- grpo_step ---


def _grpo_arguments(parser: argparse.ArgumentParser) -> None:
  bench_lib.size_argument(parser)
  parser.add_argument("--batch", type=int, default=0,
                      help="head trajectories B (0: tiny 2, demo 8, "
                      "default 1).")
  parser.add_argument("--group_size", type=int, default=0,
                      help="G (0: the config's, 8).")
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument("--warmup", type=int, choices=(0, 1), default=1,
                      help="one untimed call before timing (0 for slow "
                      "default-size runs; programs are compiled ahead of "
                      "time either way).")
  parser.add_argument("--fused", type=int, choices=(0, 1), default=1,
                      help="also time the fused iteration of grpo/update.py.")
  parser.add_argument("--seed", type=int, default=0)


@bench_lib.subcommand("grpo_step", "One GRPO iteration (rollout, rewards, "
                  "update), fused and phase by phase.", _grpo_arguments)
def bench_grpo_step(args: argparse.Namespace) -> dict[str, Any]:
  _, config, batch_size, seq_len = grpo_setup(args.size)
  if args.group_size:
    config = dataclasses.replace(config, group=dataclasses.replace(
        config.group, group_size=args.group_size))
  batch_size = args.batch or batch_size
  group = config.group.group_size
  setup = Setup(args.size, config, batch_size, seq_len, args.seed)
  warmup = bool(args.warmup)
  load = bench_lib.load_average()
  peak = bench_lib.peak_fields(args.size)
  peak_gflops = peak["peak_gflops"]
  num_steps = config.sampler.num_steps

  # (1)–(3) phase by phase.
  r_prog, r_time, out = setup.run_rollout(args.repeats, warmup)
  rollout_flops = r_prog.flops * num_steps
  w_prog, w_time, advantages = setup.run_rewards(out.samples, args.repeats,
                                                 warmup)
  steps = setup.steps()
  examples = examples_of(out, advantages, steps)
  u_prog, u_time = setup.run_update(examples, steps, args.repeats, warmup)
  k = int(steps.shape[0])
  update_flops = _update_flops(u_prog, setup.optimizer_flops(), k)
  phase_s = r_time["best_s"] + w_time["best_s"] + u_time["best_s"]
  total_flops = rollout_flops + w_prog.flops + update_flops
  num_samples = batch_size * group
  result = {
      "benchmark": "grpo_step", "size": args.size,
      "num_params": bench_train.num_params(setup.params),
      "packed_dim": setup.dim, "batch": batch_size, "group_size": group,
      "num_samples": num_samples, "seq_len": seq_len,
      "sampler_steps": num_steps, "trained_steps": k,
      "remat": config.objective.remat,
      "phase_seconds": {"rollout": r_time["best_s"],
                        "rewards": w_time["best_s"],
                        "update": u_time["best_s"]},
      "phase_cpu_seconds": {"rollout": r_time["cpu_s"],
                            "rewards": w_time["cpu_s"],
                            "update": u_time["cpu_s"]},
      "phase_fraction_of_peak_cpu": {
          "rollout": bench_lib.cpu_fraction(rollout_flops, r_time["cpu_s"], peak),
          "rewards": bench_lib.cpu_fraction(w_prog.flops, w_time["cpu_s"], peak),
          "update": bench_lib.cpu_fraction(update_flops, u_time["cpu_s"], peak)},
      "phase_seconds_median": {"rollout": r_time["median_s"],
                               "rewards": w_time["median_s"],
                               "update": u_time["median_s"]},
      "phase_flops": {"rollout": rollout_flops, "rewards": w_prog.flops,
                      "update": update_flops},
      "phase_fraction_of_peak": {
          "rollout": bench_lib.rate_fields(rollout_flops, r_time["best_s"],
                                       peak_gflops)["fraction_of_peak"],
          "rewards": bench_lib.rate_fields(w_prog.flops, w_time["best_s"],
                                       peak_gflops)["fraction_of_peak"],
          "update": bench_lib.rate_fields(update_flops, u_time["best_s"],
                                      peak_gflops)["fraction_of_peak"]},
      "phase_compile_s": {"rollout": r_prog.compile_s,
                          "rewards": w_prog.compile_s,
                          "update": u_prog.compile_s},
      "phase_xla_temp_bytes": {
          "rollout": r_prog.memory.get("xla_temp_bytes"),
          "rewards": w_prog.memory.get("xla_temp_bytes"),
          "update": u_prog.memory.get("xla_temp_bytes")},
      "flops_per_iteration": total_flops,
      "phases_seconds_per_iteration": phase_s,
      "flops_per_sample": total_flops / num_samples,
  }
  seconds = phase_s
  cpu_s = r_time["cpu_s"] + w_time["cpu_s"] + u_time["cpu_s"]
  if args.fused:
    step = update_lib.make_train_step(setup.apply_fn, setup.tx,
                                      mesh_lib.make_mesh(jax.devices()[:1]),
                                      config, setup.body, setup.dim)
    f_prog = bench_lib.compile_program(step.jitted, setup.state, setup.batch,
                                   None, None)
    holder = [jax.tree.map(jnp.copy, setup.state)]

    def fused():
      holder[0], metrics = f_prog.compiled(holder[0], setup.batch, None, None)
      return metrics

    f_time = _time(fused, args.repeats, warmup)
    seconds, cpu_s = f_time["best_s"], f_time["cpu_s"]
    result.update({"fused_seconds_per_iteration": f_time["best_s"],
                   "fused_seconds_median": f_time["median_s"],
                   "fused_compile_s": f_prog.compile_s,
                   "fused_cpu_seconds": f_time["cpu_s"],
                   **{f"fused_{k}": v for k, v in f_prog.memory.items()}})
  result.update({
      "seconds_per_iteration": seconds,
      "iterations_per_s": 1.0 / seconds,
      "samples_per_s": num_samples / seconds,
      "frames_per_s": num_samples * seq_len / seconds,
      **bench_lib.rate_fields(total_flops, seconds, peak_gflops),
      "fraction_of_peak_cpu": bench_lib.cpu_fraction(total_flops, cpu_s, peak),
      **peak,
      "compile_s": sum(p.compile_s for p in (r_prog, w_prog, u_prog)),
      **u_prog.memory,
      "peak_rss_bytes": bench_lib.peak_rss_bytes(),
      "load_average_1m": load, "load_average_1m_after": bench_lib.load_average(),
      **bench_lib.environment()})
  return result


# --- scaling ---

SWEEPS = {
    "seq_len": (32, 64, 128, 256, 512),
    "group_size": (2, 4, 8, 16, 32),
    "train_steps": (1, 2, 4, 8, 16, 29),
}
TINY_SWEEPS = {"seq_len": (8, 16), "group_size": (2, 3),
               "train_steps": (1, 2)}


def line_fit(x, y) -> dict[str, float]:
  """Least-squares y ≈ slope·x + intercept and its R²."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  slope, intercept = np.polyfit(x, y, 1)
  residual = y - (slope * x + intercept)
  total = np.sum(np.square(y - y.mean()))
  r2 = 1.0 - np.sum(np.square(residual)) / total if total > 0 else 1.0
  return {"slope": float(slope), "intercept": float(intercept),
          "r2": float(r2)}


def _scaling_arguments(parser: argparse.ArgumentParser) -> None:
  bench_lib.size_argument(parser)
  parser.add_argument("--what", choices=tuple(SWEEPS), required=True)
  parser.add_argument("--points", default="",
                      help="comma-separated values (default: the sweep's).")
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument("--seed", type=int, default=0)


@bench_lib.subcommand("scaling", "Time and memory vs sequence length, group "
                  "size or trained steps (demo model, B = 1).",
                  _scaling_arguments)
def bench_scaling(args: argparse.Namespace) -> dict[str, Any]:
  _, base, _, base_len = grpo_setup(args.size)
  sweeps = TINY_SWEEPS if args.size == "tiny" else SWEEPS
  points = ([int(p) for p in args.points.split(",")] if args.points
            else list(sweeps[args.what]))
  load = bench_lib.load_average()
  rows = []
  for value in points:
    seq_len, group, k = base_len, 4 if args.size != "tiny" else 2, 4
    if args.size == "tiny":
      k = 2
    if args.what == "seq_len":
      seq_len = value
    elif args.what == "group_size":
      group = value
    else:
      group, k = base.group.group_size, value
    config = dataclasses.replace(
        base, group=dataclasses.replace(base.group, group_size=group),
        objective=dataclasses.replace(base.objective, num_train_steps=k))
    row = {args.what: value, "group_size": group, "seq_len": seq_len,
           "trained_steps": k}
    for remat in ((True, False) if args.what == "train_steps" else (True,)):
      cfg = dataclasses.replace(config, objective=dataclasses.replace(
          config.objective, remat=remat))
      setup = Setup(args.size, cfg, 1, seq_len, args.seed)
      r_prog, r_time, out = setup.run_rollout(args.repeats)
      adv = setup.phases.rewards(out.samples, setup.batch)
      steps = setup.steps()
      u_prog, u_time = setup.run_update(examples_of(out, adv, steps), steps,
                                        args.repeats)
      tag = "" if remat else "_no_remat"
      if remat:
        row.update({"rollout_s": r_time["best_s"],
                    "rollout_cpu_s": r_time["cpu_s"],
                    "rollout_xla_temp_bytes": r_prog.memory.get(
                        "xla_temp_bytes"),
                    "rollout_flops": r_prog.flops * cfg.sampler.num_steps})
      row.update({f"update_s{tag}": u_time["best_s"],
                  f"update_cpu_s{tag}": u_time["cpu_s"],
                  f"update_xla_temp_bytes{tag}": u_prog.memory.get(
                      "xla_temp_bytes"),
                  f"update_flops_counted{tag}": u_prog.flops})
    row["peak_rss_bytes"] = bench_lib.peak_rss_bytes()
    rows.append(row)
  result = {"benchmark": "scaling", "what": args.what, "size": args.size,
            "batch": 1, "points": rows}
  if args.size != "tiny":
    result.update(bench_lib.peak_fields(args.size))
  xs = [r[args.what] for r in rows]
  if len(xs) >= 2:
    # Lines of time (wall and CPU seconds; CPU is robust to other jobs on
    # the machine) and, for trained steps, of the update's XLA temp memory.
    names = ["rollout_s", "rollout_cpu_s", "update_s", "update_cpu_s"]
    if args.what == "train_steps":
      names = ["update_s", "update_cpu_s", "update_s_no_remat",
               "update_cpu_s_no_remat", "update_xla_temp_bytes",
               "update_xla_temp_bytes_no_remat"]
    for name in names:
      values = [r.get(name) for r in rows]
      if all(v is not None for v in values):
        result[f"fit_{name}"] = line_fit(xs, values)
  result.update({"load_average_1m": load,
                 "load_average_1m_after": bench_lib.load_average(),
                 "peak_rss_bytes": bench_lib.peak_rss_bytes(),
                 **bench_lib.environment()})
  return result
