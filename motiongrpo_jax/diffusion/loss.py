"""EgoAllo's x0-regression training loss (`reference/egoallo/README.md` §2 f).

Steps:
  1. x0 = pack(betas repeated over frames, body R, contacts, hand R), the
     rotation matrices from the quaternions (normalising formula).
  2. t ~ U{1..max_t} per sequence, ε ~ N(0, I);
     x_t = √ᾱ_t·x0 + √(1 − ᾱ_t)·ε with the *float32* ᾱ table.
  3. x̂0 = net(x_t, t, T_world_cpf, T_cpf_tm1_cpf_t, mask).
  4. Per term, with per-frame squared errors averaged over the term's dims
     e_bτ, per-t weights w(t_b) = r_t/r_1·0.99 + 0.01 (r = ᾱ/(1 − ᾱ)) and a
     frame mask m:  term = Σ_b w(t_b)·Σ_τ m_bτ·e_bτ / Z.
     betas: errors scaled by 1/(i+1) per coefficient, Z = Σ mask;
     body_rotmats, contacts: Z = Σ mask;
     hand_rotmats (models with hands): only sequences whose ground-truth
     hands move (Σ_τ m·Σ_k |h_τ − h_0| > 1e-5), Z = max(Σ hand mask, 256).
  5. total = 0.1·betas + 1.0·body_rotmats + 0.1·contacts + 0.01·hand_rotmats.

There is no division by the batch size: Z normalises.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from motiongrpo_jax import geometry
from motiongrpo_jax.diffusion import schedule as schedule_lib
from motiongrpo_jax.model import packing

TERMS = ("betas", "body_rotmats", "contacts", "hand_rotmats")


@dataclasses.dataclass(frozen=True)
class LossConfig:
  """EgoAllo's `TrainingLossConfig` defaults (hashable, jit-static)."""
  # Weight of each term in the total.
  weight_betas: float = 0.1
  weight_body_rotmats: float = 1.0
  weight_contacts: float = 0.1
  weight_hand_rotmats: float = 0.01
  # Per-coefficient weights of the betas error (EgoAllo: 1/(i+1)).
  beta_coeff_weights: tuple[float, ...] = tuple(1.0 / (i + 1) for i in range(16))
  # A sequence's hands "move" when Σ_τ m·Σ_k |h_τ − h_0| exceeds this.
  hand_motion_threshold: float = 1e-5
  # Floor of the hand term's denominator (stabilises few-frame batches).
  hand_min_denominator: float = 256.0
  # Diffusion steps; t is drawn from 1..max_t.
  max_t: int = 1000
  # p in the per-t weight r_t/r_1·(1 − p) + p.
  loss_weight_padding: float = 0.01
  # Probability of zeroing a sequence's encoded condition in training
  # (EgoAllo's `cond_dropout_prob`; 0 in its released training).
  cond_dropout_prob: float = 0.0

  def validate(self) -> "LossConfig":
    """Raises ValueError naming the option for an impossible value."""
    if not 0.0 <= self.cond_dropout_prob < 1.0:
      raise ValueError(f"loss.cond_dropout_prob={self.cond_dropout_prob}: "
                       "expected in [0, 1)")
    return self

  def term_weight(self, name: str) -> float:
    return getattr(self, f"weight_{name}")


def clean_packed_state(batch: Mapping[str, jax.Array],
                       include_hands: bool) -> jax.Array:
  """The packed ground truth x0 (B, T, d) from a batch's quaternions.

  Args:
    batch: `betas` (B, 1 or T, 16), `body_quats` (B, T, 21, 4), `contacts`
      (B, T, 21), `hand_quats` (B, T, 30, 4) when `include_hands`.
    include_hands: whether the model's state carries hands.

  Returns:
    (B, T, 496) with hands, (B, T, 226) without.
  """
  for name in ("betas", "body_quats", "contacts") + (
      ("hand_quats",) if include_hands else ()):
    if batch.get(name) is None:
      raise ValueError(f"loss batch: field {name!r} is missing"
                       + (" (the model has include_hands=True)"
                          if name == "hand_quats" else ""))
  body = batch["body_quats"]
  if body.ndim != 4 or body.shape[-2:] != (21, 4):
    raise ValueError(f"loss batch: body_quats has shape {body.shape}, "
                     "expected (B, T, 21, 4)")
  hands = None
  if include_hands:
    hands = geometry.quat_to_matrix(batch["hand_quats"].astype(jnp.float32))
  return packing.pack(
      batch["betas"].astype(jnp.float32),
      geometry.quat_to_matrix(body.astype(jnp.float32)),
      batch["contacts"].astype(jnp.float32), hands)


def hand_motion(x0: jax.Array, frame_mask: jax.Array,
                threshold: float = 1e-5) -> jax.Array:
  """Whether each sequence's ground-truth hands move (EgoAllo's hand gate).

  Args:
    x0: (B, T, 496) packed ground truth with hands.
    frame_mask: (B, T) valid frames (changes on invalid frames are ignored).
    threshold: on Σ_τ m_τ·Σ_k |h_τk − h_0k| (frame 0 is the reference).

  Returns:
    (B,) bool.
  """
  hands = x0[..., packing.HANDS_SLICE]
  change = jnp.sum(jnp.abs(hands - hands[:, :1]), axis=-1)
  return jnp.sum(change * frame_mask.astype(jnp.float32), axis=-1) > threshold


def _masked_term(sq_err: jax.Array, frame_mask: jax.Array,
                 weight_t: jax.Array, denominator: jax.Array) -> jax.Array:
  """Σ_b w_b·Σ_τ m_bτ·mean_k(e_bτk) / Z.  sq_err (B,T,k), frame_mask (B,T)."""
  per_frame = jnp.mean(sq_err, axis=-1) * frame_mask
  return jnp.sum(jnp.sum(per_frame, axis=-1) * weight_t) / denominator


def denoising_loss(
    params: Any,
    model: Any,
    batch: Mapping[str, jax.Array],
    key: jax.Array | None = None,
    *,
    t: jax.Array | None = None,
    noise: jax.Array | None = None,
    config: LossConfig = LossConfig(),
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """EgoAllo's training loss for one batch.

  Args:
    params: denoiser parameters (differentiated).
    model: the Flax `Denoiser` (its `config.include_hands` selects the hand
      term; `model.apply({"params": params}, …)` is called with the mask).
    batch: `betas` (B, 1 or T, 16), `body_quats` (B, T, 21, 4), `hand_quats`
      (B, T, 30, 4) (with hands), `contacts` (B, T, 21), `T_world_cpf`
      (B, T, 7), `T_cpf_tm1_cpf_t` (B, T, 7), `mask` (B, T).
    key: PRNG key for t and ε (unless both are given).
    t: (B,) int timesteps in 1..max_t, to replay a draw.
    noise: (B, T, d) ε, to replay a draw.
    config: term weights and constants.

  Returns:
    (total, terms): the scalar loss and a dict of the unweighted scalar
    terms "betas", "body_rotmats", "contacts", "hand_rotmats" (0 without
    hands).
  """
  include_hands = bool(model.config.include_hands)
  # --- (1) Clean target.
  x0 = clean_packed_state(batch, include_hands)
  num_seqs, num_frames, dim = x0.shape
  if batch.get("mask") is None:
    raise ValueError("loss batch: field 'mask' (B, T) is missing")
  mask = batch["mask"]
  if mask.shape != (num_seqs, num_frames):
    raise ValueError(f"loss batch: mask has shape {mask.shape}, expected "
                     f"{(num_seqs, num_frames)}")
  frame_mask = mask.astype(jnp.float32)

  # --- (2) Diffuse with the float32 ᾱ table.
  if (t is None or noise is None) and key is None:
    raise ValueError("denoising_loss: pass a key, or both t and noise")
  if key is not None:
    t_key, noise_key = jax.random.split(key)
  if t is None:
    t = jax.random.randint(t_key, (num_seqs,), 1, config.max_t + 1)
  if noise is None:
    noise = jax.random.normal(noise_key, x0.shape, jnp.float32)
  schedule = schedule_lib.cosine_schedule(
      config.max_t, loss_weight_padding=config.loss_weight_padding)
  t = t.astype(jnp.int32)
  alpha_bar = jnp.asarray(schedule.alpha_bar_f32)[t][:, None, None]
  x_t = jnp.sqrt(alpha_bar) * x0 + jnp.sqrt(1.0 - alpha_bar) * noise

  # --- (3) Predict x0.
  x0_pred = model.apply({"params": params}, x_t, t, batch["T_world_cpf"],
                        batch["T_cpf_tm1_cpf_t"], mask=mask.astype(bool))

  # --- (4) Weighted, masked terms.
  weight_t = jnp.asarray(schedule.loss_weight)[t]
  denominator = jnp.sum(frame_mask)
  err = jnp.square(x0_pred - x0)
  beta_w = jnp.asarray(np.asarray(config.beta_coeff_weights, np.float32))
  terms = {
      "betas": _masked_term(err[..., packing.BETAS_SLICE] * beta_w,
                            frame_mask, weight_t, denominator),
      "body_rotmats": _masked_term(err[..., packing.BODY_SLICE], frame_mask,
                                   weight_t, denominator),
      "contacts": _masked_term(err[..., packing.CONTACTS_SLICE], frame_mask,
                               weight_t, denominator),
  }
  if include_hands:
    moving = hand_motion(x0, frame_mask, config.hand_motion_threshold)
    hand_mask = (moving[:, None] & mask.astype(bool)).astype(jnp.float32)
    hand_den = jnp.maximum(jnp.sum(hand_mask),
                           jnp.float32(config.hand_min_denominator))
    terms["hand_rotmats"] = _masked_term(err[..., packing.HANDS_SLICE],
                                         hand_mask, weight_t, hand_den)
  else:
    terms["hand_rotmats"] = jnp.zeros((), jnp.float32)

  # --- (5) Weighted total.
  total = sum(terms[name] * jnp.float32(config.term_weight(name))
              for name in TERMS)
  return total, terms
