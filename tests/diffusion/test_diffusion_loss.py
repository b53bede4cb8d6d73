"""EgoAllo's training loss against `golden_loss.npz`."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from motiongrpo_jax.diffusion import loss
from motiongrpo_jax.model.denoiser import Denoiser
from motiongrpo_jax.model.egoallo_import import load_egoallo_checkpoint

EPS = float(np.finfo(np.float32).eps)  # 1.19e-7
FIELDS = ("betas", "body_quats", "hand_quats", "contacts", "T_world_cpf",
          "T_cpf_tm1_cpf_t", "mask")


def _setup(reference):
  golden = np.load(reference / "golden_loss.npz")
  model, params = load_egoallo_checkpoint(reference / "small_exp" /
                                          "checkpoints_0")
  # The golden forward passed the mask, which EgoAllo's self-attention ignores.
  model = Denoiser(dataclasses.replace(model.config, mask_self_attention=False))
  batch = {name: jnp.asarray(golden[name]) for name in FIELDS}
  return golden, model, params, batch


def test_loss_matches_golden(egoallo_reference):
  golden, model, params, batch = _setup(egoallo_reference)
  x0, moving = jax.jit(lambda batch: (
      (x0 := loss.clean_packed_state(batch, include_hands=True)),
      loss.hand_motion(x0, batch["mask"])))(batch)
  # q → R (normalise, products, sums: ≲ 12 roundings on values ≤ 1) on both
  # sides; betas and contacts are copies: 2·12·eps.
  np.testing.assert_allclose(x0, golden["x0_packed"], rtol=0, atol=2 * 12 * EPS)
  np.testing.assert_array_equal(moving, golden["hand_motion"])
  loss_fn = jax.jit(lambda params, batch, t, noise: loss.denoising_loss(
      params, model, batch, t=t, noise=noise))
  t, noise = jnp.asarray(golden["t"]), jnp.asarray(golden["noise"])
  total, terms = loss_fn(params, batch, t, noise)
  for name in loss.TERMS:
    assert float(terms[name]) == pytest.approx(float(golden[f"loss_{name}"]),
                                               rel=1e-5), name
    assert loss.LossConfig().term_weight(name) == golden[f"loss_weight_{name}"]
  assert float(total) == pytest.approx(float(golden["loss_total"]), rel=1e-5)
  np.testing.assert_allclose(loss.LossConfig().beta_coeff_weights,
                             golden["beta_coeff_weights"], rtol=1e-15)

  # Frames outside the mask contribute nothing: with sequence 1 fully masked,
  # changing its contacts leaves every term unchanged.
  masked = dict(batch, mask=batch["mask"].at[1].set(False))
  _, before = loss_fn(params, masked, t, noise)
  moved = dict(masked, contacts=masked["contacts"].at[1].add(3.0))
  _, after = loss_fn(params, moved, t, noise)
  for name in loss.TERMS:
    assert float(after[name]) == pytest.approx(float(before[name]), rel=1e-6)


def test_loss_with_key(egoallo_reference):
  _, model, params, batch = _setup(egoallo_reference)
  loss_fn = jax.jit(lambda params, key: loss.denoising_loss(
      params, model, batch, key))
  total, terms = loss_fn(params, jax.random.key(3))
  assert np.isfinite(float(total)) and float(total) > 0
  config = loss.LossConfig()
  expected = sum(config.term_weight(n) * float(terms[n]) for n in loss.TERMS)
  assert float(total) == pytest.approx(expected, rel=1e-6)
  again, _ = loss_fn(params, jax.random.key(3))
  assert float(again) == float(total)
  other, _ = loss_fn(params, jax.random.key(4))
  assert float(other) != float(total)
  with pytest.raises(ValueError, match="hand_quats"):
    loss.denoising_loss(params, model, dict(batch, hand_quats=None),
                        jax.random.key(0))
