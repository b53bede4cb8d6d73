"""Tests of the head-pose condition against EgoAllo's golden values."""

import dataclasses

import jaxlie
import numpy as np
import pytest

from motiongrpo_jax.model import conditioning

EPS = float(np.finfo(np.float32).eps)  # 1.19e-7


@dataclasses.dataclass(frozen=True)
class _Config:
  fourier_enc_freqs: int = 3
  include_canonicalized_cpf_rotation_in_cond: bool = True


@pytest.mark.parametrize("golden", ["golden_forward.npz",
                                    "golden_forward_nohands.npz"])
def test_condition_matches_golden(egoallo_reference, golden):
  z = np.load(egoallo_reference / golden)
  raw = conditioning.condition_raw(z["T_world_cpf"], z["T_cpf_tm1_cpf_t"])
  feats = conditioning.condition_features(z["T_world_cpf"],
                                          z["T_cpf_tm1_cpf_t"], _Config())
  # Ours and PyTorch's are float32 chains of ≲ 16 roundings (quaternion →
  # matrix, atan2 yaw, sin/cos, product) on values ≤ 1.64: 2·16·eps·1.64.
  raw_tol = 2 * 16 * EPS * 1.64  # 6.3e-6; measured 5e-7
  np.testing.assert_allclose(raw, z["cond_raw"], rtol=0, atol=raw_tol)
  # sin(2^k·x), k ≤ 2: the raw error × 4, plus the argument (≤ 8.1) rounding.
  feats_tol = 4 * raw_tol + 2 * EPS * 8.1  # 2.7e-5; measured 2e-6
  np.testing.assert_allclose(feats, z["cond_features"], rtol=0, atol=feats_tol)
  assert conditioning.condition_dim(_Config()) == 154


def test_condition_layout_by_hand():
  # Relative pose: 90° about z, translation (1, 2, 3); CPF looking along
  # world +y (yaw 90°) at height 1.5, so the canonical rotation faces +x.
  rel = jaxlie.SE3.from_rotation_and_translation(
      jaxlie.SO3.from_z_radians(np.pi / 2), np.array([1.0, 2.0, 3.0]))
  # CPF +z forward → world +y, CPF +y up → world +z, CPF +x left → world −x.
  r_world_cpf = np.array([[-1.0, 0, 0], [0, 0, 1], [0, 1, 0]])
  pose = jaxlie.SE3.from_rotation_and_translation(
      jaxlie.SO3.from_matrix(r_world_cpf), np.array([4.0, 5.0, 1.5]))
  raw = np.asarray(conditioning.condition_raw(
      np.asarray(pose.wxyz_xyz, np.float32)[None],
      np.asarray(rel.wxyz_xyz, np.float32)[None]))[0]
  np.testing.assert_allclose(
      raw[:12], [0, -1, 0, 1, 1, 0, 0, 2, 0, 0, 1, 3], atol=1e-6)
  assert raw[12] == pytest.approx(1.5)
  # Rz(−90°)·R: forward (third column) becomes +x, up stays +z.
  np.testing.assert_allclose(
      raw[13:].reshape(3, 3), [[0, 0, 1], [1, 0, 0], [0, 1, 0]], atol=1e-6)
  no_rot = conditioning.condition_raw(
      np.asarray(pose.wxyz_xyz, np.float32)[None],
      np.asarray(rel.wxyz_xyz, np.float32)[None], False)
  assert no_rot.shape == (1, 13)
  feats = np.asarray(conditioning.condition_features(
      np.asarray(pose.wxyz_xyz, np.float32)[None],
      np.asarray(rel.wxyz_xyz, np.float32)[None], _Config(fourier_enc_freqs=2)))
  # [x (22), sin(x_c·2^k) channel-major (44), sin(· + π/2) (44)].
  assert feats.shape == (1, 110)
  np.testing.assert_allclose(feats[0, 22 + 2 * 3 + 1], np.sin(2.0), atol=1e-6)
  # sin(1.5 + π/2) in float32: the sum (≈ 3.07) rounds by ≤ 2·eps, sin by ≤ eps.
  np.testing.assert_allclose(feats[0, 66 + 2 * 12], np.cos(1.5), atol=8 * EPS)


def test_condition_is_invariant_to_world_yaw_and_xy(egoallo_reference):
  z = np.load(egoallo_reference / "golden_forward.npz")
  shift = jaxlie.SE3.from_rotation_and_translation(
      jaxlie.SO3.from_z_radians(1.234), np.array([3.0, -7.0, 0.0]))
  moved = np.asarray((shift @ jaxlie.SE3(z["T_world_cpf"])).wxyz_xyz, np.float32)
  a = conditioning.condition_raw(z["T_world_cpf"], z["T_cpf_tm1_cpf_t"])
  b = conditioning.condition_raw(moved, z["T_cpf_tm1_cpf_t"])
  np.testing.assert_allclose(a, b, atol=2e-5)
