"""Held-out evaluation of a policy: N samples per window, every metric (and
any extra scores) per window and sample.

The one evaluator of the project: the `eval` mode, GRPO's validation and its
base-vs-GRPO table all call `make_eval_fn` and `evaluate`, so the MPJPE of a
GRPO `summary.json` is the eval mode's for the same checkpoint, split, seed
and sampler. Window w's sample n comes from
fold_in(fold_in(fold_in(key, seq_index), start), n): a window's noise does
not depend on the batch it lands in, and two policies evaluated with the same
key see the same noise (their per-window values are paired). Heights are
taken relative to each window's floor (`height_from_floor` of the data).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from motiongrpo_jax.body import model as body_model
from motiongrpo_jax.data import condition_noise
from motiongrpo_jax.diffusion import sampler as sampler_lib
from motiongrpo_jax.eval import metrics as metrics_lib
from motiongrpo_jax.eval import posing
from motiongrpo_jax.guidance import optimize as guidance_lib
from motiongrpo_jax.guidance import residuals as guidance_residuals
from motiongrpo_jax.train import mesh as mesh_lib

# Batch fields the evaluation reads (the pipeline yields more).
FIELDS = ("betas", "T_world_root", "body_quats", "T_world_cpf",
          "height_from_floor", "mask", "seq_index", "start")
# Fewest valid output frames a window needs (jitter is a third difference).
MIN_FRAMES = 4

# With guidance on, the sampler's own samples are scored too, under this
# prefix (the same windows and noise: guided and unguided are paired).
UNGUIDED = "unguided/"

# extra_scores(x0 (B, N, L, d), batch, extra_params) -> {name: (B, N)}.
ExtraScores = Callable[[jax.Array, Mapping[str, jax.Array], Any],
                       dict[str, jax.Array]]


def floor_z(batch: Mapping[str, jax.Array]) -> jax.Array:
  """(B,) floor height: CPF z minus its height above the floor, first pose."""
  return batch["T_world_cpf"][:, 0, 6] - batch["height_from_floor"][:, 0, 0]


def output_mask(mask: jax.Array) -> jax.Array:
  """(B, L) valid output frames of windows with a (B, L+1) pose mask.

  Output frame k (pose k+1) needs poses k and k+1 (its relative motion).
  """
  return mask[:, 1:] & mask[:, :-1]


def score_samples(x0: jax.Array, batch: Mapping[str, jax.Array],
                  body: body_model.BodyModel, fps: float,
                  gt: posing.PosedMotion | None = None
                  ) -> dict[str, jax.Array]:
  """Every metric of every sample against the ground truth of its window.

  Args:
    x0: (B, N, L, d) N packed samples for each of B windows.
    batch: the windows (L + 1 poses each, `FIELDS`).
    body: the body model.
    fps: frames per second.
    gt: `posing.window_ground_truth(batch, body)`, when the caller has it.

  Returns:
    {name: (B, N)} for every name of `metrics.METRIC_NAMES`, heights
    relative to the floor; NaN for windows without enough valid frames.
  """
  num_samples = x0.shape[1]
  floor = floor_z(batch)
  pred = posing.pose_sample(x0, batch["T_world_cpf"][:, None, 1:], body)
  gt = posing.window_ground_truth(batch, body) if gt is None else gt
  down = jnp.stack([jnp.zeros_like(floor), jnp.zeros_like(floor), floor],
                   axis=-1)  # (B, 3)
  pred_joints = pred.joints - down[:, None, None, None, :]
  gt_joints = gt.joints - down[:, None, None, :]
  tile = lambda a: jnp.broadcast_to(  # pylint: disable=unnecessary-lambda-assignment
      a[:, None], (a.shape[0], num_samples) + a.shape[1:])
  return metrics_lib.compute_all(
      pred_joints, tile(gt_joints), pred.body_quats, tile(gt.body_quats),
      fps=fps, mask=tile(output_mask(batch["mask"])), floor_z=0.0)


def window_keys(key: jax.Array, seq_index: jax.Array, start: jax.Array,
                num_samples: int) -> jax.Array:
  """(B, N) keys fold_in(fold_in(fold_in(key, seq_index), start), sample)."""

  def one(i, s):
    k = jax.random.fold_in(jax.random.fold_in(key, jnp.maximum(i, 0)), s)
    return jax.vmap(lambda n: jax.random.fold_in(k, n))(
        jnp.arange(num_samples))

  return jax.vmap(one)(seq_index, start)


def ground_truth_wrists(batch: Mapping[str, jax.Array],
                        body: body_model.BodyModel, key: jax.Array,
                        noise: condition_noise.ConditionNoiseConfig,
                        gt: posing.PosedMotion | None = None) -> jax.Array:
  """(B, L, 2, 7) wrist targets made from the ground truth (`gt`, posed here
  when None): its world wrist positions plus `noise` (i.i.d. Gaussian or
  Perlin, zero mean and RMS `noise.amplitude` per axis over the valid frames;
  one draw per window and wrist, from the window's `window_keys`), identity
  rotations (like Aria's estimates: positions only).
  """
  gt = posing.window_ground_truth(batch, body) if gt is None else gt
  wrists = gt.joints[:, :, jnp.array(guidance_residuals.WRIST_JOINTS)]
  keys = window_keys(key, batch["seq_index"], batch["start"], 2)  # (B, 2)

  def window(wrist_keys, frame_mask):  # (L, 2, 3), one draw per wrist
    return jnp.stack([condition_noise.sample_noise(
        k, wrists.shape[1], noise, frame_mask) for k in wrist_keys], axis=1)

  wrists = wrists + jax.vmap(window)(keys, output_mask(batch["mask"]))
  identity = jnp.broadcast_to(jnp.array([1.0, 0.0, 0.0, 0.0]),
                              wrists.shape[:-1] + (4,))
  return jnp.concatenate([identity, wrists], axis=-1)


def make_eval_fn(apply_fn: sampler_lib.ApplyFn, packed_dim: int,
                 body: body_model.BodyModel,
                 config: sampler_lib.SamplerConfig, num_samples: int,
                 fps: float, extra_scores: ExtraScores | None = None,
                 guidance: guidance_residuals.GuidanceConfig | None = None,
                 wrist_target_noise: condition_noise.ConditionNoiseConfig = (
                     condition_noise.ConditionNoiseConfig())
                 ) -> Callable[..., dict[str, jax.Array]]:
  """The jitted sampling-and-scoring step of a policy.

  Samples N motions per window (each window's rollout is independent of the
  others in the batch: its own key, its frame mask given to the network) and
  scores them with `score_samples` (and `extra_scores`). With `guidance`
  on, the samples are guided (EgoAllo's "inner": each denoising step's x̂0,
  in the sampler; "post": after sampling) and scored, and the sampler's own
  samples without any guidance (the same keys) are scored under `UNGUIDED`
  names. One compilation per batch shape.

  Args:
    apply_fn: the network (`sampler.model_apply_fn`).
    packed_dim: d.
    body: the body model (passed as an argument, not baked into the program).
    config: sampler options.
    num_samples: N, samples per window.
    fps: frames per second.
    extra_scores: more per-sample scores (e.g. GRPO's rewards).
    guidance: guidance options (None or mode "off": none).
    wrist_target_noise: with guidance mode "aria_wrist_only", the noise on
      the ground-truth wrist targets (`ground_truth_wrists`; their key is
      folded from the eval key; kind "none": exact targets).

  Returns:
    fn(params, batch, key, extra_params) -> {name: (B, N)}; `fn.func` is the
    `jax.jit` function (taking `body` as a keyword argument).
  """
  guided = guidance is not None and guidance.enabled

  def sample_one(params, Ts_world_cpf, floor, frame_mask, key, x0_guide):
    condition = sampler_lib.sampler_condition(Ts_world_cpf[None],
                                              floor[None])
    out = sampler_lib.rollout(apply_fn, params, condition, key=key,
                              mask=frame_mask[None], packed_dim=packed_dim,
                              config=config, x0_guide=x0_guide)
    return out.xs[-1, 0]

  def sample(params, batch, keys, body, inner=False, targets=None):
    """(B, N, L, d) samples, inner-guided with `inner` (wrist `targets`
    {name: (B, L, ...)} or None)."""

    def one(Ts_world_cpf, floor, frame_mask, targets, key):
      x0_guide = None
      if inner:
        x0_guide = guidance_lib.inner_guide(
            Ts_world_cpf[1:], body, guidance, mask=frame_mask,
            floor_z=floor, **(targets or {}))
      return sample_one(params, Ts_world_cpf, floor, frame_mask, key,
                        x0_guide)

    windows = (batch["T_world_cpf"], floor_z(batch),
               output_mask(batch["mask"]), targets)
    if not inner:
      per_sample = jax.vmap(one, (None, None, None, None, 0))
      return jax.vmap(per_sample)(*windows, keys)
    # One vmap over the B·N rollouts: XLA:CPU (jaxlib 0.10.2) segfaults
    # running the LM's loops inside the scan under two nested vmaps.
    b, n = keys.shape[:2]
    x0 = jax.vmap(one)(
        *jax.tree.map(lambda a: jnp.repeat(a, n, axis=0), windows),
        keys.reshape((b * n,) + keys.shape[2:]))
    return x0.reshape((b, n) + x0.shape[1:])

  @jax.jit
  def fn(params, batch, key, extra_params, body):
    keys = window_keys(key, batch["seq_index"], batch["start"], num_samples)
    x0 = sample(params, batch, keys, body)  # shape [B, N, L, d]
    gt = posing.window_ground_truth(batch, body)  # once, for every score
    values = {}
    if guided:
      values = {UNGUIDED + k: v
                for k, v in score_samples(x0, batch, body, fps, gt).items()}
      targets = {}  # {name: (B, L, ...)}
      if guidance.mode == "aria_wrist_only":
        wrists = ground_truth_wrists(batch, body, jax.random.fold_in(key, 1),
                                     wrist_target_noise, gt)
        valid = jnp.broadcast_to(output_mask(batch["mask"])[..., None],
                                 wrists.shape[:-1])  # (B, L, 2)
        targets = dict(wrists=wrists, wrist_mask=valid,
                       wrist_rot_mask=jnp.zeros_like(valid))
      if guidance.runs_inner:
        x0 = sample(params, batch, keys, body, inner=True, targets=targets)
      if guidance.runs_post:
        x0 = guidance_lib.guide(
            x0, batch["T_world_cpf"][:, None, 1:], body, guidance,
            mask=output_mask(batch["mask"])[:, None],
            floor_z=floor_z(batch)[:, None],
            **{k: v[:, None] for k, v in targets.items()})
    values.update(score_samples(x0, batch, body, fps, gt))
    if extra_scores is not None:
      values.update(extra_scores(x0, batch, extra_params))
    return values

  return functools.partial(fn, body=body)


def evaluate(eval_fn: Callable[..., dict[str, jax.Array]], params: Any,
             batches: Iterable[Mapping[str, Any]], key: jax.Array,
             mesh: jax.sharding.Mesh, max_windows: int = 0,
             extra_params: Any = None, global_batches: bool = False
             ) -> tuple[list[dict[str, Any]], int]:
  """Runs `eval_fn` over the batches and collects one row per window×sample.

  Args:
    eval_fn: from `make_eval_fn`.
    params: the policy's parameters (replicated on the mesh).
    batches: process-local numpy batches (`pipeline.eval_dataset`), or
      global arrays with `global_batches`.
    key: the base PRNG key.
    mesh: the device mesh.
    max_windows: stop after this many windows (0: all).
    extra_params: passed to `eval_fn` (e.g. the critic's parameters).
    global_batches: the batches are already global arrays on the mesh.

  Returns:
    (rows, num_windows): rows with seq_index, start, sample, num_frames and
    every value, in window order, and the number of windows read. Windows
    with fewer than `MIN_FRAMES` valid output frames (possible with
    `partial="pad"`) are counted but have no rows.
  """
  rows, seen = [], 0
  for batch in batches:
    batch = {k: batch[k] for k in FIELDS}
    if not global_batches:
      batch = mesh_lib.global_batch(mesh, batch)
    values = eval_fn(params, batch, key, extra_params)
    values, info = jax.tree.map(np.asarray, multihost_utils.process_allgather(
        (values, {"seq_index": batch["seq_index"], "start": batch["start"],
                  "frames": jnp.sum(output_mask(batch["mask"]), axis=1)}),
        tiled=True))
    for b in range(info["seq_index"].shape[0]):
      if info["seq_index"][b] < 0:
        continue  # Filler.
      if max_windows and seen == max_windows:
        return rows, seen
      seen += 1
      if info["frames"][b] < MIN_FRAMES:
        continue
      for s in range(values[metrics_lib.METRIC_NAMES[0]].shape[1]):
        row = {"seq_index": int(info["seq_index"][b]),
               "start": int(info["start"][b]), "sample": s,
               "num_frames": int(info["frames"][b])}
        row.update({name: float(v[b, s]) for name, v in values.items()})
        rows.append(row)
    if max_windows and seen == max_windows:
      break
  return rows, seen


def window_means(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
  """{name: (W,)} each value's mean over a window's samples, windows in the
  order of `rows` (`evaluate`'s), NaN where no sample has a finite value."""
  windows: dict[tuple[int, int], list[dict[str, Any]]] = {}
  for r in rows:
    windows.setdefault((r["seq_index"], r["start"]), []).append(r)
  # The values are floats; the row's keys (indices, names) are not.
  names = [n for n, v in rows[0].items() if isinstance(v, float)] if rows else []
  out = {}
  for name in names:
    values = np.array([[r[name] for r in w] for w in windows.values()],
                      np.float64)
    finite = np.isfinite(values)
    out[name] = np.where(finite.any(axis=1),
                         np.nansum(np.where(finite, values, 0.0), axis=1)
                         / np.maximum(finite.sum(axis=1), 1), np.nan)
  return out
