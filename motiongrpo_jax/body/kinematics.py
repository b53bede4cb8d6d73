"""Forward kinematics on a kinematic tree, shared by every body model.

A body is a tree of joints with rest positions (the shaped skeleton, root
relative, in the body's canonical frame: SMPL's y-up, +z forward, +x left)
and per-joint local rotations. Joint j's world pose is
T_world_j = T_world_parent(j) ∘ (R_j, J_j − J_parent(j)), with the root's world
pose given directly as `T_world_root` (DESIGN.md §2.3: the pelvis pose).
"""

from __future__ import annotations

from collections.abc import Sequence
import functools

import jax
import jax.numpy as jnp
import jaxlie


def forward_kinematics(
    T_world_root: jax.Array,
    local_quats: jax.Array,
    rest_joints: jax.Array,
    parents: Sequence[int],
) -> jax.Array:
  """World poses of all joints.

  Args:
    T_world_root: (..., 7) root (pelvis) pose, `wxyz_xyz`.
    local_quats: (..., J−1, 4) local rotations of joints 1..J−1, `wxyz`.
    rest_joints: (..., J, 3) rest joint positions; only differences to the
      parent matter, so any origin works. Broadcasts against the other inputs
      (e.g. (J, 3) for one shape over a whole sequence).
    parents: length-J parent indices, parents[0] = −1, parents[j] < j.

  Returns:
    (..., J, 7) world poses `wxyz_xyz` of every joint (index 0 = root).
  """
  num_joints = len(parents)
  if local_quats.shape[-2] != num_joints - 1:
    raise ValueError(
        f"local_quats has {local_quats.shape[-2]} joints, the tree has "
        f"{num_joints - 1} non-root joints")
  batch = jnp.broadcast_shapes(
      T_world_root.shape[:-1], local_quats.shape[:-2], rest_joints.shape[:-2])
  offsets = rest_joints[..., 1:, :] - rest_joints[..., jnp.asarray(parents[1:]), :]
  offsets = jnp.broadcast_to(offsets, batch + offsets.shape[-2:])
  local_quats = jnp.broadcast_to(local_quats, batch + local_quats.shape[-2:])
  local = jaxlie.SE3.from_rotation_and_translation(
      jaxlie.SO3(local_quats), offsets).wxyz_xyz  # (..., J−1, 7)
  world = jnp.zeros(batch + (num_joints, 7), local.dtype)
  world = world.at[..., 0, :].set(
      jnp.broadcast_to(T_world_root, batch + (7,)).astype(local.dtype))
  # Joints of one tree depth are composed together: one batched composition
  # per level (about 8 for SMPL, 11 for SMPL-H) instead of one per joint,
  # which keeps compiled programs small.
  for level in _levels(tuple(parents)):
    idx = jnp.asarray(level)
    parent_idx = jnp.asarray([parents[j] for j in level])
    composed = (jaxlie.SE3(world[..., parent_idx, :])
                @ jaxlie.SE3(local[..., idx - 1, :]))
    world = world.at[..., idx, :].set(composed.wxyz_xyz)
  return world


@functools.cache
def _levels(parents: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
  """Non-root joints grouped by depth in the tree (root = depth 0)."""
  depth = [0] * len(parents)
  for j in range(1, len(parents)):
    if not 0 <= parents[j] < j:
      raise ValueError(
          f"parents: joint {j} has parent {parents[j]}; expected a parent "
          f"in 0..{j - 1} (topological order)")
    depth[j] = depth[parents[j]] + 1
  return tuple(
      tuple(j for j in range(1, len(parents)) if depth[j] == d)
      for d in range(1, max(depth) + 1))
