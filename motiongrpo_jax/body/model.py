"""The body-model interface and the built-in skeleton body.

Every body model is a Flax struct pytree (arrays are leaves, the kinematic
tree is static), so a body can be passed through `jax.jit` / `jax.vmap` like
any other argument and everything below is differentiable.

A body maps a shape `betas (..., 16)` to rest joints in its canonical frame
(SMPL's: +y up, +z forward, +x the body's left, root-relative) and, with a
root (pelvis) pose `T_world_root (..., 7)` and local joint rotations, to world
joint poses. The CPF (central pupil frame) hangs off the head joint (SMPL
joint 15) with an identity rotation, so its axes are the head joint's: +x
left, +y up, +z forward (EgoAllo's convention).

`builtin_body()` is the default everywhere: the SMPL 22-joint tree with a
mean shape (`skeleton.REST_JOINTS`) and a small linear shape space, needing no
licensed file. SMPL-H (`smplh.load_smplh`) implements the same interface.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.struct
import jax
import jax.numpy as jnp
import jaxlie
import numpy as np

from motiongrpo_jax.body import kinematics
from motiongrpo_jax.body import skeleton

NUM_BETAS = 16


def _ancestors(parents: Sequence[int], joint: int) -> tuple[int, ...]:
  """Chain of joints from the root's first child down to `joint`."""
  chain = []
  while joint > 0:
    chain.append(joint)
    joint = parents[joint]
  return tuple(reversed(chain))


class BodyModel(flax.struct.PyTreeNode):
  """Interface shared by every body model.

  Subclasses declare a static field `parents: tuple[int, ...]` (length J,
  `parents[0] = −1`, topologically ordered; J = 22 for the built-in body, 52
  for SMPL-H) and implement `joints_rest` and `T_head_cpf`; forward
  kinematics and the CPF placement are shared.
  """

  def joints_rest(self, betas: jax.Array) -> jax.Array:
    """Shaped rest joints, root-relative, in the canonical body frame.

    Args:
      betas: (..., 16) shape coefficients.

    Returns:
      (..., J, 3) joint positions (pelvis at the origin), metres.
    """
    raise NotImplementedError

  def T_head_cpf(self, betas: jax.Array) -> jax.Array:
    """CPF pose in the head joint's frame (identity rotation).

    Args:
      betas: (..., 16) shape coefficients.

    Returns:
      (..., 7) pose `wxyz_xyz`.
    """
    raise NotImplementedError

  @property
  def num_joints(self) -> int:
    """J, the number of joints including the pelvis."""
    return len(self.parents)

  def _local_quats(self, body_quats: jax.Array,
                   hand_quats: jax.Array | None) -> jax.Array:
    """Local rotations of joints 1..J−1, (..., J−1, 4)."""
    del hand_quats  # The built-in body has no hand joints.
    return body_quats

  def forward_kinematics(
      self,
      betas: jax.Array,
      T_world_root: jax.Array,
      body_quats: jax.Array,
      hand_quats: jax.Array | None = None,
  ) -> jax.Array:
    """World poses of every joint.

    Args:
      betas: (..., 16) shape; broadcasts against the other inputs (e.g. (16,)
        for a whole sequence).
      T_world_root: (..., 7) pelvis pose `wxyz_xyz`.
      body_quats: (..., 21, 4) local rotations of joints 1..21, `wxyz`.
      hand_quats: (..., 30, 4) local rotations of the 30 hand joints (SMPL-H
        only; identity when None). The built-in body has no hand joints and
        ignores them.

    Returns:
      (..., J, 7) world poses `wxyz_xyz` of joints 0..J−1.
    """
    _check_last_dims("body_quats", body_quats, (skeleton.NUM_BODY_JOINTS, 4))
    return kinematics.forward_kinematics(
        T_world_root, self._local_quats(body_quats, hand_quats),
        self.joints_rest(betas), self.parents)

  def T_root_cpf(self, betas: jax.Array, body_quats: jax.Array) -> jax.Array:
    """CPF pose in the pelvis frame for a posed body.

    Only the pelvis→head chain is composed.

    Args:
      betas: (..., 16) shape.
      body_quats: (..., 21, 4) local rotations of joints 1..21.

    Returns:
      (..., 7) pose `wxyz_xyz`.
    """
    _check_last_dims("body_quats", body_quats, (skeleton.NUM_BODY_JOINTS, 4))
    rest = self.joints_rest(betas)
    batch = jnp.broadcast_shapes(rest.shape[:-2], body_quats.shape[:-2])
    T = jaxlie.SE3.identity(batch)
    for j in _ancestors(self.parents, skeleton.HEAD):
      offset = rest[..., j, :] - rest[..., self.parents[j], :]
      T = T @ jaxlie.SE3.from_rotation_and_translation(
          jaxlie.SO3(body_quats[..., j - 1, :]), offset)
    return (T @ jaxlie.SE3(self.T_head_cpf(betas))).wxyz_xyz

  def T_world_cpf(self, betas: jax.Array, T_world_root: jax.Array,
                  body_quats: jax.Array) -> jax.Array:
    """World CPF pose of a posed body.

    Args:
      betas: (..., 16) shape.
      T_world_root: (..., 7) pelvis pose.
      body_quats: (..., 21, 4) local rotations of joints 1..21.

    Returns:
      (..., 7) pose `wxyz_xyz`.
    """
    return (jaxlie.SE3(T_world_root)
            @ jaxlie.SE3(self.T_root_cpf(betas, body_quats))).wxyz_xyz

  def T_world_root_from_cpf(self, betas: jax.Array, T_world_cpf: jax.Array,
                            body_quats: jax.Array) -> jax.Array:
    """Pelvis pose that puts a posed body's CPF at `T_world_cpf`.

    The inverse of `T_world_cpf` in its root argument:
    `T_world_cpf(betas, T_world_root_from_cpf(betas, T, q), q) == T`.

    Args:
      betas: (..., 16) shape.
      T_world_cpf: (..., 7) desired CPF pose.
      body_quats: (..., 21, 4) local rotations of joints 1..21.

    Returns:
      (..., 7) pelvis pose `wxyz_xyz`.
    """
    return (jaxlie.SE3(T_world_cpf)
            @ jaxlie.SE3(self.T_root_cpf(betas, body_quats)).inverse()).wxyz_xyz


def _check_last_dims(name: str, x: jax.Array, dims: tuple[int, ...]) -> None:
  if tuple(x.shape[-len(dims):]) != dims:
    raise ValueError(
        f"{name}: expected shape (..., {', '.join(map(str, dims))}), "
        f"got {tuple(x.shape)}")


# Size of one unit of β0 (uniform scale): about one standard deviation of
# adult stature (≈ 7 cm at 1.70 m).
_SIZE_PER_BETA = 0.04


def _shape_basis() -> np.ndarray:
  """The built-in body's linear shape space, (16, 22, 3) metres per unit β.

  Every mode is left/right symmetric. Unit β is roughly one standard
  deviation of adult variation in that measure (1–3 cm for most modes).
  """
  mean = np.asarray(skeleton.REST_JOINTS, np.float64)
  idx = {name: i for i, name in enumerate(skeleton.JOINT_NAMES)}
  side = np.sign(np.round(mean[:, 0], 6))  # +1 left, −1 right, 0 midline
  basis = np.zeros((NUM_BETAS, len(mean), 3))

  def move(mode, names, axis, amount, mirror=False):
    for name in names:
      j = idx[name]
      basis[mode, j, axis] += amount * (side[j] if mirror else 1.0)

  both = lambda *names: [f"{s}_{n}" for n in names for s in ("left", "right")]
  arm = both("shoulder", "elbow", "wrist")
  leg = both("hip", "knee", "ankle", "foot")
  above_spine3 = ["neck", "head"] + both("collar") + arm
  x, y, z = 0, 1, 2

  # β0 overall size: uniform scale about the pelvis.
  basis[0] = _SIZE_PER_BETA * mean
  # β1 leg length vs torso: joints below the pelvis move down by 3 % of their
  # depth (ankles ≈ −2.6 cm), joints above it down by the same absolute
  # amount at head height, so stature barely changes.
  below = mean[:, y] < 0
  basis[1, below, y] = 0.03 * mean[below, y]
  head_drop = 0.03 * -skeleton.REST_SOLE_Y  # = the sole's drop, 2.79 cm
  basis[1, ~below, y] = -head_drop * mean[~below, y] / mean[skeleton.HEAD, y]
  # β2 shoulder width: collars ±0.6 cm, shoulders and the arms ±1.2 cm.
  move(2, both("collar"), x, 0.006, mirror=True)
  move(2, arm, x, 0.012, mirror=True)
  # β3 hip width: the hips and the legs below them ±1 cm sideways.
  move(3, leg, x, 0.01, mirror=True)
  # β4 arm length: upper arm +1.2 cm, forearm +1.3 cm.
  move(4, both("elbow"), x, 0.012, mirror=True)
  move(4, both("wrist"), x, 0.025, mirror=True)
  # β5 neck / head height.
  move(5, ["neck"], y, 0.008)
  move(5, ["head"], y, 0.016)
  # β6 torso depth / posture: upper back rounded, head and shoulders forward.
  move(6, ["spine3"], z, 0.005)
  move(6, ["neck"] + both("collar") + arm, z, 0.012)
  move(6, ["head"], z, 0.02)
  # β7.. smaller modes.
  move(7, both("foot"), z, 0.008)                      # β7 foot length
  move(8, both("knee"), y, -0.008)                     # β8 thigh vs shank
  move(9, both("elbow"), x, 0.008, mirror=True)        # β9 upper vs forearm
  move(10, ["spine2"], y, 0.004)                       # β10 chest height
  move(10, ["spine3"] + above_spine3, y, 0.008)
  move(11, both("knee"), x, 0.006, mirror=True)        # β11 knee width
  move(12, both("collar"), y, 0.004)                   # β12 shoulder height
  move(12, arm, y, 0.006)
  move(13, both("hip"), z, 0.005)                      # β13 pelvis depth
  move(13, ["spine1"], z, -0.005)
  move(14, both("ankle"), y, 0.005)                    # β14 ankle height
  move(15, both("elbow", "wrist"), y, -0.005)          # β15 arm carriage
  return basis


class SkeletonBody(BodyModel):
  """The built-in body: SMPL's 22-joint tree with a linear shape space.

  Rest joints are `mean_joints + Σ_i β_i · shape_basis[i]`, linear in β. The
  mean is `skeleton.REST_JOINTS` (a ≈ 1.70 m adult T-pose). The leading
  coefficients mean, per unit (≈ one standard deviation of adult variation):

  - β0 overall size, a uniform scale by 4 % (≈ 7 cm of stature);
  - β1 leg length vs torso (legs 3 % longer, torso shorter by as much);
  - β2 shoulder width (±1.2 cm per side);
  - β3 hip width (±1 cm per side, legs follow);
  - β4 arm length (+2.5 cm to the wrist);
  - β5 neck / head height (+1.6 cm at the head);
  - β6 torso depth / posture (head +2 cm and shoulders +1.2 cm forward);
  - β7 foot length, β8 thigh vs shank, β9 upper arm vs forearm, β10 chest
    height, β11 knee width, β12 shoulder height, β13 pelvis depth, β14 ankle
    height, β15 arm carriage (each 0.5–0.8 cm).

  The head→CPF offset is `skeleton.HEAD_TO_CPF` scaled with β0 only.

  Attributes:
    mean_joints: (22, 3) mean rest joints, pelvis at the origin.
    shape_basis: (16, 22, 3) metres per unit β.
    head_to_cpf: (3,) CPF position in the head frame for β = 0.
    parents: static parent indices (22,).
  """

  mean_joints: jax.Array
  shape_basis: jax.Array
  head_to_cpf: jax.Array
  parents: tuple[int, ...] = flax.struct.field(pytree_node=False)

  def joints_rest(self, betas: jax.Array) -> jax.Array:
    _check_last_dims("betas", betas, (NUM_BETAS,))
    return self.mean_joints + jnp.einsum("...b,bjc->...jc", betas,
                                         self.shape_basis)

  def T_head_cpf(self, betas: jax.Array) -> jax.Array:
    _check_last_dims("betas", betas, (NUM_BETAS,))
    scale = 1.0 + _SIZE_PER_BETA * betas[..., :1]
    translation = self.head_to_cpf * scale
    rotation = jnp.broadcast_to(
        jnp.array([1.0, 0.0, 0.0, 0.0], translation.dtype),
        translation.shape[:-1] + (4,))
    return jnp.concatenate([rotation, translation], axis=-1)


def builtin_body() -> SkeletonBody:
  """The default body model (no licensed file needed); deterministic."""
  return SkeletonBody(
      mean_joints=jnp.asarray(skeleton.REST_JOINTS, jnp.float32),
      shape_basis=jnp.asarray(_shape_basis(), jnp.float32),
      head_to_cpf=jnp.asarray(skeleton.HEAD_TO_CPF, jnp.float32),
      parents=tuple(skeleton.PARENTS),
  )
