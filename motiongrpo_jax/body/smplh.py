"""SMPL-H body model from a user's `model.npz`: shape, kinematics, skinning.

SMPL-H has 52 joints: the pelvis, the 21 SMPL body joints (1..21) and 30 hand
joints (22..36 left hand, 37..51 right hand). Shaped rest vertices are
`v_template + shapedirs·β` (16 coefficients), rest joints
`J_regressor @ shaped vertices` (made root-relative here). Posing is linear
blend skinning after SMPL's pose blend shapes: `posedirs` times the stacked
(R_j − I) of the non-root joints, each flattened row-major.

The CPF is EgoAllo's: the midpoint of the eyes, left eye = mean of rest
vertices 2800 and 2802, right eye = mean of 6260 and 6262, relative to the
rest head joint (15), with an identity rotation.

The model file is the user's own (licensed); nothing here ships with it.
"""

from __future__ import annotations

import os
import zipfile

import flax.struct
import jax
import jax.numpy as jnp
import jaxlie
import numpy as np

from motiongrpo_jax.body import kinematics
from motiongrpo_jax.body import model as body_model
from motiongrpo_jax.body import skeleton

NUM_JOINTS = 52
NUM_HAND_JOINTS = 30
# Rest vertices whose mean is the CPF position: EgoAllo's eye vertices.
CPF_VERTICES = (6260, 6262, 2800, 2802)


class SmplhBody(body_model.BodyModel):
  """SMPL-H as a pytree.

  Attributes:
    v_template: (V, 3) template vertices.
    shapedirs: (V, 3, 16) shape blend shapes.
    posedirs: (V, 3, 9K) pose blend shapes for the first K non-root joints
      (K = 51 for a standard SMPL-H file).
    J_regressor: (52, V) dense joint regressor.
    weights: (V, 52) skinning weights.
    faces: (F, 3) int32 triangle indices.
    parents: static parent indices (52,), parents[0] = −1.
  """

  v_template: jax.Array
  shapedirs: jax.Array
  posedirs: jax.Array
  J_regressor: jax.Array
  weights: jax.Array
  faces: jax.Array
  parents: tuple[int, ...] = flax.struct.field(pytree_node=False)

  def vertices_rest(self, betas: jax.Array) -> jax.Array:
    """Shaped rest vertices (not root-relative).

    Args:
      betas: (..., 16).

    Returns:
      (..., V, 3).
    """
    body_model._check_last_dims("betas", betas, (body_model.NUM_BETAS,))
    return self.v_template + jnp.einsum("...b,vcb->...vc", betas,
                                        self.shapedirs)

  def _joints_rest_absolute(self, betas: jax.Array) -> jax.Array:
    return jnp.einsum("jv,...vc->...jc", self.J_regressor,
                      self.vertices_rest(betas))

  def joints_rest(self, betas: jax.Array) -> jax.Array:
    joints = self._joints_rest_absolute(betas)
    return joints - joints[..., :1, :]

  def T_head_cpf(self, betas: jax.Array) -> jax.Array:
    verts = self.vertices_rest(betas)
    eyes = jnp.mean(verts[..., jnp.asarray(CPF_VERTICES), :], axis=-2)
    head = jnp.einsum("v,...vc->...c", self.J_regressor[skeleton.HEAD],
                      verts)
    translation = eyes - head
    rotation = jnp.broadcast_to(
        jnp.array([1.0, 0.0, 0.0, 0.0], translation.dtype),
        translation.shape[:-1] + (4,))
    return jnp.concatenate([rotation, translation], axis=-1)

  def _local_quats(self, body_quats: jax.Array,
                   hand_quats: jax.Array | None) -> jax.Array:
    if hand_quats is None:
      hand_quats = jnp.broadcast_to(
          jnp.array([1.0, 0.0, 0.0, 0.0], body_quats.dtype),
          body_quats.shape[:-2] + (NUM_HAND_JOINTS, 4))
    body_model._check_last_dims("hand_quats", hand_quats,
                                (NUM_HAND_JOINTS, 4))
    batch = jnp.broadcast_shapes(body_quats.shape[:-2], hand_quats.shape[:-2])
    return jnp.concatenate([
        jnp.broadcast_to(body_quats, batch + body_quats.shape[-2:]),
        jnp.broadcast_to(hand_quats, batch + hand_quats.shape[-2:]),
    ], axis=-2)

  def skin(
      self,
      betas: jax.Array,
      T_world_root: jax.Array,
      body_quats: jax.Array,
      hand_quats: jax.Array | None = None,
  ) -> jax.Array:
    """Posed mesh vertices in the world.

    With the identity root pose and identity rotations this returns the
    shaped template shifted so that the pelvis joint is at the origin.

    Args:
      betas: (..., 16) shape.
      T_world_root: (..., 7) pelvis pose.
      body_quats: (..., 21, 4) local rotations of joints 1..21.
      hand_quats: (..., 30, 4) local hand rotations; identity when None.

    Returns:
      (..., V, 3) vertices, metres.
    """
    local_quats = self._local_quats(body_quats, hand_quats)  # (..., 51, 4)
    verts = self.vertices_rest(betas)  # (..., V, 3)
    joints = self._joints_rest_absolute(betas)  # (..., 52, 3)
    # Pose blend shapes: SMPL's (R − I) features of the first K joints.
    num_pose = self.posedirs.shape[-1] // 9
    rot = jaxlie.SO3(local_quats[..., :num_pose, :]).as_matrix()
    features = (rot - jnp.eye(3, dtype=rot.dtype)).reshape(
        *rot.shape[:-3], num_pose * 9)
    verts = verts + jnp.einsum("...p,vcp->...vc", features, self.posedirs)
    # Linear blend skinning: x ↦ Σ_j w_j (R_wj (x − J_j) + p_wj).
    T_world_joints = kinematics.forward_kinematics(
        T_world_root, local_quats, joints, self.parents)  # (..., 52, 7)
    T = jaxlie.SE3(T_world_joints)
    R = T.rotation().as_matrix()  # (..., 52, 3, 3)
    t = T.translation() - jnp.einsum("...jab,...jb->...ja", R, joints)
    blended_R = jnp.einsum("vj,...jab->...vab", self.weights, R)
    blended_t = jnp.einsum("vj,...ja->...va", self.weights, t)
    return jnp.einsum("...vab,...vb->...va", blended_R, verts) + blended_t


def _expected_shapes(num_verts: int, num_pose: int) -> dict[str, tuple]:
  return {
      "v_template": (num_verts, 3),
      "shapedirs": (num_verts, 3, f">={body_model.NUM_BETAS}"),
      "posedirs": (num_verts, 3, num_pose),
      "J_regressor": (NUM_JOINTS, num_verts),
      "weights": (num_verts, NUM_JOINTS),
      "kintree_table": (2, NUM_JOINTS),
      "f": ("F", 3),
  }


def _read_key(npz, path: str, key: str, allow_pickle: bool):
  """One array from an open npz; sparse (pickled) matrices made dense."""
  try:
    value = npz[key]
  except ValueError as e:  # Object array while allow_pickle=False.
    raise ValueError(
        f"{path}: key '{key}' is stored as a pickled Python object (e.g. a "
        "scipy sparse matrix); loading it would run code from the file. "
        "Re-save the model with dense arrays, or pass allow_pickle=True to "
        "load_smplh if you trust the file.") from e
  if value.dtype == object:
    value = value.item() if value.shape == () else value
    if hasattr(value, "toarray"):
      value = value.toarray()
    value = np.asarray(value)
  return value


def load_smplh(path: str | os.PathLike, *,
               allow_pickle: bool = False) -> SmplhBody:
  """Loads SMPL-H from a `model.npz` (keys as in the official release).

  Args:
    path: npz with `v_template (V,3)`, `shapedirs (V,3,≥16)`, `posedirs
      (V,3,9K)` with 1 ≤ K ≤ 51 (K = 51 for SMPL-H), `J_regressor (52,V)`
      (dense, or a sparse matrix when `allow_pickle`), `weights (V,52)`,
      `kintree_table (2,52)` and `f (F,3)`. V must exceed the CPF vertex
      indices (V ≥ 6263).
    allow_pickle: also read keys stored as pickled objects. Off by default:
      unpickling runs code from the file.

  Returns:
    The body, float32.

  Raises:
    FileNotFoundError: the file does not exist.
    ValueError: keys missing or mis-shaped (every bad key is named with its
      expected shape), or pickled data without `allow_pickle`.
  """
  path = os.fspath(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"SMPL-H model file not found: {path}")
  try:
    npz = np.load(path, allow_pickle=allow_pickle)
  except (OSError, ValueError, zipfile.BadZipFile) as e:
    raise ValueError(f"{path}: not a readable .npz file ({e})") from e
  with npz:
    names = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights",
             "kintree_table", "f")
    arrays = {k: _read_key(npz, path, k, allow_pickle)
              for k in names if k in npz.files}
  num_verts = arrays["v_template"].shape[0] if (
      "v_template" in arrays and arrays["v_template"].ndim == 2) else "V"
  num_pose = "9K"
  if "posedirs" in arrays and arrays["posedirs"].ndim == 3:
    p = arrays["posedirs"].shape[2]
    if p % 9 == 0 and 1 <= p // 9 <= NUM_JOINTS - 1:
      num_pose = p
  expected = _expected_shapes(num_verts, num_pose)
  problems = []
  for key, shape in expected.items():
    if key not in arrays:
      problems.append(f"'{key}' missing (expected shape {_fmt(shape)})")
      continue
    got = arrays[key].shape
    ok = len(got) == len(shape) and all(
        isinstance(e, str) and (not e.startswith(">=") or g >= int(e[2:]))
        or g == e for g, e in zip(got, shape))
    if not ok:
      problems.append(f"'{key}' has shape {got}, expected {_fmt(shape)}")
  if isinstance(num_verts, int) and num_verts <= max(CPF_VERTICES):
    problems.append(
        f"'v_template' has {num_verts} vertices; the CPF needs vertex "
        f"{max(CPF_VERTICES)} (expected V ≥ {max(CPF_VERTICES) + 1})")
  if problems:
    raise ValueError(f"{path}: bad SMPL-H model file:\n  " +
                     "\n  ".join(problems))
  parents = [int(p) for p in arrays["kintree_table"][0].astype(np.int64)]
  parents[0] = -1  # Stored as −1 or as uint32's 4294967295.
  if any(not 0 <= p < j for j, p in enumerate(parents) if j > 0):
    raise ValueError(
        f"{path}: 'kintree_table' row 0 must give each joint j ≥ 1 a parent "
        f"in 0..j−1, got {parents}")
  if tuple(parents[:22]) != skeleton.PARENTS:
    raise ValueError(
        f"{path}: 'kintree_table' body joints 0..21 must follow SMPL's tree "
        f"{skeleton.PARENTS}, got {tuple(parents[:22])}")
  f32 = lambda k: jnp.asarray(arrays[k], jnp.float32)
  return SmplhBody(
      v_template=f32("v_template"),
      shapedirs=jnp.asarray(
          arrays["shapedirs"][:, :, :body_model.NUM_BETAS], jnp.float32),
      posedirs=f32("posedirs"),
      J_regressor=f32("J_regressor"),
      weights=f32("weights"),
      faces=jnp.asarray(arrays["f"], jnp.int32),
      parents=tuple(parents),
  )


def _fmt(shape: tuple) -> str:
  return "(" + ", ".join(str(e) for e in shape) + ")"
