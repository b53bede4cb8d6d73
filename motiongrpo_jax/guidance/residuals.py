"""EgoAllo's guidance costs: weighted residuals on a sampled body's rotations.

The variables are tangent corrections δ (L, 21, 3) of the sample's local body
rotations, q_t = q⁰_t·exp(δ_t); the pelvis is placed from the CPF as in
evaluation (`BodyModel.T_world_root_from_cpf`), so the head stays on the
device trajectory. Each residual is a weight times a vector (the costs are
EgoAllo's `guidance_optimizer_jax.py` terms, written on our body models):

  prior_rot      w·log(q_t⁻¹ q⁰_t)                              every joint
  prior_torso    w·(p_t − p⁰_t)                    torso joints' world positions
  smooth_corr    w·log((q_t⁻¹q⁰_t)⁻¹ (q_{t+1}⁻¹q⁰_{t+1}))  the correction's change
  smooth_rot     w·log(q_t⁻¹ q_{t+1})
  smooth_vel     w·log((q_t⁻¹q_{t+1})⁻¹ (q_{t+1}⁻¹q_{t+2}))
  skate          w·c̄_t·(p_t − p_{t+1})  foot joints, c̄_t = (c_t + c_{t+1})/2 of
                                        the sample's contacts clipped to [0, 1]
  wrist_pos      w·m_t·(p_t − p̄_t)       wrists, p̄ the Aria wrist estimates
  wrist_rot      w·m'_t·log(R_t⁻¹ R̄_t)   m' its own mask: MPS estimates have
                                        positions but no wrist orientation
  floor          w·max(0, z_floor − z_t)  every joint's height below the floor
                                        (not EgoAllo's: off at weight 0)

(p world joint positions, t frames; residuals of invalid frames are zeroed.)
As in EgoAllo, the body is posed with one shape per window (the sample's betas
averaged over its valid frames) and a frame pair's skate weight is the mean of
its two contacts. EgoAllo leaves the contacts unclipped; here each is clipped
to [0, 1] first, so that an out-of-range contact (an untrained network's, or an
early x̂0's in inner guidance) cannot weigh skating above everything else: a
random network's guided samples came out 3.5× jerkier unclipped
(tests/modes/test_mode_infer.py). In range the two are the same.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import jaxlie
import optax

from motiongrpo_jax.body import model as body_model
from motiongrpo_jax.body import skeleton

# EgoAllo's torso joints (its indices 0, 1, 2, 5, 8 count from the first
# non-pelvis joint): both hips and the three spine joints.
TORSO_JOINTS: tuple[int, ...] = tuple(
    skeleton.JOINT_NAMES.index(n)
    for n in ("left_hip", "right_hip", "spine1", "spine2", "spine3"))
# Joints held still while in contact: ankles and feet (EgoAllo's).
FOOT_JOINTS: tuple[int, ...] = (skeleton.LEFT_ANKLE, skeleton.RIGHT_ANKLE,
                                skeleton.LEFT_FOOT, skeleton.RIGHT_FOOT)
WRIST_JOINTS: tuple[int, ...] = skeleton.WRIST_JOINTS
MODES = ("off", "no_hands", "aria_wrist_only")


@dataclasses.dataclass(frozen=True)
class GuidanceConfig:
  """Options of test-time guidance (hashable: jit-static)."""
  # "off"; "no_hands": priors, smoothness and foot skating on the body
  # (the hands are left as sampled); "aria_wrist_only": also pull the wrists
  # to the Aria wrist-and-palm estimates. EgoAllo's modes that need a hand
  # detector (HaMeR) are not provided.
  mode: Literal["off", "no_hands", "aria_wrist_only"] = "off"
  # Guide the network's x̂0 at every denoising step, inside the sampler
  # (EgoAllo's "inner"; the step then re-noises the guided x̂0). EgoAllo's
  # own evaluation script runs inner and post; off here by default, so that
  # a mode alone is the post guidance measured in the README (inner costs
  # sampler steps × `inner_iterations` LM iterations, 150 by default).
  inner: bool = False
  # LM iterations on each step's x̂0 (EgoAllo's inner: 5).
  inner_iterations: int = 5
  # Guide the sample after sampling (EgoAllo's "post").
  post: bool = True
  # Levenberg–Marquardt iterations after sampling (EgoAllo's post: 20).
  iterations: int = 20
  # Conjugate-gradient iterations per LM step (the normal equations are
  # solved matrix-free). On a 64-frame test problem 20 reach a cost within
  # 0.7 % of 50's after 20 LM iterations, 10 within 1.5 %.
  cg_iterations: int = 20
  # Residual weights (EgoAllo's).
  weight_prior_rot: float = 1.0
  weight_prior_torso: float = 5.0
  weight_smooth_corr: float = 10.0
  weight_smooth_rot: float = 1.0
  weight_smooth_vel: float = 5.0
  weight_skate: float = 30.0
  weight_wrist_pos: float = 50.0
  weight_wrist_rot: float = 10.0
  # Not EgoAllo's: a hinge on every joint below the window's floor (EgoAllo
  # has no floor term, so its guidance leaves ground penetration as sampled;
  # README, "Guidance"). 0: off.
  weight_floor: float = 0.0

  @property
  def enabled(self) -> bool:
    return self.mode != "off"

  @property
  def runs_inner(self) -> bool:
    return self.enabled and self.inner

  @property
  def runs_post(self) -> bool:
    return self.enabled and self.post

  def validate(self) -> "GuidanceConfig":
    """Raises ValueError naming the option for an impossible value."""
    if self.mode not in MODES:
      raise ValueError(f"guidance.mode={self.mode!r}: expected one of "
                       f"{', '.join(MODES)}")
    for name in ("inner", "post"):
      if not isinstance(getattr(self, name), bool):
        raise ValueError(f"guidance.{name}={getattr(self, name)!r}: expected "
                         "True or False")
    if self.inner and not self.enabled:
      raise ValueError("guidance.inner=True: needs guidance.mode no_hands or "
                       "aria_wrist_only (it is 'off')")
    if self.enabled and not (self.inner or self.post):
      raise ValueError(f"guidance.post=False: with guidance.inner=False too, "
                       f"mode {self.mode!r} guides nothing (use mode 'off')")
    for name in ("inner_iterations", "iterations", "cg_iterations"):
      if getattr(self, name) < 1:
        raise ValueError(f"guidance.{name}={getattr(self, name)}: expected "
                         ">= 1")
    for field in dataclasses.fields(self):
      if field.name.startswith("weight_") and getattr(self, field.name) < 0:
        raise ValueError(f"guidance.{field.name}={getattr(self, field.name)}:"
                         " expected >= 0")
    return self


class Problem(NamedTuple):
  """What the residuals hold fixed, for one window of L frames.

  Attributes:
    body_quats: (L, 21, 4) the sample's local body rotations q⁰, `wxyz`.
    betas: (L, 16) the window's shape: the sample's mean over valid frames.
    contacts: (L − 1, 4) the contacts of `FOOT_JOINTS` per frame pair,
      (c_t + c_{t+1})/2 of the sample's, each clipped to [0, 1].
    T_world_cpf: (L, 7) the device's CPF poses.
    torso: (L, 5, 3) the sample's torso joints in the world.
    mask: (L,) valid frames.
    wrists: (L, 2, 7) world wrist poses to pull to (`aria_wrist_only`).
    wrist_mask: (L, 2) which wrist positions exist.
    wrist_rot_mask: (L, 2) which wrist orientations exist.
    floor_z: () the floor's world height (−inf: unknown, no floor term).
  """
  body_quats: jax.Array
  betas: jax.Array
  contacts: jax.Array
  T_world_cpf: jax.Array
  torso: jax.Array
  mask: jax.Array
  wrists: jax.Array
  wrist_mask: jax.Array
  wrist_rot_mask: jax.Array
  floor_z: jax.Array


def posed_joints(body_quats: jax.Array, betas: jax.Array,
                 T_world_cpf: jax.Array, body: body_model.BodyModel
                 ) -> jax.Array:
  """(L, 22, 7) world poses of the pelvis and body joints, pelvis from CPF."""
  T_world_root = body.T_world_root_from_cpf(betas, T_world_cpf, body_quats)
  joints = body.forward_kinematics(betas, T_world_root, body_quats)
  return joints[..., :skeleton.NUM_BODY_JOINTS + 1, :]


def make_problem(body_quats: jax.Array, betas: jax.Array,
                 contacts: jax.Array, T_world_cpf: jax.Array,
                 body: body_model.BodyModel, mask: jax.Array | None = None,
                 wrists: jax.Array | None = None,
                 wrist_mask: jax.Array | None = None,
                 wrist_rot_mask: jax.Array | None = None,
                 floor_z: jax.Array | None = None) -> Problem:
  """The problem of one window.

  Args:
    body_quats: (L, 21, 4) sampled local rotations.
    betas: (L, 16) sampled shape.
    contacts: (L, 21) sampled contacts of the 21 non-pelvis joints.
    T_world_cpf: (L, 7) CPF poses.
    body: the body model.
    mask: (L,) valid frames (None: all).
    wrists: (L, 2, 7) wrist targets (None: none).
    wrist_mask: (L, 2) valid wrist targets (None: all given ones).
    wrist_rot_mask: (L, 2) valid wrist orientations (None: `wrist_mask`).
    floor_z: () the floor's world height (None: unknown, no floor term).

  Returns:
    The problem.
  """
  length = body_quats.shape[0]
  mask = jnp.ones((length,), bool) if mask is None else mask
  weights = mask.astype(jnp.float32)[:, None]
  mean_betas = jnp.sum(betas * weights, 0) / jnp.maximum(jnp.sum(weights), 1)
  betas = jnp.broadcast_to(mean_betas, betas.shape)
  joints = posed_joints(body_quats, betas, T_world_cpf, body)
  feet = jnp.clip(contacts[:, jnp.array(FOOT_JOINTS) - 1], 0.0, 1.0)  # no pelvis
  if wrists is None:
    wrists = jnp.broadcast_to(jaxlie.SE3.identity().wxyz_xyz, (length, 2, 7))
    wrist_mask = jnp.zeros((length, 2), bool)
  elif wrist_mask is None:
    wrist_mask = jnp.ones((length, 2), bool)
  if wrist_rot_mask is None:
    wrist_rot_mask = wrist_mask
  return Problem(
      body_quats=body_quats, betas=betas,
      contacts=0.5 * (feet[:-1] + feet[1:]),
      T_world_cpf=T_world_cpf,
      torso=jax.lax.stop_gradient(joints[:, jnp.array(TORSO_JOINTS), 4:]),
      mask=mask,
      wrists=wrists, wrist_mask=wrist_mask, wrist_rot_mask=wrist_rot_mask,
      floor_z=jnp.asarray(-jnp.inf if floor_z is None else floor_z,
                          jnp.float32))


def corrected_quats(delta: jax.Array, body_quats: jax.Array) -> jax.Array:
  """(L, 21, 4) q⁰·exp(δ) for tangent corrections δ (L, 21, 3)."""
  return (jaxlie.SO3(body_quats) @ jaxlie.SO3.exp(delta)).wxyz


def residuals(delta: jax.Array, problem: Problem,
              body: body_model.BodyModel,
              config: GuidanceConfig) -> dict[str, jax.Array]:
  """Every weighted residual at corrections δ (L, 21, 3).

  Returns:
    {term: array}: prior_rot (L, 21, 3), prior_torso (L, 5, 3),
    smooth_corr / smooth_rot (L−1, 21, 3), smooth_vel (L−2, 21, 3), skate
    (L−1, 4, 3), with `aria_wrist_only` wrist_pos / wrist_rot (L, 2, 3),
    and with `weight_floor` > 0 floor (L, 22).
  """
  q0 = jaxlie.SO3(problem.body_quats)
  q = jaxlie.SO3(corrected_quats(delta, problem.body_quats))
  joints = posed_joints(q.wxyz, problem.betas, problem.T_world_cpf, body)
  pos = joints[..., 4:]
  valid = problem.mask.astype(jnp.float32)
  pair = valid[:-1] * valid[1:]
  triple = pair[:-1] * valid[2:]

  def frames(x, m):  # m (T,) broadcast over joints and xyz
    return x * m[:, None, None]

  def step(so3):  # a_t⁻¹·a_{t+1} along frames
    return jaxlie.SO3(so3.wxyz[:-1]).inverse() @ jaxlie.SO3(so3.wxyz[1:])

  correction = q.inverse() @ q0
  relative = step(q)
  feet = jnp.array(FOOT_JOINTS)
  out = {
      "prior_rot": config.weight_prior_rot * frames(correction.log(), valid),
      "prior_torso": config.weight_prior_torso * frames(
          pos[:, jnp.array(TORSO_JOINTS)] - problem.torso, valid),
      "smooth_corr": config.weight_smooth_corr * frames(
          step(correction).log(), pair),
      "smooth_rot": config.weight_smooth_rot * frames(relative.log(), pair),
      "smooth_vel": config.weight_smooth_vel * frames(
          step(relative).log(), triple),
      "skate": config.weight_skate * frames(
          problem.contacts[:, :, None] * (pos[:-1, feet] - pos[1:, feet]),
          pair),
  }
  if config.weight_floor > 0:
    out["floor"] = config.weight_floor * valid[:, None] * jnp.maximum(
        problem.floor_z - pos[..., 2], 0.0)
  if config.mode == "aria_wrist_only":
    wrist = jaxlie.SE3(joints[:, jnp.array(WRIST_JOINTS)])
    target = jaxlie.SE3(problem.wrists)
    def m(mask):  # (L, 2) → (L, 2, 1), invalid frames off
      return (mask * valid[:, None]).astype(jnp.float32)[..., None]
    out["wrist_pos"] = config.weight_wrist_pos * m(problem.wrist_mask) * (
        wrist.translation() - target.translation())
    out["wrist_rot"] = config.weight_wrist_rot * m(problem.wrist_rot_mask) * (
        wrist.rotation().inverse() @ target.rotation()).log()
  return out


def cost(delta: jax.Array, problem: Problem, body: body_model.BodyModel,
         config: GuidanceConfig) -> jax.Array:
  """½·Σ residual², the objective LM minimises."""
  return half_squared_norm(residuals(delta, problem, body, config))


def half_squared_norm(terms) -> jax.Array:
  """½·Σ r² over a pytree of residual arrays."""
  return 0.5 * optax.tree.norm(terms, squared=True)
