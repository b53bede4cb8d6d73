"""Tests of the packed motion state layout and its rotation projections."""

import jax
import numpy as np
import pytest

from motiongrpo_jax.model import packing

EPS = float(np.finfo(np.float32).eps)  # 1.19e-7


def _fields(rng, lead=(2, 5), hands=True):
  betas = rng.normal(size=lead + (16,)).astype(np.float32)
  body = rng.normal(size=lead + (21, 3, 3)).astype(np.float32)
  contacts = rng.normal(size=lead + (21,)).astype(np.float32)
  hand = rng.normal(size=lead + (30, 3, 3)).astype(np.float32) if hands else None
  return betas, body, contacts, hand


def test_offsets_match_egoallo_layout():
  assert (packing.BETAS_SLICE, packing.BODY_SLICE, packing.CONTACTS_SLICE,
          packing.HANDS_SLICE) == (slice(0, 16), slice(16, 205),
                                   slice(205, 226), slice(226, 496))
  assert packing.packed_dim(True) == 496 and packing.packed_dim(False) == 226
  assert [n for n, _ in packing.modalities(True)] == [
      "betas", "body_rotmats", "contacts", "hand_rotmats"]


@pytest.mark.parametrize("hands", [True, False])
def test_pack_is_row_major_concatenation_and_unpack_inverts(hands):
  rng = np.random.default_rng(0)
  betas, body, contacts, hand = _fields(rng, hands=hands)
  x = np.asarray(packing.pack(betas, body, contacts, hand))
  assert x.shape == (2, 5, packing.packed_dim(hands))
  # Hand-computed positions: joint j, entry (r, c) sits at 16 + 9j + 3r + c.
  np.testing.assert_array_equal(x[1, 3, 16 + 9 * 4 + 3 * 2 + 1], body[1, 3, 4, 2, 1])
  np.testing.assert_array_equal(x[0, 2, 205 + 7], contacts[0, 2, 7])
  np.testing.assert_array_equal(x[..., :16], betas)
  if hands:
    np.testing.assert_array_equal(x[0, 4, 226 + 9 * 29 + 8], hand[0, 4, 29, 2, 2])
  fields = packing.unpack(x, hands)
  np.testing.assert_array_equal(fields.betas, betas)
  np.testing.assert_array_equal(fields.body_rotmats, body)
  np.testing.assert_array_equal(fields.contacts, contacts)
  if hands:
    np.testing.assert_array_equal(fields.hand_rotmats, hand)
  else:
    assert fields.hand_rotmats is None


def test_pack_repeats_single_frame_betas():
  rng = np.random.default_rng(1)
  betas, body, contacts, _ = _fields(rng, hands=False)
  x = packing.pack(betas[:, :1], body, contacts)
  np.testing.assert_array_equal(x[:, 4, :16], betas[:, 0])


def test_wrong_dims_raise():
  with pytest.raises(ValueError, match="expected 496"):
    packing.unpack(np.zeros((3, 226), np.float32), include_hands=True)
  with pytest.raises(ValueError, match="body_rotmats"):
    packing.pack(np.zeros((3, 16)), np.zeros((3, 20, 3, 3)), np.zeros((3, 21)))


def test_projections_touch_only_their_blocks():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(2, 3, 496)).astype(np.float32)
  body_only = np.asarray(jax.jit(packing.project_body_rotmats,
                                 static_argnums=1)(x, True))
  both = np.asarray(packing.project_all_rotmats(x, True))
  np.testing.assert_array_equal(body_only[..., :16], x[..., :16])
  np.testing.assert_array_equal(body_only[..., 205:], x[..., 205:])
  np.testing.assert_array_equal(both[..., 205:226], x[..., 205:226])
  np.testing.assert_allclose(both[..., :226], body_only[..., :226], atol=1e-6)
  for block, n in ((body_only[..., 16:205], 21), (both[..., 226:], 30)):
    mats = block.reshape(2, 3, n, 3, 3)
    # float32 SVD: U and V orthogonal to O(n·eps), n = 3; with the products
    # (UVᵀ)(UVᵀ)ᵀ − I ≲ 64·eps (2·10⁵ random matrices: at most 14·eps).
    np.testing.assert_allclose(mats @ np.swapaxes(mats, -1, -2),
                               np.broadcast_to(np.eye(3), mats.shape),
                               atol=64 * EPS)
  # U·Vᵀ is the nearest orthogonal matrix: a rotation stays (almost) put.
  rot = np.linalg.qr(rng.normal(size=(3, 3)))[0]
  x[0, 0, 16:25] = (rot * 1.01).reshape(9)
  out = np.asarray(packing.project_body_rotmats(x, True))
  # U·Vᵀ of a well-conditioned matrix: ≤ 3·eps·cond from the exact one (2·10⁵
  # random matrices), plus the float32 rounding of the input: 8·eps.
  np.testing.assert_allclose(out[0, 0, 16:25], rot.reshape(9), atol=8 * EPS)
