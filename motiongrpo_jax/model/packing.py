"""The packed per-frame motion state that the denoiser reads and predicts.

Layout of the last dimension (EgoAllo's `EgoDenoiseTraj.pack`, in this order):

| offset | size | field |
|---|---|---|
| 0 | 16 | `betas` (SMPL-H shape, repeated on every frame) |
| 16 | 189 | `body_rotmats`: 21 local body rotations, 3×3 row-major |
| 205 | 21 | `contacts`: per-joint floor contact (raw, no sigmoid) |
| 226 | 270 | `hand_rotmats` (with hands only): 30 × 3×3, 15 left then 15 right |

so d = 226 without hands and 496 with hands.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from motiongrpo_jax import geometry
from motiongrpo_jax import geometry_polar

NUM_BETAS = 16
NUM_BODY_JOINTS = 21
NUM_HAND_JOINTS = 30

BETAS_DIM = NUM_BETAS
BODY_DIM = NUM_BODY_JOINTS * 9
CONTACTS_DIM = NUM_BODY_JOINTS
HANDS_DIM = NUM_HAND_JOINTS * 9

BETAS_SLICE = slice(0, BETAS_DIM)
BODY_SLICE = slice(BETAS_SLICE.stop, BETAS_SLICE.stop + BODY_DIM)
CONTACTS_SLICE = slice(BODY_SLICE.stop, BODY_SLICE.stop + CONTACTS_DIM)
HANDS_SLICE = slice(CONTACTS_SLICE.stop, CONTACTS_SLICE.stop + HANDS_DIM)

# Each field's dims by its `modalities` name.
FIELD_SLICES = {"betas": BETAS_SLICE, "body_rotmats": BODY_SLICE,
                "contacts": CONTACTS_SLICE, "hand_rotmats": HANDS_SLICE}

DIM_NO_HANDS = CONTACTS_SLICE.stop  # 226
DIM_WITH_HANDS = HANDS_SLICE.stop  # 496


class MotionFields(NamedTuple):
  """The fields of a packed state.

  Attributes:
    betas: (..., T, 16).
    body_rotmats: (..., T, 21, 3, 3).
    contacts: (..., T, 21).
    hand_rotmats: (..., T, 30, 3, 3), or None without hands.
  """
  betas: jax.Array
  body_rotmats: jax.Array
  contacts: jax.Array
  hand_rotmats: jax.Array | None


def packed_dim(include_hands: bool) -> int:
  """The packed state size d: 496 with hands, 226 without."""
  return DIM_WITH_HANDS if include_hands else DIM_NO_HANDS


def modalities(include_hands: bool) -> tuple[tuple[str, int], ...]:
  """(name, size) of each packed field in packing order.

  The denoiser has one encoder and one decoder per entry, named after it.
  """
  fields = (("betas", BETAS_DIM), ("body_rotmats", BODY_DIM),
            ("contacts", CONTACTS_DIM))
  if include_hands:
    fields += (("hand_rotmats", HANDS_DIM),)
  return fields


def select_fields(x: jax.Array, names: tuple[str, ...]) -> jax.Array:
  """(..., d) → (..., Σ sizes): the dims of the named fields (`FIELD_SLICES`),
  in the order given."""
  return jnp.concatenate([x[..., FIELD_SLICES[n]] for n in names], axis=-1)


def _check_dim(x: jax.Array, include_hands: bool) -> None:
  expected = packed_dim(include_hands)
  if x.shape[-1] != expected:
    raise ValueError(
        f"packed state has last dim {x.shape[-1]}, expected {expected} for "
        f"include_hands={include_hands}")


def pack(betas: jax.Array,
         body_rotmats: jax.Array,
         contacts: jax.Array,
         hand_rotmats: jax.Array | None = None) -> jax.Array:
  """Concatenates the motion fields into the packed state.

  Args:
    betas: (..., T, 16), or (..., 1, 16) to repeat over frames.
    body_rotmats: (..., T, 21, 3, 3) local body rotations.
    contacts: (..., T, 21).
    hand_rotmats: (..., T, 30, 3, 3) or None (no hands).

  Returns:
    (..., T, d) with d = 496 with hands, 226 without.
  """
  lead = body_rotmats.shape[:-3]
  if body_rotmats.shape[-3:] != (NUM_BODY_JOINTS, 3, 3):
    raise ValueError(
        f"body_rotmats has shape {body_rotmats.shape}, expected (..., T, 21, 3, 3)")
  if contacts.shape[-1] != CONTACTS_DIM:
    raise ValueError(f"contacts has shape {contacts.shape}, expected (..., T, 21)")
  if betas.shape[-1] != NUM_BETAS:
    raise ValueError(f"betas has shape {betas.shape}, expected (..., T, 16)")
  parts = [
      jnp.broadcast_to(betas, lead + (NUM_BETAS,)),
      body_rotmats.reshape(lead + (BODY_DIM,)),
      jnp.broadcast_to(contacts, lead + (CONTACTS_DIM,)),
  ]
  if hand_rotmats is not None:
    if hand_rotmats.shape[-3:] != (NUM_HAND_JOINTS, 3, 3):
      raise ValueError(
          f"hand_rotmats has shape {hand_rotmats.shape}, expected (..., T, 30, 3, 3)")
    parts.append(hand_rotmats.reshape(lead + (HANDS_DIM,)))
  return jnp.concatenate(parts, axis=-1)


def unpack(x: jax.Array, include_hands: bool) -> MotionFields:
  """Splits a packed state into its fields.

  Args:
    x: (..., T, d) packed state.
    include_hands: whether x carries the 30 hand rotations.

  Returns:
    The fields; `hand_rotmats` is None without hands.
  """
  _check_dim(x, include_hands)
  lead = x.shape[:-1]
  hands = None
  if include_hands:
    hands = x[..., HANDS_SLICE].reshape(lead + (NUM_HAND_JOINTS, 3, 3))
  return MotionFields(
      betas=x[..., BETAS_SLICE],
      body_rotmats=x[..., BODY_SLICE].reshape(lead + (NUM_BODY_JOINTS, 3, 3)),
      contacts=x[..., CONTACTS_SLICE],
      hand_rotmats=hands)


# U·Vᵀ of 3×3 blocks: by SVD (EgoAllo's), or by the Newton polar iteration
# (the same matrix to ~1e-6, several times faster on CPUs).
PROJECTIONS = {"svd": geometry.project_to_rotation,
               "polar": geometry_polar.project_to_rotation_polar}


def _project_block(block: jax.Array, method: str = "svd") -> jax.Array:
  if method not in PROJECTIONS:
    raise ValueError(f"rotation projection method={method!r}: expected one "
                     f"of {sorted(PROJECTIONS)}")
  lead = block.shape[:-1]
  mats = block.reshape(lead + (-1, 3, 3))
  return PROJECTIONS[method](mats).reshape(block.shape)


def project_body_rotmats(x: jax.Array, include_hands: bool,
                         method: str = "svd") -> jax.Array:
  """Replaces the body 3×3 blocks by their projection U·Vᵀ.

  EgoAllo's sampler projection: body only (hands, betas and contacts are left
  as they are; no determinant fix).

  Args:
    x: (..., T, d) packed state.
    include_hands: whether x carries hands (checks d).
    method: "svd" (EgoAllo's) or "polar" (`PROJECTIONS`).

  Returns:
    (..., T, d).
  """
  _check_dim(x, include_hands)
  return jnp.concatenate([
      x[..., :BODY_SLICE.start],
      _project_block(x[..., BODY_SLICE], method),
      x[..., BODY_SLICE.stop:],
  ], axis=-1)


def project_all_rotmats(x: jax.Array, include_hands: bool) -> jax.Array:
  """Projects the body and (with hands) the hand 3×3 blocks by U·Vᵀ.

  As EgoAllo's `forward(project_output_rotmats=True)`.

  Args:
    x: (..., T, d) packed state.
    include_hands: whether x carries hands.

  Returns:
    (..., T, d).
  """
  x = project_body_rotmats(x, include_hands)
  if not include_hands:
    return x
  return jnp.concatenate(
      [x[..., :HANDS_SLICE.start], _project_block(x[..., HANDS_SLICE])], axis=-1)
