"""Guidance as a Levenberg–Marquardt solve, on packed samples: after
sampling (`guide`, EgoAllo's "post") or on each denoising step's x̂0
(`inner_guide`, the sampler's `x0_guide` hook: EgoAllo's "inner").

A small matrix-free LM: each iteration linearises the residuals (JVP/VJP
through the forward kinematics; the Jacobian is never formed), solves the
damped normal equations (JᵀJ + λI)·s = −Jᵀr with a fixed number of
conjugate-gradient iterations (`jax.scipy.sparse.linalg.cg`), and takes the
step only if the cost falls: λ ← λ/3 then, else λ ← 10·λ (λ₀ = 0.1, as
EgoAllo's `jaxls`). Every solve runs exactly its iteration count, a fixed
cost, and the cost never rises.

optimistix's `LevenbergMarquardt` with lineax's `Normal(CG)` was tried
first: in float32 its CG does not reach a tolerance on these
ill-conditioned normal equations (weights 1–30, 64–128 frames), reports
failure, and optimistix then stops after its first step. A truncated CG,
which is what LM needs, is not an option there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from motiongrpo_jax import geometry
from motiongrpo_jax.body import model as body_model
from motiongrpo_jax.guidance import residuals as residuals_lib
from motiongrpo_jax.model import packing

# Initial damping λ₀ and its factors on a rejected / accepted step.
LAMBDA_INIT, LAMBDA_UP, LAMBDA_DOWN = 0.1, 10.0, 1.0 / 3.0


def levenberg_marquardt(residual_fn, x0: jax.Array, iterations: int,
                        cg_iterations: int) -> tuple[jax.Array, jax.Array]:
  """Minimises ½‖r(x)‖² from x0 by `iterations` LM steps.

  Args:
    residual_fn: x -> a pytree of residual arrays.
    x0: the start, any shape.
    iterations: LM iterations (each accepted or rejected).
    cg_iterations: CG iterations per linear solve.

  Returns:
    (x, costs): the result and the cost after each iteration (iterations,).
  """
  def cost(x):
    return residuals_lib.half_squared_norm(residual_fn(x))

  def step(carry, _):
    x, lam, current = carry
    r, jvp = jax.linearize(residual_fn, x)
    vjp = jax.linear_transpose(jvp, x)
    gradient, = vjp(r)
    normal = lambda v: vjp(jvp(v))[0] + lam * v  # pylint: disable=unnecessary-lambda-assignment
    s, _ = jax.scipy.sparse.linalg.cg(normal, -gradient,
                                      maxiter=cg_iterations)
    candidate = cost(x + s)
    better = candidate < current
    x = jnp.where(better, x + s, x)
    lam = jnp.where(better, lam * LAMBDA_DOWN, lam * LAMBDA_UP)
    current = jnp.where(better, candidate, current)
    return (x, lam, current), current

  (x, _, _), costs = jax.lax.scan(
      step, (x0, jnp.float32(LAMBDA_INIT), cost(x0)), None, length=iterations)
  return x, costs


def solve(problem: residuals_lib.Problem, body: body_model.BodyModel,
          config: residuals_lib.GuidanceConfig) -> jax.Array:
  """(L, 21, 3) corrections δ after `config.iterations` LM steps from 0."""
  delta, _ = levenberg_marquardt(
      lambda delta: residuals_lib.residuals(delta, problem, body, config),
      jnp.zeros(problem.body_quats.shape[:-1] + (3,), jnp.float32),
      config.iterations, config.cg_iterations)
  return delta


def guide(x0: jax.Array, T_world_cpf: jax.Array, body: body_model.BodyModel,
          config: residuals_lib.GuidanceConfig,
          mask: jax.Array | None = None, wrists: jax.Array | None = None,
          wrist_mask: jax.Array | None = None,
          wrist_rot_mask: jax.Array | None = None,
          floor_z: jax.Array | None = None) -> jax.Array:
  """Guided packed samples: body rotations optimised, the rest unchanged.

  Betas, contacts and (with hands) the hand rotations are kept as sampled;
  the body rotations are projected onto SO(3) first.

  Args:
    x0: (..., L, d) packed samples.
    T_world_cpf: (..., L, 7) CPF poses of the same frames (broadcast over
      the leading axes of x0).
    body: the body model.
    config: guidance options.
    mask: (..., L) valid frames, or None.
    wrists: (..., L, 2, 7) wrist targets (`aria_wrist_only`), or None.
    wrist_mask: (..., L, 2) valid wrist targets, or None (all).
    wrist_rot_mask: (..., L, 2) valid wrist orientations, or None
      (`wrist_mask`).
    floor_z: (...) the floor's world height (broadcast as T_world_cpf), or
      None (unknown: no floor term).

  Returns:
    (..., L, d) guided samples.
  """
  hands = x0.shape[-1] == packing.DIM_WITH_HANDS
  fields = packing.unpack(x0, hands)
  quats = geometry.matrix_to_quat(geometry.project_to_so3(fields.body_rotmats))
  lead, length = x0.shape[:-2], x0.shape[-2]
  if mask is None:
    mask = jnp.ones(lead + (length,), bool)
  if floor_z is None:
    floor_z = jnp.float32(-jnp.inf)
  given = [T_world_cpf, mask, floor_z]
  if wrists is not None:
    if wrist_mask is None:
      wrist_mask = jnp.ones(wrists.shape[:-1], bool)
    if wrist_rot_mask is None:
      wrist_rot_mask = wrist_mask
    given += [wrists, wrist_mask, wrist_rot_mask]
  # Every input as (S, L, ...), S the product of the leading axes.
  inputs = [quats, fields.betas, fields.contacts] + [
      jnp.broadcast_to(a, lead + a.shape[a.ndim - b:])
      for a, b in zip(given, (2, 1, 0, 3, 2, 2))]
  inputs = [a.reshape((-1,) + a.shape[len(lead):]) for a in inputs]

  def one(q, betas, contacts, T, m, floor, *wrist_targets):
    problem = residuals_lib.make_problem(q, betas, contacts, T, body, m,
                                         *wrist_targets, floor_z=floor)
    return residuals_lib.corrected_quats(
        solve(problem, body, config), q)

  guided = jax.vmap(one)(*inputs).reshape(quats.shape)
  return packing.pack(fields.betas, geometry.quat_to_matrix(guided),
                      fields.contacts, fields.hand_rotmats)


def inner_guide(T_world_cpf: jax.Array, body: body_model.BodyModel,
                config: residuals_lib.GuidanceConfig,
                mask: jax.Array | None = None,
                wrists: jax.Array | None = None,
                wrist_mask: jax.Array | None = None,
                wrist_rot_mask: jax.Array | None = None,
                floor_z: jax.Array | None = None
                ) -> Callable[[jax.Array, jax.Array], jax.Array]:
  """The sampler's `x0_guide` for inner guidance: `guide` with
  `config.inner_iterations` LM iterations on every step's x̂0.

  Args:
    T_world_cpf: (..., L, 7) CPF poses of the sampled frames (unshifted
      world), broadcast over the leading axes of x0 as in `guide`.
    body: the body model.
    config: guidance options.
    mask, wrists, wrist_mask, wrist_rot_mask, floor_z: as `guide`'s
      ((..., L), (..., L, 2, 7), (..., L, 2), (..., L, 2), (...)), or None.

  Returns:
    fn(x0 (B, L, d), step) -> guided x0 (B, L, d); the same at every step.
  """
  inner = dataclasses.replace(config, iterations=config.inner_iterations)

  def fn(x0: jax.Array, step: jax.Array) -> jax.Array:
    del step  # EgoAllo guides every step alike.
    return guide(x0, T_world_cpf, body, inner, mask, wrists, wrist_mask,
                 wrist_rot_mask, floor_z)

  return fn
