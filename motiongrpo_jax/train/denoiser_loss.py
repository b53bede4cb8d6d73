"""The denoiser's training loss on a mesh: EgoAllo's loss (`diffusion/loss.py`)
as a per-device `loss_fn(params, batch, keys)` whose mean over devices is the
global batch's loss, with EgoAllo's condition dropout."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from motiongrpo_jax.diffusion import loss as loss_lib
from motiongrpo_jax.model import denoiser as denoiser_lib
from motiongrpo_jax.train import mesh as mesh_lib

# Batch fields the loss reads (the pipeline yields more).
_LOSS_FIELDS = ("betas", "body_quats", "hand_quats", "contacts", "T_world_cpf",
                "T_cpf_tm1_cpf_t", "mask")


def cond_dropout(keep: jax.Array):
  """Zeroes the encoded condition of sequences where `keep` (B,) is 0.

  EgoAllo multiplies the Fourier-encoded condition by the keep mask right
  before `latent_from_cond`; a Flax interceptor does the same here.
  """

  def interceptor(next_fun, args, kwargs, context):
    if (context.module.name == "latent_from_cond"
        and context.method_name == "__call__"):
      cond, *rest = args
      args = (cond * keep[:, None, None].astype(cond.dtype), *rest)
    return next_fun(*args, **kwargs)

  return nn.intercept_methods(interceptor)


def make_loss_fn(model: denoiser_lib.Denoiser, config: loss_lib.LossConfig
                 ) -> mesh_lib.LossFn:
  """EgoAllo's loss as a per-device `loss_fn(params, batch, keys)`.

  Per example b (key k_b): t_b ~ U{1..max_t} from fold_in(k_b, 0), ε_b from
  fold_in(k_b, 1), the condition kept unless uniform(fold_in(k_b, 2)) ≤
  `config.cond_dropout_prob`. So the draws do not depend on the device count.

  EgoAllo normalises each term by the number of valid frames of the batch.
  Each device computes its terms with its own frame count and scales them by
  (devices · own frames / all frames), so the mean over devices equals the
  single-device loss of the global batch exactly for the betas, body and
  contact terms. The hand term's own normaliser (frames whose hands move,
  at least 256) makes it exact only when moving-hand frames are spread over
  devices like frames; it is 0 for models without hands. A device whose
  examples are all padding contributes 0.

  Args:
    model: the denoiser.
    config: loss weights, constants and condition dropout.

  Returns:
    The loss function; aux holds `loss_<term>` for each unweighted term.
  """
  dim = model.config.packed_dim

  def loss_fn(params, batch, keys):
    num_frames = batch["mask"].shape[1]
    t = jax.vmap(lambda k: jax.random.randint(
        jax.random.fold_in(k, 0), (), 1, config.max_t + 1))(keys)
    noise = jax.vmap(lambda k: jax.random.normal(
        jax.random.fold_in(k, 1), (num_frames, dim)))(keys)
    loss_batch = {k: batch[k] for k in _LOSS_FIELDS if k in batch}
    loss_batch["betas"] = batch["betas"][:, None, :]  # (B, 1, 16)
    if config.cond_dropout_prob > 0:
      keep = jax.vmap(lambda k: jax.random.uniform(
          jax.random.fold_in(k, 2)) > config.cond_dropout_prob)(keys)
      with cond_dropout(keep):
        total, terms = loss_lib.denoising_loss(
            params, model, loss_batch, t=t, noise=noise, config=config)
    else:
      total, terms = loss_lib.denoising_loss(
          params, model, loss_batch, t=t, noise=noise, config=config)
    frames = jnp.sum(batch["mask"].astype(jnp.float32))
    all_frames = jax.lax.psum(frames, mesh_lib.DATA_AXIS)
    num_devices = jax.lax.psum(1, mesh_lib.DATA_AXIS)
    share = num_devices * frames / jnp.maximum(all_frames, 1.0)
    scaled = lambda x: jnp.where(frames > 0, x, 0.0) * share  # pylint: disable=unnecessary-lambda-assignment
    aux = {f"loss_{name}": scaled(terms[name]) for name in loss_lib.TERMS}
    return scaled(total), aux

  return loss_fn
