"""Parity of the Flax denoiser with EgoAllo's PyTorch forward (golden files).

Tolerances: each float32 forward (ours, PyTorch's) is within S of the exact
one, so the two differ by ≤ 2S. S, measured by running this port in float64:
≤ 2.1e-7 on `out`, ≤ 1.6e-6 on the intermediates (largest: cond_features,
sin(4x) of inputs ≤ 1.64), 1.6e-6 (ours) / 2.2e-6 (golden) after the SVD
projection, which amplifies the output's error by 2/min(σ₂ + σ₃) ≈ 35.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from motiongrpo_jax.model import denoiser as denoiser_lib
from motiongrpo_jax.model import params_io
from motiongrpo_jax.model import egoallo_import

GOLDEN = {"small_exp": "golden_forward.npz",
          "small_exp_nohands": "golden_forward_nohands.npz"}
OUT_TOL = 1e-5  # ≈ 24 × 2S (2S = 4.2e-7); measured 2.5e-7
INTERMEDIATE_TOL = 2e-5  # ≈ 6 × 2S (2S = 3.2e-6); measured ≤ 2.0e-6
PROJECTED_TOL = 2e-5  # ≈ 5 × (1.6e-6 + 2.2e-6); measured 2.6e-6


@functools.cache
def _load(reference_dir, exp):
  model, params = egoallo_import.load_egoallo_checkpoint(
      reference_dir / exp / "checkpoints_0")
  golden = dict(np.load(reference_dir / GOLDEN[exp]))
  return model, params, golden


def _inputs(z):
  return z["x_t_packed"], z["t"], z["T_world_cpf"], z["T_cpf_tm1_cpf_t"]


def _max_err(a, b):
  return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


@pytest.mark.parametrize("exp", sorted(GOLDEN))
def test_forward_and_intermediates_match_golden(egoallo_reference, exp):
  model, params, z = _load(egoallo_reference, exp)
  out, state = model.apply({"params": params}, *_inputs(z),
                           mutable=["intermediates"])
  assert out.dtype == np.float32
  assert _max_err(out, z["out"]) <= OUT_TOL
  inter = state["intermediates"]
  ours = {k: v[0] for k, v in inter.items() if not k.startswith(("encoder_layers", "decoder_layers"))}
  ours["noise_emb"] = ours.pop("noise_embedding")
  for stack in ("encoder", "decoder"):
    for i in range(2):
      layer = inter[f"{stack}_layers_{i}"]
      for key in ("sattn_out", "mlp_out", "out") + (
          ("xattn_out",) if stack == "decoder" else ()):
        ours[f"{stack}_layer{i}_{key}"] = layer[key][0]
  # Encoder block 0's q/k: ours are (B, N, 2, H, dh), the golden (B, H, N, dh).
  layer0 = inter["encoder_layers_0"]
  for tag, key in (("prerope", "sattn_qk_prerope"), ("rope", "sattn_qk_rope")):
    for j, name in enumerate("qk"):
      ours[f"encoder_layer0_sattn_{name}_{tag}"] = np.swapaxes(
          layer0[key][0][:, :, j], 1, 2)
  golden_keys = [k for k in z if k not in (
      "x_t_packed", "t", "T_world_cpf", "T_cpf_tm1_cpf_t", "Ts_world_cpf_all",
      "dtype", "out", "out_project_output_rotmats", "mask", "out_masked")]
  assert sorted(golden_keys) == sorted(k for k in ours if k in golden_keys)
  for key in golden_keys:
    assert _max_err(ours[key], z[key]) <= INTERMEDIATE_TOL, key


def test_projected_output_matches_golden(egoallo_reference):
  model, params, z = _load(egoallo_reference, "small_exp")
  out = model.apply({"params": params}, *_inputs(z),
                    project_output_rotmats=True)
  assert _max_err(out, z["out_project_output_rotmats"]) <= PROJECTED_TOL


def test_cross_attention_only_mask_reproduces_egoallo(egoallo_reference):
  model, params, z = _load(egoallo_reference, "small_exp")
  egoallo_like = denoiser_lib.Denoiser(
      dataclasses.replace(model.config, mask_self_attention=False))
  out = egoallo_like.apply({"params": params}, *_inputs(z), mask=z["mask"])
  assert _max_err(out, z["out_masked"]) <= OUT_TOL
  # Proper masking changes only the masked batch element.
  ours = model.apply({"params": params}, *_inputs(z), mask=z["mask"])
  assert _max_err(ours[0], z["out_masked"][0]) <= OUT_TOL
  assert _max_err(ours[1], z["out_masked"][1]) > 1e-3


def test_valid_frames_ignore_masked_frames(egoallo_reference):
  model, params, z = _load(egoallo_reference, "small_exp")
  x, t, T_world, T_rel = (np.array(a) for a in _inputs(z))
  mask = z["mask"]
  rng = np.random.default_rng(0)
  masked = ~mask
  x2, T_world2, T_rel2 = x.copy(), T_world.copy(), T_rel.copy()
  x2[masked] = rng.normal(size=x2[masked].shape)
  T_world2[masked] = T_world2[masked][::-1] + np.array([0, 0, 0, 0, 1, 2, 3])
  T_rel2[masked] = T_rel2[masked][::-1]
  apply = functools.partial(model.apply, mask=mask)
  a = np.asarray(apply({"params": params}, x, t, T_world, T_rel))
  b = np.asarray(apply({"params": params}, x2, t, T_world2, T_rel2))
  assert _max_err(a[mask], b[mask]) <= 1e-6
  assert _max_err(a[masked], b[masked]) > 1e-3  # the change did reach them


def test_bfloat16_matmuls_stay_close(egoallo_reference):
  model, params, z = _load(egoallo_reference, "small_exp")
  fast = denoiser_lib.Denoiser(
      dataclasses.replace(model.config, matmul_dtype="bfloat16"))
  out = fast.apply({"params": params}, *_inputs(z))
  err = _max_err(out, z["out"])
  # bf16 inputs (8-bit mantissa), fp32 accumulation: measured 2.7e-3 on
  # outputs of magnitude ≤ 0.6; bar: ≲ 10 bf16 roundings (u = 2^-9) on the path.
  assert 1e-5 < err < 10 * 2.0**-9, err
  # Casting the kernels once up front gives the same result.
  cast = denoiser_lib.cast_kernels(params, fast.config)
  assert cast["encoder_layers_0"]["mlp0"]["kernel"].dtype == jnp.bfloat16
  assert cast["encoder_layers_0"]["mlp0"]["bias"].dtype == jnp.float32
  np.testing.assert_array_equal(fast.apply({"params": cast}, *_inputs(z)), out)


def test_relu_option(egoallo_reference):
  model, params, z = _load(egoallo_reference, "small_exp_nohands")
  relu = denoiser_lib.Denoiser(
      dataclasses.replace(model.config, activation="relu"))
  out = relu.apply({"params": params}, *_inputs(z))
  assert np.all(np.isfinite(out)) and _max_err(out, z["out"]) > 1e-3


def test_param_counts_and_init():
  # Shapes only (no compilation): EgoAllo's default model and small_exp.
  def count(config):
    leaves = jax.tree.leaves(params_io.abstract_params(config))
    return sum(int(np.prod(leaf.shape)) for leaf in leaves)

  assert count(denoiser_lib.DenoiserConfig()) == 50_446_320
  small = denoiser_lib.DenoiserConfig(
      d_latent=32, d_feedforward=80, d_noise_emb=48, num_heads=4,
      encoder_layers=2, decoder_layers=2)
  # The README's 150,176 / 128,306 include 4 × 4 `rotary_emb.freqs`.
  assert count(small) == 150_160
  assert count(dataclasses.replace(small, include_hands=False)) == 128_290
  # PyTorch's default Linear init: U(−1/√fan_in, 1/√fan_in), weight and bias.
  layer = denoiser_lib.Linear(64, small)
  params = layer.init(jax.random.key(0), np.zeros((1, 25), np.float32))
  for leaf in jax.tree.leaves(params):
    assert 0.18 < np.max(np.abs(leaf)) <= 0.2


@pytest.mark.parametrize("field,value", [
    ("positional_encoding", "transformer"), ("noise_conditioning", "film"),
    ("xattn_mode", "kv_from_x_q_from_cond"), ("activation", "tanh"),
    ("cond_param", "absrel"), ("include_hand_positions_cond", True),
    ("matmul_dtype", "float16"), ("dropout_p", 0.1), ("num_heads", 3)])
def test_validate_names_unsupported_option(field, value):
  config = dataclasses.replace(denoiser_lib.DenoiserConfig(), **{field: value})
  with pytest.raises(ValueError, match=field):
    config.validate()


def test_rope_frequencies_and_rotation():
  freqs = denoiser_lib.rope_frequencies(8)
  np.testing.assert_allclose(freqs, [1, 0.1, 0.01, 0.001], rtol=1e-6)
  cos, sin = denoiser_lib.rope_tables(3, 8)
  x = np.arange(1, 9, dtype=np.float32).reshape(1, 1, 8)
  x = np.broadcast_to(x, (1, 3, 8))
  y = np.asarray(denoiser_lib.apply_rope(x, cos, sin))
  np.testing.assert_allclose(y[0, 0], x[0, 0])  # position 0: identity
  # Position 2, pair 0 (dims 0, 1) rotates by 2 rad.
  # float32 cos, sin, two products and a sum: 5 roundings on terms ≤ 2 (the
  # second entry cancels to 0.08, below a relative bar's reach): 5·eps·2.
  np.testing.assert_allclose(
      y[0, 2, :2], [np.cos(2) - 2 * np.sin(2), 2 * np.cos(2) + np.sin(2)],
      rtol=0, atol=5 * float(np.finfo(np.float32).eps) * 2)
